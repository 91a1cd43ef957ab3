//! The shared objects a dynamically linked program needs, found the way
//! the dynamic loader finds them: PT_INTERP, then each DT_NEEDED through
//! DT_RPATH (when there is no DT_RUNPATH), DT_RUNPATH, the standard library
//! directories, and the directories /etc/ld.so.conf names.
//!
//! Each object gets a path in the guest where the guest's loader, which has
//! no ld.so.cache, looks: its host path when that is a standard directory,
//! else `/lib/<name>`.

use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use goblin::elf::Elf;

use super::notes::read_program;

/// Where the loader looks without a cache (glibc on Debian, x86_64), in its order.
const STANDARD_DIRS: [&str; 6] = [
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
];
/// Where a library found outside the standard directories goes in the guest.
const FALLBACK_GUEST_DIR: &str = "/lib";

/// One file to copy into the guest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SharedObject {
    /// Where it goes in the guest.
    pub guest: PathBuf,
    /// Where its bytes come from on the host (symlinks resolved).
    pub host: PathBuf,
}

/// What the loader reads from one ELF file.
#[derive(Debug, Clone, Default)]
struct ElfInfo {
    is_64: bool,
    machine: u16,
    interp: Option<String>,
    needed: Vec<String>,
    search: Vec<PathBuf>,
}

fn read_elf(path: &Path) -> Result<ElfInfo> {
    // Trimmed first: parsing a debug build's symbol tables would be slow.
    let bytes = read_program(path)?;
    let elf =
        Elf::parse(&bytes).with_context(|| format!("`{}` is not an ELF file", path.display()))?;
    let origin = path.parent().unwrap_or(Path::new("/"));
    let expand = |list: &[&str]| -> Vec<PathBuf> {
        list.iter()
            .flat_map(|l| l.split(':'))
            .filter(|d| !d.is_empty())
            .map(|d| {
                PathBuf::from(
                    d.replace("${ORIGIN}", "$ORIGIN")
                        .replace("$ORIGIN", &origin.to_string_lossy()),
                )
            })
            .collect()
    };
    // DT_RPATH is ignored when DT_RUNPATH is present, as the loader does.
    let search = if elf.runpaths.is_empty() {
        expand(&elf.rpaths)
    } else {
        expand(&elf.runpaths)
    };
    Ok(ElfInfo {
        is_64: elf.is_64,
        machine: elf.header.e_machine,
        interp: elf.interpreter.map(str::to_owned),
        needed: elf.libraries.iter().map(|s| (*s).to_owned()).collect(),
        search,
    })
}

/// Whether `path` is an ELF file of the requester's class and machine
/// (a 32-bit library of the same name may sit in /lib).
fn loadable_by(path: &Path, requester: &ElfInfo) -> bool {
    let mut head = [0u8; 64];
    let read = fs::File::open(path).and_then(|mut f| f.read_exact(&mut head));
    read.is_ok()
        && Elf::parse_header(&head).is_ok_and(|h| {
            (h.e_ident[4] == goblin::elf::header::ELFCLASS64) == requester.is_64
                && h.e_machine == requester.machine
        })
}

/// The directories /etc/ld.so.conf names, following its `include` lines.
fn ld_so_conf_dirs(conf: &Path, depth: u32) -> Vec<PathBuf> {
    let Ok(text) = fs::read_to_string(conf) else {
        return Vec::new();
    };
    let mut dirs = Vec::new();
    for line in text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
    {
        if let Some(pattern) = line.strip_prefix("include") {
            if depth < 4 {
                for file in glob_conf(pattern.trim()) {
                    dirs.extend(ld_so_conf_dirs(&file, depth + 1));
                }
            }
        } else if line.starts_with('/') {
            dirs.push(PathBuf::from(line));
        }
    }
    dirs
}

