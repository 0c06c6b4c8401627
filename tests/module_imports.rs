//! The crate's import rules, checked: every source file's module doc carries a
//! `May import:` clause naming the crate modules it may use, no file uses a crate module
//! its clause does not name, and no two top-level modules or two files depend on each
//! other, directly or round a longer loop.
//!
//! The clause is regular so that this test can read it:
//!
//! ```text
//! //! May import: crate::iso, crate::route::sched, crate::metrics.
//! //! May import: nothing.
//! ```
//!
//! It starts a `//!` line and runs to the first period; items are separated by commas
//! (the clause may wrap onto following `//!` lines). An item is a crate path, allowing
//! that module and everything inside it, or `nothing`. Another top-level module may be
//! named whole (`crate::iso`); within its own, a file names the modules it uses one level
//! below the part of the path they share (`route/fees.rs` names `crate::route::routes`, not
//! `crate::route`), so that no file allows its whole layer. External crates and the
//! standard library are not listed. A file may always use the modules below its own. Test
//! code (`#[cfg(test)]` items and the files they declare) is not checked.
//!
//! The reader is a small lexer, not a Rust parser: it drops comments and literals, reads
//! `mod` declarations (with `#[path]` and `#[cfg(test)]`) to map modules to files, and
//! resolves `use` trees and qualified paths that start with `crate`, `super`, `self`, a
//! child module or a name bound by `use`. Where a module's `use` binds a name that other
//! files reach through it (a re-export), the edge goes to the file that defines it.
//!
//! Every problem names the file (and line and path for a use); a file with a problem also
//! gets the clause that would describe it. A cycle is reported with one loop through it,
//! each step with the path that makes it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Where a dependency was seen: the file and line of the path that made it.
#[derive(Clone, Debug)]
struct Seen {
    file: String,
    line: usize,
    path: String,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Colons,
    Punct(char),
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    line: usize,
}

/// Drops comments, strings, byte strings, raw strings and char literals; keeps
/// identifiers, `::` and single punctuation, each with its line.
fn lex(src: &str) -> Vec<Token> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1;
    while i < b.len() {
        let c = b[i];
        if c == b'\n' {
            line += 1;
            i += 1;
        } else if c.is_ascii_whitespace() {
            i += 1;
        } else if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if b[i] == b'\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if let Some(end) = raw_string_end(b, i) {
            line += b[i..end].iter().filter(|&&x| x == b'\n').count();
            i = end;
        } else if c == b'"' || (c == b'b' && b.get(i + 1) == Some(&b'"')) {
            i += if c == b'b' { 2 } else { 1 };
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                if i < b.len() && b[i] == b'\n' {
                    line += 1;
                }
                i += 1;
            }
            i += 1;
        } else if c == b'\'' || (c == b'b' && b.get(i + 1) == Some(&b'\'')) {
            // A char literal closes within a few bytes; a lifetime does not close.
            let start = if c == b'b' { i + 2 } else { i + 1 };
            let close = if b.get(start) == Some(&b'\\') {
                (start + 2..(start + 12).min(b.len())).find(|&j| b[j] == b'\'')
            } else {
                let ch_len = src[start..].chars().next().map_or(1, char::len_utf8);
                (b.get(start + ch_len) == Some(&b'\'')).then_some(start + ch_len)
            };
            match close {
                Some(j) => i = j + 1,
                None => {
                    i = start;
                    out.push(Token { tok: Tok::Punct('\''), line });
                }
            }
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b'$' {
            let start = i;
            i += 1;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let mut word = &src[start..i];
            if word == "r" && b.get(i) == Some(&b'#') {
                // A raw identifier, r#name.
                let s = i + 1;
                i = s;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                word = &src[s..i];
            }
            let word = word.strip_prefix('$').unwrap_or(word);
            out.push(Token { tok: Tok::Ident(word.to_string()), line });
        } else if c.is_ascii_digit() {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
        } else if b[i..].starts_with(b"::") {
            out.push(Token { tok: Tok::Colons, line });
            i += 2;
        } else {
            let ch = src[i..].chars().next().unwrap_or(' ');
            out.push(Token { tok: Tok::Punct(ch), line });
            i += ch.len_utf8();
        }
    }
    out
}

