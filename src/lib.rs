//! cargo-ktstr: a host-side cache of pre-formatted disk images ("disk
//! templates") for VM-based sched_ext tests, a copy-on-write clone of one for
//! every test, and the guest that formats them with the kernel under test.
//!
//! The table of contents:
//!
//! * [`cache`]: where the cache lives, what its names mean, the lock
//!   protocol, lookup, publish, clone, and cleanup.
//! * [`cli`]: the command-line model (clap) and the thin handlers behind it.
//! * [`guest`]: the template-building guest: its init (PID 1), initramfs and
//!   result line.
//! * [`host`]: what the host offers: programs on PATH, a usable /dev/kvm.
//! * [`kernel`]: guest kernels: build from a source tree, cache, resolve
//!   which one to use.
//! * [`outcome`]: how a guest run ended and its bounded console capture.
//! * [`progress`]: progress lines (and a spinner on a terminal) on stderr.
//! * [`runner`]: boot a guest once: the runner trait, QEMU and the built-in
//!   VMM behind it.
//! * [`vmm`]: the built-in VMM on the rust-vmm crates.

pub mod cache;
pub mod cli;
pub mod guest;
pub mod host;
pub mod kernel;
pub mod outcome;
pub mod progress;
pub mod runner;
pub mod vmm;

#[cfg(test)]
mod testutil;
