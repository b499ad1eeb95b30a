//! `trainsim validate`: reads the case suites and the files they name, runs them, prints the
//! table or JSON, and writes the Markdown table.

use super::{calibration, read_source};
use crate::config::{Diagnostic, Source};
use crate::report;
use crate::scenario::validate;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct ValidateArgs {
    /// Directory of case suites (*.yaml); paths inside are relative to the working directory.
    #[arg(long, default_value = "tests/reference/cases")]
    pub cases: PathBuf,
    /// Only cases whose name contains this text (repeatable).
    #[arg(long = "case", value_name = "NAME")]
    pub case: Vec<String>,
    /// Only the quick cases (what CI runs).
    #[arg(long)]
    pub quick: bool,
    /// Print `{"cases": [...]}` instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Calibration file to use instead of the embedded one.
    #[arg(long)]
    pub calibration: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Also write the table as Markdown to this file (e.g. results/validation.md).
    #[arg(long)]
    pub markdown: Option<PathBuf>,
}

/// Returns whether every gating case passed.
pub(super) fn validate(a: &ValidateArgs) -> Result<bool, Diagnostic> {
    let cal = calibration(&a.calibration)?;
    let cases: Vec<_> = validate::parse_suites(&suites(&a.cases)?, &a.cases.display().to_string())?
        .into_iter()
        .filter(|c| !a.quick || c.spec.quick)
        .filter(|c| a.case.is_empty() || a.case.iter().any(|n| c.spec.name.contains(n.as_str())))
        .collect();
    if cases.is_empty() {
        return Err(Diagnostic::new(
            "--case",
            format!("no case matching {:?}", a.case),
            "part of a case name in the suites",
        ));
    }
    eprintln!(
        "trainsim validate: {} cases from {} on {} threads",
        cases.len(),
        a.cases.display(),
        rayon::current_num_threads()
    );
    let started = std::time::Instant::now();
    let bar = super::progress(a.quiet, "validating");
    bar.set_length(cases.len() as u64);
    let results = validate::run(&cases, &cal, &read_source, &|| bar.inc(1));
    bar.finish_and_clear();
    let table = validate::table(&results);
    if let Some(md) = &a.markdown {
        let dir = md.parent().unwrap_or(std::path::Path::new("."));
        let name = md
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .ok_or_else(|| {
                Diagnostic::new("--markdown", md.display().to_string(), "a file path")
            })?;
        let text = format!(
            "# Validation: trainsim against published figures\n\nRegenerate with `cargo run --release -- validate --markdown results/validation.md` from the repository root. \"(cal.)\" marks calibration points: a constant in `topologies/calibration.yaml` was derived from that figure, so it must reproduce. Every other row is a check nothing was fitted to.\n\n{table}{}",
            validate::not_gating_notes(&results)
        );
        report::write_atomic(dir, &name, &text).map_err(|e| {
            Diagnostic::new(
                md.display().to_string(),
                format!("a file that cannot be written ({e})"),
                "a writable path",
            )
        })?;
    }
    if a.json {
        super::emit(&format!("{}\n", validate::json(&results)))?;
    } else {
        super::emit(&table)?;
    }
    eprintln!(
        "trainsim validate: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // A case that could not be priced is bad input (its files, its settings), not a miss.
    if let Some(r) = results.iter().find(|r| r.failure.is_some()) {
        return Err(Diagnostic::new(
            a.cases.display().to_string(),
            format!(
                "case \"{}\" could not be priced: {}",
                r.case,
                r.failure.clone().unwrap_or_default()
            ),
            "a case whose inputs read and run (fix the case, or the files it names)",
        ));
    }
    Ok(validate::all_pass(&results))
}

/// Reads every `*.yaml` suite in `dir`, in file-name order.
fn suites(dir: &Path) -> Result<Vec<Source>, Diagnostic> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Diagnostic::new(
            dir.display().to_string(),
            format!("a directory that cannot be read ({e})"),
            "the reference-case directory (run from the repository root, or pass --cases DIR)",
        )
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files.iter().map(|f| read_source(f)).collect()
}
