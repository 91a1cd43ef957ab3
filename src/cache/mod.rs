//! The disk-template cache: lookup, build and publish, clones, cleaning.
//!
#![doc = include_str!("../../docs/cache-format.md")]

pub(crate) mod cleanup;
pub(crate) mod clone;
pub(crate) mod ensure;
pub(crate) mod failing;
pub(crate) mod heal;
pub(crate) mod key;
pub(crate) mod last_use;
pub(crate) mod list;
pub(crate) mod lookup;
pub(crate) mod names;
pub(crate) mod per_test;
pub(crate) mod publish;
