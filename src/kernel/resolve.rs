//! Which kernel a template build boots: `--kernel PATH`, else
//! `$KTSTR_KERNEL`, else the newest cached template kernel.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use super::KernelKind;
use super::store::KernelStore;

/// The environment variable naming a kernel image.
pub const KERNEL_ENV: &str = "KTSTR_KERNEL";
/// The environment variable naming the nested lane's KVM-host kernel.
pub const KVM_HOST_KERNEL_ENV: &str = "KTSTR_KVM_HOST_KERNEL";

/// Resolves the kernel from an explicit path, the value of
/// [`KERNEL_ENV`], or the store.
pub fn resolve(
    explicit: Option<&Path>,
    env_value: Option<OsString>,
    store: &KernelStore,
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
                 `cargo ktstr kernel build`",
                path.display()
            );
        }
        return Ok(path);
    }
    match store.newest(KernelKind::Template)? {
        Some(kernel) => Ok(kernel.image),
        None => bail!(
            "no guest kernel: none in `{}`, no --kernel and no $KTSTR_KERNEL; build one with \
             `cargo ktstr kernel build --source /usr/src/linux-source-6.12.tar.xz` \
             (Debian package linux-source-6.12)",
            store.dir().display()
        ),
    }
}

/// [`resolve`] against this process's environment and kernel store.
pub fn resolve_from_env(explicit: Option<&Path>) -> Result<PathBuf> {
    resolve(
        explicit,
        std::env::var_os(KERNEL_ENV),
        &KernelStore::from_env()?,
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
    use super::*;

    #[test]
    fn flag_then_env_then_store_then_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let store = KernelStore::new(tmp.path().join("kernels"));
        let err = resolve(None, None, &store).unwrap_err().to_string();
        assert!(err.contains("cargo ktstr kernel build --source"), "{err}");

        let entry = store.dir().join("6.12.0-abc");
        std::fs::create_dir_all(&entry).unwrap();
        std::fs::write(entry.join("bzImage"), b"k").unwrap();
        let flag = tmp.path().join("flag-bzImage");
        let env = tmp.path().join("env-bzImage");
        std::fs::write(&flag, b"f").unwrap();
        std::fs::write(&env, b"e").unwrap();
        assert_eq!(resolve(None, None, &store).unwrap(), entry.join("bzImage"));
        assert_eq!(
            resolve(None, Some(env.clone().into()), &store).unwrap(),
            env
        );
        assert_eq!(
            resolve(Some(&flag), Some(env.into()), &store).unwrap(),
            flag
        );
        // An empty variable counts as unset.
        assert_eq!(
            resolve(None, Some(OsString::new()), &store).unwrap(),
            entry.join("bzImage")
        );
        let missing = tmp.path().join("nope");
        let err = resolve(Some(&missing), None, &store)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("from --kernel") && err.contains("nope"),
            "{err}"
        );
    }
}
