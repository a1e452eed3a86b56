//! The dependency rule of `src/lib.rs`, checked: every path in `src/` that names a
//! top-level module (`crate::<module>`, a `crate::{…}` group, a `super::` chain up
//! to the crate root; outside unit-test modules and comments) must point down the
//! layers, and the top-level modules must not form a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What each lower module may use (besides itself). Modules not listed are the edge:
/// they may use anything, as long as no cycle forms.
const ALLOWED: &[(&str, &[&str])] = &[
    ("core", &[]),
    ("pb", &[]),
    ("skaffold", &["pb", "core"]),
    ("source", &["core", "pb", "skaffold"]),
    ("catch_up", &["core"]),
    ("sink", &["core", "catch_up"]),
    ("pipeline", &["core", "pb", "source", "sink", "catch_up"]),
    (
        "server",
        &[
            "core", "pb", "skaffold", "source", "sink", "pipeline", "catch_up",
        ],
    ),
    ("simulator", &["core", "pb", "skaffold", "source"]),
];

/// The top-level modules a file's code names: through `crate::…` (also inside a
/// `crate::{…}` group, and `$crate::…` in macros) or through a `super::` chain that
/// climbs to the crate root (`depth`: how many modules deep the file's module is,
/// see [`depth`]). Skips comments and everything from the first `#[cfg(test)]` on
/// (unit-test modules are exempt).
fn uses(code: &str, depth: usize) -> BTreeSet<String> {
    let mut kept = String::new();
    for line in code.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        kept.push_str(line.split("//").next().unwrap_or(""));
        kept.push('\n');
    }
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let is_ident_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = BTreeSet::new();
    let mut rest = kept.as_str();
    while let Some(i) = rest.find("crate::") {
        // `skaffold_exporter::…` or `some_crate::…` are other crates.
        let before = rest[..i].chars().next_back();
        let after = &rest[i + "crate::".len()..];
        rest = after;
        if before.is_some_and(is_ident_char) {
            continue;
        }
        match after.strip_prefix('{') {
            // `crate::{a::X, b::{Y, Z}}`: the first name of each item at the top level.
            Some(group) => {
                let mut level = 1;
                let mut item_start = true;
                for (j, c) in group.char_indices() {
                    match c {
                        '{' => level += 1,
                        '}' => level -= 1,
                        ',' if level == 1 => item_start = true,
                        c if item_start && level == 1 && !c.is_whitespace() => {
                            item_start = false;
                            let name = ident(&group[j..]);
                            if !name.is_empty() && name != "self" {
                                out.insert(name);
                            }
                        }
                        _ => {}
                    }
                    if level == 0 {
                        break;
                    }
                }
            }
            None => {
                let name = ident(after);
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        }
    }
    // `super::super::x` from a module `depth` deep names the top-level module `x`
    // once the chain is `depth` long.
    let mut rest = kept.as_str();
    while let Some(i) = rest.find("super::") {
        let before = rest[..i].chars().next_back();
        let mut after = &rest[i..];
        let mut climbed = 0;
        while let Some(a) = after.strip_prefix("super::") {
            climbed += 1;
            after = a.trim_start();
        }
        rest = after;
        if before.is_some_and(|c| is_ident_char(c) || c == ':') || climbed < depth {
            continue;
        }
        let name = ident(after);
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

/// How many modules deep the file's module is: `src/sink.rs` and `src/sink/mod.rs`
/// 1, `src/sink/labels.rs` and `src/sink/otlp/mod.rs` 2 (`super` climbs one).
fn depth(file: &str) -> usize {
    let rel = file.rsplit_once("src/").map_or(file, |(_, r)| r);
    let parts = rel.split('/').count();
    if rel.ends_with("/mod.rs") {
        parts - 1
    } else {
        parts
    }
}

/// `src/<module>.rs` or `src/<module>/…` → `<module>`; `None` for lib.rs and main.rs.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main").then(|| name.to_owned())
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Breaks of the rule in `graph` (module → (module it uses → first file that does)).
fn violations(graph: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<String> {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut out = Vec::new();
    for (module, used) in graph {
        let Some(ok) = allowed.get(module.as_str()) else {
            continue;
        };
        for (dep, file) in used {
            if dep != module && !ok.contains(&dep.as_str()) {
                out.push(format!("{file}: `{module}` must not use `crate::{dep}`"));
            }
        }
    }
    if let Some(cycle) = cycle(graph) {
        out.push(format!(
            "cycle among top-level modules: {}",
            cycle.join(" → ")
        ));
    }
    out
}

/// A cycle in `graph`, if any (depth-first search).
fn cycle(graph: &BTreeMap<String, BTreeMap<String, String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeMap<String, String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|n| n == node) {
            let mut c = path[i..].to_vec();
            c.push(node.to_owned());
            return Some(c);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for dep in graph.get(node).into_iter().flat_map(|d| d.keys()) {
            if dep != node
                && let Some(c) = visit(dep, graph, path, done)
            {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

fn graph_of(files: &[(String, String, String)]) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut graph: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (module, file, code) in files {
        let entry = graph.entry(module.clone()).or_default();
        for dep in uses(code, depth(file)) {
            entry.entry(dep).or_insert_with(|| file.clone());
        }
    }
    graph
}

#[test]
fn imports_point_one_way_and_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    rust_files(&src, &mut paths);
    let files: Vec<(String, String, String)> = paths
        .iter()
        .filter_map(|p| {
            let module = module_of(&src, p)?;
            let code = std::fs::read_to_string(p).expect("read source file");
            Some((module, p.display().to_string(), code))
        })
        .collect();
    assert!(files.len() > 20, "found the sources ({})", files.len());
    let graph = graph_of(&files);
    for module in ["core", "source", "sink", "pipeline", "server", "skaffold"] {
        assert!(graph.contains_key(module), "module {module} seen");
    }
    let broken = violations(&graph);
    assert!(
        broken.is_empty(),
        "the dependency rule of src/lib.rs is broken:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_check_catches_a_source_naming_a_sink_and_a_cycle() {
    let file = |m: &str, code: &str| (m.to_owned(), format!("src/{m}.rs"), code.to_owned());
    let files = [
        file(
            "source",
            "use crate::sink::SelfMetrics;\nuse crate::core::Event;",
        ),
        file(
            "sink",
            "// crate::source is only mentioned\nuse crate::core::Event;",
        ),
        file(
            "app",
            "use crate::config::Settings;\n#[cfg(test)]\nmod tests { use crate::replay::X; }",
        ),
        file("config", "pub fn f() { crate::app::run(); }"),
        file("core", "use skaffold_exporter::sink::Metrics;"),
        (
            "sink".to_owned(),
            "src/sink/otlp/mod.rs".to_owned(),
            "use super::labels::Cap;\nuse crate::{\n    core::Event,\n    source::{Delivery, Payload},\n};"
                .to_owned(),
        ),
        (
            "sink".to_owned(),
            "src/sink/otlp/span.rs".to_owned(),
            "use super::super::semconv;\nfn f() { super::super::super::server::run(); }"
                .to_owned(),
        ),
    ];
    let broken = violations(&graph_of(&files));
    assert_eq!(
        broken,
        [
            "src/sink/otlp/span.rs: `sink` must not use `crate::server`",
            "src/sink/otlp/mod.rs: `sink` must not use `crate::source`",
            "src/source.rs: `source` must not use `crate::sink`",
            "cycle among top-level modules: app → config → app",
        ]
    );
}

#[test]
fn the_architecture_pages_name_only_paths_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (page, at_least) in [("docs/architecture.md", 20), ("README.md", 5)] {
        let text = std::fs::read_to_string(root.join(page)).expect("read page");
        let mut named = 0;
        let mut missing = Vec::new();
        for word in text.split(|c: char| c.is_whitespace() || matches!(c, ',' | '(' | ')' | '`')) {
            let path = word.trim_end_matches(['.', ':', ';']);
            if !["src/", "tests/", "tools/"]
                .iter()
                .any(|p| path.starts_with(p))
                || path.contains('{')
            {
                continue;
            }
            named += 1;
            if !root.join(path).exists() {
                missing.push(path.to_owned());
            }
        }
        assert!(named >= at_least, "{page}: found the paths ({named})");
        assert!(
            missing.is_empty(),
            "{page} names paths that do not exist: {missing:?}"
        );
    }
}

/// The table in `src/lib.rs`'s module docs is the rule this file checks: the two say
/// the same.
#[test]
fn the_rule_checked_is_the_rule_written_in_lib_rs() {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs"))
        .expect("read lib.rs");
    let mut written = BTreeMap::new();
    for line in lib.lines() {
        let Some(row) = line.strip_prefix("//! | `") else {
            continue;
        };
        let mut cells = row.split('|');
        let module = cells.next().unwrap_or("").trim().trim_end_matches('`');
        let uses: BTreeSet<&str> = cells
            .next()
            .unwrap_or("")
            .split(',')
            .map(|u| u.trim().trim_matches('`'))
            .filter(|u| !u.is_empty() && *u != "nothing of ours")
            .collect();
        written.insert(module, uses);
    }
    let checked: BTreeMap<&str, BTreeSet<&str>> = ALLOWED
        .iter()
        .map(|(m, uses)| (*m, uses.iter().copied().collect()))
        .collect();
    assert_eq!(written, checked);
}
