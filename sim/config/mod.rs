//! Configuration: YAML documents → typed specs, with `--set` overrides and diagnostics.
//!
//! Parsing keeps the user's file, key path and line in every error ([`Diagnostic`]).
//! Semantic checks that need more than one document (chips, layouts) happen where the specs
//! are turned into validated domain objects (`topo`, `workload`).

pub mod diag;
pub mod export;
pub mod model;
pub mod pipeline_layout;
pub mod plan;
pub mod topology;
pub mod workload;

pub use diag::Diagnostic;

use serde::de::DeserializeOwned;
use serde_yaml::Value;
use std::path::PathBuf;

/// A document's text and where it came from.
#[derive(Debug, Clone)]
pub struct Source {
    /// What to call it in messages: a path, or `<embedded>/NAME`.
    pub name: String,
    pub text: String,
    /// Directory that relative paths inside the document are resolved against.
    pub dir: Option<PathBuf>,
}

impl Source {
    pub fn embedded(name: &str, text: &str) -> Source {
        Source {
            name: format!("<embedded>/{name}"),
            text: text.to_string(),
            dir: None,
        }
    }
}

/// One `--set DOC.PATH=VALUE` override.
/// A YAML value as one line of text: a string as written, anything else as YAML prints it.
pub fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .map(|t| t.trim().to_string())
            .unwrap_or_default(),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// `topology` or `workload`.
    pub doc: String,
    /// Dotted path inside the document; numeric parts index lists.
    pub path: Vec<String>,
    pub value: Value,
    /// The override as typed, for messages.
    pub raw: String,
}

impl Override {
    pub fn parse(raw: &str) -> Result<Override, Diagnostic> {
        let bad = |found: String| {
            Diagnostic::new(
                "--set",
                found,
                "DOC.PATH=VALUE with DOC `topology` or `workload`, e.g. workload.parallelism.ep=32",
            )
        };
        let (lhs, rhs) = raw
            .split_once('=')
            .ok_or_else(|| bad(format!("\"{raw}\" (no `=`)")))?;
        let mut parts: Vec<String> = lhs.trim().split('.').map(str::to_string).collect();
        if parts.len() < 2 || parts.iter().any(|p| p.is_empty()) {
            return Err(bad(format!("\"{raw}\"")));
        }
        let doc = parts.remove(0);
        if doc != "topology" && doc != "workload" {
            return Err(bad(format!("the document `{doc}` in \"{raw}\"")));
        }
        let value: Value = serde_yaml::from_str(rhs.trim())
            .map_err(|e| bad(format!("a value that is not YAML in \"{raw}\" ({e})")))?;
        Ok(Override {
            doc,
            path: parts,
            value,
            raw: raw.to_string(),
        })
    }

    /// An override of `path` (`DOC.PATH`) with a value already parsed, as a sweep axis or a
    /// preset gives it; `raw` is what messages show (e.g. `topology.gpu=H800`).
    pub fn with_value(path: &str, value: Value) -> Result<Override, Diagnostic> {
        let raw = format!("{path}={}", scalar_text(&value));
        let mut o = Override::parse(&format!("{path}=null")).map_err(|d| Diagnostic {
            found: format!("\"{raw}\""),
            ..d
        })?;
        o.value = value;
        o.raw = raw;
        Ok(o)
    }
}

/// Deserializes a document, applying the overrides aimed at it. Errors carry the file, the key
/// path and (when the text is parsed directly) the line.
pub fn parse_doc<T: DeserializeOwned>(
    src: &Source,
    overrides: &[&Override],
) -> Result<T, Diagnostic> {
    if overrides.is_empty() {
        let de = serde_yaml::Deserializer::from_str(&src.text);
        return serde_path_to_error::deserialize(de).map_err(|e| to_diag(&src.name, e));
    }
    let mut root: Value =
        serde_yaml::from_str(&src.text).map_err(|e| yaml_diag(&src.name, "", &e))?;
    for o in overrides {
        set_path(&mut root, &o.path)
            .map_err(|found| {
                Diagnostic::new(
                    "--set",
                    found,
                    "a path through mappings and list indices of the document",
                )
                .at(format!("{}.{}", o.doc, o.path.join(".")))
            })?
            .clone_from(&o.value);
    }
    let sets: Vec<&str> = overrides.iter().map(|o| o.raw.as_str()).collect();
    let name = format!("{} (with --set {})", src.name, sets.join(", "));
    serde_path_to_error::deserialize(root).map_err(|e| to_diag(&name, e))
}

/// Walks (creating mappings as needed) to the slot at `path`.
fn set_path<'a>(mut v: &'a mut Value, path: &[String]) -> Result<&'a mut Value, String> {
    for (i, key) in path.iter().enumerate() {
        if v.is_null() {
            *v = Value::Mapping(Default::default());
        }
        v = match v {
            Value::Mapping(m) => m.entry(Value::String(key.clone())).or_insert(Value::Null),
            Value::Sequence(s) => {
                let idx: usize = key.parse().map_err(|_| {
                    format!(
                        "`{key}` where a list index is needed at `{}`",
                        path[..i].join(".")
                    )
                })?;
                let len = s.len();
                s.get_mut(idx).ok_or_else(|| {
                    format!(
                        "index {idx} in a list of {len} at `{}`",
                        path[..i].join(".")
                    )
                })?
            }
            other => {
                return Err(format!(
                    "a scalar ({}) at `{}`, which has no key `{key}`",
                    scalar_text(other),
                    path[..i].join(".")
                ))
            }
        };
    }
    Ok(v)
}

fn yaml_diag(file: &str, path: &str, e: &serde_yaml::Error) -> Diagnostic {
    let (found, expected) = diag::split_message(&e.to_string(), path);
    let mut d = Diagnostic::new(file, found, expected).at(path);
    if let Some(loc) = e.location() {
        d = d.line(loc.line(), loc.column());
    }
    d
}

fn to_diag(file: &str, e: serde_path_to_error::Error<serde_yaml::Error>) -> Diagnostic {
    let path = e.path().to_string();
    yaml_diag(file, &path, e.inner())
}
