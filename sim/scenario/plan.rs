//! `trainsim plan`: for a workload and its token budget, which cluster, which parallel layout,
//! how many days and how much money.
//!
//! For every candidate cluster the search walks tp × cp × pp × ep × schedule (and vpp) ×
//! micro-batch × ZeRO stage (and parameter-gather overlap) × communication SMs × recompute ×
//! global batch, in that order. A subtree that cannot divide (tp into the heads, cp into the
//! sequence, ep into the experts or a stage's GPUs) is counted and skipped whole; every other
//! combination is built by the layout validator (its rejections counted by key) and held to
//! [`memory_floor`] before any kernel is priced. Survivors are priced by the analytic engine,
//! grouped by the blocks they share ([`Blocks::key`]) and priced group by group in parallel;
//! the best `top_k` are re-priced by the discrete-event engine.
//!
//! The main phase (the simulated phase at the training section's own sequence length and
//! batch) runs the searched layout, batch ramp included. Every other simulated phase (context
//! extension) gets, per cluster, its own fastest layout from the same search over tp, cp, pp,
//! ep, schedule and vpp at the workload's micro-batch, ZeRO stage, recompute and communication
//! SMs. Reported phases are taken as given.
//!
//! Order: configurations are enumerated in a fixed order and results keep it; ties on the
//! objective break by fewer GPUs, then by that enumeration order. The output is the same at
//! any thread count.

use crate::config::plan::{
    CandidateSpec, ConstraintsSpec, GpuCounts, Objective, PlanSpec, PriceSpec, SearchSpec,
};
use crate::config::topology::TopologySpec;
use crate::config::workload::{DpSpec, ParallelismSpec, PricingSpec, WorkloadSpec};
use crate::config::{parse_doc, Diagnostic, Source};
use crate::cost::{self, RunCost};
use crate::domain::{MoeOverlap, Recompute, Schedule};
use crate::hw::Calibration;
use crate::step::{analytic, des, memory_floor, Blocks, StepResult};
use crate::topo::{self, Cluster};
use crate::units::Money;
use crate::workload::layout::Layout;
use crate::workload::model::Model;
use crate::workload::{resolve_model, Phase, PhaseKind, Workload};
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::report::plan::money;
pub use crate::report::plan::{
    CandidateView, Choice, Figures, Outcome, Priced, Record, Sensitivity, Status, View, EXPOSED,
};
pub use crate::scenario::validate::ReadSource;

const GIB: f64 = 1073741824.0;

/// The embedded templates a `chip` candidate scales when it names none: the shipped cluster of
/// that chip's family, else DeepSeek's 2,048-H800 MPFT fabric (with the chip's own links).
pub const TEMPLATES: [(&str, &str, &str); 4] = [
    (
        "H100",
        "topologies/h100-16384.yaml",
        include_str!("../../topologies/h100-16384.yaml"),
    ),
    (
        "H200",
        "topologies/h100-16384.yaml",
        include_str!("../../topologies/h100-16384.yaml"),
    ),
    (
        "A100",
        "topologies/a100-64.yaml",
        include_str!("../../topologies/a100-64.yaml"),
    ),
    (
        "GB200",
        "topologies/gb200-nvl72.yaml",
        include_str!("../../topologies/gb200-nvl72.yaml"),
    ),
];

/// The template for chip `canon` (a catalog name).
pub fn default_template(canon: &str) -> Source {
    let catalog = crate::builtin::catalog();
    let family = |n: &str| catalog.get(n).map(|(c, _)| c.to_string());
    let (name, text) = TEMPLATES
        .iter()
        .find(|(chip, _, _)| family(chip).as_deref() == Some(canon))
        .map(|&(_, n, t)| (n, t))
        .unwrap_or(crate::pipeline::DEFAULT_TOPOLOGY);
    Source::embedded(name, text)
}

/// One cluster to consider.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// `H800 × 2048`.
    pub name: String,
    pub chip: String,
    pub gpus: u64,
    /// The topology file it is, or the template it scales, and its text.
    pub topology: String,
    pub topology_text: String,
    /// The cluster, or why it cannot be built (not whole nodes, a switch radix too small, a
    /// precision the chip lacks).
    pub cluster: Result<Cluster, String>,
    pub pricing: PricingSpec,
    /// `$2.00/GPU-h`, or the ownership terms.
    pub price_label: String,
}

/// A plan ready to search: the workload and every candidate, read and checked.
pub struct Plan {
    pub name: String,
    pub workload_spec: WorkloadSpec,
    pub workload_file: String,
    pub workload_text: String,
    pub model: Model,
    pub candidates: Vec<Candidate>,
    pub constraints: ConstraintsSpec,
    pub objective: Objective,
    pub search: SearchSpec,
    /// Index of the main phase in the workload's phases.
    pub main_phase: usize,
    /// One checkpoint of the model, for the goodput model (computed once).
    pub checkpoint_bytes: f64,
}

/// Resolves a path written in `from` (relative to its directory).
pub fn beside(from: &Source, rel: &str) -> std::path::PathBuf {
    match &from.dir {
        Some(d) if Path::new(rel).is_relative() => d.join(rel),
        _ => Path::new(rel).to_path_buf(),
    }
}

/// A workload ready to plan: its spec, its model, and its main phase (the simulated phase at
/// the training section's own sequence length and batch, which the search lays out). A phase
/// with a node count of its own is refused: the search sizes the cluster.
pub fn load_workload(wsrc: &Source) -> Result<(WorkloadSpec, Model, usize), Diagnostic> {
    let wspec: WorkloadSpec = parse_doc(wsrc, &[])?;
    let model = Model::from_spec(&resolve_model(&wspec.model, wsrc)?, &wsrc.name)
        .map_err(|d| d.locate_in(&wsrc.text))?;
    // A layout search sizes the cluster itself: a phase's own node count has no place in it.
    if let Some((i, p)) = wspec
        .training
        .phases
        .iter()
        .enumerate()
        .find(|(_, p)| p.nodes.is_some())
    {
        return Err(Diagnostic::new(
            &wsrc.name,
            format!("nodes: {} on phase {}", p.nodes.unwrap_or(0), p.name),
            "no phase node count in a plan's workload (the plan sizes the cluster itself)",
        )
        .at(format!("training.phases.{i}.nodes"))
        .locate_in(&wsrc.text));
    }
    let main_phase = wspec
        .training
        .phases
        .iter()
        .position(|p| {
            p.reported_gpu_hours.is_none()
                && p.seq_len.is_none_or(|s| s == wspec.training.seq_len)
                && p.global_batch.is_none()
                && p.parallelism.is_none()
        })
        .ok_or_else(|| {
            Diagnostic::new(
                &wsrc.name,
                "no simulated phase at the training section's own sequence length and batch",
                "a main phase for the planner to lay out (one without seq_len, global_batch or parallelism of its own)",
            )
            .at("training.phases")
        })?;
    Ok((wspec, model, main_phase))
}

/// Reads and checks a plan: the workload, the candidates' topologies, prices and constraints.
/// `workload` overrides the plan's own `workload:` key (as `--workload` does).
pub fn prepare(
    spec: &PlanSpec,
    plan_src: &Source,
    workload: Option<Source>,
    read: ReadSource,
) -> Result<Plan, Diagnostic> {
    let file = plan_src.name.as_str();
    let err = |at: String, found: String, expected: &str| {
        Diagnostic::new(file, found, expected)
            .at(at)
            .locate_in(&plan_src.text)
    };
    let wsrc = match (workload, &spec.workload) {
        (Some(w), _) => w,
        (None, Some(p)) => read(&beside(plan_src, p))?,
        (None, None) => {
            return Err(err(
                "workload".into(),
                "no workload".into(),
                "a workload file (the `workload:` key or --workload)",
            ))
        }
    };
    let (wspec, model, main_phase) = load_workload(&wsrc)?;
    if spec.candidates.is_empty() {
        return Err(err(
            "candidates".into(),
            "no candidates".into(),
            "at least one candidate: a topology file, or a chip with GPU counts",
        ));
    }
    let s = &spec.search;
    if s.top == 0 {
        return Err(err(
            "search.top".into(),
            "0".into(),
            "at least 1 row in the ranked table",
        ));
    }
    if let Some(&z) = s.zero.iter().find(|&&z| z > 3) {
        return Err(err(
            "search.zero".into(),
            z.to_string(),
            "ZeRO stages 0, 1, 2 or 3",
        ));
    }
    for (key, bad) in [
        ("micro_batch", s.micro_batch.contains(&0)),
        ("vpp", s.vpp.iter().any(|&v| v < 2)),
        ("global_batch", s.global_batch.contains(&0)),
        ("max_tp", s.max_tp == Some(0)),
        ("max_cp", s.max_cp == Some(0)),
    ] {
        if bad {
            return Err(err(
                format!("search.{key}"),
                "a value below the least allowed".into(),
                "positive values (vpp at least 2)",
            ));
        }
    }
    let c = &spec.constraints;
    let positive = |v: f64| v > 0.0 && v.is_finite();
    if c.deadline.is_some_and(|d| !positive(d.secs)) || c.budget.is_some_and(|b| !positive(b.usd)) {
        return Err(err(
            "constraints".into(),
            "a deadline or budget of zero".into(),
            "a positive deadline and budget",
        ));
    }
    let catalog = crate::builtin::catalog();
    let mut candidates = Vec::new();
    for (i, cs) in spec.candidates.iter().enumerate() {
        let at = |k: &str| format!("candidates.{i}{k}");
        let pricing = pricing(cs, i, &wspec.pricing, &err)?;
        let label = price_label(cs.price.as_ref(), &pricing);
        match (&cs.topology, &cs.chip) {
            (Some(t), None) => {
                if cs.gpus.is_some() || cs.template.is_some() {
                    return Err(err(
                        at(""),
                        "a topology with gpus or template".into(),
                        "a topology file as it is, or a chip with gpus (and a template)",
                    ));
                }
                let src = read(&beside(plan_src, t))?;
                let ts: TopologySpec = parse_doc(&src, &[])?;
                let gpus = u64::from(ts.nodes) * u64::from(ts.gpus_per_node);
                candidates.push(candidate(&ts, &src, gpus, pricing, label));
            }
            (None, Some(chip)) => {
                let Some((canon, _)) = catalog.get(chip) else {
                    return Err(err(
                        at(".chip"),
                        format!("\"{chip}\""),
                        &format!("a chip of the catalog: {}", catalog.names().join(", ")),
                    ));
                };
                let Some(GpuCounts(counts)) = &cs.gpus else {
                    return Err(err(
                        at(".gpus"),
                        "a chip without GPU counts".into(),
                        "gpus: a count, a list, or a range such as \"512..8192\"",
                    ));
                };
                let src = match &cs.template {
                    Some(t) => read(&beside(plan_src, t))?,
                    None => default_template(canon),
                };
                let template: TopologySpec = parse_doc(&src, &[])?;
                let same_chip = catalog.get(&template.gpu).map(|(n, _)| n) == Some(canon);
                for &n in counts {
                    let mut ts = template.clone();
                    ts.gpu = canon.to_string();
                    if !same_chip {
                        ts.scale_up.bandwidth = None;
                        ts.scale_out.nic_bandwidth = None;
                    }
                    let gpn = u64::from(ts.gpus_per_node);
                    let mut c = if n % gpn != 0 {
                        Candidate {
                            name: String::new(),
                            chip: canon.to_string(),
                            gpus: n,
                            topology: src.name.clone(),
                            topology_text: src.text.clone(),
                            cluster: Err(format!("{n} GPUs are not whole nodes of {gpn}")),
                            pricing: pricing.clone(),
                            price_label: label.clone(),
                        }
                    } else {
                        ts.nodes = (n / gpn) as u32;
                        ts.name = format!("{} × {n} (from {})", canon, template.name);
                        candidate(&ts, &src, n, pricing.clone(), label.clone())
                    };
                    c.name = format!("{canon} × {n}");
                    candidates.push(c);
                }
            }
            _ => {
                return Err(err(
                    at(""),
                    "neither or both of topology and chip".into(),
                    "exactly one of `topology` (a file) or `chip` (with gpus)",
                ))
            }
        }
    }
    let checkpoint_bytes = cost::goodput::checkpoint_bytes(&model, &wspec.training.precision);
    Ok(Plan {
        name: spec
            .name
            .clone()
            .unwrap_or_else(|| format!("{} plan", wspec.name)),
        workload_file: wsrc.name.clone(),
        workload_text: wsrc.text.clone(),
        workload_spec: wspec,
        model,
        candidates,
        constraints: spec.constraints.clone(),
        objective: spec.objective,
        search: spec.search.clone(),
        main_phase,
        checkpoint_bytes,
    })
}

