//! The remote kernel cache against real servers on loopback: `rclone serve
//! s3` and nginx's WebDAV, each on a free port of 127.0.0.1 with its config
//! and backing directory in a temporary directory, killed and reaped on drop.
//!
//! A kernel is fabricated, never built: a tiny tarball is the source, and a
//! store entry carries the key inputs computed from it. A pull then goes
//! through `kernel build --source` on an empty cache, which finds the kernel
//! remotely before it would run make; on a miss the build of the tiny
//! tarball fails, so a miss shows as exit 1 with the pull's warning.

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cargo_ktstr::testing::kernel::KernelKind;
use cargo_ktstr::testing::kernel::key::{KeyInputs, Toolchain};
use cargo_ktstr::testing::kernel::source::Source;
use cargo_ktstr::testing::kernel::store::{
    CONFIG_FILE, IMAGE_FILE, KernelStore, Provenance, ProvenanceOrigin, VMLINUX_FILE,
};
use tempfile::TempDir;

use crate::support::{Spawned, bin, prerequisite, stderr, stdout, tiny_tarball};

/// A 20-character access key and a 40-character secret, as AWS issues them.
const ACCESS_KEY: &str = "AKIAKTSTRTESTKEY0001";
const SECRET_KEY: &str = "kTsTrTeStSeCrEtKeY0123456789abcdefABCDEF";
const DAV_EXT: &str = "/usr/lib/nginx/modules/ngx_http_dav_ext_module.so";
/// The warning a failed pull prints before building.
const PULL_WARNING: &str = "warning: pulling kernel";

#[derive(Debug, Clone, Copy)]
enum Kind {
    S3,
    Webdav,
}

/// A server process serving a backing directory.
struct Server {
    child: Child,
    url: String,
    /// Where the remote's objects land (`v1/...` below it).
    backing: PathBuf,
    dir: TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("server log: {}", self.log());
        }
    }
}

/// A port free on 127.0.0.1 a moment ago.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl Server {
    /// Starts `kind`'s server; `None` (after [`prerequisite`]) when its
    /// program is not installed.
    fn start(kind: Kind) -> Option<Server> {
        Server::start_limited(kind, None)
    }

    /// Like [`Server::start`], the server sending at most `rate` bytes a
    /// second (`256k`) when given one: rclone's `--bwlimit`, nginx's
    /// `limit_rate`.
    fn start_limited(kind: Kind, rate: Option<&str>) -> Option<Server> {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let (child, url, backing) = match kind {
            Kind::S3 => {
                if !prerequisite("rclone (.ci/install-deps)", which("rclone")) {
                    return None;
                }
                // The bucket is a directory of the backend.
                let root = dir.path().join("s3");
                std::fs::create_dir_all(root.join("ktstr")).unwrap();
                std::fs::write(dir.path().join("rclone.conf"), "").unwrap();
                let child = Command::new("rclone")
                    .arg("--config")
                    .arg(dir.path().join("rclone.conf"))
                    .args(["serve", "s3", "--addr"])
                    .arg(format!("127.0.0.1:{port}"))
                    .arg("--auth-key")
                    .arg(format!("{ACCESS_KEY},{SECRET_KEY}"))
                    // Listings cached briefly: the tests damage the backend
                    // behind the server's back, then wait this long
                    // ([`Server::forget`]). Not 0 s: with no directory
                    // cache at all, rclone 1.75's VFS spins re-reading the
                    // directory (~100k "forgetting directory cache" log
                    // lines a second) while a PUT's rename lands beside
                    // other requests, and writes stall for many seconds.
                    .args(["--dir-cache-time", "1s"])
                    // Both ways: rclone counts neither an S3 GET alone
                    // (`off:RATE`) nor a PUT alone against the limit, so a
                    // limited push is slow too.
                    .arg("--bwlimit")
                    .arg(rate.unwrap_or("off"))
                    .arg(&root)
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(dir.path().join("rclone.log")).unwrap())
                    .spawn()
                    .unwrap();
                let url =
                    format!("s3://ktstr/fleet?endpoint=http://127.0.0.1:{port}&region=us-east-1");
                (child, url, root.join("ktstr/fleet"))
            }
            Kind::Webdav => {
                let have = which("nginx") && Path::new(DAV_EXT).exists();
                if !prerequisite("nginx with libnginx-mod-http-dav-ext", have) {
                    return None;
                }
                let root = dir.path().join("dav");
                std::fs::create_dir_all(root.join("fleet")).unwrap();
                let conf = dir.path().join("nginx.conf");
                std::fs::write(
                    &conf,
                    nginx_conf(dir.path(), &root, port, rate.unwrap_or("0")),
                )
                .unwrap();
                let child = Command::new("nginx")
                    .arg("-p")
                    .arg(dir.path())
                    .arg("-e")
                    .arg(dir.path().join("error.log"))
                    .arg("-c")
                    .arg(&conf)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                let url = format!("webdav+http://127.0.0.1:{port}/fleet");
                (child, url, root.join("fleet"))
            }
        };
        let mut server = Server {
            child,
            url,
            backing,
            dir,
        };
        server.wait_listening(port);
        Some(server)
    }

    /// Waits until the server sees changes made to its backing directory
    /// behind its back: rclone's directory cache expires (nginx has none).
    fn forget(&self, kind: Kind) {
        if let Kind::S3 = kind {
            std::thread::sleep(Duration::from_millis(1_200));
        }
    }

    /// What the server logged (rclone's or nginx's log).
    fn log(&self) -> String {
        ["rclone.log", "error.log"]
            .map(|f| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default())
            .concat()
    }

    fn wait_listening(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("server exited ({status}) before listening: {}", self.log());
            }
            assert!(Instant::now() < deadline, "server not listening in 15 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// One nginx process (no master, so killing it stops it all) serving
/// WebDAV from `root`, everything it writes under `dir`.
fn nginx_conf(dir: &Path, root: &Path, port: u16, rate: &str) -> String {
    let (d, root) = (dir.display(), root.display());
    format!(
        r#"load_module {DAV_EXT};
daemon off;
master_process off;
user root;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        client_max_body_size 0;
        limit_rate {rate};
        location / {{
            dav_methods PUT DELETE MKCOL COPY MOVE;
            dav_ext_methods PROPFIND OPTIONS;
            create_full_put_path on;
        }}
    }}
}}
"#
    )
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// A ktstr base with a fabricated kernel built from a tiny tarball.
struct Fixture {
    work: TempDir,
    tarball: PathBuf,
    name: String,
}

