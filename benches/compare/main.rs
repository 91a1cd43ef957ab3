//! `cargo bench --bench compare`: cargo-ktstr side by side with what a person
//! would type instead, as a ratio table (markdown, for README).
//!
//! Every figure is timed in the same run as its baseline, the two interleaved,
//! and reported as the median of `--runs` (default 10) runs. The filesystems
//! are real: btrfs, xfs and ext4, each on a loop device this benchmark makes
//! and tears down, so it needs root.
//!
//! `cargo bench --bench compare -- [--runs N] [--rows 1,2,3,4,5,6,7,8,9,10,11,12] [--fs btrfs,xfs,ext4]`
//!
//! Row 7 boots the nested-KVM lane's outer guest once and needs its KVM-host
//! kernel (`cargo ktstr kernel build --kind kvm-host`). Row 8 needs Debian's
//! 6.12 kernel in /boot with its modules, and the cached tinyconfig kernel;
//! it measures Debian's against that kernel and against row 10's fixture,
//! the tinyconfig kernel of the day row 8's goal was set. Rows 8 and 10
//! build the fixture fragment's kernel once (minutes) from
//! `$KTSTR_KERNEL_SOURCE` or Debian's linux-source-6.12. Row 12, the remote
//! kernel cache against rclone, builds that source once more (minutes) and
//! needs `--features remote` and rclone.

mod boot;
mod build;
mod clean;
mod clone;
mod measure;
mod nested;
mod remote;
mod table;
mod tcg;
mod vmm;

// The integration tests' loop-filesystem helper, shared rather than copied;
// it reports a missing prerequisite through `crate::support`.
#[path = "../../tests/it/support/loopfs.rs"]
mod loopfs;

mod support {
    /// Here a missing prerequisite ends the benchmark: a table with holes
    /// would read as measured.
    pub(crate) fn prerequisite(what: &str, available: bool) -> bool {
        assert!(available, "the benchmark needs {what}");
        available
    }
}

use std::path::PathBuf;

use cargo_ktstr::testing::formatter::filesystem::Filesystem;

use crate::loopfs::LoopFs;
use crate::table::Row;

/// What every row needs.
#[derive(Debug)]
pub struct Bench {
    /// The release `cargo-ktstr` binary.
    pub bin: PathBuf,
    pub runs: usize,
}

#[derive(Debug)]
struct Args {
    runs: usize,
    rows: Vec<u32>,
    filesystems: Vec<Filesystem>,
}

fn parse_args() -> Args {
    let mut args = Args {
        runs: 10,
        rows: vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
        filesystems: Filesystem::ALL.to_vec(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            // cargo passes `--bench` to every benchmark binary.
            "--bench" => {}
            "--runs" => args.runs = value().parse().expect("--runs N"),
            "--rows" => {
                args.rows = value()
                    .split(',')
                    .map(|r| r.parse().expect("--rows 1,2,5,7"))
                    .collect()
            }
            "--fs" => {
                args.filesystems = value()
                    .split(',')
                    .map(|f| f.parse().expect("--fs btrfs,xfs,ext4"))
                    .collect()
            }
            other => panic!("unknown argument {other}; see benches/compare/main.rs"),
        }
    }
    args
}

