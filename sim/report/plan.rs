//! The plan's results as the report room shows them: every priced layout, the search record,
//! the ranked table, the front and the pick ([`Outcome`], filled by `scenario::plan`), and the
//! planning report, the Pareto plot and the tables written from them.

use crate::domain::{Recompute, Schedule};
use serde::Serialize;
use std::collections::BTreeMap;

/// One searched layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Choice {
    pub tp: u64,
    pub pp: u64,
    pub cp: u64,
    pub ep: u64,
    pub dp: u64,
    pub vpp: u64,
    pub schedule: Schedule,
    pub micro_batch: u64,
    pub zero: u8,
    pub overlap_param_gather: bool,
    pub comm_sms: u32,
    pub recompute: Recompute,
    pub global_batch: u64,
}

impl Choice {
    /// `TP1 PP16 EP64 CP1 DP128 · dualpipe · mb 1 · ZeRO-1 · 20 SMs · selective`.
    pub fn label(&self) -> String {
        let sched = match self.schedule {
            Schedule::Interleaved => format!("interleaved×{}", self.vpp),
            s => s.name().to_string(),
        };
        format!(
            "TP{} PP{} EP{} CP{} DP{} · {sched} · mb {} · ZeRO-{}{} · {} SMs · {} recompute · batch {}",
            self.tp,
            self.pp,
            self.ep,
            self.cp,
            self.dp,
            self.micro_batch,
            self.zero,
            if self.overlap_param_gather { "+overlap" } else { "" },
            self.comm_sms,
            self.recompute.name(),
            self.global_batch
        )
    }
}

/// What one engine says of a configuration over the whole run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Figures {
    /// The main phase's step (after any batch ramp).
    pub step_s: f64,
    pub mfu: f64,
    /// Days, dollars and GPU-hours are effective: with the goodput model's failures,
    /// checkpoints, restarts and stragglers (a larger cluster is interrupted more often).
    pub days: f64,
    /// GPU-hours plus, when owned, electricity.
    pub dollars: f64,
    pub gpu_hours: f64,
    /// Without failures.
    pub ideal_gpu_hours: f64,
    /// Effective training time ratio.
    pub ettr: f64,
    pub mwh: f64,
    /// Peak memory per GPU of the main phase, GiB.
    pub memory_gib: f64,
    /// Per main-phase step: compute, bubble, and exposed dp, ep, tp, pp, cp traffic, seconds.
    pub compute_s: f64,
    pub bubble_s: f64,
    pub exposed_s: [f64; 5],
    pub optimizer_s: f64,
}

/// Exposed-traffic kinds of [`Figures::exposed_s`], in order.
pub const EXPOSED: [&str; 5] = ["dp", "ep", "tp", "pp", "cp"];

/// Where a priced configuration stands against the constraints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Feasible,
    OverHbm,
    OverDeadline,
    OverBudget,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Feasible => "feasible",
            Status::OverHbm => "over HBM",
            Status::OverDeadline => "over deadline",
            Status::OverBudget => "over budget",
        }
    }
}

/// One priced configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Priced {
    pub candidate: usize,
    pub choice: Choice,
    pub analytic: Figures,
    pub analytic_status: Status,
    /// The discrete-event engine's figures, for the re-ranked ones.
    pub des: Option<Figures>,
    pub des_status: Option<Status>,
}

impl Priced {
    /// The figures the ranking uses: the DES's where it ran.
    pub fn best(&self) -> (&Figures, Status) {
        match (&self.des, self.des_status) {
            (Some(f), Some(s)) => (f, s),
            _ => (&self.analytic, self.analytic_status),
        }
    }
}

/// What was searched on one candidate, and what removed what.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Record {
    /// Every combination of the searched values.
    pub considered: u64,
    /// Removed before pricing, by reason.
    pub pruned: BTreeMap<String, u64>,
    pub priced: u64,
    pub over_hbm: u64,
    pub over_deadline: u64,
    pub over_budget: u64,
    pub feasible: u64,
    /// The cluster itself could not be used (with why).
    pub unusable: Option<String>,
    /// Each other simulated phase: (name, its fastest layout, step seconds, layouts priced).
    pub side_phases: Vec<(String, String, f64, u64)>,
}

