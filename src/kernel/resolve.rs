//! Which kernel a template build boots, first match wins: `--kernel PATH`,
//! `$KTSTR_KERNEL`, the newest template kernel `kernel build` cached, the
//! running kernel's `/boot/vmlinuz-$(uname -r)` when its modules are
//! installed, the newest `/boot/vmlinuz-<release>` whose modules are. With
//! none, one error lists what was looked at and the two ways to get one.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde::Serialize;

use super::KernelKind;
use super::stock::{BOOT_DIR, BootKernel, MODULES_ROOT, boot_kernels};
use super::store::KernelStore;
use super::unreadable;

/// The environment variable naming a kernel image.
pub(crate) const KERNEL_ENV: &str = "KTSTR_KERNEL";
/// The environment variable naming the nested lane's KVM-host kernel.
pub(crate) const KVM_HOST_KERNEL_ENV: &str = "KTSTR_KVM_HOST_KERNEL";
/// Overrides [`BOOT_DIR`] (for tests, and hosts that keep kernels elsewhere).
pub(crate) const BOOT_DIR_ENV: &str = "KTSTR_BOOT_DIR";
/// Overrides [`MODULES_ROOT`].
pub(crate) const MODULES_ROOT_ENV: &str = "KTSTR_MODULES_ROOT";

/// Where the host keeps its distribution kernels.
#[derive(Debug, Clone)]
pub(crate) struct HostKernels {
    pub boot_dir: PathBuf,
    pub modules_root: PathBuf,
    /// `uname -r`.
    pub running_release: Option<String>,
}

impl HostKernels {
    /// [`BOOT_DIR`] and [`MODULES_ROOT`] (or their variables) and the
    /// running kernel's release.
    pub(crate) fn from_env() -> HostKernels {
        let dir = |var, default| {
            std::env::var_os(var)
                .filter(|v| !v.is_empty())
                .map_or_else(|| PathBuf::from(default), PathBuf::from)
        };
        HostKernels {
            boot_dir: dir(BOOT_DIR_ENV, BOOT_DIR),
            modules_root: dir(MODULES_ROOT_ENV, MODULES_ROOT),
            running_release: nix::sys::utsname::uname()
                .ok()
                .and_then(|u| u.release().to_str().map(str::to_owned)),
        }
    }

    /// Every `vmlinuz-<release>` in the boot directory, newest first.
    pub(crate) fn found(&self) -> Vec<BootKernel> {
        boot_kernels(&self.boot_dir, &self.modules_root)
    }

    /// The kernels a build can boot, newest first; those this user cannot
    /// read are skipped, saying so at `-v`.
    fn usable(&self, found: &[BootKernel]) -> Vec<BootKernel> {
        for k in found.iter().filter(|k| k.has_modules) {
            if let Some(why) = &k.unreadable {
                tracing::info!(
                    "skipped the kernel `{}`: this user cannot read it ({why})",
                    k.image.display()
                );
            }
        }
        found.iter().filter(|k| k.usable()).cloned().collect()
    }

    /// The running kernel among `kernels`.
    fn running(&self, kernels: &[BootKernel]) -> Option<BootKernel> {
        let release = self.running_release.as_deref()?;
        kernels.iter().find(|k| k.release == release).cloned()
    }

    /// The boot directory, and that `$KTSTR_BOOT_DIR` chose it.
    fn boot_dir_text(&self) -> String {
        let from_env = if self.boot_dir == Path::new(BOOT_DIR) {
            ""
        } else {
            " (from $KTSTR_BOOT_DIR)"
        };
        format!("`{}`{from_env}", self.boot_dir.display())
    }

    /// What the boot directory holds and why no kernel in it is usable.
    pub(crate) fn unusable_text(&self, found: &[BootKernel]) -> String {
        if found.is_empty() {
            return format!("{} has no vmlinuz-<release>", self.boot_dir_text());
        }
        let each: Vec<String> = found
            .iter()
            .map(|k| {
                let mut why = Vec::new();
                if !k.has_modules {
                    let dep = self.modules_root.join(&k.release).join("modules.dep");
                    why.push(format!("no modules: `{}` is missing", dep.display()));
                }
                if let Some(e) = &k.unreadable {
                    why.push(format!("unreadable ({e})"));
                }
                format!("`{}` ({})", k.image.display(), why.join("; "))
            })
            .collect();
        format!("{} holds {}", self.boot_dir_text(), each.join(", "))
    }
}

