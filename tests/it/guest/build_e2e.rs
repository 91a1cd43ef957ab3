//! Template builds end to end: a real guest kernel, booted by QEMU (TCG on
//! this project's CI), runs the real formatter on the staging image; the
//! CLI publishes it, finds it again, clones it, and peers wait for it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use cargo_ktstr::runner::{DeviceDiscovery, GuestRunner, GuestSpec, RunEnd};
use cargo_ktstr::testing::cache::ensure::{Ensured, Ensurer};
use cargo_ktstr::testing::cache::key::Capacity;
use cargo_ktstr::testing::formatter::filesystem::Filesystem;
use cargo_ktstr::testing::guest::builder::GuestBuilder;
use cargo_ktstr::testing::guest::initramfs::template_initramfs;
use cargo_ktstr::testing::guest::protocol::TemplateResult;
use serde_json::Value;

use crate::guest::guests;
use crate::support::{bin, build_cmd, guest_prerequisites, ktstr_cmd, names, prerequisite, stderr};

/// Ensures the 64 MiB ext4 template in `root` through the library.
fn ensure_ext4(root: &Path, builder: &GuestBuilder) -> anyhow::Result<Ensured> {
    let cap = Capacity::from_mib(64).unwrap();
    Ensurer::new(root, builder).ensure(Filesystem::Ext4, cap)
}