/// The sensitivity of the pick to prices and kernel speed.
#[derive(Debug, Clone, Serialize)]
pub struct Sensitivity {
    pub what: String,
    /// The pick's index into `priced`, or none feasible.
    pub pick: Option<usize>,
    /// What it is compared with: the plan's pick (prices), or the analytic engine's own pick at
    /// nominal kernels (kernel rows).
    pub versus: Option<usize>,
    pub days: Option<f64>,
    pub dollars: Option<f64>,
}

/// The whole outcome.
pub struct Outcome {
    pub priced: Vec<Priced>,
    pub records: Vec<Record>,
    /// Indices into `priced`: the ranked table (the DES-re-ranked first, by the objective).
    pub ranked: Vec<usize>,
    /// Indices into `priced` on the days-against-dollars front (analytic, within HBM), by days.
    pub front: Vec<usize>,
    pub pick: Option<usize>,
    pub sensitivity: Vec<Sensitivity>,
    /// When nothing is feasible: what removed the candidates and what to relax.
    pub infeasible: Option<Vec<String>>,
    /// The workload's own layout where it was priced (index into `priced`, and its place among
    /// the feasible by the analytic engine, 0 first), re-priced by the DES as a reference.
    pub own: Vec<(usize, Option<usize>)>,
    /// Analytic configurations priced, and the seconds that took (for speed reports).
    pub priced_count: u64,
    pub analytic_s: f64,
    pub des_s: f64,
    /// The constraints, for the plot's limit lines.
    pub deadline_days: Option<f64>,
    pub budget_usd: Option<f64>,
}

use super::document::{render_doc, table, thousands, Block, InputFile, Section};
use super::plots::{self, Layer, Mark};
use super::tables::{finish, table_csv};
use std::fmt::Write;

/// How to reproduce a plan.
pub struct Meta {
    pub title: String,
    pub command: String,
    pub version: String,
    /// The plan file (if any), the workload and every topology read, with their text.
    pub inputs: Vec<InputFile>,
}

/// A candidate cluster as the report names it.
#[derive(Debug, Clone)]
pub struct CandidateView {
    pub name: String,
    pub chip: String,
    pub gpus: u64,
    pub topology: String,
    pub price: String,
    pub hbm_gib: f64,
}

/// Everything the planning report shows.
pub struct View<'a> {
    pub workload: String,
    pub model: String,
    pub main_phase: String,
    pub objective: &'static str,
    /// (constraint, value) as given.
    pub constraints: Vec<(String, String)>,
    /// (dimension, the values searched).
    pub space: Vec<(String, String)>,
    pub candidates: Vec<CandidateView>,
    pub outcome: &'a Outcome,
}

fn gib(v: f64) -> String {
    format!("{v:.1}")
}

fn mwh(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.0}")
    }
}

/// `$5.619M`, or `$12,345` below a million.
pub fn money(v: f64) -> String {
    if v >= 1e6 {
        format!("${:.3}M", v / 1e6)
    } else {
        format!("${}", thousands(v))
    }
}

/// The ranked table's rows: rank, cluster, layout, both engines' figures, status.
fn ranked_rows(v: &View) -> Vec<Vec<String>> {
    let o = v.outcome;
    o.ranked
        .iter()
        .take(v.top_rows())
        .enumerate()
        .map(|(k, &i)| {
            let p = &o.priced[i];
            let (f, s) = p.best();
            let des = p
                .des
                .map_or("—".to_string(), |d| format!("{:.2}", d.step_s));
            vec![
                format!("{}{}", k + 1, if Some(i) == o.pick { " ★" } else { "" }),
                v.candidates[p.candidate].name.clone(),
                p.choice.label(),
                format!("{:.2}", p.analytic.step_s),
                des,
                format!("{:.1}%", f.mfu * 100.0),
                format!("{:.1}", f.days),
                money(f.dollars),
                mwh(f.mwh),
                gib(f.memory_gib),
                s.name().to_string(),
            ]
        })
        .collect()
}