/// The end of a raw (byte) string starting at `i`, if one starts there.
fn raw_string_end(b: &[u8], i: usize) -> Option<usize> {
    if i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_') {
        return None;
    }
    let mut j = i;
    if b.get(j) == Some(&b'b') {
        j += 1;
    }
    if b.get(j) != Some(&b'r') {
        return None;
    }
    j += 1;
    let hashes = b[j..].iter().take_while(|&&x| x == b'#').count();
    j += hashes;
    if b.get(j) != Some(&b'"') {
        return None;
    }
    j += 1;
    while j < b.len() {
        if b[j] == b'"' && b[j + 1..].iter().take(hashes).filter(|&&x| x == b'#').count() == hashes {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(b.len())
}

fn ident(t: Option<&Token>) -> Option<&str> {
    match t {
        Some(Token { tok: Tok::Ident(s), .. }) => Some(s),
        _ => None,
    }
}

fn punct(t: Option<&Token>, c: char) -> bool {
    matches!(t, Some(Token { tok: Tok::Punct(p), .. }) if *p == c)
}

/// The index just past the bracket group opened at `open` (`{`, `[` or `(`).
fn group_end(toks: &[Token], open: usize) -> usize {
    let mut depth = 0i32;
    let mut i = open;
    while i < toks.len() {
        if let Tok::Punct(c) = toks[i].tok {
            if "{[(".contains(c) {
                depth += 1;
            } else if "}])".contains(c) {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
        }
        i += 1;
    }
    toks.len()
}

/// The attributes starting at a token (`#[...]` or `#![...]`): the index after them and
/// whether one is exactly `cfg(test)`.
struct Attrs {
    end: usize,
    cfg_test: bool,
}

fn attrs(toks: &[Token], mut i: usize) -> Attrs {
    let mut cfg_test = false;
    while punct(toks.get(i), '#') {
        let mut open = i + 1;
        if punct(toks.get(open), '!') {
            open += 1;
        }
        if !punct(toks.get(open), '[') {
            break;
        }
        let end = group_end(toks, open);
        let inner: Vec<&Tok> = toks[open + 1..end - 1].iter().map(|t| &t.tok).collect();
        if inner.len() == 4 && *inner[0] == Tok::Ident("cfg".into()) && *inner[2] == Tok::Ident("test".into())
        {
            cfg_test = true;
        }
        i = end;
    }
    Attrs { end: i, cfg_test }
}

/// The index just past the item starting at `i`: its first `;` or brace group at depth 0.
fn item_end(toks: &[Token], mut i: usize) -> usize {
    while i < toks.len() {
        match toks[i].tok {
            Tok::Punct(';') => return i + 1,
            Tok::Punct('{') => return group_end(toks, i),
            Tok::Punct('(') | Tok::Punct('[') => i = group_end(toks, i),
            _ => i += 1,
        }
    }
    toks.len()
}

/// One `use` leaf: the path as written and the name it binds (`None` for a glob).
struct UseLeaf {
    path: Vec<String>,
    name: Option<String>,
    line: usize,
    public: bool,
}

/// Expands a use tree starting at `i` (after `use`); returns the index after the `;`.
fn use_tree(toks: &[Token], mut i: usize, prefix: &[String], public: bool, out: &mut Vec<UseLeaf>) -> usize {
    let mut path = prefix.to_vec();
    loop {
        let line = toks.get(i).map_or(0, |t| t.line);
        if punct(toks.get(i), '{') {
            i += 1;
            while i < toks.len() && !punct(toks.get(i), '}') {
                i = use_tree(toks, i, &path, public, out);
                if punct(toks.get(i), ',') {
                    i += 1;
                }
            }
            return i + 1;
        }
        if punct(toks.get(i), '*') {
            out.push(UseLeaf { path: path.clone(), name: None, line, public });
            return i + 1;
        }
        let Some(seg) = ident(toks.get(i)) else { return i + 1 };
        path.push(seg.to_string());
        i += 1;
        if toks.get(i).map(|t| &t.tok) == Some(&Tok::Colons) {
            i += 1;
            continue;
        }
        let mut name = seg.to_string();
        if ident(toks.get(i)) == Some("as") {
            name = ident(toks.get(i + 1)).unwrap_or("_").to_string();
            i += 2;
        }
        if name == "self" {
            path.pop();
            name = path.last().cloned().unwrap_or_default();
        }
        out.push(UseLeaf { path, name: Some(name), line, public });
        return i;
    }
}

/// A qualified path seen in code (not in a `use`): its segments and line.
struct CodePath {
    segs: Vec<String>,
    line: usize,
}

/// What one file says: its module declarations, `use` leaves, qualified paths and
/// every identifier (to tell a re-export from a `use` the file also needs itself).
#[derive(Default)]
struct FileScan {
    /// (inline module path relative to the file, child name, path attribute, test only)
    mods: Vec<(Vec<String>, String, Option<String>, bool)>,
    uses: Vec<(Vec<String>, UseLeaf)>,
    paths: Vec<(Vec<String>, CodePath)>,
    idents: BTreeMap<String, usize>,
}

fn scan(src: &str) -> FileScan {
    let toks = lex(src);
    let mut s = FileScan::default();
    // Stack of (inline module name, token index where its block ends).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        while inline.last().is_some_and(|&(_, end)| i >= end) {
            inline.pop();
        }
        let here: Vec<String> = inline.iter().map(|(n, _)| n.clone()).collect();
        if punct(toks.get(i), '#') {
            let a = attrs(&toks, i);
            if a.cfg_test {
                // A test-only item: note a test module file, skip the item.
                let mut j = a.end;
                while matches!(ident(toks.get(j)), Some("pub")) {
                    j += 1;
                    if punct(toks.get(j), '(') {
                        j = group_end(&toks, j);
                    }
                }
                if ident(toks.get(j)) == Some("mod") && punct(toks.get(j + 2), ';') {
                    let name = ident(toks.get(j + 1)).unwrap_or_default().to_string();
                    s.mods.push((here.clone(), name, path_attr(src, &toks, i, a.end), true));
                }
                i = item_end(&toks, a.end);
                continue;
            }
            // Other attributes: read a `#[path]` for a following `mod x;`.
            let mut j = a.end;
            while matches!(ident(toks.get(j)), Some("pub")) {
                j += 1;
                if punct(toks.get(j), '(') {
                    j = group_end(&toks, j);
                }
            }
            if ident(toks.get(j)) == Some("mod") && punct(toks.get(j + 2), ';') {
                let name = ident(toks.get(j + 1)).unwrap_or_default().to_string();
                s.mods.push((here.clone(), name, path_attr(src, &toks, i, a.end), false));
                i = j + 3;
                continue;
            }
            i = a.end;
            continue;
        }
        match ident(toks.get(i)) {
            Some("mod") => {
                let name = ident(toks.get(i + 1)).unwrap_or_default().to_string();
                if punct(toks.get(i + 2), ';') {
                    s.mods.push((here.clone(), name, None, false));
                    i += 3;
                } else if punct(toks.get(i + 2), '{') {
                    inline.push((name, group_end(&toks, i + 2)));
                    i += 3;
                } else {
                    i += 1;
                }
                continue;
            }
            Some("use") => {
                let public = i > 0
                    && (ident(toks.get(i - 1)) == Some("pub")
                        || (punct(toks.get(i - 1), ')') && i >= 4 && ident(toks.get(i - 4)) == Some("pub")));
                let mut leaves = Vec::new();
                let mut j = i + 1;
                if toks.get(j).map(|t| &t.tok) == Some(&Tok::Colons) {
                    j += 1;
                }
                i = use_tree(&toks, j, &[], public, &mut leaves);
                for leaf in leaves {
                    s.uses.push((here.clone(), leaf));
                }
                continue;
            }
            Some(first) => {
                *s.idents.entry(first.to_string()).or_default() += 1;
                let after_colons = i > 0 && toks[i - 1].tok == Tok::Colons;
                if !after_colons && toks.get(i + 1).map(|t| &t.tok) == Some(&Tok::Colons) {
                    let line = toks[i].line;
                    let mut segs = vec![first.to_string()];
                    let mut j = i + 1;
                    while toks.get(j).map(|t| &t.tok) == Some(&Tok::Colons) {
                        match ident(toks.get(j + 1)) {
                            Some(seg) => {
                                segs.push(seg.to_string());
                                *s.idents.entry(seg.to_string()).or_default() += 1;
                                j += 2;
                            }
                            None => break,
                        }
                    }
                    s.paths.push((here.clone(), CodePath { segs, line }));
                    i = j;
                    continue;
                }
                i += 1;
            }
            None => i += 1,
        }
    }
    s
}

