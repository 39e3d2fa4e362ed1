//! The architecture, checked from the source text so it stays true: every
//! `crate::`/`super::` reference between modules of `src/` points down the
//! layers documented in `lib.rs` and `ARCHITECTURE.md`, no file imports
//! itself back through others (no cycles among files), no SQLite type appears
//! outside `storage/sqlite/` and no PostgreSQL driver type outside
//! `storage/postgres/`, and the domain stays pure (no runtime, no RPC
//! framework, no SQL, no sockets, no clock).
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Rank of each top-level module: a module may use modules of lower rank only
/// (and its own).
const RANKS: &[(&str, u32)] = &[
    ("cli", 8),
    ("app", 7),
    ("api", 6),
    ("service", 5),
    ("pki", 4),
    ("config", 4),
    ("domain", 3),
    ("storage", 2),
    ("transport", 2),
    ("proto", 1),
];

fn rank(top: &str) -> Option<u32> {
    RANKS.iter().find(|(m, _)| *m == top).map(|(_, r)| *r)
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a source file (`src/a/b.rs` → `a::b`, `src/a/mod.rs` →
/// `a`; a `x_tests.rs` file included with `#[path]` is `x::tests`).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    match stem {
        "mod" | "lib" => {}
        s if s.ends_with("_tests")
            && file
                .with_file_name(format!("{}.rs", &s[..s.len() - 6]))
                .exists() =>
        {
            parts.push(s[..s.len() - 6].to_string());
            parts.push("tests".into());
        }
        s => parts.push(s.to_string()),
    }
    parts
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The module paths a line of code refers to, relative to `me`.
fn references(line: &str, me: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes: Vec<char> = line.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let starts = |w: &str| {
            bytes[i..].iter().take(w.len()).copied().eq(w.chars())
                && (i == 0 || !is_ident_char(bytes[i - 1]))
        };
        let (mut base, skip) = if starts("crate::") {
            (Vec::new(), "crate::".len())
        } else if starts("super::") {
            let mut b = me.to_vec();
            b.pop();
            (b, "super::".len())
        } else {
            i += 1;
            continue;
        };
        i += skip;
        // Further `super::` segments.
        while bytes[i..].iter().take(7).copied().eq("super::".chars()) {
            base.pop();
            i += 7;
        }
        // Path segments.
        loop {
            let start = i;
            while i < bytes.len() && is_ident_char(bytes[i]) {
                i += 1;
            }
            if i == start {
                break;
            }
            base.push(bytes[start..i].iter().collect());
            if bytes[i..].iter().take(2).copied().eq("::".chars()) {
                i += 2;
                if i < bytes.len() && bytes[i] == '{' {
                    // A group: each first-level name is a reference.
                    i += 1;
                    let mut depth = 1;
                    let mut name = String::new();
                    let mut at_start = true;
                    while i < bytes.len() && depth > 0 {
                        let c = bytes[i];
                        match c {
                            '{' => depth += 1,
                            '}' => depth -= 1,
                            ',' if depth == 1 => at_start = true,
                            c if depth == 1 && is_ident_char(c) && at_start => name.push(c),
                            _ => {
                                if !name.is_empty() {
                                    let mut p = base.clone();
                                    p.push(std::mem::take(&mut name));
                                    out.push(p);
                                }
                                if c != ' ' {
                                    at_start = false;
                                }
                            }
                        }
                        i += 1;
                    }
                    if !name.is_empty() {
                        let mut p = base.clone();
                        p.push(name);
                        out.push(p);
                    }
                    base.clear();
                    break;
                }
                continue;
            }
            break;
        }
        if !base.is_empty() {
            out.push(base);
        }
    }
    out
}

struct Graph {
    /// file → files it refers to.
    edges: BTreeMap<String, BTreeSet<String>>,
    /// file → its top-level module.
    top: BTreeMap<String, String>,
    /// Source text without comment lines, per file.
    code: BTreeMap<String, String>,
}

