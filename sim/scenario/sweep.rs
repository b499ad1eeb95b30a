//! `trainsim sweep`: one scenario run at every point of a grid of overrides.
//!
//! An axis is a `--set` path with a list or range of values, or a named axis whose values each
//! set several paths (a chip preset). Axes combine as a Cartesian product (the last axis varies
//! fastest) or element-wise (`zip`). Every value is checked against the base documents before
//! any point runs, so a bad path or value is a diagnostic (exit 2), not a failed row; a point
//! that cannot run (memory, an indivisible layout) becomes a row with its reason.
//!
//! Points run in parallel across points, never inside one, and the rows keep the points' order,
//! so output is the same at any thread count. A shard (`K/N`) runs the points whose index is
//! `K-1` modulo `N`; shards merge back into exactly the rows one run writes.

use crate::config::topology::TopologySpec;
use crate::config::workload::WorkloadSpec;
use crate::config::{parse_doc, Diagnostic, Override, Source};
use crate::hw::Calibration;
use crate::pipeline::{self, Engine};
pub use crate::report::sweep::{Meta, Metrics, Row};
use rayon::prelude::*;
use serde::Deserialize;
use serde_yaml::Value;

/// One value of an axis: its label and the overrides it applies.
#[derive(Debug, Clone)]
pub struct AxisValue {
    pub label: String,
    /// The value as a number (in its own unit), where it is one: for plotting.
    pub number: Option<f64>,
    pub sets: Vec<Override>,
}

#[derive(Debug, Clone)]
pub struct Axis {
    /// The path it sets, or its name for a preset axis.
    pub name: String,
    pub values: Vec<AxisValue>,
}

/// The sweep file (`trainsim sweep FILE.yaml`). Paths inside are relative to the working
/// directory, as on the command line.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepFile {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub topology: Option<String>,
    #[serde(default)]
    pub workload: Option<String>,
    /// Overrides applied at every point.
    #[serde(default)]
    pub set: Vec<String>,
    #[serde(default)]
    pub engine: Option<EngineSpec>,
    #[serde(default)]
    pub zip: bool,
    pub axes: Vec<AxisSpec>,
    /// Metrics to plot (default: step time, GPU-hours, dollars).
    #[serde(default)]
    pub plot: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineSpec {
    Analytic,
    Des,
}

/// One axis of a sweep file: `path` with `values` ("a,b,c", "50 GB/s..800 GB/s x2", or a list
/// of scalars), or `name` with a list of presets `{label, set: {PATH: VALUE, ...}}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AxisSpec {
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    pub values: ValuesSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ValuesSpec {
    Text(String),
    List(Vec<Value>),
}

/// `(prefix, number, suffix)` of a value with units, e.g. "$1.5" or "400 Gb/s".
fn split_number(s: &str) -> Option<(String, f64, String)> {
    let s = s.trim();
    let start = s.find(|c: char| c.is_ascii_digit() || c == '.')?;
    let rest = &s[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == 'e' || c == 'E'))
        .unwrap_or(rest.len());
    // "1e" followed by a unit letter: the `e` belongs to the unit.
    let (mut num, mut unit) = (&rest[..end], &rest[end..]);
    while num.ends_with(['e', 'E']) {
        num = &num[..num.len() - 1];
        unit = &rest[num.len()..];
    }
    let v: f64 = num.parse().ok()?;
    Some((s[..start].to_string(), v, unit.trim().to_string()))
}

