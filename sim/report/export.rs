//! An export scenario's results as the report room shows them ([`Outcome`], filled by
//! `scenario::export`): every point with its fixed and re-planned answers, the multiples, the
//! resource that binds and the thresholds; and the files written from them: the terminal table,
//! `export.csv`, `export.json`, the cost-multiplier curves, the chips against the rules'
//! thresholds, and the brief (`export.html`, `export.md`).

use super::plan::{Choice, Figures, Status};
use crate::hw::export::{ExportRules, Metrics, Status as RuleStatus};
use serde::Serialize;

/// What a point is.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The unrestricted reference chip.
    Reference,
    /// A catalog chip on its own interconnect.
    Chip,
    /// The reference with one cap or more: (axis key, the cap in the axis's unit).
    Capped(Vec<(String, f64)>),
}

/// Cost as a multiple of the reference's (same strategy).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Multiple {
    pub gpu_hours: f64,
    pub dollars: f64,
    pub days: f64,
}

/// The GPUs that finish the run in the reference's days, at this point's chip.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SameDays {
    pub gpus: u64,
    pub days: f64,
    /// False: the largest count tried still took longer (`gpus` is a lower bound).
    pub met: bool,
    /// False: no count could be priced (`gpus` is the linear estimate).
    pub priced: bool,
    /// Not met, and `gpus` is the largest count the layout runs on.
    pub last: bool,
    /// Not met: why the last count tried did not price (a layout the count breaks, a fabric the
    /// template cannot scale to).
    pub why: Option<String>,
}

/// One strategy's answer at a point.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answer {
    /// The layout it ran (`None`: the workload's own).
    pub choice: Option<Choice>,
    pub layout: String,
    /// DES figures and status, or why it cannot run here.
    pub figures: Option<Figures>,
    pub status: Option<Status>,
    pub why: Option<String>,
    pub multiple: Option<Multiple>,
    pub same_days: Option<SameDays>,
}

impl Answer {
    /// Figures that count: priced and within HBM.
    pub fn feasible(&self) -> Option<&Figures> {
        self.figures
            .as_ref()
            .filter(|_| self.status == Some(Status::Feasible))
    }
}

/// The resource that binds at a point.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Binding {
    /// `scale-up (NVLink)`, `scale-out (NIC)`, `compute (TPP)`, `HBM bandwidth`, or `None`.
    pub resource: Option<String>,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub label: String,
    pub kind: Kind,
    /// The chip it prices (a derived chip's name for a capped point).
    pub chip: String,
    pub price: String,
    pub metrics: Metrics,
    /// Scale-up bandwidth, bidirectional bytes per second.
    pub scale_up: f64,
    pub statuses: Vec<RuleStatus>,
    /// What the point had to change in the workload (BF16 GEMMs on a chip without FP8).
    pub note: Option<String>,
    pub fixed: Answer,
    pub replanned: Option<Answer>,
    pub binding: Binding,
}

/// A cap at which a strategy's cost multiple reaches a level.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Threshold {
    pub axis: String,
    pub strategy: String,
    pub level: f64,
    /// Interpolated on log(cap) between the grid points either side; `None`: not reached.
    pub cap: Option<f64>,
    pub text: String,
}

/// What the scenario found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub name: String,
    pub target: String,
    pub gpus: u64,
    pub reference: String,
    /// Point 0 is the reference.
    pub points: Vec<Point>,
    pub thresholds: Vec<Threshold>,
    /// The reference's own figure on each cap axis (axis key, in the axis's stored unit).
    pub own: Vec<(String, f64)>,
    /// The assumptions the brief lists.
    pub assumptions: Vec<String>,
    /// Layouts the re-planning search may vary, as a line.
    pub search: String,
}

/// A cap axis as plots and tables show it: (key, title, unit, divisor from the stored value).
pub const AXES: [(&str, &str, &str, f64); 4] = [
    (
        "scale_up",
        "scale-up (NVLink) bandwidth",
        "GB/s bidirectional",
        1e9,
    ),
    (
        "scale_out",
        "scale-out bandwidth per GPU",
        "Gb/s per direction",
        1.25e8,
    ),
    ("tpp", "TPP", "TPP", 1.0),
    ("hbm", "HBM bandwidth", "TB/s", 1e12),
];

