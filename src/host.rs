//! What the host offers, each asked in one place: a program on PATH, a
//! /dev/kvm this process may use, its cores, and the TSC's frequency.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The KVM device a VMM opens.
pub(crate) const KVM_DEVICE: &str = "/dev/kvm";

/// The first executable `name` in this process's PATH.
pub fn find_program(name: &str) -> Option<PathBuf> {
    find_program_in(name, std::env::var_os("PATH").as_deref(), &[])
}

/// The first executable `name` in the directories of `path_var` (a PATH
/// value), then in `extra`.
pub(crate) fn find_program_in(
    name: &str,
    path_var: Option<&OsStr>,
    extra: &[&Path],
) -> Option<PathBuf> {
    let on_path: Vec<PathBuf> =
        path_var.map_or_else(Vec::new, |p| std::env::split_paths(p).collect());
    on_path
        .iter()
        .map(PathBuf::as_path)
        .chain(extra.iter().copied())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Opens [`KVM_DEVICE`] read-write, as a VMM must: whether KVM is usable
/// here at all (not whether it boots a stock kernel).
pub fn open_kvm() -> io::Result<File> {
    OpenOptions::new().read(true).write(true).open(KVM_DEVICE)
}

/// The cores this process may run on (at least one): make's default jobs
/// and a several-template guest's vCPUs.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The host TSC's frequency in kHz, from /proc/cpuinfo's `cpu MHz` (a
/// constant-TSC machine reports its TSC rate there), or `None` when it
/// says nothing usable.
pub fn tsc_khz() -> Option<u64> {
    parse_cpu_mhz(&std::fs::read_to_string("/proc/cpuinfo").ok()?)
}

/// The first `cpu MHz` line of a /proc/cpuinfo text, in kHz.
fn parse_cpu_mhz(cpuinfo: &str) -> Option<u64> {
    let line = cpuinfo.lines().find(|l| l.starts_with("cpu MHz"))?;
    let mhz: f64 = line.split_once(':')?.1.trim().parse().ok()?;
    let khz = (mhz * 1000.0).round();
    (khz >= 1.0 && khz < u64::MAX as f64).then_some(khz as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tsc_rate_comes_from_the_first_cpu_mhz_line() {
        let text = "processor\t: 0\nmodel name\t: AMD EPYC\ncpu MHz\t\t: 2596.152\n\
                    processor\t: 1\ncpu MHz\t\t: 1800.000\n";
        assert_eq!(parse_cpu_mhz(text), Some(2_596_152));
        assert_eq!(parse_cpu_mhz("cpu MHz : fast\n"), None);
        assert_eq!(parse_cpu_mhz("cpu MHz : 0\n"), None);
        assert_eq!(parse_cpu_mhz("processor : 0\n"), None);
        // This machine's own answer, where it gives one, is a plausible rate.
        if let Some(khz) = tsc_khz() {
            assert!((100_000..20_000_000).contains(&khz), "{khz} kHz");
        }
    }

    #[test]
    fn the_first_executable_on_path_wins_then_the_extra_dirs() {
        let (a, b, extra) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let make = |dir: &Path, mode: u32| {
            let p = dir.join("tool");
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            p
        };
        make(a.path(), 0o644); // not executable: skipped
        let in_b = make(b.path(), 0o755);
        let in_extra = make(extra.path(), 0o755);
        let path = std::env::join_paths([a.path(), b.path()]).unwrap();
        let found = find_program_in("tool", Some(&path), &[extra.path()]);
        assert_eq!(found, Some(in_b));
        let found = find_program_in("tool", None, &[extra.path()]);
        assert_eq!(found, Some(in_extra));
        assert_eq!(find_program_in("absent", Some(&path), &[]), None);
    }
}
