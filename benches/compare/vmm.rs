//! Row 4: the built-in VMM. Where the host's KVM can boot a stock kernel, a
//! forced cold build with `--vmm kvm` against the host's mkfs; elsewhere (a
//! paravirtualized KVM such as PVM) the synthetic hello guest of
//! `benches/vmm.rs`, from the start of a run to its reset.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cargo_ktstr::runner::RunEnd;
use cargo_ktstr::runner::kvm::kvm_boot_support;
use cargo_ktstr::testing::formatter::fingerprint::find_formatter;
use cargo_ktstr::testing::vmm::{self, VmConfig};

use crate::Bench;
use crate::build::Place;
use crate::measure::{Pair, interleave, time};
use crate::table::{Goal, Row};

// The tests' recipe, shared; a bench builds guests only, not the
// hanging formatter.
#[allow(dead_code)]
#[path = "../../tests/guests/mod.rs"]
mod guests;

pub(crate) fn row(b: &Bench, p: &Place, kernel: &Path) -> Row {
    match kvm_boot_support() {
        Ok(()) => cold_build(b, p, kernel),
        Err(why) => {
            eprintln!("  KVM cannot boot a stock kernel here ({why}): timing the hello guest");
            hello(b)
        }
    }
}

fn cold_build(b: &Bench, p: &Place, kernel: &Path) -> Row {
    let formatter = find_formatter(p.fs).unwrap();
    let disk = p.mnt.join("disk.img");
    let kernel_arg = kernel.to_str().unwrap();
    let pair = interleave(
        b.runs,
        || time(&mut p.build(b, &["--vmm", "kvm", "--force", "--kernel", kernel_arg])),
        || {
            let _ = std::fs::remove_file(&disk);
            std::fs::File::create(&disk)
                .unwrap()
                .set_len(p.capacity().bytes())
                .unwrap();
            time(Command::new(&formatter).args(p.fs.mkfs_args()).arg(&disk))
        },
    );
    let goal = Goal {
        ratio: f64::INFINITY,
        max_ms: Some(300.0),
    };
    Row::new(
        p.fs.name(),
        "`template build --vmm kvm --force`",
        format!("host `{}`", p.fs.mkfs()),
        &pair,
        goal,
    )
}

/// The hello guest through [`vmm::run`], as `benches/vmm.rs` runs it.
fn hello(b: &Bench) -> Row {
    let kernel = guests::build("hello");
    let config = VmConfig {
        kernel: &kernel,
        initramfs: &[],
        cmdline: "console=ttyS0",
        disks: &[],
        memory_mib: 256,
        timeout: Duration::from_secs(10),
    };
    let ours = (0..b.runs.max(10) * 5)
        .map(|_| {
            let out = vmm::run(&config).expect("hello guest");
            assert_eq!(out.end, RunEnd::Reset);
            out.total
        })
        .collect();
    let pair = Pair {
        ours,
        base: Vec::new(),
    };
    let goal = Goal {
        ratio: f64::INFINITY,
        max_ms: Some(5.0),
    };
    Row::new(
        "-",
        "built-in VMM, hello guest start to reset",
        "none (KVM cannot boot Linux here)",
        &pair,
        goal,
    )
}
