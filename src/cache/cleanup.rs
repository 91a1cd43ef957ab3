//! `clean`, `clean --all` and `clean --stale`: sweep dead writers' debris,
//! then entries no live process holds.
