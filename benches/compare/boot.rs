//! Row 10: a cold build with the kernel today's fragment makes, against the
//! same build with the kernel of the fragment as it was before the boot-time
//! work (`fixtures/template-a941d90.config`). The fixture kernel is built
//! once, into a store of its own beside the kernel cache, so it is never a
//! kernel a template build picks.
//!
//! Row 11: btrfs, xfs and ext4 templates built by one guest boot, against
//! one template of the row's filesystem alone.

use std::path::{Path, PathBuf};
use std::process::Command;

use cargo_ktstr::testing::kernel::KernelKind;
use cargo_ktstr::testing::kernel::build::{BuildOptions, Recipe, build_recipe};
use cargo_ktstr::testing::kernel::store::KernelStore;
use cargo_ktstr::testing::progress::Progress;

use crate::Bench;
use crate::build::Place;
use crate::measure::{interleave, time};
use crate::table::{Goal, Row};

const FIXTURE: &str = include_str!("fixtures/template-a941d90.config");

/// The kernel source both kernels come from (`$KTSTR_KERNEL_SOURCE`, else
/// Debian's linux-source-6.12).
pub(crate) fn source() -> PathBuf {
    std::env::var_os("KTSTR_KERNEL_SOURCE")
        .map_or_else(|| "/usr/src/linux-source-6.12.tar.xz".into(), PathBuf::from)
}

/// The fixture fragment's kernel: built on the first run, a hit after.
pub(crate) fn fixture_kernel() -> PathBuf {
    let kernels = KernelStore::from_env().expect("the kernel cache");
    let store = KernelStore::new(kernels.dir().with_file_name("bench-kernels"));
    // A fixed name: the fixture is one kernel, whatever the source's key.
    let name = |version: &str, _key: &str| format!("{version}-fixture-a941d90");
    let recipe = Recipe {
        label: "fixture (a941d90)".into(),
        fragments: &[("template.config", FIXTURE)],
        name: &name,
        legacy_name: None,
    };
    let opts = BuildOptions {
        kind: KernelKind::Template,
        jobs: cargo_ktstr::testing::host::cores(),
        force: false,
    };
    eprintln!("rows 8 and 10: the fixture kernel (about 5 minutes on the first run)");
    build_recipe(
        &store,
        &source(),
        &recipe,
        opts,
        None,
        &Progress::new(false),
    )
    .expect("building the fixture kernel")
    .image
}

/// Row 10 on one filesystem.
pub(crate) fn row(b: &Bench, p: &Place, new: &Path, old: &Path) -> Row {
    let build = |kernel: &Path| {
        let kernel = kernel.to_str().unwrap().to_owned();
        move || time(&mut p.build(b, &["--vmm", "qemu", "--force", "--kernel", &kernel]))
    };
    let pair = interleave(b.runs, build(new), build(old));
    Row::new(
        p.fs.name(),
        format!(
            "cold `template build --vmm qemu --force` ({}), today's kernel fragment",
            p.capacity()
        ),
        "the same with the fragment before the boot-time work",
        &pair,
        Goal::ratio(0.55),
    )
}

/// The three templates of row 11, at their default capacities.
const THREE: [&str; 3] = ["btrfs:256M", "xfs:300M", "ext4:256M"];

/// Row 11 on one filesystem.
pub(crate) fn many_in_one_boot(b: &Bench, p: &Place, kernel: &Path) -> Row {
    let kernel = kernel.to_str().unwrap().to_owned();
    let three = || {
        let mut cmd = Command::new(&b.bin);
        cmd.arg("--cache-dir")
            .arg(p.root())
            .args([
                "template", "build", "--vmm", "qemu", "--force", "--kernel", &kernel,
            ])
            .args(THREE);
        time(&mut cmd)
    };
    let one = || time(&mut p.build(b, &["--vmm", "qemu", "--force", "--kernel", &kernel]));
    let pair = interleave(b.runs, three, one);
    Row::new(
        p.fs.name(),
        format!(
            "cold `template build --vmm qemu --force {}`",
            THREE.join(" ")
        ),
        format!("one cold {} {} template", p.fs.name(), p.capacity()),
        &pair,
        Goal::ratio(1.3),
    )
}