/// The string of a `#[path = "..."]` among the attributes between `from` and `to`.
fn path_attr(src: &str, toks: &[Token], from: usize, to: usize) -> Option<String> {
    let line = toks[from..to].iter().find(|t| t.tok == Tok::Ident("path".into()))?.line;
    let text = src.lines().nth(line - 1)?;
    let start = text.find('"')? + 1;
    let end = start + text[start..].find('"')?;
    Some(text[start..end].to_string())
}

/// The `May import:` clause of a file's leading `//!` doc: `None` if it has none,
/// otherwise the listed items or the words that are not a crate path or `nothing`.
fn may_import(src: &str) -> Option<Result<Vec<Vec<String>>, String>> {
    let doc: Vec<&str> = src
        .lines()
        .map(str::trim_start)
        .take_while(|l| l.starts_with("//!") || l.starts_with("#!") || l.is_empty())
        .filter_map(|l| l.strip_prefix("//!"))
        .map(str::trim)
        .collect();
    let start = doc.iter().position(|l| l.starts_with("May import:"))?;
    let mut clause = String::new();
    for l in &doc[start..] {
        clause.push(' ');
        clause.push_str(l);
        if l.contains('.') {
            break;
        }
    }
    let clause = clause.trim().trim_start_matches("May import:");
    let Some(list) = clause.split('.').next().filter(|_| clause.contains('.')) else {
        return Some(Err(format!("`May import:{clause}` does not end with a period")));
    };
    let mut items = Vec::new();
    for item in list.split(',').map(str::trim) {
        if item == "nothing" {
            continue;
        }
        let segs: Vec<String> = item.split("::").map(str::to_string).collect();
        let valid = segs.len() >= 2
            && segs[0] == "crate"
            && segs[1..]
                .iter()
                .all(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        if !valid {
            return Some(Err(format!(
                "`{item}` in the May import clause is neither `crate::path` nor `nothing`"
            )));
        }
        items.push(segs[1..].to_vec());
    }
    Some(Ok(items))
}

/// A module of the crate: the file that holds it and whether it is test code.
struct Module {
    file: String,
    test: bool,
}

/// Everything the check needs, read from a set of source files keyed by their path
/// relative to the crate root (`src/lib.rs`, ...).
struct Crate {
    modules: BTreeMap<Vec<String>, Module>,
    scans: BTreeMap<String, FileScan>,
    /// Each file's own module path (inline modules are part of the file).
    file_module: BTreeMap<String, Vec<String>>,
}

fn load(files: &BTreeMap<String, String>, problems: &mut Vec<String>) -> Crate {
    let mut c = Crate { modules: BTreeMap::new(), scans: BTreeMap::new(), file_module: BTreeMap::new() };
    // (module path, file, test only)
    let mut todo = vec![(Vec::<String>::new(), "src/lib.rs".to_string(), false)];
    while let Some((module, file, test)) = todo.pop() {
        let Some(src) = files.get(&file) else {
            problems.push(format!("module `crate::{}` has no file {file}", module.join("::")));
            continue;
        };
        let s = scan(src);
        let dir = Path::new(&file).parent().unwrap_or(Path::new("")).to_path_buf();
        let stem = Path::new(&file).file_stem().and_then(|x| x.to_str()).unwrap_or_default();
        let owns_dir = stem == "mod" || stem == "lib";
        for (inline, name, path, is_test) in &s.mods {
            let mut child = module.clone();
            child.extend(inline.iter().cloned());
            child.push(name.clone());
            let child_file = match path {
                Some(p) => dir.join(p),
                None => {
                    let mut base: PathBuf = if owns_dir { dir.clone() } else { dir.join(stem) };
                    for seg in inline {
                        base.push(seg);
                    }
                    let flat = base.join(format!("{name}.rs"));
                    if files.contains_key(&slash(&flat)) { flat } else { base.join(name).join("mod.rs") }
                }
            };
            todo.push((child, slash(&child_file), test || *is_test));
        }
        c.modules.insert(module.clone(), Module { file: file.clone(), test });
        // Inline modules live in the same file.
        let inlines: BTreeSet<Vec<String>> =
            s.uses.iter().map(|(m, _)| m.clone()).chain(s.paths.iter().map(|(m, _)| m.clone())).collect();
        for inline in inlines.into_iter().filter(|m| !m.is_empty()) {
            let mut m = module.clone();
            m.extend(inline);
            c.modules.entry(m).or_insert(Module { file: file.clone(), test });
        }
        c.file_module.insert(file.clone(), module);
        c.scans.insert(file, s);
    }
    c
}

fn slash(p: &Path) -> String {
    p.to_string_lossy().replace('\\', "/")
}

impl Crate {
    fn is_module(&self, m: &[String]) -> bool {
        self.modules.contains_key(m)
    }

    /// The absolute segments (without `crate`) of a path written in module `cur`, or
    /// `None` when it starts outside the crate (std, an external crate, a local item).
    fn absolute(&self, cur: &[String], segs: &[String]) -> Option<Vec<String>> {
        let (first, rest) = segs.split_first()?;
        match first.as_str() {
            "crate" => Some(rest.to_vec()),
            "self" => Some([cur, rest].concat()),
            "super" => {
                let mut base = cur.to_vec();
                base.pop()?;
                let mut rest = rest;
                while rest.first().map(String::as_str) == Some("super") {
                    base.pop()?;
                    rest = &rest[1..];
                }
                Some([&base[..], rest].concat())
            }
            _ => {
                let child = [cur, std::slice::from_ref(first)].concat();
                if self.is_module(&child) {
                    return Some([cur, segs].concat());
                }
                // A name bound by a `use` of this module or one around it (within the file).
                let mut scope = cur.to_vec();
                loop {
                    if let Some(bound) = self.binding(&scope, first) {
                        return Some([&bound[..], rest].concat());
                    }
                    let file = &self.modules.get(&scope)?.file;
                    if scope.is_empty() || self.file_module.get(file) == Some(&scope) {
                        return None;
                    }
                    scope.pop();
                }
            }
        }
    }

    /// What `use` in module `m` binds `name` to, resolved to an absolute path.
    fn binding(&self, m: &[String], name: &str) -> Option<Vec<String>> {
        let file = &self.modules.get(m)?.file;
        let scan = self.scans.get(file)?;
        let own = self.file_module.get(file)?;
        let inline = &m[own.len()..];
        let leaf = scan.uses.iter().find(|(at, l)| at == inline && l.name.as_deref() == Some(name))?;
        let first = leaf.1.path.first()?;
        if first == name && leaf.1.path.len() == 1 {
            return None;
        }
        match first.as_str() {
            "crate" | "self" | "super" => self.absolute(m, &leaf.1.path),
            _ => {
                let child = [m, std::slice::from_ref(first)].concat();
                self.is_module(&child).then(|| [m, &leaf.1.path[..]].concat())
            }
        }
    }

    /// The module an absolute path lands in, following re-exports: `Ok(module)` for a
    /// path naming an item of it, `Err(module)` when the path names the module itself.
    fn target(&self, abs: &[String]) -> Result<Vec<String>, Vec<String>> {
        let mut abs = abs.to_vec();
        for _ in 0..16 {
            let mut m = abs.len();
            while m > 0 && !self.is_module(&abs[..m]) {
                m -= 1;
            }
            if m == abs.len() {
                return Err(abs);
            }
            let module = abs[..m].to_vec();
            match self.binding(&module, &abs[m]) {
                Some(bound) if bound != abs[..=m] => abs = [&bound[..], &abs[m + 1..]].concat(),
                _ => return Ok(module),
            }
        }
        Ok(abs)
    }
}

/// Every problem found in the crate made of `files` (path → source).
fn check(files: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    let c = load(files, &mut problems);
    // file → (file it uses → where)
    let mut file_edges: BTreeMap<String, BTreeMap<String, Seen>> = BTreeMap::new();
    let mut top_edges: BTreeMap<String, BTreeMap<String, Seen>> = BTreeMap::new();
    for (file, module) in &c.file_module {
        let m = &c.modules[module];
        if m.test || file == "src/main.rs" {
            continue;
        }
        let src = &files[file];
        let before = problems.len();
        let allowed = match may_import(src) {
            None => {
                problems.push(format!("{file}: the module doc has no `May import:` clause"));
                Vec::new()
            }
            Some(Err(e)) => {
                problems.push(format!("{file}: {e}"));
                Vec::new()
            }
            Some(Ok(items)) => {
                for item in &items {
                    if !c.is_module(item) {
                        problems.push(format!(
                            "{file}: May import names `crate::{}`, which is not a module",
                            item.join("::")
                        ));
                    }
                }
                items
            }
        };
        let clause_ok = may_import(src).is_some_and(|r| r.is_ok());
        let scan = &c.scans[file];
        let mut used: Vec<(Vec<String>, Seen)> = Vec::new();
        for (inline, leaf) in &scan.uses {
            let cur = [&module[..], &inline[..]].concat();
            let Some(abs) = c.absolute(&cur, &leaf.path) else { continue };
            // A re-export the file does not use itself is no dependency of the file.
            if leaf.public
                && leaf.name.as_ref().is_some_and(|n| scan.idents.get(n).copied().unwrap_or(0) == 0)
            {
                continue;
            }
            let target = match c.target(&abs) {
                Ok(t) => t,
                Err(t) if leaf.name.is_none() => t,
                Err(_) => continue,
            };
            used.push((target, Seen { file: file.clone(), line: leaf.line, path: leaf.path.join("::") }));
        }
        for (inline, p) in &scan.paths {
            let cur = [&module[..], &inline[..]].concat();
            let Some(abs) = c.absolute(&cur, &p.segs) else { continue };
            if let Ok(target) = c.target(&abs) {
                used.push((target, Seen { file: file.clone(), line: p.line, path: p.segs.join("::") }));
            }
        }
        let mut needed: BTreeSet<Vec<String>> = BTreeSet::new();
        // The clause that would describe the file: each module it uses outside its own,
        // named one level below the part of the path the two share.
        let mut truth: BTreeSet<String> = BTreeSet::new();
        let mut refused: BTreeSet<Vec<String>> = BTreeSet::new();
        for (target, seen) in used {
            // A module of another layer is named by its top-level module (or anything
            // narrower); one of the file's own layer by the module just below the part of
            // the path the two share (a sibling, an aunt, ...), so that a file cannot
            // allow its whole layer at once.
            let common = target.iter().zip(module.iter()).take_while(|(a, b)| a == b).count();
            let depth = (common + 1).min(target.len());
            if !target.starts_with(module) {
                truth.insert(format!("crate::{}", target[..depth].join("::")));
            }
            let covers = |a: &&Vec<String>| target.starts_with(a) && a.len() >= depth;
            if target.starts_with(module) {
                // Its own module or one below it.
            } else if allowed.iter().any(|a| covers(&a)) {
                needed.extend(allowed.iter().filter(covers).cloned());
            } else if clause_ok && refused.insert(target.clone()) {
                // The first use of each module refused is enough to point at.
                problems.push(format!(
                    "{}:{}: `{}` uses `crate::{}`, which its May import clause does not allow{}",
                    seen.file,
                    seen.line,
                    seen.path,
                    target.join("::"),
                    match allowed.iter().find(|a| target.starts_with(a)) {
                        Some(a) => format!(
                            " (`crate::{}` is its own layer: name `crate::{}`)",
                            a.join("::"),
                            target[..depth].join("::")
                        ),
                        None => String::new(),
                    }
                ));
            }
            let Some(to) = c.modules.get(&target) else { continue };
            if to.test {
                continue;
            }
            if to.file != *file {
                file_edges
                    .entry(file.clone())
                    .or_default()
                    .entry(to.file.clone())
                    .or_insert_with(|| seen.clone());
            }
            if let (Some(a), Some(b)) = (module.first(), target.first())
                && a != b
            {
                top_edges.entry(a.clone()).or_default().entry(b.clone()).or_insert(seen);
            }
        }
        for item in &allowed {
            if c.is_module(item) && !needed.contains(item) {
                problems.push(format!(
                    "{file}: May import names `crate::{}`, which no use of the file needs",
                    item.join("::")
                ));
            }
        }
        if problems.len() > before {
            let truth: Vec<String> = truth.into_iter().collect();
            let truth = if truth.is_empty() { "nothing".to_string() } else { truth.join(", ") };
            problems.push(format!("{file}: what it uses: `May import: {truth}.`"));
        }
    }
    cycles("top-level modules", &top_edges, &mut problems);
    cycles("files", &file_edges, &mut problems);
    problems
}

/// Reports each strongly connected group of `edges` (Tarjan), with one loop through it.
fn cycles(what: &str, edges: &BTreeMap<String, BTreeMap<String, Seen>>, problems: &mut Vec<String>) {
    let nodes: BTreeSet<&String> = edges.keys().chain(edges.values().flat_map(|m| m.keys())).collect();
    let nodes: Vec<&String> = nodes.into_iter().collect();
    let index_of: BTreeMap<&String, usize> = nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let succ = |v: usize| -> Vec<usize> {
        edges.get(nodes[v]).map(|m| m.keys().map(|k| index_of[k]).collect()).unwrap_or_default()
    };
    let n = nodes.len();
    let (mut index, mut low, mut on) = (vec![usize::MAX; n], vec![0; n], vec![false; n]);
    let (mut stack, mut next, mut groups) = (Vec::new(), 0, Vec::new());
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        // Iterative Tarjan: (node, its successors, next successor to visit).
        let mut work = vec![(root, succ(root), 0usize)];
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on[root] = true;
        while let Some((v, ws, k)) = work.last_mut() {
            let v = *v;
            if *k < ws.len() {
                let w = ws[*k];
                *k += 1;
                if index[w] == usize::MAX {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on[w] = true;
                    work.push((w, succ(w), 0));
                } else if on[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some((u, _, _)) = work.last() {
                low[*u] = low[*u].min(low[v]);
            }
            if low[v] == index[v] {
                let mut group = Vec::new();
                while let Some(w) = stack.pop() {
                    on[w] = false;
                    group.push(w);
                    if w == v {
                        break;
                    }
                }
                if group.len() > 1 {
                    groups.push(group);
                }
            }
        }
    }
    for group in groups {
        let members: BTreeSet<usize> = group.iter().copied().collect();
        // Walk from the smallest member inside the group until a node repeats.
        let start = *members.iter().next().unwrap_or(&0);
        let mut path = vec![start];
        loop {
            let v = *path.last().unwrap_or(&start);
            let Some(w) = succ(v).into_iter().find(|w| members.contains(w)) else { break };
            if let Some(pos) = path.iter().position(|&p| p == w) {
                path.drain(..pos);
                path.push(w);
                break;
            }
            path.push(w);
        }
        let steps: Vec<String> = path
            .windows(2)
            .map(|p| {
                let s = &edges[nodes[p[0]]][nodes[p[1]]];
                format!("{} -> {} ({}:{} `{}`)", nodes[p[0]], nodes[p[1]], s.file, s.line, s.path)
            })
            .collect();
        let names: Vec<&str> = members.iter().map(|&g| nodes[g].as_str()).collect();
        problems.push(format!("cycle between {what} {{{}}}: {}", names.join(", "), steps.join("; ")));
    }
}

fn read_tree(root: &Path) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    let mut dirs = vec![root.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = slash(path.strip_prefix(root).expect("under the root"));
                let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {rel}: {e}"));
                files.insert(rel, text);
            }
        }
    }
    files
}

