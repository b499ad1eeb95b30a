//! The whole run, in the order data flows: documents → specs → cluster and workload →
//! estimate → cost → summary. No printing here; the CLI decides what to show.

use crate::analytic;
use crate::config::topology::TopologySpec;
use crate::config::workload::WorkloadSpec;
use crate::config::{parse_doc, Diagnostic, Override, Source};
use crate::cost;
use crate::hw::{Calibration, Catalog};
use crate::report::Summary;
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
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Analytic => "analytic",
        }
    }
}

/// Loads and validates both documents.
pub fn load(
    topology: &Source,
    workload: &Source,
    sets: &[Override],
) -> Result<(Cluster, Workload), Diagnostic> {
    let of = |doc: &str| sets.iter().filter(|o| o.doc == doc).collect::<Vec<_>>();
    let tspec: TopologySpec = parse_doc(topology, &of("topology"))?;
    let catalog = Catalog::embedded();
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

/// Runs a scenario end to end.
pub fn run(
    topology: &Source,
    workload: &Source,
    sets: &[Override],
    engine: Engine,
) -> Result<Summary, Diagnostic> {
    let started = std::time::Instant::now();
    let (cluster, w) = load(topology, workload, sets)?;
    let cal = Calibration::embedded();
    let main = analytic::estimate(&w, &w.layout, &cluster, &cal);
    // Each distinct layout of the run's phases is estimated once.
    let mut seen: Vec<(Layout, f64)> = vec![(w.layout.clone(), main.step_time_s)];
    let mut step_time = |l: &Layout| {
        if let Some((_, t)) = seen.iter().find(|(k, _)| k == l) {
            return *t;
        }
        let t = analytic::estimate(&w, l, &cluster, &cal).step_time_s;
        seen.push((l.clone(), t));
        t
    };
    let rc = cost::run_cost(
        &w,
        cluster.gpus() as u64,
        cluster.gpu.tdp.value.watts,
        &mut step_time,
    );
    Ok(Summary::new(
        &w,
        &cluster,
        &main,
        &rc,
        engine.name(),
        started.elapsed().as_secs_f64(),
    ))
}
