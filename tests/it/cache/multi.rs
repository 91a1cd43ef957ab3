//! Several templates from one guest boot (`template build FS:SIZE...`): a
//! real kernel under QEMU formats a disk per template; each is published
//! under its own key, hits need no boot, overlapping sets from two
//! processes build each key once, and one failing formatter leaves the
//! others published.

use std::path::Path;
use std::process::Command;

use cargo_ktstr::testing::cache::ensure::{Ensurer, batch};
use cargo_ktstr::testing::cache::key::Capacity;
use cargo_ktstr::testing::formatter::filesystem::Filesystem;
use cargo_ktstr::testing::guest::builder::GuestBuilder;
use serde_json::Value;

use crate::support::{bin, build_cmd, guest_prerequisites, ktstr_cmd, stderr};

const THREE: [&str; 3] = ["btrfs:256M", "xfs:300M", "ext4:64M"];

/// The JSON array and how many guests were booted (stderr's "Booting" lines).
fn run(mut cmd: Command) -> (Vec<Value>, usize) {
    let out = cmd.output().unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let reports: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    (reports, err.matches("Booting").count())
}

fn built(reports: &[Value]) -> Vec<bool> {
    reports.iter().map(|r| r["built"] == true).collect()
}

/// Each report's image carries its filesystem's magic.
fn assert_valid(reports: &[Value]) {
    for r in reports {
        let fs: Filesystem = r["fs"].as_str().unwrap().parse().unwrap();
        let path = Path::new(r["path"].as_str().unwrap());
        assert!(fs.path_has_magic(path).unwrap(), "{r}");
    }
}

#[test]
fn three_missing_templates_take_one_guest_boot_and_are_then_found() {
    let Some((kernel, _)) = guest_prerequisites() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let (reports, boots) = run(build_cmd(root.path(), &kernel, &THREE));
    assert_eq!(boots, 1);
    assert_eq!(built(&reports), [true, true, true]);
    let fs: Vec<&str> = reports.iter().map(|r| r["fs"].as_str().unwrap()).collect();
    assert_eq!(fs, ["btrfs", "xfs", "ext4"], "in the order asked");
    assert_valid(&reports);
    let (again, boots) = run(build_cmd(root.path(), &kernel, &THREE));
    assert_eq!((built(&again), boots), (vec![false; 3], 0));
    assert_eq!(again[1]["path"], reports[1]["path"]);
}

#[test]
fn present_templates_are_hits_and_the_rest_share_one_guest_boot() {
    let Some((kernel, _)) = guest_prerequisites() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    run(build_cmd(root.path(), &kernel, &["xfs:300M"]));
    let (reports, boots) = run(build_cmd(root.path(), &kernel, &THREE));
    assert_eq!((built(&reports), boots), (vec![true, false, true], 1));
    assert_valid(&reports);
}

#[test]
fn overlapping_sets_from_two_processes_build_each_key_once_in_a_guest() {
    let Some((kernel, _)) = guest_prerequisites() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let a = build_cmd(root.path(), &kernel, &["btrfs:256M", "xfs:300M"]).spawn_output();
    let b = build_cmd(root.path(), &kernel, &["xfs:300M", "ext4:64M"]).spawn_output();
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    let parse = |out: &std::process::Output| -> Vec<Value> {
        assert!(out.status.success(), "{}", stderr(out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let (a, b) = (parse(&a), parse(&b));
    assert_valid(&a);
    assert_valid(&b);
    // Both name the one xfs entry; exactly one of them built it.
    assert_eq!(a[1]["path"], b[0]["path"]);
    assert_eq!(
        [&a[1]["built"], &b[0]["built"]]
            .iter()
            .filter(|v| ***v == true)
            .count(),
        1,
        "{a:?} {b:?}"
    );
    assert_eq!(
        (a[0]["built"].clone(), b[1]["built"].clone()),
        (true.into(), true.into())
    );
}

#[test]
fn a_failing_formatter_in_a_guest_is_named_and_the_others_still_publish() {
    let Some((kernel, qemu)) = guest_prerequisites() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let cap = |mib| Capacity::from_mib(mib).unwrap();
    let wanted = [
        (Filesystem::Btrfs, cap(256)),
        (Filesystem::Xfs, cap(300)),
        (Filesystem::Ext4, cap(64)),
    ];
    let keys = batch::keys(&wanted).unwrap();
    // `false` runs in the guest as xfs's formatter and exits 1.
    let builder = GuestBuilder::new(Box::new(qemu), kernel, bin())
        .formatter_for(Filesystem::Xfs, "/bin/false".into());
    let items = Ensurer::new(root.path(), &builder)
        .ensure_keys(&keys)
        .unwrap();
    assert!(items[0].result.as_ref().unwrap().built);
    assert!(items[2].result.as_ref().unwrap().built);
    let err = format!("{:#}", items[1].result.as_ref().unwrap_err());
    assert!(
        err.contains(&keys[1].to_string()) && err.contains("mkfs.xfs exited with status 1"),
        "{err}"
    );
    let left: Vec<String> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !left
            .iter()
            .any(|n| n.starts_with("xfs") || n.contains("in-flight")),
        "{left:?}"
    );
}

/// Runs a command on its own thread, for two at once.
trait SpawnOutput {
    fn spawn_output(self) -> std::thread::JoinHandle<std::process::Output>;
}

impl SpawnOutput for Command {
    fn spawn_output(mut self) -> std::thread::JoinHandle<std::process::Output> {
        std::thread::spawn(move || self.output().unwrap())
    }
}

#[test]
fn clone_gives_each_dest_its_template_from_one_guest_boot() {
    let Some((kernel, _)) = guest_prerequisites() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let dests = tempfile::tempdir().unwrap();
    let a = dests.path().join("a.img");
    let b = dests.path().join("b.img");
    let out = ktstr_cmd(root.path())
        .args(["template", "clone", "--vmm", "qemu", "--kernel"])
        .arg(&kernel)
        .arg(format!("btrfs:256M={}", a.display()))
        .arg(format!("ext4:64M={}", b.display()))
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(err.matches("Booting").count(), 1, "{err}");
    assert!(Filesystem::Btrfs.path_has_magic(&a).unwrap());
    assert!(Filesystem::Ext4.path_has_magic(&b).unwrap());
    // A DEST among pairs is a usage mistake, said before any work.
    let mixed = ktstr_cmd(root.path())
        .args([
            "template",
            "clone",
            "--vmm",
            "qemu",
            "btrfs:256M=/tmp/x.img",
        ])
        .arg(dests.path().join("c.img"))
        .output()
        .unwrap();
    assert!(!mixed.status.success());
    assert!(
        stderr(&mixed).contains("FS[:SIZE]=DEST"),
        "{}",
        stderr(&mixed)
    );
}
