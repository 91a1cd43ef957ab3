//! What a built kernel is made from, and the key that names it, locally
//! and in a remote cache alike (docs/remote-cache.md).
//!
//! The key is SHA-256 over the canonical JSON of [`KeyInputs`]: the recipe's
//! version, the architecture, the source's version and identity, and the
//! fragments. The compiler and linker are recorded beside it
//! ([`Toolchain`]) but are not in it: a machine with no compiler must be
//! able to compute the key of the kernel it pulls.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::source::Source;

/// Bumped whenever `build.rs` changes how it turns the same inputs into a
/// kernel (tinyconfig, the merge, the make targets and variables).
pub(crate) const RECIPE_VERSION: u32 = 1;

/// Hex characters of the key kept in a kernel's local cache name.
pub(crate) const NAME_KEY_LEN: usize = 12;

/// How a source is identified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "sha")]
pub enum SourceIdentity {
    /// SHA-256 of the tarball's bytes.
    Tarball(String),
    /// The tree object of a git work tree with no changes (`HEAD^{tree}`).
    GitTree(String),
    /// SHA-256 over a git work tree's HEAD tree and its changes: built
    /// locally, never pushed.
    DirtyGitTree(String),
    /// SHA-256 over every file of a plain directory: paths, modes, bytes.
    Dir(String),
}

impl SourceIdentity {
    /// Whether a kernel built from it may be pushed: a dirty work tree is
    /// somebody's unfinished edit, not a fleet's kernel.
    pub fn shareable(&self) -> bool {
        !matches!(self, SourceIdentity::DirtyGitTree(_))
    }
}

/// Everything the key names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyInputs {
    /// The build recipe's version: a new one changes every key.
    pub recipe: u32,
    /// The target architecture, e.g. `x86_64`.
    pub arch: String,
    /// The source's kernel version, e.g. `6.12.57`.
    pub version: String,
    /// What the source is, by content.
    pub source: SourceIdentity,
    /// (file name, SHA-256 of its text), in merge order.
    pub fragments: Vec<(String, String)>,
}

impl KeyInputs {
    /// The inputs of `fragments`' kernel from `source`.
    pub fn compute(source: &Source, fragments: &[(&str, &str)]) -> Result<KeyInputs> {
        // Side by side: for a tarball, tar decompresses up to the Makefile
        // while this thread hashes the file (about 2 s and 0.5 s for
        // Debian's 150 MB .tar.xz), which a fresh runner pays on each pull.
        let (version, identity) = std::thread::scope(|scope| {
            let version = scope.spawn(|| source.version());
            let identity = identify(source);
            (version.join(), identity)
        });
        let version = version.unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        Ok(KeyInputs {
            recipe: RECIPE_VERSION,
            arch: std::env::consts::ARCH.to_owned(),
            version,
            source: identity?,
            fragments: fragments
                .iter()
                .map(|(name, text)| (name.to_string(), sha256_hex(text.as_bytes())))
                .collect(),
        })
    }

    /// The key: SHA-256 of the inputs' canonical JSON, in hex.
    pub fn key(&self) -> String {
        // Field order is the struct's and the values hold no maps, so the
        // serialization is canonical.
        sha256_hex(&serde_json::to_vec(self).expect("key inputs serialize"))
    }

    /// The first [`NAME_KEY_LEN`] characters of the key, for a cache name.
    pub fn short_key(&self) -> String {
        self.key()[..NAME_KEY_LEN].to_owned()
    }
}

/// The compiler and linker a kernel was built with, first lines of their
/// `--version`, for provenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Toolchain {
    /// `gcc --version`'s first line.
    pub compiler: String,
    /// `ld --version`'s first line.
    pub linker: String,
}