impl Fixture {
    fn new() -> Fixture {
        // Bytes that compress, but not to nothing.
        let image = (0..400_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 & 0x3f)
            .collect();
        Fixture::with_image(image)
    }

    fn with_image(image: Vec<u8>) -> Fixture {
        let work = tempfile::tempdir().unwrap();
        let tarball = tiny_tarball(work.path(), "9.9.7");
        let kind = KernelKind::Template;
        let inputs = KeyInputs::compute(&Source::open(&tarball).unwrap(), kind.fragments())
            .expect("key inputs of the tiny tarball");
        let name = kind.keyed_name(&inputs.version, &inputs.short_key());
        let staged = work.path().join("staged");
        std::fs::create_dir(&staged).unwrap();
        std::fs::write(staged.join(IMAGE_FILE), &image).unwrap();
        std::fs::write(staged.join(VMLINUX_FILE), &image[..100_000]).unwrap();
        std::fs::write(staged.join(CONFIG_FILE), "CONFIG_SCHED_CLASS_EXT=y\n").unwrap();
        Provenance {
            origin: ProvenanceOrigin::Built,
            remote: None,
            key: inputs.key(),
            inputs,
            toolchain: Toolchain::detect(),
        }
        .write(&staged)
        .unwrap();
        let store = KernelStore::new(work.path().join("base/kernels"));
        std::fs::create_dir_all(store.dir()).unwrap();
        store.publish(&staged, &name).unwrap();
        Fixture {
            work,
            tarball,
            name,
        }
    }

    /// The ktstr base holding the fabricated kernel.
    fn base(&self) -> PathBuf {
        self.work.path().join("base")
    }

    fn entry(&self, base: &Path) -> PathBuf {
        base.join("kernels").join(&self.name)
    }

    fn push(&self, server: &Server) -> Output {
        let out = run(ktstr(&self.base())
            .args(["kernel", "push", &self.name, "--remote-write", "--remote"])
            .arg(&server.url));
        assert!(out.status.success(), "push: {}", stderr(&out));
        out
    }

    /// `kernel build --source` of the tiny tarball into the empty base
    /// `base`, read-only.
    fn pull(&self, base: &Path, server: &Server) -> Output {
        run(ktstr(base)
            .args(["kernel", "build", "--source"])
            .arg(&self.tarball)
            .arg("--remote")
            .arg(&server.url))
    }

