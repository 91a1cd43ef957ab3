//! The check mode in the guest: run each check of the list in turn, keep
//! and print its result (the protocol is in [`crate::guest::checks`]).

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::helpers::{mount_disk, mount_pseudo, print_line, unmount_disk};
use crate::guest::checks::{
    CHECKS_FILE, CheckResult, CheckSpec, DISK_MOUNT, DONE_MARKER, RUNNING_MARKER, STATUS_NOT_RUN,
    STATUS_TIMEOUT, disk_fs,
};

/// The most output a result line carries.
const OUTPUT_TAIL: u64 = 2048;
/// How often that line is printed.
const HEARTBEAT: Duration = Duration::from_secs(10);

/// The check mode: what its programs expect of a system, then the checks.
pub(super) fn run(cmdline: &str) -> Result<()> {
    mount_pseudo("devtmpfs", "/dev")?;
    mount_pseudo("sysfs", "/sys")?;
    // A /tmp the initramfs fills (a test binary built under a /tmp target
    // directory) must stay visible; the rootfs is writable memory anyway.
    let tmp_is_empty = fs::read_dir("/tmp").map_or(true, |mut d| d.next().is_none());
    if tmp_is_empty {
        mount_pseudo("tmpfs", "/tmp")?;
    }
    run_all(cmdline)
}

/// Init's check mode: mount the disk if asked, run every check in order,
/// report each; the caller resets the machine.
fn run_all(cmdline: &str) -> Result<()> {
    let log_dir = match disk_fs(cmdline) {
        Some(fs) => {
            mount_disk(fs, DISK_MOUNT)?;
            PathBuf::from(DISK_MOUNT).join("checks")
        }
        None => PathBuf::from("/tmp/checks"),
    };
    fs::create_dir_all(&log_dir)
        .with_context(|| format!("failed to create `{}`", log_dir.display()))?;
    let list = fs::read(CHECKS_FILE).with_context(|| format!("failed to read {CHECKS_FILE}"))?;
    let checks: Vec<CheckSpec> = serde_json::from_slice(&list)
        .with_context(|| format!("{CHECKS_FILE} is not a list of checks"))?;
    for check in &checks {
        let kept = log_dir.join(format!("{}.result", check.name));
        if let Some(line) = fs::read_to_string(&kept)
            .ok()
            .filter(|l| CheckResult::parse(l).is_some())
        {
            print_line(&line);
            continue;
        }
        let result = run_one(check, &log_dir.join(format!("{}.log", check.name)));
        keep(&kept, &result.render())?;
        print_line(&result.render());
    }
    if disk_fs(cmdline).is_some() {
        unmount_disk(DISK_MOUNT);
    }
    print_line(&format!("{DONE_MARKER}\n"));
    Ok(())
}

/// Writes `line` to `path` durably, so a reboot after it cannot lose it.
fn keep(path: &Path, line: &str) -> Result<()> {
    let mut file =
        File::create(path).with_context(|| format!("failed to create `{}`", path.display()))?;
    file.write_all(line.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("failed to write `{}`", path.display()))
}

/// Runs one check with its output in `log`; never fails, it reports.
fn run_one(check: &CheckSpec, log: &Path) -> CheckResult {
    let start = Instant::now();
    let status = run_logged(check, log).unwrap_or_else(|e| {
        let _ = fs::write(log, format!("{e:#}\n"));
        STATUS_NOT_RUN
    });
    // Durable before its result is kept: a guest stopped later must not
    // leave a kept result whose log was never written out.
    let _ = File::open(log).and_then(|f| f.sync_all());
    CheckResult {
        name: check.name.clone(),
        status,
        secs: start.elapsed().as_secs_f64(),
        output: tail(log),
    }
}

fn run_logged(check: &CheckSpec, log: &Path) -> Result<i32> {
    let out = File::create(log).with_context(|| format!("failed to create `{}`", log.display()))?;
    let err = out
        .try_clone()
        .context("failed to duplicate a log descriptor")?;
    let mut child = Command::new(&check.program)
        .args(&check.args)
        .env_clear()
        .env("PATH", "/sbin:/bin:/usr/sbin:/usr/bin")
        .env("HOME", "/tmp")
        .envs(&check.env)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("failed to run `{}`", check.program))?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(check.timeout_secs);
    let mut beat = start + HEARTBEAT;
    loop {
        if Instant::now() >= beat {
            let secs = start.elapsed().as_secs();
            print_line(&format!(
                "{RUNNING_MARKER} name={} secs={secs}\n",
                check.name
            ));
            beat += HEARTBEAT;
        }
        if let Some(status) = child.try_wait().context("failed to wait for a check")? {
            return Ok(status
                .code()
                .or_else(|| status.signal().map(|s| 128 + s))
                .unwrap_or(STATUS_NOT_RUN));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(STATUS_TIMEOUT);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last [`OUTPUT_TAIL`] bytes of `log`.
fn tail(log: &Path) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut file) = File::open(log) {
        let len = file.metadata().map_or(0, |m| m.len());
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(OUTPUT_TAIL)));
        let _ = file.read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_reports_its_status_output_and_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("c.log");
        let spec = CheckSpec::new("c", "/bin/sh", &["-c", "echo out; echo $K >&2; exit 3"], 10)
            .env("K", "from-env");
        let result = run_one(&spec, &log);
        assert_eq!((result.name.as_str(), result.status), ("c", 3));
        assert_eq!(result.output, "out\nfrom-env\n");
        assert_eq!(fs::read_to_string(&log).unwrap(), "out\nfrom-env\n");

        let hang = CheckSpec::new("h", "/bin/sleep", &["60"], 1);
        let result = run_one(&hang, &log);
        assert_eq!(result.status, STATUS_TIMEOUT);
        assert!(result.secs >= 1.0 && result.secs < 5.0, "{}", result.secs);

        let missing = CheckSpec::new("m", "/nonexistent/program", &[], 1);
        let result = run_one(&missing, &log);
        assert_eq!(result.status, STATUS_NOT_RUN);
        assert!(
            result.output.contains("/nonexistent/program"),
            "{}",
            result.output
        );
    }

    #[test]
    fn a_kept_result_parses_back() {
        let dir = tempfile::tempdir().unwrap();
        let kept = dir.path().join("a.result");
        let result = CheckResult {
            name: "a".into(),
            status: 3,
            secs: 1.5,
            output: "x\n".into(),
        };
        keep(&kept, &result.render()).unwrap();
        let line = fs::read_to_string(&kept).unwrap();
        assert_eq!(CheckResult::parse(&line), Some(result));
    }
}