fn pricing(
    cs: &CandidateSpec,
    i: usize,
    base: &PricingSpec,
    err: &dyn Fn(String, String, &str) -> Diagnostic,
) -> Result<PricingSpec, Diagnostic> {
    pricing_of(cs.price.as_ref(), base)
        .map_err(|(found, expected)| err(format!("candidates.{i}.price"), found, expected))
}

/// What a GPU-hour costs at `price` (the workload's `base` where absent): a rate, or ownership
/// spread over its years plus electricity. Err: (found, expected).
pub fn pricing_of(
    price: Option<&PriceSpec>,
    base: &PricingSpec,
) -> Result<PricingSpec, (String, &'static str)> {
    Ok(match price {
        None => base.clone(),
        Some(PriceSpec::Rate(m)) => PricingSpec {
            gpu_hour: *m,
            ..base.clone()
        },
        Some(PriceSpec::Owned(o)) => {
            if !(o.amortization_years > 0.0 && o.amortization_years.is_finite()) || o.pue < 1.0 {
                return Err((
                    format!(
                        "amortization_years {} and pue {}",
                        o.amortization_years, o.pue
                    ),
                    "a positive number of years and a PUE of at least 1",
                ));
            }
            PricingSpec {
                gpu_hour: Money {
                    usd: o.capex_per_gpu.usd / (o.amortization_years * 365.25 * 24.0),
                },
                electricity_per_kwh: Some(o.electricity_per_kwh),
                pue: Some(o.pue),
                power_per_gpu: o.power_per_gpu,
            }
        }
    })
}

pub fn price_label(p: Option<&PriceSpec>, pricing: &PricingSpec) -> String {
    match p {
        Some(PriceSpec::Owned(o)) => format!(
            "${:.0}/GPU over {} y (${:.2}/GPU-h) + ${:.3}/kWh × PUE {}",
            o.capex_per_gpu.usd,
            o.amortization_years,
            pricing.gpu_hour.usd,
            o.electricity_per_kwh.usd,
            o.pue
        ),
        _ => format!("${:.2}/GPU-h", pricing.gpu_hour.usd),
    }
}

/// A candidate on topology `ts`. Whether its chip runs the workload's precision is checked
/// when it is searched, as a run checks it ([`workloads`]).
fn candidate(
    ts: &TopologySpec,
    src: &Source,
    gpus: u64,
    pricing: PricingSpec,
    price_label: String,
) -> Candidate {
    let catalog = crate::builtin::catalog_for(ts, &src.name);
    match catalog {
        Ok(c) => candidate_on(ts, &c, src, gpus, pricing, price_label),
        Err(d) => Candidate {
            name: ts.name.clone(),
            chip: ts.gpu.clone(),
            gpus,
            topology: src.name.clone(),
            topology_text: src.text.clone(),
            cluster: Err(format!("{}: {}", d.path.unwrap_or_default(), d.found)),
            pricing,
            price_label,
        },
    }
}

/// A candidate on topology `ts` with chips from `catalog` (a hypothetical chip added to it, for
/// example).
pub fn candidate_on(
    ts: &TopologySpec,
    catalog: &crate::hw::Catalog,
    src: &Source,
    gpus: u64,
    pricing: PricingSpec,
    price_label: String,
) -> Candidate {
    Candidate {
        name: ts.name.clone(),
        chip: ts.gpu.clone(),
        gpus,
        topology: src.name.clone(),
        topology_text: src.text.clone(),
        cluster: topo::build(ts, catalog, &src.name)
            .map_err(|d| format!("{}: {}", d.path.unwrap_or_default(), d.found)),
        pricing,
        price_label,
    }
}

/// The parallelism section of a choice (sequence parallelism with TP; TP overlap as the
/// workload has it).
fn parallelism(c: &Choice, base: &ParallelismSpec) -> ParallelismSpec {
    let mut p = ParallelismSpec {
        tp: c.tp,
        pp: c.pp,
        ep: c.ep,
        cp: c.cp,
        dp: DpSpec::Fixed(c.dp),
        vpp: c.vpp,
        zero: c.zero,
        overlap_param_gather: c.overlap_param_gather,
        // When the framework reduces gradients is not a layout choice: the workload's.
        grad_reduce: base.grad_reduce,
        // A named split carries over to every layout searched; an explicit list fits one only.
        pipeline_split: base.pipeline_split,
        layers_per_chunk: None,
        pipeline_model_parallel_layout: None,
        // Stage sizes fit one pipeline depth only.
        num_layers_in_first_pipeline_stage: None,
        num_layers_in_last_pipeline_stage: None,
        account_for_embedding_in_pipeline_split: base.account_for_embedding_in_pipeline_split,
        account_for_loss_in_pipeline_split: base.account_for_loss_in_pipeline_split,
        schedule: c.schedule,
        // The workload's MoE overlap where the layout allows it: Megatron's combined 1F1B
        // interleaved or without a pipeline, two-micro-batch overlap with one pass at a time
        // and an even micro-batch.
        moe_overlap: match base.moe_overlap {
            MoeOverlap::Combined1f1b if c.schedule == Schedule::Interleaved || c.pp == 1 => {
                base.moe_overlap
            }
            MoeOverlap::TwoMicroBatch
                if c.micro_batch % 2 == 0
                    && matches!(
                        c.schedule,
                        Schedule::Gpipe | Schedule::OneFOneB | Schedule::Interleaved
                    ) =>
            {
                base.moe_overlap
            }
            _ => Default::default(),
        },
        // The dispatcher and its token dropping are the framework's, as the workload says.
        moe_dispatcher: base.moe_dispatcher,
        moe_expert_capacity_factor: base.moe_expert_capacity_factor,
        moe_pad_expert_input_to_capacity: base.moe_pad_expert_input_to_capacity,
        moe_shared_expert_overlap: false,
        micro_batch: c.micro_batch,
        comm_sms: c.comm_sms,
        sequence_parallel: c.tp > 1,
        tp_comm_overlap: base.tp_comm_overlap && c.tp > 1,
    };
    // The shared experts' overlap where the schedule runs one pass at a time.
    p.moe_shared_expert_overlap =
        base.moe_shared_expert_overlap && !crate::workload::layout::pairs_passes(&p);
    p
}

/// The values each dimension takes on one cluster.
struct Space {
    tps: Vec<u64>,
    cps: Vec<u64>,
    pps: Vec<u64>,
    eps: Vec<u64>,
    schedules: Vec<(Schedule, u64)>,
    mbs: Vec<u64>,
    zeros: Vec<(u8, bool)>,
    /// Communication SMs with expert parallelism; without it, the workload's own (dense) or 0.
    comm_sms: Vec<u32>,
    recomputes: Vec<Recompute>,
    batches: Vec<u64>,
}

fn divisors(n: u64) -> Vec<u64> {
    (1..=n).filter(|d| n % d == 0).collect()
}

fn powers_of_two_to(max: u64) -> Vec<u64> {
    std::iter::successors(Some(1u64), |v| v.checked_mul(2))
        .take_while(|&v| v <= max)
        .collect()
}

