//! Diagnostics for bad input: which file, where in it, what was found, what was expected.
//!
//! Every user-caused problem becomes a [`Diagnostic`]; the CLI prints it and exits with code 2.

use std::fmt;

/// One problem in a user's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file (or `--set`, or `<embedded>/NAME` for compiled-in documents).
    pub file: String,
    /// Dotted path to the offending key, e.g. `parallelism.ep`, where known.
    pub path: Option<String>,
    /// 1-based line and column, where the parser knows them.
    pub position: Option<(u32, u32)>,
    pub found: String,
    pub expected: String,
}

impl Diagnostic {
    pub fn new(
        file: impl Into<String>,
        found: impl Into<String>,
        expected: impl Into<String>,
    ) -> Self {
        Diagnostic {
            file: file.into(),
            path: None,
            position: None,
            found: found.into(),
            expected: expected.into(),
        }
    }
    pub fn at(mut self, path: impl Into<String>) -> Self {
        let p = path.into();
        self.path = if p.is_empty() || p == "." {
            None
        } else {
            Some(p)
        };
        self
    }
    pub fn line(mut self, line: usize, column: usize) -> Self {
        self.position = Some((line as u32, column as u32));
        self
    }

    /// Fills in the line of `self.path` by finding its keys in the document text, for errors
    /// found after parsing (layouts, chips). Block and flow mappings and list items are followed.
    pub fn locate_in(mut self, text: &str) -> Self {
        if self.position.is_none() {
            if let Some((l, c)) = self.path.as_deref().and_then(|p| locate(text, p)) {
                self = self.line(l, c);
            }
        }
        self
    }
}

/// Removes the ` at line N column M` notes the YAML library puts into its messages.
fn strip_locations(msg: &str) -> String {
    let mut out = String::new();
    let mut rest = msg;
    while let Some(i) = rest.find(" at line ") {
        let tail = &rest[i + 9..];
        let words: Vec<&str> = tail.splitn(4, ' ').collect();
        let is_loc = words.len() >= 3
            && words[0].chars().all(|c| c.is_ascii_digit())
            && words[1] == "column";
        if !is_loc {
            out.push_str(&rest[..i + 9]);
            rest = tail;
            continue;
        }
        out.push_str(&rest[..i]);
        let num_len = words[2].chars().take_while(|c| c.is_ascii_digit()).count();
        let skip = words[0].len() + 1 + words[1].len() + 1 + num_len;
        rest = &tail[skip..];
    }
    out.push_str(rest);
    out
}

/// 1-based (line, column) of the key at dotted `path` in a YAML text, if it can be found.
pub fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let (mut from, mut min_indent, mut found) = (0usize, 0usize, None);
    for part in path.split('.') {
        if let Ok(idx) = part.parse::<usize>() {
            // The idx-th list item below the current key.
            let mut seen = 0;
            let mut hit = None;
            for (i, l) in lines.iter().enumerate().skip(from + 1) {
                let t = l.trim_start();
                if t.is_empty() || t.starts_with('#') {
                    continue;
                }
                if indent(l) < min_indent {
                    break;
                }
                if t.starts_with("- ") {
                    if seen == idx {
                        hit = Some(i);
                        break;
                    }
                    seen += 1;
                }
            }
            // A flow list (`[a, b]`) has no item lines: its key's line is the nearest.
            let Some(i) = hit else {
                return found;
            };
            found = Some((i + 1, indent(lines[i]) + 1));
            from = i;
            min_indent = indent(lines[i]);
            continue;
        }
        let mut hit = None;
        for (i, l) in lines.iter().enumerate().skip(from) {
            let t = l.trim_start();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            if i > from && indent(l) < min_indent {
                break;
            }
            if found.is_none() && indent(l) > 0 {
                continue; // the first key is a top-level one
            }
            let bytes = l.as_bytes();
            let mut start = 0;
            while let Some(pos) = l[start..].find(part) {
                let at = start + pos;
                let before_ok = at == 0 || matches!(bytes[at - 1], b' ' | b'{' | b',' | b'-');
                let after = l[at + part.len()..].trim_start();
                if before_ok && after.starts_with(':') {
                    hit = Some((i, at));
                    break;
                }
                start = at + part.len();
            }
            if hit.is_some() {
                break;
            }
        }
        let (i, col) = hit?;
        found = Some((i + 1, col + 1));
        from = i;
        min_indent = indent(lines[i]) + 1;
    }
    found
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "error: bad input in {}", self.file)?;
        if let Some((l, c)) = self.position {
            write!(f, ":{l}:{c}")?;
        }
        writeln!(f)?;
        if let Some(p) = &self.path {
            writeln!(f, "  at:       {p}")?;
        }
        writeln!(f, "  found:    {}", self.found)?;
        write!(f, "  expected: {}", self.expected)
    }
}

impl std::error::Error for Diagnostic {}

/// Splits a deserializer message into (found, expected), dropping a trailing location and a
/// leading path that the YAML library adds itself.
pub fn split_message(msg: &str, path: &str) -> (String, String) {
    let (found, expected) = split_raw(msg, path);
    (plain(&found), plain(&expected))
}

