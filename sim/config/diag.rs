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
    pub line: Option<usize>,
    pub column: Option<usize>,
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
            line: None,
            column: None,
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
        self.line = Some(line);
        self.column = Some(column);
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "error: bad input in {}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
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
    let mut m = msg.trim().to_string();
    if let Some(i) = m.rfind(" at line ") {
        if m[i + 9..].split_whitespace().nth(1) == Some("column") {
            m.truncate(i);
        }
    }
    if !path.is_empty() {
        if let Some(rest) = m.strip_prefix(&format!("{path}: ")) {
            m = rest.to_string();
        }
    }
    if let Some(rest) = m.strip_prefix("found ") {
        if let Some((a, b)) = rest.split_once(", expected ") {
            return (a.to_string(), b.to_string());
        }
    }
    if let Some(rest) = m.strip_prefix("unknown field ") {
        let (key, exp) = rest
            .split_once(", expected ")
            .unwrap_or((rest, "a known key"));
        let exp = exp
            .strip_prefix("one of ")
            .map(|e| format!("one of the keys {e}"));
        return (
            format!("the unknown key {key}"),
            exp.unwrap_or_else(|| "no keys here".into()),
        );
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
    fn split_known_shapes() {
        let (f, e) = split_message(
            "ep: invalid type: string \"x\", expected u32 at line 2 column 5",
            "ep",
        );
        assert_eq!((f.as_str(), e.as_str()), ("string \"x\"", "u32"));
        let (f, e) = split_message("missing field `gpu`", "");
        assert_eq!(
            (f.as_str(), e.as_str()),
            ("nothing", "the required key `gpu`")
        );
        let (f, _) = split_message("unknown field `tpp`, expected one of `tp`, `pp`", "");
        assert_eq!(f, "the unknown key `tpp`");
    }
}