/// `400 GB/s bidirectional` for a stored cap on `axis`.
pub fn cap_text(axis: &str, v: f64) -> String {
    let (_, _, unit, div) = AXES
        .iter()
        .find(|a| a.0 == axis)
        .copied()
        .expect("a known axis");
    if axis == "tpp" {
        format!("TPP {}", trim(v))
    } else {
        format!("{} {unit}", trim(v / div))
    }
}

/// A number to 3 significant figures (whole numbers at 1,000 and above), without trailing
/// zeros.
fn trim(v: f64) -> String {
    let digits = if v.abs() >= 1000.0 || v == 0.0 {
        0
    } else {
        (2 - v.abs().log10().floor() as i32).max(0) as usize
    };
    let s = format!("{v:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// The caps along `axis` at which `strategy`'s multiple (of GPU-hours) first reaches each
/// of `levels`, walking from the loosest cap down: interpolated on log(cap) between the last
/// point below the level and the first at or above it. A point that cannot run ends the walk
/// (the level is reached at or above it).
pub fn thresholds(
    axis: &str,
    strategy: &str,
    curve: &[(f64, Option<f64>)],
    levels: &[f64],
) -> Vec<Threshold> {
    let mut c: Vec<(f64, Option<f64>)> = curve.to_vec();
    c.sort_by(|a, b| b.0.total_cmp(&a.0));
    levels
        .iter()
        .map(|&level| {
            let mut prev: Option<(f64, f64)> = None;
            let mut found: Option<(Option<f64>, String)> = None;
            for &(cap, m) in &c {
                match (m, prev) {
                    (Some(m), _) if m >= level => {
                        let at = match prev {
                            Some((pc, pm)) if m > pm => {
                                let t = (level - pm) / (m - pm);
                                (pc.ln() + t * (cap.ln() - pc.ln())).exp()
                            }
                            _ => cap,
                        };
                        found = Some((
                            Some(at),
                            format!("{} (×{level} reached)", cap_text(axis, at)),
                        ));
                        break;
                    }
                    (Some(m), _) => prev = Some((cap, m)),
                    (None, _) => {
                        found = Some((
                            Some(cap),
                            format!(
                                "at or above {} (the run cannot be laid out there)",
                                cap_text(axis, cap)
                            ),
                        ));
                        break;
                    }
                }
            }
            let (cap, text) = found.unwrap_or_else(|| {
                (
                    None,
                    match prev {
                        Some((pc, pm)) => format!(
                            "not reached: ×{} at the tightest cap, {}",
                            fmt_mult(pm),
                            cap_text(axis, pc)
                        ),
                        None => "no point priced".into(),
                    },
                )
            });
            Threshold {
                axis: axis.into(),
                strategy: strategy.into(),
                level,
                cap,
                text,
            }
        })
        .collect()
}

fn fmt_mult(m: f64) -> String {
    format!("{m:.2}")
}

/// How to reproduce the scenario.
pub struct Meta {
    pub command: String,
    pub version: String,
    /// The scenario file, the workload, the template and the rules, with their text.
    pub inputs: Vec<InputFile>,
}

use super::document::{render_doc, table, Block, InputFile, Section};
use super::plan::money;
use std::fmt::Write;

/// `2.682M`, or `12,345` below a million.
fn hours(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.3}M", v / 1e6)
    } else {
        super::document::thousands(v)
    }
}

/// Days to a tenth, or to three significant figures under ten.
fn days(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.1}")
    } else {
        trim(v)
    }
}

fn mult(m: Option<Multiple>) -> String {
    m.map_or("—".into(), |m| format!("×{}", fmt_mult(m.gpu_hours)))
}

fn same(a: &Answer) -> String {
    match &a.same_days {
        Some(s) if s.met => s.gpus.to_string(),
        Some(s) if s.last => format!("> {} (the most this layout runs on)", s.gpus),
        Some(s) if s.priced => format!("> {}", s.gpus),
        Some(s) => format!("≈ {} (linear)", s.gpus),
        None => "—".into(),
    }
}

/// What an answer says in one cell when it has no figures: why.
fn why(a: &Answer) -> String {
    match (&a.figures, a.status) {
        (Some(_), Some(Status::Feasible)) | (Some(_), None) => String::new(),
        (Some(f), Some(s)) => format!("{} ({:.1} GiB)", s.name(), f.memory_gib),
        (None, _) => a.why.clone().unwrap_or_default(),
    }
}

