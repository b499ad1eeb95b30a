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
pub mod reliability;
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

/// The largest document trainsim reads (bytes).
pub const MAX_INPUT_BYTES: usize = 16 << 20;
/// The deepest nesting of mappings and lists a document may have.
pub const MAX_DEPTH: usize = 64;
/// The most alias references (`*name`) a document may hold.
pub const MAX_ALIASES: usize = 256;

/// Limits checked on a document's text before the YAML parser sees it: its size, how deep its
/// flow collections nest and how far its lines are indented (block nesting), and how many
/// aliases it uses (each one a copy of what it names).
fn check_text(src: &Source) -> Result<(), Diagnostic> {
    let t = &src.text;
    let d = |found: String, expected: String| Diagnostic::new(&src.name, found, expected);
    if t.len() > MAX_INPUT_BYTES {
        return Err(d(
            format!("a document of {} bytes", t.len()),
            format!("at most {} MiB", MAX_INPUT_BYTES >> 20),
        ));
    }
    let (mut depth, mut deepest, mut aliases) = (0usize, (0usize, 0usize), 0usize);
    for (i, line) in t.lines().enumerate() {
        let indent = line.len() - line.trim_start_matches([' ', '-']).len();
        if indent / 2 > MAX_DEPTH && !line.trim().is_empty() {
            return Err(d(
                format!("a line indented {indent} columns"),
                format!("at most {MAX_DEPTH} levels of nesting"),
            )
            .line(i + 1, 1));
        }
        let mut quoted: Option<char> = None;
        for c in line.chars() {
            match (quoted, c) {
                (Some(q), c) if c == q => quoted = None,
                (Some(_), _) => {}
                (None, '"' | '\'') => quoted = Some(c),
                (None, '#') => break,
                (None, '[' | '{') => {
                    depth += 1;
                    if depth > deepest.0 {
                        deepest = (depth, i + 1);
                    }
                }
                (None, ']' | '}') => depth = depth.saturating_sub(1),
                (None, '*') => aliases += 1,
                _ => {}
            }
        }
    }
    if deepest.0 > MAX_DEPTH {
        return Err(d(
            format!("lists or mappings nested {} deep", deepest.0),
            format!("at most {MAX_DEPTH} levels of nesting"),
        )
        .line(deepest.1, 1));
    }
    if aliases > MAX_ALIASES {
        return Err(d(
            format!("{aliases} aliases (`*name`)"),
            format!("at most {MAX_ALIASES} aliases in one document"),
        ));
    }
    Ok(())
}

