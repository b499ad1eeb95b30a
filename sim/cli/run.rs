//! `trainsim run`: one training run through the pipeline; prints the summary, writes summary.json.

use super::source;
use crate::config::{Diagnostic, Override};
use crate::pipeline::{self, Engine};
use crate::report::{self, document, document::InputFile, tables, trace};
use clap::ValueEnum;
use std::path::PathBuf;

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineArg {
    /// Discrete-event simulation of every task of the step.
    Des,
    /// Closed-form estimate (kernel model, bandwidth model, schedule formulas): fast, for sweeps.
    Analytic,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReliabilityArg {
    /// The closed-form expectation of failures, checkpoints, restarts and stragglers.
    Expected,
    /// The expectation and a Monte Carlo of failure times (P10, P50 and P90).
    MonteCarlo,
    /// Ideal figures only.
    None,
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
    /// Output directory for summary.json (and the report and CSV files).
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Also write report.html, report.md and its SVG plots into --out.
    #[arg(long)]
    pub report: bool,
    /// Write the step's timeline as a Chrome trace (Perfetto, chrome://tracing) to FILE.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// GPUs the trace shows: `stages` (one per pipeline stage), `all`, or indices like 0,8,16.
    #[arg(long, value_name = "GPUS", default_value = "stages")]
    pub trace_ranks: String,
    /// In the trace, split every compute task into its kernels (about four times the size).
    #[arg(long)]
    pub trace_kernels: bool,
    /// Also write breakdown.csv, phases.csv and stages.csv into --out.
    #[arg(long)]
    pub csv: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
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
    /// Skip the uncertainty band (one extra run per alternative and two for the calibration
    /// residuals)
    #[arg(long)]
    pub no_band: bool,
    /// How failures, checkpoints, restarts and stragglers turn ideal GPU-hours into effective
    /// ones (the workload's `reliability` section; every key has a sourced default).
    #[arg(long, value_enum, default_value_t = ReliabilityArg::Expected)]
    pub reliability: ReliabilityArg,
    /// Seed of the Monte Carlo's failure draws (printed with the run).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Monte Carlo trials.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub trials: u64,
}

pub(super) fn run(a: &RunArgs) -> Result<(), Diagnostic> {
    let cal_src = super::calibration_source(&a.calibration)?;
    let cal = super::calibration_of(&a.calibration, &cal_src)?;
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
    let ranks = trace::Ranks::parse(&a.trace_ranks).map_err(|found| {
        Diagnostic::new(
            "--trace-ranks",
            found,
            "stages, all, or GPU indices separated by commas (e.g. 0,8,16)",
        )
    })?;
    if a.trace.is_some() && engine == Engine::Analytic {
        return Err(Diagnostic::new(
            "--trace",
            "--engine analytic",
            "the discrete-event engine (--engine des), whose timeline the trace shows",
        ));
    }
    eprintln!(
        "trainsim: {} on {} ({} engine)",
        work.name,
        topo.name,
        engine.name()
    );
    let bar = super::progress(a.quiet, "simulating");
    let keep = a.report || a.trace.is_some();
    let out = pipeline::run_detailed(
        &topo,
        &work,
        &sets,
        engine,
        &cal,
        keep,
        &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    );
    bar.finish_and_clear();
    let out = out?;
    let mut summary = out.summary.clone();
    if !a.no_band {
        let bar = super::progress(a.quiet, "pricing the band's alternatives");
        let scenario = crate::scenario::band::Scenario {
            topology: &topo,
            workload: &work,
            sets: &sets,
            engine,
        };
        let bands = crate::scenario::band::compute(
            &scenario,
            &cal,
            &cal_src,
            &summary,
            &out.workload.alternatives,
        );
        bar.finish_and_clear();
        summary.bands = Some(bands?);
    }
    match a.reliability {
        ReliabilityArg::None => summary.without_goodput(),
        ReliabilityArg::Expected => {}
        ReliabilityArg::MonteCarlo => {
            let inputs = crate::cost::goodput::Inputs::new(
                &out.workload,
                u64::from(out.cluster.gpus_per_node),
            );
            if let Some(g) = summary.goodput.as_mut() {
                crate::cost::with_monte_carlo(
                    g,
                    &summary.phases,
                    &inputs,
                    summary.price_per_gpu_hour_usd,
                    a.seed,
                    a.trials,
                );
            }
            eprintln!(
                "trainsim: reliability Monte Carlo, {} trials, seed {}",
                a.trials, a.seed
            );
        }
    }
    let summary = &summary;
    eprintln!(
        "trainsim: routing {} (alpha {}), seed {}",
        summary.routing.distribution, summary.routing.alpha, summary.routing.seed
    );
    let json = summary.to_json();
    let mut files: Vec<(PathBuf, Vec<u8>)> =
        vec![(a.out.join("summary.json"), json.clone().into_bytes())];
    if a.report {
        let mut inputs = vec![
            InputFile {
                name: topo.name.clone(),
                text: topo.text.clone(),
            },
            InputFile {
                name: work.name.clone(),
                text: work.text.clone(),
            },
        ];
        if a.calibration.is_some() {
            inputs.push(InputFile {
                name: cal_src.name.clone(),
                text: cal_src.text.clone(),
            });
        }
        let r = document::render(&document::Input {
            summary,
            timeline: out.timeline.as_ref(),
            cluster: &out.cluster,
            workload: &out.workload,
            calibration: &cal,
            files: inputs,
            sets: a.set.clone(),
            command: super::command_line(),
            published: a.topology.is_none()
                && a.workload.is_none()
                && a.set.is_empty()
                && a.calibration.is_none(),
            version: super::version(),
        });
        files.push((a.out.join("report.html"), r.html.into_bytes()));
        files.push((a.out.join("report.md"), r.markdown.into_bytes()));
        for (name, svg) in r.plots {
            files.push((a.out.join(name), svg.into_bytes()));
        }
    }
    if a.csv {
        files.push((
            a.out.join("breakdown.csv"),
            tables::breakdown_csv(summary).into_bytes(),
        ));
        files.push((
            a.out.join("phases.csv"),
            tables::phases_csv(summary).into_bytes(),
        ));
        files.push((
            a.out.join("stages.csv"),
            tables::stages_csv(summary).into_bytes(),
        ));
    }
    if let (Some(path), Some(t)) = (&a.trace, &out.timeline) {
        let gpus = ranks.select(t).map_err(|bad| {
            Diagnostic::new(
                "--trace-ranks",
                bad.to_string(),
                format!("GPU indices below the {} simulated GPUs", t.gpus),
            )
        })?;
        files.push((
            path.clone(),
            trace::chrome_trace(t, &gpus, &super::command_line(), a.trace_kernels).into_bytes(),
        ));
    }
    report::write_all(&files).map_err(|e| {
        Diagnostic::new(
            a.out.display().to_string(),
            format!("a place that cannot be written ({e})"),
            "a writable output directory (and trace path)",
        )
    })?;
    if a.json {
        super::emit(&json)?;
    } else {
        super::emit(&summary.human())?;
        for (p, _) in &files {
            eprintln!("wrote {}", p.display());
        }
    }
    Ok(())
}
