//! cargo-ktstr: a host-side cache of pre-formatted disk images ("disk
//! templates") for VM-based sched_ext tests, a copy-on-write clone of one for
//! every test, and the guest that formats them with the kernel under test.
//!
//! The table of contents:

/// Where the cache lives, what its names mean, the lock protocol, lookup,
/// publish, clone, and cleanup.
pub mod cache;
/// The command-line model (clap) and the thin handlers behind it.
pub mod cli;
/// The template-building guest: its init (PID 1), initramfs and result line.
pub mod guest;
/// Guest kernels: build from a source tree, cache, resolve which one to use.
pub mod kernel;
/// Progress lines (and a spinner on a terminal) on stderr.
pub mod progress;
/// Boot a guest once: the runner trait, QEMU and the built-in VMM behind it.
pub mod runner;
/// The built-in VMM on the rust-vmm crates.
pub mod vmm;