/// File cycles still open, none today. Each listed must still exist exactly as listed, so
/// the list only shrinks: a new cycle, or a listed one that grew, changed or went, fails
/// the test.
const PENDING_FILE_CYCLES: &[&str] = &[];

#[test]
fn every_module_keeps_to_its_may_import_clause_and_nothing_loops() {
    let files = read_tree(Path::new(env!("CARGO_MANIFEST_DIR")));
    assert!(files.len() > 50, "src/ was not read: {} files", files.len());
    let mut problems = check(&files);
    for pending in PENDING_FILE_CYCLES {
        let head = format!("cycle between files {{{pending}}}: ");
        let before = problems.len();
        problems.retain(|p| !p.starts_with(&head));
        if problems.len() == before {
            problems.push(format!(
                "the pending cycle {{{pending}}} is gone or changed: update PENDING_FILE_CYCLES"
            ));
        }
    }
    assert!(problems.is_empty(), "{} import problems:\n{}", problems.len(), problems.join("\n"));
}

// The checker on small crates made up here, each with one fault.

fn tree(files: &[(&str, &str)]) -> BTreeMap<String, String> {
    files.iter().map(|(p, s)| (p.to_string(), s.to_string())).collect()
}

/// The problems found, without the lines that only suggest a clause.
fn faults(files: &BTreeMap<String, String>) -> Vec<String> {
    check(files).into_iter().filter(|p| !p.contains(": what it uses: ")).collect()
}

