//! A kernel source: a directory or a tarball, its version, and the tools a
//! build needs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// Where the kernel source is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An unpacked, unconfigured source tree.
    Dir(PathBuf),
    /// A tarball (any compression tar understands) with one top directory.
    Tarball {
        /// The tarball.
        path: PathBuf,
        /// Its one top directory, e.g. `linux-source-6.12`.
        top: String,
    },
}

impl Source {
    /// Inspects `path`: a directory with a top-level Makefile, or a tarball.
    pub fn open(path: &Path) -> Result<Source> {
        let meta = fs::metadata(path)
            .with_context(|| format!("failed to read kernel source `{}`", path.display()))?;
        if meta.is_dir() {
            if !path.join("Makefile").is_file() {
                bail!(
                    "`{}` has no Makefile: pass the top of a kernel source tree or a tarball",
                    path.display()
                );
            }
            return Ok(Source::Dir(path.to_owned()));
        }
        // Before tar runs: a missing decompressor would otherwise surface
        // as an archive tar cannot list.
        let unpackers: Vec<(&str, &str)> = std::iter::once(("tar", "tar"))
            .chain(decompressor(path))
            .collect();
        check_tools(&unpackers, false)?;
        let top = tarball_top_dir(path)?;
        Ok(Source::Tarball {
            path: path.to_owned(),
            top,
        })
    }