impl Space {
    /// The full space of the main phase, or (`side`) the structural space of another phase.
    fn new(plan: &Plan, cluster: &Cluster, seq_len: u64, batch: u64, side: bool) -> Space {
        let s = &plan.search;
        let w = &plan.workload_spec;
        let m = &plan.model;
        let gpn = u64::from(cluster.gpus_per_node);
        let gpus = cluster.gpus() as u64;
        let max_tp = s.max_tp.unwrap_or(gpn);
        let tps = divisors(gpus)
            .into_iter()
            .filter(|&t| t <= max_tp && gpn % t == 0)
            .collect();
        let max_cp = s.max_cp.unwrap_or((seq_len / 1024).clamp(1, 64));
        let cps = powers_of_two_to(max_cp);
        let pps = divisors(gpus)
            .into_iter()
            .filter(|&p| p <= m.layers)
            .collect();
        let eps = match m.moe {
            Some(moe) => divisors(moe.routed),
            None => vec![1],
        };
        let pick = |given: &[Schedule]| -> Vec<Schedule> {
            if given.is_empty() {
                Schedule::ALL.to_vec()
            } else {
                given.to_vec()
            }
        };
        let vpps = if s.vpp.is_empty() {
            vec![2, 4, 8]
        } else {
            s.vpp.clone()
        };
        let schedules = pick(&s.schedules)
            .into_iter()
            .flat_map(|sc| match sc {
                Schedule::Interleaved => vpps.iter().map(|&v| (sc, v)).collect::<Vec<_>>(),
                _ => vec![(sc, 1)],
            })
            .collect();
        let p = &w.parallelism;
        if side {
            return Space {
                tps,
                cps: powers_of_two_to(s.max_cp.unwrap_or((seq_len / 1024).clamp(1, 64))),
                pps,
                eps,
                schedules,
                mbs: vec![p.micro_batch],
                zeros: vec![(p.zero, p.overlap_param_gather)],
                comm_sms: vec![p.comm_sms],
                recomputes: vec![w.training.recompute],
                batches: vec![batch],
            };
        }
        let zeros: Vec<u8> = if s.zero.is_empty() {
            vec![0, 1, 2, 3]
        } else {
            s.zero.clone()
        };
        let zeros = zeros
            .into_iter()
            .flat_map(|z| {
                if (1..=2).contains(&z) {
                    vec![(z, false), (z, true)]
                } else {
                    vec![(z, false)]
                }
            })
            .collect();
        let mut comm_sms = if s.comm_sms.is_empty() {
            vec![8, 16, 20, 24, 32, p.comm_sms]
        } else {
            s.comm_sms.clone()
        };
        comm_sms.retain(|&c| c > 0 && c < cluster.gpu.sms.value);
        comm_sms.sort_unstable();
        comm_sms.dedup();
        Space {
            tps,
            cps,
            pps,
            eps,
            schedules,
            mbs: if s.micro_batch.is_empty() {
                vec![1, 2, 4, 8]
            } else {
                s.micro_batch.clone()
            },
            zeros,
            comm_sms,
            recomputes: if s.recompute.is_empty() {
                Recompute::ALL.to_vec()
            } else {
                s.recompute.clone()
            },
            batches: if s.global_batch.is_empty() {
                vec![batch]
            } else {
                s.global_batch.clone()
            },
        }
    }

    /// Communication-SM values for expert parallelism `ep` (dense models and EP1 keep the
    /// workload's setting, or none: no all-to-all needs them).
    fn sms_for(&self, ep: u64, moe: bool, workload: u32) -> Vec<u32> {
        match (moe, ep > 1) {
            (true, true) if !self.comm_sms.is_empty() => self.comm_sms.clone(),
            (true, _) => vec![0],
            (false, _) => vec![workload],
        }
    }
}

/// Recompute policy `r` on `s`: the workload's per-layer recompute counts go with full
/// recompute only.
fn set_recompute(s: &mut WorkloadSpec, r: Recompute) {
    if r != s.training.recompute {
        s.training.recompute = r;
        s.training.recompute_num_layers = None;
        s.training.recompute_method = None;
        s.training.recompute_modules = None;
    }
}

/// The workload spec of one search point: its recompute and (main phase) batch.
fn spec_for(plan: &Plan, phase: usize, r: Recompute, batch: u64) -> WorkloadSpec {
    let mut s = plan.workload_spec.clone();
    set_recompute(&mut s, r);
    if phase == plan.main_phase {
        s.training.global_batch = batch;
        s.training.phases[phase].global_batch = Some(batch);
    }
    s
}

/// A layout that passed divisibility and the memory floor, waiting to be priced, with the
/// group of layouts it shares its blocks with (numbered in order of first appearance).
struct Survivor {
    choice: Choice,
    group: u32,
}

/// The workload specs of a phase's (recompute, batch) points, built once.
struct Specs(Vec<((Recompute, u64), WorkloadSpec)>);

impl Specs {
    fn new(plan: &Plan, phase: usize, space: &Space) -> Specs {
        let mut v = Vec::new();
        for &r in &space.recomputes {
            for &b in &space.batches {
                v.push(((r, b), spec_for(plan, phase, r, b)));
            }
        }
        Specs(v)
    }

    fn get(&self, c: &Choice) -> &WorkloadSpec {
        self.get_at(c.recompute, c.global_batch)
    }

    fn get_at(&self, r: Recompute, batch: u64) -> &WorkloadSpec {
        &self
            .0
            .iter()
            .find(|(k, _)| *k == (r, batch))
            .expect("a searched point")
            .1
    }
}

/// Phase `phase` at a choice that validated during the enumeration.
fn rebuild(
    plan: &Plan,
    wl: &Workload,
    spec: &WorkloadSpec,
    phase: usize,
    c: &Choice,
    cl: &Cluster,
) -> Phase {
    wl.phase_at(
        spec,
        phase,
        &parallelism(c, &plan.workload_spec.parallelism),
        cl,
        &plan.workload_file,
    )
    .expect("a survivor validated")
}

