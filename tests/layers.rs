//! The layering rule of ARCHITECTURE.md ("Layers"), checked on the source: every `use crate::…`,
//! inline `crate::…` / `super::…` / `self::…` path and relative child-module path of every
//! `src/**/*.rs` file is resolved to the file it names (through `pub use` re-exports), and
//!
//! - an arrow between two top-level modules must point to a lower layer, or be a listed peer
//!   arrow inside one layer;
//! - the top-level modules form no cycle;
//! - the files inside `src/model/` form no cycle.
//!
//! Comments and string literals are skipped, so a path in a doc comment is not an import.
//! `self_check_*` run the same checker on the real tree with deliberately added bad imports, so
//! the check cannot pass by finding nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Layers, bottom first; each lists its top-level modules (a folder `src/x/` or a file `src/x.rs`;
/// `lib` is the crate root's own items, `main` the binary). Keep in step with ARCHITECTURE.md.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "leaf utilities",
        &["lib", "error", "text", "interrupt", "rng", "toy"],
    ),
    ("model", &["model", "tokenizer", "loader"]),
    (
        "analyses",
        &[
            "attribution",
            "circuit",
            "eval",
            "tasks",
            "train",
            "generate",
            "chat",
            "bench",
        ],
    ),
    ("results and arguments", &["render", "args"]),
    ("session", &["session"]),
    ("front ends", &["cli", "kernel"]),
    ("binary", &["main"]),
];

/// The only arrows allowed between two modules of the same layer.
const PEERS: &[(&str, &str)] = &[
    ("interrupt", "error"),
    ("loader", "model"),
    ("loader", "tokenizer"),
    ("eval", "attribution"),
    ("circuit", "attribution"),
    ("generate", "chat"),
    ("bench", "attribution"),
    ("bench", "circuit"),
    ("cli", "kernel"),
];

#[derive(Debug, Clone, PartialEq)]
enum K {
    Ident(String),
    /// `::`
    Sep,
    P(char),
}

#[derive(Debug, Clone)]
struct Tok {
    k: K,
    line: usize,
}

/// Tokens of Rust source without comments, strings and char literals.
fn lex(src: &str) -> Vec<Tok> {
    let c: Vec<char> = src.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let mut out = Vec::new();
    let (mut i, mut line) = (0usize, 1usize);
    // Skip a string body starting after its opening quote (escapes allowed).
    fn skip_str(c: &[char], mut i: usize, line: &mut usize) -> usize {
        while i < c.len() {
            match c[i] {
                '\\' => {
                    if c.get(i + 1) == Some(&'\n') {
                        *line += 1; // a line continuation
                    }
                    i += 2
                }
                '"' => return i + 1,
                '\n' => {
                    *line += 1;
                    i += 1
                }
                _ => i += 1,
            }
        }
        i
    }
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if c[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if ch == '"' {
            i = skip_str(&c, i + 1, &mut line);
        } else if ch == '\'' {
            if at(i + 1) == '\\' {
                i += 3; // quote, backslash and the escaped char (which may be a quote)
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                i += 1; // a lifetime: its name follows as an identifier
            }
        } else if ch.is_alphabetic() || ch == '_' {
            let s = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            let word: String = c[s..i].iter().collect();
            if (word == "r" || word == "br") && (at(i) == '"' || at(i) == '#') {
                let mut hashes = 0;
                while at(i + hashes) == '#' {
                    hashes += 1;
                }
                if at(i + hashes) == '"' {
                    // raw string: ends at `"` followed by the same number of `#`
                    i += hashes + 1;
                    while i < c.len() {
                        if c[i] == '"' && (0..hashes).all(|h| at(i + 1 + h) == '#') {
                            i += 1 + hashes;
                            break;
                        }
                        if c[i] == '\n' {
                            line += 1;
                        }
                        i += 1;
                    }
                    continue;
                }
                if word == "r" && hashes == 1 {
                    i += 1; // raw identifier r#name: lex the name next
                    continue;
                }
            }
            if word == "b" && at(i) == '"' {
                i = skip_str(&c, i + 1, &mut line);
                continue;
            }
            if word == "b" && at(i) == '\'' {
                continue; // byte char: the quote branch skips it
            }
            out.push(Tok {
                k: K::Ident(word),
                line,
            });
        } else if ch.is_ascii_digit() {
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
        } else if ch == ':' && at(i + 1) == ':' {
            out.push(Tok { k: K::Sep, line });
            i += 2;
        } else {
            out.push(Tok { k: K::P(ch), line });
            i += 1;
        }
    }
    out
}