/// A number as a sweep label: no trailing zeros, at most 6 significant digits.
pub fn fmt_number(v: f64) -> String {
    if v == v.round() && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    let digits = (6 - v.abs().log10().floor() as i32 - 1).clamp(0, 12) as usize;
    let s = format!("{v:.digits$}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The unit an axis's values share ("GB/s bidirectional", "$"), where every value is a number
/// written with the same prefix and suffix: for plot labels.
pub fn unit(axis: &Axis) -> Option<String> {
    let parts: Vec<(String, String)> = axis
        .values
        .iter()
        .map(|v| split_number(&v.label).map(|(p, _, u)| (p, u)))
        .collect::<Option<_>>()?;
    let first = parts.first()?.clone();
    if parts.iter().any(|p| *p != first) {
        return None;
    }
    match first {
        (p, u) if !u.is_empty() => Some(if p.is_empty() { u } else { format!("{p}, {u}") }),
        (p, _) if !p.is_empty() => Some(p),
        _ => None,
    }
}

/// The most values one axis may have.
const MAX_VALUES: usize = 10_000;

/// Parses an axis's VALUES text for `path`: a range `START..END xF` / `START..END +STEP` (units
/// and currency signs kept), or a comma-separated list. Returns (label, YAML value, number).
pub fn parse_values(
    text: &str,
    path: &str,
) -> Result<Vec<(String, Value, Option<f64>)>, Diagnostic> {
    let bad = |found: String, expected: &str| {
        Diagnostic::new("--axis", found, expected.to_string()).at(path.to_string())
    };
    if let Some((a, rest)) = text.split_once("..") {
        let rest = rest.trim();
        // The step: the last " x…" or " +…" whose next character starts a number or a sign.
        let at = rest
            .match_indices(' ')
            .map(|(i, _)| i)
            .rfind(|&i| {
                let t = &rest[i + 1..];
                (t.starts_with('x') || t.starts_with('+'))
                    && t[1..]
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_digit() || c == '.' || !c.is_alphanumeric())
            })
            .ok_or_else(|| {
                bad(
                    format!("\"{text}\" (a range without a step)"),
                    "START..END xFACTOR or START..END +STEP, e.g. \"50 Gb/s..800 Gb/s x2\" or \"$1..$4 +$0.5\"",
                )
            })?;
        let (b, step) = (rest[..at].trim(), rest[at + 1..].trim());
        let unit_err = || {
            bad(
                format!("\"{text}\""),
                "a range whose start, end and step carry the same unit, e.g. \"50 GB/s..900 GB/s +50 GB/s\"",
            )
        };
        let (pa, va, ua) = split_number(a).ok_or_else(unit_err)?;
        let (pb, vb, ub) = split_number(b).ok_or_else(unit_err)?;
        if (pa.as_str(), ua.as_str()) != (pb.as_str(), ub.as_str()) {
            return Err(unit_err());
        }
        let (mul, add) = if let Some(f) = step.strip_prefix('x') {
            let f: f64 = f
                .trim()
                .parse()
                .map_err(|_| bad(format!("the step \"{step}\""), "xFACTOR with FACTOR > 1"))?;
            (f, 0.0)
        } else {
            let d = step.trim_start_matches('+');
            let (pd, vd, ud) = split_number(d).ok_or_else(unit_err)?;
            // The step may drop the range's qualifier: "+10 GB/s" steps "… GB/s bidirectional".
            if !(pd.is_empty() || pd == pa) || !(ud.is_empty() || ua.starts_with(ud.as_str())) {
                return Err(unit_err());
            }
            (1.0, vd)
        };
        if !(va.is_finite() && vb.is_finite() && va > 0.0 || add > 0.0 && va >= 0.0)
            || vb < va
            || !(mul > 1.0 || add > 0.0)
        {
            return Err(bad(
                format!("\"{text}\""),
                "a range that grows from START to END (START ≤ END, a factor above 1 or a positive step)",
            ));
        }
        let mut out = Vec::new();
        let mut v = va;
        let mut k = 0u32;
        while v <= vb * (1.0 + 1e-9) {
            let label = if ua.is_empty() {
                format!("{pa}{}", fmt_number(v))
            } else {
                format!("{pa}{} {ua}", fmt_number(v))
            };
            let value = if pa.is_empty() && ua.is_empty() {
                serde_yaml::from_str(&label).unwrap_or(Value::String(label.clone()))
            } else {
                Value::String(label.clone())
            };
            out.push((label, value, Some(v)));
            if out.len() > MAX_VALUES {
                return Err(bad(
                    format!("\"{text}\" (more than {MAX_VALUES} values)"),
                    "a coarser step",
                ));
            }
            k += 1;
            // Steps from the start, not accumulated: 0.1 + 0.1 + 0.1 stays 0.3.
            v = if add > 0.0 {
                va + add * k as f64
            } else {
                va * mul.powi(k as i32)
            };
        }
        return Ok(out);
    }
    let items: Vec<&str> = text.split(',').map(str::trim).collect();
    if items.iter().any(|i| i.is_empty()) {
        return Err(bad(
            format!("\"{text}\""),
            "comma-separated values, e.g. \"100 GB/s,200 GB/s\"",
        ));
    }
    items
        .into_iter()
        .map(|i| {
            let v: Value = serde_yaml::from_str(i).unwrap_or(Value::String(i.to_string()));
            Ok((i.to_string(), v, split_number(i).map(|(_, n, _)| n)))
        })
        .collect()
}

/// An inline `--axis PATH=VALUES`.
pub fn inline_axis(arg: &str) -> Result<Axis, Diagnostic> {
    let (path, values) = arg.split_once('=').ok_or_else(|| {
        Diagnostic::new(
            "--axis",
            format!("\"{arg}\" (no `=`)"),
            "PATH=VALUES, e.g. topology.scale_up.bandwidth=\"100 GB/s,200 GB/s\"",
        )
    })?;
    axis_from_text(path.trim(), values.trim())
}

fn axis_from_text(path: &str, text: &str) -> Result<Axis, Diagnostic> {
    let values = parse_values(text, path)?
        .into_iter()
        .map(|(label, v, number)| {
            Ok(AxisValue {
                label,
                number,
                sets: vec![Override::with_value(path, v)?],
            })
        })
        .collect::<Result<Vec<_>, Diagnostic>>()?;
    Ok(Axis {
        name: path.to_string(),
        values,
    })
}

/// The axes of a sweep file (`file` names it in messages).
pub fn file_axes(f: &SweepFile, file: &str) -> Result<Vec<Axis>, Diagnostic> {
    let mut axes = Vec::new();
    for (i, a) in f.axes.iter().enumerate() {
        let at = format!("axes.{i}");
        let bad = |found: String, expected: &str| {
            Diagnostic::new(file, found, expected.to_string()).at(at.clone())
        };
        match (&a.path, &a.name, &a.values) {
            (Some(path), None, ValuesSpec::Text(t)) => axes.push(axis_from_text(path, t)?),
            (Some(path), None, ValuesSpec::List(l)) => {
                let values = l
                    .iter()
                    .map(|v| {
                        let label = crate::config::scalar_text(v);
                        Ok(AxisValue {
                            number: split_number(&label).map(|(_, n, _)| n),
                            label,
                            sets: vec![Override::with_value(path, v.clone())?],
                        })
                    })
                    .collect::<Result<Vec<_>, Diagnostic>>()?;
                axes.push(Axis {
                    name: path.clone(),
                    values,
                });
            }
            (None, Some(name), ValuesSpec::List(l)) => {
                let mut values = Vec::new();
                for (j, v) in l.iter().enumerate() {
                    let preset: Preset = serde_yaml::from_value(v.clone()).map_err(|e| {
                        bad(
                            format!("values.{j}: {e}"),
                            "a preset {label: NAME, set: {DOC.PATH: VALUE, ...}}",
                        )
                    })?;
                    let sets = preset
                        .set
                        .iter()
                        .map(|(p, v)| {
                            Override::with_value(&crate::config::scalar_text(p), v.clone())
                        })
                        .collect::<Result<Vec<_>, Diagnostic>>()?;
                    values.push(AxisValue {
                        label: preset.label,
                        number: None,
                        sets,
                    });
                }
                axes.push(Axis {
                    name: name.clone(),
                    values,
                });
            }
            _ => return Err(bad(
                "an axis that is neither `path` with `values` nor `name` with a list of presets"
                    .into(),
                "path: DOC.PATH with values: \"...\", or name: NAME with values: [{label, set}]",
            )),
        }
    }
    Ok(axes)
}

/// A named value of a preset axis.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Preset {
    label: String,
    /// `DOC.PATH: VALUE` pairs, applied in order.
    set: serde_yaml::Mapping,
}

