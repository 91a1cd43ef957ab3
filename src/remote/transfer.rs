//! Push and pull of one kernel entry (the protocol: [`super`]).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use futures::TryStreamExt;
use opendal::ErrorKind;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::Remote;
use super::blob::{pack_blob, unpack_blob};
use super::format::{FORMAT, FileEntry, MANIFEST_CAP, Manifest, blob_path, manifest_path};
use crate::kernel::key::{KeyInputs, hex};
use crate::kernel::store::{
    CONFIG_FILE, IMAGE_FILE, KernelStore, Provenance, ProvenanceOrigin, VMLINUX_FILE,
};
use crate::progress::{Progress, Transfer};

/// Bytes per multipart chunk and per read of a blob file.
const CHUNK: u64 = 8 << 20;

/// What a push did.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PushReport {
    pub name: String,
    pub key: String,
    /// `published`, or `peer-first` when a peer's manifest was already there.
    pub manifest: &'static str,
    pub blobs_uploaded: usize,
    pub blobs_present: usize,
    pub bytes_uploaded: u64,
    pub elapsed_ms: u128,
}

/// What a pull fetched.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PullReport {
    pub name: String,
    pub image: PathBuf,
    pub bytes: u64,
    pub elapsed_ms: u128,
}

impl Remote {
    /// Fetches `inputs`' kernel into `store` as entry `name`, verified;
    /// `Ok(None)` when the remote has no manifest for it. An error means a
    /// miss too: the caller warns and builds.
    pub(crate) fn pull(
        &self,
        store: &KernelStore,
        inputs: &KeyInputs,
        name: &str,
        progress: &Progress,
    ) -> Result<Option<PullReport>> {
        let start = Instant::now();
        let Some(manifest) = self.block_on(self.read_manifest(inputs))? else {
            return Ok(None);
        };
        let (scratch, _held) = store.create_scratch(&format!("pull-{name}"))?;
        let scratch = RemoveOnDrop(scratch);
        let entry = scratch.0.join("entry");
        fs::create_dir(&entry)
            .with_context(|| format!("failed to create `{}`", entry.display()))?;
        let total: u64 = manifest.files.iter().map(|f| f.blob_size).sum();
        progress.step(
            "Pulling",
            format!("kernel {name} ({}) from {}", mib(total), self.spec.url),
        );
        let bar = progress.transfer("Pulling", total);
        let blob_of = |file: &FileEntry| scratch.0.join(format!("{}.zst", file.name));
        // The blobs side by side, then unpacked side by side: one at a
        // time leaves the link, then a core, idle.
        let fetches = manifest
            .files
            .iter()
            .map(|file| self.fetch_blob(file, blob_of(file), &bar));
        self.block_on(futures::future::try_join_all(fetches))?;
        std::thread::scope(|scope| {
            let unpackers: Vec<_> = manifest
                .files
                .iter()
                .map(|file| {
                    scope.spawn(|| unpack_blob(file, &blob_of(file), &entry.join(&file.name)))
                })
                .collect();
            unpackers
                .into_iter()
                .map(|u| {
                    u.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect::<Result<Vec<()>>>()
        })?;
        let bytes = total;
        Provenance {
            origin: ProvenanceOrigin::Pulled,
            remote: Some(self.spec.url.clone()),
            key: manifest.key.clone(),
            inputs: manifest.inputs.clone(),
            toolchain: manifest.toolchain.clone(),
        }
        .write(&entry)?;
        drop(bar);
        let image = store.publish(&entry, name)?;
        let elapsed = start.elapsed();
        progress.step(
            "Pulled",
            format!("kernel {name}, verified: {}", rate(bytes, elapsed)),
        );
        Ok(Some(PullReport {
            name: name.to_owned(),
            image,
            bytes,
            elapsed_ms: elapsed.as_millis(),
        }))
    }

    async fn read_manifest(&self, inputs: &KeyInputs) -> Result<Option<Manifest>> {
        let path = manifest_path(&inputs.key());
        let meta = match self.op.stat(&path).await {
            Ok(meta) => meta,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("failed to look up `{path}`")),
        };
        ensure!(
            meta.content_length() <= MANIFEST_CAP,
            "manifest `{path}` is {} bytes, more than the {MANIFEST_CAP} a manifest may be",
            meta.content_length()
        );
        let bytes = self
            .op
            .read_with(&path)
            // The stat's length, already checked: a server that sends more
            // is cut off there.
            .range(0..meta.content_length())
            .await
            .with_context(|| format!("failed to read `{path}`"))?
            .to_vec();
        let manifest = super::format::parse_manifest(&bytes, inputs)
            .with_context(|| format!("manifest `{path}` is refused"))?;
        Ok(Some(manifest))
    }

    /// Downloads `file`'s blob to `dest`, checking its size and hash.
    async fn fetch_blob(&self, file: &FileEntry, dest: PathBuf, bar: &Transfer) -> Result<()> {
        let dest = dest.as_path();
        let path = blob_path(&file.blob);
        let meta = self
            .op
            .stat(&path)
            .await
            .with_context(|| format!("failed to look up blob `{path}`"))?;
        ensure!(
            meta.content_length() == file.blob_size,
            "blob `{path}` is {} bytes, the manifest says {}",
            meta.content_length(),
            file.blob_size
        );
        let reader = self
            .op
            .reader(&path)
            .await
            .with_context(|| format!("failed to open blob `{path}`"))?;
        let mut out =
            File::create(dest).with_context(|| format!("failed to create `{}`", dest.display()))?;
        let mut hasher = Sha256::new();
        // One streamed read of the stat's length (a server that sends more
        // is cut off there), counted as its pieces arrive, so the bar moves
        // during a long one.
        let mut stream = reader
            .into_stream(0..file.blob_size)
            .await
            .with_context(|| format!("failed to read blob `{path}`"))?;
        let mut offset = 0;
        while let Some(buf) = stream
            .try_next()
            .await
            .with_context(|| format!("failed to read blob `{path}`"))?
        {
            offset += buf.len() as u64;
            bar.add(buf.len() as u64);
            for chunk in buf {
                hasher.update(&chunk);
                out.write_all(&chunk)
                    .with_context(|| format!("failed to write `{}`", dest.display()))?;
            }
        }
        ensure!(
            offset == file.blob_size,
            "blob `{path}` ended early, at {offset} of {} bytes",
            file.blob_size
        );
        let got = hex(&hasher.finalize());
        ensure!(
            got == file.blob,
            "blob `{path}` has SHA-256 {got}: it is corrupt"
        );
        Ok(())
    }

    /// Pushes entry `name` of `store`; refuses an entry that may not be
    /// shared.
    pub(crate) fn push(
        &self,
        store: &KernelStore,
        name: &str,
        progress: &Progress,
    ) -> Result<PushReport> {
        let start = Instant::now();
        ensure!(
            self.spec.writable,
            "remote `{}` is read-only: set KTSTR_REMOTE_CACHE_MODE=read-write or pass \
             --remote-write (only where the job may hold write credentials)",
            self.spec.url
        );
        let dir = store.dir().join(name);
        let Some(prov) = Provenance::read(&dir)? else {
            bail!(
                "kernel {name} records no key inputs (it was cached before they were, or not \
                 by `kernel build`): rebuild it with `kernel build --force` to push it"
            );
        };
        if prov.origin == ProvenanceOrigin::Adopted {
            bail!(
                "kernel {name} was built before source identities were recorded, so its \
                 source is not known for sure: rebuild it with `kernel build --force` to push it"
            );
        }
        if !prov.inputs.source.shareable() {
            bail!(
                "kernel {name} was built from a git tree with uncommitted changes: such a \
                 kernel stays on this machine; commit, rebuild, then push"
            );
        }
        let (scratch, _held) = store.create_scratch(&format!("push-{name}"))?;
        let scratch = RemoveOnDrop(scratch);
        let mut report = PushReport {
            name: name.to_owned(),
            key: prov.key.clone(),
            manifest: "published",
            blobs_uploaded: 0,
            blobs_present: 0,
            bytes_uploaded: 0,
            elapsed_ms: 0,
        };
        // Packed side by side: compressing vmlinux is most of a push.
        let present: Vec<_> = [IMAGE_FILE, VMLINUX_FILE, CONFIG_FILE]
            .into_iter()
            .filter(|f| dir.join(f).exists())
            .collect();
        let packed: Vec<Result<(FileEntry, PathBuf)>> = std::thread::scope(|scope| {
            let packers: Vec<_> = present
                .iter()
                .map(|&file_name| {
                    let (src, blob) = (
                        dir.join(file_name),
                        scratch.0.join(format!("{file_name}.zst")),
                    );
                    scope.spawn(move || Ok((pack_blob(file_name, &src, &blob)?, blob)))
                })
                .collect();
            packers
                .into_iter()
                .map(|p| {
                    p.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        });
        let files = packed.into_iter().collect::<Result<Vec<_>>>()?;
        let total = files.iter().map(|(f, _)| f.blob_size).sum();
        progress.step(
            "Pushing",
            format!("kernel {name} ({}) to {}", mib(total), self.spec.url),
        );
        let bar = progress.transfer("Pushing", total);
        // The blobs side by side: one stream per blob leaves a link (and
        // a server writing each to disk) idle between requests.
        let uploads = files.iter().map(|(entry, blob)| async {
            let uploaded = self.upload_blob(entry, blob, &bar).await?;
            if !uploaded {
                bar.add(entry.blob_size);
            }
            anyhow::Ok((uploaded, entry.blob_size))
        });
        for (uploaded, size) in self.block_on(futures::future::try_join_all(uploads))? {
            if uploaded {
                report.blobs_uploaded += 1;
                report.bytes_uploaded += size;
            } else {
                report.blobs_present += 1;
            }
        }
        drop(bar);
        let files = files.into_iter().map(|(f, _)| f).collect();
        let manifest = Manifest {
            format: FORMAT.to_owned(),
            key: prov.key.clone(),
            inputs: prov.inputs,
            toolchain: prov.toolchain,
            files,
        };
        super::format::check_manifest(&manifest, &manifest.inputs)
            .with_context(|| format!("kernel {name} cannot be pushed"))?;
        if !self.block_on(self.publish_manifest(&manifest))? {
            report.manifest = "peer-first";
        }
        report.elapsed_ms = start.elapsed().as_millis();
        progress.step(
            "Pushed",
            format!(
                "kernel {name} to {} ({} blobs uploaded, {} already there, {}; manifest {})",
                self.spec.url,
                report.blobs_uploaded,
                report.blobs_present,
                rate(report.bytes_uploaded, start.elapsed()),
                report.manifest
            ),
        );
        Ok(report)
    }

    /// Uploads a blob unless one of its name and size is there; whether it
    /// uploaded.
    async fn upload_blob(&self, entry: &FileEntry, blob: &Path, bar: &Transfer) -> Result<bool> {
        let path = blob_path(&entry.blob);
        match self.op.stat(&path).await {
            // Named by its hash: one of the same size is the same blob
            // (a pull checks the hash anyway).
            Ok(meta) if meta.content_length() == entry.blob_size => return Ok(false),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("failed to look up `{path}`")),
        }
        let mut writer = self
            .op
            .writer_with(&path)
            .chunk(CHUNK as usize)
            .await
            .with_context(|| format!("failed to start writing `{path}`"))?;
        let written = match write_file(&mut writer, blob, &path, bar).await {
            Ok(()) => writer
                .close()
                .await
                .map(drop)
                .with_context(|| format!("failed to finish writing `{path}`")),
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            // Aborted, not dropped: a multipart upload's parts are released
            // on the server, and nothing half-written is left to publish.
            if let Err(abort) = writer.abort().await {
                tracing::debug!("aborting the write of `{path}` failed too: {abort}");
            }
            return Err(e);
        }
        Ok(true)
    }

    /// Writes the manifest unless a peer's is there; whether ours went up.
    async fn publish_manifest(&self, manifest: &Manifest) -> Result<bool> {
        let path = manifest_path(&manifest.key);
        let bytes = serde_json::to_vec_pretty(manifest)?;
        if self.op.info().full_capability().write_with_if_not_exists {
            return match self.op.write_with(&path, bytes).if_not_exists(true).await {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == ErrorKind::ConditionNotMatch => Ok(false),
                Err(e) => Err(e).with_context(|| format!("failed to write `{path}`")),
            };
        }
        // No conditional write: a peer's manifest for the same key is as
        // good as ours, and one that lands between the check and the
        // write replaces an equally valid one.
        if self
            .op
            .exists(&path)
            .await
            .with_context(|| format!("failed to look up `{path}`"))?
        {
            return Ok(false);
        }
        self.op
            .write(&path, bytes)
            .await
            .with_context(|| format!("failed to write `{path}`"))?;
        Ok(true)
    }
}

/// Streams the file `blob` into `writer` (remote `path`), chunk by chunk.
async fn write_file(
    writer: &mut opendal::Writer,
    blob: &Path,
    path: &str,
    bar: &Transfer,
) -> Result<()> {
    let mut file =
        File::open(blob).with_context(|| format!("failed to open `{}`", blob.display()))?;
    let mut buf = vec![0; CHUNK as usize];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("failed to read `{}`", blob.display()))?;
        if n == 0 {
            return Ok(());
        }
        writer
            .write(buf[..n].to_vec())
            .await
            .with_context(|| format!("failed to write `{path}`"))?;
        bar.add(n as u64);
    }
}