fn ident(t: &[Tok], i: usize) -> Option<&str> {
    match t.get(i).map(|t| &t.k) {
        Some(K::Ident(s)) => Some(s),
        _ => None,
    }
}

fn is(t: &[Tok], i: usize, k: &K) -> bool {
    t.get(i).map(|t| &t.k == k).unwrap_or(false)
}

/// A use tree (or an inline path) from token `i`: every leaf path with its bound name.
fn tree(t: &[Tok], i: &mut usize, mut prefix: Vec<String>, out: &mut Vec<(Vec<String>, String)>) {
    if is(t, *i, &K::Sep) {
        *i += 1;
    }
    loop {
        if let Some(name) = ident(t, *i) {
            prefix.push(name.to_string());
            *i += 1;
            if is(t, *i, &K::Sep) {
                *i += 1;
                continue;
            }
            let mut bound = prefix.last().cloned().unwrap_or_default();
            if ident(t, *i) == Some("as") {
                bound = ident(t, *i + 1).unwrap_or("_").to_string();
                *i += 2;
            }
            out.push((prefix, bound));
            return;
        }
        if is(t, *i, &K::P('*')) {
            *i += 1;
            prefix.push("*".into());
            out.push((prefix, "*".into()));
            return;
        }
        if is(t, *i, &K::P('{')) {
            *i += 1;
            while *i < t.len() && !is(t, *i, &K::P('}')) {
                let before = *i;
                tree(t, i, prefix.clone(), out);
                if is(t, *i, &K::P(',')) {
                    *i += 1;
                }
                if *i == before {
                    *i += 1; // never stall on unexpected tokens
                }
            }
            *i += 1;
            return;
        }
        if !prefix.is_empty() {
            out.push((prefix.clone(), prefix.last().cloned().unwrap_or_default()));
        }
        return;
    }
}

/// One path a file names: the module it was written in (file module + inline `mod`s), the path
/// as written, its line, and whether it is a `pub use` (a re-export).
struct Ref {
    module: Vec<String>,
    path: Vec<String>,
    bound: String,
    line: usize,
    reexport: bool,
}

