//! SIGINT, SIGTERM and SIGHUP at several points of a real `template build`
//! and `template clone`: the process stops the guest, removes its staging
//! image, staging directory and half-written DEST, says `interrupted` and
//! exits 128 + the signal's number; no QEMU outlives it, and the next run
//! succeeds.

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cargo_ktstr::testing::cache::names::LOCKS_DIR;
use cargo_ktstr::testing::formatter::filesystem::Filesystem;
use cargo_ktstr::testing::store::lock::key_lock_path;
use nix::sys::signal::Signal;

use crate::support::users::{ALICE, User};
use crate::support::{FlockHolder, Spawned, current_key, guest_prerequisites, ktstr_cmd, names};

const SIGNALS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// Where in a run the signal lands.
#[derive(Debug, Clone, Copy)]
enum Point {
    /// As soon as the process takes signals: it is looking up the key.
    Start,
    /// While it waits for the key's lock, held by a real `flock`.
    LockWait,
    /// While QEMU runs the template guest.
    Booting,
    /// While a sparse copy writes DEST.
    Copying,
}

/// `template <what>` of a 64 MiB ext4 template (or `capacity`), booting
/// `kernel` with QEMU on a miss.
fn template_cmd(mut cmd: Command, what: &str, capacity: &str, kernel: Option<&Path>) -> Command {
    cmd.args(["template", what, "--vmm", "qemu", "--fs", "ext4"])
        .args(["--capacity", capacity]);
    if let Some(kernel) = kernel {
        cmd.arg("--kernel").arg(kernel);
    }
    cmd
}

/// Whether process `pid` blocks SIGINT (the binary's signal thread takes
/// it from then on).
fn takes_signals(pid: u32) -> bool {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let blocked = status
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok());
    blocked.is_some_and(|mask| mask & (1 << (libc::SIGINT - 1)) != 0)
}

/// A process other than `except` whose command line names `path`, if any.
fn process_using(path: &Path, except: u32) -> Option<u32> {
    let needle = path.to_str().unwrap().as_bytes();
    fs::read_dir("/proc").ok()?.find_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        (pid != except && cmdline.windows(needle.len()).any(|w| w == needle)).then_some(pid)
    })
}

/// Polls `ready` every millisecond for up to a minute.
fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "never saw {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Runs `cmd`, sends `signal` once it reached `point`, and returns its
/// stderr after asserting it exited with 128 + the signal's number and
/// said `interrupted`.
fn interrupt(cmd: Command, signal: Signal, point: Point, root: &Path, dest: &Path) -> String {
    let mut run = Spawned::new(cmd);
    let pid = run.pid();
    wait_until("the signal mask", || takes_signals(pid));
    match point {
        Point::Start => {}
        Point::LockWait => {
            run.wait_for_stderr("waiting for the lock");
        }
        Point::Booting => wait_until("QEMU", || process_using(root, pid).is_some()),
        Point::Copying => wait_until("DEST being written", || {
            fs::metadata(dest).is_ok_and(|m| m.len() > 0)
        }),
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).unwrap();
    let sent = Instant::now();
    let (status, _, err) = run.finish();
    let trial = format!("{signal} at {point:?}");
    // Stopped at a waiting point, not by the signal thread's backstop.
    assert!(
        sent.elapsed() < Duration::from_secs(10) && !err.contains("not cleaning up"),
        "{trial}: took {:?} to stop; stderr: {err}",
        sent.elapsed()
    );
    assert_eq!(
        status.code(),
        Some(128 + signal as i32),
        "{trial}: {status}; stderr: {err}"
    );
    assert!(
        err.contains(&format!("interrupted by {signal}")),
        "{trial}: {err}"
    );
    assert!(!err.contains("error:"), "{trial}: a second message: {err}");
    err
}

/// Nothing the interrupted process staged is left in `root`, and no
/// process still works on it.
fn assert_clean(root: &Path, what: &str) {
    if root.exists() {
        let left: Vec<String> = names(root)
            .into_iter()
            .filter(|n| n.contains(".in-flight.") || n.contains(".tmp."))
            .collect();
        assert!(left.is_empty(), "{what}: left {left:?}");
    }
    assert_eq!(
        process_using(root, 0),
        None,
        "{what}: a process outlived it"
    );
}

