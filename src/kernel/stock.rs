//! What a kernel image is to the template guest: self-contained (built by
//! `kernel build`: virtio-mmio, virtio-blk and command-line devices built
//! in, no modules), or a distribution's stock kernel that needs its
//! modules from `/lib/modules/<release>` and finds its disk through ACPI.
//!
//! A kernel's release comes from the bzImage header (the string at
//! `kernel_version` + 0x200, whose first word `uname -r` prints), else
//! from a `vmlinuz-<release>` file name. Its config, where one is kept
//! (`/boot/config-<release>`, `/lib/modules/<release>/config` on Fedora,
//! or `config` beside a cached kernel), says whether it has modules and
//! whether it enforces their signatures.

use std::cmp::Ordering;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::modules::Signatures;

/// Where distributions install kernel modules.
pub const MODULES_ROOT: &str = "/lib/modules";
/// Where distributions install kernel images, as `vmlinuz-<release>`.
pub const BOOT_DIR: &str = "/boot";
/// The kernel image name prefix in [`BOOT_DIR`].
const VMLINUZ_PREFIX: &str = "vmlinuz-";

/// The arguments that make a stock kernel boot fastest under TCG (with
/// `quiet`, 3.4 s instead of 4.2 s for Debian's 6.12): no LSMs or audit to
/// set up, no crypto self-tests, and none of the initcalls that spend a
/// second on jitter entropy or self-tests a template never needs.
pub(crate) const STOCK_CMDLINE: &str = "lsm=capability audit=0 cryptomgr.notests \
     initcall_blacklist=jent_mod_init,bpf_tcp_ca_kfunc_init,crypto_kdf108_init";

/// A distribution kernel and the modules that belong to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockKernel {
    /// The kernel image (`/boot/vmlinuz-*`).
    pub image: PathBuf,
    /// What `uname -r` says in it, e.g. `6.12.95+deb12-amd64`.
    pub release: String,
    /// `/lib/modules/<release>`.
    pub modules_dir: PathBuf,
    /// Whether the kernel refuses unsigned modules.
    pub signatures: Signatures,
}

/// A kernel image, identified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestKernel {
    /// Everything the guest needs is built in; devices on the command line.
    SelfContained(PathBuf),
    /// Modules to load; devices through ACPI.
    Stock(StockKernel),
}

/// A kernel's config, as far as this user can read it.
#[derive(Debug)]
enum Config {
    None,
    Text(String),
    Unreadable { path: PathBuf, why: io::Error },
}

impl GuestKernel {
    /// What `image` is, looking for its modules under `modules_root`. A
    /// kernel whose config says its virtio drivers are modules, but whose
    /// modules are not installed, is an error.
    pub fn identify(image: &Path, modules_root: &Path) -> Result<GuestKernel> {
        let release = image_release(image)?;
        let Some(release) = release else {
            return Ok(GuestKernel::SelfContained(image.to_owned()));
        };
        let modules_dir = modules_root.join(&release);
        let config = read_config(image, &release, &modules_dir);
        let has_modules = modules_dir.join("modules.dep").is_file();
        classify(image, release, modules_dir, has_modules, config)
    }

    /// The kernel image to boot.
    pub fn image(&self) -> &Path {
        match self {
            GuestKernel::SelfContained(image) => image,
            GuestKernel::Stock(stock) => &stock.image,
        }
    }
}