fn refs(src: &str, file_module: &[String], children: &dyn Fn(&[String]) -> bool) -> Vec<Ref> {
    let t = lex(src);
    let mut out = Vec::new();
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut pending_mod: Option<String> = None;
    let mut depth = 0usize;
    let module = |inline: &[(String, usize)]| {
        let mut m = file_module.to_vec();
        m.extend(inline.iter().map(|(n, _)| n.clone()));
        m
    };
    let mut i = 0;
    while i < t.len() {
        let prev = if i > 0 { Some(&t[i - 1].k) } else { None };
        let after_sep = matches!(prev, Some(K::Sep) | Some(K::P('$')) | Some(K::P('.')));
        match &t[i].k {
            K::P('{') => {
                depth += 1;
                if let Some(n) = pending_mod.take() {
                    inline.push((n, depth));
                }
                i += 1;
            }
            K::P('}') => {
                if inline.last().map(|(_, d)| *d == depth).unwrap_or(false) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
            }
            K::P(';') => {
                pending_mod = None;
                i += 1;
            }
            K::Ident(w) if w == "mod" => {
                if let Some(n) = ident(&t, i + 1) {
                    if is(&t, i + 2, &K::P('{')) {
                        pending_mod = Some(n.to_string());
                    }
                }
                i += 1;
            }
            K::Ident(w) if w == "use" && !after_sep => {
                let reexport = matches!(prev, Some(K::Ident(p)) if p == "pub")
                    || (matches!(prev, Some(K::P(')')))
                        && i >= 4
                        && ident(&t, i - 4) == Some("pub"));
                let line = t[i].line;
                let mut j = i + 1;
                let mut paths = Vec::new();
                tree(&t, &mut j, Vec::new(), &mut paths);
                while j < t.len() && !is(&t, j, &K::P(';')) {
                    j += 1;
                }
                let m = module(&inline);
                for (path, bound) in paths {
                    out.push(Ref {
                        module: m.clone(),
                        path,
                        bound,
                        line,
                        reexport,
                    });
                }
                i = j;
            }
            K::Ident(w) if !after_sep && is(&t, i + 1, &K::Sep) => {
                let m = module(&inline);
                let relative_child = {
                    let mut c = m.clone();
                    c.push(w.clone());
                    children(&c)
                };
                if matches!(w.as_str(), "crate" | "super" | "self") || relative_child {
                    let line = t[i].line;
                    let mut j = i;
                    let mut paths = Vec::new();
                    tree(&t, &mut j, Vec::new(), &mut paths);
                    for (path, bound) in paths {
                        out.push(Ref {
                            module: m.clone(),
                            path,
                            bound,
                            line,
                            reexport: false,
                        });
                    }
                    i = j.max(i + 1);
                } else {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// The source tree: path relative to the repository root (`src/…`) → text.
type Tree = BTreeMap<String, String>;

fn module_of(path: &str) -> Vec<String> {
    let rel = path.trim_start_matches("src/").trim_end_matches(".rs");
    let mut m: Vec<String> = rel.split('/').map(str::to_string).collect();
    if m.last().map(|s| s == "mod").unwrap_or(false) {
        m.pop();
    }
    if m == ["lib"] || m == ["main"] {
        m.clear();
    }
    m
}

fn top_of(path: &str) -> String {
    let rel = path.trim_start_matches("src/");
    let first = rel.split('/').next().unwrap_or(rel);
    first.trim_end_matches(".rs").to_string()
}

fn module_file(tree: &Tree, m: &[String]) -> Option<String> {
    if m.is_empty() {
        return Some("src/lib.rs".into());
    }
    let base = format!("src/{}", m.join("/"));
    [format!("{base}.rs"), format!("{base}/mod.rs")]
        .into_iter()
        .find(|p| tree.contains_key(p))
}

/// The absolute module path a written path names, or None for other crates and std.
fn absolute(r: &Ref, main: bool, tree: &Tree) -> Option<Vec<String>> {
    let p = &r.path;
    let first = p.first()?;
    let mut abs = match first.as_str() {
        "crate" => p[1..].to_vec(),
        "gim" if main => p[1..].to_vec(),
        "super" => {
            let mut base = r.module.clone();
            let mut k = 0;
            while p.get(k).map(|s| s == "super").unwrap_or(false) {
                base.pop();
                k += 1;
            }
            base.extend(p[k..].iter().cloned());
            base
        }
        "self" => {
            let mut base = r.module.clone();
            base.extend(p[1..].iter().cloned());
            base
        }
        _ if !main && p.len() > 1 => {
            let mut c = r.module.clone();
            c.push(first.clone());
            module_file(tree, &c)?;
            let mut base = r.module.clone();
            base.extend(p.iter().cloned());
            base
        }
        _ => return None,
    };
    abs.retain(|s| s != "self" && s != "*");
    Some(abs)
}

/// The file an absolute path lands in, following `pub use` re-exports.
fn file_of(
    tree: &Tree,
    reexports: &BTreeMap<String, BTreeMap<String, Vec<String>>>,
    abs: &[String],
    hops: usize,
) -> String {
    let mut best = ("src/lib.rs".to_string(), 0);
    for k in 1..=abs.len() {
        match module_file(tree, &abs[..k]) {
            Some(f) => best = (f, k),
            None => break,
        }
    }
    let rest = &abs[best.1..];
    if let (Some(name), true) = (rest.first(), hops < 8) {
        if let Some(target) = reexports.get(&best.0).and_then(|m| m.get(name)) {
            let mut next = target.clone();
            next.extend(rest[1..].iter().cloned());
            return file_of(tree, reexports, &next, hops + 1);
        }
    }
    best.0
}

fn layer(top: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, ms)| ms.contains(&top))
}

fn cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            match state.get(m.as_str()).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|s| s == m).unwrap_or(0);
                    let mut c = stack[at..].to_vec();
                    c.push(m.clone());
                    return Some(c);
                }
                0 => {
                    if let Some(c) = visit(m, g, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(n, g, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

/// Every breach of the rule in `tree`, one line each.
fn check(tree: &Tree) -> Vec<String> {
    let children = |m: &[String]| module_file(tree, m).is_some() && !m.is_empty();
    let mut all: Vec<(String, Ref)> = Vec::new();
    for (path, src) in tree {
        let m = if path == "src/main.rs" {
            vec!["<main>".to_string()] // its own crate: no child modules of gim's root
        } else {
            module_of(path)
        };
        for r in refs(src, &m, &children) {
            all.push((path.clone(), r));
        }
    }
    let mut reexports: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for (path, r) in &all {
        if r.reexport {
            if let Some(abs) = absolute(r, path == "src/main.rs", tree) {
                reexports
                    .entry(path.clone())
                    .or_default()
                    .insert(r.bound.clone(), abs);
            }
        }
    }
    let mut problems = Vec::new();
    let mut tops: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut model: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, r) in &all {
        // The crate root's `pub use`s are its facade, not imports of its own items.
        if path == "src/lib.rs" && r.reexport {
            continue;
        }
        let main = path == "src/main.rs";
        let Some(abs) = absolute(r, main, tree) else {
            continue;
        };
        let target = file_of(tree, &reexports, &abs, 0);
        // The layer is that of the module the path names (`crate::session::MimeBundle` names the
        // session even though the type is render's); crate-root items count where they live.
        let from = top_of(path);
        let to = match abs.first() {
            Some(f) if module_file(tree, std::slice::from_ref(f)).is_some() => f.clone(),
            _ => top_of(&target),
        };
        if from == "model" && to == "model" && *path != target {
            model
                .entry(path.clone())
                .or_default()
                .insert(target.clone());
        }
        if from == to {
            continue;
        }
        tops.entry(from.clone()).or_default().insert(to.clone());
        match (layer(&from), layer(&to)) {
            (None, _) => problems.push(format!("{path}: module `{from}` is in no layer of LAYERS")),
            (_, None) => problems.push(format!(
                "{path}:{}: `{to}` ({target}) is in no layer of LAYERS",
                r.line
            )),
            (Some(a), Some(b)) => {
                let peer = PEERS.contains(&(from.as_str(), to.as_str()));
                if b > a || (a == b && !peer) {
                    problems.push(format!(
                        "{path}:{}: {from} ({}) → {to} ({}) via `{}`{}",
                        r.line,
                        LAYERS[a].0,
                        LAYERS[b].0,
                        r.path.join("::"),
                        if a == b {
                            " (same layer, not a listed peer arrow)"
                        } else {
                            " goes up"
                        }
                    ));
                }
            }
        }
    }
    problems.sort();
    problems.dedup();
    if let Some(c) = cycle(&tops) {
        problems.push(format!(
            "cycle between top-level modules: {}",
            c.join(" → ")
        ));
    }
    if let Some(c) = cycle(&model) {
        problems.push(format!(
            "cycle among the files of src/model/: {}",
            c.join(" → ")
        ));
    }
    problems
}

fn read_tree() -> Tree {
    fn walk(dir: &Path, tree: &mut Tree) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, tree);
            } else if p.extension().map(|e| e == "rs").unwrap_or(false) {
                let rel = p
                    .strip_prefix(env!("CARGO_MANIFEST_DIR"))
                    .unwrap_or(&p)
                    .to_string_lossy()
                    .replace('\\', "/");
                let text = std::fs::read_to_string(&p)
                    .unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
                tree.insert(rel, text);
            }
        }
    }
    let mut tree = Tree::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut tree,
    );
    tree
}

