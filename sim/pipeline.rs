//! The whole run, in the order data flows: documents → specs → cluster and workload →
//! estimate → cost → summary. No printing here; the CLI decides what to show.

use crate::config::topology::TopologySpec;
use crate::config::workload::WorkloadSpec;
use crate::config::{parse_doc, Diagnostic, Override, Source};
use crate::cost;
use crate::hw::Calibration;
use crate::report::Summary;
use crate::step::{analytic, des, StepResult, Timeline};
use crate::topo::{self, Cluster};
use crate::workload::layout::Layout;
use crate::workload::Workload;

/// The embedded default scenario: DeepSeek-V3 pre-training on 2,048 H800.
pub const DEFAULT_TOPOLOGY: (&str, &str) = (
    "topologies/h800-2048.yaml",
    include_str!("../topologies/h800-2048.yaml"),
);
pub const DEFAULT_WORKLOAD: (&str, &str) = (
    "workloads/deepseek-v3.yaml",
    include_str!("../workloads/deepseek-v3.yaml"),
);

/// The most micro-batches per pipeline replica the discrete-event engine simulates.
pub const MAX_DES_MICRO_BATCHES: u64 = 65_536;

/// Which engine produces the step time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Analytic,
    /// Discrete-event simulation; `full` simulates every GPU instead of one replica per stage.
    Des {
        full: bool,
    },
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Analytic => "analytic",
            Engine::Des { .. } => "des",
        }
    }

    fn estimate(self, w: &Workload, l: &Layout, c: &Cluster, cal: &Calibration) -> StepResult {
        match self {
            Engine::Analytic => analytic::estimate(w, l, c, cal),
            Engine::Des { full } => des::estimate(w, l, c, cal, full),
        }
    }
}

/// A step past the engine's horizon (or not a finite number) is refused, naming what took the
/// time.
fn check_horizon(e: &StepResult, phase: &str, file: &str) -> Result<(), Diagnostic> {
    if !e.beyond_horizon && e.step_time_s.is_finite() {
        return Ok(());
    }
    let b = &e.breakdown;
    let mut parts: Vec<(String, f64)> = vec![
        ("compute".into(), b.compute),
        ("pipeline bubble".into(), b.bubble),
        ("optimizer".into(), b.optimizer),
    ];
    parts.extend(
        b.exposed_comm_by_kind
            .iter()
            .map(|(k, v)| (format!("exposed {k} communication"), *v)),
    );
    let top = parts
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(k, v)| format!("{k} {v:.3e} s"))
        .unwrap_or_default();
    Err(Diagnostic::new(
        file,
        format!(
            "a step in {phase} past the simulator's horizon of {:.0} days of simulated time (the largest part: {top})",
            crate::units::HORIZON_S / 86400.0
        ),
        "inputs that keep one step under the horizon: check the bandwidths and latencies of the links that part uses (scale_up, scale_out, pcie), or the chip's compute and memory bandwidth",
    ))
}

/// Peak memory above HBM is an error that shows where the bytes go.
fn check_memory(e: &StepResult, phase: &str, file: &str) -> Result<(), Diagnostic> {
    let m = &e.memory;
    if m.total <= m.capacity {
        return Ok(());
    }
    let gib = |b: f64| b / 1073741824.0;
    Err(Diagnostic::new(
        file,
        format!(
            "a peak of {:.1} GiB per GPU in {phase}: weights {:.1} + gradients {:.1} + optimizer {:.1} + activations {:.1} GiB",
            gib(m.total),
            gib(m.weights),
            gib(m.grads),
            gib(m.optimizer),
            gib(m.activations)
        ),
        format!(
            "at most the {:.1} GiB of HBM: more pipeline or expert parallelism, a higher ZeRO stage, or more recomputation",
            gib(m.capacity)
        ),
    )
    .at("parallelism"))
}

/// The most wall time per second of training the goodput model accepts: beyond it the job is
/// interrupted about as fast as it checkpoints and restarts, and would take ages to simulate.
pub const MAX_WALL_PER_WORK: f64 = 100.0;

/// A run that the reliability section makes (almost) never finish is refused, naming why.
fn check_goodput(rc: &cost::RunCost, file: &str) -> Result<(), Diagnostic> {
    let Some(g) = &rc.goodput else {
        return Ok(());
    };
    for p in &g.phases {
        let ratio = p.wall_s / p.productive_s.max(1e-9);
        if !(ratio.is_finite() && ratio <= MAX_WALL_PER_WORK) {
            let q = &p.params;
            return Err(Diagnostic::new(
                file,
                format!(
                    "in {}, an interruption every {:.3} h on {} GPUs against a checkpoint stall of {:.1} s and a restart of {:.1} s: the phase would {}",
                    p.name,
                    1.0 / (q.rate_per_s + q.planned_rate_per_s) / 3600.0,
                    p.gpus,
                    q.stall_s,
                    q.restart_s,
                    if ratio.is_finite() {
                        format!("take {ratio:.0}× its training time")
                    } else {
                        "never finish".to_string()
                    }
                ),
                format!(
                    "reliability settings under which a run takes at most {MAX_WALL_PER_WORK}× its training time: lower failure rates, faster checkpoints or restarts"
                ),
            )
            .at("reliability"));
        }
    }
    Ok(())
}