/// The numbers trainsim accepts under each key, wherever it appears (its last key, or its last
/// two for a calibration constant's `value`): (key, least, most). Outside these the simulation
/// would overflow, run for hours or mean nothing; README lists them as limits.
pub const LIMITS: &[(&str, f64, f64)] = &[
    // workload: sizes and counts
    ("seq_len", 1.0, 16_777_216.0),
    ("global_batch", 1.0, 1e8),
    ("from", 1.0, 1e8),
    ("micro_batch", 1.0, 1e6),
    ("tp", 1.0, 65_536.0),
    ("pp", 1.0, 65_536.0),
    ("ep", 1.0, 65_536.0),
    ("cp", 1.0, 65_536.0),
    ("vpp", 1.0, 1_024.0),
    ("comm_sms", 0.0, 1_024.0),
    ("recompute_num_layers", 1.0, 10_000.0),
    ("num_layers_in_first_pipeline_stage", 0.0, 10_000.0),
    ("num_layers_in_last_pipeline_stage", 0.0, 10_000.0),
    ("alpha", 1e-12, 1e6),
    ("pue", 1.0, 10.0),
    ("reported_gpu_hours", 0.0, 1e12),
    ("moe_expert_capacity_factor", 1e-3, 1e3),
    // workload: reliability
    ("failures_per_gpu_hour.gpu", 0.0, 1.0),
    ("failures_per_gpu_hour.hbm", 0.0, 1.0),
    ("failures_per_gpu_hour.nvlink", 0.0, 1.0),
    ("failures_per_gpu_hour.network", 0.0, 1.0),
    ("failures_per_gpu_hour.host", 0.0, 1.0),
    ("failures_per_gpu_hour.software", 0.0, 1.0),
    ("failures_per_gpu_hour.planned", 0.0, 1.0),
    ("failure_rate_scale", 0.0, 1e6),
    ("weibull_shape", 0.05, 20.0),
    ("stragglers.fraction", 0.0, 1.0),
    ("stragglers.slowdown", 0.0, 100.0),
    // model (Hugging Face names)
    ("hidden_size", 1.0, 1_048_576.0),
    ("num_hidden_layers", 1.0, 10_000.0),
    ("num_attention_heads", 1.0, 65_536.0),
    ("num_key_value_heads", 1.0, 65_536.0),
    ("head_dim", 1.0, 65_536.0),
    ("intermediate_size", 1.0, 16_777_216.0),
    ("vocab_size", 1.0, 1e8),
    ("n_routed_experts", 0.0, 65_536.0),
    ("n_shared_experts", 0.0, 1_024.0),
    ("num_experts_per_tok", 0.0, 1_024.0),
    ("moe_intermediate_size", 0.0, 16_777_216.0),
    ("shared_expert_intermediate_size", 0.0, 16_777_216.0),
    ("first_k_dense_replace", 0.0, 10_000.0),
    ("moe_layer_freq", 1.0, 10_000.0),
    ("n_group", 0.0, 65_536.0),
    ("topk_group", 0.0, 65_536.0),
    ("num_nextn_predict_layers", 0.0, 64.0),
    ("max_position_embeddings", 1.0, 1e9),
    ("hidden_dropout", 0.0, 1.0),
    ("attention_dropout", 0.0, 1.0),
    // topology
    ("nodes", 1.0, 1_048_576.0),
    ("gpus_per_node", 1.0, 1_024.0),
    ("nics_per_node", 1.0, 1_024.0),
    ("planes", 1.0, 1_024.0),
    ("switch_radix", 2.0, 65_536.0),
    ("spine_radix", 2.0, 65_536.0),
    ("pod_nodes", 1.0, 1_048_576.0),
    ("ecmp_flows", 1.0, 1_024.0),
    ("oversubscription", 0.01, 1e4),
    ("pod_oversubscription", 0.01, 1e4),
    // plan
    ("amortization_years", 1e-3, 100.0),
    ("max_gpus", 1.0, 1e8),
    ("max_tp", 1.0, 65_536.0),
    ("max_cp", 1.0, 65_536.0),
    // calibration
    ("nccl_max_channels.value", 1.0, 64.0),
];

/// A limit as messages write it: `1e-12`, `100000000` as `1e8`, `16777216` as it is.
fn limit_text(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-3 || (v.abs() >= 1e7 && v.fract() == 0.0 && v % 1e6 == 0.0)) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

/// The key path of the first number that is not finite (`.nan`, `.inf`) or outside its key's
/// [`LIMITS`] in `v`, and what it should be.
fn out_of_range(v: &Value, path: &mut Vec<String>) -> Option<(String, String, String)> {
    match v {
        Value::Number(n) => {
            let f = n.as_f64()?;
            if !f.is_finite() {
                return Some((
                    path.join("."),
                    "a number that is not finite (.nan or .inf)".into(),
                    "a finite number".into(),
                ));
            }
            let last = path.last()?;
            let two = (path.len() >= 2).then(|| path[path.len() - 2..].join("."));
            let (key, lo, hi) = LIMITS
                .iter()
                .find(|(k, _, _)| k == last || two.as_deref() == Some(*k))?;
            (f < *lo || f > *hi).then(|| {
                (
                    path.join("."),
                    scalar_text(v),
                    format!(
                        "a value from {} to {} (trainsim's limit on `{key}`)",
                        limit_text(*lo),
                        limit_text(*hi)
                    ),
                )
            })
        }
        Value::Mapping(m) => m.iter().find_map(|(k, v)| {
            path.push(scalar_text(k));
            let r = out_of_range(v, path);
            path.pop();
            r
        }),
        Value::Sequence(s) => s.iter().enumerate().find_map(|(i, v)| {
            path.push(i.to_string());
            let r = out_of_range(v, path);
            path.pop();
            r
        }),
        Value::Tagged(t) => out_of_range(&t.value, path),
        _ => None,
    }
}

