//! The remote format, version 1 (docs/remote-cache.md is its full text):
//! `v1/blobs/<sha256>` holds zstd-compressed bytes named by the SHA-256 of
//! those bytes, and `v1/kernels/<key>.json` is a [`Manifest`]. This module
//! checks a manifest before any blob is fetched.

use anyhow::{Result, bail, ensure};
use serde::{Deserialize, Serialize};

use crate::kernel::key::{KeyInputs, Toolchain};
use crate::kernel::store::{CONFIG_FILE, IMAGE_FILE, VMLINUX_FILE};

/// The manifest's `format` field.
pub(crate) const FORMAT: &str = "ktstr-remote-kernel/1";

/// A manifest larger than this is hostile: a real one is about 1 KiB.
pub(crate) const MANIFEST_CAP: u64 = 64 << 10;

/// The files an entry may hold, each with the largest size accepted: no
/// other name is ever written, so a manifest cannot name a path.
const FILE_CAPS: [(&str, u64); 3] = [
    (IMAGE_FILE, 256 << 20),
    (VMLINUX_FILE, 1 << 30),
    (CONFIG_FILE, 4 << 20),
];

/// One kernel in the remote: its key inputs, and each file of its entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Manifest {
    pub format: String,
    /// SHA-256 of the canonical JSON of `inputs`.
    pub key: String,
    pub inputs: KeyInputs,
    /// The compiler and linker of the pusher's build, for provenance.
    pub toolchain: Toolchain,
    pub files: Vec<FileEntry>,
}

/// A file of the entry and the blob that holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileEntry {
    /// `bzImage`, `vmlinux` or `config`.
    pub name: String,
    /// Its size and SHA-256, uncompressed.
    pub size: u64,
    pub sha256: String,
    /// SHA-256 and size of the zstd-compressed blob.
    pub blob: String,
    pub blob_size: u64,
}

/// The path of a manifest.
pub(crate) fn manifest_path(key: &str) -> String {
    format!("v1/kernels/{key}.json")
}

/// The path of a blob.
pub(crate) fn blob_path(sha256: &str) -> String {
    format!("v1/blobs/{sha256}")
}

/// The largest zstd frame `size` bytes can compress to (zstd's own bound,
/// plus room for the frame header).
pub(crate) fn compress_bound(size: u64) -> u64 {
    size + size / 255 + (128 << 10)
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Parses the manifest bytes read from the remote for `inputs` and checks
/// everything that can be checked before a blob is fetched.
pub(crate) fn parse_manifest(bytes: &[u8], inputs: &KeyInputs) -> Result<Manifest> {
    ensure!(
        bytes.len() as u64 <= MANIFEST_CAP,
        "the manifest is larger than {MANIFEST_CAP} bytes"
    );
    let manifest: Manifest = serde_json::from_slice(bytes)
        .map_err(|e| anyhow::anyhow!("the manifest is not a version-1 manifest: {e}"))?;
    check_manifest(&manifest, inputs)?;
    Ok(manifest)
}

/// The checks of [`parse_manifest`] on a parsed manifest.
pub(crate) fn check_manifest(m: &Manifest, inputs: &KeyInputs) -> Result<()> {
    ensure!(m.format == FORMAT, "unknown manifest format `{}`", m.format);
    ensure!(
        m.inputs == *inputs,
        "the manifest is for other key inputs than this source's"
    );
    ensure!(
        m.key == inputs.key(),
        "the manifest's key does not match its inputs"
    );
    let mut seen = Vec::new();
    let mut total = 0u64;
    for f in &m.files {
        let Some((_, cap)) = FILE_CAPS.iter().find(|(name, _)| *name == f.name) else {
            bail!(
                "the manifest names a file `{}` no kernel entry holds",
                f.name.escape_debug()
            );
        };
        ensure!(
            !seen.contains(&&f.name),
            "the manifest lists `{}` twice",
            f.name
        );
        seen.push(&f.name);
        ensure!(
            f.size <= *cap,
            "the manifest's `{}` is {} bytes, more than the {cap} accepted",
            f.name,
            f.size
        );
        ensure!(
            is_sha256(&f.sha256) && is_sha256(&f.blob),
            "the manifest's `{}` has a malformed hash",
            f.name
        );
        ensure!(
            f.blob_size > 0 && f.blob_size <= compress_bound(f.size),
            "the manifest's `{}` blob size {} cannot hold {} bytes",
            f.name,
            f.blob_size,
            f.size
        );
        total += f.size;
    }
    ensure!(
        seen.iter().any(|n| *n == IMAGE_FILE),
        "the manifest has no `{IMAGE_FILE}`"
    );
    ensure!(total > 0, "the manifest's files are empty");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::key::SourceIdentity;

    pub(crate) fn inputs() -> KeyInputs {
        KeyInputs {
            recipe: 1,
            arch: "x86_64".into(),
            version: "6.12.57".into(),
            source: SourceIdentity::Tarball("ab".repeat(32)),
            fragments: vec![("template.config".into(), "cd".repeat(32))],
        }
    }

    fn manifest() -> Manifest {
        Manifest {
            format: FORMAT.into(),
            key: inputs().key(),
            inputs: inputs(),
            toolchain: Toolchain {
                compiler: "gcc".into(),
                linker: "ld".into(),
            },
            files: vec![FileEntry {
                name: IMAGE_FILE.into(),
                size: 1000,
                sha256: "1".repeat(64),
                blob: "2".repeat(64),
                blob_size: 900,
            }],
        }
    }

    fn refused(edit: impl FnOnce(&mut Manifest)) -> String {
        let mut m = manifest();
        edit(&mut m);
        let bytes = serde_json::to_vec(&m).unwrap();
        parse_manifest(&bytes, &inputs()).unwrap_err().to_string()
    }

    #[test]
    fn a_good_manifest_round_trips() {
        let bytes = serde_json::to_vec(&manifest()).unwrap();
        assert_eq!(parse_manifest(&bytes, &inputs()).unwrap(), manifest());
    }

    #[test]
    fn hostile_manifests_are_refused() {
        for name in [
            "../../etc/passwd",
            "/etc/passwd",
            "bzImage/../x",
            "",
            "vmlinux\0",
        ] {
            let err = refused(|m| m.files[0].name = name.into());
            assert!(err.contains("no kernel entry holds"), "{name}: {err}");
        }
        let err = refused(|m| m.files[0].size = u64::MAX);
        assert!(err.contains("more than"), "{err}");
        let err = refused(|m| m.files[0].blob_size = u64::MAX);
        assert!(err.contains("blob size"), "{err}");
        let err = refused(|m| m.files[0].blob = "../../x".into());
        assert!(err.contains("malformed hash"), "{err}");
        let err = refused(|m| m.files.push(m.files[0].clone()));
        assert!(err.contains("twice"), "{err}");
        let err = refused(|m| m.files[0].name = CONFIG_FILE.into());
        assert!(err.contains("no `bzImage`"), "{err}");
        let err = refused(|m| m.inputs.version = "6.1.0".into());
        assert!(err.contains("other key inputs"), "{err}");
        let err = refused(|m| m.format = "ktstr-remote-kernel/2".into());
        assert!(err.contains("unknown manifest format"), "{err}");
        let huge = vec![b' '; MANIFEST_CAP as usize + 1];
        let err = parse_manifest(&huge, &inputs()).unwrap_err().to_string();
        assert!(err.contains("larger than"), "{err}");
        let err = parse_manifest(b"{\"format\":1}", &inputs())
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a version-1 manifest"), "{err}");
    }
}