const LIB: &str = "//! Map.\n//! May import: nothing.\npub mod a;\npub mod b;\n";

#[test]
fn a_clean_crate_passes() {
    let files = tree(&[
        ("src/lib.rs", LIB),
        (
            "src/a/mod.rs",
            "//! A.\n//! May import: crate::b.\nmod inner;\npub fn f() { crate::b::g(); inner::h(); }\n",
        ),
        (
            "src/a/inner.rs",
            "//! Inner.\n//! May import: crate::b::deep.\nuse crate::b::deep::T;\npub fn h() {}\n",
        ),
        (
            "src/b/mod.rs",
            "//! B.\n//! May import: nothing.\npub mod deep;\npub fn g() {}\n#[cfg(test)]\nmod tests { use crate::a::f; }\n",
        ),
        (
            "src/b/deep.rs",
            "//! Deep.\n//! May import: nothing.\npub struct T;\nconst S: &str = \"crate::a::f\"; // crate::a::f\n",
        ),
    ]);
    assert_eq!(faults(&files), Vec::<String>::new());
}

#[test]
fn a_file_without_the_clause_fails() {
    let files = tree(&[
        ("src/lib.rs", LIB),
        ("src/a.rs", "//! A, with no clause.\npub fn f() {}\n"),
        ("src/b.rs", "//! B.\n//! May import: nothing.\n"),
    ]);
    let problems = faults(&files);
    assert_eq!(problems, vec!["src/a.rs: the module doc has no `May import:` clause".to_string()]);
}

