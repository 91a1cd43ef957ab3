//! Crash at every step: `template build` and `template clone` SIGKILLed at
//! random points of their run. After each kill the cache holds a valid entry
//! for the key or nothing, never a half-written `<key>/`; no guest outlives
//! its builder; `clean` removes everything the dead process left; and the
//! next build succeeds.
//!
//! The kill points are drawn from a seeded generator; the seed is printed
//! and `KTSTR_CRASH_SEED` replays a run.

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cargo_ktstr::testing::cache::key::Key;
use cargo_ktstr::testing::cache::lookup::{self, Entry};
use cargo_ktstr::testing::formatter::filesystem::Filesystem;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::support::{current_key, ext4_64m, guest_prerequisites, ktstr_cmd, ktstr_ok};

const TRIALS: usize = 30;
const FS: Filesystem = Filesystem::Ext4;
const MIB: u64 = 64;

fn seeded(what: &str) -> StdRng {
    let seed = match std::env::var("KTSTR_CRASH_SEED") {
        Ok(s) => s.parse().expect("KTSTR_CRASH_SEED must be a number"),
        Err(_) => rand::random::<u64>(),
    };
    eprintln!("{what}: crash seed {seed} (KTSTR_CRASH_SEED={seed} replays it)");
    StdRng::seed_from_u64(seed)
}

fn key() -> Key {
    current_key(FS, MIB).parse().unwrap()
}

/// The CLI for `template <what>` of the test key, booting `kernel` on a miss.
fn command(root: &Path, kernel: &Path, what: &str) -> Command {
    let mut cmd = ext4_64m(ktstr_cmd(root), what);
    cmd.arg("--kernel")
        .arg(kernel)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// Runs `cmd` to the end and returns how long that took.
fn timed_run(mut cmd: Command) -> Duration {
    let start = Instant::now();
    // Its stderr this once: a failed timing run must say why.
    let out = cmd.stderr(Stdio::piped()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?}: {}\n{err}", out.status);
    start.elapsed()
}

/// Runs `cmd` and SIGKILLs it at `at` unless it ended before; whether it
/// was killed.
fn kill_at(mut cmd: Command, at: Duration) -> bool {
    let mut child = cmd.spawn().unwrap();
    std::thread::sleep(at);
    // A child that already exited is a zombie until waited for: the signal
    // is harmless then.
    child.kill().unwrap();
    child.wait().unwrap().signal() == Some(libc::SIGKILL)
}

/// The cache after a crash: the entry is valid or absent, and no process
/// (an orphaned QEMU) still works on the root.
fn check_after_crash(root: &Path, trial: &str) {
    match lookup::lookup(root, &key()).unwrap() {
        Entry::Valid(_) | Entry::Absent => {}
        Entry::Invalid(why) | Entry::Foreign(why) => {
            panic!("{trial}: a half-written entry is visible: {why}")
        }
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    while let Some(pid) = process_using(root) {
        assert!(
            Instant::now() < deadline,
            "{trial}: pid {pid} still runs on the cache after its builder died"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A process whose command line names `root`, if any.
fn process_using(root: &Path) -> Option<u32> {
    let needle = root.to_str().unwrap().as_bytes();
    fs::read_dir("/proc").ok()?.find_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        cmdline
            .windows(needle.len())
            .any(|w| w == needle)
            .then_some(pid)
    })
}

/// `clean` removes every piece the dead process left: only the entry (if
/// published) and `.locks` remain.
fn clean_leaves_only_entries(root: &Path, trial: &str) {
    ktstr_ok(root, &["clean"]);
    let mut left: Vec<String> = fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != ".locks")
        .collect();
    left.retain(|n| *n != key().to_string());
    assert!(left.is_empty(), "{trial}: `clean` left {left:?}");
}

fn template_path(root: &Path) -> PathBuf {
    lookup::image_path(root, &key())
}

#[test]
fn killed_guest_builds_leave_a_valid_entry_or_none_and_debris_clean_removes() {
    let Some((kernel, _)) = guest_prerequisites() else {
        return;
    };
    let mut rng = seeded("template build");
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    // One whole build first: it sets the span the kill points cover.
    let span = timed_run(command(root, &kernel, "build"));
    for trial in 0..TRIALS {
        // Half the trials build on a miss (publication by rename), half
        // rebuild with --force (publication by exchange over the entry).
        let force = trial % 2 == 1;
        if !force {
            ktstr_ok(root, &["clean", "--all"]);
        }
        let mut cmd = command(root, &kernel, "build");
        if force {
            cmd.arg("--force");
        }
        let at = span.mul_f64(rng.random_range(0.0..1.1));
        let killed = kill_at(cmd, at);
        let name = format!("build trial {trial} (force {force}, killed {killed} at {at:?})");
        check_after_crash(root, &name);
        clean_leaves_only_entries(root, &name);
        timed_run(command(root, &kernel, "build"));
        assert!(matches!(
            lookup::lookup(root, &key()).unwrap(),
            Entry::Valid(_)
        ));
    }
}

#[test]
fn killed_clones_and_their_guest_builds_never_touch_the_template_or_leave_what_clean_misses() {
    let Some((kernel, _)) = guest_prerequisites() else {
        return;
    };
    let mut rng = seeded("template clone");
    let (root, dests) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let root = root.path();
    let clone_to = |dest: &Path| {
        let mut cmd = command(root, &kernel, "clone");
        cmd.arg(dest);
        cmd
    };
    let build_span = timed_run(command(root, &kernel, "build"));
    let mut template = fs::read(template_path(root)).unwrap();
    let probe = dests.path().join("probe.img");
    let clone_span = timed_run(clone_to(&probe));
    for trial in 0..TRIALS {
        // One trial in three clones on a miss, so the kill can land in the
        // build the clone runs first.
        let miss = trial % 3 == 2;
        if miss {
            ktstr_ok(root, &["clean", "--all"]);
        }
        let span = if miss { build_span } else { clone_span };
        let at = span.mul_f64(rng.random_range(0.0..1.2));
        let dest = dests.path().join(format!("clone{trial}.img"));
        let killed = kill_at(clone_to(&dest), at);
        let name = format!("clone trial {trial} (miss {miss}, killed {killed} at {at:?})");
        check_after_crash(root, &name);
        if !miss {
            assert!(
                fs::read(template_path(root)).unwrap() == template,
                "{name}: template changed"
            );
        }
        clean_leaves_only_entries(root, &name);
        // A killed clone may leave a partial DEST (the user's path, not the
        // cache's); a new one is whole.
        let _ = fs::remove_file(&dest);
        timed_run(clone_to(&dest));
        let published = fs::read(template_path(root)).unwrap();
        assert!(
            fs::read(&dest).unwrap() == published,
            "{name}: the next clone differs"
        );
        fs::remove_file(&dest).unwrap();
        // A miss trial published a new build, with new UUIDs.
        template = published;
    }
}
