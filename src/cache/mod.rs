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
//! A per-test clone's `ns` (nanoseconds since the epoch) and `rnd` (a random
//! u64) are lower-case hex without padding, as ktstr 0.15 writes them.
//!
//! `key` is `<fs>-<MiB>m-<16 hex>` ([`crate::cache::key::Key`]); the hex is a fingerprint of
//! the installed formatter, so a new mkfs gives new keys. It hashes either
//! the formatter's version output (ktstr 0.15's scheme, which builds here
//! publish under) or its binary's bytes (ktstr 0.27 and later's): both name
//! the installed formatter, so a lookup takes an entry under either, ours
//! first, and neither is stale ([`crate::cache::fingerprint::Scheme`]). An entry's
//! image is its key's capacity up to one MiB more (ktstr floors a capacity
//! that is not whole MiB into the key), or it is invalid
//! ([`crate::cache::lookup`]).
//!
//! An entry's last use is its directory's mtime, set on every hit and clone
//! (or, for another user's entry, its lockfile's): [`crate::cache::last_use`].
//!
//! # Lock protocol
//!
//! * [`crate::cache::ensure::ensure_template`] looks the key up without a lock (a hit
//!   needs none). On a miss it takes `.locks/<key>.lock` exclusively, waiting
//!   behind peers up to a deadline; on contention it says once whom it waits
//!   for, and a timeout names the holders (from /proc/locks) and the lockfile.
//! * Holding it, it looks again: a peer may have published while we waited.
//!   Under `--force` an entry other than the one seen before waiting is such
//!   a peer's fresh build and counts as done.
//! * It then creates the staging image, has the builder format it, checks
//!   its superblock magic and size and publishes, still holding the lock.
//! * A cloner holds the same lock shared while it clones, so the entry stays
//!   put under it; an entry gone by then (`clean --all` won) is ensured again.
//! * `clean --all` and `clean --stale` take it exclusive and non-blocking, and
//!   remove an entry only while holding it: an entry under a builder or a
//!   cloner is kept.
//! * Writers also hold an exclusive flock on each staging image, staging
//!   directory and named per-test image for as long as they live, taken
//!   before the name exists ([`crate::cache::lock::create_locked`]). `clean`
//!   removes debris only when its pid is dead *and* that flock is free, since
//!   a pid alone says little across pid namespaces. ktstr's own debris carries
//!   no such lock and falls back to the pid test. Only the exact debris
//!   grammar (with a key-shaped `<key>`) and file type count, so a
//!   `--cache-dir` aimed at a home directory loses nothing.
//! * A root's own permission bits say whom it admits ([`crate::cache::share`]):
//!   in a shared root (group- or world-writable) lockfiles are made 0666 past
//!   the umask (ktstr asks for 0666 too) and entries are published readable
//!   by everyone the root admits; in a private root lockfiles are 0600, so no
//!   other user can lock (and so block) a key. A `.locks` made here takes the
//!   root's permission bits. Lockfiles are opened read-only where they cannot
//!   be written: flock needs no write access.
//! * In a shared root, have whoever makes the root make `.locks` too (root,
//!   mode 1777): a user who creates it owns it, and the sticky bit lets a
//!   directory's owner remove anyone's files in it. No writer here removes a
//!   lockfile, but another program of that user could.
//! * Publication moves the staging image into `<key>.tmp.<pid>/`, fsyncs both,
//!   and renames the directory onto `<key>/` (`RENAME_NOREPLACE`, or
//!   `RENAME_EXCHANGE` over an invalid entry, whose remains are then removed
//!   under the staging name), then fsyncs the root: nothing half-written is
//!   ever visible under `<key>/`.
//! * A per-test image is an unnamed O_TMPFILE file where the filesystem
//!   allows, so nothing of it outlives its process; elsewhere it is the named,
//!   flocked debris shape above.

pub mod cleanup;
pub mod clone;
pub mod ensure;
pub mod filesystem;
pub mod fingerprint;
pub mod heal;
pub mod key;
pub mod last_use;
pub mod list;
pub mod lock;
pub mod lookup;
pub mod minimum;
pub mod names;
pub mod per_test;
pub mod publish;
pub mod root;
pub(crate) mod share;
pub(crate) mod tree;
