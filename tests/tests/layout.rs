//! The house's floors, read from the sources: inside a crate no module
//! uses one that uses it back, the launcher's subcommands use no other
//! subcommand, and only the launcher's runtime knows which runtime a
//! project runs on. These are what keep a change in one room (a new kind
//! of member, a second store) from reaching into every other.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const CRATES: [&str; 5] = ["wire", "registry", "node", "launcher", "bench"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the tests crate is in the workspace").to_owned()
}

/// A crate's modules by path (`runtime::engine`; the root is ``), and their files.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![src.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).expect("the sources are readable") {
            let path = entry.expect("the sources are readable").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).expect("below src").with_extension("");
            let mut parts: Vec<String> = relative.iter().map(|part| part.to_string_lossy().into_owned()).collect();
            if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                parts.pop();
            }
            found.insert(parts.join("::"), path);
        }
    }
    found
}

/// A module's code, without its unit tests and comments: what it uses to do its work.
fn code(file: &Path) -> String {
    let text = fs::read_to_string(file).expect("the sources are readable");
    let without_tests = text.split("#[cfg(test)]\nmod tests {").next().unwrap_or_default();
    without_tests.lines().filter(|line| !line.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// The paths a `use` or an expression names after `at`: `a::b`, or each of
/// `a::{b, c::d}` (one level of braces).
fn paths_at(code: &str, at: usize) -> Vec<String> {
    let rest = &code[at..];
    let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(rest.len());
    let path = rest[..end].trim_end_matches(':');
    if !rest[end..].starts_with('{') {
        return vec![path.to_owned()];
    }
    let inside = &rest[end + 1..rest[end..].find('}').map_or(rest.len(), |close| end + close)];
    inside
        .split(',')
        .map(|item| item.split_whitespace().next().unwrap_or_default())
        .filter(|item| !item.is_empty() && *item != "self")
        .map(|item| format!("{path}::{item}"))
        .chain([path.to_owned()])
        .collect()
}

/// The longest module `path` starts with.
fn module_of(path: &str, modules: &BTreeMap<String, PathBuf>) -> Option<String> {
    let parts: Vec<&str> = path.split("::").filter(|part| !part.is_empty()).collect();
    (1..=parts.len()).rev().map(|n| parts[..n].join("::")).find(|candidate| modules.contains_key(candidate))
}

/// The modules of its crate that `module` uses: through `crate::` and
/// `super::` paths, and its own submodules by name.
fn uses(module: &str, file: &Path, modules: &BTreeMap<String, PathBuf>) -> BTreeSet<String> {
    let code = code(file);
    let parent: Vec<&str> = module.split("::").filter(|part| !part.is_empty()).collect();
    let parent = parent[..parent.len().saturating_sub(1)].join("::");
    let mut used = BTreeSet::new();
    for (prefix, base) in [("crate::", String::new()), ("super::", parent)] {
        for (at, _) in code.match_indices(prefix) {
            if code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            for path in paths_at(&code, at + prefix.len()) {
                let full = if base.is_empty() { path } else { format!("{base}::{path}") };
                used.extend(module_of(&full, modules));
            }
        }
    }
    for line in code.lines() {
        let declared = line.trim_start().trim_start_matches("pub ").trim_start_matches("pub(crate) ");
        let Some(child) = declared.strip_prefix("mod ").and_then(|rest| rest.strip_suffix(';')) else { continue };
        let child_path = if module.is_empty() { child.to_owned() } else { format!("{module}::{child}") };
        let named = code
            .match_indices(&format!("{child}::"))
            .any(|(at, _)| !code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':'));
        if named {
            used.insert(child_path);
        }
    }
    used.remove(module);
    used
}

/// Each module of a crate and the modules it uses.
fn graph(krate: &str) -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules(&workspace().join(krate).join("src"));
    modules.iter().map(|(module, file)| (module.clone(), uses(module, file, &modules))).collect()
}

fn reaches(graph: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    let (mut seen, mut next) = (BTreeSet::new(), vec![from.to_owned()]);
    while let Some(module) = next.pop() {
        for used in graph.get(&module).into_iter().flatten() {
            if used == to {
                return true;
            }
            if seen.insert(used.clone()) {
                next.push(used.clone());
            }
        }
    }
    false
}

#[test]
fn no_module_uses_one_that_uses_it_back() {
    let mut circles = Vec::new();
    for krate in CRATES {
        let graph = graph(krate);
        assert!(graph.len() > 3, "{krate}: its modules were not found");
        for (module, used) in &graph {
            circles.extend(
                used.iter()
                    .filter(|other| reaches(&graph, other, module))
                    .map(|other| format!("{krate}: `{module}` uses `{other}`, which leads back to it")),
            );
        }
    }
    assert!(circles.is_empty(), "{}", circles.join("\n"));
}

#[test]
fn the_reader_finds_what_a_module_uses() {
    let graph = graph("launcher");
    let up = &graph["cmd::up"];
    for used in ["runtime", "follow", "ui", "mesh"] {
        assert!(up.contains(used), "`cmd::up` uses `{used}`: {up:?}");
    }
    assert!(graph["runtime"].contains("runtime::containers"), "a submodule named by path: {:?}", graph["runtime"]);
    assert!(graph["runtime::containers"].contains("runtime::engine"), "through super::");
}

#[test]
fn the_launchers_subcommands_use_no_other_subcommand() {
    let graph = graph("launcher");
    let subcommands: Vec<&String> = graph.keys().filter(|module| module.starts_with("cmd::")).collect();
    assert!(subcommands.len() >= 10, "{subcommands:?}");
    for module in subcommands {
        let others: Vec<&String> = graph[module].iter().filter(|used| used.starts_with("cmd")).collect();
        assert!(others.is_empty(), "`{module}` uses {others:?}");
    }
}

#[test]
fn only_the_runtime_knows_which_runtime_a_project_runs_on() {
    let src = workspace().join("launcher").join("src");
    let runtime = src.join("runtime");
    let variants =
        ["Project::Containers", "Project::Swarm", "Project::Local", "Kind::Docker", "Kind::Swarm", "Kind::Local"];
    for (module, file) in modules(&src) {
        if file.starts_with(&runtime) {
            continue;
        }
        let code = code(&file);
        let named: Vec<&str> = variants.iter().copied().filter(|variant| code.contains(variant)).collect();
        assert!(named.is_empty(), "`{module}` tells runtimes apart with {named:?}: that belongs in runtime");
    }
}