const RANKED_HEAD: [&str; 11] = [
    "rank",
    "cluster",
    "layout",
    "step (s), analytic",
    "step (s), DES",
    "MFU",
    "days",
    "dollars",
    "MWh",
    "memory (GiB/GPU)",
    "status",
];

impl View<'_> {
    fn top_rows(&self) -> usize {
        self.outcome.ranked.len()
    }

    /// The figures of the pick, or none.
    fn pick(&self) -> Option<(&Priced, &Figures)> {
        self.outcome.pick.map(|i| {
            let p = &self.outcome.priced[i];
            (p, p.best().0)
        })
    }
}

/// Why `other` lost to the pick: the largest of its per-step disadvantages (memory when it does
/// not fit; else bubble, exposed traffic by kind, compute, the optimizer), or its cluster's
/// price or size.
pub fn why_lost(pick: &Figures, other: &Figures, other_status: Status) -> String {
    match other_status {
        Status::OverHbm => {
            return format!("memory: {:.1} GiB per GPU is above HBM", other.memory_gib)
        }
        Status::OverDeadline => return format!("deadline: {:.1} days", other.days),
        Status::OverBudget => return format!("budget: {}", money(other.dollars)),
        Status::Feasible => {}
    }
    let mut parts: Vec<(String, f64)> = vec![
        ("bubble".into(), other.bubble_s - pick.bubble_s),
        ("compute".into(), other.compute_s - pick.compute_s),
        ("optimizer".into(), other.optimizer_s - pick.optimizer_s),
    ];
    for (k, name) in EXPOSED.iter().enumerate() {
        parts.push((
            format!("exposed {} traffic", name.to_uppercase()),
            other.exposed_s[k] - pick.exposed_s[k],
        ));
    }
    parts.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let (what, by) = &parts[0];
    if *by > 0.0 && other.step_s > pick.step_s {
        format!(
            "{what}: +{by:.2} s per step ({:.2} against {:.2} s)",
            other.step_s, pick.step_s
        )
    } else if other.dollars > pick.dollars {
        format!(
            "price and size: {} against {} at a step of {:.2} s",
            money(other.dollars),
            money(pick.dollars),
            other.step_s
        )
    } else {
        format!("days: {:.1} against {:.1}", other.days, pick.days)
    }
}

