//! Guest kernels: build one from a source tree, keep it in the cache, use a
//! distribution's stock kernel with its modules ([`stock`], [`modules`]),
//! and resolve which one a template build uses.
//!
//! A kernel is tinyconfig plus the fragments of its [`KernelKind`], so a cached
//! kernel is named by the source's version, its kind and a hash of the
//! fragments: a new fragment gives a new entry instead of silently reusing a
//! kernel that lacks an option.

pub mod build;
pub mod clean;
pub mod key;
pub mod kind;
pub mod modules;
pub mod resolve;
pub mod source;
pub mod stock;
pub mod store;
pub mod unpack;
pub mod unreadable;

pub use kind::KernelKind;
