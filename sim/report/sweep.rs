//! A sweep's outputs: `sweep.jsonl` and `sweep.csv` (one row per point, in point order),
//! `sweep-meta.json` (what identifies the sweep, so shards can be merged), one
//! `sweep-METRIC.svg` line plot per metric (against the first axis, one line per value of the
//! others; infeasible points marked), and `sweep.html` with the table, the plots and the base
//! scenario's assumptions. Everything is a function of the meta and the rows alone, so merged
//! shards write exactly what one run writes.

use super::plots;
use serde::{Deserialize, Serialize};
use std::fmt::Write;

/// The headline figures of a point that ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub step_time_s: f64,
    pub mfu: f64,
    pub tokens_per_gpu_s: f64,
    pub gpu_hours: f64,
    pub cost_usd: f64,
    pub days: f64,
    pub energy_mwh: f64,
    pub memory_gib_per_gpu: f64,
    pub compute_s: f64,
    pub bubble_s: f64,
    pub exposed_comm_s: f64,
    pub optimizer_s: f64,
    /// With failures, checkpoints, restarts and stragglers (the goodput model).
    #[serde(default)]
    pub effective_gpu_hours: f64,
    #[serde(default)]
    pub effective_cost_usd: f64,
    #[serde(default)]
    pub effective_days: f64,
    #[serde(default)]
    pub ettr: f64,
}

/// One row of the sweep's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub point: usize,
    /// The point's label on each axis, in axis order.
    pub values: Vec<String>,
    /// `ok`, `infeasible` (a diagnostic: memory, layout) or `error` (a trainsim bug).
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
}

/// What identifies a sweep, written beside its rows so that shards can be merged: the same in
/// every shard and in the unsharded run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub title: String,
    pub engine: String,
    pub axes: Vec<String>,
    /// Each axis's unit, where its values share one (plot labels).
    pub units: Vec<Option<String>>,
    /// Each axis's labels and numbers, in order.
    pub labels: Vec<Vec<String>>,
    pub numbers: Vec<Vec<Option<f64>>>,
    pub zip: bool,
    pub points: usize,
    pub plot: Vec<String>,
    /// (input name, sha256).
    pub inputs: Vec<(String, String)>,
    /// The base overrides.
    pub set: Vec<String>,
    /// (where, key, note) of every `[inferred]` / `[assumed]` mark in the base inputs.
    pub assumptions: Vec<(String, String, String)>,
}

/// A plottable metric: name, axis label with units, and how to read it.
pub struct Metric {
    pub name: &'static str,
    pub label: &'static str,
    pub get: fn(&Metrics) -> f64,
}

/// Every metric `--plot` accepts.
pub const METRICS: [Metric; 13] = [
    Metric {
        name: "step_time",
        label: "step time (s)",
        get: |m| m.step_time_s,
    },
    Metric {
        name: "gpu_hours",
        label: "GPU-hours (million GPU-h)",
        get: |m| m.gpu_hours / 1e6,
    },
    Metric {
        name: "dollars",
        label: "cost (million USD)",
        get: |m| m.cost_usd / 1e6,
    },
    Metric {
        name: "mfu",
        label: "MFU (%)",
        get: |m| m.mfu * 100.0,
    },
    Metric {
        name: "tokens_per_gpu_s",
        label: "throughput (tokens/s/GPU)",
        get: |m| m.tokens_per_gpu_s,
    },
    Metric {
        name: "days",
        label: "wall-clock (days)",
        get: |m| m.days,
    },
    Metric {
        name: "energy",
        label: "energy (MWh)",
        get: |m| m.energy_mwh,
    },
    Metric {
        name: "memory",
        label: "memory per GPU (GiB)",
        get: |m| m.memory_gib_per_gpu,
    },
    Metric {
        name: "exposed_comm",
        label: "exposed communication per step (s)",
        get: |m| m.exposed_comm_s,
    },
    Metric {
        name: "effective_gpu_hours",
        label: "effective GPU-hours, with failures (million GPU-h)",
        get: |m| m.effective_gpu_hours / 1e6,
    },
    Metric {
        name: "effective_dollars",
        label: "effective cost, with failures (million USD)",
        get: |m| m.effective_cost_usd / 1e6,
    },
    Metric {
        name: "effective_days",
        label: "effective wall-clock, with failures (days)",
        get: |m| m.effective_days,
    },
    Metric {
        name: "ettr",
        label: "effective training time ratio (%)",
        get: |m| m.ettr * 100.0,
    },
];

