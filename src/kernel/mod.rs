//! Guest kernels: build one from a source tree, keep it in the cache, use a
//! distribution's stock kernel with its modules ([`stock`], [`modules`]),
//! and resolve which one a template build uses.
//!
//! A kernel is tinyconfig plus the fragments of its [`KernelKind`], so a cached
//! kernel is named by the source's version, its kind and a hash of the
//! fragments: a new fragment gives a new entry instead of silently reusing a
//! kernel that lacks an option.

pub(crate) mod build;
pub(crate) mod clean;
pub(crate) mod key;
pub(crate) mod kind;
pub(crate) mod modules;
pub(crate) mod resolve;
pub(crate) mod source;
pub(crate) mod stock;
pub(crate) mod store;
pub(crate) mod unpack;
pub(crate) mod unreadable;

pub use kind::KernelKind;
