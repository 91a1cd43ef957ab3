//! Where the cache lives.
//!
//! The ktstr cache base is `$KTSTR_CACHE_DIR`, else `$XDG_CACHE_HOME/ktstr`,
//! else `$HOME/.cache/ktstr`; a relative `$XDG_CACHE_HOME` is ignored, as the
//! XDG Base Directory specification says. Templates live in `<base>/disk_templates` and
//! guest kernels in `<base>/kernels`. ktstr 0.15 itself uses the base as its
//! template root; `--cache-dir` names a template root directly, so one tool
//! cleans caches written by either.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::Once;

use anyhow::{Result, bail};

/// The template root under a cache base.
pub(crate) const TEMPLATES_SUBDIR: &str = "disk_templates";
/// The kernel store under a cache base.
pub(crate) const KERNELS_SUBDIR: &str = "kernels";

/// The ktstr cache base, read from an environment accessor so tests can pass
/// their own.
pub(crate) fn cache_base(env: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf> {
    // An empty variable counts as unset; a non-UTF-8 one is refused rather
    // than guessed at, since the cache must be found again by other tools.
    let var = |name: &str| -> Result<Option<PathBuf>> {
        match env(name) {
            None => Ok(None),
            Some(v) if v.is_empty() => Ok(None),
            Some(v) => match v.to_str() {
                Some(s) => Ok(Some(PathBuf::from(s))),
                None => bail!(
                    "${name} is not valid UTF-8 ({}): set it to a UTF-8 path or unset it",
                    OsStr::new(&v).to_string_lossy()
                ),
            },
        }
    };
    if let Some(dir) = var("KTSTR_CACHE_DIR")? {
        return Ok(dir);
    }
    match var("XDG_CACHE_HOME")? {
        Some(dir) if dir.is_absolute() => return Ok(dir.join("ktstr")),
        Some(dir) => warn_once(&IGNORED_XDG, || {
            format!(
                "ignoring $XDG_CACHE_HOME `{}`: it is relative, and the XDG specification \
                 says to ignore a relative one; using $HOME/.cache",
                dir.display()
            )
        }),
        None => {}
    }
    if let Some(home) = var("HOME")? {
        return Ok(home.join(".cache").join("ktstr"));
    }
    bail!(
        "cannot find the cache: none of $KTSTR_CACHE_DIR, $XDG_CACHE_HOME or $HOME is set; set one, or pass --cache-dir"
    )
}

/// The cache base of this process's environment.
pub(crate) fn cache_base_from_env() -> Result<PathBuf> {
    cache_base(|name| std::env::var_os(name))
}

static IGNORED_XDG: Once = Once::new();
static BASE_IS_A_ROOT: Once = Once::new();

/// Logs the warning `what` makes the first time `once` is passed: the root
/// is resolved more than once a run, a warning should show once.
fn warn_once(once: &Once, what: impl FnOnce() -> String) {
    once.call_once(|| tracing::warn!("{}", what()));
}

/// The template root: `--cache-dir` when given, else `<base>/disk_templates`.
pub(crate) fn template_root(cache_dir: Option<PathBuf>) -> Result<PathBuf> {
    match cache_dir {
        Some(dir) => Ok(dir),
        None => {
            let base = cache_base_from_env()?;
            if std::env::var_os("KTSTR_CACHE_DIR").is_some_and(|v| !v.is_empty()) {
                warn_if_template_root(&base);
            }
            Ok(base.join(TEMPLATES_SUBDIR))
        }
    }
}

/// Warns when `$KTSTR_CACHE_DIR` names a template root (one holding
/// `.locks` or a published entry) rather than a cache base: templates would
/// go to a second root inside it, `<root>/disk_templates`.
fn warn_if_template_root(base: &Path) {
    if base.join(TEMPLATES_SUBDIR).exists() || !holds_templates(base) {
        return;
    }
    warn_once(&BASE_IS_A_ROOT, || {
        let parent = base.parent().unwrap_or(base);
        format!(
            "$KTSTR_CACHE_DIR `{}` holds disk templates itself, but names the cache base: \
             templates go to `{}` instead; to use the templates there, pass --cache-dir `{}` \
             (or set KTSTR_CACHE_DIR to `{}` if that is their base)",
            base.display(),
            base.join(TEMPLATES_SUBDIR).display(),
            base.display(),
            parent.display()
        )
    });
}

/// Whether `dir` looks like a template root: a lock directory, or a
/// directory holding a `template.img` (a base holds only `disk_templates/`
/// and `kernels/`, neither of which does).
fn holds_templates(dir: &Path) -> bool {
    if dir.join(super::lock::LOCKS_DIR).is_dir() {
        return true;
    }
    let Ok(children) = std::fs::read_dir(dir) else {
        return false;
    };
    children
        .flatten()
        .any(|child| child.path().join("template.img").is_file())
}

/// The kernel store: `<base>/kernels`.
pub(crate) fn kernels_dir() -> Result<PathBuf> {
    Ok(cache_base_from_env()?.join(KERNELS_SUBDIR))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::os::unix::ffi::OsStringExt;

    fn base(vars: &[(&str, OsString)]) -> Result<PathBuf> {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        cache_base(|name| map.get(name).cloned())
    }

    #[test]
    fn precedence_and_empty_values() {
        let ktstr = ("KTSTR_CACHE_DIR", OsString::from("/k"));
        let xdg = ("XDG_CACHE_HOME", OsString::from("/x"));
        let home = ("HOME", OsString::from("/h"));
        assert_eq!(
            base(&[ktstr.clone(), xdg.clone(), home.clone()]).unwrap(),
            PathBuf::from("/k")
        );
        assert_eq!(
            base(&[xdg.clone(), home.clone()]).unwrap(),
            PathBuf::from("/x/ktstr")
        );
        assert_eq!(
            base(std::slice::from_ref(&home)).unwrap(),
            PathBuf::from("/h/.cache/ktstr")
        );
        let empty = ("KTSTR_CACHE_DIR", OsString::new());
        assert_eq!(
            base(&[empty, home]).unwrap(),
            PathBuf::from("/h/.cache/ktstr")
        );
        assert!(base(&[]).unwrap_err().to_string().contains("--cache-dir"));
    }

    #[test]
    fn a_relative_xdg_cache_home_is_ignored() {
        let xdg = ("XDG_CACHE_HOME", OsString::from("relative/cache"));
        let home = ("HOME", OsString::from("/h"));
        assert_eq!(
            base(&[xdg.clone(), home]).unwrap(),
            PathBuf::from("/h/.cache/ktstr")
        );
        assert!(
            base(&[xdg])
                .unwrap_err()
                .to_string()
                .contains("--cache-dir")
        );
    }

    #[test]
    fn a_template_root_is_told_from_a_cache_base() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!holds_templates(dir.path()));
        std::fs::create_dir(dir.path().join(KERNELS_SUBDIR)).unwrap();
        assert!(!holds_templates(dir.path()));
        let entry = dir.path().join("btrfs-256m-a1b2c3d4e5f6a7b8");
        std::fs::create_dir(&entry).unwrap();
        assert!(!holds_templates(dir.path()));
        std::fs::write(entry.join("template.img"), b"").unwrap();
        assert!(holds_templates(dir.path()));
    }

    #[test]
    fn non_utf8_is_an_error_that_names_the_variable() {
        let bad = ("KTSTR_CACHE_DIR", OsString::from_vec(b"/tmp/\xff".to_vec()));
        let err = base(&[bad]).unwrap_err().to_string();
        assert!(err.contains("$KTSTR_CACHE_DIR is not valid UTF-8"), "{err}");
    }
}
