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

/// Loads and validates both documents.
pub fn load(
    topology: &Source,
    workload: &Source,
    sets: &[Override],
) -> Result<(Cluster, Workload), Diagnostic> {
    let of = |doc: &str| sets.iter().filter(|o| o.doc == doc).collect::<Vec<_>>();
    let tspec: TopologySpec = parse_doc(topology, &of("topology"))?;
    let catalog = crate::builtin::catalog_for(&tspec, &topology.name)
        .map_err(|d| d.locate_in(&topology.text))?;
    let cluster =
        topo::build(&tspec, &catalog, &topology.name).map_err(|d| d.locate_in(&topology.text))?;
    let wspec: WorkloadSpec = parse_doc(workload, &of("workload"))?;
    let w = Workload::new(&wspec, workload, &cluster).map_err(|d| {
        if d.file == workload.name {
            d.locate_in(&workload.text)
        } else {
            d
        }
    })?;
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
    let (main, kept) = match engine {
        Engine::Des { full } if timeline => {
            let (r, t) = des::simulate(&w, &w.layout, &cluster, cal, full);
            (r, Some(t))
        }
        _ => (engine.estimate(&w, &w.layout, &cluster, cal), None),
    };
    progress(1, total);
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
    let rc = cost::run_cost(
        &w,
        cluster.gpus() as u64,
        cluster.gpu.tdp.value.watts,
        &mut step_time,
    );
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