/// The search record, one row per candidate: considered, pruned by reason, priced, and what the
/// constraints removed.
fn record_rows(v: &View) -> Vec<Vec<String>> {
    v.outcome
        .records
        .iter()
        .zip(&v.candidates)
        .map(|(r, c)| {
            let pruned = if let Some(u) = &r.unusable {
                format!("not searched: {u}")
            } else {
                r.pruned
                    .iter()
                    .map(|(k, n)| format!("{k}: {}", thousands(*n as f64)))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            vec![
                c.name.clone(),
                thousands(r.considered as f64),
                pruned,
                thousands(r.priced as f64),
                thousands(r.over_hbm as f64),
                thousands(r.over_deadline as f64),
                thousands(r.over_budget as f64),
                thousands(r.feasible as f64),
            ]
        })
        .collect()
}

const RECORD_HEAD: [&str; 8] = [
    "cluster",
    "considered",
    "pruned before pricing",
    "priced",
    "over HBM",
    "over deadline",
    "over budget",
    "feasible",
];

/// The recommendation in a sentence, or why there is none.
fn headline(v: &View) -> String {
    match v.pick() {
        Some((p, f)) => format!(
            "Recommendation: {} with {} — {:.2} s per step ({}), {:.1} days, {}, {} MWh, {:.1} GiB per GPU.",
            v.candidates[p.candidate].name,
            p.choice.label(),
            f.step_s,
            if p.des.is_some() { "DES" } else { "analytic" },
            f.days,
            money(f.dollars),
            mwh(f.mwh),
            f.memory_gib
        ),
        None => "No configuration meets the constraints.".to_string(),
    }
}

/// Where the workload's own layout stands against the pick, one sentence per cluster.
fn own_lines(v: &View) -> Vec<String> {
    let o = v.outcome;
    let feasible = o
        .priced
        .iter()
        .filter(|p| p.analytic_status == Status::Feasible)
        .count();
    o.own
        .iter()
        .map(|&(i, rank)| {
            let p = &o.priced[i];
            let (f, s) = p.best();
            let vs = match v.pick() {
                Some((pk, pf)) if pk.candidate == p.candidate => format!(
                    "; the pick's step is {:+.1}% against it, its dollars {:+.1}%",
                    (pf.step_s / f.step_s - 1.0) * 100.0,
                    (pf.dollars / f.dollars - 1.0) * 100.0
                ),
                Some((_, pf)) => format!(
                    "; the pick (on another cluster) takes {:+.1}% the days and {:+.1}% the dollars",
                    (pf.days / f.days - 1.0) * 100.0,
                    (pf.dollars / f.dollars - 1.0) * 100.0
                ),
                None => String::new(),
            };
            format!(
                "The workload's own layout on {} ({}): {} by the analytic engine, {:.2} s per step (analytic) and {} (DES), {:.1} days, {}, {}{vs}.",
                v.candidates[p.candidate].name,
                p.choice.label(),
                match rank {
                    Some(r) => format!("rank {} of {feasible} feasible", r + 1),
                    None => format!("not feasible ({})", p.analytic_status.name()),
                },
                p.analytic.step_s,
                p.des.map_or("—".into(), |d| format!("{:.2} s", d.step_s)),
                f.days,
                money(f.dollars),
                s.name()
            )
        })
        .collect()
}

/// The ranked table as the terminal shows it.
pub fn text(v: &View, meta: &Meta) -> String {
    let o = v.outcome;
    let mut t = format!(
        "trainsim plan · {} · objective {} · {} clusters\n",
        meta.title,
        v.objective,
        v.candidates.len()
    );
    let considered: u64 = o.records.iter().map(|r| r.considered).sum();
    let _ = writeln!(
        t,
        "searched    {} layouts, {} priced by the analytic engine in {:.1} s ({:.0}/s), {} re-ranked by the DES in {:.1} s",
        thousands(considered as f64),
        thousands(o.priced_count as f64),
        o.analytic_s,
        o.priced_count as f64 / o.analytic_s.max(1e-9),
        o.priced.iter().filter(|p| p.des.is_some()).count(),
        o.des_s
    );
    t += &super::tables::aligned(&RANKED_HEAD, &ranked_rows(v));
    let _ = writeln!(t, "{}", headline(v));
    for l in own_lines(v) {
        let _ = writeln!(t, "{l}");
    }
    if let Some(why) = &o.infeasible {
        for w in why {
            let _ = writeln!(t, "  · {w}");
        }
    }
    t
}

fn csv_num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        String::new()
    }
}