/// Where a usable kernel comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Origin {
    /// `$KTSTR_KERNEL`.
    Env,
    /// The kernel cache, built by `kernel build`.
    Cache,
    /// The running kernel, from the boot directory.
    Running,
    /// Another kernel in the boot directory.
    Boot,
}

/// A kernel a build could use, in the order [`resolve`] tries them.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Available {
    /// A cache entry's name, or a stock kernel's release.
    pub name: String,
    /// `template`, `kvm-host`, or `stock`.
    pub kind: String,
    pub origin: Origin,
    pub image: PathBuf,
    pub size: u64,
    /// This user can read it; an unreadable kernel is listed, never taken.
    pub readable: bool,
    /// A cached kernel's origin and key inputs, when it records them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provenance: Option<super::store::Provenance>,
}

/// Resolves the kernel from an explicit path, the value of
/// [`KERNEL_ENV`], the store, or the host's boot directory.
pub(crate) fn resolve(
    explicit: Option<&Path>,
    env_value: Option<OsString>,
    store: &KernelStore,
    host: &HostKernels,
) -> Result<PathBuf> {
    let named = explicit.map(|p| (p.to_owned(), "--kernel")).or_else(|| {
        env_value
            .filter(|v| !v.is_empty())
            .map(|v| (PathBuf::from(v), "$KTSTR_KERNEL"))
    });
    if let Some((path, from)) = named {
        if !path.is_file() {
            bail!(
                "the kernel `{}` (from {from}) is not a file: pass a bzImage built by \
                 `cargo ktstr kernel build`, or a distribution's `/boot/vmlinuz-<release>`",
                path.display()
            );
        }
        if let Some(why) = unreadable::read_error(&path) {
            return Err(unreadable::kernel_error(
                &path,
                &format!("from {from}"),
                &why,
            ));
        }
        return Ok(path);
    }
    if let Some(kernel) = store.newest(KernelKind::Template)? {
        return Ok(kernel.image);
    }
    let found = host.found();
    let usable = host.usable(&found);
    if let Some(kernel) = host.running(&usable).or_else(|| usable.into_iter().next()) {
        return Ok(kernel.image);
    }
    // Kernels with their modules that only their mode keeps out: the one
    // to make readable is the one a build would then take.
    let blocked: Vec<BootKernel> = found.iter().filter(|k| k.has_modules).cloned().collect();
    if let Some(kernel) = host.running(&blocked).or_else(|| blocked.first().cloned()) {
        let why = unreadable::read_error(&kernel.image)
            .unwrap_or_else(|| std::io::ErrorKind::PermissionDenied.into());
        return Err(unreadable::kernel_error(
            &kernel.image,
            &format!(
                "found in {}, where every kernel with its modules is unreadable",
                host.boot_dir_text()
            ),
            &why,
        ));
    }
    bail!(
        "no guest kernel: looked at --kernel and ${KERNEL_ENV} (neither given), the kernel \
         cache `{}` (no template kernel), and the running kernel{} or the newest \
         `vmlinuz-<release>` with its `{}/<release>/modules.dep`: {}. Get one either way:\n\
         - install the distribution's kernel package (Debian: `apt-get install linux-image-amd64`), \
         whose kernel and modules are then used as they are, or\n\
         - build one with `cargo ktstr kernel build --source /usr/src/linux-source-6.12.tar.xz` \
         (Debian package linux-source-6.12)",
        store.dir().display(),
        host.running_release
            .as_deref()
            .map_or(String::new(), |r| format!(" (`vmlinuz-{r}`)")),
        host.modules_root.display(),
        host.unusable_text(&found),
    )
}

