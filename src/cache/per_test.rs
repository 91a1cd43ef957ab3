//! A test's own writable clone, removed when dropped.