#[test]
fn a_signal_at_each_point_of_a_guest_build_stops_it_with_the_signals_code_and_cleans_up() {
    let Some((kernel, _)) = guest_prerequisites() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let build = || template_cmd(ktstr_cmd(root), "build", "64M", Some(&kernel));
    let key = current_key(Filesystem::Ext4, 64);
    for signal in SIGNALS {
        for point in [Point::Start, Point::LockWait, Point::Booting] {
            let holder = matches!(point, Point::LockWait).then(|| {
                fs::create_dir_all(root.join(LOCKS_DIR)).unwrap();
                FlockHolder::exclusive(&key_lock_path(root, &key))
            });
            interrupt(build(), signal, point, root, root);
            // Its command line names the root too.
            drop(holder);
            assert_clean(root, &format!("{signal} at {point:?}"));
            assert!(
                !root.join(&key).exists(),
                "{signal} at {point:?}: published"
            );
        }
    }
    let out = build().output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(root.join(&key).join("template.img").is_file());
}

/// A valid-looking 256 MiB ext4 entry with every block written, so a sparse
/// copy of it takes long enough to be interrupted (over a second here).
fn dense_entry(root: &Path) -> std::path::PathBuf {
    const MIB: u64 = 256;
    let dir = root.join(current_key(Filesystem::Ext4, MIB));
    fs::create_dir_all(&dir).unwrap();
    let image = dir.join("template.img");
    let mut file = fs::File::create(&image).unwrap();
    let chunk = vec![0xa5u8; 1 << 20];
    for _ in 0..MIB {
        file.write_all(&chunk).unwrap();
    }
    let (offset, magic) = Filesystem::Ext4.magic();
    std::os::unix::fs::FileExt::write_all_at(&file, magic, offset).unwrap();
    image
}

#[test]
fn a_signal_during_a_clone_or_its_guest_build_leaves_no_dest_and_the_template_as_it_was() {
    let Some((kernel, _)) = guest_prerequisites() else {
        return;
    };
    let (root, dests) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (root, dests) = (root.path(), dests.path());
    let image = dense_entry(root);
    let before = fs::metadata(&image).unwrap();
    let clone = |dest: &Path, capacity: &str| {
        let mut cmd = template_cmd(ktstr_cmd(root), "clone", capacity, Some(&kernel));
        cmd.args(["--reflink", "never"]).arg(dest);
        cmd
    };
    for signal in SIGNALS {
        let dest = dests.join(format!("{signal}.img"));
        interrupt(clone(&dest, "256M"), signal, Point::Copying, root, &dest);
        assert!(!dest.exists(), "{signal}: a half-written DEST is left");
        assert_clean(root, &format!("{signal} while copying"));
    }
    let after = fs::metadata(&image).unwrap();
    assert_eq!(
        (after.ino(), after.len(), after.mtime_nsec()),
        (before.ino(), before.len(), before.mtime_nsec())
    );
    // A clone on a miss, stopped in its build: no DEST either.
    let dest = dests.join("miss.img");
    interrupt(
        clone(&dest, "64M"),
        Signal::SIGTERM,
        Point::Booting,
        root,
        &dest,
    );
    assert!(!dest.exists());
    assert_clean(root, "SIGTERM in a clone's build");
    let out = clone(&dest, "64M").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dest.is_file());
}

/// A real unprivileged user, her cache in her home, the stock kernel
/// resolved as by default: Ctrl-C while her guest boots.
#[test]
fn unprivileged_a_signal_while_the_guest_boots_stops_it_and_cleans_up() {
    let Some(alice) = User::get(ALICE) else {
        return;
    };
    if guest_prerequisites().is_none() {
        return;
    }
    let home = alice.fresh_dir("signals");
    let root = home.join("templates");
    let build = || {
        let mut cmd = alice.ktstr();
        cmd.env("KTSTR_CACHE_DIR", home.join("ktstr"))
            .env("XDG_CACHE_HOME", home.join("xdg"))
            .arg("--cache-dir")
            .arg(&root);
        template_cmd(cmd, "build", "64M", None)
    };
    interrupt(build(), Signal::SIGINT, Point::Booting, &root, &root);
    assert_clean(&root, "SIGINT as alice");
    let out = build().output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = current_key(Filesystem::Ext4, 64);
    let meta = fs::metadata(root.join(&key).join("template.img")).unwrap();
    assert_eq!(meta.uid(), alice.uid);
    fs::remove_dir_all(&home).unwrap();
}
