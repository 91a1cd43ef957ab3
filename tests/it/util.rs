//! Shared helpers: run the binary in a temporary cache.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use cargo_ktstr::cache::ensure::{self, EnsureOptions, Ensured, HostMkfsBuilder};
use cargo_ktstr::cache::filesystem::Filesystem;
use cargo_ktstr::cache::key::Capacity;

/// The `cargo-ktstr` binary built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cargo-ktstr"))
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Returns `None` after printing why a test skips when `present` is false;
/// under CI (`$CI` set) a missing prerequisite fails the test instead.
pub fn require<T>(present: bool, why: &str) -> Option<T> {
    assert!(
        present || std::env::var_os("CI").is_none(),
        "CI must have every prerequisite: {why}"
    );
    if !present {
        eprintln!("skipped: {why}");
    }
    None
}

/// The binary with `--cache-dir root`.
pub fn ktstr(root: &Path) -> Command {
    let mut cmd = Command::new(bin());
    cmd.arg("--cache-dir").arg(root);
    cmd
}

/// Publishes a real template (host mkfs) under `root`, as a cache hit for
/// the CLI tests.
pub fn populate(root: &Path, fs: Filesystem, mib: u64) -> Ensured {
    let cap = Capacity::from_mib(mib).unwrap();
    ensure::ensure_template(root, fs, cap, &HostMkfsBuilder, &EnsureOptions::default()).unwrap()
}

/// The environment variable that turns a test of this binary into a child
/// process's body; see [`child`].
pub const CHILD_ENV: &str = "KTSTR_IT_CHILD";

/// This test binary running only the test `name`, with `arg` in
/// [`CHILD_ENV`]: a second process that links the library, as cargo's own
/// test suite does, so no helper binary is shipped.
pub fn child(name: &str, arg: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        name,
        "--exact",
        "--nocapture",
        "--test-threads=1",
        "--quiet",
    ])
    .env(CHILD_ENV, arg)
    .env_remove("RUST_LOG");
    cmd
}

/// A child process, killed (SIGKILL) if still running when dropped, whose
/// stderr lines arrive on a channel as they are written.
#[derive(Debug)]
pub struct Spawned {
    pub child: Child,
    pub stderr: Receiver<String>,
    seen: Vec<String>,
}

impl Spawned {
    pub fn new(mut cmd: Command) -> Spawned {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Spawned {
            child,
            stderr: rx,
            seen: Vec::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to a minute for a stderr line containing `needle`.
    pub fn wait_for_stderr(&mut self, needle: &str) -> String {
        loop {
            match self.stderr.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => self.seen.push(line),
                Err(e) => panic!("no `{needle}` on stderr ({e}); saw {:?}", self.seen),
            }
        }
    }

    /// Waits for the exit; returns the status, stdout and all of stderr.
    pub fn finish(mut self) -> (std::process::ExitStatus, String, String) {
        let mut out = String::new();
        use std::io::Read;
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let status = self.child.wait().unwrap();
        let mut err = std::mem::take(&mut self.seen);
        // Ends when the child's stderr closes.
        err.extend(self.stderr.iter());
        (status, out, err.join("\n"))
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
