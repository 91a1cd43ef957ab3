//! The built-in VMM as a [`super::GuestRunner`].
