//! Row 2: `template clone` of 1, 4 and 16 GiB templates against `cp`.

use std::path::Path;
use std::process::Command;

use cargo_ktstr::testing::cache::ensure::{Ensurer, HostMkfsBuilder};
use cargo_ktstr::testing::cache::key::Capacity;
use cargo_ktstr::testing::formatter::filesystem::Filesystem;

use crate::Bench;
use crate::measure::{interleave, median, time};
use crate::table::{Goal, Row};

const GIB: [u64; 3] = [1, 4, 16];

/// The rows of one filesystem, and a line on how flat the clone time is in
/// the capacity.
pub(crate) fn rows(b: &Bench, fs: Filesystem, mnt: &Path) -> (Vec<Row>, String) {
    let root = mnt.join("cache");
    let (dest, copy) = (mnt.join("dest.img"), mnt.join("copy.img"));
    let cp_flag = match fs {
        Filesystem::Ext4 => "--sparse=always",
        Filesystem::Btrfs | Filesystem::Xfs => "--reflink=always",
    };
    let mut rows = Vec::new();
    let mut medians = Vec::new();
    for gib in GIB {
        let capacity = Capacity::from_mib(gib << 10).unwrap();
        // Real mkfs output, published through the library as a build would.
        let template = Ensurer::new(&root, &HostMkfsBuilder)
            .ensure(fs, capacity)
            .expect("publish a template")
            .path;
        let size = format!("{gib}G");
        let pair = interleave(
            b.runs,
            || {
                let t = time(
                    Command::new(&b.bin)
                        .arg("--cache-dir")
                        .arg(&root)
                        .args(["template", "clone", "--fs", fs.name(), "--capacity", &size])
                        .arg(&dest),
                );
                std::fs::remove_file(&dest).unwrap();
                t
            },
            || {
                let t = time(Command::new("cp").arg(cp_flag).arg(&template).arg(&copy));
                std::fs::remove_file(&copy).unwrap();
                t
            },
        );
        medians.push(median(&pair.ours));
        rows.push(Row::new(
            fs.name(),
            format!("`template clone` {gib} GiB"),
            format!("`cp {cp_flag}`"),
            &pair,
            Goal::ratio(1.5),
        ));
    }
    let flat = medians[2].as_secs_f64() / medians[0].as_secs_f64();
    let note = format!("{fs}: `template clone` 16 GiB takes {flat:.2}x the time of 1 GiB");
    (rows, note)
}
