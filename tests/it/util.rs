//! Shared helpers: run the binary in a temporary cache.

use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use cargo_ktstr::testing::cache::ensure::{Ensured, Ensurer, HostMkfsBuilder};
use cargo_ktstr::testing::cache::key::Capacity;
use cargo_ktstr::testing::formatter::filesystem::Filesystem;

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

/// Whether a test's prerequisite is there. Missing, it skips the test with a
/// line saying why, except in CI (`CI` set), where it fails.
pub(crate) fn prerequisite(what: &str, available: bool) -> bool {
    if !available {
        assert!(
            std::env::var_os("CI").is_none(),
            "{what} is missing, and CI must run every test"
        );
        eprintln!("skipped: {what} is missing");
    }
    available
}

/// Formats `path` as a real `fs` image of `mib` MiB with the host's mkfs.
/// `false` (after [`prerequisite`]) when the formatter is not installed.
pub(crate) fn mkfs_image(path: &Path, fs: Filesystem, mib: u64) -> bool {
    let Ok(mkfs) = cargo_ktstr::testing::formatter::fingerprint::find_formatter(fs) else {
        return prerequisite(fs.mkfs(), false);
    };
    std::fs::File::create(path)
        .unwrap()
        .set_len(mib << 20)
        .unwrap();
    let out = Command::new(mkfs)
        .args(fs.mkfs_args())
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}: {}", fs.mkfs(), stderr(&out));
    true
}

/// Writes a sparse image of `mib` MiB carrying `fs`'s superblock magic and
/// `data` bytes of real data at its start (so it has allocated blocks).
pub(crate) fn magic_image(path: &Path, fs: Filesystem, mib: u64, data: usize) {
    let mut file = std::fs::File::create(path).unwrap();
    file.set_len(mib << 20).unwrap();
    file.write_all(&vec![0xa5; data]).unwrap();
    let (offset, magic) = fs.magic();
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.write_all(magic).unwrap();
    file.sync_all().unwrap();
}

/// The installed formatter's key for `fs` and `mib`.
pub(crate) fn current_key(fs: Filesystem, mib: u64) -> String {
    let fp = cargo_ktstr::testing::formatter::fingerprint::fingerprint(fs).unwrap();
    format!("{fs}-{mib}m-{}", &fp[..16])
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

/// Publishes a real template (host mkfs) under `root`, as a cache hit for
/// the CLI tests.
pub(crate) fn populate(root: &Path, fs: Filesystem, mib: u64) -> Ensured {
    let cap = Capacity::from_mib(mib).unwrap();
    Ensurer::new(root, &HostMkfsBuilder)
        .ensure(fs, cap)
        .unwrap()
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

/// Whether `/dev/kvm` opens read-write (for the VMM tests).
pub(crate) fn kvm_usable() -> bool {
    cargo_ktstr::testing::host::open_kvm().is_ok()
}

/// The guest kernel tests boot, resolved as the CLI does ($KTSTR_KERNEL, else
/// the newest cached kernel); `None` (after [`prerequisite`]) without one.
pub(crate) fn guest_kernel() -> Option<PathBuf> {
    match cargo_ktstr::testing::kernel::resolve::resolve_from_env(None) {
        Ok(kernel) => Some(kernel),
        Err(e) => {
            eprintln!("{e:#}");
            prerequisite("a guest kernel", false);
            None
        }
    }
}

/// How many of `file`'s first 512 extents exist and how many share their
/// blocks with another file (FIEMAP, `FIEMAP_EXTENT_SHARED`): a reflink
/// clone's extents are shared, a real copy's are not.
pub(crate) fn shared_extents(file: &std::fs::File) -> (usize, usize) {
    use std::os::fd::AsRawFd;
    const FS_IOC_FIEMAP: libc::c_ulong = 0xC020_660B;
    const FLAG_SYNC: u32 = 1;
    const EXTENT_SHARED: u32 = 0x2000;
    const MAX: usize = 512;
    // struct fiemap (32 bytes) then MAX struct fiemap_extent (56 bytes each),
    // as u64 words for alignment.
    let mut buf = vec![0u64; (32 + 56 * MAX) / 8];
    buf[1] = u64::MAX; // fm_length: the whole file
    // fm_flags (u32 at byte 16) and fm_extent_count (u32 at byte 24).
    buf[2] = u64::from(FLAG_SYNC);
    buf[3] = MAX as u64;
    // SAFETY: FS_IOC_FIEMAP reads the header and writes at most
    // fm_extent_count extents into the buffer, which is sized for them and
    // outlives the call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FIEMAP, buf.as_mut_ptr()) };
    assert_eq!(rc, 0, "FIEMAP: {}", std::io::Error::last_os_error());
    // fm_mapped_extents: the u32 at byte 20.
    let mapped = (buf[2] >> 32) as usize;
    let shared = (0..mapped.min(MAX))
        .filter(|i| {
            // fe_flags: the u32 at byte 40 of each extent.
            let flags = buf[(32 + 56 * i + 40) / 8] as u32;
            flags & EXTENT_SHARED != 0
        })
        .count();
    (mapped, shared)
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