/// One point of the grid.
#[derive(Debug, Clone)]
pub struct Point {
    pub index: usize,
    /// Index of its value on each axis.
    pub at: Vec<usize>,
}

/// The points of `axes`: the Cartesian product (last axis fastest), or element-wise (`zip`).
pub fn points(axes: &[Axis], zip: bool) -> Result<Vec<Point>, Diagnostic> {
    if axes.is_empty() || axes.iter().any(|a| a.values.is_empty()) {
        return Err(Diagnostic::new(
            "--axis",
            "no axis, or an axis without values",
            "at least one axis with at least one value",
        ));
    }
    if zip {
        let n = axes[0].values.len();
        if let Some(a) = axes.iter().find(|a| a.values.len() != n) {
            return Err(Diagnostic::new(
                "--zip",
                format!(
                    "axis {} with {} values beside {} with {n}",
                    a.name,
                    a.values.len(),
                    axes[0].name
                ),
                "axes of the same length (or no --zip for their product)",
            ));
        }
        return Ok((0..n)
            .map(|i| Point {
                index: i,
                at: vec![i; axes.len()],
            })
            .collect());
    }
    let total: usize = axes.iter().map(|a| a.values.len()).product();
    Ok((0..total)
        .map(|index| {
            let mut rest = index;
            let mut at = vec![0; axes.len()];
            for (k, a) in axes.iter().enumerate().rev() {
                at[k] = rest % a.values.len();
                rest /= a.values.len();
            }
            Point { index, at }
        })
        .collect())
}