    /// A pull that succeeded, byte-identical to what was pushed.
    fn assert_pulled(&self, base: &Path, out: &Output) {
        assert!(out.status.success(), "pull: {}", stderr(out));
        assert!(!stderr(out).contains(PULL_WARNING), "{}", stderr(out));
        let image = self.entry(base).join(IMAGE_FILE);
        assert_eq!(stdout(out).trim(), image.display().to_string());
        for f in [IMAGE_FILE, VMLINUX_FILE, CONFIG_FILE] {
            let (a, b) = (self.entry(&self.base()).join(f), self.entry(base).join(f));
            assert!(
                std::fs::read(a).unwrap() == std::fs::read(b).unwrap(),
                "{f}"
            );
        }
        let prov = Provenance::read(&self.entry(base)).unwrap().unwrap();
        assert_eq!(prov.origin, ProvenanceOrigin::Pulled);
    }

    /// A pull that missed: one warning, the local build of the tiny
    /// tarball failed, and no entry was published.
    fn assert_missed(&self, base: &Path, out: &Output) {
        let err = stderr(out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.matches(PULL_WARNING).count(), 1, "{err}");
        assert!(!self.entry(base).exists(), "published after a miss: {err}");
        let left: Vec<_> = std::fs::read_dir(base.join("kernels"))
            .into_iter()
            .flatten()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".build-pull"))
            .collect();
        assert!(left.is_empty(), "pull scratch left behind: {left:?}");
    }
}

/// The binary on ktstr base `base`, with the S3 keys, no remote or mode
/// from the environment.
fn ktstr(base: &Path) -> Command {
    let mut cmd = Command::new(bin());
    cmd.env("KTSTR_CACHE_DIR", base)
        .env("KTSTR_BOOT_DIR", base.join("no-boot"))
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env_remove("KTSTR_KERNEL")
        .env_remove("KTSTR_REMOTE_CACHE")
        .env_remove("KTSTR_REMOTE_CACHE_MODE")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE");
    cmd
}

/// Runs `cmd`, killing it after 60 s: a hang is a failure.
fn run(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("{cmd:?} hung; stderr: {}", stderr(&out));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// Every file under `dir` and its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            if path.is_dir() {
                todo.push(path.clone());
                files.insert(path, Vec::new());
            } else {
                files.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// The stored blob of the pushed kernel's `bzImage`, from its manifest on
/// the backing directory.
fn image_blob(server: &Server) -> PathBuf {
    let manifests = server.backing.join("v1/kernels");
    let manifest = std::fs::read_dir(&manifests)
        .unwrap()
        .next()
        .expect("a manifest")
        .unwrap()
        .path();
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
    let file = json["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == IMAGE_FILE)
        .unwrap();
    server
        .backing
        .join("v1/blobs")
        .join(file["blob"].as_str().unwrap())
}

fn push_then_pull_is_byte_identical(kind: Kind) {
    let Some(server) = Server::start(kind) else {
        return;
    };
    let fx = Fixture::new();
    let out = fx.push(&server);
    assert!(
        stdout(&out).contains(&format!("{}\t", fx.name)),
        "{}",
        stdout(&out)
    );
    assert!(image_blob(&server).is_file());
    // A second machine: an empty cache, and no compiler on its PATH.
    let (empty, tools) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let out = run(ktstr(empty.path())
        .args(["kernel", "build", "--source"])
        .arg(&fx.tarball)
        .arg("--remote")
        .arg(&server.url)
        .env("PATH", no_compiler(tools.path())));
    fx.assert_pulled(empty.path(), &out);
    assert!(stderr(&out).contains("Pulled"), "{}", stderr(&out));
}

/// A PATH in `dir` of a machine with no compiler, linker or make: only
/// what reading a source tarball takes.
fn no_compiler(dir: &Path) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap();
    for tool in ["sh", "head", "tar", "gzip"] {
        let found = std::env::split_paths(&path)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("no `{tool}` on PATH"));
        std::os::unix::fs::symlink(found, dir.join(tool)).unwrap();
    }
    dir.to_owned()
}

