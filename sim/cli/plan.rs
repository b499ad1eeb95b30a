//! `trainsim plan`: a layout and cluster-size search; prints the ranked table and writes the
//! planning report, the Pareto plot and the CSV.

use super::{calibration, read_source};
use crate::config::plan::{CandidateSpec, GpuCounts, Objective, PlanSpec, PriceSpec};
use crate::config::{parse_doc, Diagnostic, Source};
use crate::report::document::InputFile;
use crate::report::plan as out;
use crate::scenario::plan;
use crate::units::{Duration, Money};
use clap::ValueEnum;
use std::path::PathBuf;

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectiveArg {
    Cheapest,
    Fastest,
    Pareto,
}

#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    /// A planning file (workloads/plans/*.yaml); the flags below override its keys.
    pub file: Option<PathBuf>,
    /// Workload YAML (default: the file's, or the embedded DeepSeek-V3 pre-training run).
    #[arg(long)]
    pub workload: Option<PathBuf>,
    /// A chip of the catalog to consider at --gpus counts (replaces the file's candidates).
    #[arg(long)]
    pub chip: Option<String>,
    /// GPU counts for --chip: "512..4096" (doubling), "512..4096 x4", or "512,1024".
    #[arg(long)]
    pub gpus: Option<String>,
    /// The topology --chip scales (default: the embedded 2,048 × H800 cluster).
    #[arg(long)]
    pub template: Option<PathBuf>,
    /// A topology file to consider as it is (repeatable; replaces the file's candidates).
    #[arg(long)]
    pub topology: Vec<PathBuf>,
    /// Price per GPU-hour of the flag-given candidates (default: the workload's).
    #[arg(long)]
    pub price: Option<String>,
    /// Wall-clock limit for the whole run: "60d", "8 weeks".
    #[arg(long)]
    pub deadline: Option<String>,
    /// Dollar limit for the whole run: "$6M".
    #[arg(long)]
    pub budget: Option<String>,
    #[arg(long)]
    pub max_gpus: Option<u64>,
    #[arg(long, value_enum)]
    pub objective: Option<ObjectiveArg>,
    /// Layouts re-ranked by the discrete-event engine (default 16; 0: analytic figures only).
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Rows of the ranked table (default 10).
    #[arg(long)]
    pub top: Option<usize>,
    /// Output directory.
    #[arg(long, default_value = "results/plan")]
    pub out: PathBuf,
    /// Threads (default: all cores). The output does not depend on it.
    #[arg(short = 'j', long = "jobs", value_name = "N", default_value_t = 0)]
    pub jobs: usize,
    /// Calibration file to use instead of the embedded one.
    #[arg(long)]
    pub calibration: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

fn flag<T: std::str::FromStr<Err = crate::units::UnitError>>(
    name: &str,
    v: &Option<String>,
) -> Result<Option<T>, Diagnostic> {
    v.as_deref()
        .map(|s| {
            s.parse::<T>()
                .map_err(|e| Diagnostic::new(name, e.found, e.expected))
        })
        .transpose()
}

