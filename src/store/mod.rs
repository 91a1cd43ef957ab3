//! Foundations both stores stand on, the template cache
//! ([`crate::cache`]) and the kernel store ([`crate::kernel`]); nothing here
//! knows either's names.
//!
//! Locks and their lockfiles, with who holds them ([`lock`]); removing a
//! directory tree by descriptors ([`tree`]); allocated bytes and free space
//! ([`space`]); whom a root admits by its permission bits ([`share`]);
//! whether a writer's pid still runs ([`owner`]); reading a file back from
//! the disk after fsync ([`readback`]); and the ktstr cache base directory
//! ([`root`]).

pub(crate) mod lock;
pub(crate) mod owner;
pub(crate) mod readback;
pub(crate) mod root;
pub(crate) mod share;
pub(crate) mod space;
pub(crate) mod tree;