impl Toolchain {
    /// This host's, or `unknown` for a tool that does not run.
    pub fn detect() -> Toolchain {
        let first_line = |tool: &str| {
            Command::new(tool)
                .arg("--version")
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .next()
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| "unknown".to_owned())
        };
        Toolchain {
            compiler: first_line("gcc"),
            linker: first_line("ld"),
        }
    }
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The identity of `source`'s contents.
pub(crate) fn identify(source: &Source) -> Result<SourceIdentity> {
    match source {
        Source::Tarball { path, .. } => Ok(SourceIdentity::Tarball(hash_file(path)?)),
        Source::Dir(dir) => match git_identity(dir)? {
            Some(id) => Ok(id),
            None => Ok(SourceIdentity::Dir(hash_tree(dir)?)),
        },
    }
}

fn hash_file(path: &Path) -> Result<String> {
    let mut file =
        File::open(path).with_context(|| format!("failed to open `{}`", path.display()))?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher)
        .with_context(|| format!("failed to read `{}`", path.display()))?;
    Ok(hex(&hasher.finalize()))
}

/// Runs git in `dir`; `None` when git is missing or fails.
fn git(dir: &Path, args: &[&str]) -> Option<Vec<u8>> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status.success().then_some(out.stdout)
}

/// A git work tree's identity, when `dir` is the top of one with a commit.
fn git_identity(dir: &Path) -> Result<Option<SourceIdentity>> {
    let Some(top) = git(dir, &["rev-parse", "--show-toplevel"]) else {
        return Ok(None);
    };
    let top = String::from_utf8_lossy(&top).trim().to_owned();
    let same = |a: &Path, b: &Path| fs::canonicalize(a).ok() == fs::canonicalize(b).ok();
    if !same(Path::new(&top), dir) {
        // A kernel tree inside some other repository: git's view of it is
        // the outer repository's, so hash the files instead.
        return Ok(None);
    }
    let Some(tree) = git(dir, &["rev-parse", "HEAD^{tree}"]) else {
        return Ok(None);
    };
    let tree = String::from_utf8_lossy(&tree).trim().to_owned();
    let status = git(
        dir,
        &["status", "--porcelain", "-z", "--untracked-files=all"],
    )
    .with_context(|| format!("`git status` failed in `{}`", dir.display()))?;
    if status.is_empty() {
        return Ok(Some(SourceIdentity::GitTree(tree)));
    }
    // The changes: the diff against HEAD, then each changed or untracked
    // path's current bytes.
    let diff = git(dir, &["diff", "HEAD", "--binary"])
        .with_context(|| format!("`git diff` failed in `{}`", dir.display()))?;
    let mut hasher = Sha256::new();
    hasher.update(tree.as_bytes());
    hasher.update(&diff);
    hasher.update(&status);
    for entry in status.split(|b| *b == 0).filter(|e| e.len() > 3) {
        let path = dir.join(String::from_utf8_lossy(&entry[3..]).as_ref());
        if let Ok(bytes) = fs::read(&path) {
            hasher.update(&bytes);
        }
    }
    Ok(Some(SourceIdentity::DirtyGitTree(hex(&hasher.finalize()))))
}

/// SHA-256 over every file under `dir` in path order: its relative path,
/// whether it is executable, and its bytes (a symlink: its target).
fn hash_tree(dir: &Path) -> Result<String> {
    let mut files = Vec::new();
    walk(dir, Path::new(""), &mut files)?;
    files.sort();
    let mut hasher = Sha256::new();
    for rel in files {
        let path = dir.join(&rel);
        let meta = fs::symlink_metadata(&path)
            .with_context(|| format!("failed to stat `{}`", path.display()))?;
        hasher.update(rel.as_os_str().as_encoded_bytes());
        hasher.update([0]);
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&path)
                .with_context(|| format!("failed to read link `{}`", path.display()))?;
            hasher.update(b"l");
            hasher.update(target.as_os_str().as_encoded_bytes());
        } else {
            use std::os::unix::fs::PermissionsExt;
            let exec = meta.permissions().mode() & 0o111 != 0;
            hasher.update(if exec { b"x" } else { b"f" });
            hasher.update(meta.len().to_le_bytes());
            let mut file = File::open(&path)
                .with_context(|| format!("failed to open `{}`", path.display()))?;
            let mut buf = Vec::new();
            file.read_to_end(&mut buf)
                .with_context(|| format!("failed to read `{}`", path.display()))?;
            hasher.update(&buf);
        }
    }
    Ok(hex(&hasher.finalize()))
}

