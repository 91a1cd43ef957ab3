//! A disk that fills up during a build: the error says the disk is full, no
//! entry and no staging image are left, and the cache works again once space
//! is freed. The formatter runs in a real guest, which sees only I/O errors.

use std::fs;

use cargo_ktstr::testing::cache::lookup::{self, Entry};
use cargo_ktstr::testing::formatter::filesystem::Filesystem;

use crate::support::images::fill_disk;
use crate::support::loopfs::LoopFs;
use crate::support::{current_key, ext4_64m, guest_prerequisites, ktstr_cmd, stderr};

#[test]
fn a_guest_build_on_a_full_disk_says_so_leaves_nothing_and_works_once_space_is_freed() {
    let Some((kernel, _)) = guest_prerequisites() else {
        return;
    };
    let Some(mnt) = LoopFs::new("ext4", 64) else {
        return;
    };
    let root = mnt.path().join("cache");
    fs::create_dir(&root).unwrap();
    let filler = mnt.path().join("filler");
    fill_disk(&filler);
    let build = || {
        let mut cmd = ext4_64m(ktstr_cmd(&root), "build");
        cmd.args(["--timeout", "60", "--kernel"])
            .arg(&kernel)
            .output()
            .unwrap()
    };

    let out = build();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "the disk holding the template cache `{}` is full",
            root.display()
        )),
        "{err}"
    );
    let left: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, [".locks"], "an entry or a staging image was left");

    fs::remove_file(&filler).unwrap();
    let out = build();
    assert!(out.status.success(), "{}", stderr(&out));
    let key = current_key(Filesystem::Ext4, 64).parse().unwrap();
    assert!(matches!(
        lookup::lookup(&root, &key).unwrap(),
        Entry::Valid(_)
    ));
}
