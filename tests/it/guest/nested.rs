//! The nested-KVM lane: the built-in VMM booting the real template kernel
//! on a real KVM. QEMU's TCG emulates AMD SVM, so a KVM-host kernel
//! (`kernel build --kind kvm-host`) booted under it has a /dev/kvm that
//! boots stock kernels, which this project's PVM machines lack. One outer
//! boot runs every check in turn ([`cargo_ktstr::testing::guest::checks`]); one test
//! asserts each check's result line, and what the checks left on the outer
//! guest's disk, read on the host after the run.
//!
//! Behind a switch, since the outer boot takes minutes: [`SWITCH`]`=1`
//! (`.ci/run` sets it). It needs the KVM-host kernel
//! (`$KTSTR_KVM_HOST_KERNEL`, else the newest cached one), the template
//! kernel, QEMU and root.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use cargo_ktstr::testing::formatter::filesystem::Filesystem;
use cargo_ktstr::testing::guest::checks::CheckSpec;
use cargo_ktstr::testing::guest::nested::{
    self, NestedRun, NestedSpec, OuterInitramfs, TEMPLATE_KERNEL,
};
use cargo_ktstr::testing::kernel::resolve::resolve_kvm_host_from_env;

use crate::guest::guests;
use crate::support::loopfs::FsImage;
use crate::support::{bin, guest_kernel, shared_extents};

/// The switch that turns the lane on.
const SWITCH: &str = "KTSTR_NESTED";
/// Where the test binary itself is in the outer guest.
const IT: &str = "/bin/it";
/// Where the prebuilt synthetic guests are in the outer guest.
const GUESTS: &str = "/guests";
/// Where Debian's 6.12 kernel (`boot/vmlinuz-<release>`) and the part of its
/// module tree the template guest needs (`lib/modules/<release>`) are in
/// the outer guest.
const STOCK: &str = "/stock";
/// The outer deadline: well past the few minutes the checks take, so only
/// a hang reaches it.
const OUTER_TIMEOUT: Duration = Duration::from_secs(45 * 60);

/// What the lane left: the outer run, and what was read off its disk.
#[derive(Debug)]
struct Lane {
    run: NestedRun,
    /// Each check's whole output, from `<disk>/checks/<name>.log`.
    logs: BTreeMap<String, String>,
    /// Each published entry under the checks' cache: key, and whether its
    /// image carries its filesystem's magic.
    entries: Vec<(String, bool)>,
    /// The clone equals its template byte for byte, and shares extents.
    clone: Option<(bool, usize)>,
    /// The entries the multi-template check published, as `entries`.
    multi: Vec<(String, bool)>,
    /// Whether the stock kernel's ext4 image carries its magic.
    stock: Option<bool>,
}

impl Lane {
    /// Check `name`'s log, after asserting it exited 0.
    fn passed(&self, name: &str) -> &str {
        let result = self
            .run
            .result(name)
            .unwrap_or_else(|| panic!("no result line for {name}"));
        let log = self.logs.get(name).map_or("", String::as_str);
        assert_eq!(result.status, 0, "{name} failed: {log}");
        log
    }
}

/// The lane's run; `None` (after saying why) when the switch is off.
fn lane(test: &str) -> Option<Lane> {
    if std::env::var_os(SWITCH).is_none_or(|v| v != "1") {
        eprintln!("skipped {test}: the nested lane runs with {SWITCH}=1 (.ci/run sets it)");
        return None;
    }
    Some(boot().unwrap_or_else(|why| panic!("{why}")))
}

/// An assertion over the lane's run, which panics when it fails.
type Assertion = fn(&Lane);

