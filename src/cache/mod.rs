//! The disk-template cache.
//!
//! # On-disk layout (ktstr 0.15.0's)
//!
//! ```text
//! <root>/                                   the template root
//!   <key>/template.img                      a published entry
//!   .locks/<key>.lock                       per-key lockfile; never deleted
//!   template.img.in-flight.<key>.<pid>      debris: a staging image
//!   <key>.tmp.<pid>/                        debris: a publish staging directory
//!   .per-test-<pid>-<ns>-<rnd>.img          debris: a per-test clone
//! ```
//!
//! `key` is `<fs>-<MiB>m-<16 hex>` ([`crate::cache::key::Key`]); the hex is a fingerprint of
//! the formatter's version output, so a new mkfs gives new keys.
//!
//! # Lock protocol
//!
//! * A builder holds `.locks/<key>.lock` exclusively from its second lookup
//!   until the entry is published, waiting (with a deadline) behind peers.
//! * A cloner holds the same lock shared while it clones.
//! * `clean --all` and `clean --stale` take it exclusive and non-blocking, and
//!   remove an entry only while holding it: an entry under a builder or a
//!   cloner is kept.
//! * Writers also hold an exclusive flock on each staging image, staging
//!   directory and named per-test image for as long as they live. `clean`
//!   removes debris only when its pid is dead *and* that flock is free, since
//!   a pid alone says little across pid namespaces. ktstr's own debris carries
//!   no such lock and falls back to the pid test.
//! * Publication is one rename of a complete, fsynced `<key>.tmp.<pid>/` onto
//!   `<key>/`, so nothing half-written is ever visible under `<key>/`.
//!
//! The lifecycle is in [`crate::cache::ensure`].

pub mod cleanup;
pub mod clone;
pub mod ensure;
pub mod filesystem;
pub mod fingerprint;
pub mod key;
pub mod list;
pub mod lock;
pub mod lookup;
pub mod names;
pub mod per_test;
pub mod publish;
pub mod root;
