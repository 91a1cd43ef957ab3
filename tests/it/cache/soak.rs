//! Soak: 200 rounds of build, clone, `clean` and `clean --all` across four
//! processes on two keys, on a loop-mounted btrfs. No entry is removed while
//! a process uses it, every clone is byte-equal to its template at birth, and
//! the run ends with no debris and no lock held on anything in the cache.
//!
//! The workers are this test binary re-run as [`soak_worker`] (see
//! [`crate::support::child`]); each draws its steps from a seeded generator, and
//! `KTSTR_SOAK_SEED` replays a run. Templates are formatted by the host's
//! mkfs through the library: the guest builder is exercised elsewhere, and
//! here it would only slow the rounds down.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, ensure};
use cargo_ktstr::testing::cache::cleanup::{self, CleanMode, CleanOptions};
use cargo_ktstr::testing::cache::clone::{Reflink, clone_file};
use cargo_ktstr::testing::cache::ensure::{EnsureOptions, Ensurer, HostMkfsBuilder};
use cargo_ktstr::testing::cache::key::Capacity;
use cargo_ktstr::testing::formatter::filesystem::Filesystem;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::support::loopfs::LoopFs;
use crate::support::{CHILD_ENV, Spawned, child, ktstr_ok};

const WORKERS: usize = 4;
const ROUNDS: usize = 200;
const FS: Filesystem = Filesystem::Ext4;
const KEYS_MIB: [u64; 2] = [16, 24];

/// One worker's share of the rounds.
#[derive(Debug, Serialize, Deserialize)]
struct Worker {
    root: PathBuf,
    dests: PathBuf,
    rounds: usize,
    seed: u64,
}

/// The body of a worker process; a no-op test in the parent run.
#[test]
fn soak_worker() {
    let Ok(arg) = std::env::var(CHILD_ENV) else {
        return;
    };
    let job: Worker = serde_json::from_str(&arg).unwrap();
    let mut rng = StdRng::seed_from_u64(job.seed);
    for round in 0..job.rounds {
        if let Err(e) = step(&job, &mut rng, round) {
            eprintln!("ERROR round {round}: {e:#}");
            std::process::exit(1);
        }
    }
}

fn step(job: &Worker, rng: &mut StdRng, round: usize) -> Result<()> {
    let capacity = Capacity::from_mib(KEYS_MIB[rng.random_range(0..2)]).unwrap();
    let at = Ensurer::new(&job.root, &HostMkfsBuilder).with_options(EnsureOptions {
        lock_timeout: Duration::from_secs(120),
        force: rng.random_bool(0.2),
        ..EnsureOptions::default()
    });
    let sweep = |mode| cleanup::clean(&job.root, CleanOptions::new(mode, false));
    match rng.random_range(0..4) {
        0 => drop(at.ensure(FS, capacity)?),
        1 => {
            let dest = job
                .dests
                .join(format!("{}-{round}.img", std::process::id()));
            let pause = Duration::from_micros(rng.random_range(0..3000));
            at.with_entry_shared(FS, capacity, |e| clone_in_use(&e.path, &dest, pause))?;
        }
        2 => drop(sweep(CleanMode::Debris)?),
        _ => drop(sweep(CleanMode::All)?),
    }
    Ok(())
}

/// Clones `template` while holding it (the caller's shared lock), checks the
/// clone against it, and that it stays in place a while.
fn clone_in_use(template: &Path, dest: &Path, pause: Duration) -> Result<()> {
    let before = fs::metadata(template)?.ino();
    clone_file(template, dest, Reflink::Auto)?;
    ensure!(
        fs::read(dest)? == fs::read(template)?,
        "the clone differs from its template"
    );
    std::thread::sleep(pause);
    let after = fs::metadata(template).map(|m| m.ino());
    ensure!(
        after.as_ref().ok() == Some(&before),
        "the template was removed or replaced while in use: {after:?}"
    );
    fs::remove_file(dest)?;
    Ok(())
}

/// Locks /proc/locks lists on any file under `root`.
fn locks_under(root: &Path) -> Vec<String> {
    let mut inodes = Vec::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            inodes.push(format!(":{} ", meta.ino()));
            if meta.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    let dev = fs::metadata(root).unwrap().dev();
    let device = format!(
        "{:02x}:{:02x}",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev)
    );
    fs::read_to_string("/proc/locks")
        .unwrap()
        .lines()
        .filter(|l| {
            l.contains(&device) && inodes.iter().any(|i| l.contains(&format!("{device}{i}")))
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn four_processes_keep_every_promise_for_200_rounds() {
    let Some(mnt) = LoopFs::new("btrfs", 512) else {
        return;
    };
    let (root, dests) = (mnt.path().join("cache"), mnt.path().join("clones"));
    fs::create_dir_all(&dests).unwrap();
    let seed = match std::env::var("KTSTR_SOAK_SEED") {
        Ok(s) => s.parse().expect("KTSTR_SOAK_SEED must be a number"),
        Err(_) => rand::random::<u64>(),
    };
    eprintln!("soak seed {seed} (KTSTR_SOAK_SEED={seed} replays it)");
    let workers: Vec<Spawned> = (0..WORKERS)
        .map(|i| {
            let job = Worker {
                root: root.clone(),
                dests: dests.clone(),
                rounds: ROUNDS / WORKERS,
                seed: seed.wrapping_add(i as u64),
            };
            Spawned::new(child(
                "cache::soak::soak_worker",
                &serde_json::to_string(&job).unwrap(),
            ))
        })
        .collect();
    for (i, worker) in workers.into_iter().enumerate() {
        let (status, _, err) = worker.finish();
        assert!(status.success(), "worker {i} failed ({status}): {err}");
    }

    ktstr_ok(&root, &["clean"]);
    let list: Value =
        serde_json::from_str(&ktstr_ok(&root, &["template", "list", "--json"])).unwrap();
    assert_eq!(list["debris"]["in_flight"], 0, "{list:#}");
    assert_eq!(list["debris"]["staging_dir"], 0, "{list:#}");
    assert_eq!(list["debris"]["per_test"], 0, "{list:#}");
    for entry in list["entries"].as_array().unwrap() {
        assert_eq!(entry["state"], "ok", "{entry:#}");
    }
    assert_eq!(
        fs::read_dir(&dests).unwrap().count(),
        0,
        "clones left behind"
    );
    let held = locks_under(&root);
    assert!(held.is_empty(), "locks still held in the cache: {held:?}");
}
