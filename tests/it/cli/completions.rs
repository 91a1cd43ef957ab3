//! The committed completions in real shells: bash (the completion function
//! called with `COMP_WORDS` as bash sets them), zsh (a live interactive zsh in
//! a pty, see `completions/capture.zsh`) and fish (`complete -C`), after both
//! `cargo ktstr` and `cargo-ktstr`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{prerequisite, stderr};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn completion_file(name: &str) -> PathBuf {
    repo().join("completions").join(name)
}

fn script(name: &str) -> PathBuf {
    repo().join("tests/it/cli/completions").join(name)
}

fn installed(shell: &str) -> bool {
    let found = Command::new(shell).arg("-c").arg("exit 0").output();
    prerequisite(shell, found.is_ok_and(|out| out.status.success()))
}

/// The rust toolchain's own completions for `cargo`, beside its sysroot.
fn toolchain_completion(rel: &str) -> Option<PathBuf> {
    let out = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .ok()?;
    let sysroot = String::from_utf8(out.stdout).ok()?;
    let path = Path::new(sysroot.trim()).join(rel);
    prerequisite(&format!("the toolchain's {rel}"), path.exists()).then_some(path)
}

/// A shell run's output: one list of offered words per line asked for.
fn blocks(out: std::process::Output, lines: &[String]) -> Vec<Vec<String>> {
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let blocks: Vec<Vec<String>> = text
        .split_terminator("--end--\n")
        .map(|block| {
            let mut words: Vec<String> = block
                .lines()
                .filter(|w| !w.is_empty())
                .map(|w| w.split('\t').next().unwrap().to_owned())
                .collect();
            words.sort();
            words.dedup();
            words
        })
        .collect();
    assert_eq!(
        blocks.len(),
        lines.len(),
        "{text}\nstderr: {}",
        stderr(&out)
    );
    blocks
}

/// A directory to complete in: a kernel image for the PATH flags, nothing else.
fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bzImage"), b"").unwrap();
    dir
}

fn bash(prelude: &str, lines: &[String]) -> Vec<Vec<String>> {
    let dir = workdir();
    let body = format!(
        "{prelude}\nsource {}\nsource {}",
        completion_file("cargo-ktstr.bash").display(),
        script("capture.bash").display()
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &body, "bash"])
        .args(lines)
        .current_dir(dir.path())
        .output()
        .unwrap();
    blocks(out, lines)
}

fn zsh(lines: &[String]) -> Option<Vec<Vec<String>>> {
    let cargo = toolchain_completion("share/zsh/site-functions/_cargo")?;
    let dir = workdir();
    let out = Command::new("zsh")
        .arg("-f")
        .arg(script("capture.zsh"))
        .arg(repo().join("completions"))
        .arg(cargo.parent().unwrap())
        .arg("--")
        .args(lines)
        .current_dir(dir.path())
        .output()
        .unwrap();
    Some(blocks(out, lines))
}

fn fish(lines: &[String]) -> Vec<Vec<String>> {
    let dir = workdir();
    let mut body = format!("source {}\n", completion_file("cargo-ktstr.fish").display());
    for line in lines {
        body += &format!("complete -C {}\necho --end--\n", fish_quote(line));
    }
    let out = Command::new("fish")
        .args(["--no-config", "-c", &body])
        // No user configuration or history of ours or the machine's.
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    blocks(out, lines)
}

fn fish_quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Each line after `prefix`, and the words its completion must offer; `exact`
/// where nothing else may come (fish's own `cargo` completion adds its flags
/// where it sees a cargo command name such as `build`).
struct Case {
    tail: &'static str,
    want: &'static [&'static str],
    exact: bool,
}