fn build() -> Graph {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut by_module: BTreeMap<Vec<String>, String> = BTreeMap::new();
    for f in &files {
        let name = f.strip_prefix(&src).unwrap().display().to_string();
        if name == "main.rs" {
            continue;
        }
        by_module.insert(module_of(&src, f), name);
    }
    let mut g = Graph {
        edges: BTreeMap::new(),
        top: BTreeMap::new(),
        code: BTreeMap::new(),
    };
    for (module, name) in &by_module {
        let text = std::fs::read_to_string(src.join(name)).unwrap();
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .map(|l| format!("{l}\n"))
            .collect();
        let mut targets = BTreeSet::new();
        for line in code.lines() {
            for r in references(line, module) {
                // The longest prefix that is a module with a file.
                let hit = (1..=r.len())
                    .rev()
                    .find_map(|n| by_module.get(&r[..n]))
                    .filter(|t| *t != name);
                if let Some(t) = hit {
                    targets.insert(t.clone());
                }
            }
        }
        g.top.insert(
            name.clone(),
            module.first().cloned().unwrap_or_else(|| "lib".into()),
        );
        g.edges.insert(name.clone(), targets);
        g.code.insert(name.clone(), code);
    }
    g
}

#[test]
fn every_import_points_down_the_layers() {
    let g = build();
    assert!(g.edges.len() > 40, "found only {} files", g.edges.len());
    let mut bad = Vec::new();
    for (from, tos) in &g.edges {
        let ft = &g.top[from];
        if ft == "lib" {
            continue;
        }
        let fr = rank(ft).unwrap_or_else(|| panic!("{from}: module {ft} has no layer in RANKS"));
        for to in tos {
            let tt = &g.top[to];
            if tt == ft || tt == "lib" {
                continue;
            }
            let tr = rank(tt).unwrap_or_else(|| panic!("{to}: no layer"));
            if tr >= fr {
                bad.push(format!("{from} ({ft}) -> {to} ({tt})"));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "imports pointing up or sideways:\n{}",
        bad.join("\n")
    );
}

#[test]
fn no_import_cycles_among_files() {
    let g = build();
    // Depth-first search with colours; report the first cycle found.
    fn visit(
        n: &str,
        g: &Graph,
        colour: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        colour.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in &g.edges[n] {
            match colour.get(m).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|s| s == m).unwrap();
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(m, g, colour, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        colour.insert(n.to_string(), 2);
        None
    }
    let mut colour = BTreeMap::new();
    for n in g.edges.keys() {
        if colour.get(n).copied().unwrap_or(0) == 0
            && let Some(c) = visit(n, &g, &mut colour, &mut Vec::new())
        {
            panic!("import cycle: {}", c.join(" -> "));
        }
    }
}

#[test]
fn database_drivers_stay_in_their_backends_and_the_domain_stays_pure() {
    let g = build();
    for (file, code) in &g.code {
        if !file.starts_with("storage/sqlite/") {
            assert!(!code.contains("rusqlite"), "{file} names rusqlite");
        }
        if !file.starts_with("storage/postgres/") {
            for driver in [
                "tokio_postgres",
                "deadpool_postgres",
                "deadpool::",
                "postgres_types",
            ] {
                assert!(
                    !code.contains(driver),
                    "{file} names {driver}: PostgreSQL types stay in storage/postgres/"
                );
            }
        }
        if file.starts_with("domain/") {
            for banned in [
                "tokio",
                "tonic",
                "rusqlite",
                "postgres",
                "std::fs",
                "TcpStream",
                "TcpListener",
                "UdpSocket",
                "SystemTime::now",
                "Instant::now",
                "now_v7_ms",
            ] {
                assert!(
                    !code.contains(banned),
                    "{file} uses {banned}: the domain is pure"
                );
            }
        }
    }
}

#[test]
fn the_checker_sees_references() {
    let me = vec!["service".to_string(), "alerts".to_string()];
    let r = references(
        "use crate::domain::{alert::{Limits, x}, envelope::ms_to_ts}; use super::node::Node;",
        &me,
    );
    assert!(r.contains(&vec!["domain".into(), "alert".into()]), "{r:?}");
    assert!(
        r.contains(&vec!["domain".into(), "envelope".into()]),
        "{r:?}"
    );
    assert!(
        r.contains(&vec!["service".into(), "node".into(), "Node".into()]),
        "{r:?}"
    );
    let r = references("let x = crate::app::start(p);", &me);
    assert_eq!(r, vec![vec!["app".to_string(), "start".into()]]);
}