#[test]
fn no_arrow_goes_up_and_no_cycles() {
    let tree = read_tree();
    assert!(tree.len() > 50, "read only {} files", tree.len());
    let problems = check(&tree);
    assert!(
        problems.is_empty(),
        "the layering rule of ARCHITECTURE.md is broken:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_module_is_in_one_layer() {
    let tree = read_tree();
    let mut seen = BTreeSet::new();
    for (name, ms) in LAYERS {
        for m in *ms {
            assert!(seen.insert(*m), "`{m}` is in two layers (second: {name})");
        }
    }
    for path in tree.keys() {
        let top = top_of(path);
        assert!(layer(&top).is_some(), "{path}: `{top}` is in no layer");
    }
    for (a, b) in PEERS {
        assert_eq!(layer(a), layer(b), "peer arrow {a} → {b} crosses layers");
    }
}

#[test]
fn the_layer_table_matches_architecture_md() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md"))
            .unwrap_or_else(|e| panic!("read ARCHITECTURE.md: {e}"));
    let doc = doc.split_whitespace().collect::<Vec<_>>().join(" ");
    for (name, ms) in LAYERS {
        let row = format!(
            "| {name} | {} |",
            ms.iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        assert!(
            doc.contains(&row),
            "ARCHITECTURE.md lacks the layer row\n{row}"
        );
    }
    for (a, b) in PEERS {
        let arrow = format!("`{a}` → `{b}`");
        assert!(
            doc.contains(&arrow),
            "ARCHITECTURE.md lacks the peer arrow {arrow}"
        );
    }
}

/// Source files may be at most this many lines, unless ARCHITECTURE.md's "Long files" section
/// lists them with the reason.
const MAX_LINES: usize = 450;

#[test]
fn no_file_is_long_unless_architecture_md_says_why() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md"))
            .unwrap_or_else(|e| panic!("read ARCHITECTURE.md: {e}"));
    let section = doc
        .split("\n## ")
        .find(|s| s.starts_with("Long files"))
        .unwrap_or_else(|| panic!("ARCHITECTURE.md has no \"## Long files\" section"));
    // each entry: "- `src/…rs` (N lines): why"
    let listed: BTreeSet<&str> = section
        .lines()
        .filter_map(|l| l.strip_prefix("- `"))
        .filter_map(|l| l.split('`').next())
        .collect();
    let tree = read_tree();
    let mut long = Vec::new();
    for (path, src) in &tree {
        let n = src.lines().count();
        if n > MAX_LINES && !listed.contains(path.as_str()) {
            long.push(format!("{path}: {n} lines"));
        }
    }
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines that ARCHITECTURE.md's \"Long files\" does not explain \
         (split them, or list them there with the reason):\n{}",
        long.join("\n")
    );
    for path in &listed {
        let n = tree
            .get(*path)
            .map(|s| s.lines().count())
            .unwrap_or_else(|| panic!("\"Long files\" lists {path}, which does not exist"));
        assert!(
            n > MAX_LINES,
            "\"Long files\" lists {path}, which has only {n} lines: drop the entry"
        );
    }
}