const CASES: &[Case] = &[
    Case {
        tail: "te",
        want: &["template"],
        exact: true,
    },
    Case {
        tail: "",
        want: &["clean", "kernel", "template"],
        exact: false,
    },
    Case {
        tail: "template b",
        want: &["build"],
        exact: true,
    },
    Case {
        tail: "kernel l",
        want: &["list"],
        exact: true,
    },
    Case {
        tail: "template build --f",
        want: &["--force", "--fs"],
        exact: false,
    },
    Case {
        tail: "template build --fs ",
        want: &["btrfs", "ext4", "xfs"],
        exact: true,
    },
    Case {
        tail: "kernel build --kind ",
        want: &["kvm-host", "template"],
        exact: true,
    },
    Case {
        tail: "template list --sort ",
        want: &["age", "last-used", "size"],
        exact: true,
    },
    Case {
        tail: "template build --kernel bz",
        want: &["bzImage"],
        exact: true,
    },
    // The hidden `generate` is never offered, at the top or after help (whose
    // own words clap's fish output never offers: it sees `help` as given).
    Case {
        tail: "g",
        want: &[],
        exact: true,
    },
    Case {
        tail: "help ",
        want: &[],
        exact: false,
    },
];

fn lines() -> Vec<String> {
    ["cargo ktstr", "cargo-ktstr"]
        .iter()
        .flat_map(|prefix| CASES.iter().map(move |c| format!("{prefix} {}", c.tail)))
        .collect()
}

/// Checks each shell's answers against [`CASES`]; `tolerant` loosens `exact`
/// for the `cargo ktstr` lines, where the shell's own cargo completion may add
/// its words (fish's, after a cargo command name anywhere in the line).
fn check(shell: &str, answers: &[Vec<String>], tolerant: bool) {
    for (line, (got, case)) in lines().iter().zip(answers.iter().zip(CASES.iter().cycle())) {
        let exact =
            case.exact && !(tolerant && line.starts_with("cargo ktstr") && case.tail.contains(' '));
        for want in case.want {
            assert!(
                got.iter().any(|w| w == want),
                "{shell}: `{line}` offered {got:?}, not {want}"
            );
        }
        if exact {
            assert_eq!(got, &case.want.to_vec(), "{shell}: `{line}`");
        }
        assert!(
            !got.iter().any(|w| w == "generate"),
            "{shell}: `{line}` offered the hidden generate: {got:?}"
        );
    }
}

#[test]
fn bash_completes_both_spellings_without_hidden_commands() {
    if !installed("bash") {
        return;
    }
    check("bash", &bash("", &lines()), false);
    // With no other cargo completion, `cargo` still completes to this command.
    assert_eq!(bash("", &["cargo kt".to_owned()]), [["ktstr"]]);
}

#[test]
fn zsh_completes_both_spellings_without_hidden_commands() {
    if !installed("zsh") {
        return;
    }
    if let Some(answers) = zsh(&lines()) {
        check("zsh", &answers, false);
    }
}

#[test]
fn fish_completes_both_spellings_without_hidden_commands() {
    if !installed("fish") {
        return;
    }
    check("fish", &fish(&lines()), true);
}

/// Other cargo commands still complete through the toolchain's cargo
/// completion, whether it was sourced first or bash-completion loads it on
/// demand; `cargo ktstr` keeps completing after that load.
#[test]
fn bash_hands_other_cargo_commands_to_cargo_completion() {
    let framework = Path::new("/usr/share/bash-completion/bash_completion");
    if !installed("bash") || !prerequisite("bash-completion", framework.exists()) {
        return;
    }
    let Some(cargo) = toolchain_completion("etc/bash_completion.d/cargo") else {
        return;
    };
    let lines = ["cargo build --rel", "cargo ktstr template b", "cargo bu"].map(String::from);
    let want = [["--release"], ["build"], ["build"]];
    let sourced_first = format!("source {}\nsource {}", framework.display(), cargo.display());
    assert_eq!(bash(&sourced_first, &lines), want);
    // Where bash-completion looks for a command's completion on first use.
    let user_dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(user_dir.path().join("completions")).unwrap();
    std::fs::copy(&cargo, user_dir.path().join("completions/cargo")).unwrap();
    let on_demand = format!(
        "export BASH_COMPLETION_USER_DIR={}\nsource {}",
        user_dir.path().display(),
        framework.display()
    );
    assert_eq!(bash(&on_demand, &lines), want);
}