#[test]
fn a_clause_in_prose_fails() {
    let files = tree(&[
        ("src/lib.rs", LIB),
        ("src/a.rs", "//! A.\n//! May import: the codec and this layer.\n"),
        ("src/b.rs", "//! B.\n//! May import: nothing.\n"),
    ]);
    let problems = faults(&files);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("`the codec and this layer` in the May import clause"), "{problems:?}");
}

#[test]
fn an_import_the_clause_does_not_name_fails() {
    let files = tree(&[
        ("src/lib.rs", "//! Map.\n//! May import: nothing.\npub mod a;\npub mod b;\npub mod c;\n"),
        // `use crate::b;` only binds a name: the use is `b::g`, through it.
        (
            "src/a.rs",
            "//! A.\n//! May import: crate::c.\nuse crate::b;\nfn f() { crate::c::h(); b::g(); b::g(); }\n",
        ),
        ("src/b.rs", "//! B.\n//! May import: nothing.\npub fn g() {}\n"),
        ("src/c.rs", "//! C.\n//! May import: nothing.\npub fn h() {}\n"),
    ]);
    let problems = faults(&files);
    assert_eq!(
        problems,
        vec!["src/a.rs:4: `b::g` uses `crate::b`, which its May import clause does not allow".to_string()]
    );
    assert!(check(&files).contains(&"src/a.rs: what it uses: `May import: crate::b, crate::c.`".to_string()));
}

