//! The tree reads bottom-up: foundations import nothing from the domains,
//! and no two top-level modules import each other. Read from the source,
//! as a reviewer would; comments and `#[cfg(test)]` modules do not count.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Modules that import nothing above them.
const FOUNDATIONS: &[&str] = &[
    "store",
    "formatter",
    "elf",
    "units",
    "host",
    "usage",
    "interrupt",
    "outcome",
    "progress",
];

/// Each top-level module of `src/` with the top-level modules its code
/// names through `crate::`.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut pending = vec![src.clone()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&src).unwrap();
            let first = rel.components().next().unwrap().as_os_str();
            let top = first.to_str().unwrap().trim_end_matches(".rs").to_owned();
            let text = fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap();
            let named = all.entry(top.clone()).or_default();
            for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for (i, _) in line.match_indices("crate::") {
                    let rest = &line[i + "crate::".len()..];
                    let end = rest
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(rest.len());
                    let module = &rest[..end];
                    if !module.is_empty() && module != top {
                        named.insert(module.to_owned());
                    }
                }
            }
        }
    }
    all
}

#[test]
fn foundations_import_no_domain() {
    let all = imports();
    for foundation in FOUNDATIONS {
        let named = all.get(*foundation).cloned().unwrap_or_default();
        let above: Vec<_> = named
            .iter()
            .filter(|m| !FOUNDATIONS.contains(&m.as_str()))
            .collect();
        assert!(
            above.is_empty(),
            "the foundation `{foundation}` imports {above:?}: move what it needs down"
        );
    }
}

#[test]
fn no_two_top_level_modules_import_each_other() {
    let all = imports();
    for (a, named) in &all {
        for b in named {
            let back = all.get(b).is_some_and(|n| n.contains(a));
            assert!(!back, "`{a}` and `{b}` import each other");
        }
    }
}

#[test]
fn nothing_below_the_cli_imports_it_or_the_test_surface() {
    let all = imports();
    for (module, named) in &all {
        for top in ["cli", "testing"] {
            assert!(
                module == "lib" || !named.contains(top),
                "`{module}` imports `{top}`: the CLI is the top of the tree and `testing` \
                 only re-exports for tests; move what both need down"
            );
        }
    }
}