/// The default plots.
pub const DEFAULT_PLOTS: [&str; 3] = ["step_time", "gpu_hours", "dollars"];

pub fn metric(name: &str) -> Option<&'static Metric> {
    METRICS.iter().find(|m| m.name == name)
}

/// `sweep.jsonl`: one JSON object per row.
pub fn jsonl(rows: &[Row]) -> String {
    rows.iter()
        .map(|r| serde_json::to_string(r).expect("a row serializes") + "\n")
        .collect()
}

/// Reads `sweep.jsonl` back; the error names the line.
pub fn parse_jsonl(text: &str) -> Result<Vec<Row>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}

fn num(v: f64) -> String {
    format!("{v}")
}

/// `sweep.csv`: the axis values, the status and the headline figures, units in the headers.
pub fn csv(meta: &Meta, rows: &[Row]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut head = vec!["point".to_string()];
    head.extend(meta.axes.iter().cloned());
    head.extend(
        [
            "status",
            "reason",
            "step_time (s)",
            "mfu (fraction)",
            "tokens_per_gpu (tokens/s)",
            "gpu_hours (GPU-h)",
            "cost (USD)",
            "days (d)",
            "energy (MWh)",
            "memory_per_gpu (GiB)",
            "compute (s/step)",
            "bubble (s/step)",
            "exposed_comm (s/step)",
            "optimizer (s/step)",
            "effective_gpu_hours (GPU-h)",
            "effective_cost (USD)",
            "effective_days (d)",
            "ettr (fraction)",
        ]
        .map(String::from),
    );
    w.write_record(&head).expect("in memory");
    for r in rows {
        let mut rec = vec![r.point.to_string()];
        rec.extend(r.values.iter().cloned());
        rec.push(r.status.clone());
        rec.push(r.reason.clone().unwrap_or_default());
        match &r.metrics {
            Some(m) => rec.extend(
                [
                    m.step_time_s,
                    m.mfu,
                    m.tokens_per_gpu_s,
                    m.gpu_hours,
                    m.cost_usd,
                    m.days,
                    m.energy_mwh,
                    m.memory_gib_per_gpu,
                    m.compute_s,
                    m.bubble_s,
                    m.exposed_comm_s,
                    m.optimizer_s,
                    m.effective_gpu_hours,
                    m.effective_cost_usd,
                    m.effective_days,
                    m.ettr,
                ]
                .map(num),
            ),
            None => rec.extend(std::iter::repeat_n(String::new(), 16)),
        }
        w.write_record(&rec).expect("in memory");
    }
    String::from_utf8(w.into_inner().expect("in memory")).expect("UTF-8")
}