#[test]
fn every_use_crate_line_is_seen_at_its_own_line() {
    // The lexer's line numbers are what a breach report points at: check them on every line that
    // starts with `use crate::` (none of them is inside a comment or a string).
    let tree = read_tree();
    let children = |m: &[String]| module_file(&tree, m).is_some() && !m.is_empty();
    let mut n = 0;
    for (path, src) in &tree {
        let lines: BTreeSet<usize> = refs(src, &module_of(path), &children)
            .iter()
            .map(|r| r.line)
            .collect();
        for (i, l) in src.lines().enumerate() {
            if l.trim_start().starts_with("use crate::") {
                n += 1;
                assert!(lines.contains(&(i + 1)), "{path}:{} not seen: {l}", i + 1);
            }
        }
    }
    assert!(n > 100, "only {n} `use crate::` lines");
}

/// Append `text` to one file of the real tree and return the problems found.
fn with_added(file: &str, text: &str) -> (usize, Vec<String>) {
    let mut tree = read_tree();
    let src = tree.get_mut(file).unwrap_or_else(|| panic!("no {file}"));
    let line = src.lines().count() + 1;
    src.push_str(text);
    (line, check(&tree))
}

#[test]
fn self_check_a_use_that_goes_up_is_reported_with_file_and_line() {
    let (line, p) = with_added("src/model/ops.rs", "use crate::session::Session;\n");
    let want = format!("src/model/ops.rs:{line}: model (model) → session (session)");
    assert!(
        p.iter().any(|s| s.starts_with(&want)),
        "{want} not in {p:#?}"
    );
    assert!(
        p.iter()
            .any(|s| s.starts_with("cycle between top-level modules")),
        "{p:#?}"
    );
}