fn json(out: &Output) -> Value {
    assert!(out.status.success(), "{}", stderr(out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn each_filesystem_is_built_in_a_guest_then_found() {
    let Some((kernel, _)) = guest_prerequisites() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    for (fs, mib) in [
        (Filesystem::Btrfs, 256),
        (Filesystem::Xfs, 300),
        (Filesystem::Ext4, 64),
    ] {
        let capacity = format!("{mib}M");
        let args = ["--fs", fs.name(), "--capacity", &capacity];
        let out = build_cmd(root.path(), &kernel, &args).output().unwrap();
        let first = json(&out);
        assert_eq!(first["built"], true, "{first}");
        assert_eq!(first["fs"], fs.name());
        assert_eq!(first["capacity_bytes"], mib << 20);
        let err = stderr(&out);
        assert!(
            err.contains("Booting") && err.contains("Published"),
            "{err}"
        );
        let path = PathBuf::from(first["path"].as_str().unwrap());
        assert!(fs.path_has_magic(&path).unwrap(), "{fs}: no magic");
        assert_eq!(path.metadata().unwrap().len(), mib << 20);
        assert!(path.starts_with(root.path().join(first["key"].as_str().unwrap())));

        // A hit boots nothing: it needs neither a kernel nor a VMM that works.
        let out = ktstr_cmd(root.path())
            .args(["template", "build", "--json", "--vmm", "kvm"])
            .args(["--kernel", "/nonexistent/bzImage"])
            .args(args)
            .output()
            .unwrap();
        let second = json(&out);
        assert_eq!(
            (&second["built"], &second["path"]),
            (&Value::Bool(false), &first["path"])
        );
        assert!(
            !stderr(&out).contains("Booting"),
            "a hit boots nothing: {}",
            stderr(&out)
        );
    }
    assert_eq!(
        names(root.path()).len(),
        4,
        "3 entries and .locks: {:?}",
        names(root.path())
    );
    // Plain output is the path alone; -q silences progress.
    let out = ktstr_cmd(root.path())
        .args([
            "-q",
            "template",
            "build",
            "--fs",
            "ext4",
            "--capacity",
            "64M",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        stderr(&out)
    );
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .ends_with("/template.img\n")
    );
}

/// Mounts a filesystem image on a loop device; unmounted when dropped.
struct Mounted(PathBuf);

impl Mounted {
    fn new(image: &Path, fs: Filesystem, at: &Path) -> Mounted {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-o", "loop", "-t", fs.name()])
            .arg(image)
            .arg(at)
            .output()
            .unwrap();
        assert!(out.status.success(), "mount: {}", stderr(&out));
        Mounted(at.to_owned())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_clone_of_a_guest_built_template_mounts_on_the_host() {
    if !prerequisite("root (to loop-mount)", nix::unistd::geteuid().is_root()) {
        return;
    }
    let Some((kernel, _)) = guest_prerequisites() else {
        return;
    };
    let (root, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let clone = work.path().join("disk.img");
    let out = ktstr_cmd(root.path())
        .args(["template", "clone", "--vmm", "qemu", "--kernel"])
        .arg(&kernel)
        .arg(&clone)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // The template the clone came from (a hit now), as it was.
    let out = build_cmd(root.path(), &kernel, &["--fs", "btrfs"])
        .output()
        .unwrap();
    let template = PathBuf::from(json(&out)["path"].as_str().unwrap());
    let before = std::fs::read(&template).unwrap();
    let mnt = work.path().join("mnt");
    {
        let _m = Mounted::new(&clone, Filesystem::Btrfs, &mnt);
        let statfs = nix::sys::statfs::statfs(&mnt).unwrap();
        assert_eq!(
            statfs.filesystem_type(),
            nix::sys::statfs::BTRFS_SUPER_MAGIC
        );
        std::fs::write(mnt.join("hello"), b"from the host").unwrap();
    }
    let _m = Mounted::new(&clone, Filesystem::Btrfs, &mnt);
    assert_eq!(std::fs::read(mnt.join("hello")).unwrap(), b"from the host");
    // Copy-on-write: the template did not see the clone's writes.
    assert!(
        std::fs::read(&template).unwrap() == before,
        "writing into the clone changed the template"
    );
}

#[test]
fn a_failing_formatter_leaves_nothing_and_shows_the_console() {
    let Some((kernel, qemu)) = guest_prerequisites() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    // /bin/false: a real ELF that the guest runs, and that fails.
    let builder = GuestBuilder::new(Box::new(qemu), kernel, bin()).formatter("/bin/false".into());
    let err = format!("{:#}", ensure_ext4(root.path(), &builder).unwrap_err());
    assert!(err.contains("mkfs.ext4 exited with status 1"), "{err}");
    assert!(
        err.contains("console's last 30 lines") && err.contains("KTSTR_TEMPLATE_RESULT"),
        "{err}"
    );
    assert_eq!(names(root.path()), [".locks"]);
}

#[test]
fn a_guest_that_cannot_finish_times_out_and_leaves_nothing() {
    let Some((kernel, qemu)) = guest_prerequisites() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    // Long enough for the guest to boot and start the formatter even on a
    // slow CI machine: the console must show the formatter ran.
    let builder = GuestBuilder::new(Box::new(qemu), kernel, bin())
        .formatter(guests::hanging_formatter())
        .timeout(Duration::from_secs(20));
    let err = format!("{:#}", ensure_ext4(root.path(), &builder).unwrap_err());
    assert!(err.contains("did not finish within 20 s"), "{err}");
    assert!(err.contains("console's last 30 lines"), "{err}");
    assert!(err.contains("ktstr-test: the formatter hangs"), "{err}");
    assert_eq!(names(root.path()), [".locks"]);
}

#[test]
fn eight_builders_of_one_key_boot_one_guest() {
    let Some((kernel, _)) = guest_prerequisites() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let children: Vec<_> = (0..8)
        .map(|_| {
            build_cmd(root.path(), &kernel, &["--fs", "ext4", "--capacity", "96M"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let reports: Vec<Value> = children
        .into_iter()
        .map(|c| json(&c.wait_with_output().unwrap()))
        .collect();
    let built = reports.iter().filter(|r| r["built"] == true).count();
    assert_eq!(built, 1, "{reports:?}");
    assert!(
        reports.iter().all(|r| r["path"] == reports[0]["path"]),
        "{reports:?}"
    );
    assert_eq!(names(root.path()).len(), 2, "{:?}", names(root.path()));
}

#[test]
fn the_library_builder_publishes_through_the_ensurer() {
    let Some((kernel, qemu)) = guest_prerequisites() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let builder =
        GuestBuilder::new(Box::new(qemu), kernel, bin()).timeout(Duration::from_secs(120));
    let ensured = ensure_ext4(root.path(), &builder).unwrap();
    assert!(ensured.built && Filesystem::Ext4.path_has_magic(&ensured.path).unwrap());
}

#[test]
fn an_init_that_cannot_work_still_reports_and_resets() {
    let Some((kernel, qemu)) = guest_prerequisites() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let mkfs =
        cargo_ktstr::testing::formatter::fingerprint::find_formatter(Filesystem::Ext4).unwrap();
    // No ktstr.fs= on the command line: init cannot know what to format.
    let spec = GuestSpec {
        kernel,
        initramfs: template_initramfs(&bin(), &mkfs, Filesystem::Ext4, &[]).unwrap(),
        cmdline: "console=ttyS0 reboot=t panic=-1".into(),
        disks: vec![disk],
        memory_mib: 256,
        timeout: Duration::from_secs(120),
        devices: DeviceDiscovery::CommandLine,
        vmlinux: None,
    };
    let outcome = qemu.run(&spec).unwrap();
    assert_eq!(outcome.end, RunEnd::Reset, "{}", outcome.console_tail(30));
    let result = TemplateResult::from_console(&outcome.console).unwrap();
    assert_eq!(result.status, 127);
    assert!(result.output.contains("no ktstr.fs="), "{}", result.output);
}

/// `--verify` leaves the image byte for byte what mkfs wrote: the guest
/// hashes the whole disk after mkfs and before the read-only mount, and
/// again after the unmount (`ktstr.verify=hash`), and the host hashes the
/// image after the run. A mount that wrote anything (a log replay, a
/// superblock's mount count or time) would make them differ.
#[test]
fn verification_mounts_read_only_and_leaves_the_image_as_mkfs_wrote_it() {
    use cargo_ktstr::testing::guest::protocol::{Verified, Verify, cmdline};
    use sha2::Digest;
    let Some((kernel, qemu)) = guest_prerequisites() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for (fs, mib) in [
        (Filesystem::Ext4, 64),
        (Filesystem::Btrfs, 128),
        (Filesystem::Xfs, 300),
    ] {
        let disk = dir.path().join(format!("{fs}.img"));
        std::fs::File::create(&disk)
            .unwrap()
            .set_len(mib << 20)
            .unwrap();
        let mkfs = cargo_ktstr::testing::formatter::fingerprint::find_formatter(fs).unwrap();
        let spec = GuestSpec {
            kernel: kernel.clone(),
            initramfs: template_initramfs(&bin(), &mkfs, fs, &[]).unwrap(),
            cmdline: format!(
                "{} {}",
                cmdline(fs, qemu.reboot_arg()),
                Verify::Hash.param()
            ),
            disks: vec![disk.clone()],
            memory_mib: 256,
            timeout: Duration::from_secs(120),
            devices: DeviceDiscovery::CommandLine,
            vmlinux: None,
        };
        let outcome = qemu.run(&spec).unwrap();
        let console = outcome.console_text();
        let result = TemplateResult::from_console(&outcome.console).expect(&console);
        assert!(
            result.succeeded() && matches!(result.verified, Some(Verified::Mounted { .. })),
            "{fs}: {result:?}\n{console}"
        );
        let hashes = console
            .lines()
            .find_map(|l| {
                l.split_once("sha256 before mount ")?
                    .1
                    .split_once(", after unmount ")
            })
            .unwrap_or_else(|| panic!("{fs}: no hashes on the console:\n{console}"));
        let before = hashes.0.trim();
        let after = hashes.1.trim();
        assert_eq!(before, after, "{fs}: the read-only mount changed the disk");
        let mut hasher = sha2::Sha256::new();
        std::io::copy(&mut std::fs::File::open(&disk).unwrap(), &mut hasher).unwrap();
        let host: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            host, before,
            "{fs}: the image on the host is not what mkfs wrote"
        );
    }
}