fn damaged_blobs_are_misses(kind: Kind) {
    let Some(server) = Server::start(kind) else {
        return;
    };
    let fx = Fixture::new();
    fx.push(&server);
    let blob = image_blob(&server);
    let good = std::fs::read(&blob).unwrap();
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x01;
    let damages: [(&str, Option<Vec<u8>>); 3] = [
        ("a flipped byte", Some(flipped)),
        ("a truncated blob", Some(good[..good.len() - 100].to_vec())),
        ("a deleted blob", None),
    ];
    for (what, bytes) in damages {
        match bytes {
            Some(b) => std::fs::write(&blob, b).unwrap(),
            None => std::fs::remove_file(&blob).unwrap(),
        }
        server.forget(kind);
        let empty = tempfile::tempdir().unwrap();
        let out = fx.pull(empty.path(), &server);
        eprintln!("{what}: {}", stderr(&out));
        fx.assert_missed(empty.path(), &out);
    }
    // Restored, the same remote serves the kernel again.
    std::fs::write(&blob, &good).unwrap();
    server.forget(kind);
    let empty = tempfile::tempdir().unwrap();
    let out = fx.pull(empty.path(), &server);
    fx.assert_pulled(empty.path(), &out);
}

fn a_stopped_server_is_a_bounded_miss(kind: Kind) {
    let Some(mut server) = Server::start(kind) else {
        return;
    };
    let fx = Fixture::new();
    fx.push(&server);
    let _ = server.child.kill();
    let _ = server.child.wait();
    let empty = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let out = fx.pull(empty.path(), &server);
    let took = start.elapsed();
    fx.assert_missed(empty.path(), &out);
    assert!(took < Duration::from_secs(30), "a miss took {took:?}");
    let out = run(ktstr(empty.path())
        .args(["remote", "check", "--remote"])
        .arg(&server.url));
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("unreachable"), "{}", stdout(&out));
}

/// The server killed while a pull reads a blob it sends slowly: a miss,
/// soon after, with nothing published.
fn killed_mid_pull_is_a_bounded_miss(kind: Kind) {
    let Some(mut server) = Server::start_limited(kind, Some("256k")) else {
        return;
    };
    // The blob takes 8 s at 256 KiB/s.
    let fx = Fixture::with_image(incompressible_image());
    fx.push(&server);
    let empty = tempfile::tempdir().unwrap();
    let mut cmd = ktstr(empty.path());
    cmd.args(["kernel", "build", "--source"])
        .arg(&fx.tarball)
        .arg("--remote")
        .arg(&server.url);
    let start = Instant::now();
    let mut pull = Spawned::new(cmd);
    pull.wait_for_stderr("Pulling");
    std::thread::sleep(Duration::from_millis(500));
    let _ = server.child.kill();
    let _ = server.child.wait();
    let (status, _, err) = pull.finish();
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(30),
        "a miss took {took:?}: {err}"
    );
    assert!(!err.contains("Pulled"), "the pull finished first: {err}");
    assert_eq!(status.code(), Some(1), "{err}");
    assert_eq!(err.matches(PULL_WARNING).count(), 1, "{err}");
    assert!(!fx.entry(empty.path()).exists(), "published: {err}");
}

/// 2 MiB that zstd cannot shrink.
fn incompressible_image() -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..2 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A pull that takes seconds draws a bar with bytes and rate on a terminal
/// (a pseudo-terminal from `script`), never into a pipe, and nothing under
/// `-q`.
fn a_slow_pull_draws_a_bar_only_on_a_terminal(kind: Kind) {
    let Some(server) = Server::start_limited(kind, Some("1m")) else {
        return;
    };
    if !prerequisite("script (util-linux)", which("script")) {
        return;
    }
    let fx = Fixture::with_image(incompressible_image());
    fx.push(&server);
    let pull = |quiet: bool, tty: bool| {
        let empty = tempfile::tempdir().unwrap();
        let mut cmd = ktstr(empty.path());
        let line = format!(
            "{} {} kernel build --source {} --remote '{}'",
            bin().display(),
            if quiet { "-q" } else { "" },
            fx.tarball.display(),
            server.url
        );
        if tty {
            // What was drawn on script's terminal (stdout and stderr
            // both) comes out of script's stdout.
            let mut script = Command::new("script");
            script.args(["-qec", &line, "/dev/null"]);
            for (k, v) in cmd.get_envs() {
                match v {
                    Some(v) => script.env(k, v),
                    None => script.env_remove(k),
                };
            }
            let out = run(&mut script);
            (out, empty)
        } else {
            let out = run(cmd
                .args(quiet.then_some("-q"))
                .args(["kernel", "build", "--source"])
                .arg(&fx.tarball)
                .arg("--remote")
                .arg(&server.url));
            (out, empty)
        }
    };
    let (out, empty) = pull(false, true);
    let drawn = stdout(&out);
    assert!(out.status.success(), "{drawn}");
    assert!(fx.entry(empty.path()).join(IMAGE_FILE).is_file(), "{drawn}");
    assert!(drawn.contains("Pulling ["), "no bar: {drawn}");
    assert!(drawn.contains("/s"), "no rate: {drawn}");
    let (out, _) = pull(true, true);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(!stdout(&out).contains("Pulling"), "{}", stdout(&out));
    let (out, _) = pull(false, false);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("Pulling ["), "{}", stderr(&out));
    assert!(stderr(&out).contains("Pulled"), "{}", stderr(&out));
}