/// Loads and validates both documents.
pub fn load(
    topology: &Source,
    workload: &Source,
    sets: &[Override],
) -> Result<(Cluster, Workload), Diagnostic> {
    let of = |doc: &str| sets.iter().filter(|o| o.doc == doc).collect::<Vec<_>>();
    let tspec: TopologySpec = parse_doc(topology, &of("topology"))?;
    let tsets = of("topology");
    let at = |d: Diagnostic| crate::config::attribute(d, topology, &tsets);
    let catalog = crate::builtin::catalog_for(&tspec, &topology.name).map_err(at)?;
    let cluster = topo::build(&tspec, &catalog, &topology.name).map_err(at)?;
    let wspec: WorkloadSpec = parse_doc(workload, &of("workload"))?;
    let w = Workload::new(&wspec, workload, &cluster)
        .map_err(|d| crate::config::attribute(d, workload, &of("workload")))?;
    Ok((cluster, w))
}

/// The clusters of the phases that set their own node count (the topology otherwise), keyed by
/// their GPUs: the same fabric with that many nodes.
fn phase_clusters(
    topology: &Source,
    sets: &[Override],
    w: &Workload,
) -> Result<Vec<(u64, Cluster)>, Diagnostic> {
    let mut out: Vec<(u64, Cluster)> = Vec::new();
    let mut nodes = w.phases.iter().filter_map(|p| p.nodes).peekable();
    if nodes.peek().is_none() {
        return Ok(out);
    }
    let of: Vec<&Override> = sets.iter().filter(|o| o.doc == "topology").collect();
    let base: TopologySpec = parse_doc(topology, &of)?;
    for nodes in nodes {
        let mut spec = base.clone();
        let gpus = nodes * u64::from(spec.gpus_per_node);
        if out.iter().any(|(g, _)| *g == gpus) {
            continue;
        }
        spec.nodes = u32::try_from(nodes)
            .map_err(|_| Diagnostic::new(&w.name, nodes.to_string(), "a node count below 2^32"))?;
        let catalog = crate::builtin::catalog_for(&spec, &topology.name)
            .map_err(|d| d.locate_in(&topology.text))?;
        let c = topo::build(&spec, &catalog, &topology.name)
            .map_err(|d| d.locate_in(&topology.text))?;
        out.push((gpus, c));
    }
    Ok(out)
}

/// Runs a scenario end to end.
pub fn run(
    topology: &Source,
    workload: &Source,
    sets: &[Override],
    engine: Engine,
    cal: &Calibration,
) -> Result<Summary, Diagnostic> {
    run_detailed(topology, workload, sets, engine, cal, false, &mut |_, _| {}).map(|o| o.summary)
}

/// A run with what the report room needs beyond the summary.
pub struct RunOutput {
    pub summary: Summary,
    /// The main layout's step, as the discrete-event engine laid it out (when asked for and
    /// the DES ran).
    pub timeline: Option<Timeline>,
    pub cluster: Cluster,
    pub workload: Workload,
}

