//! cargo-ktstr: a host-side cache of pre-formatted disk images ("disk
//! templates") for VM-based sched_ext tests, a copy-on-write clone of one for
//! every test, and the guest that formats them with the kernel under test.
//!
//! # For a test harness
//!
//! [`TemplateCache`] is the API: open the cache, then take a template or a
//! test's own clone of one. A miss boots a one-shot guest that runs mkfs
//! with the kernel under test; a hit costs a lookup.
//!
//! ```
//! use cargo_ktstr::{Capacity, Filesystem, HostMkfsBuilder, TemplateCache};
//! # fn main() -> anyhow::Result<()> {
//! # let dir = tempfile::tempdir()?;
//! // TemplateCache::open()? is the root the CLI uses; the host-side builder
//! // formats without a guest, so this example needs no kernel.
//! let cache = TemplateCache::at(dir.path()).builder(HostMkfsBuilder);
//! let template = cache.ensure(Filesystem::Ext4, Capacity::from_mib(64)?)?;
//! let image = cache.per_test(Filesystem::Ext4, Capacity::from_mib(64)?)?;
//! let (file, path) = (image.file(), image.path());
//! assert!(template.exists() && file.metadata()?.len() == 64 << 20 && path.exists());
//! drop(image); // the clone is gone; the template stays
//! # Ok(())
//! # }
//! ```
//!
//! Configuration is by builder-style methods on [`TemplateCache`] (kernel,
//! VMM, timeouts, memory, progress, verification, the guest init, a custom
//! [`TemplateBuilder`]); the defaults are what the CLI does.
//!
//! The guest's PID 1 is this crate's init inside some binary:
//! `cargo-ktstr`, or the harness itself when it calls [`init_if_guest`]
//! first thing in `main`. [`GuestInit`] says how one is found.
//!
//! [`runner`] boots a guest of a harness's own, and [`probe`] is such a
//! guest: it writes a file to a per-test image (`examples/harness.rs`
//! uses both).
//!
//! [`cli_main`] is the `cargo-ktstr` binary. [`testing`] holds the
//! internals this crate's own tests and benches drive, and is not API;
//! everything else is private.

#![warn(missing_docs)]
// Internal docs link internals: `cargo doc --document-private-items` (CI,
// a contributor) follows them; the public docs show their text.
#![allow(rustdoc::private_intra_doc_links)]

pub use cache::clone::{Cloned, Method, Reflink};
pub use cache::ensure::{BatchItem, Ensured, HostMkfsBuilder, TemplateBuilder};
pub use cache::key::{Capacity, CapacityError, Key};
pub use cache::per_test::PerTestImage;
pub use cli::main as cli_main;
pub use formatter::filesystem::Filesystem;
pub use guest::find_init::{GuestInit, init_if_guest};
pub use runner::VmmChoice;
pub use template_cache::TemplateCache;

// Bottom-up. Foundations: they import nothing from the domains above them
// (tests/it/architecture.rs checks it).
mod elf;
mod formatter;
mod host;
mod interrupt;
mod outcome;
mod progress;
mod store;
pub mod units;
mod usage;
// Domains.
mod cache;
mod guest;
mod kernel;
pub mod probe;
/// The remote kernel cache (the `remote` feature): S3, WebDAV, a shared
/// filesystem or the GitHub Actions cache.
#[cfg(feature = "remote")]
mod remote;
pub mod runner;
mod vmm;
// The front doors: the facade, the command line, and the tests' own.
mod cli;
mod template_cache;
pub mod testing;
#[cfg(test)]
mod testutil;
