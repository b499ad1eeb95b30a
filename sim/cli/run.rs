//! `trainsim run`: one training run through the pipeline; prints the summary, writes summary.json.

use super::{calibration, source};
use crate::config::{Diagnostic, Override};
use crate::pipeline::{self, Engine};
use crate::report;
use clap::ValueEnum;
use std::path::PathBuf;

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineArg {
    /// Discrete-event simulation of every task of the step.
    Des,
    /// Closed-form estimate (kernel model, bandwidth model, schedule formulas): fast, for sweeps.
    Analytic,
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Topology YAML (default: the embedded 2,048 × H800 cluster).
    #[arg(long)]
    pub topology: Option<PathBuf>,
    /// Workload YAML (default: the embedded DeepSeek-V3 pre-training run).
    #[arg(long)]
    pub workload: Option<PathBuf>,
    /// Override a value: DOC.PATH=VALUE, e.g. workload.parallelism.ep=32 or
    /// topology.scale_up.bandwidth="900 GB/s bidirectional". Repeatable.
    #[arg(long = "set", value_name = "DOC.PATH=VALUE")]
    pub set: Vec<String>,
    /// Output directory for summary.json.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Print the summary JSON alone on stdout.
    #[arg(long)]
    pub json: bool,
    /// Engine that computes the step.
    #[arg(long, value_enum, default_value_t = EngineArg::Des)]
    pub engine: EngineArg,
    /// With the discrete-event engine, simulate every GPU rather than one replica per stage.
    #[arg(long)]
    pub full: bool,
    /// Calibration file to use instead of the embedded one.
    #[arg(long)]
    pub calibration: Option<PathBuf>,
}

pub(super) fn run(a: &RunArgs) -> Result<(), Diagnostic> {
    let cal = calibration(&a.calibration)?;
    let sets = a
        .set
        .iter()
        .map(|s| Override::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let topo = source(&a.topology, pipeline::DEFAULT_TOPOLOGY)?;
    let work = source(&a.workload, pipeline::DEFAULT_WORKLOAD)?;
    let engine = match a.engine {
        EngineArg::Analytic => Engine::Analytic,
        EngineArg::Des => Engine::Des { full: a.full },
    };
    eprintln!(
        "trainsim: {} on {} ({} engine)",
        work.name,
        topo.name,
        engine.name()
    );
    let summary = pipeline::run(&topo, &work, &sets, engine, &cal)?;
    eprintln!(
        "trainsim: routing {} (alpha {}), seed {}",
        summary.routing.distribution, summary.routing.alpha, summary.routing.seed
    );
    let json = summary.to_json();
    report::write_atomic(&a.out, "summary.json", &json).map_err(|e| {
        Diagnostic::new(
            a.out.display().to_string(),
            format!("a directory that cannot be written ({e})"),
            "a writable output directory",
        )
    })?;
    if a.json {
        print!("{json}");
    } else {
        print!("{}", summary.human());
        eprintln!("wrote {}", a.out.join("summary.json").display());
    }
    Ok(())
}
