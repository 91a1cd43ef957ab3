//! The tree reads bottom-up: foundations import nothing from the domains,
//! no two top-level modules import each other, and no two files do either
//! (a folder's `mod.rs` and the files under it excepted: a folder shares its
//! items with them). Read from the source, as a reviewer would; comments
//! and `#[cfg(test)]` modules do not count.

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

/// The library's files: each module's path (`["guest", "init"]` for
/// `src/guest/init/mod.rs`) with its code, comments and `#[cfg(test)]`
/// modules left out. The binary's `main.rs` is another crate.
fn library_files() -> BTreeMap<Vec<String>, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    let mut pending = vec![src.clone()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(&src).unwrap();
            if rel == Path::new("main.rs") {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let mut module: Vec<String> = rel
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_str().unwrap().to_owned())
                .collect();
            if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
                module.pop();
            }
            let text = fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap();
            let code: Vec<&str> = code
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect();
            files.insert(module, code.join("\n"));
        }
    }
    files
}

/// Every path a `use` tree names: `a::{b, c::{d}}` gives `a::b`, `a::c::d`.
fn use_paths(tree: &str, prefix: &str, out: &mut Vec<String>) {
    let mut depth = 0;
    let mut start = 0;
    let mut parts = Vec::new();
    for (i, c) in tree.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&tree[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&tree[start..]);
    for part in parts.into_iter().map(str::trim).filter(|p| !p.is_empty()) {
        match part.find('{') {
            Some(open) => {
                let inner = &part[open + 1..part.rfind('}').unwrap()];
                use_paths(inner, &format!("{prefix}{}", &part[..open]), out);
            }
            None => {
                let path = part.split(" as ").next().unwrap().trim();
                out.push(format!("{prefix}{path}"));
            }
        }
    }
}

/// The paths `code` names from the crate: its `use` trees and every
/// `crate::`, `super::` or `self::` path in expressions.
fn named_paths(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let before = &rest[..at];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let lead = before[line_start..].trim();
        let after = &rest[at + "use ".len()..];
        let Some(end) = after.find(';') else { break };
        let tree = after[..end]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        // Text in a string that happens to start with "use " is no tree.
        let is_tree = tree
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_:{}, *".contains(c))
            && tree.matches('{').count() == tree.matches('}').count();
        if is_tree && (lead.is_empty() || lead == "pub" || lead.starts_with("pub(")) {
            use_paths(&tree, "", &mut paths);
        }
        rest = &after[end..];
    }
    for root in ["crate::", "super::", "self::"] {
        for (i, _) in code.match_indices(root) {
            if code[..i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            {
                continue;
            }
            let end = code[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |e| i + e);
            paths.push(code[i..end].trim_end_matches(':').to_owned());
        }
    }
    paths
}

/// The library module a path from `module` lands in: the longest prefix of
/// it that is a file.
fn resolve(
    files: &BTreeMap<Vec<String>, String>,
    module: &[String],
    path: &str,
) -> Option<Vec<String>> {
    let mut segments = path.split("::").filter(|s| !s.is_empty());
    let mut full: Vec<String> = match segments.next()? {
        "crate" => Vec::new(),
        "self" => module.to_vec(),
        "super" => module[..module.len().checked_sub(1)?].to_vec(),
        _ => return None,
    };
    for segment in segments {
        match segment {
            "super" => {
                full.pop()?;
            }
            "self" => {}
            s => full.push(s.to_owned()),
        }
    }
    (0..=full.len())
        .rev()
        .map(|n| full[..n].to_vec())
        .find(|prefix| files.contains_key(prefix))
}

#[test]
fn no_two_files_import_each_other() {
    let files = library_files();
    let mut imports: BTreeMap<&Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (module, code) in &files {
        let named = named_paths(code)
            .iter()
            .filter_map(|p| resolve(&files, module, p))
            .filter(|target| target != module)
            .collect();
        imports.insert(module, named);
    }
    // The check itself must see the imports it judges.
    let init = vec!["guest".to_owned(), "init".to_owned()];
    assert!(
        imports[&init].contains(&vec!["guest".to_owned(), "protocol".to_owned()]),
        "the reader missed guest/init's imports: {:?}",
        imports[&init]
    );
    let mut circles = Vec::new();
    for (a, named) in &imports {
        for b in named {
            let nested = a.starts_with(b) || b.starts_with(a);
            if *a < b && !nested && imports.get(b).is_some_and(|n| n.contains(*a)) {
                circles.push(format!("{} <-> {}", a.join("/"), b.join("/")));
            }
        }
    }
    assert!(
        circles.is_empty(),
        "files that import each other (move what both need into one of them, or below \
         both): {circles:?}"
    );
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