#[test]
fn a_clause_naming_what_is_not_used_or_not_there_fails() {
    let files = tree(&[
        ("src/lib.rs", LIB),
        ("src/a.rs", "//! A.\n//! May import: crate::b, crate::c.\n"),
        ("src/b.rs", "//! B.\n//! May import: nothing.\n"),
    ]);
    let problems = faults(&files);
    assert_eq!(
        problems,
        vec![
            "src/a.rs: May import names `crate::c`, which is not a module".to_string(),
            "src/a.rs: May import names `crate::b`, which no use of the file needs".to_string(),
        ]
    );
}

#[test]
fn a_cycle_between_top_level_modules_fails() {
    let files = tree(&[
        ("src/lib.rs", LIB),
        ("src/a/mod.rs", "//! A.\n//! May import: crate::b.\nmod x;\nmod y;\n"),
        ("src/a/x.rs", "//! X.\n//! May import: crate::b.\npub fn f() { crate::b::g() }\n"),
        ("src/a/y.rs", "//! Y.\n//! May import: nothing.\npub fn h() {}\n"),
        ("src/b.rs", "//! B.\n//! May import: crate::a.\npub fn g() { crate::a::y::h() }\n"),
    ]);
    let problems = faults(&files);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].starts_with("src/a/mod.rs: May import names `crate::b`, which no use of the file needs")
    );
    assert!(
        problems[1].starts_with("cycle between top-level modules {a, b}: a -> b (src/a/x.rs:3"),
        "{problems:?}"
    );
}