fn fig<T>(a: &Answer, f: impl Fn(&Figures) -> T, show: impl Fn(T) -> String) -> String {
    a.feasible().map_or_else(|| "—".into(), |x| show(f(x)))
}

/// The short layout of an answer: `TP1 PP16 EP64 · dualpipe · mb 1` (its first three parts).
fn short_layout(a: &Answer) -> String {
    a.layout
        .split(" · ")
        .take(3)
        .collect::<Vec<_>>()
        .join(" · ")
}

/// The points' table: one row per point.
const HEAD: [&str; 12] = [
    "point",
    "fixed step (s)",
    "fixed ×GPU-h",
    "fixed days",
    "fixed GPUs for same days",
    "re-planned layout",
    "re-planned step (s)",
    "re-planned ×GPU-h",
    "re-planned $",
    "re-planned GPUs for same days",
    "binds",
    "note",
];

fn rows(o: &Outcome) -> Vec<Vec<String>> {
    o.points
        .iter()
        .map(|p| {
            let f = &p.fixed;
            let empty = Answer {
                choice: None,
                layout: "—".into(),
                figures: None,
                status: None,
                why: Some("not re-planned".into()),
                multiple: None,
                same_days: None,
            };
            let r = p.replanned.as_ref().unwrap_or(&empty);
            let note = [why(f), p.note.clone().unwrap_or_default()]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            vec![
                p.label.clone(),
                fig(f, |x| x.step_s, |v| format!("{v:.2}")),
                mult(f.multiple),
                fig(f, |x| x.days, days),
                same(f),
                if r.feasible().is_some() {
                    short_layout(r)
                } else {
                    why(r)
                },
                fig(r, |x| x.step_s, |v| format!("{v:.2}")),
                mult(r.multiple),
                fig(r, |x| x.dollars, money),
                same(r),
                p.binding.resource.clone().unwrap_or_else(|| "none".into()),
                note,
            ]
        })
        .collect()
}

/// The reference's answer as a sentence.
fn reference_line(o: &Outcome) -> String {
    let r = &o.points[0];
    let one = |what: &str, a: &Answer| match a.feasible() {
        Some(f) => format!(
            "{what} ({}): {:.2} s per step, {} GPU-hours, {}, {} days",
            a.layout,
            f.step_s,
            hours(f.gpu_hours),
            money(f.dollars),
            days(f.days)
        ),
        None => format!("{what}: cannot run ({})", why(a)),
    };
    let mut s = format!(
        "{} on {} GPUs, {}",
        o.reference,
        o.gpus,
        one("fixed", &r.fixed)
    );
    match &r.replanned {
        Some(a) if a.layout == r.fixed.layout => s += "; re-planning keeps the layout",
        Some(a) => s += &format!("; {}", one("re-planned", a)),
        None => {}
    }
    s
}

/// The capped point on `axis` at `value` (within 0.1%).
fn capped_at<'a>(o: &'a Outcome, axis: &str, value: f64) -> Option<&'a Point> {
    o.points.iter().find(|p| {
        matches!(&p.kind, Kind::Capped(c) if c.len() == 1 && c[0].0 == axis && (c[0].1 - value).abs() <= 1e-3 * value)
    })
}

/// The headline multiples: at the H800's NVLink, the H20's TPP and a 100 Gb/s NIC, where the
/// grid has them; and the caps at which the cost doubles.
fn key_lines(o: &Outcome) -> Vec<String> {
    let mut v = Vec::new();
    for (what, axis, value) in [
        (
            "400 GB/s of NVLink (the H800's and A800's)",
            "scale_up",
            400e9,
        ),
        ("the H20's compute (TPP 2,368)", "tpp", 2368.0),
        ("a 100 Gb/s NIC per GPU", "scale_out", 12.5e9),
    ] {
        if let Some(p) = capped_at(o, axis, value) {
            let r = p.replanned.as_ref();
            v.push(format!(
                "At {what}: fixed layout {}, re-planned {}{} (binds: {}).",
                mult(p.fixed.multiple),
                r.map_or("—".into(), |a| mult(a.multiple)),
                r.filter(|a| a.choice.is_some())
                    .map_or(String::new(), |a| format!(" with {}", short_layout(a))),
                p.binding.resource.clone().unwrap_or_else(|| "none".into())
            ));
        }
    }
    for (axis, title, _, _) in AXES {
        let at = |strategy: &str| {
            o.thresholds
                .iter()
                .find(|t| t.axis == axis && t.strategy == strategy && t.level == 2.0)
                .map(|t| t.text.clone())
        };
        if let Some(f) = at("fixed") {
            v.push(format!(
                "Cost doubles on {title}: fixed {f}; re-planned {}.",
                at("re-planned").unwrap_or_else(|| "not priced".into())
            ));
        }
    }
    v
}