/// Enumerates phase `phase`'s layouts on `cluster`: the survivors and the record of the rest.
fn enumerate(
    plan: &Plan,
    cluster: &Cluster,
    works: &BTreeMap<Recompute, Workload>,
    phase: usize,
    space: &Space,
    specs: &Specs,
    record: &mut Record,
) -> Vec<Survivor> {
    let mut groups: HashMap<(Recompute, Layout), u32> = HashMap::new();
    let w = &plan.workload_spec;
    let ph = &w.training.phases[phase];
    let seq = ph.seq_len.unwrap_or(w.training.seq_len);
    let m = &plan.model;
    let heads = m.attention.heads();
    let gpus = cluster.gpus() as u64;
    let gpn = u64::from(cluster.gpus_per_node);
    let hbm = cluster.gpu.hbm_capacity.value.bytes;
    let moe = m.moe.is_some();
    let sms_n = |ep: u64| space.sms_for(ep, moe, w.parallelism.comm_sms).len() as u64;
    let per_ep =
        |ep: u64| (space.schedules.len() * space.mbs.len() * space.zeros.len()) as u64 * sms_n(ep);
    let per_pp: u64 = space.eps.iter().map(|&e| per_ep(e)).sum();
    let mut out = Vec::new();
    let prune = |why: &str, n: u64, record: &mut Record| {
        if n > 0 {
            *record.pruned.entry(why.to_string()).or_default() += n;
        }
    };
    for &r in &space.recomputes {
        let wl = &works[&r];
        for &batch in &space.batches {
            let spec = specs.get_at(r, batch);
            for &tp in &space.tps {
                for &cp in &space.cps {
                    let pps: Vec<u64> = space
                        .pps
                        .iter()
                        .copied()
                        .filter(|p| gpus % (tp * cp * p) == 0)
                        .collect();
                    let below = pps.len() as u64 * per_pp;
                    record.considered += below;
                    if heads % tp != 0 {
                        prune("tp: not a divisor of the attention heads", below, record);
                        continue;
                    }
                    if seq % cp != 0 {
                        prune("cp: not a divisor of the sequence", below, record);
                        continue;
                    }
                    for &pp in &pps {
                        let dp = gpus / (tp * cp * pp);
                        for &ep in &space.eps {
                            let here = per_ep(ep);
                            if let Some(moe) = m.moe {
                                if moe.routed % ep != 0 || (tp * cp * dp) % ep != 0 {
                                    prune(
                                        "ep: not a divisor of a stage's GPUs (tp·cp·dp)",
                                        here,
                                        record,
                                    );
                                    continue;
                                }
                            }
                            let sms = space.sms_for(ep, moe, w.parallelism.comm_sms);
                            for &(schedule, vpp) in &space.schedules {
                                for &mb in &space.mbs {
                                    for &(zero, opg) in &space.zeros {
                                        let n = sms.len() as u64;
                                        let choice = Choice {
                                            tp,
                                            pp,
                                            cp,
                                            ep,
                                            dp,
                                            vpp,
                                            schedule,
                                            micro_batch: mb,
                                            zero,
                                            overlap_param_gather: opg,
                                            comm_sms: sms[0],
                                            recompute: r,
                                            global_batch: batch,
                                        };
                                        let par = parallelism(&choice, &w.parallelism);
                                        let built = wl.phase_at(
                                            spec,
                                            phase,
                                            &par,
                                            cluster,
                                            &plan.workload_file,
                                        );
                                        let phase_built = match built {
                                            Ok(p) => p,
                                            Err(d) => {
                                                prune(&validator_reason(&d), n, record);
                                                continue;
                                            }
                                        };
                                        let PhaseKind::Simulated(segs) = &phase_built.kind else {
                                            continue;
                                        };
                                        let floor = segs
                                            .iter()
                                            .map(|s| memory_floor(wl, &s.layout, gpn))
                                            .fold(0.0, f64::max);
                                        if floor > hbm {
                                            prune("memory: the floor is above HBM", n, record);
                                            continue;
                                        }
                                        let mut main =
                                            segs.last().expect("a segment").layout.clone();
                                        for &c in &sms {
                                            let mut choice = choice;
                                            choice.comm_sms = c;
                                            main.comm_sms = c;
                                            let next = groups.len() as u32;
                                            let group = *groups
                                                .entry((r, Blocks::key(&main)))
                                                .or_insert(next);
                                            out.push(Survivor { choice, group });
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// A validator rejection, by the key it names.
fn validator_reason(d: &Diagnostic) -> String {
    let key = d
        .path
        .as_deref()
        .and_then(|p| p.rsplit('.').next())
        .unwrap_or("layout");
    match key {
        "micro_batch" => "micro-batch: the global batch does not divide by dp × micro-batch",
        "schedule" => "schedule: DualPipe needs an even pp and at least 2·pp micro-batches",
        "vpp" => "vpp: interleaving needs micro-batches divisible by pp",
        "pp" => "pp: more pipeline chunks than layers",
        "batch_ramp" => "batch ramp: the ramp's batch does not fit the layout",
        "ep" => "ep: not a divisor of a stage's GPUs (tp·cp·dp)",
        "comm_sms" => "comm SMs: not fewer than the chip's SMs",
        _ => return format!("{key}: rejected by the layout validator"),
    }
    .to_string()
}

/// Every segment of `phase` priced on shared blocks: (step seconds per segment, the main
/// segment's result).
fn price_phase(
    wl: &Workload,
    phase: &Phase,
    cluster: &Cluster,
    cal: &Calibration,
    blocks: &Blocks,
) -> (Vec<(Layout, f64)>, StepResult) {
    let PhaseKind::Simulated(segs) = &phase.kind else {
        unreachable!("a searched phase is simulated")
    };
    let mut times = Vec::with_capacity(segs.len());
    let mut main = None;
    for s in segs {
        let r = analytic::estimate_on(wl, &s.layout, cluster, cal, blocks);
        times.push((s.layout.clone(), r.step_time_s));
        main = Some(r);
    }
    (times, main.expect("a phase has a segment"))
}

fn figures(
    wl: &Workload,
    cluster: &Cluster,
    main_layout: &Layout,
    main: &StepResult,
    cost: &RunCost,
    peak_mem: f64,
) -> Figures {
    let gpus = cluster.gpus() as f64;
    let fpt = wl.model.training_flops_per_token(main_layout.seq_len);
    let tflops = fpt * main_layout.tokens_per_step() as f64 / main.step_time_s / gpus;
    let b = &main.breakdown;
    let ex = |k: &str| b.exposed_comm_by_kind.get(k).copied().unwrap_or(0.0);
    let (eff_hours, eff_usd, eff_days) = cost.effective();
    Figures {
        step_s: main.step_time_s,
        mfu: tflops / cluster.gpu.peak.bf16.value.flops,
        days: eff_days,
        dollars: eff_usd + cost.energy_cost_usd.unwrap_or(0.0),
        gpu_hours: eff_hours,
        ideal_gpu_hours: cost.gpu_hours,
        ettr: cost.goodput.as_ref().map_or(1.0, |g| g.ettr),
        mwh: cost.energy_mwh,
        memory_gib: peak_mem / GIB,
        compute_s: b.compute,
        bubble_s: b.bubble,
        exposed_s: EXPOSED.map(ex),
        optimizer_s: b.optimizer,
    }
}

/// The other simulated phases of one cluster, each at its fastest layout: (phase index, its
/// phase, step seconds per segment layout).
type SidePhases = Vec<(usize, Phase, Vec<(Layout, f64)>)>;

fn side_phases(
    plan: &Plan,
    cluster: &Cluster,
    works: &BTreeMap<Recompute, Workload>,
    cal: &Calibration,
    record: &mut Record,
) -> Result<SidePhases, String> {
    let w = &plan.workload_spec;
    let mut out = Vec::new();
    for (i, ph) in w.training.phases.iter().enumerate() {
        if i == plan.main_phase || ph.reported_gpu_hours.is_some() {
            continue;
        }
        let seq = ph.seq_len.unwrap_or(w.training.seq_len);
        let batch = ph.global_batch.unwrap_or(w.training.global_batch);
        let space = Space::new(plan, cluster, seq, batch, true);
        let mut rec = Record::default();
        let specs = Specs::new(plan, i, &space);
        let survivors = enumerate(plan, cluster, works, i, &space, &specs, &mut rec);
        let hbm = cluster.gpu.hbm_capacity.value.bytes;
        let priced = price_all(
            plan,
            works,
            &specs,
            i,
            &survivors,
            cluster,
            cal,
            &|_, ph, times, main| {
                let PhaseKind::Simulated(segs) = &ph.kind else {
                    unreachable!()
                };
                let secs: f64 = segs.iter().zip(times).map(|(s, (_, t))| s.steps * t).sum();
                let fits = main.memory.total <= hbm;
                (fits.then_some(secs), main.step_time_s)
            },
        );
        let best = priced
            .iter()
            .enumerate()
            .filter_map(|(k, (secs, _))| secs.map(|t| (k, t)))
            .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        let Some((k, _)) = best else {
            return Err(format!(
                "phase {}: none of its {} layouts fits ({} priced, all above HBM or none valid)",
                ph.name,
                rec.considered,
                priced.len()
            ));
        };
        let c = &survivors[k].choice;
        let wl = &works[&c.recompute];
        let phase = rebuild(plan, wl, specs.get(c), i, c, cluster);
        let PhaseKind::Simulated(segs) = &phase.kind else {
            unreachable!()
        };
        let times = segs
            .iter()
            .map(|s| {
                (
                    s.layout.clone(),
                    analytic::estimate(wl, &s.layout, cluster, cal).step_time_s,
                )
            })
            .collect();
        record
            .side_phases
            .push((ph.name.clone(), c.label(), priced[k].1, priced.len() as u64));
        out.push((i, phase, times));
    }
    Ok(out)
}

/// What [`price_all`] makes of one priced survivor: (survivor, its phase, each segment's layout
/// and step seconds, the main segment's result).
type PriceFn<'a, T> = dyn Fn(&Survivor, &Phase, &[(Layout, f64)], &StepResult) -> T + Sync + 'a;

/// Prices survivors group by group (shared blocks), in parallel across groups, keeping their
/// order: `f(survivor, its phase, segment times, main segment's result)` for each.
#[allow(clippy::too_many_arguments)]
fn price_all<T: Send>(
    plan: &Plan,
    works: &BTreeMap<Recompute, Workload>,
    specs: &Specs,
    phase: usize,
    survivors: &[Survivor],
    cluster: &Cluster,
    cal: &Calibration,
    f: &PriceFn<'_, T>,
) -> Vec<T> {
    let n = survivors
        .iter()
        .map(|s| s.group as usize + 1)
        .max()
        .unwrap_or(0);
    let mut groups: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, s) in survivors.iter().enumerate() {
        groups[s.group as usize].push(i);
    }
    let mut priced: Vec<(usize, T)> = groups
        .par_iter()
        .filter(|g| !g.is_empty())
        .flat_map_iter(|g| {
            let first = &survivors[g[0]];
            let wl = &works[&first.choice.recompute];
            let ph = rebuild(
                plan,
                wl,
                specs.get(&first.choice),
                phase,
                &first.choice,
                cluster,
            );
            let PhaseKind::Simulated(segs) = &ph.kind else {
                unreachable!("a searched phase is simulated")
            };
            let blocks =
                analytic::blocks(wl, &segs.last().expect("a segment").layout, cluster, cal);
            g.iter()
                .map(|&i| {
                    let s = &survivors[i];
                    let ph = rebuild(plan, wl, specs.get(&s.choice), phase, &s.choice, cluster);
                    let (times, main) = price_phase(wl, &ph, cluster, cal, &blocks);
                    (i, f(s, &ph, &times, &main))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    priced.sort_by_key(|(i, _)| *i);
    priced.into_iter().map(|(_, p)| p).collect()
}

/// Workloads of every recompute policy searched, on one cluster.
fn workloads(
    plan: &Plan,
    cluster: &Cluster,
    recomputes: &[Recompute],
    any: &Layout,
) -> Result<BTreeMap<Recompute, Workload>, Diagnostic> {
    let mut all = recomputes.to_vec();
    all.push(plan.workload_spec.training.recompute);
    let mut out = BTreeMap::new();
    for r in all {
        if out.contains_key(&r) {
            continue;
        }
        let mut spec = plan.workload_spec.clone();
        set_recompute(&mut spec, r);
        let w = Workload::with_model(
            &spec,
            plan.model.clone(),
            &plan.workload_file,
            cluster,
            Some(any.clone()),
        )?;
        out.insert(r, w);
    }
    Ok(out)
}

/// A layout that validates anywhere (for the workloads' placeholder): one GPU per stage.
fn placeholder(plan: &Plan, cluster: &Cluster) -> Layout {
    let w = &plan.workload_spec;
    Layout {
        tp: 1,
        pp: 1,
        ep: 1,
        cp: 1,
        dp: cluster.gpus() as u64,
        vpp: 1,
        zero: 0,
        overlap_param_gather: false,
        grad_reduce: Default::default(),
        split: Default::default(),
        schedule: Schedule::OneFOneB,
        moe_overlap: Default::default(),
        moe_dispatch: Default::default(),
        micro_batch: 1,
        micro_batches: 1,
        seq_len: w.training.seq_len,
        global_batch: w.training.global_batch,
        comm_sms: 0,
        sequence_parallel: false,
        tp_comm_overlap: false,
    }
}

fn status(f: &Figures, capacity_gib: f64, c: &ConstraintsSpec) -> Status {
    if f.memory_gib > capacity_gib {
        Status::OverHbm
    } else if c.deadline.is_some_and(|d| f.days * 86400.0 > d.secs) {
        Status::OverDeadline
    } else if c.budget.is_some_and(|b| f.dollars > b.usd) {
        Status::OverBudget
    } else {
        Status::Feasible
    }
}

/// The objective's order: smaller is better; ties by fewer GPUs, then enumeration order.
fn order(o: Objective, a: (&Figures, u64, usize), b: (&Figures, u64, usize)) -> std::cmp::Ordering {
    let (fa, fb) = match o {
        Objective::Fastest => ((a.0.days, a.0.dollars), (b.0.days, b.0.dollars)),
        Objective::Cheapest | Objective::Pareto => {
            ((a.0.dollars, a.0.days), (b.0.dollars, b.0.days))
        }
    };
    fa.0.total_cmp(&fb.0)
        .then(fa.1.total_cmp(&fb.1))
        .then(a.1.cmp(&b.1))
        .then(a.2.cmp(&b.2))
}

/// Everything priced on one cluster, before the constraints: (record, priced rows).
fn search_cluster(plan: &Plan, ci: usize, cal: &Calibration) -> (Record, Vec<Priced>, SideMemo) {
    let cand = &plan.candidates[ci];
    let mut record = Record::default();
    let cluster = match &cand.cluster {
        Ok(c) => c,
        Err(why) => {
            record.unusable = Some(why.clone());
            return (record, Vec::new(), None);
        }
    };
    if plan.constraints.max_gpus.is_some_and(|m| cand.gpus > m) {
        record.unusable = Some(format!(
            "{} GPUs, above max_gpus {}",
            cand.gpus,
            plan.constraints.max_gpus.unwrap_or(0)
        ));
        return (record, Vec::new(), None);
    }
    let w = &plan.workload_spec;
    let space = Space::new(
        plan,
        cluster,
        w.training.seq_len,
        w.training.global_batch,
        false,
    );
    let works = match workloads(
        plan,
        cluster,
        &space.recomputes,
        &placeholder(plan, cluster),
    ) {
        Ok(x) => x,
        Err(d) => {
            record.unusable = Some(format!("{}: {}", d.path.unwrap_or_default(), d.found));
            return (record, Vec::new(), None);
        }
    };
    let sides = match side_phases(plan, cluster, &works, cal, &mut record) {
        Ok(s) => s,
        Err(why) => {
            record.unusable = Some(why);
            return (record, Vec::new(), None);
        }
    };
    let specs = Specs::new(plan, plan.main_phase, &space);
    let survivors = enumerate(
        plan,
        cluster,
        &works,
        plan.main_phase,
        &space,
        &specs,
        &mut record,
    );
    let capacity = cluster.gpu.hbm_capacity.value.bytes / GIB;
    let rows: Vec<Priced> = price_all(
        plan,
        &works,
        &specs,
        plan.main_phase,
        &survivors,
        cluster,
        cal,
        &|s, ph, times, main| {
            let wl = &works[&s.choice.recompute];
            let cost = run_cost(plan, cand, cluster, ph, times, &sides);
            let PhaseKind::Simulated(segs) = &ph.kind else {
                unreachable!()
            };
            let main_layout = &segs.last().expect("a segment").layout;
            let f = figures(wl, cluster, main_layout, main, &cost, main.memory.total);
            Priced {
                candidate: ci,
                choice: s.choice,
                analytic_status: status(&f, capacity, &plan.constraints),
                analytic: f,
                des: None,
                des_status: None,
            }
        },
    );
    record.priced = rows.len() as u64;
    (record, rows, Some((works, sides)))
}

/// Per cluster, what DES re-ranking needs again: the workloads and the side phases.
type SideMemo = Option<(BTreeMap<Recompute, Workload>, SidePhases)>;

/// The run's cost with the main phase at `phase` (segment times `times`) and the side phases
/// at their own layouts.
fn run_cost(
    plan: &Plan,
    cand: &Candidate,
    cluster: &Cluster,
    phase: &Phase,
    times: &[(Layout, f64)],
    sides: &SidePhases,
) -> RunCost {
    let w = &plan.workload_spec;
    let mut phases = Vec::with_capacity(w.training.phases.len());
    let mut side_times: Vec<&(Layout, f64)> = Vec::new();
    for (i, ph) in w.training.phases.iter().enumerate() {
        if i == plan.main_phase {
            phases.push(phase.clone());
        } else if let Some(h) = ph.reported_gpu_hours {
            phases.push(Phase {
                name: ph.name.clone(),
                kind: PhaseKind::Reported { gpu_hours: h },
                nodes: None,
                note: None,
            });
        } else if let Some((_, p, t)) = sides.iter().find(|(k, _, _)| *k == i) {
            phases.push(p.clone());
            side_times.extend(t.iter());
        }
    }
    let mut step_time = |l: &Layout| {
        times
            .iter()
            .chain(side_times.iter().copied())
            .find(|(k, _)| k == l)
            .map(|(_, t)| *t)
            .expect("every segment was priced")
    };
    let inputs = plan_goodput(plan, cluster);
    cost::phases_cost(
        &phases,
        &cand.pricing,
        cluster.gpus() as u64,
        cluster.gpu.tdp.value.watts,
        Some(&inputs),
        &mut step_time,
    )
}

/// The goodput model's inputs for the plan's workload on `cluster`.
fn plan_goodput(plan: &Plan, cluster: &Cluster) -> cost::goodput::Inputs {
    let w = &plan.workload_spec;
    cost::goodput::Inputs {
        spec: w.reliability.clone(),
        checkpoint_bytes: plan.checkpoint_bytes,
        gpus_per_node: u64::from(cluster.gpus_per_node).max(1),
        drivers: false,
    }
}

/// A priced row's cluster, workload and main phase, rebuilt.
fn row_phase<'a>(
    plan: &'a Plan,
    p: &Priced,
    memo: &'a SideMemo,
) -> (&'a Cluster, &'a Workload, Phase) {
    let cluster = plan.candidates[p.candidate]
        .cluster
        .as_ref()
        .expect("a priced cluster is usable");
    let (works, _) = memo.as_ref().expect("a priced cluster has its memo");
    let wl = &works[&p.choice.recompute];
    let spec = spec_for(
        plan,
        plan.main_phase,
        p.choice.recompute,
        p.choice.global_batch,
    );
    let phase = rebuild(plan, wl, &spec, plan.main_phase, &p.choice, cluster);
    (cluster, wl, phase)
}

/// Side phases with each segment's step re-priced by the DES (on the workload `wd`).
fn des_side_times(
    sides: &SidePhases,
    wd: &Workload,
    cluster: &Cluster,
    cal: &Calibration,
) -> SidePhases {
    retime_sides(sides, &|l| {
        des::estimate(wd, l, cluster, cal, false).step_time_s
    })
}

/// Side phases with each segment's step re-priced by `step`.
fn retime_sides(sides: &SidePhases, step: &dyn Fn(&Layout) -> f64) -> SidePhases {
    sides
        .iter()
        .map(|(i, ph, t)| {
            let t2 = t.iter().map(|(l, _)| (l.clone(), step(l))).collect();
            (*i, ph.clone(), t2)
        })
        .collect()
}

/// The side phases of each candidate re-priced by the DES (for the candidates `rows` touch).
fn des_sides(
    plan: &Plan,
    priced: &[Priced],
    rows: &[usize],
    memos: &[SideMemo],
    cal: &Calibration,
) -> Vec<Option<SidePhases>> {
    (0..plan.candidates.len())
        .into_par_iter()
        .map(|ci| {
            if !rows.iter().any(|&i| priced[i].candidate == ci) {
                return None;
            }
            let cluster = plan.candidates[ci].cluster.as_ref().ok()?;
            let (works, sides) = memos[ci].as_ref()?;
            Some(des_side_times(
                sides,
                &works[&plan.workload_spec.training.recompute],
                cluster,
                cal,
            ))
        })
        .collect()
}

/// Re-prices row `p` with the discrete-event engine (its side phases as `des_sides` priced
/// them).
fn des_figures(
    plan: &Plan,
    p: &Priced,
    memo: &SideMemo,
    sides_des: &SidePhases,
    cal: &Calibration,
) -> (Figures, Status) {
    let (cluster, wl, phase) = row_phase(plan, p, memo);
    des_priced(
        plan,
        &plan.candidates[p.candidate],
        cluster,
        wl,
        &phase,
        sides_des,
        cal,
    )
}

/// One layout on candidate `ci`, priced by the discrete-event engine as a run prices it
/// (whether or not a search would keep it: over HBM, outside the search's bounds): `choice`, or
/// the workload's own layout where `None`. The other simulated phases run at their fastest
/// layouts (analytic search, DES-priced). Err: why the layout cannot run there.
pub fn price_des(
    plan: &Plan,
    ci: usize,
    choice: Option<&Choice>,
    cal: &Calibration,
) -> Result<(Figures, Status), String> {
    let cand = &plan.candidates[ci];
    let cluster = cand.cluster.as_ref().map_err(|e| e.clone())?;
    let w = &plan.workload_spec;
    let recompute = choice.map_or(w.training.recompute, |c| c.recompute);
    let why = |d: Diagnostic| format!("{}: {}", d.path.unwrap_or_default(), d.found);
    let works = workloads(plan, cluster, &[recompute], &placeholder(plan, cluster)).map_err(why)?;
    let wl = &works[&recompute];
    let (spec, par) = match choice {
        Some(c) => (
            spec_for(plan, plan.main_phase, c.recompute, c.global_batch),
            parallelism(c, &w.parallelism),
        ),
        None => (w.clone(), w.parallelism.clone()),
    };
    let phase = wl
        .phase_at(&spec, plan.main_phase, &par, cluster, &plan.workload_file)
        .map_err(why)?;
    let mut record = Record::default();
    let sides = side_phases(plan, cluster, &works, cal, &mut record)?;
    let sides = des_side_times(&sides, &works[&w.training.recompute], cluster, cal);
    Ok(des_priced(plan, cand, cluster, wl, &phase, &sides, cal))
}

/// The main phase `phase` of `wl` on `cluster` priced by the DES, with the side phases `sides`.
fn des_priced(
    plan: &Plan,
    cand: &Candidate,
    cluster: &Cluster,
    wl: &Workload,
    phase: &Phase,
    sides: &SidePhases,
    cal: &Calibration,
) -> (Figures, Status) {
    let PhaseKind::Simulated(segs) = &phase.kind else {
        unreachable!("the main phase is simulated")
    };
    let mut times = Vec::new();
    let mut main = None;
    let mut mem: f64 = 0.0;
    for s in segs {
        let r = des::estimate(wl, &s.layout, cluster, cal, false);
        times.push((s.layout.clone(), r.step_time_s));
        mem = mem.max(r.memory.total);
        main = Some(r);
    }
    let main = main.expect("a segment");
    let cost = run_cost(plan, cand, cluster, phase, &times, sides);
    let main_layout = &segs.last().expect("a segment").layout;
    let f = figures(wl, cluster, main_layout, &main, &cost, mem);
    let capacity = cluster.gpu.hbm_capacity.value.bytes / GIB;
    (f, status(&f, capacity, &plan.constraints))
}

/// The pick among `rows` (indices into `priced`) by `o`, with figures `fig`.
fn pick_of(
    priced: &[Priced],
    plan: &Plan,
    fig: &dyn Fn(&Priced) -> (Figures, Status),
    rows: impl Iterator<Item = usize>,
) -> Option<usize> {
    rows.filter(|&i| fig(&priced[i]).1 == Status::Feasible)
        .min_by(|&a, &b| {
            let (fa, fb) = (fig(&priced[a]).0, fig(&priced[b]).0);
            order(
                plan.objective,
                (&fa, plan.candidates[priced[a].candidate].gpus, a),
                (&fb, plan.candidates[priced[b].candidate].gpus, b),
            )
        })
}

/// Every candidate searched and priced by the analytic engine: the records, the priced rows
/// (candidate by candidate, in enumeration order), and what DES re-ranking needs again.
pub struct Analytic {
    pub records: Vec<Record>,
    pub priced: Vec<Priced>,
    memos: Vec<SideMemo>,
}

/// The analytic half of [`search`] (what its benchmark times). `progress(done)` per candidate.
pub fn price_analytic(
    plan: &Plan,
    cal: &Calibration,
    progress: &(dyn Fn(usize) + Sync),
) -> Analytic {
    let n = plan.candidates.len();
    let mut records = Vec::with_capacity(n);
    let mut priced: Vec<Priced> = Vec::new();
    let mut memos: Vec<SideMemo> = Vec::with_capacity(n);
    for ci in 0..n {
        let (rec, rows, memo) = search_cluster(plan, ci, cal);
        records.push(rec);
        priced.extend(rows);
        memos.push(memo);
        progress(ci + 1);
    }
    Analytic {
        records,
        priced,
        memos,
    }
}

/// Searches every candidate, re-ranks the best with the DES, picks, and tests the pick's
/// sensitivity. `progress(done, total)` ticks per candidate and per DES re-rank.
pub fn search(plan: &Plan, cal: &Calibration, progress: &(dyn Fn(usize, usize) + Sync)) -> Outcome {
    search_with(plan, cal, progress, true)
}

/// [`search`], with the pick's sensitivity tested or not (a scenario that runs many searches
/// and reports none of their sensitivities skips it).
pub fn search_with(
    plan: &Plan,
    cal: &Calibration,
    progress: &(dyn Fn(usize, usize) + Sync),
    with_sensitivity: bool,
) -> Outcome {
    let n = plan.candidates.len();
    let total = n + plan.search.top_k;
    let t0 = std::time::Instant::now();
    let Analytic {
        mut records,
        mut priced,
        memos,
    } = price_analytic(plan, cal, &|done| progress(done, total));
    let analytic_s = t0.elapsed().as_secs_f64();
    let priced_count = priced.len() as u64;
    tally(&mut records, &priced);

    // Rank by the analytic figures; re-price the best `top_k` feasible with the DES.
    let mut order_a: Vec<usize> = (0..priced.len()).collect();
    let key = |i: usize| {
        (
            &priced[i].analytic,
            plan.candidates[priced[i].candidate].gpus,
            i,
        )
    };
    order_a.sort_by(|&a, &b| order(plan.objective, key(a), key(b)));
    let feasible_a: Vec<usize> = order_a
        .iter()
        .copied()
        .filter(|&i| priced[i].analytic_status == Status::Feasible)
        .collect();
    // The DES re-prices the best analytic layout of each structure (cluster, tp, pp, ep, cp,
    // schedule, vpp, communication SMs), `top_k` at a time until one it prices is feasible (at
    // most four rounds): variants of one structure (ZeRO, SMs, micro-batch) rank alike, and the
    // analytic engine misses costs the DES sees, so breadth beats depth.
    let structure = |p: &Priced| {
        let c = &p.choice;
        (
            p.candidate,
            c.tp,
            c.pp,
            c.ep,
            c.cp,
            c.schedule,
            c.vpp,
            c.comm_sms,
        )
    };
    let mut seen = std::collections::HashSet::new();
    let heads: Vec<usize> = feasible_a
        .iter()
        .copied()
        .filter(|&i| seen.insert(structure(&priced[i])))
        .collect();
    // Taken round-robin over the pipeline schedules: the best head of each schedule, then the
    // second of each, and so on, so that a family the analytic engine undervalues still gets
    // its best layouts re-priced (in analytic order within each round).
    let mut nth: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut keyed: Vec<(usize, usize, usize)> = heads
        .iter()
        .enumerate()
        .map(|(pos, &i)| {
            let k = nth.entry(priced[i].choice.schedule.name()).or_default();
            *k += 1;
            (*k, pos, i)
        })
        .collect();
    keyed.sort_unstable();
    let heads: Vec<usize> = keyed.into_iter().map(|(_, _, i)| i).collect();
    let t1 = std::time::Instant::now();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let mut top: Vec<usize> = Vec::new();
    // The workload's own layout, wherever it was priced: ranked among the feasible, and priced
    // by the DES too, as the practitioners' reference.
    let wp = &plan.workload_spec.parallelism;
    let own_choice = |p: &Priced| {
        let c = &p.choice;
        (c.tp, c.pp, c.ep, c.cp, c.schedule, c.micro_batch, c.zero)
            == (
                wp.tp,
                wp.pp,
                wp.ep,
                wp.cp,
                wp.schedule,
                wp.micro_batch,
                wp.zero,
            )
            && (c.schedule != Schedule::Interleaved || c.vpp == wp.vpp)
            && c.overlap_param_gather == wp.overlap_param_gather
            && c.comm_sms == wp.comm_sms
            && c.recompute == plan.workload_spec.training.recompute
            && c.global_batch == plan.workload_spec.training.global_batch
            && match wp.dp {
                DpSpec::Fixed(d) => c.dp == d,
                DpSpec::Auto => true,
            }
    };
    // `top_k: 0` turns the DES off: every figure and the pick are the analytic engine's.
    let des_on = plan.search.top_k > 0;
    let own: Vec<usize> = (0..priced.len())
        .filter(|&i| own_choice(&priced[i]))
        .collect();
    let rounds: Vec<&[usize]> = if des_on {
        heads.chunks(plan.search.top_k).take(4).collect()
    } else {
        Vec::new()
    };
    let touched: Vec<usize> = rounds
        .iter()
        .flat_map(|r| r.iter().copied())
        .chain(own.iter().copied().filter(|_| des_on))
        .collect();
    let sides_des = des_sides(plan, &priced, &touched, &memos, cal);
    let des_row = |priced: &[Priced], i: usize| {
        let p = &priced[i];
        let sides = sides_des[p.candidate]
            .as_ref()
            .expect("DES side phases of a re-ranked cluster");
        des_figures(plan, p, &memos[p.candidate], sides, cal)
    };
    for round in rounds {
        let rows: Vec<(Figures, Status)> = round
            .par_iter()
            .map(|&i| {
                let r = des_row(&priced, i);
                let k = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                progress(n + k.min(plan.search.top_k), total);
                r
            })
            .collect();
        for (&i, (f, s)) in round.iter().zip(rows) {
            priced[i].des = Some(f);
            priced[i].des_status = Some(s);
        }
        top.extend_from_slice(round);
        if top
            .iter()
            .any(|&i| priced[i].des_status == Some(Status::Feasible))
        {
            break;
        }
    }
    let extra: Vec<usize> = own
        .iter()
        .copied()
        .filter(|i| des_on && priced[*i].des.is_none())
        .collect();
    let rows: Vec<(Figures, Status)> = extra.par_iter().map(|&i| des_row(&priced, i)).collect();
    for (&i, (f, s)) in extra.iter().zip(rows) {
        priced[i].des = Some(f);
        priced[i].des_status = Some(s);
    }
    let own: Vec<(usize, Option<usize>)> = own
        .into_iter()
        .map(|i| (i, feasible_a.iter().position(|&k| k == i)))
        .collect();
    let des_s = t1.elapsed().as_secs_f64();

    // The ranked table: the re-ranked (and the workload's own) by their DES figures, then the
    // rest by analytic.
    let mut ranked = top.clone();
    ranked.extend(
        own.iter()
            .map(|&(i, _)| i)
            .filter(|&i| priced[i].des.is_some() && !top.contains(&i)),
    );
    let bkey = |i: usize| {
        (
            *priced[i].best().0,
            plan.candidates[priced[i].candidate].gpus,
            i,
        )
    };
    ranked.sort_by(|&a, &b| {
        let (fa, fb) = (bkey(a), bkey(b));
        let sa = priced[a].best().1 != Status::Feasible;
        let sb = priced[b].best().1 != Status::Feasible;
        sa.cmp(&sb)
            .then_with(|| order(plan.objective, (&fa.0, fa.1, fa.2), (&fb.0, fb.1, fb.2)))
    });
    let more: Vec<usize> = feasible_a
        .iter()
        .copied()
        .filter(|i| priced[*i].des.is_none() && !ranked.contains(i))
        .take(plan.search.top.saturating_sub(ranked.len()))
        .collect();
    ranked.extend(more);
    // Without the DES, the workload's own layouts close the table where they are not in it.
    let own_rest: Vec<usize> = own
        .iter()
        .map(|&(i, _)| i)
        .filter(|i| !ranked.contains(i))
        .collect();
    ranked.extend(own_rest);
    let best = |p: &Priced| {
        let (f, s) = p.best();
        (*f, s)
    };
    let des_priced: Vec<usize> = top
        .iter()
        .copied()
        .chain(own.iter().map(|&(i, _)| i))
        .filter(|&i| priced[i].des.is_some())
        .collect();
    let pick = pick_of(&priced, plan, &best, des_priced.iter().copied())
        .or_else(|| pick_of(&priced, plan, &best, feasible_a.iter().copied()));

    // The front of days against dollars among layouts within HBM (analytic figures).
    let mut within: Vec<usize> = (0..priced.len())
        .filter(|&i| priced[i].analytic_status != Status::OverHbm)
        .collect();
    within.sort_by(|&a, &b| {
        let (fa, fb) = (&priced[a].analytic, &priced[b].analytic);
        fa.days
            .total_cmp(&fb.days)
            .then(fa.dollars.total_cmp(&fb.dollars))
            .then(a.cmp(&b))
    });
    let mut front = Vec::new();
    let mut cheapest = f64::INFINITY;
    for i in within {
        if priced[i].analytic.dollars < cheapest {
            cheapest = priced[i].analytic.dollars;
            front.push(i);
        }
    }

    let sensitivity = if !with_sensitivity {
        Vec::new()
    } else {
        sensitivity(
            plan,
            &priced,
            &des_priced,
            &feasible_a,
            &order_a,
            cal,
            &memos,
        )
    };
    let infeasible = pick.is_none().then(|| explain(plan, &records, &priced));
    Outcome {
        priced,
        records,
        ranked,
        front,
        pick,
        sensitivity,
        infeasible,
        own,
        priced_count,
        analytic_s,
        des_s,
        deadline_days: plan.constraints.deadline.map(|d| d.secs / 86400.0),
        budget_usd: plan.constraints.budget.map(|b| b.usd),
    }
}

/// How the pick moves with every price ±25% (and each chip's alone), by the pick's own rule, and
/// with kernel efficiency ±10% (the best 256 layouts within HBM re-priced by the analytic
/// engine, against its own pick at nominal kernels).
fn sensitivity(
    plan: &Plan,
    priced: &[Priced],
    des_priced: &[usize],
    feasible_a: &[usize],
    order_a: &[usize],
    cal: &Calibration,
    memos: &[SideMemo],
) -> Vec<Sensitivity> {
    let mut out = Vec::new();
    let within: Vec<usize> = order_a
        .iter()
        .copied()
        .filter(|&i| priced[i].analytic_status != Status::OverHbm)
        .collect();
    let cap = |p: &Priced| {
        plan.candidates[p.candidate]
            .cluster
            .as_ref()
            .map(|c| c.gpu.hbm_capacity.value.bytes / GIB)
            .unwrap_or(0.0)
    };
    let row = |what: String,
               pick: Option<usize>,
               versus: Option<usize>,
               fig: &dyn Fn(usize) -> Figures| Sensitivity {
        what,
        pick,
        versus,
        days: pick.map(|i| fig(i).days),
        dollars: pick.map(|i| fig(i).dollars),
    };
    // Prices: the pick's own rule (the DES's figures where it ran, then the analytic ones)
    // with every dollar figure scaled; ×1.00 is the pick.
    // With several chips, each chip's price alone too (where one chip's price crosses another's).
    let mut chips: Vec<&str> = plan.candidates.iter().map(|c| c.chip.as_str()).collect();
    chips.sort_unstable();
    chips.dedup();
    let mut cases: Vec<(Option<&str>, f64)> = vec![(None, 0.75), (None, 1.0), (None, 1.25)];
    if chips.len() > 1 {
        for &c in &chips {
            cases.extend([(Some(c), 0.75), (Some(c), 1.25)]);
        }
    }
    let mut nominal = None;
    for (chip, f) in cases {
        let fig = |p: &Priced| {
            let (b, _) = p.best();
            let mut a = *b;
            if chip.is_none_or(|c| plan.candidates[p.candidate].chip == c) {
                a.dollars *= f;
            }
            (a, status(&a, cap(p), &plan.constraints))
        };
        let pick = pick_of(priced, plan, &fig, des_priced.iter().copied())
            .or_else(|| pick_of(priced, plan, &fig, feasible_a.iter().copied()));
        if chip.is_none() && f == 1.0 {
            nominal = pick;
        }
        let what = match chip {
            None => format!("every price ×{f:.2}"),
            Some(c) => format!("{c} price ×{f:.2}"),
        };
        out.push(row(what, pick, None, &|i| fig(&priced[i]).0));
    }
    for r in out.iter_mut() {
        r.versus = nominal;
    }
    // Kernels: the analytic engine over the best 256 layouts within HBM, against its own pick
    // at ×1.0 (re-pricing them all with the DES would cost minutes).
    let top: Vec<usize> = within.iter().copied().take(256).collect();
    let base = |p: &Priced| (p.analytic, p.analytic_status);
    let base_pick = pick_of(priced, plan, &base, top.iter().copied());
    for f in [0.9, 1.0, 1.1] {
        if f == 1.0 {
            out.push(row(
                "kernel efficiency ×1.0 (analytic)".into(),
                base_pick,
                base_pick,
                &|i| priced[i].analytic,
            ));
            continue;
        }
        let scaled = cal.kernels_scaled(f);
        let figs: Vec<(Figures, Status)> = top
            .par_iter()
            .map(|&i| reprice(plan, &priced[i], &memos[priced[i].candidate], &scaled))
            .collect();
        let lookup = |p: &Priced| -> (Figures, Status) {
            let k = top
                .iter()
                .position(|&i| std::ptr::eq(&priced[i], p))
                .expect("a re-priced row");
            figs[k]
        };
        let pick = pick_of(priced, plan, &lookup, top.iter().copied());
        out.push(row(
            format!("kernel efficiency ×{f:.1} (analytic)"),
            pick,
            base_pick,
            &|i| lookup(&priced[i]).0,
        ));
    }
    out
}

/// Row `p` re-priced by the analytic engine with calibration `cal` (side phases included).
fn reprice(plan: &Plan, p: &Priced, memo: &SideMemo, cal: &Calibration) -> (Figures, Status) {
    let cand = &plan.candidates[p.candidate];
    let (cluster, wl, phase) = row_phase(plan, p, memo);
    let (works, sides) = memo.as_ref().expect("a priced cluster has its memo");
    let PhaseKind::Simulated(segs) = &phase.kind else {
        unreachable!()
    };
    let main_layout = &segs.last().expect("a segment").layout;
    let blocks = analytic::blocks(wl, main_layout, cluster, cal);
    let (times, main) = price_phase(wl, &phase, cluster, cal, &blocks);
    let wd = &works[&plan.workload_spec.training.recompute];
    let sides2 = retime_sides(sides, &|l| {
        analytic::estimate(wd, l, cluster, cal).step_time_s
    });
    let cost = run_cost(plan, cand, cluster, &phase, &times, &sides2);
    let f = figures(wl, cluster, main_layout, &main, &cost, main.memory.total);
    let capacity = cluster.gpu.hbm_capacity.value.bytes / GIB;
    (f, status(&f, capacity, &plan.constraints))
}

/// Why nothing is feasible, constraint by constraint, and what to relax.
fn explain(plan: &Plan, records: &[Record], priced: &[Priced]) -> Vec<String> {
    let mut out = Vec::new();
    let unusable: Vec<String> = records
        .iter()
        .zip(&plan.candidates)
        .filter_map(|(r, c)| r.unusable.as_ref().map(|w| format!("{}: {w}", c.name)))
        .collect();
    if !unusable.is_empty() {
        out.push(format!(
            "{} of {} clusters could not be searched: {}",
            unusable.len(),
            records.len(),
            unusable.join("; ")
        ));
    }
    let sum = |f: fn(&Record) -> u64| records.iter().map(f).sum::<u64>();
    let considered = sum(|r| r.considered);
    let mut pruned: BTreeMap<&str, u64> = BTreeMap::new();
    for r in records {
        for (k, v) in &r.pruned {
            *pruned.entry(k).or_default() += v;
        }
    }
    if considered > 0 {
        let mut parts: Vec<(&str, u64)> = pruned.into_iter().collect();
        parts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        out.push(format!(
            "of {considered} layouts considered, {} were removed before pricing ({})",
            parts.iter().map(|p| p.1).sum::<u64>(),
            parts
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    let hbm = sum(|r| r.over_hbm);
    if hbm > 0 {
        out.push(format!(
            "HBM removed {hbm} priced layouts: more GPUs, a chip with more memory, or full recompute"
        ));
    }
    let within: Vec<&Priced> = priced
        .iter()
        .filter(|p| p.analytic_status != Status::OverHbm)
        .collect();
    if let Some(d) = plan.constraints.deadline {
        let over = sum(|r| r.over_deadline);
        if over > 0 {
            let fastest = within
                .iter()
                .min_by(|a, b| a.analytic.days.total_cmp(&b.analytic.days));
            out.push(format!(
                "the deadline of {:.1} days removed {over} layouts; {}",
                d.secs / 86400.0,
                match fastest {
                    Some(f) => format!(
                        "the fastest takes {:.1} days ({}, {}): relax the deadline to {:.0} days or add GPUs",
                        f.analytic.days,
                        plan.candidates[f.candidate].name,
                        f.choice.label(),
                        f.analytic.days.ceil()
                    ),
                    None => "none fits in memory".into(),
                }
            ));
        }
    }
    if let Some(b) = plan.constraints.budget {
        let over = sum(|r| r.over_budget);
        if over > 0 {
            let cheapest = within
                .iter()
                .filter(|p| p.analytic_status != Status::OverDeadline)
                .min_by(|a, b| a.analytic.dollars.total_cmp(&b.analytic.dollars));
            out.push(format!(
                "the budget of {} removed {over} layouts that met the deadline; {}",
                money(b.usd),
                match cheapest {
                    Some(c) => format!(
                        "the cheapest that meets the deadline costs {} ({}): raise the budget to that",
                        money(c.analytic.dollars),
                        plan.candidates[c.candidate].name
                    ),
                    None => "no layout meets the deadline either".into(),
                }
            ));
        }
    }
    if considered > 0 && priced.is_empty() {
        out.push("no layout survived to be priced: allow more GPUs, or other search values".into());
    }
    out
}

/// Counts the priced rows of each candidate by status into the records.
fn tally(records: &mut [Record], priced: &[Priced]) {
    for p in priced {
        let r = &mut records[p.candidate];
        match p.analytic_status {
            Status::Feasible => r.feasible += 1,
            Status::OverHbm => r.over_hbm += 1,
            Status::OverDeadline => r.over_deadline += 1,
            Status::OverBudget => r.over_budget += 1,
        }
    }
}

fn list<T>(v: &[T], f: impl Fn(&T) -> String) -> String {
    v.iter().map(f).collect::<Vec<_>>().join(", ")
}

/// What the report room shows of a searched plan.
pub fn view<'a>(plan: &Plan, outcome: &'a Outcome) -> View<'a> {
    let w = &plan.workload_spec;
    let c = &plan.constraints;
    let mut constraints = Vec::new();
    if let Some(m) = c.max_gpus {
        constraints.push(("max GPUs".to_string(), m.to_string()));
    }
    if let Some(d) = c.deadline {
        constraints.push((
            "deadline".to_string(),
            format!("{:.1} days", d.secs / 86400.0),
        ));
    }
    if let Some(b) = c.budget {
        constraints.push(("budget".to_string(), format!("${:.3}M", b.usd / 1e6)));
    }
    let mut space = Vec::new();
    if let Some(cl) = plan.candidates.iter().find_map(|c| c.cluster.as_ref().ok()) {
        let s = Space::new(plan, cl, w.training.seq_len, w.training.global_batch, false);
        let moe = plan.model.moe.is_some();
        space = vec![
            ("tp".into(), format!("{} (divisors of a node's GPUs)", list(&s.tps, u64::to_string))),
            ("cp".into(), format!("{} (powers of two, at least 1,024 tokens per rank unless max_cp)", list(&s.cps, u64::to_string))),
            ("pp".into(), format!("every divisor of the GPUs up to the {} layers (first cluster: {})", plan.model.layers, list(&s.pps, u64::to_string))),
            ("ep".into(), list(&s.eps, u64::to_string)),
            ("schedule (vpp)".into(), list(&s.schedules, |(sc, v)| if *sc == Schedule::Interleaved { format!("interleaved×{v}") } else { sc.name().to_string() })),
            ("micro-batch".into(), list(&s.mbs, u64::to_string)),
            ("ZeRO (parameter-gather overlap)".into(), list(&s.zeros, |(z, o)| format!("{z}{}", if *o { "+overlap" } else { "" }))),
            ("communication SMs".into(), if moe { format!("{} with EP > 1; 0 with EP1", list(&s.comm_sms, u32::to_string)) } else { format!("{} (the workload's; dense)", w.parallelism.comm_sms) }),
            ("recompute".into(), list(&s.recomputes, |r| r.name().to_string())),
            ("global batch (sequences)".into(), list(&s.batches, u64::to_string)),
            ("other simulated phases".into(), "per cluster, the fastest over tp, cp, pp, ep, schedule and vpp at the workload's micro-batch, ZeRO, recompute and communication SMs".into()),
        ];
    }
    View {
        workload: w.name.clone(),
        model: plan.model.name.clone(),
        main_phase: w.training.phases[plan.main_phase].name.clone(),
        objective: plan.objective.name(),
        constraints,
        space,
        candidates: plan
            .candidates
            .iter()
            .map(|c| CandidateView {
                name: c.name.clone(),
                chip: c.chip.clone(),
                gpus: c.gpus,
                topology: c.topology.clone(),
                price: c.price_label.clone(),
                hbm_gib: match &c.cluster {
                    Ok(cl) => cl.gpu.hbm_capacity.value.bytes / GIB,
                    Err(_) => crate::builtin::catalog()
                        .get(&c.chip)
                        .map_or(0.0, |(_, g)| g.hbm_capacity.value.bytes / GIB),
                },
            })
            .collect(),
        outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_doc;

    /// The test fixture plan, read from the repository.
    fn small_plan() -> Plan {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let read = |p: &Path| -> Result<Source, Diagnostic> {
            let path = if p.is_relative() {
                root.join(p)
            } else {
                p.to_path_buf()
            };
            let text = std::fs::read_to_string(&path).expect("a fixture");
            Ok(Source {
                name: p.display().to_string(),
                text,
                dir: path.parent().map(Path::to_path_buf),
            })
        };
        let src = read(Path::new("tests/fixtures/plan-small.yaml")).unwrap();
        let spec: PlanSpec = parse_doc(&src, &[]).unwrap();
        prepare(&spec, &src, None, &read).unwrap()
    }

    /// The main phase's space on `cluster`, its workloads, and what the enumeration keeps.
    fn main_search(
        plan: &Plan,
        cluster: &Cluster,
    ) -> (Space, BTreeMap<Recompute, Workload>, Record, Vec<Survivor>) {
        let w = &plan.workload_spec;
        let space = Space::new(
            plan,
            cluster,
            w.training.seq_len,
            w.training.global_batch,
            false,
        );
        let works = workloads(
            plan,
            cluster,
            &space.recomputes,
            &placeholder(plan, cluster),
        )
        .unwrap();
        let mut rec = Record::default();
        let specs = Specs::new(plan, plan.main_phase, &space);
        let survivors = enumerate(
            plan,
            cluster,
            &works,
            plan.main_phase,
            &space,
            &specs,
            &mut rec,
        );
        (space, works, rec, survivors)
    }

    /// Blocks priced once per group give every member exactly the estimate it gets alone, and
    /// the memory floor never exceeds either engine's peak: over every layout the search keeps
    /// on the 16-GPU cluster (every 7th checked against the DES).
    #[test]
    fn shared_blocks_change_nothing_and_the_memory_floor_is_a_floor() {
        let plan = small_plan();
        let cal = crate::builtin::calibration();
        let ci = plan.candidates.iter().position(|c| c.gpus == 16).unwrap();
        let cluster = plan.candidates[ci].cluster.as_ref().unwrap();
        let (space, works, rec, survivors) = main_search(&plan, cluster);
        assert!(survivors.len() > 200, "{}", survivors.len());
        let groups = survivors.iter().map(|s| s.group).max().unwrap() + 1;
        assert!((groups as usize) < survivors.len() / 4, "{groups} groups");
        let specs = Specs::new(&plan, plan.main_phase, &space);
        let mut first: BTreeMap<u32, Layout> = BTreeMap::new();
        let gpn = u64::from(cluster.gpus_per_node);
        for (k, s) in survivors.iter().enumerate() {
            let wl = &works[&s.choice.recompute];
            let ph = rebuild(
                &plan,
                wl,
                specs.get(&s.choice),
                plan.main_phase,
                &s.choice,
                cluster,
            );
            let PhaseKind::Simulated(segs) = &ph.kind else {
                unreachable!()
            };
            let l = &segs.last().unwrap().layout;
            let base = first.entry(s.group).or_insert_with(|| l.clone()).clone();
            let blocks = analytic::blocks(wl, &base, cluster, &cal);
            let shared = analytic::estimate_on(wl, l, cluster, &cal, &blocks);
            let fresh = analytic::estimate(wl, l, cluster, &cal);
            assert_eq!(shared, fresh, "{}", s.choice.label());
            let floor = memory_floor(wl, l, gpn);
            assert!(
                floor <= fresh.memory.total * (1.0 + 1e-12),
                "{}: {floor} > {}",
                s.choice.label(),
                fresh.memory.total
            );
            if k % 7 == 0 {
                let d = des::estimate(wl, l, cluster, &cal, false);
                assert!(
                    floor <= d.memory.total * (1.0 + 1e-12),
                    "{}: {floor} > DES {}",
                    s.choice.label(),
                    d.memory.total
                );
            }
        }
        // Nothing the floor removed fits: the floor only removes layouts above HBM.
        assert!(rec.pruned.keys().any(|k| k.starts_with("memory")) || rec.priced == 0);
    }

    /// Ownership prices a GPU-hour as its capital over the hours of its years, and adds the
    /// facility's electricity: 30,000 $ over 4 years is 0.856 $/h; 1 kW at PUE 1.25 and
    /// 0.10 $/kWh is 0.125 $/h more, which the energy line carries.
    #[test]
    fn owned_gpus_cost_their_capital_over_their_years_plus_electricity() {
        let spec: CandidateSpec = serde_yaml::from_str(
            "chip: H800\ngpus: 8\nprice: { capex_per_gpu: \"$30000\", amortization_years: 4, power_per_gpu: \"1 kW\", pue: 1.25, electricity_per_kwh: \"$0.10\" }\n",
        )
        .unwrap();
        let base = small_plan().workload_spec.pricing;
        let err = |_: String, f: String, e: &str| Diagnostic::new("t", f, e);
        let p = pricing(&spec, 0, &base, &err).unwrap();
        assert!((p.gpu_hour.usd - 30000.0 / (4.0 * 8766.0)).abs() < 1e-9);
        let gpu_hours = 1000.0;
        let rc = crate::cost::phases_cost(
            &[Phase {
                name: "x".into(),
                kind: PhaseKind::Reported { gpu_hours },
                nodes: None,
                note: None,
            }],
            &p,
            8,
            700.0,
            None,
            &mut |_| 0.0,
        );
        assert!((rc.energy_mwh - 1.25).abs() < 1e-9, "{}", rc.energy_mwh);
        assert!((rc.energy_cost_usd.unwrap() - 125.0).abs() < 1e-6);
        assert!((rc.cost_usd - gpu_hours * p.gpu_hour.usd).abs() < 1e-6);
        // A PUE below 1 or no years is a diagnostic.
        let bad: CandidateSpec = serde_yaml::from_str(
            "chip: H800\ngpus: 8\nprice: { capex_per_gpu: \"$30000\", amortization_years: 0, electricity_per_kwh: \"$0.10\" }\n",
        )
        .unwrap();
        assert!(pricing(&bad, 0, &base, &err).is_err());
    }

    /// Every combination is counted once: considered = pruned + survivors.
    #[test]
    fn the_record_accounts_for_every_combination() {
        let plan = small_plan();
        for c in &plan.candidates {
            let Ok(cluster) = &c.cluster else { continue };
            let (space, _, rec, survivors) = main_search(&plan, cluster);
            let pruned: u64 = rec.pruned.values().sum();
            assert_eq!(
                rec.considered,
                pruned + survivors.len() as u64,
                "{}",
                c.name
            );
            let per_ep: u64 = space
                .eps
                .iter()
                .map(|&e| space.sms_for(e, true, 20).len() as u64)
                .sum();
            let pps = |tp: u64, cp: u64| {
                space
                    .pps
                    .iter()
                    .filter(|&&p| c.gpus % (tp * cp * p) == 0)
                    .count() as u64
            };
            let all: u64 = space
                .tps
                .iter()
                .flat_map(|&tp| space.cps.iter().map(move |&cp| (tp, cp)))
                .map(|(tp, cp)| pps(tp, cp))
                .sum::<u64>()
                * per_ep
                * (space.schedules.len()
                    * space.mbs.len()
                    * space.zeros.len()
                    * space.recomputes.len()
                    * space.batches.len()) as u64;
            assert_eq!(rec.considered, all, "{}", c.name);
        }
    }
}