#[test]
fn self_check_grouped_and_inline_paths_are_seen() {
    let (line, p) = with_added(
        "src/error.rs",
        "use crate::{text::x, render::{self, Figure}};\nfn f() { crate::cli::main(); }\n",
    );
    for (l, to) in [(line, "render"), (line + 1, "cli")] {
        let want = format!("src/error.rs:{l}: error (leaf utilities) → {to}");
        assert!(
            p.iter().any(|s| s.starts_with(&want)),
            "{want} not in {p:#?}"
        );
    }
    // a peer of the same layer that is not a listed arrow
    let (line, p) = with_added("src/eval/data.rs", "use crate::train::tasks::Vocab;\n");
    let want = format!("src/eval/data.rs:{line}: eval (analyses) → train (analyses)");
    assert!(
        p.iter().any(|s| s.starts_with(&want)),
        "{want} not in {p:#?}"
    );
}

#[test]
fn self_check_super_and_reexports_resolve_to_files() {
    // `super::super::` from src/render/html.rs is the crate root.
    let (line, p) = with_added("src/render/html.rs", "use super::super::session::Output;\n");
    let want = format!("src/render/html.rs:{line}: render (results and arguments) → session");
    assert!(
        p.iter().any(|s| s.starts_with(&want)),
        "{want} not in {p:#?}"
    );
    // `session::MimeBundle` is render's own type re-exported, but the path still names the session.
    let (line, p) = with_added(
        "src/render/html.rs",
        "fn f(_: crate::session::MimeBundle) {}\n",
    );
    let want = format!("src/render/html.rs:{line}: render (results and arguments) → session");
    assert!(
        p.iter().any(|s| s.starts_with(&want)),
        "{want} not in {p:#?}"
    );
    // In a comment or a string it is no import.
    let (_, p) = with_added(
        "src/render/html.rs",
        "// use crate::session::Output;\nconst S: &str = \"crate::cli::main\";\n",
    );
    assert!(p.is_empty(), "{p:#?}");
}

#[test]
fn self_check_a_cycle_inside_model_is_reported() {
    let (_, p) = with_added("src/model/kernels.rs", "use super::backward::lin;\n");
    assert!(
        p.iter()
            .any(|s| s.starts_with("cycle among the files of src/model/")
                && s.contains("src/model/kernels.rs")
                && s.contains("src/model/backward.rs")),
        "{p:#?}"
    );
    // through a re-export of model/mod.rs: `crate::model::Transformer` is transformer.rs
    let (_, p) = with_added("src/model/kernels.rs", "use crate::model::Transformer;\n");
    assert!(
        p.iter()
            .any(|s| s.starts_with("cycle among the files of src/model/")
                && s.contains("src/model/transformer.rs")),
        "{p:#?}"
    );
}