/// Rust's type names, as serde writes them, in words.
fn plain(s: &str) -> String {
    let mut out = s.to_string();
    for (rust, words) in [
        ("u8", "a whole number"),
        ("u16", "a whole number"),
        ("u32", "a whole number"),
        ("u64", "a whole number"),
        ("usize", "a whole number"),
        ("i32", "a whole number"),
        ("i64", "a whole number"),
        ("f32", "a number"),
        ("f64", "a number"),
        ("a boolean", "true or false"),
        ("a sequence", "a list"),
        ("a map", "a mapping"),
        ("a string", "text"),
    ] {
        if out == rust {
            return words.to_string();
        }
        out = out.replace(&format!("expected {rust}"), &format!("expected {words}"));
    }
    if out.starts_with("struct ") {
        return "a mapping of keys (see README: writing a topology / workload)".into();
    }
    if out.starts_with("enum ") {
        return "one of the values this key takes (see README)".into();
    }
    out
}

fn split_raw(msg: &str, path: &str) -> (String, String) {
    let mut m = strip_locations(msg.trim());
    if !path.is_empty() {
        if let Some(rest) = m.strip_prefix(&format!("{path}: ")) {
            m = rest.to_string();
        }
    }
    if let Some(rest) = m.strip_prefix("found ") {
        if let Some((a, b)) = rest.split_once(", expected ") {
            return (a.to_string(), b.to_string());
        }
        return (rest.to_string(), "well-formed YAML".into());
    }
    if let Some(rest) = m.strip_prefix("unknown field ") {
        let (key, exp) = rest
            .split_once(", expected ")
            .unwrap_or((rest, "a known key"));
        let exp = match exp.strip_prefix("one of ") {
            Some(e) => format!("one of the keys {e}"),
            None if exp.starts_with('`') => format!("the key {exp}"),
            None => "no keys here".into(),
        };
        let key = key.split(", there are no fields").next().unwrap_or(key);
        return (format!("the unknown key {key}"), exp);
    }
    if let Some(rest) = m.strip_prefix("unknown variant ") {
        let (v, exp) = rest
            .split_once(", expected ")
            .unwrap_or((rest, "a known value"));
        return (format!("the unknown value {v}"), exp.to_string());
    }
    if let Some(rest) = m.strip_prefix("missing field ") {
        return ("nothing".into(), format!("the required key {rest}"));
    }
    for pre in ["invalid type: ", "invalid value: ", "invalid length "] {
        if let Some(rest) = m.strip_prefix(pre) {
            if let Some((a, b)) = rest.split_once(", expected ") {
                return (a.to_string(), b.to_string());
            }
        }
    }
    if let Some((a, b)) = m.split_once(", expected ") {
        return (a.to_string(), b.to_string());
    }
    (
        m,
        "valid YAML for this document (see README: writing a topology / workload)".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_file_line_path_found_expected() {
        let d = Diagnostic::new("w.yaml", "7", "a divisor of 256")
            .at("parallelism.ep")
            .line(3, 5);
        let s = d.to_string();
        assert_eq!(
            s,
            "error: bad input in w.yaml:3:5\n  at:       parallelism.ep\n  found:    7\n  expected: a divisor of 256"
        );
    }

    #[test]
    fn locate_follows_nested_keys_lists_and_flow_maps() {
        let text = "a: 1\nparallelism:\n  ep: 64\ntraining:\n  phases:\n    - name: x\n    - name: y\n      parallelism: { cp: 2 }\n";
        assert_eq!(locate(text, "parallelism.ep"), Some((3, 3)));
        assert_eq!(
            locate(text, "training.phases.1.parallelism.cp"),
            Some((8, 22))
        );
        assert_eq!(locate(text, "training.phases.1"), Some((7, 5)));
        assert_eq!(locate(text, "nothing.here"), None);
    }

    /// Rust's type names never reach a user; a struct with one key names it.
    #[test]
    fn messages_speak_yaml_not_rust() {
        let (_, e) = split_message("invalid type: string \"x\", expected u32", "");
        assert_eq!(e, "a whole number");
        let (_, e) = split_message(
            "invalid type: integer `7`, expected struct ParallelismSpec",
            "",
        );
        assert!(!e.contains("ParallelismSpec"), "{e}");
        let (f, e) = split_message("unknown field `x`, expected `only`", "");
        assert_eq!(
            (f.as_str(), e.as_str()),
            ("the unknown key `x`", "the key `only`")
        );
        let (f, e) = split_message("unknown field `x`, there are no fields", "");
        assert_eq!(
            (f.as_str(), e.as_str()),
            ("the unknown key `x`", "no keys here")
        );
    }

    #[test]
    fn split_known_shapes() {
        let (f, e) = split_message(
            "ep: invalid type: string \"x\", expected u32 at line 2 column 5",
            "ep",
        );
        assert_eq!((f.as_str(), e.as_str()), ("string \"x\"", "a whole number"));
        let (f, e) = split_message("missing field `gpu`", "");
        assert_eq!(
            (f.as_str(), e.as_str()),
            ("nothing", "the required key `gpu`")
        );
        let (f, _) = split_message("unknown field `tpp`, expected one of `tp`, `pp`", "");
        assert_eq!(f, "the unknown key `tpp`");
    }
}