#[test]
fn a_cycle_between_files_fails_even_through_a_re_export() {
    let files = tree(&[
        ("src/lib.rs", "//! Map.\n//! May import: nothing.\npub mod a;\n"),
        ("src/a/mod.rs", "//! A.\n//! May import: nothing.\nmod x;\nmod y;\nmod z;\npub use self::z::Z;\n"),
        ("src/a/x.rs", "//! X.\n//! May import: crate::a::y.\nuse super::y::Y;\npub struct X(Y);\n"),
        ("src/a/y.rs", "//! Y.\n//! May import: crate::a::z.\npub struct Y(super::Z);\n"),
        ("src/a/z.rs", "//! Z.\n//! May import: crate::a::x.\npub struct Z(Box<crate::a::x::X>);\n"),
    ]);
    let problems = faults(&files);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("cycle between files {"), "{problems:?}");
    for step in ["src/a/x.rs -> src/a/y.rs", "src/a/y.rs -> src/a/z.rs", "src/a/z.rs -> src/a/x.rs"] {
        assert!(problems[0].contains(step), "{step} missing: {problems:?}");
    }
}

#[test]
fn a_clause_naming_its_whole_layer_fails() {
    let files = tree(&[
        ("src/lib.rs", "//! Map.\n//! May import: nothing.\npub mod a;\n"),
        ("src/a/mod.rs", "//! A.\n//! May import: nothing.\npub mod x;\npub mod y;\n"),
        ("src/a/x.rs", "//! X.\n//! May import: crate::a.\npub fn f() { super::y::g() }\n"),
        ("src/a/y.rs", "//! Y.\n//! May import: nothing.\npub fn g() {}\n"),
    ]);
    let problems = faults(&files);
    assert_eq!(
        problems,
        vec![
            "src/a/x.rs:3: `super::y::g` uses `crate::a::y`, which its May import clause does not allow \
             (`crate::a` is its own layer: name `crate::a::y`)"
                .to_string(),
            "src/a/x.rs: May import names `crate::a`, which no use of the file needs".to_string(),
        ]
    );
}
