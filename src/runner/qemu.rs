//! `qemu-system-x86_64 -M microvm` as a [`super::GuestRunner`].