/// The terminal output.
pub fn text(o: &Outcome, meta: &Meta) -> String {
    let mut t = format!("trainsim export · {} · {}\n", o.name, o.target);
    let _ = writeln!(t, "reference   {}", reference_line(o));
    t += &super::tables::aligned(
        &HEAD[..11],
        &rows(o)
            .into_iter()
            .map(|mut r| {
                r.pop();
                r
            })
            .collect::<Vec<_>>(),
    );
    for l in key_lines(o) {
        let _ = writeln!(t, "{l}");
    }
    let _ = writeln!(t, "{} · {}", meta.version, meta.command);
    t
}

/// The cost-multiplier curve on one axis: fixed and re-planned GPU-hours multiples against the
/// cap (log axis), the reference at its own figure.
fn curve_svg(o: &Outcome, axis: &str, own: f64) -> Option<String> {
    let (_, title, unit, div) = AXES.iter().find(|a| a.0 == axis).copied()?;
    let on: Vec<&Point> = o
        .points
        .iter()
        .filter(|p| matches!(&p.kind, Kind::Capped(c) if c.len() == 1 && c[0].0 == axis))
        .collect();
    if on.is_empty() {
        return None;
    }
    let mut series = Vec::new();
    for (name, pick) in [
        (
            "fixed layout",
            (|p: &Point| Some(&p.fixed)) as fn(&Point) -> Option<&Answer>,
        ),
        ("re-planned layout", |p: &Point| p.replanned.as_ref()),
    ] {
        if pick(&o.points[0]).is_none() {
            continue;
        }
        let mut pts = vec![(own / div, Some(1.0))];
        for p in &on {
            let Kind::Capped(c) = &p.kind else { continue };
            if c[0].1 >= own {
                continue;
            }
            pts.push((
                c[0].1 / div,
                pick(p).and_then(|a| a.multiple).map(|m| m.gpu_hours),
            ));
        }
        series.push((name.to_string(), pts));
    }
    Some(super::plots::lines(
        &format!("Cost against the {title} cap"),
        &format!("{title} cap ({unit}, log scale)"),
        &format!("GPU-hours as a multiple of {} unrestricted", o.reference),
        &series,
        None,
        true,
    ))
}