/// Every kernel a build could use, in [`resolve`]'s order (the first is
/// the one a build without `--kernel` takes); cached KVM hosts are listed
/// last, as they are only for the nested lane.
pub(crate) fn available(
    env_value: Option<OsString>,
    store: &KernelStore,
    host: &HostKernels,
) -> Result<Vec<Available>> {
    let mut all = Vec::new();
    if let Some(path) = env_value.filter(|v| !v.is_empty()).map(PathBuf::from) {
        if let Ok(meta) = path.metadata() {
            all.push(Available {
                name: path.display().to_string(),
                kind: "given".into(),
                origin: Origin::Env,
                size: meta.len(),
                readable: unreadable::read_error(&path).is_none(),
                image: path,
                provenance: None,
            });
        }
    }
    let cached = store.list()?;
    let (templates, hosts): (Vec<_>, Vec<_>) = cached
        .into_iter()
        .partition(|k| k.kind == KernelKind::Template);
    let cached = |k: super::store::CachedKernel| Available {
        readable: unreadable::read_error(&k.image).is_none(),
        provenance: k.provenance,
        name: k.name,
        kind: k.kind.to_string(),
        origin: Origin::Cache,
        image: k.image,
        size: k.size,
    };
    all.extend(templates.into_iter().map(cached));
    let found = host.found();
    let usable = host.usable(&found);
    let running = host.running(&usable);
    // The unreadable ones after those a build can take, so the first
    // readable kernel listed stays the default.
    let blocked = found.iter().filter(|k| k.has_modules && !k.usable());
    let stock = running
        .iter()
        .chain(usable.iter().filter(|k| Some(*k) != running.as_ref()))
        .chain(blocked);
    all.extend(stock.map(|k| Available {
        size: k.image.metadata().map_or(0, |m| m.len()),
        name: k.release.clone(),
        kind: "stock".into(),
        origin: if host.running_release.as_deref() == Some(&k.release) {
            Origin::Running
        } else {
            Origin::Boot
        },
        readable: k.unreadable.is_none(),
        provenance: None,
        image: k.image.clone(),
    }));
    all.extend(hosts.into_iter().map(cached));
    Ok(all)
}

/// [`resolve`] against this process's environment, kernel store and host.
pub fn resolve_from_env(explicit: Option<&Path>) -> Result<PathBuf> {
    resolve(
        explicit,
        std::env::var_os(KERNEL_ENV),
        &KernelStore::from_env()?,
        &HostKernels::from_env(),
    )
}

