//! vip-core's top-level modules form a layered graph: no module reaches, through `crate::`
//! paths, a module that reaches it back. (`config` composes the engine, the VIP client and the
//! directories; the engine knows neither the configuration file nor VIP's wire format.)
//! Read from the sources, so a new `use crate::...` that closes a cycle fails here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules each top-level module names through `crate::` (in `use` lines and
/// paths, `crate::{a, b}` groups included), test modules left out.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_owned();
        if module == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        // Unit tests may reach anywhere: only the code up to `#[cfg(test)]` counts.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let deps = g.entry(module.clone()).or_default();
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                group[..end]
                    .split(',')
                    .map(|n| n.trim().split("::").next().unwrap_or("").trim())
                    .collect()
            } else {
                vec![rest
                    .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .next()
                    .unwrap_or("")]
            };
            for n in names {
                if !n.is_empty() && n != module && n.chars().all(|c| c.is_lowercase() || c == '_') {
                    deps.insert(n.to_owned());
                }
            }
        }
    }
    g
}

/// A cycle through `start`, as module names, if any.
fn cycle_from(
    g: &BTreeMap<String, BTreeSet<String>>,
    start: &str,
    at: &str,
    path: &mut Vec<String>,
    seen: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    for next in g.get(at).into_iter().flatten() {
        if next == start {
            let mut c = path.clone();
            c.push(start.to_owned());
            return Some(c);
        }
        if seen.insert(next.clone()) {
            path.push(next.clone());
            if let Some(c) = cycle_from(g, start, next, path, seen) {
                return Some(c);
            }
            path.pop();
        }
    }
    None
}

#[test]
fn vip_core_modules_import_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let g = graph(&src);
    assert!(g.contains_key("engine") && g.contains_key("config") && g.contains_key("vip"));
    // The scan sees what it must: config composes the engine, VIP implements its backend.
    assert!(g["config"].contains("engine"), "{g:?}");
    assert!(g["vip"].contains("engine"), "{g:?}");
    for start in g.keys() {
        let mut path = vec![start.clone()];
        let mut seen = BTreeSet::new();
        if let Some(c) = cycle_from(&g, start, start, &mut path, &mut seen) {
            panic!("import cycle in vip-core: {}", c.join(" -> "));
        }
    }
}