/// The files a `dir/*.conf`-style include names (only `*` in the file name).
fn glob_conf(pattern: &str) -> Vec<PathBuf> {
    let path = Path::new(pattern);
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let (prefix, suffix) = name.split_once('*').unwrap_or((name, ""));
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with(prefix) && n.ends_with(suffix) && (name.contains('*') || n == name)
        })
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

/// Finds library `name` for `requester`: its run path, then the standard
/// directories, then ld.so.conf's.
fn find_library(name: &str, requester: &ElfInfo, conf_dirs: &[PathBuf]) -> Option<SharedObject> {
    // In the guest, a library from a standard directory keeps its path; any
    // other goes to /lib, since the programs move (a `$ORIGIN` run path
    // would not follow) and the guest has no ld.so.cache.
    let standard = STANDARD_DIRS.iter().map(|d| (Path::new(*d), true));
    let run_path = requester.search.iter().map(|d| (d.as_path(), false));
    let conf = conf_dirs.iter().map(|d| (d.as_path(), false));
    run_path
        .chain(standard)
        .chain(conf)
        .find_map(|(dir, keeps_path)| {
            let candidate = dir.join(name);
            if !loadable_by(&candidate, requester) {
                return None;
            }
            Some(SharedObject {
                host: fs::canonicalize(&candidate).ok()?,
                guest: if keeps_path {
                    candidate
                } else {
                    Path::new(FALLBACK_GUEST_DIR).join(name)
                },
            })
        })
}

