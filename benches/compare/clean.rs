//! Row 5: `clean` over 10,000 pieces of debris against `find -delete`.

use std::fs;
use std::path::Path;
use std::process::Command;

use cargo_ktstr::testing::formatter::filesystem::Filesystem;

use crate::Bench;
use crate::measure::{interleave, run, time};
use crate::table::{Goal, Row};

const PIECES: usize = 10_000;

pub(crate) fn row(b: &Bench, fs: Filesystem, mnt: &Path) -> Row {
    let root = mnt.join("debris");
    let dead = dead_pid();
    let pair = interleave(
        b.runs,
        || {
            lay_debris(&root, dead);
            let t = time(
                Command::new(&b.bin)
                    .arg("--cache-dir")
                    .arg(&root)
                    .arg("clean"),
            );
            assert_eq!(fs::read_dir(&root).unwrap().count(), 0, "clean left debris");
            t
        },
        || {
            lay_debris(&root, dead);
            let t = time(
                Command::new("find")
                    .arg(&root)
                    .args(["-mindepth", "1", "-delete"]),
            );
            assert_eq!(fs::read_dir(&root).unwrap().count(), 0);
            t
        },
    );
    Row::new(
        fs.name(),
        "`clean`, 10,000 dead pieces",
        "`find -mindepth 1 -delete`",
        &pair,
        Goal::ratio(1.2),
    )
}

/// The pid of a reaped child: a real dead owner.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// 10,000 pieces in the three shapes, each with 4 KiB of data, committed to
/// disk so neither side pays for writing them back.
fn lay_debris(root: &Path, dead: u32) {
    fs::create_dir_all(root).unwrap();
    let data = [0x5au8; 4096];
    for i in 0..PIECES {
        let key = format!("btrfs-256m-{i:016x}");
        match i % 3 {
            0 => fs::write(
                root.join(format!("template.img.in-flight.{key}.{dead}")),
                data,
            ),
            1 => {
                let dir = root.join(format!("{key}.tmp.{dead}"));
                fs::create_dir(&dir).unwrap();
                fs::write(dir.join("template.img"), data)
            }
            _ => fs::write(root.join(format!(".per-test-{dead}-{i}-0.img")), data),
        }
        .unwrap();
    }
    run(Command::new("sync").arg("-f").arg(root));
}
