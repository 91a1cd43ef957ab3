//! What the tests share: running the binary on a temporary cache root, its
//! children and lock holders (here); prerequisite gates ([`gates`]); images,
//! entries and a full disk ([`images`]); loop-mounted filesystems
//! ([`loopfs`]); the real unprivileged users ([`users`]).

pub(crate) mod gates;
pub(crate) mod images;
pub(crate) mod loopfs;
pub(crate) mod users;

pub(crate) use gates::{guest_kernel, guest_prerequisites, kvm_usable, prerequisite};
pub(crate) use images::{current_key, magic_image, mkfs_image, populate, shared_extents};

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// The `cargo-ktstr` binary built for these tests.
pub(crate) fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cargo-ktstr"))
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs the binary on the template root `root` with `args`, killing it if it
/// runs longer than a minute (a sweep that blocks is a failure, not a hang).
pub(crate) fn ktstr(root: &Path, args: &[&str]) -> Output {
    let mut child = ktstr_cmd(root)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cargo-ktstr");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("cargo-ktstr {args:?} hung; stderr: {}", stderr(&out));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Like [`ktstr`], but the run must succeed; returns its stdout.
pub(crate) fn ktstr_ok(root: &Path, args: &[&str]) -> String {
    let out = ktstr(root, args);
    assert!(
        out.status.success(),
        "cargo-ktstr {args:?} failed: {}",
        stderr(&out)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A live child process (`sleep`), killed and reaped when dropped.
#[derive(Debug)]
pub(crate) struct LiveProcess(Child);

impl LiveProcess {
    pub(crate) fn spawn() -> Self {
        LiveProcess(Command::new("sleep").arg("600").spawn().unwrap())
    }

    pub(crate) fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for LiveProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The pid of a child that has exited and been reaped: a real dead owner.
pub(crate) fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// A child process holding a real flock on a file or directory (util-linux
/// `flock`), until dropped: then its process group is killed and it is reaped.
#[derive(Debug)]
pub(crate) struct FlockHolder(Child);

impl FlockHolder {
    pub(crate) fn exclusive(path: &Path) -> Self {
        Self::hold(path, "-x")
    }

    pub(crate) fn shared(path: &Path) -> Self {
        Self::hold(path, "-s")
    }

    fn hold(path: &Path, mode: &str) -> Self {
        // `-o` keeps the lock in flock itself (the pid /proc/locks names);
        // the command says when the lock is taken.
        let mut child = Command::new("flock")
            .args([mode, "-o"])
            .arg(path)
            .args(["sh", "-c", "echo locked; exec sleep 600"])
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawn flock (util-linux)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "locked\n", "flock {mode} {} failed", path.display());
        FlockHolder(child)
    }

    /// The pid that holds the lock.
    pub(crate) fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for FlockHolder {
    fn drop(&mut self) {
        // SAFETY: killpg only sends a signal to the group this child leads.
        unsafe { libc::killpg(self.0.id() as i32, libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// The binary with `--cache-dir root`, to add arguments to and spawn.
pub(crate) fn ktstr_cmd(root: &Path) -> Command {
    let mut cmd = Command::new(bin());
    cmd.arg("--cache-dir").arg(root);
    // Fingerprint memos go under the build directory, never into the real
    // ~/.cache of whoever runs the tests.
    cmd.env("XDG_CACHE_HOME", test_xdg_cache());
    cmd
}

/// `$XDG_CACHE_HOME` for the binaries the tests run.
pub(crate) fn test_xdg_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("xdg-cache")
}

/// `template build --vmm qemu --json` with `args` on the template root `root`.
pub(crate) fn build_cmd(root: &Path, kernel: &Path, args: &[&str]) -> Command {
    let mut cmd = ktstr_cmd(root);
    cmd.args(["template", "build", "--vmm", "qemu", "--json", "--kernel"])
        .arg(kernel)
        .args(args);
    cmd
}

/// `template <what> --vmm qemu --fs ext4 --capacity 64M` on `cmd` (the
/// binary on a root, or as a user): the template most guest tests build.
pub(crate) fn ext4_64m(mut cmd: Command, what: &str) -> Command {
    cmd.args(["template", what, "--vmm", "qemu", "--fs", "ext4"])
        .args(["--capacity", "64M"]);
    cmd
}

/// The environment variable that turns a test of this binary into a child
/// process's body; see [`child`].
pub(crate) const CHILD_ENV: &str = "KTSTR_IT_CHILD";

/// This test binary running only the test `name`, with `arg` in
/// [`CHILD_ENV`]: a second process that links the library, as cargo's own
/// test suite does, so no helper binary is shipped.
pub(crate) fn child(name: &str, arg: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        name,
        "--exact",
        "--nocapture",
        "--test-threads=1",
        "--quiet",
    ])
    .env(CHILD_ENV, arg)
    .env("XDG_CACHE_HOME", test_xdg_cache())
    .env_remove("RUST_LOG");
    cmd
}

/// A child process, killed (SIGKILL) if still running when dropped, whose
/// stderr lines arrive on a channel as they are written.
#[derive(Debug)]
pub(crate) struct Spawned {
    pub child: Child,
    pub stderr: Receiver<String>,
    seen: Vec<String>,
}

impl Spawned {
    pub(crate) fn new(mut cmd: Command) -> Spawned {
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

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to a minute for a stderr line containing `needle`.
    pub(crate) fn wait_for_stderr(&mut self, needle: &str) -> String {
        loop {
            match self.stderr.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => self.seen.push(line),
                Err(e) => panic!("no `{needle}` on stderr ({e}); saw {:?}", self.seen),
            }
        }
    }

    /// Waits for the exit; returns the status, stdout and all of stderr.
    pub(crate) fn finish(mut self) -> (std::process::ExitStatus, String, String) {
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

/// This process's open file descriptors.
pub(crate) fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// This process's memory mappings.
pub(crate) fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

/// The names in directory `dir`, sorted.
pub(crate) fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// Whether this process is the child [`child`] started to run test `name`
/// alone (for counting fds and mappings that other tests would disturb).
/// In the parent it runs that child, asserts it passed and printed
/// "counted", and returns false.
pub(crate) fn in_counting_child(name: &str) -> bool {
    if std::env::var_os(CHILD_ENV).is_some() {
        return true;
    }
    let out = child(name, "count").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("counted"), "the child ran nothing: {text}");
    false
}

/// A tarball of `linux-<version>` holding only a kernel-like top Makefile:
/// make fails on it at once, so a build (or a pull that missed) is quick.
pub(crate) fn tiny_tarball(dir: &Path, version: &str) -> PathBuf {
    let top = format!("linux-{version}");
    let tree = dir.join(&top);
    std::fs::create_dir_all(&tree).unwrap();
    let [v, p, s]: [&str; 3] = version.split('.').collect::<Vec<_>>().try_into().unwrap();
    let makefile = format!("VERSION = {v}\nPATCHLEVEL = {p}\nSUBLEVEL = {s}\n");
    std::fs::write(tree.join("Makefile"), makefile).unwrap();
    let tarball = dir.join("linux.tar.gz");
    let ok = Command::new("tar")
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(dir)
        .arg(&top)
        .status()
        .unwrap();
    assert!(ok.success());
    tarball
}
