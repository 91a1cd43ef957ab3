//! Row 12: the remote kernel cache against a real `rclone serve s3` on
//! loopback (needs `--features remote` and rclone).
//!
//! One source build is timed, into an empty cache of its own
//! (`<ktstr cache>/bench-remote`, where no other build looks): a kernel
//! build takes minutes (9 on this machine idle), so it is built once and
//! later runs reuse it and the time recorded beside it (`build-seconds`:
//! the seconds, then how they were measured, which the table's note
//! repeats). It makes the kernel (with its key inputs)
//! that the other rows push and pull. Then, each run on fresh prefixes:
//!
//! - a fresh runner's `kernel build --source` that pulls, against that build;
//! - the pull itself, as its `Pulled … in X s` line reports it (manifest,
//!   blobs, checks, decompression, sync, publish), against `rclone copy` of
//!   the kernel's objects down; the whole process beside it, for reference
//!   (it also keys the source: a tarball's SHA-256 and its Makefile, seconds
//!   for Debian's 150 MB `.tar.xz`);
//! - `kernel push` to an empty prefix, against `rclone copy` of the same
//!   objects up (rclone sends bytes already compressed; the push also
//!   compresses and hashes).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Bench;
use crate::measure::{Pair, interleave, run, time};
use crate::table::{Goal, Row};

const ACCESS_KEY: &str = "AKIAKTSTRBENCHKEY001";
const SECRET_KEY: &str = "kTsTrBeNcHsEcReTkEy0123456789abcdefABCDE";
const BUCKET: &str = "ktstr";