/// What a kernel of `release` is, given whether its modules are installed
/// and what its config says. An unreadable config matters only where the
/// kernel has no modules: whether its disk driver is built in is then
/// unknown.
fn classify(
    image: &Path,
    release: String,
    modules_dir: PathBuf,
    has_modules: bool,
    config: Config,
) -> Result<GuestKernel> {
    if has_modules {
        let forced = [
            "CONFIG_MODULE_SIG_FORCE",
            "CONFIG_LOCK_DOWN_KERNEL_FORCE_INTEGRITY",
            "CONFIG_LOCK_DOWN_KERNEL_FORCE_CONFIDENTIALITY",
        ];
        let signatures = match config {
            Config::Text(c) if forced.iter().any(|o| config_value(&c, o) == Some("y")) => {
                Signatures::Enforced
            }
            Config::Text(_) | Config::None => Signatures::Optional,
            Config::Unreadable { path, why } => {
                tracing::info!(
                    "the config `{}` cannot be read ({why}): going on without it, as signed \
                     modules load whether or not the kernel enforces signatures",
                    path.display()
                );
                Signatures::Unknown {
                    config: path,
                    why: why.to_string(),
                }
            }
        };
        return Ok(GuestKernel::Stock(StockKernel {
            image: image.to_owned(),
            release,
            modules_dir,
            signatures,
        }));
    }
    let dep = modules_dir.join("modules.dep");
    match config {
        Config::Text(c) => {
            let modular = |option| config_value(&c, option) == Some("m");
            if modular("CONFIG_VIRTIO_BLK") || modular("CONFIG_VIRTIO_MMIO") {
                bail!(
                    "the kernel `{}` (release {release}) has its virtio drivers as modules, but \
                     `{}` is missing: install the modules of this release (Debian and Ubuntu: \
                     its linux-image package; Fedora: kernel-modules-core), or build a kernel \
                     with `cargo ktstr kernel build`",
                    image.display(),
                    dep.display()
                );
            }
        }
        Config::Unreadable { path, why } => bail!(
            "cannot tell whether the kernel `{}` (release {release}) has its virtio drivers \
             built in, as it must with `{}` missing: its config `{}`, which says so, cannot be \
             read ({why}). Make the config readable ({}), install the modules of this \
             release, or build a kernel with `cargo ktstr kernel build`",
            image.display(),
            dep.display(),
            path.display(),
            super::unreadable::make_readable(&path)
        ),
        Config::None => {}
    }
    Ok(GuestKernel::SelfContained(image.to_owned()))
}

/// The release of kernel `image`: from its bzImage header, else from a
/// `vmlinuz-<release>` name, else `None`.
pub(crate) fn image_release(image: &Path) -> Result<Option<String>> {
    if let Some(release) = header_release(image)? {
        return Ok(Some(release));
    }
    Ok(image
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix(VMLINUZ_PREFIX))
        .filter(|r| !r.is_empty())
        .map(str::to_owned))
}

/// The first word of a bzImage's kernel version string; `None` for a file
/// that is no bzImage (an ELF vmlinux, a test's fake).
fn header_release(image: &Path) -> Result<Option<String>> {
    let mut file =
        File::open(image).with_context(|| format!("failed to open `{}`", image.display()))?;
    let mut header = [0u8; 0x210];
    if file.read_exact(&mut header).is_err() || &header[0x202..0x206] != b"HdrS" {
        return Ok(None);
    }
    let pointer = u16::from_le_bytes([header[0x20e], header[0x20f]]);
    if pointer == 0 {
        return Ok(None);
    }
    let mut text = [0u8; 256];
    file.seek(SeekFrom::Start(u64::from(pointer) + 0x200))
        .and_then(|_| file.read(&mut text))
        .with_context(|| format!("failed to read the version string of `{}`", image.display()))?;
    let text = text.split(|&b| b == 0).next().unwrap_or_default();
    Ok(String::from_utf8_lossy(text)
        .split_whitespace()
        .next()
        .map(str::to_owned))
}

/// The first config of `release` this user can read beside `image` or in
/// `modules_dir`; else the first one found that they cannot.
fn read_config(image: &Path, release: &str, modules_dir: &Path) -> Config {
    let beside = image.parent().unwrap_or(Path::new("."));
    let candidates = [
        beside.join(format!("config-{release}")),
        beside.join(super::store::CONFIG_FILE),
        modules_dir.join("config"),
        modules_dir.join("build/.config"),
    ];
    let mut found = Config::None;
    for path in candidates {
        match fs::read(&path) {
            Ok(bytes) => return Config::Text(String::from_utf8_lossy(&bytes).into_owned()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(why) => {
                if matches!(found, Config::None) {
                    found = Config::Unreadable { path, why };
                }
            }
        }
    }
    found
}

/// `CONFIG_X`'s value in a `.config` text (`y`, `m`, a string), if set.
fn config_value<'a>(config: &'a str, option: &str) -> Option<&'a str> {
    config
        .lines()
        .find_map(|l| l.strip_prefix(option)?.strip_prefix('='))
}

/// A `vmlinuz-<release>` in a boot directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootKernel {
    pub image: PathBuf,
    pub release: String,
    /// Its modules are installed (`modules.dep` is there).
    pub has_modules: bool,
    /// Why this user cannot read it, if they cannot.
    pub unreadable: Option<String>,
}