/// The plan from the file and the flags: (spec, its source).
fn spec(a: &PlanArgs) -> Result<(PlanSpec, Source), Diagnostic> {
    let (mut spec, src) = match &a.file {
        Some(p) => {
            let src = read_source(p)?;
            (parse_doc::<PlanSpec>(&src, &[])?, src)
        }
        None => (
            PlanSpec {
                name: None,
                workload: None,
                candidates: Vec::new(),
                constraints: Default::default(),
                objective: Objective::default(),
                search: Default::default(),
            },
            Source {
                name: "<command line>".into(),
                text: String::new(),
                dir: None,
            },
        ),
    };
    let price = flag::<Money>("--price", &a.price)?.map(PriceSpec::Rate);
    let mut flagged = Vec::new();
    match (&a.chip, &a.gpus) {
        (Some(chip), Some(g)) => flagged.push(CandidateSpec {
            topology: None,
            chip: Some(chip.clone()),
            gpus: Some(GpuCounts::parse(g).map_err(|e| {
                let (found, expected) = e.split_once(", expected ").unwrap_or((&e, ""));
                Diagnostic::new("--gpus", found.trim_start_matches("found "), expected)
            })?),
            template: a.template.as_ref().map(|p| p.display().to_string()),
            price: price.clone(),
        }),
        (Some(_), None) => {
            return Err(Diagnostic::new(
                "--chip",
                "a chip without --gpus",
                "--gpus with the counts to consider, e.g. --gpus 512..4096",
            ))
        }
        (None, Some(_)) => {
            return Err(Diagnostic::new(
                "--gpus",
                "GPU counts without --chip",
                "--chip NAME (a chip of the catalog)",
            ))
        }
        (None, None) => {}
    }
    for t in &a.topology {
        flagged.push(CandidateSpec {
            topology: Some(t.display().to_string()),
            chip: None,
            gpus: None,
            template: None,
            price: price.clone(),
        });
    }
    if !flagged.is_empty() {
        spec.candidates = flagged;
    }
    if let Some(d) = flag::<Duration>("--deadline", &a.deadline)? {
        spec.constraints.deadline = Some(d);
    }
    if let Some(b) = flag::<Money>("--budget", &a.budget)? {
        spec.constraints.budget = Some(b);
    }
    if a.max_gpus.is_some() {
        spec.constraints.max_gpus = a.max_gpus;
    }
    if let Some(o) = a.objective {
        spec.objective = match o {
            ObjectiveArg::Cheapest => Objective::Cheapest,
            ObjectiveArg::Fastest => Objective::Fastest,
            ObjectiveArg::Pareto => Objective::Pareto,
        };
    }
    if let Some(k) = a.top_k {
        spec.search.top_k = k;
    }
    if let Some(t) = a.top {
        spec.search.top = t;
    }
    Ok((spec, src))
}

/// Runs the plan; `Ok(false)` when no configuration meets the constraints (exit code 1: the
/// report and the search record say what removed them).
pub fn plan(a: &PlanArgs) -> Result<bool, Diagnostic> {
    let (spec, src) = spec(a)?;
    let cal = calibration(&a.calibration)?;
    let workload = match (&a.workload, &spec.workload) {
        (Some(p), _) => Some(read_source(p)?),
        (None, Some(_)) => None,
        (None, None) => Some(Source::embedded(
            crate::pipeline::DEFAULT_WORKLOAD.0,
            crate::pipeline::DEFAULT_WORKLOAD.1,
        )),
    };
    let read = |p: &std::path::Path| read_source(p);
    let p = plan::prepare(&spec, &src, workload, &read)?;
    let bar = super::progress(a.quiet, "plan");
    bar.set_length((p.candidates.len() + p.search.top_k) as u64);
    let pool = super::pool(a.jobs);
    let outcome = pool.install(|| plan::search(&p, &cal, &|done, _| bar.set_position(done as u64)));
    bar.finish_and_clear();
    let mut inputs = vec![InputFile {
        name: p.workload_file.clone(),
        text: p.workload_text.clone(),
    }];
    if a.file.is_some() {
        inputs.insert(
            0,
            InputFile {
                name: src.name.clone(),
                text: src.text.clone(),
            },
        );
    }
    for c in &p.candidates {
        if !inputs.iter().any(|i| i.name == c.topology) {
            inputs.push(InputFile {
                name: c.topology.clone(),
                text: c.topology_text.clone(),
            });
        }
    }
    let meta = out::Meta {
        title: p.name.clone(),
        command: super::command_line(),
        version: super::version(),
        inputs,
    };
    let view = plan::view(&p, &outcome);
    super::emit(&out::text(&view, &meta))?;
    super::write_files(&a.out, out::files(&view, &meta))?;
    Ok(outcome.pick.is_some())
}
