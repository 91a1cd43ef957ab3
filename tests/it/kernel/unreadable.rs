//! Kernels a user cannot read, as Ubuntu installs them (mode 0600): copies
//! of Debian's real 6.1 and 6.12 in a `KTSTR_BOOT_DIR`, their modules from
//! /lib/modules, seen by the real unprivileged users of [`crate::support::users`]
//! (root reads any file, so these cases exist only for another user).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cargo_ktstr::testing::kernel::stock::{BOOT_DIR, MODULES_ROOT, boot_kernels};
use serde_json::Value;
use tempfile::TempDir;

use crate::support::gates::qemu_installed;
use crate::support::users::{ALICE, BOB, User};
use crate::support::{ext4_64m, names, prerequisite, stderr, stdout};

/// Copies of Debian's 6.12 and 6.1 (newest first) and their configs, all
/// readable, in a boot directory every user can enter.
struct Boot {
    _dir: TempDir,
    dir: PathBuf,
    /// `[6.12, 6.1]`.
    kernels: [PathBuf; 2],
}

impl Boot {
    fn copy() -> Option<Boot> {
        let found = boot_kernels(Path::new(BOOT_DIR), Path::new(MODULES_ROOT));
        let debian = |series: &str| {
            found
                .iter()
                .find(|k| k.has_modules && k.release.starts_with(series))
                .map(|k| k.release.clone())
        };
        let (Some(new), Some(old)) = (debian("6.12."), debian("6.1.")) else {
            prerequisite("Debian's 6.1 and 6.12 kernels (.ci/install-deps)", false);
            return None;
        };
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("boot");
        std::fs::create_dir(&dir).unwrap();
        for d in [tmp.path(), &dir] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let kernels = [&new, &old].map(|release| {
            for name in [format!("config-{release}"), format!("vmlinuz-{release}")] {
                let copy = dir.join(&name);
                std::fs::copy(Path::new(BOOT_DIR).join(&name), &copy).unwrap();
                std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o644)).unwrap();
            }
            dir.join(format!("vmlinuz-{release}"))
        });
        Some(Boot {
            _dir: tmp,
            dir,
            kernels,
        })
    }

    /// Makes `file` root's alone, as Ubuntu installs it.
    fn lock_out(&self, file: &Path) {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// The config beside `kernel`.
    fn config(&self, kernel: &Path) -> PathBuf {
        let name = kernel.file_name().unwrap().to_str().unwrap();
        self.dir.join(name.replace("vmlinuz-", "config-"))
    }
}

/// `user` runs the binary with this boot directory, an empty ktstr cache
/// (no kernel `kernel build` made) and the template root `root`.
fn as_user(user: &User, boot: &Boot, cache: &Path) -> Command {
    let mut cmd = user.ktstr();
    cmd.env("KTSTR_BOOT_DIR", &boot.dir)
        .env("KTSTR_CACHE_DIR", cache)
        .env("XDG_CACHE_HOME", cache.join("xdg"))
        .arg("--cache-dir")
        .arg(cache.join("templates"));
    cmd
}

/// `template build` with `cmd`, and `--kernel` when given.
fn template_build(cmd: Command, kernel: Option<&Path>) -> Output {
    let mut cmd = ext4_64m(cmd, "build");
    cmd.arg("--json");
    if let Some(kernel) = kernel {
        cmd.arg("--kernel").arg(kernel);
    }
    cmd.output().unwrap()
}

/// Asserts a failed build stopped before any boot and left nothing in
/// the template root but its lockfiles.
fn refused_before_boot(out: &Output, cache: &Path) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("Booting"), "booted: {err}");
    let root = cache.join("templates");
    if root.exists() {
        let left: Vec<_> = names(&root).into_iter().filter(|n| n != ".locks").collect();
        assert!(left.is_empty(), "left in the template root: {left:?}");
    }
    err
}

#[test]
fn unprivileged_kernel_list_marks_an_unreadable_kernel_and_the_default_skips_it() {
    let (Some(alice), Some(boot)) = (User::get(ALICE), Boot::copy()) else {
        return;
    };
    let [new, old] = &boot.kernels;
    boot.lock_out(new);
    let cache = alice.fresh_dir("unreadable-list");

    let out = as_user(&alice, &boot, &cache)
        .args(["-v", "kernel", "list"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    // The readable 6.1 is the default; 6.12 is last, with the fix.
    assert!(
        lines[0].contains(&old.display().to_string())
            && lines[0].ends_with("stock, with its modules"),
        "{text}"
    );
    let fix = format!(
        "sudo dpkg-statoverride --update --add root root 0644 {}",
        new.display()
    );
    assert!(
        lines[1].contains(&new.display().to_string())
            && lines[1].contains("unreadable")
            && lines[1].contains(&fix),
        "{text}"
    );
    let skipped = format!(
        "skipped the kernel `{}`: this user cannot read it (Permission denied",
        new.display()
    );
    assert!(stderr(&out).contains(&skipped), "{}", stderr(&out));

    let out = as_user(&alice, &boot, &cache)
        .args(["kernel", "list", "--json"])
        .output()
        .unwrap();
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed: Vec<_> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["image"].as_str().unwrap().to_owned(),
                k["readable"].clone(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (old.display().to_string(), Value::Bool(true)),
            (new.display().to_string(), Value::Bool(false))
        ]
    );

    // Root reads the 0600 copy: for root it is the newest, and the default.
    let root_cache = tempfile::tempdir().unwrap();
    let out = Command::new(crate::support::bin())
        .args(["kernel", "list", "--json"])
        .env("KTSTR_BOOT_DIR", &boot.dir)
        .env("KTSTR_CACHE_DIR", root_cache.path())
        .env_remove("KTSTR_KERNEL")
        .output()
        .unwrap();
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["image"], new.display().to_string(), "{json}");
    assert_eq!(json[0]["readable"], true, "{json}");
}

