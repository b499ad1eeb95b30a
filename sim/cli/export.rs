//! `trainsim export`: an export-control scenario: the target run on the reference chip, the
//! named chips and the capped chips, fixed and re-planned; the brief, curves, scatters and
//! tables.

use super::{calibration, read_source};
use crate::config::export::ExportSpec;
use crate::config::{parse_doc, Diagnostic, Source};
use crate::report::document::InputFile;
use crate::report::export as out;
use crate::scenario::export;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// An export scenario (workloads/exports/*.yaml; default: the embedded DeepSeek-V3 one).
    pub file: Option<PathBuf>,
    /// Workload YAML to price instead of the file's.
    #[arg(long)]
    pub workload: Option<PathBuf>,
    /// GPUs of every priced cluster (default: the file's, else the template's).
    #[arg(long)]
    pub gpus: Option<u64>,
    /// Price the fixed layout only (no layout search at each point).
    #[arg(long)]
    pub no_replan: bool,
    /// Skip the GPUs-for-the-same-days search.
    #[arg(long)]
    pub no_same_days: bool,
    /// Output directory.
    #[arg(long, default_value = "results/export")]
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

pub(super) fn export(a: &ExportArgs) -> Result<(), Diagnostic> {
    let src = match &a.file {
        Some(p) => read_source(p)?,
        None => {
            // The embedded scenario names its workload and template relative to itself: read
            // them from the embedded copies.
            Source::embedded(export::DEFAULT.0, export::DEFAULT.1)
        }
    };
    let mut spec: ExportSpec = parse_doc(&src, &[])?;
    if a.file.is_none() {
        spec.workload = None;
        spec.template = None;
    }
    if let Some(g) = a.gpus {
        spec.gpus = Some(g);
    }
    if a.no_replan {
        spec.replan = false;
    }
    if a.no_same_days {
        spec.same_days = false;
    }
    let cal = calibration(&a.calibration)?;
    let workload = a.workload.as_ref().map(|p| read_source(p)).transpose()?;
    let read = |p: &std::path::Path| read_source(p);
    let e = export::prepare(&spec, &src, workload, &read)?;
    let bar = super::progress(a.quiet, "export");
    let pool = super::pool(a.jobs);
    let t0 = std::time::Instant::now();
    let outcome = pool.install(|| {
        export::run(&e, &cal, &|done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64)
        })
    });
    bar.finish_and_clear();
    let wall = t0.elapsed().as_secs_f64();
    let mut inputs = Vec::new();
    for s in [&e.file, &e.workload, &e.template] {
        inputs.push(InputFile {
            name: s.name.clone(),
            text: s.text.clone(),
        });
    }
    inputs.push(InputFile {
        name: "<embedded>/topologies/export-rules.yaml".to_string(),
        text: crate::builtin::EXPORT_RULES_YAML.to_string(),
    });
    let meta = out::Meta {
        command: super::command_line(),
        version: super::version(),
        inputs,
    };
    super::emit(&out::text(&outcome, &meta))?;
    eprintln!(
        "trainsim export: {} points in {wall:.1} s",
        outcome.points.len()
    );
    super::write_files(&a.out, out::files(&outcome, &e.rules, &meta))?;
    Ok(())
}