/// Runs a scenario end to end, keeping the main step's timeline if `timeline` (DES only).
/// `progress(done, total)` is called after each distinct layout is simulated.
pub fn run_detailed(
    topology: &Source,
    workload: &Source,
    sets: &[Override],
    engine: Engine,
    cal: &Calibration,
    timeline: bool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<RunOutput, Diagnostic> {
    let started = std::time::Instant::now();
    let (cluster, w) = load(topology, workload, sets)?;
    let mut layouts = vec![&w.layout];
    for ph in &w.phases {
        if let crate::workload::PhaseKind::Simulated(segs) = &ph.kind {
            for s in segs {
                if !layouts.contains(&&s.layout) {
                    layouts.push(&s.layout);
                }
            }
        }
    }
    let total = layouts.len();
    let wsets: Vec<&Override> = sets.iter().filter(|o| o.doc == "workload").collect();
    // Compute keeps SMs beside communication: the chip's, less the communication SMs, less the
    // SMs Transformer Engine's userbuffers take from an overlapped GEMM.
    for l in &layouts {
        let margin = if l.tp_comm_overlap {
            cal.network.userbuffers_sms.value
        } else {
            0
        };
        if u64::from(l.comm_sms) + u64::from(margin) >= u64::from(cluster.gpu.sms.value) {
            return Err(crate::config::attribute(
                Diagnostic::new(
                    &workload.name,
                    format!(
                        "{} SMs for communication{} on a chip of {}",
                        l.comm_sms,
                        if margin > 0 {
                            format!(" and {margin} for TP overlap (userbuffers)")
                        } else {
                            String::new()
                        },
                        cluster.gpu.sms.value
                    ),
                    "fewer SMs for communication, so that compute keeps at least one",
                )
                .at("parallelism.comm_sms"),
                workload,
                &wsets,
            ));
        }
    }
    // The DES builds every micro-batch's tasks (about 16 KB each per replica).
    if matches!(engine, Engine::Des { .. }) {
        for l in &layouts {
            if l.micro_batches > MAX_DES_MICRO_BATCHES {
                return Err(crate::config::attribute(
                    Diagnostic::new(
                        &workload.name,
                        format!(
                            "{} micro-batches per pipeline replica (global batch {} over DP {} at micro-batch {})",
                            l.micro_batches, l.global_batch, l.dp, l.micro_batch
                        ),
                        format!(
                            "at most {MAX_DES_MICRO_BATCHES} for the discrete-event engine (it simulates each one): a larger micro-batch or more data parallelism, or --engine analytic"
                        ),
                    )
                    .at("training.global_batch"),
                    workload,
                    &wsets,
                ));
            }
        }
    }
    // Before any task is built: a layout whose memory floor is above HBM cannot fit (the
    // floor is never above either engine's peak), and a large model would take long to build.
    for l in &layouts {
        let floor = crate::step::memory_floor(&w, l, u64::from(cluster.gpus_per_node));
        let hbm = cluster.gpu.hbm_capacity.value.bytes;
        if floor > hbm {
            let gib = |b: f64| b / 1073741824.0;
            return Err(Diagnostic::new(
                &workload.name,
                format!(
                    "at least {:.1} GiB per GPU on TP{} PP{} EP{} CP{} DP{} (the memory floor, before any kernel is timed)",
                    gib(floor),
                    l.tp, l.pp, l.ep, l.cp, l.dp
                ),
                format!(
                    "at most the {:.1} GiB of HBM: more pipeline or expert parallelism, a higher ZeRO stage, or more recomputation",
                    gib(hbm)
                ),
            )
            .at("parallelism"));
        }
    }
    let (main, kept) = match engine {
        Engine::Des { full } if timeline => {
            let (r, t) = des::simulate(&w, &w.layout, &cluster, cal, full);
            (r, Some(t))
        }
        _ => (engine.estimate(&w, &w.layout, &cluster, cal), None),
    };
    progress(1, total);
    check_horizon(&main, "training", &workload.name)?;
    check_memory(&main, "training", &workload.name)?;
    // Each distinct layout of the run's phases is estimated once, on its phase's cluster.
    let others = phase_clusters(topology, sets, &w)?;
    let cluster_of = |l: &Layout| {
        others
            .iter()
            .find(|(g, _)| *g == l.gpus() && *g != cluster.gpus() as u64)
            .map_or(&cluster, |(_, c)| c)
    };
    let mut seen: Vec<(Layout, f64)> = vec![(w.layout.clone(), main.step_time_s)];
    for ph in &w.phases {
        if let crate::workload::PhaseKind::Simulated(segs) = &ph.kind {
            for s in segs {
                if !seen.iter().any(|(k, _)| k == &s.layout) {
                    let e = engine.estimate(&w, &s.layout, cluster_of(&s.layout), cal);
                    check_horizon(&e, &format!("phase {}", ph.name), &workload.name)?;
                    check_memory(&e, &format!("phase {}", ph.name), &workload.name)?;
                    seen.push((s.layout.clone(), e.step_time_s));
                    progress(seen.len(), total);
                }
            }
        }
    }
    let mut step_time = |l: &Layout| {
        seen.iter()
            .find(|(k, _)| k == l)
            .map(|(_, t)| *t)
            .expect("every phase layout was estimated")
    };
    let inputs = cost::goodput::Inputs::new(&w, u64::from(cluster.gpus_per_node));
    let rc = cost::run_cost(
        &w,
        cluster.gpus() as u64,
        cluster.gpu.tdp.value.watts,
        Some(&inputs),
        &mut step_time,
    );
    check_goodput(&rc, &workload.name)
        .map_err(|d| crate::config::attribute(d, workload, &wsets))?;
    // Nothing that is not a finite number leaves the pipeline.
    for (what, v) in [
        ("step time", main.step_time_s),
        ("GPU-hours", rc.gpu_hours),
        ("cost", rc.cost_usd),
        ("days", rc.days),
        ("energy", rc.energy_mwh),
        ("effective GPU-hours", rc.effective().0),
    ] {
        if !v.is_finite() || v < 0.0 {
            return Err(Diagnostic::new(
                &workload.name,
                format!("a {what} of {v}"),
                "inputs that give finite, non-negative results (this is a trainsim defect if every input is within its documented range: please report it)",
            ));
        }
    }
    let summary = Summary::new(
        &w,
        &cluster,
        &main,
        &rc,
        engine.name(),
        started.elapsed().as_secs_f64(),
    );
    Ok(RunOutput {
        summary,
        timeline: kept,
        cluster,
        workload: w,
    })
}