    /// The kernel version from the top Makefile, e.g. `6.12.57`.
    pub fn version(&self) -> Result<String> {
        let makefile = match self {
            Source::Dir(dir) => {
                let path = dir.join("Makefile");
                fs::read_to_string(&path)
                    .with_context(|| format!("failed to read `{}`", path.display()))?
            }
            Source::Tarball { path, top } => {
                // --occurrence stops at the first match instead of reading the
                // whole archive.
                let member = format!("{top}/Makefile");
                let out = Command::new("tar")
                    .args(["-xOf"])
                    .arg(path)
                    .args(["--occurrence=1", &member])
                    .stderr(Stdio::piped())
                    .output()
                    .context("failed to run tar: install the `tar` package")?;
                if !out.status.success() {
                    bail!(
                        "`{}` has no `{member}`: is it a kernel source tarball? ({})",
                        path.display(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
                String::from_utf8_lossy(&out.stdout).into_owned()
            }
        };
        parse_version(&makefile).with_context(|| {
            format!(
                "cannot read the kernel version from the Makefile of `{}`",
                self.display()
            )
        })
    }

    /// Unpacks a tarball into `dir` and returns the tree; a directory is used in place.
    pub fn unpack(&self, dir: &Path) -> Result<PathBuf> {
        match self {
            Source::Dir(tree) => Ok(tree.clone()),
            Source::Tarball { path, top } => {
                let status = Command::new("tar")
                    .arg("-xf")
                    .arg(path)
                    .arg("-C")
                    .arg(dir)
                    .status()
                    .context("failed to run tar: install the `tar` package")?;
                if !status.success() {
                    bail!("failed to unpack `{}` ({status})", path.display());
                }
                Ok(dir.join(top))
            }
        }
    }

    /// The source for messages: its path.
    pub fn display(&self) -> String {
        match self {
            Source::Dir(p) | Source::Tarball { path: p, .. } => p.display().to_string(),
        }
    }
}

/// The first member of a tarball names its top directory.
fn tarball_top_dir(path: &Path) -> Result<String> {
    // `head` closes the pipe after one line, so tar stops decompressing
    // there instead of listing a 140 MiB archive; the path goes in as $1,
    // never into the script.
    let out = Command::new("sh")
        .arg("-c")
        .arg("tar -tf \"$1\" | head -n 1")
        .arg("sh")
        .arg(path)
        .output()
        .context("failed to run tar: install the `tar` package")?;
    let first = String::from_utf8_lossy(&out.stdout);
    let top = first.trim().split('/').next().unwrap_or("");
    if top.is_empty() {
        bail!(
            "`{}` is neither a directory nor a tarball tar can list: pass a kernel source tree or tarball ({})",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(top.to_owned())
}

/// `VERSION.PATCHLEVEL.SUBLEVEL` plus EXTRAVERSION, as `make kernelversion` prints.
fn parse_version(makefile: &str) -> Result<String> {
    let field = |name: &str| -> Option<&str> {
        makefile.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == name).then(|| v.trim())
        })
    };
    let (Some(v), Some(p), Some(s)) = (field("VERSION"), field("PATCHLEVEL"), field("SUBLEVEL"))
    else {
        bail!("VERSION, PATCHLEVEL or SUBLEVEL is missing");
    };
    let extra = field("EXTRAVERSION").unwrap_or("");
    // The version becomes a directory name: keep it to safe characters.
    let version = format!("{v}.{p}.{s}{extra}");
    if version
        .chars()
        .any(|c| !(c.is_ascii_alphanumeric() || ".-_+".contains(c)))
    {
        bail!("unexpected version `{version}`");
    }
    Ok(version)
}

/// A tool the kernel build needs, and the Debian package that ships it.
const TOOLS: [(&str, &str); 8] = [
    ("make", "make"),
    ("gcc", "gcc"),
    ("flex", "flex"),
    ("bison", "bison"),
    ("bc", "bc"),
    ("tar", "tar"),
    ("xz", "xz-utils"),
    // The template fragment compresses the image with LZ4.
    ("lz4", "lz4"),
];

/// The program tar runs to decompress `tarball`, by its name, and its package.
fn decompressor(tarball: &Path) -> Option<(&'static str, &'static str)> {
    let name = tarball.file_name()?.to_str()?;
    [
        (".xz", ("xz", "xz-utils")),
        (".txz", ("xz", "xz-utils")),
        (".gz", ("gzip", "gzip")),
        (".tgz", ("gzip", "gzip")),
        (".bz2", ("bzip2", "bzip2")),
        (".zst", ("zstd", "zstd")),
    ]
    .into_iter()
    .find_map(|(ext, tool)| name.ends_with(ext).then_some(tool))
}

/// Fails, naming the packages to install, when a build tool or libelf's
/// headers (objtool needs them) are missing.
pub(crate) fn check_build_tools() -> Result<()> {
    check_tools(&TOOLS, true)
}

/// Fails, naming the packages to install, when one of `tools` is not on
/// PATH (or, with `libelf`, libelf's headers are missing).
fn check_tools(tools: &[(&str, &str)], libelf: bool) -> Result<()> {
    let mut missing: Vec<&str> = tools
        .iter()
        .filter(|(tool, _)| crate::host::find_program(tool).is_none())
        .map(|(_, package)| *package)
        .collect();
    let headers = ["/usr/include/gelf.h", "/usr/include/libelf.h"];
    if libelf && !headers.iter().any(|h| Path::new(h).exists()) {
        missing.push("libelf-dev");
    }
    if !missing.is_empty() {
        bail!(
            "the kernel build needs packages that are not installed: {}; install them \
             (apt-get install {}) and run again",
            missing.join(", "),
            missing.join(" ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_from_a_makefile() {
        let mk =
            "# SPDX\nVERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 57\nEXTRAVERSION =\nNAME = Baby\n";
        assert_eq!(parse_version(mk).unwrap(), "6.12.57");
        let rc = mk.replace("EXTRAVERSION =", "EXTRAVERSION = -rc3");
        assert_eq!(parse_version(&rc).unwrap(), "6.12.57-rc3");
        assert!(parse_version("VERSION = 6\n").is_err());
        assert!(parse_version(&mk.replace("57", "5/7")).is_err());
    }

    #[test]
    fn a_directory_without_makefile_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = Source::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("has no Makefile"), "{err}");
        std::fs::write(
            dir.path().join("Makefile"),
            "VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 2\n",
        )
        .unwrap();
        let src = Source::open(dir.path()).unwrap();
        assert_eq!(src.version().unwrap(), "6.1.2");
    }

    #[test]
    fn a_tarball_is_read_without_unpacking() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("linux-x");
        std::fs::create_dir(&tree).unwrap();
        std::fs::write(
            tree.join("Makefile"),
            "VERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 9\n",
        )
        .unwrap();
        let tarball = dir.path().join("linux.tar.gz");
        let ok = Command::new("tar")
            .arg("-czf")
            .arg(&tarball)
            .arg("-C")
            .arg(dir.path())
            .arg("linux-x")
            .status()
            .unwrap();
        assert!(ok.success());
        let src = Source::open(&tarball).unwrap();
        assert_eq!(
            src,
            Source::Tarball {
                path: tarball.clone(),
                top: "linux-x".into()
            }
        );
        assert_eq!(src.version().unwrap(), "6.12.9");
        let not_tar = dir.path().join("x.txt");
        std::fs::write(&not_tar, "hello").unwrap();
        assert!(Source::open(&not_tar).is_err());
    }
}