/// `rclone serve s3` on a free port, its backend in `dir`; killed on drop.
struct S3Server {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl S3Server {
    fn start() -> S3Server {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("s3").join(BUCKET)).unwrap();
        std::fs::write(dir.path().join("rclone.conf"), "").unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("rclone")
            .arg("--config")
            .arg(dir.path().join("rclone.conf"))
            .args(["serve", "s3", "--addr"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--auth-key")
            .arg(format!("{ACCESS_KEY},{SECRET_KEY}"))
            .arg(dir.path().join("s3"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("row 12 needs rclone (.ci/install-deps)");
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "rclone serve s3 not listening");
            std::thread::sleep(Duration::from_millis(20));
        }
        S3Server { child, port, dir }
    }

    fn url(&self, prefix: &str) -> String {
        format!(
            "s3://{BUCKET}/{prefix}?endpoint=http://127.0.0.1:{}&region=us-east-1",
            self.port
        )
    }

    /// `rclone` as an S3 client of this server (remote `bench:`).
    fn rclone(&self) -> Command {
        let mut cmd = Command::new("rclone");
        cmd.arg("--config")
            .arg(self.dir.path().join("rclone.conf"))
            .env("RCLONE_CONFIG_BENCH_TYPE", "s3")
            .env("RCLONE_CONFIG_BENCH_PROVIDER", "Other")
            .env(
                "RCLONE_CONFIG_BENCH_ENDPOINT",
                format!("http://127.0.0.1:{}", self.port),
            )
            .env("RCLONE_CONFIG_BENCH_ACCESS_KEY_ID", ACCESS_KEY)
            .env("RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY", SECRET_KEY);
        cmd
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary on ktstr base `base`, with the server's keys.
fn ktstr(b: &Bench, base: &Path) -> Command {
    let mut cmd = Command::new(&b.bin);
    cmd.env("KTSTR_CACHE_DIR", base)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env_remove("KTSTR_KERNEL")
        .env_remove("KTSTR_REMOTE_CACHE")
        .env_remove("KTSTR_REMOTE_CACHE_MODE")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE");
    cmd
}

/// The bench's source-built kernel: its base, the build's time and where
/// that figure comes from; built (minutes) when absent.
fn source_build(b: &Bench, src: &str) -> (PathBuf, Duration, String) {
    let kernels =
        cargo_ktstr::testing::kernel::store::KernelStore::from_env().expect("the kernel cache");
    let base = kernels.dir().with_file_name("bench-remote");
    let record = base.join("build-seconds");
    // `SECONDS ORIGIN...`: the build's time and how it was measured.
    let recorded = std::fs::read_to_string(&record).ok().and_then(|text| {
        let (secs, origin) = text.trim().split_once(' ')?;
        Some((secs.parse::<f64>().ok()?, origin.to_owned()))
    });
    if let Some((secs, origin)) = recorded {
        return (base, Duration::from_secs_f64(secs), origin);
    }
    let _ = std::fs::remove_dir_all(&base);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load.split_whitespace().next().unwrap_or("?").to_owned();
    eprintln!("row 12: one kernel build from source (minutes; later runs reuse it)");
    let took = time(ktstr(b, &base).args(["-q", "kernel", "build", "--source", src]));
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let origin = format!("timed by row 12 (unix time {at}, load {load} at its start)");
    std::fs::write(&record, format!("{} {origin}\n", took.as_secs_f64())).unwrap();
    (base, took, origin)
}

/// The one kernel entry under `base`.
fn entry_name(base: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(base.join("kernels"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(names.len(), 1, "one kernel expected: {names:?}");
    names.pop().unwrap()
}

/// The three rows, and a note on the source build.
pub(crate) fn rows(b: &Bench, source: &Path) -> (Vec<Row>, String) {
    let server = S3Server::start();
    let work = tempfile::tempdir().unwrap();
    let src = source.to_str().unwrap().to_owned();
    let (built, build_time, built_when) = source_build(b, &src);
    let name = entry_name(&built);
    // Seed: the kernel every pull finds, and a local copy of its objects
    // for rclone's upload.
    run(ktstr(b, &built)
        .args(["-q", "kernel", "push", &name, "--remote-write", "--remote"])
        .arg(server.url("fleet")));
    let objects = work.path().join("objects");
    run(server
        .rclone()
        .args(["copy", &format!("bench:{BUCKET}/fleet")])
        .arg(&objects));

    // The pull's own time, as it reports it, beside each process's.
    let reported = std::cell::RefCell::new(Vec::new());
    let pull = || {
        let base = work.path().join("pulled");
        let start = Instant::now();
        let out = ktstr(b, &base)
            .args(["kernel", "build", "--source", &src, "--remote"])
            .arg(server.url("fleet"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let took = start.elapsed();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "the pull failed: {err}");
        assert!(
            base.join("kernels").join(&name).join("bzImage").is_file(),
            "the pull did not publish {name}: {err}"
        );
        reported.borrow_mut().push(pulled_in(&err));
        std::fs::remove_dir_all(&base).unwrap();
        took
    };
    let pulls = interleave(b.runs, pull, || {
        let dir = work.path().join("rclone-down");
        let took = time(
            server
                .rclone()
                .args(["copy", &format!("bench:{BUCKET}/fleet")])
                .arg(&dir),
        );
        std::fs::remove_dir_all(&dir).unwrap();
        took
    });
    // A fresh prefix per push: every blob goes up.
    let up = std::cell::Cell::new(0);
    let prefix = |what: &str| {
        up.set(up.get() + 1);
        format!("{what}-{}", up.get())
    };
    let pushes = interleave(
        b.runs,
        || {
            time(
                ktstr(b, &built)
                    .args(["-q", "kernel", "push", &name, "--remote-write", "--remote"])
                    .arg(server.url(&prefix("push"))),
            )
        },
        || {
            time(
                server
                    .rclone()
                    .arg("copy")
                    .arg(&objects)
                    .arg(format!("bench:{BUCKET}/{}", prefix("rclone-up"))),
            )
        },
    );
    let fresh_runner = Pair {
        ours: pulls.ours.clone(),
        base: vec![build_time],
    };
    let rows = vec![
        Row::new(
            "-",
            "a fresh runner's `kernel build --source` that pulls from S3 (rclone serve s3, loopback)",
            "the same `kernel build` from source (one build: see the note)",
            &fresh_runner,
            Goal::ratio(0.05),
        ),
        Row::new(
            "-",
            "the pull in it, as its `Pulled` line reports it (fetch, verify, decompress, sync, publish)",
            "`rclone copy` of the same objects down (the whole process)",
            &Pair {
                ours: reported.take(),
                base: pulls.base.clone(),
            },
            Goal::ratio(1.2),
        ),
        Row::new(
            "-",
            "that whole `kernel build` process (also keys the tarball)",
            "`rclone copy` of the same objects down",
            &pulls,
            Goal::floor(),
        ),
        Row::new(
            "-",
            "`kernel push` to an empty prefix (compresses, hashes, uploads)",
            "`rclone copy` of the same objects up",
            &pushes,
            Goal::ratio(1.2),
        ),
    ];
    let note = format!(
        "Row 12: the source build ({:.0} s, `kernel build --source {}`, -j{}): {}; \
         the pulls and pushes {} times each, interleaved with rclone.",
        build_time.as_secs_f64(),
        source.display(),
        cargo_ktstr::testing::host::cores(),
        built_when,
        b.runs
    );
    drop(server);
    (rows, note)
}

/// The time in a pull's `Pulled kernel …, verified: 8.1 MiB in 0.12 s, …`.
fn pulled_in(stderr: &str) -> Duration {
    let line = stderr
        .lines()
        .find(|l| l.trim_start().starts_with("Pulled"))
        .unwrap_or_else(|| panic!("no `Pulled` line: {stderr}"));
    let secs = line
        .split(" in ")
        .nth(1)
        .and_then(|rest| rest.split(" s").next())
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no time in {line:?}"));
    Duration::from_secs_f64(secs)
}
