//! The disk-template cache: lookup, build and publish, clones, cleaning.
//!
#![doc = include_str!("../../docs/cache-format.md")]

pub mod cleanup;
pub mod clone;
pub mod ensure;
pub mod filesystem;
pub mod fingerprint;
pub mod heal;
pub mod key;
pub mod last_use;
pub mod list;
pub mod lock;
pub mod lookup;
pub mod minimum;
pub mod names;
pub mod per_test;
pub mod publish;
pub mod root;
pub(crate) mod share;
pub(crate) mod tree;
