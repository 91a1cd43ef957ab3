//! The built-in VMM booting the real template kernel: these need a KVM that
//! boots stock kernels. On this project's PVM machines they skip, saying
//! why (the only tests allowed to skip under CI); the nested lane
//! (`nested.rs`) runs them inside a guest whose KVM can.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cargo_ktstr::runner::kvm::KvmRunner;
use cargo_ktstr::runner::kvm::kvm_boot_support;
use cargo_ktstr::runner::{GuestRunner, GuestSpec, RunOutcome};
use cargo_ktstr::testing::cache::ensure::{EnsureOptions, Ensurer};
use cargo_ktstr::testing::cache::key::Capacity;
use cargo_ktstr::testing::formatter::filesystem::Filesystem;
use cargo_ktstr::testing::guest::builder::GuestBuilder;

use crate::guest::guests;
use crate::support::{
    bin, guest_kernel, in_counting_child, ktstr_cmd, mappings, names, open_fds, stderr,
};

/// The template kernel, where this host's KVM can boot it; else `None`
/// after a line saying why `test` skipped.
fn real_kvm(test: &str) -> Option<PathBuf> {
    if let Err(why) = kvm_boot_support() {
        eprintln!("skipped {test}: {why}");
        return None;
    }
    guest_kernel()
}

fn builder(kernel: PathBuf) -> GuestBuilder {
    GuestBuilder::new(Box::new(KvmRunner), kernel, bin())
}

#[test]
fn a_real_kernel_builds_a_btrfs_template_in_the_builtin_vmm() {
    let Some(kernel) = real_kvm("a_real_kernel_builds_a_btrfs_template_in_the_builtin_vmm") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let out = ktstr_cmd(root.path())
        .args([
            "template",
            "build",
            "--vmm",
            "kvm",
            "--fs",
            "btrfs",
            "--json",
            "--timeout",
            "300",
            "--kernel",
        ])
        .arg(&kernel)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["built"], true, "{report}");
    let path = PathBuf::from(report["path"].as_str().unwrap());
    assert!(
        Filesystem::Btrfs.path_has_magic(&path).unwrap(),
        "no btrfs magic"
    );
}

/// The built-in VMM, timing each run it makes: the deadline is the guest
/// run's, while packing the initramfs before it takes what it takes (long,
/// under TCG).
#[derive(Debug, Default)]
struct TimedKvm(Arc<Mutex<Vec<Duration>>>);

impl GuestRunner for TimedKvm {
    fn name(&self) -> &'static str {
        KvmRunner.name()
    }

    fn reboot_arg(&self) -> &'static str {
        KvmRunner.reboot_arg()
    }

    fn run(&self, spec: &GuestSpec) -> anyhow::Result<RunOutcome> {
        let start = Instant::now();
        let outcome = KvmRunner.run(spec);
        self.0.lock().unwrap().push(start.elapsed());
        outcome
    }
}

#[test]
fn a_hung_formatter_ends_at_the_deadline_in_the_builtin_vmm() {
    let Some(kernel) = real_kvm("a_hung_formatter_ends_at_the_deadline_in_the_builtin_vmm") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    // Long enough for a nested guest on a busy machine to reach its
    // formatter (a few seconds), which must show on the console.
    let timeout = Duration::from_secs(20);
    let runs = Arc::new(Mutex::new(Vec::new()));
    let builder = GuestBuilder::new(Box::new(TimedKvm(Arc::clone(&runs))), kernel, bin())
        .formatter(guests::hanging_formatter())
        .timeout(timeout);
    let cap = Capacity::from_mib(64).unwrap();
    let err = Ensurer::new(root.path(), &builder)
        .ensure(Filesystem::Ext4, cap)
        .unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("did not finish within 20 s"), "{err}");
    assert!(err.contains("ktstr-test: the formatter hangs"), "{err}");
    let took = runs.lock().unwrap().clone();
    assert_eq!(took.len(), 1, "{took:?}");
    assert!(
        took[0] >= timeout && took[0] <= timeout.mul_f64(1.1),
        "the guest ran {:?} against a {timeout:?} deadline",
        took[0]
    );
    assert_eq!(names(root.path()), [".locks"], "a staging image was left");
}

#[test]
fn twenty_real_kernel_builds_in_one_process_leave_no_fd_or_mapping_behind() {
    let name =
        "guest::real_kvm::twenty_real_kernel_builds_in_one_process_leave_no_fd_or_mapping_behind";
    let Some(kernel) = real_kvm(name) else {
        return;
    };
    // Other tests in this process open fds at any moment, so the counting
    // happens in a child running only this test.
    if !in_counting_child(name) {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let builder = builder(kernel).timeout(Duration::from_secs(300));
    let cap = Capacity::from_mib(64).unwrap();
    let at = Ensurer::new(root.path(), &builder).with_options(EnsureOptions {
        force: true,
        ..EnsureOptions::default()
    });
    let build = || {
        let built = at.ensure(Filesystem::Ext4, cap).unwrap();
        assert!(built.built && Filesystem::Ext4.path_has_magic(&built.path).unwrap());
    };
    // The first build settles one-time state (the CPUID cache, the kick
    // handler); the other nineteen must add nothing.
    build();
    let (fds, maps) = (open_fds(), mappings());
    (1..20).for_each(|_| build());
    assert_eq!(open_fds(), fds, "fds leaked");
    assert_eq!(mappings(), maps, "mappings leaked");
    println!("counted {fds} fds and {maps} mappings before and after 19 builds");
}