fn walk(root: &Path, rel: &Path, files: &mut Vec<std::path::PathBuf>) -> Result<()> {
    let dir = root.join(rel);
    let entries =
        fs::read_dir(&dir).with_context(|| format!("failed to read `{}`", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("failed to read `{}`", dir.display()))?;
        let kind = entry
            .file_type()
            .with_context(|| format!("failed to stat `{}`", entry.path().display()))?;
        let rel = rel.join(entry.file_name());
        if kind.is_dir() {
            walk(root, &rel, files)?;
        } else if kind.is_file() || kind.is_symlink() {
            files.push(rel);
        } else {
            bail!(
                "`{}` is neither a file nor a directory: a kernel source holds neither \
                 sockets nor devices; remove it",
                entry.path().display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAKEFILE: &str = "VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 2\n";

    fn inputs(dir: &Path) -> KeyInputs {
        KeyInputs::compute(&Source::open(dir).unwrap(), &[("t.config", "CONFIG_X=y\n")]).unwrap()
    }

    fn run(dir: &Path, args: &[&str]) {
        let ok = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "git {args:?}");
    }

    #[test]
    fn a_plain_directory_changes_key_with_its_contents() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("Makefile"), MAKEFILE).unwrap();
        fs::create_dir(dir.path().join("kernel")).unwrap();
        fs::write(dir.path().join("kernel/sched.c"), "int x;\n").unwrap();
        let a = inputs(dir.path());
        assert!(matches!(a.source, SourceIdentity::Dir(_)));
        assert_eq!(a.key(), inputs(dir.path()).key(), "stable");
        fs::write(dir.path().join("kernel/sched.c"), "int y;\n").unwrap();
        let b = inputs(dir.path());
        assert_ne!(a.key(), b.key());
        assert_ne!(a.short_key(), b.short_key());
        assert_eq!(a.version, "6.1.2");
    }

    #[test]
    fn a_git_tree_is_its_tree_hash_and_dirty_when_edited() {
        if Command::new("git").arg("--version").output().is_err() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("Makefile"), MAKEFILE).unwrap();
        run(d, &["init", "-q"]);
        run(d, &["add", "."]);
        run(
            d,
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "commit",
                "-q",
                "-m",
                "x",
            ],
        );
        let clean = inputs(d);
        let SourceIdentity::GitTree(tree) = &clean.source else {
            panic!("{:?}", clean.source)
        };
        assert_eq!(tree.len(), 40);
        assert!(clean.source.shareable());
        fs::write(d.join("new.c"), "int z;\n").unwrap();
        let dirty = inputs(d);
        assert!(matches!(dirty.source, SourceIdentity::DirtyGitTree(_)));
        assert!(!dirty.source.shareable());
        assert_ne!(clean.key(), dirty.key());
        fs::write(d.join("new.c"), "int w;\n").unwrap();
        assert_ne!(dirty.key(), inputs(d).key(), "each edit is a new key");
        fs::remove_file(d.join("new.c")).unwrap();
        assert_eq!(clean.key(), inputs(d).key());
    }

    #[test]
    fn fragments_and_recipe_are_in_the_key() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("Makefile"), MAKEFILE).unwrap();
        let a = inputs(dir.path());
        let src = Source::open(dir.path()).unwrap();
        let b = KeyInputs::compute(&src, &[("t.config", "CONFIG_Y=y\n")]).unwrap();
        assert_ne!(a.key(), b.key());
        let c = KeyInputs {
            recipe: RECIPE_VERSION + 1,
            ..a.clone()
        };
        assert_ne!(a.key(), c.key());
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<KeyInputs>(&json).unwrap(), a);
    }
}