/// One plot per metric: against the first axis, a line per combination of the other axes.
pub fn plot_files(meta: &Meta, rows: &[Row]) -> Vec<(String, String)> {
    let first = &meta.labels[0];
    let numbers: Option<Vec<f64>> = meta.numbers[0].iter().copied().collect();
    // Doubling (or steeper) sweeps read best on a log axis.
    let log_x = numbers
        .as_ref()
        .is_some_and(|v| v.len() >= 3 && v[0] > 0.0 && v.windows(2).all(|w| w[1] / w[0] > 1.5));
    let x_of = |i: usize| numbers.as_ref().map_or(i as f64, |v| v[i]);
    let rest = |r: &Row| r.values[1..].join(" · ");
    let mut names: Vec<String> = Vec::new();
    for r in rows {
        let n = rest(r);
        if !names.contains(&n) {
            names.push(n);
        }
    }
    let mut out = Vec::new();
    for name in &meta.plot {
        let Some(m) = metric(name) else { continue };
        let series: Vec<plots::Series> = names
            .iter()
            .map(|n| {
                let pts = rows
                    .iter()
                    .filter(|r| &rest(r) == n)
                    .filter_map(|r| {
                        let i = first.iter().position(|l| l == &r.values[0])?;
                        Some((x_of(i), r.metrics.as_ref().map(|x| (m.get)(x))))
                    })
                    .collect();
                (n.clone(), pts)
            })
            .collect();
        let svg = plots::lines(
            &format!(
                "{} against {}",
                m.label.split(" (").next().unwrap_or(m.name),
                meta.axes[0]
            ),
            &match &meta.units[0] {
                Some(u) => format!("{} ({u})", meta.axes[0]),
                None => meta.axes[0].clone(),
            },
            m.label,
            &series,
            if numbers.is_none() {
                Some(first.as_slice())
            } else {
                None
            },
            log_x,
        );
        out.push((format!("sweep-{}.svg", m.name), svg));
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `sweep.html`: self-contained, like the run report.
pub fn html(meta: &Meta, rows: &[Row], plots: &[(String, String)]) -> String {
    let mut h = String::new();
    let ok = rows.iter().filter(|r| r.status == "ok").count();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{t}</title>\n<style>{css}</style>\n</head>\n<body>\n<h1>{t}</h1>\n<p>{} points ({ok} ran, {} could not), {} engine, axes: {}.</p>\n",
        rows.len(),
        rows.len() - ok,
        esc(&meta.engine),
        esc(&meta.axes.join(", ")),
        t = esc(&meta.title),
        css = super::document::CSS,
    );
    h.push_str("<h2>Plots</h2>\n");
    for (_, svg) in plots {
        let body = svg.find("<svg").map_or(svg.as_str(), |p| &svg[p..]);
        let _ = writeln!(h, "<figure>\n{body}\n</figure>");
    }
    h.push_str("<h2>Points</h2>\n<table>\n<thead><tr><th>point</th>");
    for a in &meta.axes {
        let _ = write!(h, "<th>{}</th>", esc(a));
    }
    h.push_str("<th>step time (s)</th><th>MFU</th><th>GPU-hours</th><th>cost (USD)</th><th>days</th><th>status</th></tr></thead>\n<tbody>\n");
    for r in rows {
        let _ = write!(h, "<tr><td>{}</td>", r.point);
        for v in &r.values {
            let _ = write!(h, "<td>{}</td>", esc(v));
        }
        match &r.metrics {
            Some(m) => {
                let _ = write!(
                    h,
                    "<td>{:.3}</td><td>{:.1}%</td><td>{:.0}</td><td>{:.0}</td><td>{:.1}</td><td>ok</td>",
                    m.step_time_s,
                    m.mfu * 100.0,
                    m.gpu_hours,
                    m.cost_usd,
                    m.days
                );
            }
            None => {
                let _ = write!(
                    h,
                    "<td colspan=\"5\">{}</td><td>{}</td>",
                    esc(r.reason.as_deref().unwrap_or("")),
                    esc(&r.status)
                );
            }
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody>\n</table>\n<h2>Base scenario</h2>\n<table>\n<thead><tr><th>input</th><th>sha256</th></tr></thead>\n<tbody>\n");
    for (name, hash) in &meta.inputs {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td><code>{hash}</code></td></tr>",
            esc(name)
        );
    }
    h.push_str("</tbody>\n</table>\n");
    if !meta.set.is_empty() {
        let _ = writeln!(
            h,
            "<p>Overrides at every point: {}.</p>",
            meta.set
                .iter()
                .map(|s| format!("<code>{}</code>", esc(s)))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let _ = writeln!(
        h,
        "<h2>Assumptions</h2>\n<p>{} settings the base inputs mark <code>[inferred]</code> or <code>[assumed]</code>:</p>\n<table>\n<thead><tr><th>where</th><th>key</th><th>note</th></tr></thead>\n<tbody>",
        meta.assumptions.len()
    );
    for (w, k, n) in &meta.assumptions {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(w),
            esc(k),
            esc(n)
        );
    }
    h.push_str("</tbody>\n</table>\n</body>\n</html>\n");
    h
}

/// Every output file of a sweep: (name, contents).
pub fn files(meta: &Meta, rows: &[Row]) -> Vec<(String, String)> {
    let plots = plot_files(meta, rows);
    let mut out = vec![
        (
            "sweep-meta.json".to_string(),
            serde_json::to_string_pretty(meta).expect("meta serializes") + "\n",
        ),
        ("sweep.jsonl".to_string(), jsonl(rows)),
        ("sweep.csv".to_string(), csv(meta, rows)),
        ("sweep.html".to_string(), html(meta, rows, &plots)),
    ];
    out.extend(plots);
    out
}