/// Checks every axis value against the base documents: paths exist, values have the right type
/// and unit. Problems that need the whole point (memory, layouts) are left to the point.
pub fn check(
    axes: &[Axis],
    topology: &Source,
    workload: &Source,
    base: &[Override],
) -> Result<(), Diagnostic> {
    for a in axes {
        for v in &a.values {
            let sets: Vec<&Override> = base.iter().chain(&v.sets).collect();
            let of = |doc: &str| {
                sets.iter()
                    .copied()
                    .filter(|o| o.doc == doc)
                    .collect::<Vec<_>>()
            };
            parse_doc::<TopologySpec>(topology, &of("topology"))?;
            parse_doc::<WorkloadSpec>(workload, &of("workload"))?;
        }
    }
    Ok(())
}

/// Runs one point.
pub fn run_point(
    p: &Point,
    axes: &[Axis],
    topology: &Source,
    workload: &Source,
    base: &[Override],
    engine: Engine,
    cal: &Calibration,
) -> Row {
    let mut sets = base.to_vec();
    for (a, &i) in axes.iter().zip(&p.at) {
        sets.extend(a.values[i].sets.iter().cloned());
    }
    let values = axes
        .iter()
        .zip(&p.at)
        .map(|(a, &i)| a.values[i].label.clone())
        .collect();
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pipeline::run(topology, workload, &sets, engine, cal)
    }));
    let (status, reason, metrics) = match run {
        Ok(Ok(s)) => {
            let b = &s.breakdown_s;
            (
                "ok",
                None,
                Some(Metrics {
                    step_time_s: s.step_time_s,
                    mfu: s.mfu,
                    tokens_per_gpu_s: s.tokens_per_gpu_s,
                    gpu_hours: s.gpu_hours,
                    cost_usd: s.cost_usd,
                    days: s.days,
                    energy_mwh: s.energy_mwh,
                    memory_gib_per_gpu: s.memory_gib_per_gpu,
                    compute_s: b.compute,
                    bubble_s: b.bubble,
                    exposed_comm_s: b.exposed_comm,
                    optimizer_s: b.optimizer,
                    effective_gpu_hours: s.effective_gpu_hours,
                    effective_cost_usd: s.effective_cost_usd,
                    effective_days: s.effective_days,
                    ettr: s.goodput.as_ref().map_or(1.0, |g| g.ettr),
                }),
            )
        }
        Ok(Err(d)) => ("infeasible", Some(d.to_string().replace('\n', "; ")), None),
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            (
                "error",
                Some(format!("an internal error (a trainsim bug): {msg}")),
                None,
            )
        }
    };
    Row {
        point: p.index,
        values,
        status: status.into(),
        reason,
        metrics,
    }
}

