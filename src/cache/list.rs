//! `template list`: published entries and a count of debris.
