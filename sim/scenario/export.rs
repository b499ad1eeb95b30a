//! `trainsim export`: what an export cap costs a training run, before and after the trainer
//! adapts its layout.
//!
//! A target run (a workload's main phase, by default DeepSeek-V3's 14.8T pre-training tokens)
//! is priced on an unrestricted reference chip, on named catalog chips (each with its own
//! interconnect), and on the reference with caps imposed (`hw::export::derive`): scale-up
//! bandwidth, scale-out bandwidth per GPU, TPP and HBM bandwidth, one axis at a time or crossed.
//! Every chip sits in the same template fabric at the same GPU count.
//!
//! At every point there are two answers, both priced by the discrete-event engine: the fixed
//! layout (the workload's own), and the re-planned layout (the cheapest the plan search finds
//! on that cluster within bounded search, the fixed layout among the candidates, so it is
//! never dearer). Each is given as a multiple of the reference's answer by the same strategy,
//! with the GPUs that would finish in the reference's days (the same layout widened in data
//! parallelism, priced) and the resource that binds (the capped one where a single resource
//! falls short of the reference; otherwise the one whose restoration to the reference's figure
//! cuts the step most, priced at the point's layout).
//!
//! Order: points are priced in their fixed order (reference, chips, each axis, crossings),
//! in parallel, and results keep it; identical chips are priced once.

use crate::config::export::{CapAxis, ExportSpec};
use crate::config::plan::{ConstraintsSpec, Objective, SearchSpec};
use crate::config::topology::TopologySpec;
use crate::config::workload::{DpSpec, PricingSpec, WorkloadSpec};
use crate::config::{parse_doc, Diagnostic, Source};
use crate::domain::Dtype;
use crate::hw::export::{derive, Caps, ExportRules, Metrics};
use crate::hw::{Calibration, Catalog, GpuSpec};
use crate::report::export::{
    thresholds, Answer, Binding, Kind, Multiple, Outcome, Point, SameDays, AXES,
};
use crate::scenario::plan::{self, Candidate, Choice, Figures, Plan, Status};
use crate::workload::model::Model;
use rayon::prelude::*;
use std::collections::BTreeMap;

pub use crate::scenario::validate::ReadSource;

/// The embedded default: DeepSeek-V3's pre-training priced on H100 and six other chips, and
/// the H100 under four caps.
pub const DEFAULT: (&str, &str) = (
    "workloads/exports/deepseek-v3.yaml",
    include_str!("../../workloads/exports/deepseek-v3.yaml"),
);

/// Cost levels whose caps the outputs name.
pub const LEVELS: [f64; 3] = [1.1, 1.5, 2.0];

/// One point to price.
#[derive(Debug, Clone)]
pub struct PointSpec {
    pub label: String,
    pub kind: Kind,
    /// The name the cluster's catalog knows the chip by.
    pub chip: String,
    pub gpu: GpuSpec,
    pub pricing: PricingSpec,
    pub price_label: String,
}

/// An export scenario read and checked.
pub struct Export {
    pub name: String,
    pub file: Source,
    pub workload: Source,
    pub template: Source,
    pub template_spec: TopologySpec,
    pub gpus: u64,
    pub reference: String,
    pub points: Vec<PointSpec>,
    pub workload_spec: WorkloadSpec,
    pub model: Model,
    pub main_phase: usize,
    pub search: SearchSpec,
    pub replan: bool,
    pub same_days: bool,
    pub rules: ExportRules,
}

/// The re-planning search's bounds where the file gives none: the workload's micro-batch and
/// ZeRO stage, or the next micro-batch up; its recompute and batch; tp up to a node, cp up to 2,
/// every schedule; four DES re-ranks.
fn default_search(w: &WorkloadSpec) -> SearchSpec {
    let mb = w.parallelism.micro_batch;
    SearchSpec {
        global_batch: vec![w.training.global_batch],
        recompute: vec![w.training.recompute],
        zero: vec![w.parallelism.zero],
        micro_batch: vec![mb, mb * 2],
        max_cp: Some(2),
        top_k: 4,
        ..SearchSpec::default()
    }
}

