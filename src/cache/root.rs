//! Where the cache lives.
//!
//! The ktstr cache base is `$KTSTR_CACHE_DIR`, else `$XDG_CACHE_HOME/ktstr`,
//! else `$HOME/.cache/ktstr`. Templates live in `<base>/disk_templates` and
//! guest kernels in `<base>/kernels`. ktstr 0.15 itself uses the base as its
//! template root; `--cache-dir` names a template root directly, so one tool
//! cleans caches written by either.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use anyhow::{Result, bail};

/// The template root under a cache base.
pub const TEMPLATES_SUBDIR: &str = "disk_templates";
/// The kernel store under a cache base.
pub const KERNELS_SUBDIR: &str = "kernels";

/// The ktstr cache base, read from an environment accessor so tests can pass
/// their own.
pub fn cache_base(env: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf> {
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
    if let Some(dir) = var("XDG_CACHE_HOME")? {
        return Ok(dir.join("ktstr"));
    }
    if let Some(home) = var("HOME")? {
        return Ok(home.join(".cache").join("ktstr"));
    }
    bail!(
        "cannot find the cache: none of $KTSTR_CACHE_DIR, $XDG_CACHE_HOME or $HOME is set; set one, or pass --cache-dir"
    )
}

/// The cache base of this process's environment.
pub fn cache_base_from_env() -> Result<PathBuf> {
    cache_base(|name| std::env::var_os(name))
}

/// The template root: `--cache-dir` when given, else `<base>/disk_templates`.
pub fn template_root(cache_dir: Option<PathBuf>) -> Result<PathBuf> {
    match cache_dir {
        Some(dir) => Ok(dir),
        None => Ok(cache_base_from_env()?.join(TEMPLATES_SUBDIR)),
    }
}

/// The kernel store: `<base>/kernels`.
pub fn kernels_dir() -> Result<PathBuf> {
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
    fn non_utf8_is_an_error_that_names_the_variable() {
        let bad = ("KTSTR_CACHE_DIR", OsString::from_vec(b"/tmp/\xff".to_vec()));
        let err = base(&[bad]).unwrap_err().to_string();
        assert!(err.contains("$KTSTR_CACHE_DIR is not valid UTF-8"), "{err}");
    }
}