/// The nested lane's KVM-host kernel: `$KTSTR_KVM_HOST_KERNEL`, else the
/// newest cached one.
pub fn resolve_kvm_host_from_env() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(KVM_HOST_KERNEL_ENV).filter(|v| !v.is_empty()) {
        return Ok(path.into());
    }
    let store = KernelStore::from_env()?;
    match store.newest(KernelKind::KvmHost)? {
        Some(kernel) => Ok(kernel.image),
        None => bail!(
            "no KVM-host kernel: none in `{}` and no ${KVM_HOST_KERNEL_ENV}; build one with \
             `cargo ktstr kernel build --kind kvm-host --source /usr/src/linux-source-6.12.tar.xz`",
            store.dir().display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    /// A host with these `/boot` kernels, modules installed for `with_modules`.
    fn host(dir: &Path, releases: &[&str], with_modules: &[&str], running: &str) -> HostKernels {
        let host = HostKernels {
            boot_dir: dir.join("boot"),
            modules_root: dir.join("modules"),
            running_release: Some(running.to_owned()),
        };
        fs::create_dir_all(&host.boot_dir).unwrap();
        for release in releases {
            fs::write(host.boot_dir.join(format!("vmlinuz-{release}")), b"k").unwrap();
        }
        for release in with_modules {
            let dir = host.modules_root.join(release);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("modules.dep"), b"").unwrap();
        }
        host
    }

    #[test]
    fn flag_then_env_then_store_then_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let store = KernelStore::new(tmp.path().join("kernels"));
        let none = host(tmp.path(), &[], &[], "6.18.0");
        let err = resolve(None, None, &store, &none).unwrap_err().to_string();
        for needle in [
            "cargo ktstr kernel build --source",
            "apt-get install linux-image-amd64",
            "vmlinuz-6.18.0",
            "kernels",
        ] {
            assert!(err.contains(needle), "{needle}: {err}");
        }

        let entry = store.dir().join("6.12.0-abc");
        fs::create_dir_all(&entry).unwrap();
        fs::write(entry.join("bzImage"), b"k").unwrap();
        let flag = tmp.path().join("flag-bzImage");
        let env = tmp.path().join("env-bzImage");
        fs::write(&flag, b"f").unwrap();
        fs::write(&env, b"e").unwrap();
        let resolve =
            |explicit: Option<&Path>, env: Option<OsString>| resolve(explicit, env, &store, &none);
        assert_eq!(resolve(None, None).unwrap(), entry.join("bzImage"));
        assert_eq!(resolve(None, Some(env.clone().into())).unwrap(), env);
        assert_eq!(resolve(Some(&flag), Some(env.into())).unwrap(), flag);
        // An empty variable counts as unset.
        assert_eq!(
            resolve(None, Some(OsString::new())).unwrap(),
            entry.join("bzImage")
        );
        let missing = tmp.path().join("nope");
        let err = resolve(Some(&missing), None).unwrap_err().to_string();
        assert!(
            err.contains("from --kernel") && err.contains("nope"),
            "{err}"
        );
    }

    #[test]
    fn without_a_cached_kernel_the_running_one_then_the_newest_with_modules() {
        let tmp = tempfile::tempdir().unwrap();
        let store = KernelStore::new(tmp.path().join("kernels"));
        let releases = ["6.1.0-57-amd64", "6.12.95+deb12-amd64", "6.13.0"];
        // 6.13.0 has no modules: never taken.
        let with = ["6.1.0-57-amd64", "6.12.95+deb12-amd64"];
        let running = host(tmp.path(), &releases, &with, "6.1.0-57-amd64");
        let boot = |r: &str| running.boot_dir.join(format!("vmlinuz-{r}"));
        assert_eq!(
            resolve(None, None, &store, &running).unwrap(),
            boot("6.1.0-57-amd64")
        );
        let other = HostKernels {
            running_release: Some("6.18.44".into()),
            ..running.clone()
        };
        assert_eq!(
            resolve(None, None, &store, &other).unwrap(),
            boot("6.12.95+deb12-amd64")
        );
        let listed: Vec<_> = available(None, &store, &running)
            .unwrap()
            .into_iter()
            .map(|a| (a.name, a.origin))
            .collect();
        assert_eq!(
            listed,
            [
                ("6.1.0-57-amd64".to_owned(), Origin::Running),
                ("6.12.95+deb12-amd64".to_owned(), Origin::Boot)
            ]
        );
    }

    #[test]
    fn the_unusable_kernels_are_each_named_with_why() {
        let host = HostKernels {
            boot_dir: "/tmp/boot".into(),
            modules_root: "/lib/modules".into(),
            running_release: None,
        };
        let kernel = |release: &str, has_modules, unreadable: Option<&str>| BootKernel {
            image: host.boot_dir.join(format!("vmlinuz-{release}")),
            release: release.into(),
            has_modules,
            unreadable: unreadable.map(str::to_owned),
        };
        let found = [
            kernel(
                "6.8.0-45-generic",
                true,
                Some("Permission denied (os error 13)"),
            ),
            kernel("6.5.0", false, None),
            kernel("6.1.0", false, Some("Permission denied (os error 13)")),
        ];
        assert_eq!(
            host.unusable_text(&found),
            "`/tmp/boot` (from $KTSTR_BOOT_DIR) holds \
             `/tmp/boot/vmlinuz-6.8.0-45-generic` (unreadable (Permission denied (os error 13))), \
             `/tmp/boot/vmlinuz-6.5.0` (no modules: `/lib/modules/6.5.0/modules.dep` is missing), \
             `/tmp/boot/vmlinuz-6.1.0` (no modules: `/lib/modules/6.1.0/modules.dep` is missing; \
             unreadable (Permission denied (os error 13)))"
        );
        let boot = HostKernels {
            boot_dir: BOOT_DIR.into(),
            ..host
        };
        assert_eq!(boot.unusable_text(&[]), "`/boot` has no vmlinuz-<release>");
    }
}
