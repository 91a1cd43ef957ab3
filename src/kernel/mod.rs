//! Guest kernels: build one from a source tree, keep it in the cache, and
//! resolve which one a template build uses.
//!
//! A kernel is tinyconfig plus the fragments of its [`KernelKind`], so a cached
//! kernel is named by the source's version, its kind and a hash of the
//! fragments: a new fragment gives a new entry instead of silently reusing a
//! kernel that lacks an option.

pub mod build;
pub mod clean;
pub mod kind;
pub mod resolve;
pub mod source;
pub mod store;

pub use kind::KernelKind;