/// What the lane must show, each a name and an assertion.
const ASSERTIONS: &[(&str, Assertion)] = &[
    (
        "kvm builds btrfs, xfs and ext4 templates",
        builds_every_filesystem,
    ),
    (
        "kvm builds three templates in one boot",
        three_templates_in_one_boot,
    ),
    (
        "Debian's kernel builds in the built-in VMM",
        debians_kernel_builds,
    ),
    ("auto picks the built-in VMM", auto_picks_the_builtin_vmm),
    (
        "clone of a nested-built template",
        clone_of_a_nested_built_template,
    ),
    (
        "synthetic guests and the real kernel run on real KVM",
        synthetic_guests_run,
    ),
    (
        "the deadline ends a hung formatter",
        deadline_ends_a_hung_formatter,
    ),
    (
        "twenty builds leave no fd or mapping behind",
        twenty_builds_leave_nothing_behind,
    ),
    (
        "the inner console has no warning the VMM causes",
        inner_console_is_clean,
    ),
];

/// One test for the whole lane: it boots the outer guest once, and a test
/// waiting on another's boot would hold a test thread the rest of the suite
/// could use. Every assertion runs; the failure names each that failed.
#[test]
fn nested_lane_passes_every_check_on_real_kvm() {
    let Some(lane) = lane("nested_lane_passes_every_check_on_real_kvm") else {
        return;
    };
    let failed: Vec<String> = ASSERTIONS
        .iter()
        .filter_map(|(name, assertion)| {
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| assertion(&lane)));
            outcome.err().map(|panic| {
                let why = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("(no message)");
                format!("- {name}: {why}")
            })
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} lane assertions failed:\n{}",
        failed.len(),
        ASSERTIONS.len(),
        failed.join("\n")
    );
}

/// The checks, in order: the CLI first, then this test binary's tests that
/// need a KVM that boots a stock kernel. `stock` is the Debian kernel's
/// path in the outer guest.
fn checks(stock: &str) -> Vec<CheckSpec> {
    let cli = |name: &str, cache: &str, args: &[&str]| {
        // Nested guests are slow on a busy machine: generous deadlines,
        // which only a hang reaches.
        let mut all = vec!["--cache-dir", cache];
        all.extend_from_slice(args);
        if args[1] == "build" {
            all.extend(["--timeout", "300"]);
        }
        CheckSpec::new(name, "/init", &all, 400)
    };
    let build = |fs: &str| {
        let args = [
            "template", "build", "--vmm", "kvm", "--fs", fs, "--json", "-vv", "--kernel",
        ];
        cli(
            &format!("build-{fs}"),
            "/disk/cache",
            &[&args[..], &[TEMPLATE_KERNEL]].concat(),
        )
    };
    let it = |name: &str, filters: &[&str], timeout: u64| {
        let mut args = filters.to_vec();
        args.extend(["--test-threads=1", "--nocapture"]);
        CheckSpec::new(name, IT, &args, timeout)
            .env("CI", "true")
            .env("KTSTR_KERNEL", TEMPLATE_KERNEL)
            .env(guests::PREBUILT_ENV, GUESTS)
    };
    let stock_build = cli(
        "stock",
        "/disk/stock",
        &[
            "template", "build", "--vmm", "kvm", "--fs", "ext4", "--json", "-vv", "--kernel", stock,
        ],
    )
    .env("KTSTR_BOOT_DIR", &format!("{STOCK}/boot"))
    .env("KTSTR_MODULES_ROOT", &format!("{STOCK}/lib/modules"));
    let multi = cli(
        "multi",
        "/disk/multi",
        &[
            "template",
            "build",
            "--vmm",
            "kvm",
            "--json",
            "--kernel",
            TEMPLATE_KERNEL,
            "btrfs:256M",
            "xfs:300M",
            "ext4:64M",
        ],
    );
    vec![
        build("btrfs"),
        build("xfs"),
        build("ext4"),
        multi,
        stock_build,
        cli(
            "auto",
            "/disk/auto",
            &[
                "template",
                "build",
                "--fs",
                "ext4",
                "--kernel",
                TEMPLATE_KERNEL,
            ],
        ),
        cli(
            "clone",
            "/disk/cache",
            &["template", "clone", "--fs", "btrfs", "/disk/clone.img"],
        ),
        it(
            "synthetic",
            &[
                "guest::vmm_guests::",
                "guest::real_kvm::a_real_kernel_builds",
            ],
            600,
        ),
        it("deadline", &["guest::real_kvm::a_hung_formatter"], 300),
        it(
            "twenty-builds",
            &["guest::real_kvm::twenty_real_kernel_builds"],
            900,
        ),
    ]
}