impl BootKernel {
    /// A build can boot it.
    pub fn usable(&self) -> bool {
        self.has_modules && self.unreadable.is_none()
    }
}

/// Every `vmlinuz-<release>` in `boot_dir`, newest release first.
pub fn boot_kernels(boot_dir: &Path, modules_root: &Path) -> Vec<BootKernel> {
    let Ok(entries) = fs::read_dir(boot_dir) else {
        return Vec::new();
    };
    let mut kernels: Vec<BootKernel> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let release = name.strip_prefix(VMLINUZ_PREFIX)?.to_owned();
            let image = e.path();
            // A `.old` backup or a directory is no kernel to boot.
            (image.is_file() && !release.is_empty() && !release.ends_with(".old")).then(|| {
                BootKernel {
                    has_modules: modules_root.join(&release).join("modules.dep").is_file(),
                    unreadable: super::unreadable::read_error(&image).map(|e| e.to_string()),
                    image,
                    release,
                }
            })
        })
        .collect();
    kernels.sort_by(|a, b| compare_releases(&b.release, &a.release));
    kernels
}

/// Orders releases as versions: digit runs by value, so 6.12 > 6.1.
pub(crate) fn compare_releases(a: &str, b: &str) -> Ordering {
    fn runs(s: &str) -> Vec<(bool, &str)> {
        let mut runs = Vec::new();
        let mut start = 0;
        for (i, c) in s.char_indices().skip(1) {
            let prev = s[..i]
                .chars()
                .next_back()
                .is_some_and(|p| p.is_ascii_digit());
            if prev != c.is_ascii_digit() {
                runs.push(&s[start..i]);
                start = i;
            }
        }
        runs.push(&s[start..]);
        runs.into_iter()
            .map(|r| (r.starts_with(|c: char| c.is_ascii_digit()), r))
            .collect()
    }
    for (x, y) in runs(a).into_iter().zip(runs(b)) {
        let order = match (x, y) {
            ((true, x), (true, y)) => x
                .trim_start_matches('0')
                .len()
                .cmp(&y.trim_start_matches('0').len())
                .then_with(|| x.trim_start_matches('0').cmp(y.trim_start_matches('0'))),
            ((_, x), (_, y)) => x.cmp(y),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake bzImage whose header points at `version`.
    fn bzimage(version: &str) -> Vec<u8> {
        let mut image = vec![0u8; 0x1000];
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x20e..0x210].copy_from_slice(&0x300u16.to_le_bytes());
        image[0x500..0x500 + version.len()].copy_from_slice(version.as_bytes());
        image
    }

    #[test]
    fn the_release_comes_from_the_header_then_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("bzImage");
        fs::write(
            &image,
            bzimage("6.12.95+deb12-amd64 (debian-kernel@lists) #1 SMP"),
        )
        .unwrap();
        assert_eq!(
            image_release(&image).unwrap().as_deref(),
            Some("6.12.95+deb12-amd64")
        );
        let named = dir.path().join("vmlinuz-6.1.0-57-amd64");
        fs::write(&named, b"not a bzImage").unwrap();
        assert_eq!(
            image_release(&named).unwrap().as_deref(),
            Some("6.1.0-57-amd64")
        );
        let other = dir.path().join("vmlinux");
        fs::write(&other, b"\x7fELF").unwrap();
        assert_eq!(image_release(&other).unwrap(), None);
    }

    #[test]
    fn a_kernel_is_stock_when_its_modules_are_installed() {
        let dir = tempfile::tempdir().unwrap();
        let (boot, modules) = (dir.path().join("boot"), dir.path().join("modules"));
        fs::create_dir_all(modules.join("6.9.0-x")).unwrap();
        fs::create_dir_all(&boot).unwrap();
        let image = boot.join("vmlinuz-6.9.0-x");
        fs::write(&image, bzimage("6.9.0-x #1")).unwrap();
        // No modules and no config: as self-contained as a kernel build's.
        let kernel = GuestKernel::identify(&image, &modules).unwrap();
        assert_eq!(kernel, GuestKernel::SelfContained(image.clone()));
        // Its config says its disk driver is a module: missing modules are an error.
        fs::write(
            boot.join("config-6.9.0-x"),
            "CONFIG_VIRTIO_BLK=m\nCONFIG_MODULE_SIG_FORCE=y\n",
        )
        .unwrap();
        let err = GuestKernel::identify(&image, &modules)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("modules.dep") && err.contains("6.9.0-x"),
            "{err}"
        );
        fs::write(modules.join("6.9.0-x/modules.dep"), "").unwrap();
        let GuestKernel::Stock(stock) = GuestKernel::identify(&image, &modules).unwrap() else {
            panic!("not stock");
        };
        assert_eq!(stock.modules_dir, modules.join("6.9.0-x"));
        assert_eq!(stock.signatures, Signatures::Enforced);
    }

    #[test]
    fn an_unreadable_config_matters_only_to_a_kernel_without_modules() {
        let image = Path::new("/boot/vmlinuz-6.8.0-45-generic");
        let modules = PathBuf::from("/lib/modules/6.8.0-45-generic");
        let unreadable = || Config::Unreadable {
            path: "/boot/config-6.8.0-45-generic".into(),
            why: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        let release = || "6.8.0-45-generic".to_owned();
        // With modules, the signature policy is unknown, not an error.
        let GuestKernel::Stock(stock) =
            classify(image, release(), modules.clone(), true, unreadable()).unwrap()
        else {
            panic!("not stock");
        };
        let Signatures::Unknown { config, why } = stock.signatures else {
            panic!("{:?}", stock.signatures);
        };
        assert_eq!(config, Path::new("/boot/config-6.8.0-45-generic"));
        assert!(why.contains("permission denied"), "{why}");
        // Without, the missing fact is named, and why it is missing.
        let err = classify(image, release(), modules, false, unreadable())
            .unwrap_err()
            .to_string();
        for needle in [
            "has its virtio drivers built in",
            "modules.dep` missing",
            "`/boot/config-6.8.0-45-generic`",
            "permission denied",
            "dpkg-statoverride",
        ] {
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }

    #[test]
    fn a_readable_config_is_preferred_to_an_unreadable_one() {
        let dir = tempfile::tempdir().unwrap();
        let (boot, modules) = (dir.path().join("boot"), dir.path().join("modules/6.9.0"));
        fs::create_dir_all(&boot).unwrap();
        fs::create_dir_all(&modules).unwrap();
        let image = boot.join("vmlinuz-6.9.0");
        assert!(matches!(
            read_config(&image, "6.9.0", &modules),
            Config::None
        ));
        // A directory where the config should be: found, but not readable.
        fs::create_dir(boot.join("config-6.9.0")).unwrap();
        let Config::Unreadable { path, .. } = read_config(&image, "6.9.0", &modules) else {
            panic!("not unreadable");
        };
        assert_eq!(path, boot.join("config-6.9.0"));
        fs::write(modules.join("config"), "CONFIG_VIRTIO_BLK=m\n").unwrap();
        let Config::Text(text) = read_config(&image, "6.9.0", &modules) else {
            panic!("not read");
        };
        assert_eq!(text, "CONFIG_VIRTIO_BLK=m\n");
    }

    #[test]
    fn boot_kernels_come_newest_first_with_their_modules_state() {
        let dir = tempfile::tempdir().unwrap();
        let (boot, modules) = (dir.path().join("boot"), dir.path().join("modules"));
        fs::create_dir_all(&boot).unwrap();
        for release in [
            "6.1.0-57-amd64",
            "6.12.95+deb12-amd64",
            "6.9.0",
            "5.10.0.old",
        ] {
            fs::write(boot.join(format!("vmlinuz-{release}")), b"k").unwrap();
        }
        fs::write(boot.join("config-6.9.0"), b"").unwrap();
        fs::create_dir_all(modules.join("6.1.0-57-amd64")).unwrap();
        fs::write(modules.join("6.1.0-57-amd64/modules.dep"), b"").unwrap();
        let found: Vec<_> = boot_kernels(&boot, &modules)
            .into_iter()
            .map(|k| (k.release, k.has_modules, k.unreadable))
            .collect();
        assert_eq!(
            found,
            [
                ("6.12.95+deb12-amd64".to_owned(), false, None),
                ("6.9.0".to_owned(), false, None),
                ("6.1.0-57-amd64".to_owned(), true, None)
            ]
        );
        assert_eq!(compare_releases("6.1.0-57", "6.1.0-9"), Ordering::Greater);
        assert_eq!(compare_releases("6.12", "6.12"), Ordering::Equal);
    }
}
