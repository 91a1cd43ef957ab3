//! Several templates at once: the missing ones are built together (for
//! the guest builder, one guest boot with a disk each), and each is
//! published under its own key and its own lock, as one build would be.
//!
//! No process waits for a lock while it holds another: the keys' locks are
//! only tried, in key order; the keys a peer holds are left until ours are
//! published, then waited for one at a time ([`Ensurer::ensure_key`]), so
//! a key a peer is building is found, not built twice, and two processes
//! asking for overlapping sets never wait on each other in a cycle.

use std::path::Path;
use std::time::Instant;

use anyhow::{Result, anyhow};

use super::{
    Ensured, Ensurer, StagingImage, find_other_scheme, identity, publish_staged, when_disk_full,
};
use crate::cache::key::{Capacity, Key};
use crate::cache::{heal, lookup};
use crate::formatter::filesystem::Filesystem;
use crate::formatter::{fingerprint, minimum};
use crate::store::lock::{self, Locked, Mode};
use crate::usage::UsageError;

/// One template asked for, and how it went.
#[derive(Debug)]
pub struct BatchItem {
    /// The template's key.
    pub key: Key,
    /// Its entry, or why it could not be found or built.
    pub result: Result<Ensured>,
}

/// The keys of (`fs`, `capacity`) pairs, each once, in the order first
/// asked; an error before any lock or file when a capacity is below its
/// formatter's minimum or a formatter is missing.
pub fn keys(wanted: &[(Filesystem, Capacity)]) -> Result<Vec<Key>> {
    let mut keys: Vec<Key> = Vec::new();
    for &(fs, capacity) in wanted {
        let formatter = fingerprint::formatter(fs)?;
        minimum::check(fs, capacity, formatter.version.as_ref()).map_err(UsageError)?;
        let key = Key::new(fs, capacity, &formatter.fingerprint);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    Ok(keys)
}

impl Ensurer<'_> {
    /// Finds or builds every key: hits need no build, the missing keys no peer
    /// holds are built by one [`TemplateBuilder::build_many`], and the keys a
    /// peer holds are waited for afterwards. One item per key, in the order
    /// given; one key failing does not stop the others.
    ///
    /// [`TemplateBuilder::build_many`]: super::TemplateBuilder::build_many
    pub fn ensure_keys(&self, keys: &[Key]) -> Result<Vec<BatchItem>> {
        let (root, opts) = (self.root, &self.options);
        let start = Instant::now();
        std::fs::create_dir_all(root).map_err(|e| {
            anyhow!(
                "failed to create the template root `{}`: {e}",
                root.display()
            )
        })?;
        let mut results: Vec<Option<Result<Ensured>>> = keys.iter().map(|_| None).collect();
        let done = |key: &Key, path, built| Ensured::used(root, key, path, built, start);

        // Unlocked first: a hit, under either key scheme, needs no lock.
        let mut missing = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            match lookup::find(root, key) {
                Ok(Some(path)) if !opts.force => results[i] = Some(Ok(done(key, path, false))),
                Ok(None) if !opts.force => match find_other_scheme(root, key) {
                    Ok(Some((other, path))) => results[i] = Some(Ok(done(&other, path, false))),
                    Ok(None) => missing.push((i, None)),
                    Err(e) => results[i] = Some(Err(e)),
                },
                Ok(seen) => {
                    let seen_id = match &seen {
                        Some(path) => {
                            super::check_replaceable(root, path).and_then(|()| identity(path))
                        }
                        None => Ok(None),
                    };
                    match seen_id {
                        Ok(seen_id) => missing.push((i, seen_id)),
                        Err(e) => results[i] = Some(Err(e)),
                    }
                }
                Err(e) => results[i] = Some(Err(e)),
            }
        }

        // Try each lock in key order; look again under it.
        missing.sort_by_key(|(i, _)| keys[*i].to_string());
        let mut ours: Vec<(usize, Locked)> = Vec::new();
        let mut peers = Vec::new();
        for (i, seen_id) in missing {
            let key = &keys[i];
            let name = key.to_string();
            match lock::try_lock(&lock::key_lock_path(root, &name), Mode::Exclusive) {
                Ok(Some(held)) => match lookup::lookup(root, key) {
                    Ok(lookup::Entry::Valid(path)) if !opts.force => {
                        results[i] = Some(Ok(done(key, path, false)))
                    }
                    Ok(lookup::Entry::Valid(path))
                        if identity(&path).is_ok_and(|id| id != seen_id) =>
                    {
                        // Under --force, a peer's fresh build is what was asked.
                        results[i] = Some(Ok(done(key, path, false)))
                    }
                    Ok(_) => ours.push((i, held)),
                    Err(e) => results[i] = Some(Err(e)),
                },
                Ok(None) => peers.push(i),
                Err(e) => results[i] = Some(Err(e)),
            }
        }

        // Ours, in one build.
        let mut full = Vec::new();
        if !ours.is_empty() {
            for (i, result) in self.build_ours(keys, &ours) {
                match result {
                    Ok(path) => {
                        tracing::info!(
                            "built the template {} in {:.1}s",
                            keys[i],
                            start.elapsed().as_secs_f64()
                        );
                        results[i] = Some(Ok(done(&keys[i], path, true)));
                    }
                    // Healed one at a time below, once our locks are let go.
                    Err(e) if opts.evict && heal::is_disk_full(&e) => full.push(i),
                    Err(e) => results[i] = Some(Err(e)),
                }
            }
        }
        drop(ours);

        // A peer's keys, and ours that hit a full disk: one at a time, each
        // waiting for its lock and looking again before it builds.
        for i in peers.into_iter().chain(full) {
            results[i] = Some(self.ensure_key(&keys[i], start));
        }
        Ok(keys
            .iter()
            .zip(results)
            .map(|(key, result)| BatchItem {
                key: key.clone(),
                result: result.expect("every key has a result"),
            })
            .collect())
    }

    /// Stages every key of `ours` (whose locks the caller holds), builds them
    /// with one `build_many`, and publishes each that verifies.
    fn build_ours(
        &self,
        keys: &[Key],
        ours: &[(usize, Locked)],
    ) -> Vec<(usize, Result<std::path::PathBuf>)> {
        let (root, force) = (self.root, self.options.force);
        let mut out = Vec::new();
        let mut staged = Vec::new();
        for (i, _) in ours {
            match StagingImage::create(root, &keys[*i]) {
                Ok(staging) => staged.push((*i, staging)),
                Err(e) => out.push((*i, Err(when_disk_full(root, e)))),
            }
        }
        let jobs: Vec<(&Key, &Path)> = staged
            .iter()
            .map(|(i, s)| (&keys[*i], s.path.as_path()))
            .collect();
        let built = self.builder.build_many(&jobs);
        for ((i, staging), result) in staged.iter().zip(built) {
            let key = &keys[*i];
            let result = result
                .map_err(|e| e.context(format!("failed to build the template {key}")))
                .and_then(|()| staging.verify(key))
                .and_then(|()| publish_staged(root, key, staging, force))
                .map_err(|e| when_disk_full(root, e));
            out.push((*i, result));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::cache::ensure::tests::test_key;
    use crate::cache::ensure::{HostMkfsBuilder, TemplateBuilder};

    /// Records each `build_many` call's keys; fails the keys it is told to.
    #[derive(Default)]
    struct Recording {
        calls: Mutex<Vec<Vec<String>>>,
        fail: Vec<Key>,
    }

    impl TemplateBuilder for Recording {
        fn build(&self, key: &Key, staging: &Path) -> Result<()> {
            if self.fail.contains(key) {
                anyhow::bail!("mkfs for {key} exploded");
            }
            HostMkfsBuilder.build(key, staging)
        }

        fn build_many(&self, jobs: &[(&Key, &Path)]) -> Vec<Result<()>> {
            let names = jobs.iter().map(|(k, _)| k.to_string()).collect();
            self.calls.lock().unwrap().push(names);
            jobs.iter().map(|(k, p)| self.build(k, p)).collect()
        }
    }

    fn three() -> Vec<Key> {
        vec![
            test_key(Filesystem::Xfs, 300),
            test_key(Filesystem::Btrfs, 128),
            test_key(Filesystem::Ext4, 16),
        ]
    }

    fn ensure(root: &Path, keys: &[Key], b: &Recording) -> Vec<BatchItem> {
        Ensurer::new(root, b).ensure_keys(keys).unwrap()
    }

    #[test]
    fn the_missing_keys_are_built_in_one_call_and_then_found() {
        let root = tempfile::tempdir().unwrap();
        let keys = three();
        let builder = Recording::default();
        let first = ensure(root.path(), &keys, &builder);
        // In the order asked, each built and published under its own key.
        for (item, key) in first.iter().zip(&keys) {
            let ensured = item.result.as_ref().unwrap();
            assert_eq!(&item.key, key);
            assert!(ensured.built);
            assert_eq!(ensured.path, lookup::image_path(root.path(), key));
        }
        // One call, its jobs in key order.
        let mut sorted: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        sorted.sort();
        assert_eq!(*builder.calls.lock().unwrap(), [sorted]);
        let again = ensure(root.path(), &keys, &builder);
        assert!(again.iter().all(|i| !i.result.as_ref().unwrap().built));
        assert_eq!(builder.calls.lock().unwrap().len(), 1, "hits need no build");
    }

    #[test]
    fn present_keys_are_hits_and_only_the_others_are_built() {
        let root = tempfile::tempdir().unwrap();
        let keys = three();
        let builder = Recording::default();
        ensure(root.path(), &keys[1..2], &builder);
        let items = ensure(root.path(), &keys, &builder);
        let built: Vec<bool> = items
            .iter()
            .map(|i| i.result.as_ref().unwrap().built)
            .collect();
        assert_eq!(built, [true, false, true]);
        let calls = builder.calls.lock().unwrap();
        assert_eq!(calls[1].len(), 2);
        assert!(!calls[1].contains(&keys[1].to_string()));
    }

    #[test]
    fn one_failing_key_does_not_stop_the_others_and_is_named() {
        let root = tempfile::tempdir().unwrap();
        let keys = three();
        let builder = Recording {
            fail: vec![keys[1].clone()],
            ..Default::default()
        };
        let items = ensure(root.path(), &keys, &builder);
        assert!(items[0].result.is_ok() && items[2].result.is_ok());
        let err = format!("{:#}", items[1].result.as_ref().unwrap_err());
        assert!(
            err.contains(&format!("failed to build the template {}", keys[1]))
                && err.contains("exploded"),
            "{err}"
        );
        assert_eq!(
            lookup::lookup(root.path(), &keys[1]).unwrap(),
            lookup::Entry::Absent
        );
        // No staging image is left behind.
        let left: Vec<String> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("in-flight"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_key_a_peer_is_building_is_waited_for_and_not_built_twice() {
        let root = tempfile::tempdir().unwrap();
        let keys = three();
        let theirs = keys[0].clone();
        // The peer holds the key's lock, publishes it a while later, and
        // lets go.
        let lock_path = lock::key_lock_path(root.path(), &theirs.to_string());
        std::fs::create_dir_all(lock_path.parent().unwrap()).unwrap();
        let held = lock::try_lock(&lock_path, Mode::Exclusive)
            .unwrap()
            .unwrap();
        let peer_root = root.path().to_owned();
        let peer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let staging = peer_root.join("peer-staging.img");
            crate::cache::ensure::tests::formatted_image(&theirs, &staging);
            crate::cache::publish::publish(
                &peer_root,
                &theirs,
                &staging,
                crate::cache::publish::IfValid::Keep,
            )
            .unwrap();
            drop(held);
        });
        let builder = Recording::default();
        let items = ensure(root.path(), &keys, &builder);
        peer.join().unwrap();
        assert!(!items[0].result.as_ref().unwrap().built, "found, not built");
        assert!(items[1].result.as_ref().unwrap().built);
        assert!(items[2].result.as_ref().unwrap().built);
        let calls = builder.calls.lock().unwrap();
        assert_eq!(calls.len(), 1);
        assert!(!calls[0].contains(&keys[0].to_string()), "{calls:?}");
    }

    #[test]
    fn each_key_is_asked_for_once_and_a_capacity_below_the_minimum_fails_first() {
        let cap = |mib| Capacity::from_mib(mib).unwrap();
        let wanted = [
            (Filesystem::Ext4, cap(64)),
            (Filesystem::Btrfs, cap(256)),
            (Filesystem::Ext4, cap(64)),
        ];
        let got = keys(&wanted).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].fs, Filesystem::Ext4);
        let err = keys(&[(Filesystem::Ext4, cap(64)), (Filesystem::Xfs, cap(256))])
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least 300 MiB"), "{err}");
    }
}
