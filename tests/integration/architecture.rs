//! The house stays one-way: every `crate::…`, `super::…` and `self::…` path in `sim/**/*.rs`
//! is checked against the import-rule table in ARCHITECTURE.md, and so are printing, file access
//! and file formats. The table is the source of truth; this test only reads and enforces it.
//!
//! `#[cfg(test)]` items are outside the rules: a unit test may check one engine against the
//! other, or build its fixture through `pipeline` or `builtin`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One row of the rule table.
#[derive(Debug, Clone)]
struct Rule {
    /// Rooms this room may use (besides itself); empty with `std_only`.
    may_use: Vec<String>,
    /// No crate room and no external crate: `std` (and `core`) alone.
    std_only: bool,
    /// Where printing and file access are allowed: everywhere in the room (`yes`), nowhere
    /// (`no`), or only in the files the cell names.
    io: Allowance,
    /// Where file formats (serde_yaml, serde_json, csv, include_str!) are allowed.
    formats: Allowance,
}

#[derive(Debug, Clone, PartialEq)]
enum Allowance {
    Yes,
    No,
    Only(Vec<String>),
}

impl Allowance {
    fn parse(cell: &str) -> Allowance {
        let c = cell.trim();
        if c == "yes" {
            Allowance::Yes
        } else if c == "no" {
            Allowance::No
        } else {
            let files = backticked(c)
                .into_iter()
                .filter(|f| f.starts_with("sim/"))
                .collect::<Vec<_>>();
            assert!(
                !files.is_empty(),
                "ARCHITECTURE.md: an I/O or format cell must be yes, no, or name the files (`sim/...`) it allows: {c:?}"
            );
            Allowance::Only(files)
        }
    }
    fn allows(&self, file: &str) -> bool {
        match self {
            Allowance::Yes => true,
            Allowance::No => false,
            Allowance::Only(files) => files.iter().any(|f| f == file),
        }
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn backticked(s: &str) -> Vec<String> {
    s.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, t)| t.to_string())
        .collect()
}

/// Reads the table under the "## Import rules" heading: `| room | may use | prints or touches
/// files | file formats |`.
fn rules(arch: &str) -> BTreeMap<String, Rule> {
    let start = arch
        .find("## Import rules")
        .expect("ARCHITECTURE.md has an \"## Import rules\" section");
    let mut out = BTreeMap::new();
    for line in arch[start..].lines().skip(1) {
        if line.starts_with("## ") {
            break;
        }
        let cells: Vec<&str> = line.trim().trim_matches('|').split('|').collect();
        if !line.trim_start().starts_with('|') || cells.len() != 4 {
            continue;
        }
        let rooms = backticked(cells[0]);
        if rooms.len() != 1 {
            continue; // header and separator rows
        }
        let std_only = cells[1].contains("std only");
        let rule = Rule {
            may_use: backticked(cells[1]),
            std_only,
            io: Allowance::parse(cells[2]),
            formats: Allowance::parse(cells[3]),
        };
        assert!(
            out.insert(rooms[0].clone(), rule).is_none(),
            "ARCHITECTURE.md lists room `{}` twice",
            rooms[0]
        );
    }
    assert!(
        out.len() >= 10,
        "rule table not found or too short: {out:?}"
    );
    out
}

/// Blanks comments, string and char literals (keeping newlines, so offsets keep their lines).
fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let end = src[i..].find('\n').map_or(b.len(), |e| i + e);
                blank(&mut out, i, end);
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let end = src[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2);
                blank(&mut out, i, end);
                i = end;
            }
            b'r' if (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
                if b.get(i + 1 + hashes) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let close = format!("\"{}", "#".repeat(hashes));
                let body = i + 2 + hashes;
                let end = src[body..]
                    .find(&close)
                    .map_or(b.len(), |e| body + e + close.len());
                blank(&mut out, i, end);
                i = end;
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                blank(&mut out, i, (j + 1).min(b.len()));
                i = j + 1;
            }
            b'\'' => {
                // A char literal ('x', '\n', '\u{..}'), not a lifetime ('a).
                let rest = &src[i + 1..];
                let len = if rest.starts_with('\\') {
                    rest.find('\'').map(|e| e + 2)
                } else {
                    rest.chars()
                        .next()
                        .filter(|c| rest[c.len_utf8()..].starts_with('\''))
                        .map(|c| c.len_utf8() + 2)
                };
                match len {
                    Some(l) => {
                        blank(&mut out, i, i + l);
                        i += l;
                    }
                    None => i += 1,
                }
            }
            _ => i += 1,
        }
    }
    String::from_utf8(out).expect("blanking keeps UTF-8 (only ASCII bytes are replaced)")
}

