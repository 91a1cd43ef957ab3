//! The per-key lock between real processes: one builds, the others wait and
//! find its entry; a SIGKILLed holder releases the lock; a timeout names the
//! holder. The processes are this test binary re-run as [`child_body`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;
use cargo_ktstr::testing::cache::clone::Reflink;
use cargo_ktstr::testing::cache::ensure::{
    EnsureOptions, Ensurer, HostMkfsBuilder, TemplateBuilder,
};
use cargo_ktstr::testing::cache::key::{Capacity, Key};
use cargo_ktstr::testing::cache::publish::{self, IfValid};
use cargo_ktstr::testing::formatter::filesystem::Filesystem;
use cargo_ktstr::testing::formatter::fingerprint;
use cargo_ktstr::testing::store::lock;
use serde::{Deserialize, Serialize};
use std::os::unix::fs::MetadataExt;

use crate::support::{CHILD_ENV, Spawned, child, ktstr_cmd, stderr};

const FS: Filesystem = Filesystem::Ext4;
const MIB: u64 = 64;

/// What one child process does.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Job {
    root: PathBuf,
    /// Written (with the pid) when the build starts.
    started: Option<PathBuf>,
    /// The build waits until this exists.
    gate: Option<PathBuf>,
    /// Clone to here after ensuring.
    dest: Option<PathBuf>,
    /// Ensure with `force` (rebuild even on a hit).
    force: bool,
}

/// Formats with the host mkfs, after announcing itself and waiting for a gate.
struct Gated<'a>(&'a Job);

impl TemplateBuilder for Gated<'_> {
    fn build(&self, key: &Key, staging: &Path) -> Result<()> {
        if let Some(started) = &self.0.started {
            std::fs::write(started, std::process::id().to_string())?;
        }
        if let Some(gate) = &self.0.gate {
            wait_until(|| gate.exists());
        }
        HostMkfsBuilder.build(key, staging)
    }
}

/// The body of a child process; a no-op test in the parent run.
#[test]
fn child_body() {
    let Ok(arg) = std::env::var(CHILD_ENV) else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .try_init();
    let job: Job = serde_json::from_str(&arg).unwrap();
    let cap = Capacity::from_mib(MIB).unwrap();
    let builder = Gated(&job);
    let at = Ensurer::new(&job.root, &builder).with_options(EnsureOptions {
        lock_timeout: Duration::from_secs(120),
        force: job.force,
        ..EnsureOptions::default()
    });
    let result = match &job.dest {
        None => at.ensure(FS, cap),
        Some(dest) => at.clone_to(FS, cap, dest, Reflink::Auto).map(|c| c.ensured),
    };
    match result {
        Ok(e) => println!("RESULT built={} path={}", e.built, e.path.display()),
        Err(e) => {
            eprintln!("ERROR {e:#}");
            std::process::exit(1);
        }
    }
}

fn spawn(job: &Job) -> Spawned {
    Spawned::new(child(
        "cache::lock::child_body",
        &serde_json::to_string(job).unwrap(),
    ))
}

fn wait_until(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn key() -> Key {
    Key::new(
        FS,
        Capacity::from_mib(MIB).unwrap(),
        &fingerprint::fingerprint(FS).unwrap(),
    )
}

/// A builder blocked at its gate, holding the key's lock.
fn holder(root: &Path, marks: &Path) -> (Spawned, PathBuf) {
    let started = marks.join("started");
    let gate = marks.join("gate");
    let job = Job {
        root: root.to_owned(),
        started: Some(started.clone()),
        gate: Some(gate.clone()),
        ..Job::default()
    };
    let a = spawn(&job);
    wait_until(|| started.exists());
    (a, gate)
}

fn succeeded(s: Spawned) -> String {
    let (status, out, err) = s.finish();
    assert!(status.success(), "{status}: {err}");
    out
}

#[test]
fn two_processes_one_builds_the_other_waits_then_finds_it() {
    let (root, marks) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, gate) = holder(root.path(), marks.path());
    let mut b = spawn(&Job {
        root: root.path().to_owned(),
        ..Job::default()
    });
    let line = b.wait_for_stderr("waiting for the lock");
    assert!(
        line.contains(&format!("on {} held by pid {}", key(), a.pid())),
        "{line}"
    );
    std::fs::write(&gate, b"").unwrap();
    assert!(succeeded(a).contains("built=true"));
    assert!(succeeded(b).contains("built=false"));
}

#[test]
fn a_sigkilled_holder_releases_the_lock_and_the_waiter_builds() {
    let (root, marks) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (mut a, _gate) = holder(root.path(), marks.path());
    let a_pid = a.pid();
    let mut b = spawn(&Job {
        root: root.path().to_owned(),
        ..Job::default()
    });
    b.wait_for_stderr("waiting for the lock");
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    assert!(succeeded(b).contains("built=true"));
    // The dead builder's staging image stays for `clean` to sweep.
    let debris = root
        .path()
        .join(format!("template.img.in-flight.{}.{a_pid}", key()));
    assert!(debris.exists(), "{}", debris.display());
}