/// `v` to `d` decimals, trailing zeros dropped (plan.csv has a row per priced layout: millions).
fn fixed(v: f64, d: usize) -> String {
    if !v.is_finite() {
        return String::new();
    }
    let s = format!("{v:.d$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// `plan.csv`: every priced configuration, in enumeration order, with both engines' figures.
pub fn priced_csv(v: &View) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut head: Vec<String> = [
        "cluster",
        "chip",
        "gpus",
        "tp",
        "pp",
        "cp",
        "ep",
        "dp",
        "vpp",
        "schedule",
        "micro_batch",
        "zero",
        "overlap_param_gather",
        "comm_sms",
        "recompute",
        "global_batch",
        "step_s",
        "mfu",
        "days",
        "dollars",
        "gpu_hours",
        "ideal_gpu_hours",
        "ettr",
        "mwh",
        "memory_gib",
        "compute_s",
        "bubble_s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    head.extend(EXPOSED.iter().map(|k| format!("exposed_{k}_s")));
    head.extend(
        [
            "optimizer_s",
            "status",
            "pareto_front",
            "des_step_s",
            "des_days",
            "des_dollars",
            "des_memory_gib",
            "des_status",
        ]
        .map(String::from),
    );
    w.write_record(&head).expect("CSV");
    let mut front = v.outcome.front.clone();
    front.sort_unstable();
    for (i, p) in v.outcome.priced.iter().enumerate() {
        let c = &v.candidates[p.candidate];
        let ch = &p.choice;
        let f = &p.analytic;
        let mut r = vec![
            c.name.clone(),
            c.chip.clone(),
            c.gpus.to_string(),
            ch.tp.to_string(),
            ch.pp.to_string(),
            ch.cp.to_string(),
            ch.ep.to_string(),
            ch.dp.to_string(),
            ch.vpp.to_string(),
            ch.schedule.name().to_string(),
            ch.micro_batch.to_string(),
            ch.zero.to_string(),
            ch.overlap_param_gather.to_string(),
            ch.comm_sms.to_string(),
            ch.recompute.name().to_string(),
            ch.global_batch.to_string(),
        ];
        // Days and dollars (the objectives) in full; the rest to a tenth of a millisecond, a
        // hundredth of a GiB or MWh, a whole GPU-hour.
        r.extend([
            fixed(f.step_s, 4),
            fixed(f.mfu, 4),
            csv_num(f.days),
            csv_num(f.dollars),
            fixed(f.gpu_hours, 0),
            fixed(f.ideal_gpu_hours, 0),
            fixed(f.ettr, 4),
            fixed(f.mwh, 2),
            fixed(f.memory_gib, 2),
            fixed(f.compute_s, 4),
            fixed(f.bubble_s, 4),
        ]);
        r.extend(f.exposed_s.map(|v| fixed(v, 4)));
        r.push(fixed(f.optimizer_s, 4));
        r.push(p.analytic_status.name().to_string());
        r.push(front.binary_search(&i).is_ok().to_string());
        match (&p.des, p.des_status) {
            (Some(d), Some(s)) => {
                r.extend([
                    fixed(d.step_s, 4),
                    csv_num(d.days),
                    csv_num(d.dollars),
                    fixed(d.memory_gib, 2),
                ]);
                r.push(s.name().to_string());
            }
            _ => r.extend(std::iter::repeat_n(String::new(), 5)),
        }
        w.write_record(&r).expect("CSV");
    }
    finish(w)
}

/// The Pareto plot: every layout within HBM, the front, the pick, the deadline and budget.
pub fn pareto_svg(v: &View) -> String {
    let o = v.outcome;
    // The window: out to 2.5× the pick's (or the deadline's) days and 2.5× its dollars, so that
    // layouts hundreds of times slower or dearer do not squeeze the choice into a corner.
    let ref_days = o
        .pick
        .map(|i| o.priced[i].analytic.days)
        .into_iter()
        .chain(o.deadline_days)
        .chain(o.front.first().map(|&i| o.priced[i].analytic.days))
        .fold(0.0, f64::max);
    let ref_dollars = o
        .pick
        .map(|i| o.priced[i].analytic.dollars)
        .or_else(|| o.front.last().map(|&i| o.priced[i].analytic.dollars))
        .into_iter()
        .chain(o.budget_usd)
        .fold(0.0, f64::max);
    let (x_max, y_max) = (2.5 * ref_days, 2.5 * ref_dollars / 1e6);
    let inside = |p: &(f64, f64)| p.0 <= x_max && p.1 <= y_max;
    let all: Vec<(f64, f64)> = o
        .priced
        .iter()
        .filter(|p| p.analytic_status != Status::OverHbm)
        .map(|p| (p.analytic.days, p.analytic.dollars / 1e6))
        .collect();
    let beyond = all.iter().filter(|p| !inside(p)).count();
    let within: Vec<(f64, f64)> = all.into_iter().filter(inside).collect();
    let front: Vec<(f64, f64)> = o
        .front
        .iter()
        .map(|&i| {
            (
                o.priced[i].analytic.days,
                o.priced[i].analytic.dollars / 1e6,
            )
        })
        .filter(inside)
        .collect();
    let mut layers = vec![
        Layer {
            name: if beyond > 0 {
                format!("priced layouts within HBM (analytic; {beyond} beyond 2.5× the pick's days or dollars not drawn)")
            } else {
                "priced layouts within HBM (analytic)".into()
            },
            style: Mark::Cloud,
            points: within,
        },
        Layer {
            name: "Pareto front (analytic)".into(),
            style: Mark::Line,
            points: front,
        },
    ];
    if let Some((p, _)) = v.pick() {
        layers.push(Layer {
            name: "chosen (analytic)".into(),
            style: Mark::Highlight,
            points: vec![(p.analytic.days, p.analytic.dollars / 1e6)],
        });
        if let Some(d) = &p.des {
            layers.push(Layer {
                name: "chosen (DES)".into(),
                style: Mark::Highlight,
                points: vec![(d.days, d.dollars / 1e6)],
            });
        }
    }
    let (deadline, budget) = (o.deadline_days, o.budget_usd);
    plots::scatter(
        &format!("{}: days against dollars", v.workload),
        "wall-clock for the whole run (days)",
        "cost of the whole run (million USD)",
        &layers,
        deadline.map(|d| (d, "deadline")),
        budget.map(|b| (b / 1e6, "budget")),
    )
}

fn sections(v: &View, meta: &Meta, pareto: &str) -> Vec<Section> {
    let o = v.outcome;
    let mut rec = vec![Block::Para(headline(v))];
    rec.extend(own_lines(v).into_iter().map(Block::Para));
    if let Some(why) = &o.infeasible {
        rec.push(Block::Para(
            "Nothing is feasible. What removed the candidates, and what to relax:".into(),
        ));
        rec.push(table(
            &["constraint", "what to relax"],
            why.iter()
                .enumerate()
                .map(|(k, w)| vec![(k + 1).to_string(), w.clone()])
                .collect(),
        ));
    }
    if let Some((pick, pf)) = v.pick() {
        let lost: Vec<Vec<String>> = o
            .ranked
            .iter()
            .filter(|&&i| Some(i) != o.pick)
            .take(10)
            .map(|&i| {
                let p = &o.priced[i];
                let (f, s) = p.best();
                let why = if p.des.is_none() && pick.des.is_some() {
                    "not re-priced by the DES: its analytic figures are not comparable to the pick's DES ones".to_string()
                } else {
                    why_lost(pf, f, s)
                };
                vec![
                    v.candidates[p.candidate].name.clone(),
                    p.choice.label(),
                    money(f.dollars),
                    format!("{:.1}", f.days),
                    why,
                ]
            })
            .collect();
        rec.push(Block::Para(format!(
            "Runners-up, and why each lost to the pick ({} on {}):",
            pick.choice.label(),
            v.candidates[pick.candidate].name
        )));
        rec.push(table(
            &["cluster", "layout", "dollars", "days", "why it lost"],
            lost,
        ));
    }
    let mut sens_rows = Vec::new();
    for s in &o.sensitivity {
        let (what, layout) = match s.pick {
            Some(i) => {
                let p = &o.priced[i];
                (v.candidates[p.candidate].name.clone(), p.choice.label())
            }
            None => ("none feasible".into(), String::new()),
        };
        let same = match (s.pick, s.versus) {
            (Some(a), Some(b)) if a == b => "same",
            (Some(_), Some(_)) => "changes",
            _ => "—",
        };
        sens_rows.push(vec![
            s.what.clone(),
            what,
            layout,
            s.days.map_or("—".into(), |d| format!("{d:.1}")),
            s.dollars.map_or("—".into(), money),
            same.into(),
        ]);
    }
    let constraints = if v.constraints.is_empty() {
        "none beyond HBM".to_string()
    } else {
        v.constraints
            .iter()
            .map(|(k, val)| format!("{k} {val}"))
            .collect::<Vec<_>>()
            .join(", ")
            + ", and HBM"
    };
    vec![
        Section {
            title: "Recommendation".into(),
            blocks: rec,
        },
        Section {
            title: "Ranked".into(),
            blocks: vec![
                Block::Para(format!(
                    "The best {} by the analytic engine re-priced by the discrete-event engine and ranked by its figures (★ the pick), then the next by the analytic engine. Objective: {}; constraints: {constraints}. Days and dollars cover the whole run: the main phase ({}) at the layout shown, every other simulated phase at its own fastest layout on that cluster, reported phases as given.",
                    o.priced.iter().filter(|p| p.des.is_some()).count(),
                    v.objective,
                    v.main_phase
                )),
                table(&RANKED_HEAD, ranked_rows(v)),
            ],
        },
        Section {
            title: "Pareto front".into(),
            blocks: vec![
                Block::Plot {
                    file: "pareto.svg".into(),
                    alt: "days against dollars of every priced layout within HBM, the front and the pick".into(),
                    svg: pareto.to_string(),
                },
                table(
                    &["cluster", "layout", "days", "dollars", "step (s)"],
                    o.front
                        .iter()
                        .map(|&i| {
                            let p = &o.priced[i];
                            vec![
                                v.candidates[p.candidate].name.clone(),
                                p.choice.label(),
                                format!("{:.1}", p.analytic.days),
                                money(p.analytic.dollars),
                                format!("{:.2}", p.analytic.step_s),
                            ]
                        })
                        .collect(),
                ),
            ],
        },
        Section {
            title: "Sensitivity".into(),
            blocks: vec![
                Block::Para("The pick again with every candidate's price scaled (by the pick's own rule: the DES's figures where it ran), and with every kernel efficiency (GEMM, attention, HBM streaming) scaled: the best 256 layouts within HBM re-priced by the analytic engine, compared with that engine's own pick at nominal kernels.".into()),
                table(&["what-if", "cluster", "layout", "days", "dollars", "against ×1"], sens_rows),
            ],
        },
        Section {
            title: "Search record".into(),
            blocks: vec![
                Block::Para("Every combination of the searched values, what removed it before pricing (divisibility, the layout validator, the memory floor: a lower bound of the fullest rank's memory), and what the constraints removed after.".into()),
                table(&RECORD_HEAD, record_rows(v)),
                table(
                    &["dimension", "values searched"],
                    v.space.iter().map(|(k, val)| vec![k.clone(), val.clone()]).collect(),
                ),
                table(
                    &["cluster", "phase", "its fastest layout", "step (s)", "layouts priced"],
                    o.records
                        .iter()
                        .zip(&v.candidates)
                        .flat_map(|(r, c)| {
                            r.side_phases.iter().map(move |(ph, l, s, n)| {
                                vec![c.name.clone(), ph.clone(), l.clone(), format!("{s:.2}"), thousands(*n as f64)]
                            })
                        })
                        .collect(),
                ),
            ],
        },
        Section {
            title: "Candidates".into(),
            blocks: vec![table(
                &["cluster", "chip", "GPUs", "topology", "price", "HBM (GiB)"],
                v.candidates
                    .iter()
                    .map(|c| {
                        vec![
                            c.name.clone(),
                            c.chip.clone(),
                            c.gpus.to_string(),
                            c.topology.clone(),
                            c.price.clone(),
                            gib(c.hbm_gib),
                        ]
                    })
                    .collect(),
            )],
        },
        Section {
            title: "Reproduce".into(),
            blocks: vec![
                Block::Para(format!(
                    "Command: `{}`. Built from {}. The same plan gives byte-identical outputs at any thread count; ties on the objective break by fewer GPUs, then by the search's enumeration order.",
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
        },
    ]
}

/// Every output file of a plan: (name, contents).
pub fn files(v: &View, meta: &Meta) -> Vec<(String, String)> {
    let pareto = pareto_svg(v);
    let doc = render_doc(
        &format!("trainsim plan: {}", meta.title),
        &meta.version,
        &meta.command,
        &sections(v, meta, &pareto),
    );
    let mut out = vec![
        ("plan.html".to_string(), doc.html),
        ("plan.md".to_string(), doc.markdown),
        ("plan.csv".to_string(), priced_csv(v)),
        (
            "ranked.csv".to_string(),
            table_csv(&RANKED_HEAD, &ranked_rows(v)),
        ),
        (
            "search.csv".to_string(),
            table_csv(&RECORD_HEAD, &record_rows(v)),
        ),
    ];
    out.extend(doc.plots);
    out
}