/// Blanks every `#[cfg(test)]` item: the attribute and the item after it, to its matching
/// brace or its semicolon.
fn without_tests(code: &str) -> String {
    let mut out = code.as_bytes().to_vec();
    let mut from = 0;
    while let Some(p) = code[from..].find("#[cfg(test)]") {
        let start = from + p;
        let after = start + "#[cfg(test)]".len();
        let brace = code[after..].find('{').map(|x| after + x);
        let semi = code[after..].find(';').map(|x| after + x);
        let end = match (brace, semi) {
            (Some(b), s) if s.is_none_or(|s| b < s) => {
                let mut depth = 0usize;
                let mut e = code.len();
                for (k, c) in code[b..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                e = b + k + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                e
            }
            (_, Some(s)) => s + 1,
            _ => code.len(),
        };
        for c in &mut out[start..end] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
        from = end;
    }
    String::from_utf8(out).expect("blanking keeps UTF-8")
}

/// Module path of a file under `sim/`: `sim/step/des.rs` → [step, des]; `mod.rs` is its folder.
fn module_of(rel: &str) -> Vec<String> {
    let p = rel.strip_prefix("sim/").expect("a file under sim/");
    let p = p.strip_suffix(".rs").expect("a .rs file");
    let mut parts: Vec<String> = p.split('/').map(String::from).collect();
    if parts
        .last()
        .is_some_and(|l| l == "mod" || l == "lib" || l == "main")
    {
        parts.pop();
    }
    parts
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Expands a use tree at `s` (after `crate::`/`super::`/`self::`) into its paths.
fn use_tree(s: &str) -> Vec<Vec<String>> {
    fn tree(s: &[char], i: &mut usize) -> Vec<Vec<String>> {
        let skip_ws = |i: &mut usize| {
            while *i < s.len() && s[*i].is_whitespace() {
                *i += 1;
            }
        };
        skip_ws(i);
        if *i < s.len() && s[*i] == '{' {
            *i += 1;
            let mut all = Vec::new();
            loop {
                skip_ws(i);
                if *i >= s.len() || s[*i] == '}' {
                    *i += 1;
                    break;
                }
                all.extend(tree(s, i));
                skip_ws(i);
                if *i < s.len() && s[*i] == ',' {
                    *i += 1;
                }
            }
            return all;
        }
        let mut path = Vec::new();
        loop {
            let st = *i;
            while *i < s.len() && is_ident(s[*i]) {
                *i += 1;
            }
            if *i == st {
                if *i < s.len() && s[*i] == '*' {
                    *i += 1;
                }
                break;
            }
            path.push(s[st..*i].iter().collect::<String>());
            if *i + 1 < s.len() && s[*i] == ':' && s[*i + 1] == ':' {
                *i += 2;
                if *i < s.len() && s[*i] == '{' {
                    let subs = tree(s, i);
                    return subs
                        .into_iter()
                        .map(|t| path.iter().cloned().chain(t).collect())
                        .collect();
                }
            } else {
                break;
            }
        }
        // `a::b as c`: the rename does not change the target.
        vec![path]
    }
    let chars: Vec<char> = s.chars().take(4000).collect();
    let mut i = 0;
    tree(&chars, &mut i)
}

/// Every crate-internal path in `code`, resolved to an absolute module path, with its line.
fn crate_paths(code: &str, me: &[String]) -> Vec<(usize, Vec<String>)> {
    let mut found = Vec::new();
    let line_of = |pos: usize| code[..pos].matches('\n').count() + 1;
    for (anchor, base) in [
        ("crate::", Vec::new()),
        ("self::", me.to_vec()),
        ("super::", {
            let mut b = me.to_vec();
            b.pop();
            b
        }),
    ] {
        let mut from = 0;
        while let Some(p) = code[from..].find(anchor) {
            let pos = from + p;
            from = pos + anchor.len();
            let before = code[..pos].chars().next_back();
            if before.is_some_and(|c| is_ident(c) || c == ':') {
                continue; // `super::super::` is handled from its first `super::`
            }
            let mut base = base.clone();
            let mut rest = &code[pos + anchor.len()..];
            while let Some(r) = rest.strip_prefix("super::") {
                base.pop();
                rest = r;
            }
            for tail in use_tree(rest) {
                let mut full = base.clone();
                full.extend(tail);
                found.push((line_of(pos), full));
            }
        }
    }
    found
}

/// The room a module path belongs to: the longest room name that is a prefix of it.
fn room_of<'a>(path: &[String], rules: &'a BTreeMap<String, Rule>) -> Option<&'a str> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find_map(|p| rules.get_key_value(&p).map(|(k, _)| k.as_str()))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("sim/ is readable")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

const IO_TOKENS: [&str; 9] = [
    "std::fs",
    "fs::",
    "File::",
    "println!",
    "eprintln!",
    "print!",
    "eprint!",
    "stdout()",
    "stderr()",
];
const FORMAT_TOKENS: [&str; 5] = [
    "serde_yaml",
    "serde_json",
    "csv::",
    "include_str!",
    "include_bytes!",
];

/// External crates named in Cargo.toml's `[dependencies]`, as Rust spells them.
fn dependencies() -> Vec<String> {
    let toml = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    let deps = toml
        .split("\n[dependencies]\n")
        .nth(1)
        .expect("a [dependencies] table");
    deps.lines()
        .take_while(|l| !l.starts_with('['))
        .filter_map(|l| l.split('=').next())
        .map(|n| n.trim().replace('-', "_"))
        .filter(|n| !n.is_empty() && !n.starts_with('#'))
        .collect()
}

/// All violations in the tree, one line each: file, line, room, what it used.
fn violations(sim: &Path, arch: &str) -> Vec<String> {
    let rules = rules(arch);
    let deps = dependencies();
    let mut files = Vec::new();
    rust_files(sim, &mut files);
    let mut bad = Vec::new();
    for f in files {
        let rel = format!(
            "sim/{}",
            f.strip_prefix(sim)
                .expect("under sim/")
                .to_string_lossy()
                .replace('\\', "/")
        );
        let me = module_of(&rel);
        if me.is_empty() {
            continue; // lib.rs and main.rs: module declarations and the entry point
        }
        let Some(room) = room_of(&me, &rules) else {
            bad.push(format!(
                "{rel}: module `{}` belongs to no room of ARCHITECTURE.md's import rules",
                me.join("::")
            ));
            continue;
        };
        let rule = &rules[room];
        let text = std::fs::read_to_string(&f).expect("source is readable");
        let code = without_tests(&strip(&text));
        let line_of = |pos: usize| code[..pos].matches('\n').count() + 1;
        for (line, path) in crate_paths(&code, &me) {
            let Some(target) = room_of(&path, &rules) else {
                if path.len() > 1 || !me.starts_with(&path) {
                    bad.push(format!(
                        "{rel}:{line}: `{room}` uses `{}`, which belongs to no room",
                        path.join("::")
                    ));
                }
                continue;
            };
            if target != room && (rule.std_only || !rule.may_use.iter().any(|u| u == target)) {
                bad.push(format!(
                    "{rel}:{line}: `{room}` uses `{target}` (`{}`); ARCHITECTURE.md lets `{room}` use {}",
                    path.join("::"),
                    if rule.std_only {
                        "std only".to_string()
                    } else {
                        rule.may_use.join(", ")
                    }
                ));
            }
        }
        let mut tokens: Vec<(&str, &str)> = Vec::new();
        if !rule.io.allows(&rel) {
            tokens.extend(IO_TOKENS.iter().map(|t| (*t, "prints or touches files")));
        }
        if !rule.formats.allows(&rel) {
            tokens.extend(FORMAT_TOKENS.iter().map(|t| (*t, "knows a file format")));
        }
        let ext: Vec<String> = if rule.std_only {
            deps.iter().map(|d| format!("{d}::")).collect()
        } else {
            Vec::new()
        };
        tokens.extend(ext.iter().map(|t| (t.as_str(), "uses an external crate")));
        for (tok, what) in tokens {
            let mut from = 0;
            while let Some(p) = code[from..].find(tok) {
                let pos = from + p;
                from = pos + tok.len();
                let before = code[..pos].chars().next_back();
                if before.is_some_and(|c| is_ident(c) || (c == ':' && !tok.contains("::"))) {
                    continue;
                }
                bad.push(format!("{rel}:{}: `{room}` {what} (`{tok}`)", line_of(pos)));
            }
        }
    }
    bad.sort();
    bad.dedup();
    bad
}

fn architecture() -> String {
    std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md")
}

#[test]
fn imports_follow_the_rule_table() {
    let bad = violations(&root().join("sim"), &architecture());
    assert!(
        bad.is_empty(),
        "forbidden edges (fix the code, or change the rule in ARCHITECTURE.md on purpose):\n{}",
        bad.join("\n")
    );
}

/// Every top-level module of the crate has a room, and every source file is in the codemap
/// (by its path, or its folder's).
#[test]
fn the_rule_table_and_codemap_cover_the_tree() {
    let arch = architecture();
    let rules = rules(&arch);
    let lib = std::fs::read_to_string(root().join("sim/lib.rs")).expect("lib.rs");
    for line in lib.lines() {
        if let Some(m) = line.trim().strip_prefix("pub mod ") {
            let m = m.trim_end_matches(';');
            assert!(
                rules.contains_key(m),
                "module `{m}` has no row in the import rules"
            );
        }
    }
    for room in rules.keys() {
        let path: Vec<String> = room.split("::").map(String::from).collect();
        let file = root().join("sim").join(path.join("/"));
        assert!(
            file.with_extension("rs").exists() || file.join("mod.rs").exists(),
            "the import rules name `{room}`, which is no module of sim/"
        );
    }
    let codemap = &arch[arch.find("## Codemap").expect("a Codemap section")
        ..arch.find("## Invariants").expect("an Invariants section")];
    let mut files = Vec::new();
    rust_files(&root().join("sim"), &mut files);
    for f in files {
        let rel = f
            .strip_prefix(root())
            .expect("under the root")
            .to_string_lossy()
            .replace('\\', "/");
        let folder = format!("{}/", rel.rsplit_once('/').expect("a folder").0);
        assert!(
            codemap.contains(&format!("`{rel}`")) || codemap.contains(&format!("`{folder}`")),
            "{rel} is not in ARCHITECTURE.md's codemap"
        );
    }
}

/// The checker itself: a forbidden `use`, a print in a quiet room, an engine using the other
/// engine, a `super::` path and a test module are each judged as the table says.
#[test]
fn the_checker_finds_what_it_should() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("architecture-fixture");
    let _ = std::fs::remove_dir_all(&dir);
    let write = |rel: &str, text: &str| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
        std::fs::write(p, text).expect("write fixture");
    };
    write(
        "hw/mod.rs",
        "use crate::config::Diagnostic;\nuse crate::units::Time;\n",
    );
    write(
        "step/des.rs",
        "use super::analytic::estimate;\nuse super::Staging;\n// println!(\"in a comment\")\nfn f() { let _ = \"crate::cli in a string\"; }\n#[cfg(test)]\nmod tests {\n    use crate::cli;\n    fn g() { println!(\"fine in tests\"); }\n}\n",
    );
    write("step/analytic.rs", "fn f() { println!(\"loud\"); }\n");
    write("step/mod.rs", "pub mod analytic;\npub mod des;\n");
    write(
        "engine/mod.rs",
        "use std::collections::BTreeMap;\nuse rayon::prelude::*;\n",
    );
    let arch = "## Import rules\n\n| room | may use | prints or touches files | file formats |\n|---|---|---|---|\n\
| `units` | — | no | no |\n| `config` | `units` | no | yes |\n| `hw` | `units` | no | no |\n\
| `engine` | std only | no | no |\n| `step` | `units`, `hw` | no | no |\n\
| `step::des` | `step`, `units` | no | no |\n| `step::analytic` | `step`, `units` | no | no |\n\
| `cli` | `step`, `hw`, `config`, `units` | yes | yes |\n| `a` | — | no | no |\n| `b` | — | no | no |\n";
    let bad = violations(&dir, arch);
    let expected = [
        "sim/engine/mod.rs:2: `engine` uses an external crate (`rayon::`)",
        "sim/hw/mod.rs:1: `hw` uses `config` (`config::Diagnostic`); ARCHITECTURE.md lets `hw` use units",
        "sim/step/analytic.rs:1: `step::analytic` prints or touches files (`println!`)",
        "sim/step/des.rs:1: `step::des` uses `step::analytic` (`step::analytic::estimate`); ARCHITECTURE.md lets `step::des` use step, units",
    ];
    assert_eq!(bad, expected, "{bad:#?}");
}