fn main() {
    let args = parse_args();
    assert!(
        nix::unistd::geteuid().is_root(),
        "the benchmark mounts loop filesystems: run it as root"
    );
    let bench = Bench {
        bin: PathBuf::from(env!("CARGO_BIN_EXE_cargo-ktstr")),
        runs: args.runs,
    };
    // Room for a 16 GiB template and its copies; the backing files are sparse.
    let mounts: Vec<(Filesystem, LoopFs)> = args
        .filesystems
        .iter()
        .map(|&fs| {
            (
                fs,
                LoopFs::new(fs.name(), 24 << 10).expect("loop filesystem"),
            )
        })
        .collect();
    let mut rows: Vec<Row> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    // Rows 3, 4 and 6 to 11 boot the template guest.
    let kernel = || {
        cargo_ktstr::testing::kernel::resolve::resolve_from_env(None).expect(
            "rows 3, 4 and 6 to 11 boot a guest kernel: run `cargo ktstr kernel build` first",
        )
    };
    // Row 10's baseline, and row 8's second one: the tinyconfig kernel as
    // it was when the stock-kernel issue set row 8's goal.
    let fixture = (args.rows.contains(&8) || args.rows.contains(&10)).then(boot::fixture_kernel);
    for row in &args.rows {
        for (fs, mnt) in &mounts {
            eprintln!("row {row} on {fs}:");
            let place = build::Place {
                fs: *fs,
                mnt: mnt.path(),
            };
            match row {
                1 => rows.push(build::warm_hit(&bench, &place)),
                2 => {
                    let (got, note) = clone::rows(&bench, *fs, mnt.path());
                    rows.extend(got);
                    notes.push(note);
                }
                3 => rows.extend(build::cold_qemu(&bench, &place, &kernel())),
                // The hello guest does not depend on the filesystem.
                4 => {
                    rows.push(vmm::row(&bench, &place, &kernel()));
                    break;
                }
                5 => rows.push(clean::row(&bench, *fs, mnt.path())),
                6 => rows.push(build::contention(&bench, &place, &kernel())),
                // One outer guest, on its own disk.
                7 => {
                    rows.extend(nested::rows(&bench, &kernel()));
                    break;
                }
                8 => {
                    let (stock, built) = stock_and_built_kernels();
                    let baselines = [
                        (built.as_path(), "the tinyconfig kernel"),
                        (
                            fixture.as_deref().unwrap(),
                            "the tinyconfig kernel of a941d90 (row 10's fixture)",
                        ),
                    ];
                    for (kernel, label) in baselines {
                        rows.push(build::stock_vs_built(&bench, &place, &stock, kernel, label));
                    }
                }
                9 => rows.push(tcg::row(&bench, &place, &kernel())),
                10 => rows.push(boot::row(
                    &bench,
                    &place,
                    &kernel(),
                    fixture.as_deref().unwrap(),
                )),
                11 => rows.push(boot::many_in_one_boot(&bench, &place, &kernel())),
                // Loopback S3: no filesystem of ours is involved.
                12 => {
                    let (got, note) = remote::rows(&bench, &boot::source());
                    rows.extend(got);
                    notes.push(note);
                    break;
                }
                other => panic!("no row {other}"),
            }
        }
    }
    println!(
        "\nMachine: {}; {} runs each, medians.\n",
        machine(),
        args.runs
    );
    println!("{}", table::render(&rows));
    for note in notes {
        println!("{note}");
    }
}

/// Row 8's kernels: Debian's 6.12 from /boot, and the newest tinyconfig
/// kernel `kernel build` cached.
fn stock_and_built_kernels() -> (PathBuf, PathBuf) {
    use cargo_ktstr::testing::kernel::stock::{BOOT_DIR, MODULES_ROOT, boot_kernels};
    let stock = boot_kernels(BOOT_DIR.as_ref(), MODULES_ROOT.as_ref())
        .into_iter()
        .find(|k| k.has_modules && k.release.starts_with("6.12."))
        .expect("row 8 boots Debian's 6.12 kernel: run .ci/install-deps")
        .image;
    let built = cargo_ktstr::testing::kernel::store::KernelStore::from_env()
        .and_then(|s| s.newest(cargo_ktstr::testing::kernel::KernelKind::Template))
        .ok()
        .flatten()
        .expect("row 8 needs the tinyconfig kernel: run `cargo ktstr kernel build` first")
        .image;
    (stock, built)
}

/// CPU model, cores, memory and kernel, for the README line.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = cargo_ktstr::testing::host::cores();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
        .map_or(0, |kib| (kib + (1 << 19)) >> 20);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{model}, {cores} cores, {mem_gib} GiB, Linux {}",
        kernel.trim()
    )
}