/// Reads and checks an export scenario. `workload` overrides the file's `workload:`.
pub fn prepare(
    spec: &ExportSpec,
    src: &Source,
    workload: Option<Source>,
    read: ReadSource,
) -> Result<Export, Diagnostic> {
    let err = |at: &str, found: String, expected: &str| {
        Diagnostic::new(&src.name, found, expected)
            .at(at)
            .locate_in(&src.text)
    };
    let wsrc = match (workload, &spec.workload) {
        (Some(w), _) => w,
        (None, Some(p)) => read(&plan::beside(src, p))?,
        (None, None) => Source::embedded(
            crate::pipeline::DEFAULT_WORKLOAD.0,
            crate::pipeline::DEFAULT_WORKLOAD.1,
        ),
    };
    let (mut wspec, model, main) = plan::load_workload(&wsrc)?;
    // The phases to price: the main one unless named.
    let keep: Vec<usize> = if spec.phases.is_empty() {
        vec![main]
    } else {
        let mut v = Vec::new();
        for (k, name) in spec.phases.iter().enumerate() {
            match wspec.training.phases.iter().position(|p| &p.name == name) {
                Some(i) if wspec.training.phases[i].reported_gpu_hours.is_none() => v.push(i),
                Some(_) => return Err(err(
                    &format!("phases.{k}"),
                    format!("\"{name}\", a reported phase"),
                    "a simulated phase (a reported phase's GPU-hours cannot move with the chip)",
                )),
                None => {
                    return Err(err(
                        &format!("phases.{k}"),
                        format!("\"{name}\""),
                        &format!(
                            "a phase of {}: {}",
                            wsrc.name,
                            wspec
                                .training
                                .phases
                                .iter()
                                .map(|p| p.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ))
                }
            }
        }
        if !v.contains(&main) {
            return Err(err(
                "phases",
                format!("{:?}", spec.phases),
                &format!(
                    "the main phase ({}) among them: it is the one the layout search lays out",
                    wspec.training.phases[main].name
                ),
            ));
        }
        v
    };
    let phases: Vec<_> = keep
        .iter()
        .map(|&i| wspec.training.phases[i].clone())
        .collect();
    let main_phase = phases
        .iter()
        .position(|p| p.name == wspec.training.phases[main].name)
        .expect("kept");
    wspec.training.phases = phases;

    let tsrc = match &spec.template {
        Some(t) => read(&plan::beside(src, t))?,
        None => Source::embedded(
            crate::pipeline::DEFAULT_TOPOLOGY.0,
            crate::pipeline::DEFAULT_TOPOLOGY.1,
        ),
    };
    let template: TopologySpec = parse_doc(&tsrc, &[])?;
    let gpn = u64::from(template.gpus_per_node);
    let gpus = spec.gpus.unwrap_or(u64::from(template.nodes) * gpn);
    if gpus == 0 || gpus % gpn != 0 {
        return Err(err(
            "gpus",
            gpus.to_string(),
            &format!(
                "a positive number of whole {gpn}-GPU nodes of {}",
                tsrc.name
            ),
        ));
    }
    let catalog = crate::builtin::catalog();
    let chip_of = |name: &str, at: &str| -> Result<(String, GpuSpec), Diagnostic> {
        catalog
            .get(name)
            .map(|(n, g)| (n.to_string(), g.clone()))
            .ok_or_else(|| {
                err(
                    at,
                    format!("\"{name}\""),
                    &format!("a chip of the catalog: {}", catalog.names().join(", ")),
                )
            })
    };
    let price = |p: Option<&crate::config::plan::PriceSpec>, at: &str| {
        let p = p.or(spec.price.as_ref());
        plan::pricing_of(p, &wspec.pricing)
            .map(|pr| {
                let label = plan::price_label(p, &pr);
                (pr, label)
            })
            .map_err(|(f, e)| err(at, f, e))
    };
    let (ref_name, ref_gpu) = chip_of(spec.reference.chip(), "reference")?;
    let (ref_pricing, ref_label) = price(spec.reference.price(), "reference.price")?;
    let mut points = vec![PointSpec {
        label: format!("{ref_name} (reference)"),
        kind: Kind::Reference,
        chip: ref_name.clone(),
        gpu: ref_gpu.clone(),
        pricing: ref_pricing.clone(),
        price_label: ref_label.clone(),
    }];
    for (i, c) in spec.chips.iter().enumerate() {
        let (name, gpu) = chip_of(c.chip(), &format!("chips.{i}"))?;
        let (pricing, label) = price(c.price(), &format!("chips.{i}.price"))?;
        points.push(PointSpec {
            label: name.clone(),
            kind: Kind::Chip,
            chip: name,
            gpu,
            pricing,
            price_label: label,
        });
    }
    // Caps: each axis's values in the axis's stored unit (bytes/s bidirectional for scale-up,
    // per direction per GPU for scale-out, TPP, bytes/s for HBM).
    let g = &spec.caps;
    let values: BTreeMap<CapAxis, Vec<f64>> = [
        (
            CapAxis::ScaleUp,
            g.scale_up
                .iter()
                .map(|l| l.per_direction().bytes_per_s * 2.0)
                .collect::<Vec<_>>(),
        ),
        (
            CapAxis::ScaleOut,
            g.scale_out
                .iter()
                .map(|l| l.per_direction().bytes_per_s)
                .collect(),
        ),
        (CapAxis::Tpp, g.tpp.clone()),
        (CapAxis::Hbm, g.hbm.iter().map(|b| b.bytes_per_s).collect()),
    ]
    .into_iter()
    .collect();
    for (axis, vs) in &values {
        if let Some(k) = vs.iter().position(|v| !(v.is_finite() && *v > 0.0)) {
            return Err(err(
                &format!("caps.{}.{k}", axis.key()),
                format!("{}", vs[k]),
                "a positive cap",
            ));
        }
    }
    let nics = template.scale_out.nics_per_node.max(1);
    let cap_point = |caps: &[(CapAxis, f64)]| -> PointSpec {
        let mut c = Caps::default();
        for &(a, v) in caps {
            match a {
                CapAxis::ScaleUp => c.scale_up = Some(v),
                // Per GPU: the node's NICs together carry the GPUs' share.
                CapAxis::ScaleOut => c.nic = Some(v * gpn as f64 / f64::from(nics)),
                CapAxis::Tpp => c.tpp = Some(v),
                CapAxis::Hbm => c.hbm = Some(v),
            }
        }
        let label = caps
            .iter()
            .map(|&(a, v)| crate::report::export::cap_text(a.key(), v))
            .collect::<Vec<_>>()
            .join(" × ");
        let mut d = derive(&ref_gpu, c, &format!("{ref_name} capped: {label}"));
        d.aliases.clear();
        PointSpec {
            label: label.clone(),
            kind: Kind::Capped(
                caps.iter()
                    .map(|&(a, v)| (a.key().to_string(), v))
                    .collect(),
            ),
            chip: format!("{ref_name} [{label}]"),
            gpu: d,
            pricing: ref_pricing.clone(),
            price_label: ref_label.clone(),
        }
    };
    for axis in CapAxis::ALL {
        for &v in &values[&axis] {
            points.push(cap_point(&[(axis, v)]));
        }
    }
    for (i, axes) in spec.cross.iter().enumerate() {
        let mut sorted = axes.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() < 2 || sorted.len() != axes.len() {
            return Err(err(
                &format!("cross.{i}"),
                format!("{axes:?}"),
                "two or more different cap axes (scale_up, scale_out, tpp, hbm)",
            ));
        }
        if let Some(a) = axes.iter().find(|a| values[a].is_empty()) {
            return Err(err(
                &format!("cross.{i}"),
                format!("{} without values", a.key()),
                &format!("values under caps.{}", a.key()),
            ));
        }
        let mut combos: Vec<Vec<(CapAxis, f64)>> = vec![Vec::new()];
        for a in axes {
            combos = combos
                .into_iter()
                .flat_map(|c| {
                    values[a].iter().map(move |&v| {
                        let mut c = c.clone();
                        c.push((*a, v));
                        c
                    })
                })
                .collect();
        }
        for c in combos {
            points.push(cap_point(&c));
        }
    }
    let search = spec
        .search
        .clone()
        .unwrap_or_else(|| default_search(&wspec));
    Ok(Export {
        name: spec
            .name
            .clone()
            .unwrap_or_else(|| format!("{} under export caps", wspec.name)),
        file: src.clone(),
        workload: wsrc,
        template: tsrc,
        template_spec: template,
        gpus,
        reference: ref_name,
        points,
        workload_spec: wspec,
        model,
        main_phase,
        search,
        replan: spec.replan,
        same_days: spec.same_days,
        rules: crate::builtin::export_rules(),
    })
}

impl Export {
    /// The workload a chip runs: FP8 GEMMs, activations and dispatch become BF16 on a chip
    /// without FP8 tensor cores (with a note saying so).
    fn workload_for(&self, gpu: &GpuSpec) -> (WorkloadSpec, Option<String>) {
        let mut w = self.workload_spec.clone();
        if gpu.peak.fp8.is_some() {
            return (w, None);
        }
        let p = &mut w.training.precision;
        let mut moved = Vec::new();
        for (name, d) in [
            ("GEMMs", &mut p.gemm),
            ("cached activations", &mut p.activations),
            ("MoE dispatch", &mut p.dispatch),
            ("gradient communication", &mut p.grad_comm),
        ] {
            if *d == Dtype::Fp8 {
                *d = Dtype::Bf16;
                moved.push(name);
            }
        }
        let note = (!moved.is_empty()).then(|| {
            format!(
                "no FP8 tensor cores: {} in BF16 instead of FP8",
                moved.join(", ")
            )
        });
        (w, note)
    }

    /// The cluster of `gpus` GPUs of chip `name` (`gpu`), in the template fabric with the
    /// chip's own scale-up and NIC figures (the template's stated ones where it is the
    /// template's own chip).
    fn candidate(&self, name: &str, gpu: &GpuSpec, gpus: u64, p: &PointSpec) -> Candidate {
        let mut ts = self.template_spec.clone();
        let mut catalog: Catalog = crate::builtin::catalog();
        let own = catalog
            .get(&ts.gpu)
            .is_some_and(|(n, g)| n == name && g == gpu);
        if !own {
            ts.scale_up.bandwidth = None;
            ts.scale_out.nic_bandwidth = None;
        }
        if catalog.get(name).is_none() {
            catalog.gpus.insert(name.to_string(), gpu.clone());
        }
        ts.gpu = name.to_string();
        ts.nodes = (gpus / u64::from(ts.gpus_per_node)) as u32;
        ts.name = format!("{name} × {gpus}");
        plan::candidate_on(
            &ts,
            &catalog,
            &self.template,
            gpus,
            p.pricing.clone(),
            p.price_label.clone(),
        )
    }

    fn plan(&self, cand: Candidate, w: WorkloadSpec) -> Plan {
        let checkpoint_bytes =
            crate::cost::goodput::checkpoint_bytes(&self.model, &w.training.precision);
        Plan {
            name: self.name.clone(),
            workload_spec: w,
            workload_file: self.workload.name.clone(),
            workload_text: self.workload.text.clone(),
            model: self.model.clone(),
            candidates: vec![cand],
            constraints: ConstraintsSpec::default(),
            objective: Objective::Cheapest,
            search: self.search.clone(),
            main_phase: self.main_phase,
            checkpoint_bytes,
        }
    }
}

/// A point priced, before multiples: what it changed in the workload, and both answers.
struct Priced {
    note: Option<String>,
    fixed: Answer,
    replanned: Option<Answer>,
}

fn answer(choice: Option<Choice>, r: Result<(Figures, Status), String>) -> Answer {
    let layout = match &choice {
        Some(c) => c.label(),
        None => "the workload's own".into(),
    };
    let (figures, status, why) = match r {
        Ok((f, s)) => (Some(f), Some(s), None),
        Err(e) => (None, None, Some(e)),
    };
    Answer {
        choice,
        layout,
        figures,
        status,
        why,
        multiple: None,
        same_days: None,
    }
}

/// The workload's own layout as a choice on `gpus` GPUs (for naming it and widening it).
fn own_choice(w: &WorkloadSpec, gpus: u64) -> Choice {
    let p = &w.parallelism;
    Choice {
        tp: p.tp,
        pp: p.pp,
        cp: p.cp,
        ep: p.ep,
        dp: match p.dp {
            DpSpec::Fixed(d) => d,
            DpSpec::Auto => gpus / (p.tp * p.pp * p.cp).max(1),
        },
        vpp: p.vpp,
        schedule: p.schedule,
        micro_batch: p.micro_batch,
        zero: p.zero,
        overlap_param_gather: p.overlap_param_gather,
        comm_sms: p.comm_sms,
        recompute: w.training.recompute,
        global_batch: w.training.global_batch,
    }
}

fn price_point(e: &Export, p: &PointSpec, cal: &Calibration) -> Priced {
    let (w, note) = e.workload_for(&p.gpu);
    let cand = e.candidate(&p.chip, &p.gpu, e.gpus, p);
    let plan = e.plan(cand, w.clone());
    let own = own_choice(&w, e.gpus);
    let fixed_r = plan::price_des(&plan, 0, None, cal);
    let mut fixed = answer(None, fixed_r);
    fixed.layout = own.label();
    let replanned = e.replan.then(|| {
        let out = plan::search_with(&plan, cal, &|_, _| {}, false);
        let pick = out.pick.map(|i| {
            let p = &out.priced[i];
            let (f, s) = p.best();
            (p.choice, *f, s)
        });
        // The fixed layout stands where the search found nothing cheaper (or nothing).
        match (pick, fixed.feasible()) {
            (Some((c, f, s)), Some(ff)) if f.dollars < ff.dollars => answer(Some(c), Ok((f, s))),
            (_, Some(_)) => Answer {
                choice: None,
                ..fixed.clone()
            },
            (Some((c, f, s)), None) => answer(Some(c), Ok((f, s))),
            (None, None) => answer(
                None,
                Err(out
                    .infeasible
                    .map(|v| v.join("; "))
                    .unwrap_or_else(|| "no layout fits".into())),
            ),
        }
    });
    Priced {
        note,
        fixed,
        replanned,
    }
}

/// The chip's figures that time a run, as a key: identical chips are priced once.
fn chip_key(g: &GpuSpec) -> String {
    format!(
        "{:?}|{}|{}|{}|{}|{}|{}|{}|{}",
        g.peak.fp8.as_ref().map(|p| p.value.flops.to_bits()),
        g.peak.bf16.value.flops.to_bits(),
        g.peak.tf32.value.flops.to_bits(),
        g.hbm_bandwidth.value.bytes_per_s.to_bits(),
        g.hbm_capacity.value.bytes.to_bits(),
        g.scale_up.value.per_direction().bytes_per_s.to_bits(),
        g.nic.value.per_direction().bytes_per_s.to_bits(),
        g.sms.value,
        g.clock.value.hz.to_bits(),
    )
}

/// Resources a chip can fall short of the reference on, with how to restore each.
/// A resource: its name, whether a chip falls short of the reference on it, and how to give
/// a chip the reference's figure.
type Resource = (
    &'static str,
    fn(&GpuSpec, &GpuSpec) -> bool,
    fn(&mut GpuSpec, &GpuSpec),
);

const RESOURCES: [Resource; 4] = [
    (
        "scale-up (NVLink)",
        |g, r| {
            g.scale_up.value.per_direction().bytes_per_s
                < r.scale_up.value.per_direction().bytes_per_s * (1.0 - 1e-9)
        },
        |g, r| g.scale_up = r.scale_up.clone(),
    ),
    (
        "scale-out (NIC)",
        |g, r| {
            g.nic.value.per_direction().bytes_per_s
                < r.nic.value.per_direction().bytes_per_s * (1.0 - 1e-9)
        },
        |g, r| g.nic = r.nic.clone(),
    ),
    (
        "compute (TPP)",
        |g, r| Metrics::of(g).tpp < Metrics::of(r).tpp * (1.0 - 1e-9),
        |g, r| {
            g.peak = r.peak.clone();
            g.sms = r.sms.clone();
            g.clock = r.clock.clone();
        },
    ),
    (
        "HBM bandwidth",
        |g, r| g.hbm_bandwidth.value.bytes_per_s < r.hbm_bandwidth.value.bytes_per_s * (1.0 - 1e-9),
        |g, r| g.hbm_bandwidth = r.hbm_bandwidth.clone(),
    ),
];

/// "The same days" within this fraction (a count that misses the reference's days by less is
/// the cluster itself).
const SAME_DAYS: f64 = 0.01;

/// Binding resources below this share of the step are not named.
const BINDS: f64 = 0.01;

/// Prices every point: both answers, multiples, same-day GPU counts, binding resources and
/// thresholds. `progress(done, total)` ticks per point.
pub fn run(e: &Export, cal: &Calibration, progress: &(dyn Fn(usize, usize) + Sync)) -> Outcome {
    let n = e.points.len();
    // Identical chips (a cap at or above the reference's own figure) are priced once.
    let mut first: BTreeMap<String, usize> = BTreeMap::new();
    let same: Vec<usize> = e
        .points
        .iter()
        .enumerate()
        .map(|(i, p)| *first.entry(chip_key(&p.gpu) + &p.price_label).or_insert(i))
        .collect();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let unique: Vec<usize> = (0..n).filter(|&i| same[i] == i).collect();
    let priced: Vec<(usize, Priced)> = unique
        .par_iter()
        .map(|&i| {
            let r = price_point(e, &e.points[i], cal);
            let k = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            progress(k, unique.len());
            (i, r)
        })
        .collect();
    let priced: BTreeMap<usize, Priced> = priced.into_iter().collect();
    let reference = &priced[&0];
    let ref_fixed = reference.fixed.feasible().copied();
    let ref_replan = reference
        .replanned
        .as_ref()
        .and_then(|a| a.feasible().copied());
    let mult = |a: &mut Answer, r: Option<Figures>| {
        if let (Some(f), Some(r)) = (a.feasible(), r) {
            a.multiple = Some(Multiple {
                gpu_hours: f.gpu_hours / r.gpu_hours,
                dollars: f.dollars / r.dollars,
                days: f.days / r.days,
            });
        }
    };
    // Same-day counts and binding resources, per unique point, in parallel.
    let extras: Vec<(usize, Option<SameDays>, Option<SameDays>, Binding)> = unique
        .par_iter()
        .map(|&i| {
            let p = &e.points[i];
            let pr = &priced[&i];
            let (w, _) = e.workload_for(&p.gpu);
            let sd = |a: &Answer, target: Option<Figures>| -> Option<SameDays> {
                let (f, t) = (a.feasible()?, target?);
                if !e.same_days {
                    return None;
                }
                Some(same_days(
                    e,
                    p,
                    &w,
                    a.choice.unwrap_or(own_choice(&w, e.gpus)),
                    f,
                    t.days,
                    cal,
                ))
            };
            let sf = sd(&pr.fixed, ref_fixed);
            let sr = pr.replanned.as_ref().and_then(|a| sd(a, ref_replan));
            let binding = binding(e, p, pr, &w, (ref_fixed, ref_replan), cal);
            (i, sf, sr, binding)
        })
        .collect();
    let extras: BTreeMap<usize, _> = extras.into_iter().map(|x| (x.0, (x.1, x.2, x.3))).collect();
    let points: Vec<Point> = (0..n)
        .map(|i| {
            let p = &e.points[i];
            let pr = &priced[&same[i]];
            let (sf, sr, b) = &extras[&same[i]];
            let mut fixed = pr.fixed.clone();
            mult(&mut fixed, ref_fixed);
            fixed.same_days = sf.clone();
            let replanned = pr.replanned.clone().map(|mut a| {
                mult(&mut a, ref_replan);
                a.same_days = sr.clone();
                a
            });
            Point {
                label: p.label.clone(),
                kind: p.kind.clone(),
                chip: p.chip.clone(),
                price: p.price_label.clone(),
                metrics: Metrics::of(&p.gpu),
                scale_up: p.gpu.scale_up.value.per_direction().bytes_per_s * 2.0,
                statuses: e.rules.classify(&p.chip, &p.gpu),
                note: pr.note.clone(),
                fixed,
                replanned,
                binding: b.clone(),
            }
        })
        .collect();
    let mut ths = Vec::new();
    for (axis, _, _, _) in AXES {
        let on: Vec<&Point> = points
            .iter()
            .filter(|p| matches!(&p.kind, Kind::Capped(c) if c.len() == 1 && c[0].0 == axis))
            .collect();
        if on.is_empty() {
            continue;
        }
        let own = own_figure(axis, &e.points[0].gpu);
        for (strategy, pick) in [
            (
                "fixed",
                (|p: &Point| Some(&p.fixed)) as fn(&Point) -> Option<&Answer>,
            ),
            ("re-planned", |p: &Point| p.replanned.as_ref()),
        ] {
            if strategy == "re-planned" && !e.replan {
                continue;
            }
            let mut curve: Vec<(f64, Option<f64>)> = vec![(own, Some(1.0))];
            for p in &on {
                let Kind::Capped(c) = &p.kind else {
                    unreachable!()
                };
                if c[0].1 >= own {
                    continue;
                }
                curve.push((
                    c[0].1,
                    pick(p).and_then(|a| a.multiple).map(|m| m.gpu_hours),
                ));
            }
            ths.extend(thresholds(axis, strategy, &curve, &LEVELS));
        }
    }
    Outcome {
        name: e.name.clone(),
        target: target_line(e),
        gpus: e.gpus,
        reference: e.reference.clone(),
        points,
        thresholds: ths,
        own: AXES
            .iter()
            .map(|a| (a.0.to_string(), own_figure(a.0, &e.points[0].gpu)))
            .collect(),
        assumptions: assumptions(e),
        search: search_line(&e.search),
    }
}

/// The reference chip's own figure on `axis`, in the axis's stored unit.
pub fn own_figure(axis: &str, g: &GpuSpec) -> f64 {
    match axis {
        "scale_up" => g.scale_up.value.per_direction().bytes_per_s * 2.0,
        "scale_out" => g.nic.value.per_direction().bytes_per_s,
        "tpp" => Metrics::of(g).tpp,
        _ => g.hbm_bandwidth.value.bytes_per_s,
    }
}

/// The fewest GPUs that finish in `target_days` with `choice` widened (or narrowed) in data
/// parallelism: counts from the linear estimate upwards, each priced by the DES, at most
/// three priced.
fn same_days(
    e: &Export,
    p: &PointSpec,
    w: &WorkloadSpec,
    choice: Choice,
    at: &Figures,
    target_days: f64,
    cal: &Calibration,
) -> SameDays {
    let gpn = u64::from(e.template_spec.gpus_per_node);
    let per_replica = choice.tp * choice.pp * choice.cp;
    let batch = choice.global_batch / choice.micro_batch.max(1);
    let want = e.gpus as f64 * at.days / target_days;
    let meets = |days: f64| days <= target_days * (1.0 + SAME_DAYS);
    if meets(at.days) && at.days >= target_days * (1.0 - SAME_DAYS) {
        return SameDays {
            gpus: e.gpus,
            days: at.days,
            met: true,
            priced: true,
            last: false,
            why: None,
        };
    }
    // Data-parallel widths dividing the batch whose GPU count is whole nodes, from the linear
    // estimate up, to at most 16× the cluster.
    let dps: Vec<u64> = (1..=batch)
        .filter(|d| batch % d == 0)
        .filter(|d| (d * per_replica) % gpn == 0)
        .filter(|d| (d * per_replica) as f64 >= want * (1.0 - 1e-9))
        .filter(|d| d * per_replica <= e.gpus * 16)
        .collect();
    let mut best: Option<SameDays> = None;
    let mut priced = 0;
    let mut exhausted = true;
    let mut why: Option<String> = None;
    for dp in dps {
        if priced >= 3 {
            exhausted = false;
            break;
        }
        let gpus = dp * per_replica;
        let cand = e.candidate(&p.chip, &p.gpu, gpus, p);
        let plan = e.plan(cand, w.clone());
        let c = Choice { dp, ..choice };
        // The workload's own layout keeps `dp: auto` (its `pp`/`ep` as written).
        let r = plan::price_des(&plan, 0, Some(&c), cal);
        let (f, s) = match r {
            Ok(x) => x,
            Err(e) => {
                why.get_or_insert(format!("{gpus} GPUs: {e}"));
                continue;
            }
        };
        priced += 1;
        if s != Status::Feasible {
            why.get_or_insert(format!("{gpus} GPUs: {}", s.name()));
            continue;
        }
        let sd = SameDays {
            gpus,
            days: f.days,
            met: meets(f.days),
            priced: true,
            last: false,
            why: None,
        };
        best = Some(sd.clone());
        if sd.met {
            exhausted = false;
            break;
        }
    }
    if let Some(b) = best.as_mut() {
        b.last = exhausted && !b.met;
        if !b.met {
            b.why = why.clone();
        }
    }
    best.unwrap_or(SameDays {
        gpus: (want.ceil() as u64).div_ceil(gpn) * gpn,
        days: f64::NAN,
        met: false,
        priced: false,
        last: false,
        why,
    })
}

/// The resource that binds at point `p`: the one short of the reference where only one is
/// (if the cost moved at all); else the one whose restoration cuts the step most, at the
/// point's layout (re-planned where it ran, else fixed).
fn binding(
    e: &Export,
    p: &PointSpec,
    pr: &Priced,
    w: &WorkloadSpec,
    refs: (Option<Figures>, Option<Figures>),
    cal: &Calibration,
) -> Binding {
    let r = &e.points[0].gpu;
    let short: Vec<usize> = (0..RESOURCES.len())
        .filter(|&k| (RESOURCES[k].1)(&p.gpu, r))
        .collect();
    let (ans, reference) = match pr.replanned.as_ref().filter(|a| a.feasible().is_some()) {
        Some(a) => (a, refs.1),
        None => (&pr.fixed, refs.0),
    };
    let Some(f) = ans.feasible() else {
        return Binding {
            resource: Some("HBM capacity or layout".into()),
            detail: ans
                .why
                .clone()
                .unwrap_or_else(|| "no layout fits in HBM".into()),
        };
    };
    if short.is_empty() {
        return Binding {
            resource: None,
            detail: format!("no resource below {}'s", e.reference),
        };
    }
    let choice = ans.choice.unwrap_or(own_choice(w, e.gpus));
    let cuts: Vec<(usize, f64)> = short
        .iter()
        .map(|&k| {
            if short.len() == 1 && p.kind != Kind::Chip {
                return (k, f64::NAN);
            }
            let mut g = p.gpu.clone();
            (RESOURCES[k].2)(&mut g, r);
            let name = format!("{} [{} restored]", p.chip, RESOURCES[k].0);
            let cand = e.candidate(&name, &g, e.gpus, p);
            let plan = e.plan(cand, w.clone());
            let step = plan::price_des(&plan, 0, Some(&choice), cal)
                .map(|(x, _)| x.step_s)
                .unwrap_or(f.step_s);
            (k, 1.0 - step / f.step_s)
        })
        .collect();
    if cuts.len() == 1 && cuts[0].1.is_nan() {
        let name = RESOURCES[cuts[0].0].0;
        return match reference.map(|r| f.gpu_hours / r.gpu_hours) {
            Some(m) if m < 1.0 + BINDS => Binding {
                resource: None,
                detail: format!("{name} is capped but does not bind (×{m:.3} GPU-hours)"),
            },
            Some(m) => Binding {
                resource: Some(name.into()),
                detail: format!(
                    "the only resource below {}'s (×{m:.3} GPU-hours)",
                    e.reference
                ),
            },
            None => Binding {
                resource: Some(name.into()),
                detail: format!("the only resource below {}'s", e.reference),
            },
        };
    }
    let best = cuts
        .iter()
        .copied()
        .filter(|c| c.1.is_finite())
        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)));
    let list = cuts
        .iter()
        .map(|(k, c)| format!("{} −{:.1}%", RESOURCES[*k].0, 100.0 * c))
        .collect::<Vec<_>>()
        .join(", ");
    match best {
        Some((k, c)) if c >= BINDS => Binding {
            resource: Some(RESOURCES[k].0.into()),
            detail: format!(
                "step cut by restoring each to {}'s figure: {list}",
                e.reference
            ),
        },
        _ => Binding {
            resource: None,
            detail: format!("no restoration cuts the step by 1% ({list})"),
        },
    }
}

