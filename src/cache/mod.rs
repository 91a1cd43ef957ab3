//! The disk-template cache: lookup, build and publish, clones, cleaning.
//!
#![doc = include_str!("../../docs/cache-format.md")]

pub mod cleanup;
pub mod clone;
pub mod ensure;
pub mod failing;
pub mod heal;
pub mod key;
pub mod last_use;
pub mod list;
pub mod lookup;
pub mod names;
pub mod per_test;
pub mod publish;
