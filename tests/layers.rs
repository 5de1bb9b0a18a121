//! The house's layer order, enforced: every `crate::` and `super::` path in `src/` is resolved
//! to the module it names, and (1) no top-level module uses one above it in [`LAYERS`], (2) the
//! sans-IO core names no tokio, socket, clock or randomness source, and (3) no two files import
//! each other, directly or around a cycle. The README's "Layout" section shows the same order.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// Top-level modules from the bottom up; a module may use only those before it. The README's
/// layer table groups them: core, protocol state machines, edges (clock, exit, capture, net),
/// engines (host, load, conform, fuzz), subcommands, printers, command line.
const LAYERS: &[&str] = &[
    "wire", "crypto", "catalog", "epid", "proto", "clock", "exit", "capture", "net", "host",
    "load", "conform", "simulate", "fuzz", "activate", "serve", "replay", "inspect", "report",
    "cli",
];

/// The sans-IO core: takes and returns bytes and values.
const CORE: &[&str] = &["wire", "crypto", "catalog", "epid", "proto"];

/// Paths the core must not name: I/O, clocks and randomness sources (random values are passed
/// in as a generic `Rng`, which names `rand::Rng`, not a source).
const CORE_FORBIDDEN: &[&str] = &[
    "tokio",
    "std::net",
    "std::fs",
    "std::time::SystemTime",
    "std::time::Instant",
    "SystemTime",
    "Instant",
    "rand::rng",
    "thread_rng",
    "hickory_resolver",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src/` but the binary's `main.rs`, as (module path, file).
fn modules() -> Vec<(Vec<String>, PathBuf)> {
    fn walk(dir: &Path, prefix: &[String], out: &mut Vec<(Vec<String>, PathBuf)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
            if path.is_dir() {
                let mut p = prefix.to_vec();
                p.push(name);
                walk(&path, &p, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let mut p = prefix.to_vec();
                if name != "mod" && name != "lib" {
                    p.push(name);
                }
                out.push((p, path));
            }
        }
    }
    let mut out = Vec::new();
    walk(&src(), &[], &mut out);
    out.retain(|(_, p)| p != &src().join("main.rs"));
    out
}

/// Paths a file names, as written (`crate::a::b`, `super::c`, `tokio::net`), `use` trees
/// expanded.
#[derive(Default)]
struct Paths {
    paths: Vec<Vec<String>>,
    /// Inline `mod name { .. }` blocks (tests), whose `super::` is one level deeper.
    depth: usize,
    inline: Vec<(usize, Vec<String>)>,
}

impl Paths {
    fn push(&mut self, p: Vec<String>) {
        self.inline.push((self.depth, p.clone()));
        self.paths.push(p);
    }
}

fn use_tree(prefix: &mut Vec<String>, tree: &syn::UseTree, out: &mut Paths) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            use_tree(prefix, &p.tree, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let mut p = prefix.clone();
            if n.ident != "self" {
                p.push(n.ident.to_string());
            }
            out.push(p);
        }
        syn::UseTree::Rename(r) => {
            let mut p = prefix.clone();
            p.push(r.ident.to_string());
            out.push(p);
        }
        syn::UseTree::Glob(_) => out.push(prefix.clone()),
        syn::UseTree::Group(g) => {
            for t in &g.items {
                use_tree(prefix, t, out);
            }
        }
    }
}

impl<'ast> Visit<'ast> for Paths {
    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        use_tree(&mut Vec::new(), &u.tree, self);
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segs: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        if segs.len() > 1 {
            self.push(segs);
        }
        syn::visit::visit_path(self, p);
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        self.depth += 1;
        syn::visit::visit_item_mod(self, m);
        self.depth -= 1;
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        // Macro bodies are tokens; the paths the project's own macros take are ordinary
        // expressions, so parse them as such where they parse.
        if let Ok(args) = m.parse_body_with(
            syn::punctuated::Punctuated::<syn::Expr, syn::Token![,]>::parse_terminated,
        ) {
            for e in &args {
                self.visit_expr(e);
            }
        }
        syn::visit::visit_macro(self, m);
    }
}

/// The crate module path a written path names, resolved against the module it is written in
/// and trimmed to the longest prefix that is a module of the crate.
fn resolve(
    from: &[String],
    depth: usize,
    path: &[String],
    known: &BTreeSet<Vec<String>>,
) -> Option<Vec<String>> {
    let mut base: Vec<String> = from.to_vec();
    let mut rest = path;
    match path.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &path[1..];
        }
        Some("super") => {
            let mut ups: usize = 0;
            while rest.first().map(String::as_str) == Some("super") {
                ups += 1;
                rest = &rest[1..];
            }
            // Inside an inline `mod tests`, the first `super` leaves the inline module.
            let ups = ups.saturating_sub(depth);
            base.truncate(base.len().saturating_sub(ups));
        }
        Some("self") => rest = &path[1..],
        _ => return None,
    }
    let mut full = base;
    full.extend(rest.iter().cloned());
    while !full.is_empty() && !known.contains(&full) {
        full.pop();
    }
    Some(full)
}

fn rank(module: &[String]) -> Option<usize> {
    LAYERS
        .iter()
        .position(|l| module.first().is_some_and(|m| m == l))
}

#[test]
fn modules_import_only_from_layers_below() {
    let mods = modules();
    let known: BTreeSet<Vec<String>> = mods.iter().map(|(m, _)| m.clone()).collect();
    let top: BTreeSet<&str> = mods
        .iter()
        .filter_map(|(m, _)| m.first().map(String::as_str))
        .collect();
    for t in &top {
        assert!(
            LAYERS.contains(t),
            "src/{t}: a top-level module missing from LAYERS (and the README's layer table)"
        );
    }
    let mut violations = Vec::new();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (module, file) in &mods {
        let text = std::fs::read_to_string(file).unwrap();
        let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let mut paths = Paths::default();
        paths.visit_file(&ast);
        let in_core = module.first().is_some_and(|m| CORE.contains(&m.as_str()));
        for (depth, p) in &paths.inline {
            let written = p.join("::");
            if in_core
                && CORE_FORBIDDEN
                    .iter()
                    .any(|f| written == *f || written.starts_with(&format!("{f}::")))
            {
                violations.push(format!(
                    "{}: the sans-IO core names {written}",
                    file.display()
                ));
            }
            let Some(target) = resolve(module, *depth, p, &known) else {
                continue;
            };
            if target.is_empty() || target == *module {
                continue;
            }
            if let (Some(a), Some(b)) = (rank(module), rank(&target))
                && b > a
            {
                violations.push(format!(
                    "{}: {} uses {written}, a layer above it",
                    file.display(),
                    module.join("::")
                ));
            }
            // Parent modules re-export or declare their children; only sibling and cousin
            // edges can close a cycle.
            if !target.starts_with(module) && !module.starts_with(&target) {
                edges
                    .entry(module.clone())
                    .or_default()
                    .insert(target.clone());
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
    let cycles = find_cycles(&edges);
    assert!(
        cycles.is_empty(),
        "import cycles between files:\n{}",
        cycles.join("\n")
    );
}

/// Every cycle (as `a -> b -> a`) of the module graph, found by depth-first search.
fn find_cycles(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<String> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn dfs(
        node: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        marks: &mut BTreeMap<Vec<String>, Mark>,
        stack: &mut Vec<Vec<String>>,
        out: &mut Vec<String>,
    ) {
        marks.insert(node.clone(), Mark::Open);
        stack.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            match marks.get(next) {
                Some(Mark::Open) => {
                    let start = stack.iter().position(|n| n == next).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        stack[start..].iter().map(|m| m.join("::")).collect();
                    cycle.push(next.join("::"));
                    out.push(cycle.join(" -> "));
                }
                Some(Mark::Done) => {}
                None => dfs(next, edges, marks, stack, out),
            }
        }
        stack.pop();
        marks.insert(node.clone(), Mark::Done);
    }
    let mut marks = BTreeMap::new();
    let mut out = Vec::new();
    for node in edges.keys() {
        if !marks.contains_key(node) {
            dfs(node, edges, &mut marks, &mut Vec::new(), &mut out);
        }
    }
    out
}

#[test]
fn the_resolver_follows_super_and_crate() {
    let known: BTreeSet<Vec<String>> = [
        vec!["proto".to_owned()],
        vec!["proto".to_owned(), "host".to_owned()],
        vec!["proto".to_owned(), "host".to_owned(), "table".to_owned()],
        vec!["wire".to_owned()],
    ]
    .into_iter()
    .collect();
    let from = ["proto".to_owned(), "host".to_owned(), "state".to_owned()];
    let p = |s: &str| s.split("::").map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(
        resolve(&from, 0, &p("super::table::MAX_CAPACITY"), &known),
        Some(p("proto::host::table"))
    );
    assert_eq!(
        resolve(&from, 1, &p("super::Thing"), &known),
        Some(p("proto::host"))
    );
    assert_eq!(
        resolve(&from, 0, &p("crate::wire::Guid"), &known),
        Some(p("wire"))
    );
    assert_eq!(resolve(&from, 0, &p("serde::Serialize"), &known), None);
    let mut edges = BTreeMap::new();
    edges.insert(p("a"), [p("b")].into_iter().collect());
    edges.insert(p("b"), [p("a")].into_iter().collect());
    assert_eq!(find_cycles(&edges), ["a -> b -> a"]);
}