/// The outer initramfs: the crate's own, plus this test binary, the
/// `cargo-ktstr` binary where the tests look for it, the prebuilt
/// synthetic guests, and Debian's 6.12 kernel with the modules it needs.
fn initramfs(template_kernel: &Path) -> anyhow::Result<Vec<u8>> {
    let mut outer = OuterInitramfs::new(&bin(), template_kernel)?;
    let stock = add_stock_kernel(&mut outer)?;
    outer.program(IT, &std::env::current_exe()?)?;
    outer.symlink(bin().to_str().unwrap(), "/init")?;
    for name in guests::ALL {
        outer.file(&format!("{GUESTS}/{name}.elf"), &guests::build(name))?;
    }
    outer.program(
        &format!("{GUESTS}/{}", guests::HANG),
        &guests::hanging_formatter(),
    )?;
    outer.finish(&checks(&stock))
}

/// Adds Debian's 6.12 kernel (CI installs it) under [`STOCK`]: its image,
/// its config, its module indexes and the closure of the modules the
/// template guest needs; returns the image's path in the outer guest.
fn add_stock_kernel(outer: &mut OuterInitramfs) -> anyhow::Result<String> {
    use cargo_ktstr::testing::kernel::modules::GUEST_NEEDS;
    use cargo_ktstr::testing::kernel::modules::index::ModuleIndex;
    use cargo_ktstr::testing::kernel::modules::plan::load_order;
    use cargo_ktstr::testing::kernel::stock::{BOOT_DIR, MODULES_ROOT, boot_kernels};
    let kernel = boot_kernels(BOOT_DIR.as_ref(), MODULES_ROOT.as_ref())
        .into_iter()
        .find(|k| k.has_modules && k.release.starts_with("6.12."))
        .ok_or_else(|| {
            anyhow::anyhow!("the lane boots Debian's 6.12 kernel: run .ci/install-deps")
        })?;
    let release = &kernel.release;
    let image = format!("{STOCK}/boot/vmlinuz-{release}");
    outer.file(&image, &kernel.image)?;
    let config = Path::new(BOOT_DIR).join(format!("config-{release}"));
    if config.is_file() {
        outer.file(&format!("{STOCK}/boot/config-{release}"), &config)?;
    }
    let host_dir = Path::new(MODULES_ROOT).join(release);
    let guest_dir = format!("{STOCK}/lib/modules/{release}");
    for index in [
        "modules.dep",
        "modules.softdep",
        "modules.alias",
        "modules.builtin",
    ] {
        if host_dir.join(index).is_file() {
            outer.file(&format!("{guest_dir}/{index}"), &host_dir.join(index))?;
        }
    }
    let planned = load_order(&ModuleIndex::read(&host_dir)?, &host_dir, GUEST_NEEDS)?;
    for module in planned {
        let relative = module.path.strip_prefix(&host_dir)?;
        outer.file(&format!("{guest_dir}/{}", relative.display()), &module.path)?;
    }
    Ok(image)
}