#[test]
fn a_lock_timeout_names_the_holder_and_the_lockfile() {
    let (root, marks) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, gate) = holder(root.path(), marks.path());
    let dest = marks.path().join("dest.img");
    let out = ktstr_cmd(root.path())
        .args([
            "template",
            "clone",
            "--fs",
            "ext4",
            "--capacity",
            "64M",
            "--lock-timeout",
            "1",
        ])
        .arg(&dest)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("waiting for the lock"), "{err}");
    assert!(
        err.contains("timed out") && err.contains(&format!("pid {}", a.pid())),
        "{err}"
    );
    assert!(err.contains(&format!(".locks/{}.lock", key())), "{err}");
    assert!(!dest.exists());
    std::fs::write(&gate, b"").unwrap();
    succeeded(a);
}

#[test]
fn eight_processes_race_on_a_miss_and_one_builds() {
    let (root, marks) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let kids: Vec<Spawned> = (0..8)
        .map(|i| {
            spawn(&Job {
                root: root.path().to_owned(),
                dest: Some(marks.path().join(format!("clone{i}.img"))),
                ..Job::default()
            })
        })
        .collect();
    let outs: Vec<String> = kids.into_iter().map(succeeded).collect();
    let built = outs.iter().filter(|o| o.contains("built=true")).count();
    assert_eq!(built, 1, "{outs:?}");
    let template = std::fs::read(root.path().join(key().to_string()).join("template.img")).unwrap();
    for i in 0..8 {
        let clone = std::fs::read(marks.path().join(format!("clone{i}.img"))).unwrap();
        assert!(clone == template, "clone {i} differs from the template");
    }
}

#[test]
fn a_forced_build_counts_a_peers_publish_during_its_wait_as_done() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let k = key();
    crate::support::populate(root, FS, MIB);
    // This process plays the peer: it holds the lock, lets the forced child
    // see the old entry and wait, then publishes a fresh build.
    let lockfile = lock::key_lock_path(root, &k.to_string());
    let held = lock::try_lock(&lockfile, lock::Mode::Exclusive)
        .unwrap()
        .unwrap();
    let mut forced = spawn(&Job {
        root: root.to_owned(),
        force: true,
        ..Job::default()
    });
    forced.wait_for_stderr("waiting for the lock");
    let staged = root.join("fresh.img");
    std::fs::File::create(&staged)
        .unwrap()
        .set_len(MIB << 20)
        .unwrap();
    HostMkfsBuilder.build(&k, &staged).unwrap();
    let (path, outcome) = publish::publish(root, &k, &staged, IfValid::Replace).unwrap();
    assert_eq!(outcome, publish::Outcome::Replaced);
    let fresh = std::fs::metadata(&path).unwrap().ino();
    drop(held);
    let out = succeeded(forced);
    assert!(out.contains("built=false"), "{out}");
    assert_eq!(
        std::fs::metadata(&path).unwrap().ino(),
        fresh,
        "the fresh entry was kept"
    );
}

/// On btrfs `st_dev` is a subvolume's anonymous device, not the one
/// /proc/locks prints: the holder must still be named, by the clone's
/// timeout, by `clean --all` and by `template list`.
#[test]
fn holders_are_named_on_btrfs_too() {
    let Some(disk) = crate::support::loopfs::LoopFs::new("btrfs", 512) else {
        return;
    };
    let root = disk.path().join("root");
    std::fs::create_dir_all(root.join(".locks")).unwrap();
    let key = fingerprint::fingerprint(FS)
        .map(|fp| format!("{FS}-{MIB}m-{}", &fp[..16]))
        .unwrap();
    let held = crate::support::FlockHolder::exclusive(&root.join(format!(".locks/{key}.lock")));
    let pid = format!("pid {}", held.pid());
    let out = ktstr_cmd(&root)
        .args(["template", "clone", "--fs", "ext4", "--capacity", "64M"])
        .args(["--lock-timeout", "1"])
        .arg(root.join("dest.img"))
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(err.contains("timed out") && err.contains(&pid), "{err}");

    std::fs::create_dir(root.join(&key)).unwrap();
    crate::support::magic_image(&root.join(&key).join("template.img"), FS, MIB, 4096);
    let table = crate::support::ktstr_ok(&root, &["template", "list"]);
    assert!(table.contains("in use") && table.contains(&pid), "{table}");
    let text = crate::support::ktstr_ok(&root, &["clean", "--all"]);
    assert!(
        text.contains(&format!("kept {key}: in use by {pid}")),
        "{text}"
    );
}