#[test]
fn unprivileged_a_guest_boots_the_readable_kernel_beside_an_unreadable_one() {
    let (Some(alice), Some(boot)) = (User::get(ALICE), Boot::copy()) else {
        return;
    };
    if !qemu_installed() {
        return;
    }
    let [new, old] = &boot.kernels;
    boot.lock_out(new);
    // 6.1's config, too: its modules are signed, so the build does without.
    let config = boot.config(old);
    boot.lock_out(&config);
    let cache = alice.fresh_dir("unreadable-build");
    let mut cmd = as_user(&alice, &boot, &cache);
    cmd.arg("-v");
    let out = template_build(cmd, None);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["built"], true, "{json}");
    for needle in [
        format!("skipped the kernel `{}`", new.display()),
        format!("kernel `{}`", old.display()),
        format!("the config `{}` cannot be read", config.display()),
    ] {
        assert!(err.contains(&needle), "{needle}: {err}");
    }
}

#[test]
fn unprivileged_only_unreadable_kernels_fail_before_any_boot_with_the_ways_out() {
    let (Some(alice), Some(boot)) = (User::get(ALICE), Boot::copy()) else {
        return;
    };
    if !qemu_installed() {
        return;
    }
    let [new, old] = &boot.kernels;
    boot.lock_out(new);
    boot.lock_out(old);
    // A readable kernel without modules is no way out either.
    let fake = boot.dir.join("vmlinuz-9.9.9-fab");
    std::fs::write(&fake, b"no kernel").unwrap();
    let cache = alice.fresh_dir("unreadable-none");

    let out = template_build(as_user(&alice, &boot, &cache), None);
    let err = refused_before_boot(&out, &cache);
    // The newest is the one to make readable: a build would take it.
    let ways_out = |err: &str, image: &Path| {
        for needle in [
            format!("the kernel `{}`", image.display()),
            "cannot be read by this user (Permission denied".to_owned(),
            format!(
                "sudo dpkg-statoverride --update --add root root 0644 {}",
                image.display()
            ),
            "pass a kernel you can read with `--kernel PATH`".to_owned(),
            "build one with `cargo ktstr kernel build --source PATH`".to_owned(),
        ] {
            assert!(err.contains(&needle), "{needle}: {err}");
        }
    };
    ways_out(&err, new);
    assert!(
        err.contains(&format!("`{}` (from $KTSTR_BOOT_DIR)", boot.dir.display())),
        "{err}"
    );

    // `kernel list` names each kernel it found and why it is unusable.
    let out = as_user(&alice, &boot, &cache)
        .args(["kernel", "list"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    for needle in [
        "no usable kernel".to_owned(),
        format!("`{}` (from $KTSTR_BOOT_DIR)", boot.dir.display()),
        format!("`{}` (unreadable (Permission denied", new.display()),
        format!("`{}` (unreadable (Permission denied", old.display()),
        format!(
            "`{}` (no modules: `{MODULES_ROOT}/9.9.9-fab/modules.dep` is missing)",
            fake.display()
        ),
    ] {
        assert!(err.contains(&needle), "{needle}: {err}");
    }

    // Named by --kernel or $KTSTR_KERNEL, beside a readable kernel: the
    // same message, naming where it came from.
    std::fs::set_permissions(new, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = template_build(as_user(&alice, &boot, &cache), Some(old));
    let err = refused_before_boot(&out, &cache);
    ways_out(&err, old);
    assert!(err.contains("(from --kernel)"), "{err}");
    let mut cmd = as_user(&alice, &boot, &cache);
    cmd.env("KTSTR_KERNEL", old);
    let out = template_build(cmd, None);
    let err = refused_before_boot(&out, &cache);
    ways_out(&err, old);
    assert!(err.contains("(from $KTSTR_KERNEL)"), "{err}");
}

#[test]
fn unprivileged_an_unreadable_config_of_a_kernel_without_modules_names_the_missing_fact() {
    let Some(bob) = User::get(BOB) else {
        return;
    };
    if !qemu_installed() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let image = tmp.path().join("vmlinuz-9.9.9-fab");
    std::fs::write(&image, b"no kernel: the build must stop before booting it").unwrap();
    std::fs::set_permissions(&image, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = tmp.path().join("config-9.9.9-fab");
    std::fs::write(&config, "CONFIG_VIRTIO_BLK=y\n").unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cache = bob.fresh_dir("unreadable-config");
    let mut cmd = bob.ktstr();
    cmd.env("KTSTR_CACHE_DIR", &cache)
        .env("XDG_CACHE_HOME", cache.join("xdg"))
        .arg("--cache-dir")
        .arg(cache.join("templates"));
    let out = template_build(cmd, Some(&image));
    let err = refused_before_boot(&out, &cache);
    for needle in [
        format!(
            "cannot tell whether the kernel `{}` (release 9.9.9-fab) has its virtio drivers \
             built in",
            image.display()
        ),
        format!("`{MODULES_ROOT}/9.9.9-fab/modules.dep` missing"),
        format!(
            "its config `{}`, which says so, cannot be read (Permission denied",
            config.display()
        ),
    ] {
        assert!(err.contains(&needle), "{needle}: {err}");
    }
}