/// Deserializes a document, applying the overrides aimed at it. Errors carry the file, the key
/// path and (when the text is parsed directly) the line.
pub fn parse_doc<T: DeserializeOwned>(
    src: &Source,
    overrides: &[&Override],
) -> Result<T, Diagnostic> {
    check_text(src)?;
    let mut root: Value = serde_yaml::from_str(&src.text).map_err(|e| syntax_diag(src, &e))?;
    let finite =
        |root: &Value, name: &str, text: Option<&str>| match out_of_range(root, &mut Vec::new()) {
            None => Ok(()),
            Some((at, found, expected)) => {
                let d = Diagnostic::new(name, found, expected).at(at);
                Err(match text {
                    Some(t) => d.locate_in(t),
                    None => d,
                })
            }
        };
    if overrides.is_empty() {
        finite(&root, &src.name, Some(&src.text))?;
        let de = serde_yaml::Deserializer::from_str(&src.text);
        return serde_path_to_error::deserialize(de).map_err(|e| to_diag(&src.name, e));
    }
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
    finite(&root, &src.name, None).map_err(|d| attribute(d, src, overrides))?;
    serde_path_to_error::deserialize(root)
        .map_err(|e| attribute(to_diag(&src.name, e), src, overrides))
}

/// A diagnostic about `src` with overrides applied: blamed on the `--set` whose path holds the
/// offending key (or lies under it), else located at the key's line in the file.
pub fn attribute(d: Diagnostic, src: &Source, overrides: &[&Override]) -> Diagnostic {
    if d.file != src.name {
        return d;
    }
    let under = |a: &str, b: &str| {
        a == b || a.starts_with(&format!("{b}.")) || a.starts_with(&format!("{b}["))
    };
    let path = d.path.clone().unwrap_or_default();
    // serde_path_to_error writes list indices as `a[1]`; --set paths as `a.1`.
    let dotted = path.replace('[', ".").replace(']', "");
    match overrides.iter().rev().find(|o| {
        let p = o.path.join(".");
        !dotted.is_empty() && (under(&dotted, &p) || under(&p, &dotted))
    }) {
        Some(o) => Diagnostic {
            file: format!("--set {}", o.raw),
            position: None,
            found: format!("{} (from --set)", d.found),
            ..d
        },
        None => {
            let text = &src.text;
            Diagnostic {
                position: None,
                ..d
            }
            .locate_in(text)
        }
    }
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

/// A document that does not parse as YAML: where, and what the parser found, in words.
fn syntax_diag(src: &Source, e: &serde_yaml::Error) -> Diagnostic {
    let d = yaml_diag(&src.name, "", e);
    let msg = e.to_string();
    if let Some(rest) = msg.strip_prefix("duplicate entry with key \"") {
        // The parser points at the mapping; the second occurrence is the mistake.
        let key = rest.split('"').next().unwrap_or_default();
        let lines: Vec<&str> = src.text.lines().collect();
        let start = d.position.map_or(0, |(l, _)| l as usize - 1);
        let hits: Vec<(usize, usize)> = lines
            .iter()
            .enumerate()
            .skip(start)
            .filter_map(|(i, l)| {
                let t = l.trim_start();
                (t.starts_with(&format!("{key}:")) || t.starts_with(&format!("\"{key}\":")))
                    .then(|| (i + 1, l.len() - t.len() + 1))
            })
            .collect();
        let mut d = Diagnostic {
            found: format!("the key `{key}` a second time"),
            expected: "each key once in a mapping".into(),
            ..d
        };
        if let Some(&(l, c)) = hits.get(1) {
            d = d.line(l, c);
        }
        return d;
    }
    if msg.contains("repetition limit exceeded") || msg.contains("recursion limit exceeded") {
        return Diagnostic {
            found: "aliases or nesting that expand past the YAML parser's limits".into(),
            expected: "a document without alias bombs or runaway nesting".into(),
            ..d
        };
    }
    d
}

fn yaml_diag(file: &str, path: &str, e: &serde_yaml::Error) -> Diagnostic {
    let msg = e.to_string();
    let (found, expected) = diag::split_message(&msg, path);
    // A missing key is named by its own path (below the mapping that lacks it).
    let missing = msg
        .split("missing field `")
        .nth(1)
        .and_then(|r| r.split('`').next());
    let full = match missing {
        Some(k) if path.is_empty() || path == "." => k.to_string(),
        Some(k) => format!("{path}.{k}"),
        None => path.to_string(),
    };
    let mut d = Diagnostic::new(file, found, expected).at(full);
    if let Some(loc) = e.location() {
        d = d.line(loc.line(), loc.column());
    }
    d
}

fn to_diag(file: &str, e: serde_path_to_error::Error<serde_yaml::Error>) -> Diagnostic {
    let path = e.path().to_string();
    yaml_diag(file, &path, e.inner())
}
