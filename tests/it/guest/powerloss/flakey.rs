//! Failing disks: dm-flakey under the cache in the guest
//! ([`cargo_ktstr::testing::guest::powerloss::flakey`]), failing every write
//! (`error_writes`) or dropping them silently (`drop_writes`) through a
//! publish and through a clone. Under `error_writes` the operation fails
//! with an error naming the disk's path and saying what to do, and no entry
//! is there; under `drop_writes` the tool notices the disk did not keep
//! what it wrote and fails the same way (without that read-back, the
//! publish returns and the lookup must take what is left for a miss); once
//! the disk is healthy and the filesystem mounted again, the lookup serves
//! nothing torn, and the next run succeeds. Then the host mounts the disk and checks it with
//! `template list --json` and `clean`.

use std::path::Path;
use std::process::Command;

use cargo_ktstr::testing::formatter::filesystem::Filesystem;
use cargo_ktstr::testing::guest::powerloss::flakey::{Action, Fault, Found, StepRecord};
use serde_json::Value;

use super::{boot, enabled};
use crate::support::ktstr_cmd;

/// What the error of an operation on a failing disk must say.
const ADVICE: &str = "the disk may be failing";

fn failing_disk(fs: Filesystem) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.img");
    let Some((console, secs)) = boot(fs, &data, None, None) else {
        return;
    };
    let records = StepRecord::all_from_console(&console);
    let shown = String::from_utf8_lossy(&console);
    assert_eq!(
        records.len(),
        cargo_ktstr::testing::guest::powerloss::flakey::SCENARIOS.len(),
        "{fs}: a scenario's line is missing; console:\n{shown}"
    );
    let mut broken = Vec::new();
    for r in &records {
        eprintln!("{fs}: {r:?}");
        broken.extend(judge(r, &records).into_iter().map(|v| {
            format!(
                "scenario {} ({:?} under {:?}) of {}: {v}",
                r.n, r.action, r.fault, r.key
            )
        }));
    }
    broken.extend(final_disk(&data, &records));
    eprintln!("{fs}: {} scenarios in {secs:.1} s", records.len());
    assert!(
        broken.is_empty(),
        "{fs} on a failing disk:\n{}",
        broken.join("\n")
    );
}

/// The template a clone scenario used: what its key's publish made.
fn template_hash(r: &StepRecord, all: &[StepRecord]) -> Option<String> {
    all.iter()
        .filter(|p| p.action == Action::Publish && p.key == r.key)
        .find_map(|p| p.next_built.clone())
}

/// What is wrong with one scenario's record.
fn judge(r: &StepRecord, all: &[StepRecord]) -> Vec<String> {
    let mut found = Vec::new();
    if let (Some(why), Fault::ErrorWrites) = (&r.repaired, r.fault) {
        found.push(format!(
            "the filesystem needed a repair after failed writes alone: {why}"
        ));
    }
    match &r.error {
        // Without the read-back nothing tells dropped writes: the publish
        // returns, and what the disk kept must still never be served.
        None if !r.readback => {}
        // A reflink writes no data to read back; what the clone is once the
        // disk heals is judged below.
        None if r.action == Action::Clone && r.fault == Fault::DropWrites => {}
        Some(e) if !r.readback => found.push(format!(
            "without the read-back the publish still failed, so this scenario shows nothing: {e}"
        )),
        None => found.push(format!(
            "the operation on the failing disk succeeded (made sha256 {:?})",
            r.built
        )),
        Some(e) if !e.contains(&r.target) || !e.contains(ADVICE) => found.push(format!(
            "its error does not name `{}` and say \"{ADVICE}\": {e}",
            r.target
        )),
        Some(_) => {}
    }
    match r.action {
        Action::Publish => match &r.entry {
            Found::Absent => {}
            Found::Valid(h) if Some(h) == r.built.as_ref() => {}
            // A torn entry the lookup takes for one: a miss, rebuilt.
            Found::Invalid(_) if !r.readback => {}
            other => found.push(format!(
                "after the disk healed the lookup shows {other:?}, neither absent nor what was \
                 built ({:?})",
                r.built
            )),
        },
        Action::Clone => {
            let template = template_hash(r, all);
            if r.entry != Found::Valid(template.clone().unwrap_or_default()) {
                found.push(format!(
                    "the template it cloned is now {:?}, not the published {template:?}",
                    r.entry
                ));
            }
            let dest_ok = match &r.dest {
                Some(Found::Absent) => true,
                Some(Found::Valid(h)) => {
                    r.fault == Fault::DropWrites && Some(h) == template.as_ref()
                }
                _ => false,
            };
            if !dest_ok {
                found.push(format!(
                    "after the disk healed its destination is {:?}, neither absent nor the \
                     template",
                    r.dest
                ));
            }
        }
    }
    match (&r.next_error, &r.next_built) {
        (Some(e), _) => found.push(format!("the next run on the healthy disk failed: {e}")),
        (None, Some(h)) if r.next != Found::Valid(h.clone()) => found.push(format!(
            "the next run made sha256 {h}, but the cache then shows {:?}",
            r.next
        )),
        _ => {}
    }
    found
}

/// The disk as the guest left it, mounted on the host: `template list`
/// shows every key the scenarios published as a valid entry, and after
/// `clean` no debris is left.
fn final_disk(data: &Path, records: &[StepRecord]) -> Vec<String> {
    let mnt = tempfile::tempdir().unwrap();
    let status = Command::new("mount")
        .arg("-o")
        .arg("loop")
        .arg(data)
        .arg(mnt.path())
        .status()
        .unwrap();
    assert!(status.success(), "failed to mount {}", data.display());
    let root = mnt
        .path()
        .join(cargo_ktstr::testing::guest::powerloss::TEMPLATES);
    let mut found = Vec::new();
    let clean = ktstr_cmd(&root).arg("clean").output().unwrap();
    if !clean.status.success() {
        found.push(format!(
            "clean failed on the healed disk: {}",
            String::from_utf8_lossy(&clean.stderr)
        ));
    }
    let out = ktstr_cmd(&root)
        .args(["template", "list", "--json"])
        .output()
        .unwrap();
    let _ = Command::new("umount").arg(mnt.path()).status();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let entries: Vec<(&str, &str)> = (doc["entries"].as_array().into_iter().flatten())
        .map(|e| {
            (
                e["name"].as_str().unwrap_or(""),
                e["state"].as_str().unwrap_or(""),
            )
        })
        .collect();
    for r in records.iter().filter(|r| r.action == Action::Publish) {
        if !entries.contains(&(r.key.as_str(), "ok")) {
            found.push(format!(
                "on the healed disk `template list` shows no valid {}: {entries:?}",
                r.key
            ));
        }
    }
    let debris = &doc["debris"];
    let left = ["in_flight", "staging_dir", "per_test"]
        .iter()
        .map(|k| debris[k].as_u64().unwrap_or(0))
        .sum::<u64>();
    if left > 0 {
        found.push(format!("debris is left after clean: {debris}"));
    }
    found
}

#[test]
fn powerloss_failing_disk_ext4() {
    if enabled("powerloss_failing_disk_ext4") {
        failing_disk(Filesystem::Ext4);
    }
}

#[test]
fn powerloss_failing_disk_xfs() {
    if enabled("powerloss_failing_disk_xfs") {
        failing_disk(Filesystem::Xfs);
    }
}

#[test]
fn powerloss_failing_disk_btrfs() {
    if enabled("powerloss_failing_disk_btrfs") {
        failing_disk(Filesystem::Btrfs);
    }
}