/// Every shared object (the interpreter included) that `programs` need,
/// transitively, each once, sorted by guest path. A static program needs none.
pub(crate) fn shared_objects(programs: &[&Path]) -> Result<Vec<SharedObject>> {
    let conf_dirs = ld_so_conf_dirs(Path::new("/etc/ld.so.conf"), 0);
    let mut found: BTreeMap<String, SharedObject> = BTreeMap::new();
    let mut queue: VecDeque<(PathBuf, String)> = programs
        .iter()
        .map(|p| (p.to_path_buf(), p.display().to_string()))
        .collect();
    while let Some((path, label)) = queue.pop_front() {
        let info = read_elf(&path)?;
        if let Some(interp) = &info.interp {
            if !found.contains_key(interp) {
                let host = fs::canonicalize(interp).with_context(|| {
                    format!("the loader `{interp}` that `{label}` names is not on this host")
                })?;
                found.insert(
                    interp.clone(),
                    SharedObject {
                        guest: interp.into(),
                        host,
                    },
                );
            }
        }
        for name in &info.needed {
            if found.contains_key(name) {
                continue;
            }
            let Some(object) = find_library(name, &info, &conf_dirs) else {
                bail!(
                    "cannot find `{name}`, which `{label}` needs, in its run path, the standard \
                     library directories or /etc/ld.so.conf's; install the package that ships it"
                );
            };
            queue.push_back((object.host.clone(), name.clone()));
            found.insert(name.clone(), object);
        }
    }
    let mut objects: Vec<SharedObject> = found.into_values().collect();
    objects.sort();
    objects.dedup_by(|a, b| a.guest == b.guest);
    Ok(objects)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formatter::filesystem::Filesystem;
    use crate::formatter::fingerprint::find_formatter;

    fn names(objects: &[SharedObject]) -> Vec<String> {
        objects
            .iter()
            .map(|o| o.guest.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn each_formatter_resolves_to_libc_and_the_loader() {
        for fs in Filesystem::ALL {
            let Ok(mkfs) = find_formatter(fs) else {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "{} missing in CI",
                    fs.mkfs()
                );
                eprintln!("skipped {fs}: {} is not installed", fs.mkfs());
                continue;
            };
            let objects = shared_objects(&[&mkfs]).unwrap();
            let names = names(&objects);
            assert!(names.contains(&"libc.so.6".to_owned()), "{fs}: {names:?}");
            assert!(
                names.iter().any(|n| n.starts_with("ld-linux")),
                "{fs}: {names:?}"
            );
            // Every formatter here links libblkid and libuuid.
            assert!(
                names.contains(&"libblkid.so.1".to_owned()),
                "{fs}: {names:?}"
            );
            for o in &objects {
                assert!(o.host.is_file() && o.guest.is_absolute(), "{o:?}");
            }
        }
    }

    #[test]
    fn the_closure_is_transitive_and_matches_ldd() {
        // ldd lists the whole closure, loader included; ours must equal it.
        let mkfs = match find_formatter(Filesystem::Ext4) {
            Ok(p) => p,
            Err(e) => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "CI installs e2fsprogs: {e}"
                );
                return eprintln!("skipped: {e}");
            }
        };
        let ours: std::collections::BTreeSet<String> = names(&shared_objects(&[&mkfs]).unwrap())
            .into_iter()
            .collect();
        let ldd = std::process::Command::new("ldd")
            .arg(&mkfs)
            .output()
            .unwrap();
        let theirs: std::collections::BTreeSet<String> = String::from_utf8_lossy(&ldd.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| !n.starts_with("linux-vdso"))
            .map(|n| {
                Path::new(n)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn a_missing_library_names_itself_and_its_user() {
        let info = ElfInfo {
            is_64: true,
            machine: goblin::elf::header::EM_X86_64,
            ..Default::default()
        };
        assert!(find_library("libdoesnotexist.so.9", &info, &[]).is_none());
        let err = read_elf(Path::new("/etc/hostname"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not an ELF"), "{err}");
    }

    #[test]
    fn ld_so_conf_includes_are_followed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir(d.join("conf.d")).unwrap();
        fs::write(d.join("conf.d/a.conf"), "/opt/a/lib # comment\n").unwrap();
        fs::write(d.join("conf.d/b.txt"), "/opt/ignored\n").unwrap();
        fs::write(
            d.join("ld.so.conf"),
            format!("include {}/conf.d/*.conf\n/opt/b/lib\n", d.display()),
        )
        .unwrap();
        assert_eq!(
            ld_so_conf_dirs(&d.join("ld.so.conf"), 0),
            [PathBuf::from("/opt/a/lib"), PathBuf::from("/opt/b/lib")]
        );
    }

    /// Runs `gcc` with `args` in `dir`.
    fn gcc(dir: &Path, args: &[&str]) {
        let out = std::process::Command::new("gcc")
            .current_dir(dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "gcc {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn a_library_on_an_origin_run_path_goes_to_lib_in_the_guest() {
        if !std::path::Path::new("/usr/bin/gcc").exists() {
            assert!(std::env::var_os("CI").is_none(), "CI installs gcc");
            return eprintln!("skipped: gcc is not installed");
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir(d.join("lib")).unwrap();
        fs::write(d.join("t.c"), "int ktstr_t(void) { return 7; }\n").unwrap();
        fs::write(
            d.join("m.c"),
            "int ktstr_t(void);\nint main(void) { return ktstr_t(); }\n",
        )
        .unwrap();
        gcc(d, &["-shared", "-fPIC", "-o", "lib/libktstrt.so", "t.c"]);
        gcc(
            d,
            &[
                "-o",
                "prog",
                "m.c",
                "-Llib",
                "-lktstrt",
                "-Wl,--enable-new-dtags,-rpath,$ORIGIN/lib",
            ],
        );
        let objects = shared_objects(&[&d.join("prog")]).unwrap();
        let ours = objects
            .iter()
            .find(|o| o.guest.ends_with("libktstrt.so"))
            .unwrap_or_else(|| panic!("{objects:?}"));
        assert_eq!(ours.guest, Path::new("/lib/libktstrt.so"));
        assert_eq!(
            ours.host,
            fs::canonicalize(d.join("lib/libktstrt.so")).unwrap()
        );
        // libc comes from a standard directory and keeps its path.
        assert!(
            objects
                .iter()
                .any(|o| o.guest.starts_with("/lib/x86_64-linux-gnu")
                    || o.guest.starts_with("/usr/lib/x86_64-linux-gnu")),
            "{objects:?}"
        );
    }
}