/// The catalog chips against two rules' thresholds, as SVG scatters: TPP against performance
/// density (3A090 2023's tiers shaded) and TPP against DRAM bandwidth (the 2026 case-by-case
/// region shaded); chips at one point share a legend entry.
pub fn chip_scatters(rules: &ExportRules, chips: &[(String, Metrics)]) -> Vec<(String, String)> {
    use super::plots::{scatter_regions, Layer, Mark, Region};
    use crate::hw::export::Metric;
    let plot = |rule: &str, y: Metric, y_unit: f64, file: &str, title: &str, y_label: &str| {
        let r = rules
            .rules
            .iter()
            .find(|r| r.id == rule)
            .expect("a shipped rule");
        // Outcomes in order, each where no earlier one holds, its boxes disjoint.
        let mut taken = Vec::new();
        let regions: Vec<Region> = r
            .outcomes
            .iter()
            .filter_map(|o| {
                let boxes = crate::hw::export::difference(&o.when.boxes(Metric::Tpp, y)?, &taken);
                taken.extend(boxes.iter().copied());
                Some(Region {
                    name: format!("{}: {}", r.id, o.status),
                    boxes: boxes
                        .into_iter()
                        .map(|b| [b[0], b[1], b[2] / y_unit, b[3] / y_unit])
                        .collect(),
                })
            })
            .collect();
        let mut layers: Vec<Layer> = Vec::new();
        for (name, m) in chips {
            let yv = match y {
                Metric::Pd => m.pd,
                _ => Some(m.hbm_bandwidth),
            };
            let Some(yv) = yv else { continue };
            let p = (m.tpp, yv / y_unit);
            // Within 0.1% is the same point on the plot (H100's 1,978.9 against 1,979 TFLOPS).
            let near = |a: f64, b: f64| (a - b).abs() <= 1e-3 * a.abs().max(b.abs());
            match layers
                .iter_mut()
                .find(|l| near(l.points[0].0, p.0) && near(l.points[0].1, p.1))
            {
                Some(l) => l.name += &format!(", {name}"),
                None => layers.push(Layer {
                    name: name.clone(),
                    style: Mark::Highlight,
                    points: vec![p],
                }),
            }
        }
        let svg = scatter_regions(
            title,
            "TPP (2 × MacTOPS × bit length, dense)",
            y_label,
            &layers,
            (None, None),
            &regions,
        );
        (file.to_string(), svg)
    };
    vec![
        plot(
            "3A090-2023",
            Metric::Pd,
            1.0,
            "chips-tpp-pd.svg",
            "Chips against 3A090 (2023): TPP and performance density",
            "performance density (TPP per mm² of logic die; chips without a die area left out)",
        ),
        plot(
            "case-by-case-2026",
            Metric::HbmBandwidth,
            1e12,
            "chips-tpp-hbm.svg",
            "Chips against the 2026 case-by-case line (for chips 3A090.a controls)",
            "DRAM bandwidth (TB/s)",
        ),
    ]
}

const CSV_HEAD: [&str; 30] = [
    "point",
    "kind",
    "chip",
    "price",
    "tpp",
    "pd",
    "io_bandwidth_GBps",
    "hbm_bandwidth_TBps",
    "fixed_layout",
    "fixed_step_s",
    "fixed_gpu_hours",
    "fixed_dollars",
    "fixed_days",
    "fixed_x_gpu_hours",
    "fixed_x_dollars",
    "fixed_x_days",
    "fixed_same_days_gpus",
    "fixed_status",
    "replanned_layout",
    "replanned_step_s",
    "replanned_gpu_hours",
    "replanned_dollars",
    "replanned_days",
    "replanned_x_gpu_hours",
    "replanned_x_dollars",
    "replanned_x_days",
    "replanned_same_days_gpus",
    "replanned_status",
    "binds",
    "binds_detail",
];

fn csv_rows(o: &Outcome) -> Vec<Vec<String>> {
    let num = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v}"));
    let answer = |a: Option<&Answer>| -> Vec<String> {
        let Some(a) = a else {
            return vec![String::new(); 10];
        };
        let f = a.feasible();
        vec![
            a.layout.clone(),
            num(f.map(|f| f.step_s)),
            num(f.map(|f| f.gpu_hours)),
            num(f.map(|f| f.dollars)),
            num(f.map(|f| f.days)),
            num(a.multiple.map(|m| m.gpu_hours)),
            num(a.multiple.map(|m| m.dollars)),
            num(a.multiple.map(|m| m.days)),
            a.same_days.as_ref().map_or(String::new(), |s| {
                let mut t = format!("{}{}", if s.met { "" } else { ">" }, s.gpus);
                if let Some(w) = &s.why {
                    t += &format!(" ({w})");
                }
                t
            }),
            if f.is_some() {
                "feasible".into()
            } else {
                why(a)
            },
        ]
    };
    o.points
        .iter()
        .map(|p| {
            let mut r = vec![
                p.label.clone(),
                match &p.kind {
                    Kind::Reference => "reference".into(),
                    Kind::Chip => "chip".into(),
                    Kind::Capped(c) => c.iter().map(|x| x.0.clone()).collect::<Vec<_>>().join("+"),
                },
                p.chip.clone(),
                p.price.clone(),
                format!("{:.0}", p.metrics.tpp),
                p.metrics.pd.map_or(String::new(), |v| format!("{v:.2}")),
                format!("{:.0}", p.metrics.io_bandwidth / 1e9),
                format!("{:.3}", p.metrics.hbm_bandwidth / 1e12),
            ];
            r.extend(answer(Some(&p.fixed)));
            r.extend(answer(p.replanned.as_ref()));
            r.push(p.binding.resource.clone().unwrap_or_default());
            r.push(p.binding.detail.clone());
            r
        })
        .collect()
}