/// A scratch directory, removed whichever way a transfer ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

fn rate(bytes: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-3);
    format!(
        "{} in {:.3} s, {:.0} MiB/s",
        mib(bytes),
        secs,
        bytes as f64 / (1 << 20) as f64 / secs
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::key::{SourceIdentity, Toolchain};
    use crate::remote::{RemoteSpec, RemoteUrl};
    use opendal::{Operator, services};

    fn inputs() -> KeyInputs {
        KeyInputs {
            recipe: 1,
            arch: "x86_64".into(),
            version: "6.12.57".into(),
            source: SourceIdentity::Tarball("ab".repeat(32)),
            fragments: vec![("template.config".into(), "cd".repeat(32))],
        }
    }

    fn remote(op: Operator, writable: bool) -> Remote {
        let spec = RemoteSpec {
            url: "memory://test".into(),
            parsed: RemoteUrl::File { root: "/".into() },
            writable,
        };
        Remote::with_operator(spec, op).unwrap()
    }

    /// A store holding one built kernel `k` with provenance.
    fn store_with_kernel(dir: &Path, source: SourceIdentity) -> KernelStore {
        let store = KernelStore::new(dir.join("kernels"));
        let staged = dir.join("staged");
        fs::create_dir_all(&staged).unwrap();
        let image: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        fs::write(staged.join(IMAGE_FILE), &image).unwrap();
        fs::write(staged.join(CONFIG_FILE), "CONFIG_X=y\n").unwrap();
        let inputs = KeyInputs { source, ..inputs() };
        Provenance {
            origin: ProvenanceOrigin::Built,
            remote: None,
            key: inputs.key(),
            inputs,
            toolchain: Toolchain::detect(),
        }
        .write(&staged)
        .unwrap();
        fs::create_dir_all(store.dir()).unwrap();
        store.publish(&staged, "k").unwrap();
        store
    }

    fn memory() -> Operator {
        crate::remote::install_tls_provider();
        Operator::new(services::Memory::default()).unwrap().finish()
    }

    #[test]
    fn push_then_pull_is_byte_identical() {
        let tmp = tempfile::tempdir().unwrap();
        let store = store_with_kernel(tmp.path(), inputs().source);
        let op = memory();
        let report = remote(op.clone(), true)
            .push(&store, "k", &Progress::silent())
            .unwrap();
        assert_eq!((report.blobs_uploaded, report.manifest), (2, "published"));
        // A second push finds every blob and the manifest there.
        let again = remote(op.clone(), true)
            .push(&store, "k", &Progress::silent())
            .unwrap();
        assert_eq!((again.blobs_present, again.manifest), (2, "peer-first"));
        let empty = KernelStore::new(tmp.path().join("empty"));
        let pulled = remote(op, false)
            .pull(&empty, &inputs(), "k", &Progress::silent())
            .unwrap()
            .unwrap();
        for f in [IMAGE_FILE, CONFIG_FILE] {
            assert_eq!(
                fs::read(store.dir().join("k").join(f)).unwrap(),
                fs::read(empty.dir().join("k").join(f)).unwrap()
            );
        }
        assert_eq!(pulled.image, empty.dir().join("k").join(IMAGE_FILE));
        let prov = Provenance::read(&empty.dir().join("k")).unwrap().unwrap();
        assert_eq!(prov.origin, ProvenanceOrigin::Pulled);
        // Only the entry: no scratch left behind.
        assert_eq!(fs::read_dir(empty.dir()).unwrap().count(), 1);
    }

    #[test]
    fn read_only_never_writes_and_dirty_trees_are_not_pushed() {
        let tmp = tempfile::tempdir().unwrap();
        let store = store_with_kernel(tmp.path(), inputs().source);
        let op = memory();
        let err = remote(op.clone(), false)
            .push(&store, "k", &Progress::silent())
            .unwrap_err();
        assert!(err.to_string().contains("read-only"), "{err}");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let listed = rt
            .block_on(async { op.list_with("").recursive(true).await })
            .unwrap();
        assert!(listed.iter().all(|e| e.metadata().is_dir()), "{listed:?}");
        let tmp2 = tempfile::tempdir().unwrap();
        let dirty = store_with_kernel(tmp2.path(), SourceIdentity::DirtyGitTree("1".repeat(64)));
        let err = remote(op, true)
            .push(&dirty, "k", &Progress::silent())
            .unwrap_err();
        assert!(err.to_string().contains("uncommitted changes"), "{err}");
    }

    /// Pushes, damages the remote with `damage`, and pulls: a miss, with
    /// nothing published.
    fn pull_after(damage: impl FnOnce(&Operator, &Manifest, &tokio::runtime::Runtime)) -> String {
        let tmp = tempfile::tempdir().unwrap();
        let store = store_with_kernel(tmp.path(), inputs().source);
        let op = memory();
        remote(op.clone(), true)
            .push(&store, "k", &Progress::silent())
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bytes = rt
            .block_on(op.read(&manifest_path(&inputs().key())))
            .unwrap();
        let manifest: Manifest = serde_json::from_slice(&bytes.to_vec()).unwrap();
        damage(&op, &manifest, &rt);
        let empty = KernelStore::new(tmp.path().join("empty"));
        let result = remote(op, false).pull(&empty, &inputs(), "k", &Progress::silent());
        assert!(
            empty.lookup("k").unwrap().is_none(),
            "published: {result:?}"
        );
        let leftover = fs::read_dir(empty.dir()).map(|d| d.count()).unwrap_or(0);
        assert_eq!(leftover, 0, "scratch left behind");
        match result {
            Ok(None) => "miss".into(),
            Ok(Some(_)) => unreachable!(),
            Err(e) => format!("{e:#}"),
        }
    }

    fn image_blob(m: &Manifest) -> String {
        blob_path(&m.files.iter().find(|f| f.name == IMAGE_FILE).unwrap().blob)
    }

    #[test]
    fn a_flipped_byte_is_a_miss() {
        let err = pull_after(|op, m, rt| {
            let path = image_blob(m);
            let mut bytes = rt.block_on(op.read(&path)).unwrap().to_vec();
            bytes[100] ^= 1;
            rt.block_on(op.write(&path, bytes)).unwrap();
        });
        assert!(err.contains("corrupt"), "{err}");
    }

    #[test]
    fn a_truncated_blob_is_a_miss() {
        let err = pull_after(|op, m, rt| {
            let path = image_blob(m);
            let bytes = rt.block_on(op.read(&path)).unwrap().to_vec();
            rt.block_on(op.write(&path, bytes[..bytes.len() / 2].to_vec()))
                .unwrap();
        });
        assert!(err.contains("the manifest says"), "{err}");
    }

    #[test]
    fn a_missing_blob_is_a_miss() {
        let err = pull_after(|op, m, rt| rt.block_on(op.delete(&image_blob(m))).unwrap());
        assert!(err.contains("failed to look up blob"), "{err}");
    }

    #[test]
    fn a_missing_manifest_is_a_plain_miss() {
        let got = pull_after(|op, _, rt| {
            rt.block_on(op.delete(&manifest_path(&inputs().key())))
                .unwrap()
        });
        assert_eq!(got, "miss");
    }

    #[test]
    fn a_blob_that_decompresses_to_other_bytes_is_a_miss() {
        // A blob whose own hash is right (the manifest is rewritten to
        // match) but which holds more than the declared size.
        let err = pull_after(|op, m, rt| {
            let mut m = m.clone();
            let big = zstd::encode_all(&vec![7u8; 400_000][..], 3).unwrap();
            let f = m.files.iter_mut().find(|f| f.name == IMAGE_FILE).unwrap();
            f.blob = crate::kernel::key::sha256_hex(&big);
            f.blob_size = big.len() as u64;
            rt.block_on(op.write(&blob_path(&f.blob), big)).unwrap();
            let bytes = serde_json::to_vec(&m).unwrap();
            rt.block_on(op.write(&manifest_path(&m.key), bytes))
                .unwrap();
        });
        assert!(err.contains("decompresses to"), "{err}");
    }

    #[test]
    fn a_manifest_for_other_inputs_is_a_miss() {
        let err = pull_after(|op, m, rt| {
            let mut m = m.clone();
            m.inputs.version = "6.1.0".into();
            let bytes = serde_json::to_vec(&m).unwrap();
            rt.block_on(op.write(&manifest_path(&inputs().key()), bytes))
                .unwrap();
        });
        assert!(err.contains("other key inputs"), "{err}");
    }

    #[test]
    fn a_hostile_manifest_names_no_path_outside_the_entry() {
        let err = pull_after(|op, m, rt| {
            let mut m = m.clone();
            m.files[0].name = "../../../escaped".into();
            let bytes = serde_json::to_vec(&m).unwrap();
            rt.block_on(op.write(&manifest_path(&inputs().key()), bytes))
                .unwrap();
        });
        assert!(err.contains("no kernel entry holds"), "{err}");
    }

    #[test]
    fn the_fs_service_round_trips_atomically() {
        let tmp = tempfile::tempdir().unwrap();
        let store = store_with_kernel(tmp.path(), inputs().source);
        let root = tmp.path().join("shared");
        let spec = RemoteSpec::from_args(Some(&format!("file://{}", root.display())), true)
            .unwrap()
            .unwrap();
        let r = Remote::open(spec).unwrap();
        r.push(&store, "k", &Progress::silent()).unwrap();
        let empty = KernelStore::new(tmp.path().join("empty"));
        assert!(
            r.pull(&empty, &inputs(), "k", &Progress::silent())
                .unwrap()
                .is_some()
        );
        let check = r.check().unwrap();
        assert!(
            check.read.ok && check.list.ok && check.write.as_ref().unwrap().ok,
            "{check:?}"
        );
    }
}
