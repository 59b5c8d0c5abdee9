//! The boundaries docs/ARCHITECTURE.md draws, checked on the source: the
//! top-level modules form no cycle (each may use only those below it),
//! and nothing below the wire (store, database, operations, the
//! vocabulary, the parsers) sees tonic or a generated proto type. sled and
//! rustls stay in their modules by clippy.toml.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Modules that must not know the wire: the layers under the services.
const BELOW_THE_WIRE: &[&str] = &[
    "config", "database", "export", "import", "index", "model", "ops", "peers", "report", "signal",
    "store",
];

/// Every `.rs` file under `path`, with its text minus comments.
fn sources(path: &Path, out: &mut Vec<(String, String)>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            sources(&entry.unwrap().path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        let text = std::fs::read_to_string(path).unwrap();
        let code: String = text
            .lines()
            .map(|l| match l.find("//") {
                Some(i) => &l[..i],
                None => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        out.push((path.display().to_string(), code));
    }
}

/// The top-level modules each top-level module names (`crate::x`).
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = BTreeMap::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        if ["lib", "main", "bin", "cli"].contains(&name.as_str()) {
            continue;
        }
        let mut files = Vec::new();
        sources(&path, &mut files);
        let mut uses = BTreeSet::new();
        for (_, code) in &files {
            for (i, _) in code.match_indices("crate::") {
                let rest = &code[i + 7..];
                let dep: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !dep.is_empty() && dep != name {
                    uses.insert(dep);
                }
            }
        }
        graph.insert(name, uses);
    }
    graph
}

#[test]
fn top_level_modules_form_no_cycle() {
    let graph = graph();
    // Depth-first search for a back edge; report the cycle it closes.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for dep in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(dep, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, &graph, &mut Vec::new(), &mut done) {
            panic!("modules in a cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn nothing_below_the_wire_sees_tonic_or_proto_types() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offending = Vec::new();
    for module in BELOW_THE_WIRE {
        let mut files = Vec::new();
        let dir = src.join(module);
        if dir.is_dir() {
            sources(&dir, &mut files);
        } else {
            sources(&src.join(format!("{module}.rs")), &mut files);
        }
        assert!(!files.is_empty(), "no source for {module}");
        for (path, code) in files {
            for needle in ["tonic::", "crate::wire", "proto::", "crate::service"] {
                if code.contains(needle) {
                    offending.push(format!("{path}: {needle}"));
                }
            }
        }
    }
    assert!(offending.is_empty(), "{offending:#?}");
}