fn sections(o: &Outcome, rules: &ExportRules, meta: &Meta) -> Vec<Section> {
    let mut out = Vec::new();
    let mut summary = vec![
        Block::Para(format!("Target: {}.", o.target)),
        Block::Para(format!("Reference: {}.", reference_line(o))),
    ];
    summary.extend(key_lines(o).into_iter().map(Block::Para));
    out.push(Section {
        title: "Summary".into(),
        blocks: summary,
    });
    // Chips: metrics, each rule's status, and the cost.
    let chips: Vec<&Point> = o
        .points
        .iter()
        .filter(|p| matches!(p.kind, Kind::Reference | Kind::Chip))
        .collect();
    let mut head: Vec<String> = ["chip", "TPP", "PD", "HBM (TB/s)", "scale-up (GB/s bidir.)"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    head.extend(rules.rules.iter().map(|r| r.id.clone()));
    head.extend(
        [
            "fixed ×GPU-h",
            "re-planned ×GPU-h",
            "re-planned layout",
            "binds",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    let chip_rows: Vec<Vec<String>> = chips
        .iter()
        .map(|p| {
            let mut r = vec![
                p.label.clone(),
                format!("{:.0}", p.metrics.tpp),
                p.metrics.pd.map_or("?".into(), |v| format!("{v:.2}")),
                format!("{:.2}", p.metrics.hbm_bandwidth / 1e12),
                format!("{:.0}", p.scale_up / 1e9),
            ];
            r.extend(p.statuses.iter().map(|s| s.status.clone()));
            let rp = p.replanned.as_ref();
            r.extend([
                mult(p.fixed.multiple),
                rp.map_or("—".into(), |a| mult(a.multiple)),
                rp.map_or("—".into(), |a| {
                    if a.feasible().is_some() {
                        short_layout(a)
                    } else {
                        why(a)
                    }
                }),
                p.binding.resource.clone().unwrap_or_else(|| "none".into()),
            ]);
            r
        })
        .collect();
    let notes: Vec<String> = chips
        .iter()
        .filter_map(|p| p.note.as_ref().map(|n| format!("{}: {n}", p.label)))
        .collect();
    let mut chip_blocks = vec![
        Block::Para(format!(
            "Each chip on its own interconnect in the same fabric, against {} by the same strategy.{}",
            o.reference,
            if notes.is_empty() {
                String::new()
            } else {
                format!(" {}.", notes.join("; "))
            }
        )),
        Block::Table {
            head,
            rows: chip_rows,
        },
    ];
    chip_blocks.push(Block::Para(
        chips
            .iter()
            .map(|p| format!("{}: {}", p.label, p.binding.detail))
            .collect::<Vec<_>>()
            .join(". ")
            + ".",
    ));
    out.push(Section {
        title: "Chips".into(),
        blocks: chip_blocks,
    });
    // Curves and thresholds.
    let mut curves = vec![Block::Para(
        "GPU-hours as a multiple of the unrestricted reference against each cap, on the fixed and the re-planned layout (the reference at its own figure is ×1). A marker missing from a line: the run cannot be laid out there.".into(),
    )];
    for (axis, title, _, _) in AXES {
        let Some(&(_, v)) = o.own.iter().find(|(n, _)| n == axis) else {
            continue;
        };
        if let Some(svg) = curve_svg(o, axis, v) {
            curves.push(Block::Plot {
                file: format!("export-{axis}.svg"),
                alt: format!("cost multiple against the {title} cap"),
                svg,
            });
        }
    }
    curves.push(table(
        &["cap on", "strategy", "×1.1 at", "×1.5 at", "×2 at"],
        threshold_rows(o),
    ));
    out.push(Section {
        title: "Cost against each cap".into(),
        blocks: curves,
    });
    out.push(Section {
        title: "Every point".into(),
        blocks: vec![
            Block::Para(format!(
                "Multiples are of GPU-hours against {} by the same strategy; dollars at each point's price. \"GPUs for same days\": the count that finishes in the reference's days (\"> N\": N did not).",
                o.reference
            )),
            table(&HEAD, rows(o)),
        ],
    });
    let scatter: Vec<(String, Metrics)> =
        chips.iter().map(|p| (p.label.clone(), p.metrics)).collect();
    out.push(Section {
        title: "Chips against the rules".into(),
        blocks: chip_scatters(rules, &scatter)
            .into_iter()
            .map(|(file, svg)| Block::Plot {
                alt: file.trim_end_matches(".svg").replace('-', " "),
                file,
                svg,
            })
            .collect(),
    });
    out.push(Section {
        title: "Rules".into(),
        blocks: vec![table(
            &["rule", "name", "effective", "citation", "note"],
            rules
                .rules
                .iter()
                .map(|r| {
                    vec![
                        r.id.clone(),
                        r.name.clone(),
                        r.effective.clone(),
                        r.citation.clone(),
                        r.note.clone().unwrap_or_default(),
                    ]
                })
                .collect(),
        )],
    });
    out.push(Section {
        title: "Assumptions".into(),
        blocks: o.assumptions.iter().cloned().map(Block::Para).collect(),
    });
    out.push(Section {
        title: "Reproduce".into(),
        blocks: vec![
            Block::Para(format!(
                "Command: `{}`. Built from {}. The same inputs give byte-identical outputs at any thread count.",
                meta.command, meta.version
            )),
            table(
                &["input", "sha256"],
                meta.inputs
                    .iter()
                    .map(|f| vec![f.name.clone(), super::document::sha256(&f.text)])
                    .collect(),
            ),
        ],
    });
    out
}

fn threshold_rows(o: &Outcome) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for (axis, title, _, _) in AXES {
        for strategy in ["fixed", "re-planned"] {
            let at: Vec<&Threshold> = o
                .thresholds
                .iter()
                .filter(|t| t.axis == axis && t.strategy == strategy)
                .collect();
            if at.is_empty() {
                continue;
            }
            let mut r = vec![title.to_string(), strategy.to_string()];
            r.extend(at.iter().map(|t| t.text.clone()));
            rows.push(r);
        }
    }
    rows
}

/// Every output file: (name, contents).
pub fn files(o: &Outcome, rules: &ExportRules, meta: &Meta) -> Vec<(String, String)> {
    let doc = render_doc(
        &format!("trainsim export: {}", o.name),
        &meta.version,
        &meta.command,
        &sections(o, rules, meta),
    );
    let mut th = Vec::new();
    for t in &o.thresholds {
        th.push(vec![
            t.axis.clone(),
            t.strategy.clone(),
            format!("{}", t.level),
            t.cap.map_or(String::new(), |c| format!("{c}")),
            t.text.clone(),
        ]);
    }
    let mut out = vec![
        ("export.html".to_string(), doc.html),
        ("export.md".to_string(), doc.markdown),
        (
            "export.csv".to_string(),
            super::tables::table_csv(&CSV_HEAD, &csv_rows(o)),
        ),
        (
            "thresholds.csv".to_string(),
            super::tables::table_csv(&["axis", "strategy", "level", "cap", "text"], &th),
        ),
        (
            "export.json".to_string(),
            serde_json::to_string_pretty(o).expect("an outcome serialises") + "\n",
        ),
    ];
    out.extend(doc.plots);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The threshold lies where the multiple crosses the level on log(cap): between 400 (×1.0)
    /// and 100 (×2.0), ×1.5 is at 200 (the geometric mean).
    #[test]
    fn thresholds_interpolate_on_log_cap() {
        let c = [(900e9, Some(1.0)), (400e9, Some(1.0)), (100e9, Some(2.0))];
        let t = thresholds("scale_up", "fixed", &c, &[1.5, 2.0, 3.0]);
        assert!((t[0].cap.unwrap() - 200e9).abs() < 1e-3 * 200e9, "{t:?}");
        assert!((t[1].cap.unwrap() - 100e9).abs() < 1.0);
        assert_eq!(t[2].cap, None);
        assert!(t[2].text.contains("not reached"), "{}", t[2].text);
        // A point that cannot run is where the level is reached at the latest.
        let c = [(900e9, Some(1.0)), (50e9, None)];
        let t = thresholds("scale_up", "fixed", &c, &[2.0]);
        assert_eq!(t[0].cap, Some(50e9));
        assert!(t[0].text.contains("cannot be laid out"));
    }
}
