//! Guest kernels: build one from a source tree, keep it in the cache, and
//! resolve which one a template build uses.