fn boot() -> Result<Lane, String> {
    let host_kernel = resolve_kvm_host_from_env().map_err(|e| format!("{e:#}"))?;
    let template_kernel = guest_kernel().ok_or("no template kernel")?;
    let initramfs = initramfs(&template_kernel).map_err(|e| format!("{e:#}"))?;
    let image = FsImage::new("btrfs", 4096).ok_or("no btrfs image for the outer disk")?;
    let spec = NestedSpec {
        host_kernel,
        initramfs,
        disk: image.path().to_owned(),
        disk_fs: Filesystem::Btrfs,
        timeout: OUTER_TIMEOUT,
    };
    let run = nested::run(&spec).map_err(|e| format!("{e:#}"))?;
    for stall in &run.stalls {
        eprintln!("warning: the outer guest stalled and was booted again: {stall}");
    }
    if run.nudges > 0 {
        eprintln!(
            "note: the outer console went silent {} times and was nudged",
            run.nudges
        );
    }
    println!("{}", run.console_tail());
    // Where the lane's time goes (`--nocapture` shows it).
    for result in &run.results {
        eprintln!(
            "check {}: status {}, {:.1} s",
            result.name, result.status, result.secs
        );
    }
    let disk = image.mount().ok_or("cannot mount the outer disk")?;
    let mut lane = Lane {
        run,
        logs: BTreeMap::new(),
        entries: Vec::new(),
        clone: None,
        multi: Vec::new(),
        stock: None,
    };
    read_disk(disk.path(), &mut lane);
    Ok(lane)
}

/// Reads the logs, the entries and the clone off the outer disk.
fn read_disk(disk: &Path, lane: &mut Lane) {
    for entry in std::fs::read_dir(disk.join("checks")).unwrap() {
        let path = entry.unwrap().path();
        // `<name>.log`; `<name>.result` holds the line already parsed.
        if path.extension().is_none_or(|e| e != "log") {
            continue;
        }
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        lane.logs.insert(name, text);
    }
    let cache = disk.join("cache");
    let mut btrfs_template = None;
    for entry in std::fs::read_dir(&cache).into_iter().flatten() {
        let entry = entry.unwrap();
        let key = entry.file_name().to_string_lossy().into_owned();
        let Some(fs) = Filesystem::ALL
            .into_iter()
            .find(|fs| key.starts_with(fs.name()))
        else {
            continue;
        };
        let image = entry.path().join("template.img");
        let magic = fs.path_has_magic(&image).unwrap_or(false);
        if fs == Filesystem::Btrfs {
            btrfs_template = Some(image);
        }
        lane.entries.push((key, magic));
    }
    for entry in std::fs::read_dir(disk.join("multi")).into_iter().flatten() {
        let entry = entry.unwrap();
        let key = entry.file_name().to_string_lossy().into_owned();
        if let Some(fs) = Filesystem::ALL
            .into_iter()
            .find(|fs| key.starts_with(fs.name()))
        {
            let magic = fs.path_has_magic(&entry.path().join("template.img"));
            lane.multi.push((key, magic.unwrap_or(false)));
        }
    }
    for entry in std::fs::read_dir(disk.join("stock")).into_iter().flatten() {
        let entry = entry.unwrap();
        if entry.file_name().to_string_lossy().starts_with("ext4") {
            let image = entry.path().join("template.img");
            lane.stock = Some(Filesystem::Ext4.path_has_magic(&image).unwrap_or(false));
        }
    }
    let clone = disk.join("clone.img");
    if let (Some(template), true) = (btrfs_template, clone.exists()) {
        let same = std::fs::read(&template).unwrap() == std::fs::read(&clone).unwrap();
        let (_, shared) = shared_extents(&std::fs::File::open(&clone).unwrap());
        lane.clone = Some((same, shared));
    }
}

fn builds_every_filesystem(lane: &Lane) {
    for fs in Filesystem::ALL {
        let log = lane.passed(&format!("build-{fs}"));
        assert!(log.contains("\"built\": true"), "{fs}: {log}");
        let published: Vec<_> = lane
            .entries
            .iter()
            .filter(|(k, _)| k.starts_with(fs.name()))
            .collect();
        assert_eq!(published.len(), 1, "{fs}: {:?}", lane.entries);
        assert!(
            published[0].1,
            "{fs}: no superblock magic in {}",
            published[0].0
        );
    }
}