fn eight_concurrent_pushes_then_a_pull(kind: Kind) {
    let Some(server) = Server::start(kind) else {
        return;
    };
    let fx = Fixture::new();
    let pushes: Vec<_> = (0..8)
        .map(|_| {
            let mut cmd = ktstr(&fx.base());
            cmd.args(["kernel", "push", &fx.name, "--remote-write", "--remote"])
                .arg(&server.url);
            std::thread::spawn(move || run(&mut cmd))
        })
        .collect();
    for push in pushes {
        let out = push.join().unwrap();
        assert!(out.status.success(), "push: {}", stderr(&out));
    }
    let manifests = std::fs::read_dir(server.backing.join("v1/kernels"))
        .unwrap()
        .count();
    assert_eq!(manifests, 1);
    let empty = tempfile::tempdir().unwrap();
    let out = fx.pull(empty.path(), &server);
    fx.assert_pulled(empty.path(), &out);
}

fn read_only_never_writes(kind: Kind) {
    let Some(server) = Server::start(kind) else {
        return;
    };
    let fx = Fixture::new();
    let empty = tempfile::tempdir().unwrap();
    // A miss on an empty remote, read-only: the failed build pushes nothing.
    let before = snapshot(&server.backing);
    let out = fx.pull(empty.path(), &server);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(snapshot(&server.backing), before);
    fx.push(&server);
    let before = snapshot(&server.backing);
    let out = run(ktstr(&fx.base())
        .args(["kernel", "push", &fx.name, "--remote"])
        .arg(&server.url));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("read-only"), "{}", stderr(&out));
    let out = run(ktstr(&fx.base())
        .args(["remote", "check", "--remote"])
        .arg(&server.url));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = fx.pull(empty.path(), &server);
    fx.assert_pulled(empty.path(), &out);
    assert_eq!(snapshot(&server.backing), before);
}

fn remote_check_reports_read_write_list(kind: Kind) {
    let Some(server) = Server::start(kind) else {
        return;
    };
    let base = tempfile::tempdir().unwrap();
    let out = run(ktstr(base.path())
        .args(["remote", "check", "--json", "--remote-write", "--remote"])
        .arg(&server.url));
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for probe in ["read", "list", "write"] {
        assert_eq!(report[probe]["ok"], true, "{probe}: {report}");
    }
    assert!(report["round_trip_ms"].is_number(), "{report}");
    let out = run(ktstr(base.path())
        .args(["remote", "check", "--remote-write", "--remote"])
        .arg(&server.url));
    let text = stdout(&out);
    for line in ["read", "list", "write"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(line) && l.contains("yes")),
            "{line}: {text}"
        );
    }
    drop(server);
}

/// Each scenario as a test per server: `s3::NAME`, `webdav::NAME`.
macro_rules! per_server {
    ($module:ident, $kind:expr, [$($test:ident),* $(,)?]) => {
        mod $module {
            $(#[test] fn $test() { super::$test($kind) })*
        }
    };
}

macro_rules! every_scenario {
    ($($module:ident: $kind:expr),*) => {
        $(per_server!(
            $module,
            $kind,
            [
                push_then_pull_is_byte_identical,
                damaged_blobs_are_misses,
                a_stopped_server_is_a_bounded_miss,
                read_only_never_writes,
                remote_check_reports_read_write_list,
                eight_concurrent_pushes_then_a_pull,
                killed_mid_pull_is_a_bounded_miss,
                a_slow_pull_draws_a_bar_only_on_a_terminal,
            ]
        );)*
    };
}

every_scenario!(s3: super::Kind::S3, webdav: super::Kind::Webdav);