fn target_line(e: &Export) -> String {
    let w = &e.workload_spec;
    let phases = w
        .training
        .phases
        .iter()
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{} ({}) on {} GPUs of {}",
        w.name, phases, e.gpus, e.template.name
    )
}

fn search_line(s: &SearchSpec) -> String {
    let list = |v: &[u64]| {
        if v.is_empty() {
            "any".to_string()
        } else {
            v.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    format!(
        "tp up to {}, cp up to {}, every pp and ep that divides, {} schedules, micro-batch {}, ZeRO {}, recompute {}, global batch {}, communication SMs {}; the best {} structures re-priced by the DES",
        s.max_tp.map_or("a node".into(), |t| t.to_string()),
        s.max_cp.map_or("64".into(), |t| t.to_string()),
        if s.schedules.is_empty() {
            "all".to_string()
        } else {
            s.schedules.iter().map(|x| x.name()).collect::<Vec<_>>().join(", ")
        },
        list(&s.micro_batch),
        if s.zero.is_empty() {
            "any".into()
        } else {
            s.zero.iter().map(|z| z.to_string()).collect::<Vec<_>>().join(", ")
        },
        if s.recompute.is_empty() {
            "any".into()
        } else {
            s.recompute.iter().map(|r| r.name()).collect::<Vec<_>>().join(", ")
        },
        list(&s.global_batch),
        if s.comm_sms.is_empty() {
            "8, 16, 20, 24, 32 and the workload's".into()
        } else {
            s.comm_sms.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")
        },
        s.top_k
    )
}

fn assumptions(e: &Export) -> Vec<String> {
    let r = &e.reference;
    let mut v = vec![
        format!("Every chip runs in the same fabric ({}) at the same {} GPUs, with its own scale-up and NIC figures from the catalog (the template's stated links where the chip is the template's own).", e.template.name, e.gpus),
        format!("Multiples are against {r}'s answer by the same strategy: the fixed layout against {r} on the fixed layout, the re-planned against {r} re-planned. Absolute figures are in the table."),
        "The fixed layout is the workload's own; the re-planned layout is the cheapest the bounded layout search finds on that cluster (the fixed layout among the candidates, so it is never dearer), priced by the discrete-event engine.".into(),
        format!("Re-planning search: {}.", search_line(&e.search)),
        format!("A capped chip is {r} with the cap applied by the rule's arithmetic: a TPP cap scales every precision's dense peak by one factor (so FP8 × 8 and BF16 × 16 stay within it); a bandwidth cap lowers exactly what it names (a scale-up cap also lowers the chip's I/O by as much). A cap at or above {r}'s own figure changes nothing. SMs, clock and memory capacity are {r}'s."),
        "A scale-out cap is per GPU: the node's NICs together carry the GPUs' share (one NIC per GPU in the template).".into(),
        "GPUs for the same days: the point's layout widened (or narrowed) in data parallelism to whole nodes whose data-parallel width divides the batch, from the linear estimate upward, each count priced by the DES (at most three), \"the same\" within 1% of the reference's days; not a fresh layout search at each count. \"> N\": N, the last count priced, still took longer (\"the most this layout runs on\": no larger count divides its batch ramp and schedule); \"≈ N (linear)\": no count could be priced.".into(),
        "The binding resource: where one resource falls short of the reference, that one (its multiple says whether it moved the cost); where several do, the one whose restoration to the reference's figure cuts the step most at the point's layout (a cut under 1% names none).".into(),
        "A chip without FP8 tensor cores runs the workload's FP8 GEMMs, cached activations and dispatch in BF16 (the point's note says so).".into(),
        "Reported phases (post-training's published GPU-hours) are left out: they cannot move with the chip.".into(),
        "Every chip is priced per GPU-hour as the file says (by default the workload's rate, DeepSeek's assumed $2 per H800-hour, for every chip): only the multiples of GPU-hours and days are price-free.".into(),
    ];
    if !e.replan {
        v.push("Re-planning is off: only the fixed layout is priced.".into());
    }
    v
}