fn three_templates_in_one_boot(lane: &Lane) {
    let log = lane.passed("multi");
    assert_eq!(log.matches("\"built\": true").count(), 3, "{log}");
    assert_eq!(
        log.matches("Booting template guest (kvm,").count(),
        1,
        "{log}"
    );
    for fs in Filesystem::ALL {
        let magic = lane.multi.iter().find(|(k, _)| k.starts_with(fs.name()));
        assert!(magic.is_some_and(|(_, m)| *m), "{fs}: {:?}", lane.multi);
    }
}

fn debians_kernel_builds(lane: &Lane) {
    // The VMM's ACPI tables announce the disk to a kernel without
    // command-line virtio-mmio devices; its modules load from the initramfs.
    let log = lane.passed("stock");
    assert!(log.contains("\"built\": true"), "{log}");
    // The stock command line has `quiet`: the kernel's own lines are few.
    let booted = format!("Booting template guest (kvm, kernel `{STOCK}/boot/vmlinuz-6.12.");
    assert!(log.contains(&booted), "{log}");
    // Unpacked on the host: the nested guest skips its decompressor.
    assert!(log.contains("kernel unpacked: yes"), "{log}");
    assert!(
        lane.stock.is_some_and(|m| m),
        "no ext4 magic in the stock-built image"
    );
}

fn auto_picks_the_builtin_vmm(lane: &Lane) {
    let log = lane.passed("auto");
    assert!(log.contains("Booting template guest (kvm,"), "{log}");
}

fn clone_of_a_nested_built_template(lane: &Lane) {
    lane.passed("clone");
    let (same, shared) = lane.clone.expect("no clone on the outer disk");
    assert!(same, "the clone differs from its template");
    assert!(
        shared > 0,
        "the clone on btrfs shares no extent with its template"
    );
}

fn synthetic_guests_run(lane: &Lane) {
    let log = lane.passed("synthetic");
    for test in [
        "guest::vmm_guests::hello_prints_and_resets",
        "guest::vmm_guests::a_guest_driver_uses_the_virtio_blk_disk",
        "guest::vmm_guests::the_serial_interrupt_reaches_the_guest_through_the_ioapic",
        "guest::vmm_guests::a_hundred_runs_leave_no_fd_or_mapping_behind",
        "guest::vmm_guests::the_real_kernel_loads_and_starts",
        "guest::real_kvm::a_real_kernel_builds_a_btrfs_template_in_the_builtin_vmm",
    ] {
        assert!(
            log.contains(&format!("test {test} ... ok")),
            "{test}: {log}"
        );
    }
    assert!(
        !log.contains("skipped"),
        "a test skipped on real KVM: {log}"
    );
}

fn deadline_ends_a_hung_formatter(lane: &Lane) {
    let log = lane.passed("deadline");
    assert!(
        log.contains("a_hung_formatter_ends_at_the_deadline_in_the_builtin_vmm ... ok"),
        "{log}"
    );
    assert!(!log.contains("skipped"), "{log}");
}

fn twenty_builds_leave_nothing_behind(lane: &Lane) {
    let log = lane.passed("twenty-builds");
    // The test counts in a child of its own, which must have printed
    // "counted" for the test to pass.
    let name =
        "guest::real_kvm::twenty_real_kernel_builds_in_one_process_leave_no_fd_or_mapping_behind";
    assert!(log.contains(&format!("test {name} ... ok")), "{log}");
    assert!(!log.contains("skipped"), "{log}");
}

fn inner_console_is_clean(lane: &Lane) {
    // -vv logs the whole guest console of each build.
    for fs in Filesystem::ALL {
        let log = lane.passed(&format!("build-{fs}"));
        assert!(
            log.contains("Linux version"),
            "{fs}: no guest console in {log}"
        );
        for warning in [
            "ExtINT not setup",
            "MP-BIOS bug",
            "[Firmware Bug]",
            "WARNING:",
            "BUG:",
            "Unhandled",
            "APIC error",
            "Unable to calibrate",
        ] {
            assert!(
                !log.contains(warning),
                "{fs}: {warning:?} on the guest console: {log}"
            );
        }
    }
}
