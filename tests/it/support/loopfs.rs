//! Real filesystems on loop devices inside a temporary directory, for the
//! tests that need btrfs, xfs or ext4 whatever the host's own filesystem is.
//!
//! [`LoopFs::new`] formats a sparse backing file ([`FsImage`]), attaches
//! it with `losetup --find --show` and mounts it; dropping it (also while a
//! failed test unwinds) unmounts, detaches and removes everything.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::prerequisite;

/// A mounted filesystem on a loop device; torn down on drop.
#[derive(Debug)]
pub(crate) struct LoopFs {
    mnt: PathBuf,
    device: Option<String>,
    mounted: bool,
    // Dropped last: holds the backing file and the mount point.
    _dir: tempfile::TempDir,
}

impl LoopFs {
    /// A `size_mib` MiB `fs` ("btrfs", "xfs", "ext4") mounted in a new
    /// temporary directory, or `None` (after saying why) where this host
    /// cannot; under CI a missing prerequisite fails the test instead.
    pub(crate) fn new(fs: &str, size_mib: u64) -> Option<LoopFs> {
        FsImage::new(fs, size_mib)?.mount()
    }

    /// The mount point.
    pub(crate) fn path(&self) -> &Path {
        &self.mnt
    }
}

/// A sparse backing file formatted as a filesystem, not yet attached, in a
/// temporary directory of its own: a disk to hand a guest, then mount.
#[derive(Debug)]
pub(crate) struct FsImage {
    backing: PathBuf,
    dir: tempfile::TempDir,
}

impl FsImage {
    /// A `size_mib` MiB `fs` image, or `None` (after [`prerequisite`]).
    pub(crate) fn new(fs: &str, size_mib: u64) -> Option<FsImage> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let backing = dir.path().join("backing.img");
        std::fs::File::create(&backing)
            .and_then(|f| f.set_len(size_mib << 20))
            .expect("backing file");
        let force = if fs == "ext4" { "-F" } else { "-f" };
        run(Command::new(format!("mkfs.{fs}"))
            .args(["-q", force])
            .arg(&backing))?;
        Some(FsImage { backing, dir })
    }

    /// The backing file.
    pub(crate) fn path(&self) -> &Path {
        &self.backing
    }

    /// Attaches the image to a loop device and mounts it.
    pub(crate) fn mount(self) -> Option<LoopFs> {
        if !nix::unistd::geteuid().is_root() {
            return missing("root (to mount loop devices)");
        }
        if !Path::new("/dev/loop-control").exists() {
            return missing("/dev/loop-control (loop devices)");
        }
        let mut me = LoopFs {
            mnt: self.dir.path().join("mnt"),
            device: None,
            mounted: false,
            _dir: self.dir,
        };
        let device = run(Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&self.backing))?;
        me.device = Some(device.trim().to_owned());
        std::fs::create_dir(&me.mnt).expect("mount point");
        run(Command::new("mount").arg(device.trim()).arg(&me.mnt))?;
        me.mounted = true;
        Some(me)
    }
}

/// Runs a setup command; its failure is a missing prerequisite.
fn run(cmd: &mut Command) -> Option<String> {
    let what = format!("{cmd:?}");
    match cmd.output() {
        Ok(out) if out.status.success() => Some(String::from_utf8_lossy(&out.stdout).into_owned()),
        Ok(out) => missing(&format!(
            "a working {what} (it failed: {})",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => missing(&format!("{what} (it could not run: {e})")),
    }
}

fn missing<T>(what: &str) -> Option<T> {
    prerequisite(what, false);
    None
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        if self.mounted {
            let ok = Command::new("umount")
                .arg(&self.mnt)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                // Something still has a file open there: detach lazily so the
                // loop device goes once it is closed.
                let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
            }
        }
        if let Some(device) = &self.device {
            let _ = Command::new("losetup").arg("-d").arg(device).status();
        }
    }
}