/// Runs `points` on `threads` threads (0: all cores); rows in point order. `tick` after each.
#[allow(clippy::too_many_arguments)]
pub fn run(
    points: &[Point],
    axes: &[Axis],
    topology: &Source,
    workload: &Source,
    base: &[Override],
    engine: Engine,
    cal: &Calibration,
    threads: usize,
    tick: &(dyn Fn() + Sync),
) -> Vec<Row> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool");
    pool.install(|| {
        points
            .par_iter()
            .map(|p| {
                let r = run_point(p, axes, topology, workload, base, engine, cal);
                tick();
                r
            })
            .collect()
    })
}

/// Whether point `index` belongs to shard `k` (1-based) of `n`.
pub fn in_shard(index: usize, (k, n): (usize, usize)) -> bool {
    index % n == k - 1
}

/// Parses `--shard K/N` (1 ≤ K ≤ N).
pub fn parse_shard(s: &str) -> Result<(usize, usize), Diagnostic> {
    let bad = || {
        Diagnostic::new(
            "--shard",
            format!("\"{s}\""),
            "K/N with 1 ≤ K ≤ N, e.g. 2/8",
        )
    };
    let (k, n) = s.split_once('/').ok_or_else(bad)?;
    let (k, n): (usize, usize) = (
        k.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if k == 0 || k > n {
        return Err(bad());
    }
    Ok((k, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_keep_their_units_and_steps() {
        let labels = |t: &str| {
            parse_values(t, "x")
                .unwrap()
                .into_iter()
                .map(|(l, _, _)| l)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            labels("50 Gb/s..800 Gb/s x2"),
            ["50 Gb/s", "100 Gb/s", "200 Gb/s", "400 Gb/s", "800 Gb/s"]
        );
        assert_eq!(
            labels("$1..$4 +$0.5"),
            ["$1", "$1.5", "$2", "$2.5", "$3", "$3.5", "$4"]
        );
        assert_eq!(labels("0.1..0.3 +0.1"), ["0.1", "0.2", "0.3"]);
        assert_eq!(
            labels("100 GB/s bidirectional..120 GB/s bidirectional +10 GB/s"),
            [
                "100 GB/s bidirectional",
                "110 GB/s bidirectional",
                "120 GB/s bidirectional"
            ]
        );
        assert_eq!(labels("8,16,32"), ["8", "16", "32"]);
        let v = parse_values("8,16", "x").unwrap();
        assert_eq!(v[0].1, Value::Number(8.into()), "numbers stay numbers");
        let v = parse_values("100 GB/s..300 GB/s +100 GB/s", "x").unwrap();
        assert_eq!(v[2].1, Value::String("300 GB/s".into()));
        assert_eq!(v[2].2, Some(300.0));
    }

    #[test]
    fn bad_ranges_are_diagnostics() {
        for t in [
            "50 Gb/s..800 GB/s x2",
            "50..800",
            "800..50 x2",
            "50..800 x1",
            "50..800 +0",
            "a,,b",
        ] {
            let e = parse_values(t, "topology.x").unwrap_err();
            assert_eq!(e.path.as_deref(), Some("topology.x"), "{t}");
        }
    }

    #[test]
    fn products_vary_the_last_axis_fastest_and_zips_pair_up() {
        let axis = |n: usize| Axis {
            name: "a".into(),
            values: (0..n)
                .map(|i| AxisValue {
                    label: i.to_string(),
                    number: Some(i as f64),
                    sets: Vec::new(),
                })
                .collect(),
        };
        let p = points(&[axis(2), axis(3)], false).unwrap();
        let at: Vec<Vec<usize>> = p.iter().map(|p| p.at.clone()).collect();
        assert_eq!(
            at,
            [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]].map(|a| a.to_vec())
        );
        assert_eq!(points(&[axis(3), axis(3)], true).unwrap().len(), 3);
        assert!(points(&[axis(2), axis(3)], true).is_err());
    }

    #[test]
    fn shards_cover_every_point_once() {
        let n = 3;
        for i in 0..10 {
            assert_eq!((1..=n).filter(|&k| in_shard(i, (k, n))).count(), 1);
        }
        assert!(parse_shard("0/3").is_err() && parse_shard("4/3").is_err());
        assert_eq!(parse_shard("2/3").unwrap(), (2, 3));
    }
}
