//! Real unprivileged users for the tests whose names contain
//! `unprivileged`: `.ci/run` creates them (`useradd`), with homes, in no
//! `kvm` group, and the tests, running as root, run the binary as them.
//!
//! Each command runs with the user's uid, gid and no supplementary groups,
//! a clean environment (HOME, USER, a PATH without cargo), and a copy of the
//! binary in a world-readable directory: the build directory may sit under
//! root's 0700 home.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::{bin, prerequisite};

/// The first and second test users `.ci/run` creates.
pub(crate) const ALICE: &str = "ktstr-alice";
pub(crate) const BOB: &str = "ktstr-bob";

/// A real user to run the binary as.
#[derive(Debug, Clone)]
pub(crate) struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

impl User {
    /// `name` when it exists and this test runs as root (which running as
    /// another user needs); `None` after [`prerequisite`] otherwise.
    pub(crate) fn get(name: &str) -> Option<User> {
        if !prerequisite(
            "root (to run as a test user)",
            nix::unistd::geteuid().is_root(),
        ) {
            return None;
        }
        let found = nix::unistd::User::from_name(name).ok().flatten();
        let what = format!("the test user `{name}` (`.ci/run` creates it)");
        if !prerequisite(&what, found.is_some()) {
            return None;
        }
        let user = found?;
        Some(User {
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            home: user.dir,
        })
    }

    /// `program` as this user, in a clean environment.
    pub(crate) fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("HOME", &self.home)
            .env("USER", &self.name)
            .env("LOGNAME", &self.name)
            .env(
                "PATH",
                "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin",
            )
            .current_dir(&self.home)
            .uid(self.uid)
            .gid(self.gid);
        if let Some(ci) = std::env::var_os("CI") {
            cmd.env("CI", ci);
        }
        // No pre_exec setgroups: it would run after setuid and fail (EPERM);
        // std clears the supplementary groups itself when root sets a uid.
        cmd
    }

    /// The binary as this user (a world-readable copy of it).
    pub(crate) fn ktstr(&self) -> Command {
        self.command(shared_bin())
    }

    /// A directory in this user's home, made (and owned by them) afresh.
    pub(crate) fn fresh_dir(&self, name: &str) -> PathBuf {
        let dir = self.home.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        nix::unistd::chown(&dir, Some(self.uid.into()), Some(self.gid.into())).unwrap();
        dir
    }
}

/// A copy of the binary every user can run, made once per test process.
pub(crate) fn shared_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("ktstr-it-bin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let copy = dir.join("cargo-ktstr");
        // Copy to a new name and rename: a concurrent test may be running
        // the copy already, and writing over it would fail with ETXTBSY.
        let part = dir.join(format!(
            "cargo-ktstr.part.{:?}",
            std::thread::current().id()
        ));
        std::fs::copy(bin(), &part).unwrap();
        std::fs::set_permissions(&part, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(&part, &copy).unwrap();
        copy
    })
}
