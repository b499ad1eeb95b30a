//! Command-line interface (clap): the [`Cli`] and its subcommands, one file each. Thin: parse,
//! read files, call the pipeline or a scenario, print, write, set the exit code.

mod chips;
mod collective;
mod export;
mod plan;
mod run;
mod sweep;
mod validate;

use crate::config::{Diagnostic, Source};
use crate::hw::Calibration;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub use chips::ChipsArgs;
pub use collective::CollectiveArgs;
pub use export::ExportArgs;
pub use plan::PlanArgs;
pub use run::RunArgs;
pub use sweep::SweepArgs;
pub use validate::ValidateArgs;

#[derive(Parser, Debug)]
#[command(
    name = "trainsim",
    version,
    about = "Cycle-approximate simulator of GPU training clusters"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Simulate a training run: step time, MFU, GPU-hours and dollars.
    Run(RunArgs),
    /// Simulate one collective like nccl-tests (or an MoE dispatch/combine like DeepEP's test).
    Collective(CollectiveArgs),
    /// Run the published reference cases and print predicted against published, with errors.
    /// Exit code 1 if any gating case is outside its tolerance.
    Validate(ValidateArgs),
    /// Run a scenario at every point of a grid of overrides (`trainsim sweep merge` joins
    /// shards).
    Sweep(SweepArgs),
    /// Search layouts and cluster sizes for a workload: the ranked table, the Pareto front of
    /// days against dollars, and a planning report.
    Plan(PlanArgs),
    /// Every catalog chip's export-control metrics (TPP, performance density, I/O, HBM) and
    /// its status under each rule; `--derive` a hypothetical capped chip.
    Chips(ChipsArgs),
    /// Price a training run on chips and on capped chips (export-control scenarios), on the
    /// fixed layout and re-planned: cost multiples, thresholds, and a brief.
    Export(ExportArgs),
}

/// Reads a YAML document from a file; relative paths inside it resolve against its directory.
pub fn read_source(path: &Path) -> Result<Source, Diagnostic> {
    use std::io::Read;
    let cannot = |e: String| {
        Diagnostic::new(
            path.display().to_string(),
            format!("a file that cannot be read ({e})"),
            "a readable YAML file",
        )
    };
    // Read at most one byte past the limit: `/dev/zero` or a runaway file stops there.
    let limit = crate::config::MAX_INPUT_BYTES;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(limit as u64 + 1).read_to_end(&mut bytes))
        .map_err(|e| cannot(e.to_string()))?;
    if bytes.len() > limit {
        return Err(Diagnostic::new(
            path.display().to_string(),
            format!("a file of more than {} MiB", limit >> 20),
            format!(
                "an input of at most {} MiB (trainsim's limit on one document)",
                limit >> 20
            ),
        ));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        Diagnostic::new(
            path.display().to_string(),
            format!(
                "bytes that are not UTF-8 (at byte {})",
                e.utf8_error().valid_up_to()
            ),
            "a UTF-8 text file",
        )
    })?;
    Ok(Source {
        name: path.display().to_string(),
        text,
        dir: path.parent().map(Path::to_path_buf),
    })
}

/// A progress bar on stderr, hidden when stderr is not a terminal or with `--quiet`.
pub(crate) fn progress(quiet: bool, what: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if quiet || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar =
        indicatif::ProgressBar::with_draw_target(Some(1), indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg} {pos}/{len} [{elapsed} elapsed, {eta} left]",
        )
        .expect("a valid template"),
    );
    bar.set_message(what.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// The command line as typed, for reports and traces.
pub(crate) fn command_line() -> String {
    std::env::args()
        .map(|a| {
            if a.chars()
                .any(|c| c.is_whitespace() || c == '"' || c == '\'')
            {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                a
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// trainsim's version and the git commit it was built from.
pub(crate) fn version() -> String {
    format!(
        "trainsim {} (git {})",
        env!("CARGO_PKG_VERSION"),
        env!("TRAINSIM_GIT_COMMIT")
    )
}

pub(crate) fn source(path: &Option<PathBuf>, default: (&str, &str)) -> Result<Source, Diagnostic> {
    match path {
        Some(p) => read_source(p),
        None => Ok(Source::embedded(default.0, default.1)),
    }
}

/// The calibration document: the file at `path`, or the embedded one.
pub(crate) fn calibration_source(path: &Option<PathBuf>) -> Result<Source, Diagnostic> {
    match path {
        Some(p) => read_source(p),
        None => Ok(crate::builtin::calibration_source()),
    }
}

pub(crate) fn calibration(path: &Option<PathBuf>) -> Result<Calibration, Diagnostic> {
    calibration_of(path, &calibration_source(path)?)
}

/// The calibration `src` holds: the embedded one already parsed, or the `--calibration` file's.
pub(crate) fn calibration_of(
    path: &Option<PathBuf>,
    src: &Source,
) -> Result<Calibration, Diagnostic> {
    match path {
        Some(_) => crate::builtin::parse_calibration(src),
        None => Ok(crate::builtin::calibration()),
    }
}

/// A thread pool of `jobs` threads (0: all cores) for one scenario; its results do not depend
/// on the count.
pub(crate) fn pool(jobs: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .build()
        .expect("a thread pool")
}

/// Writes `text` to standard output. A closed pipe (`trainsim run | head`) ends the program
/// quietly with success, as the reader asked for no more; any other failure (a full disk) is a
/// diagnostic.
pub(crate) fn emit(text: &str) -> Result<(), Diagnostic> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(Diagnostic::new(
            "standard output",
            format!("output that cannot be written ({e})"),
            "a writable standard output (a terminal, a file on a disk with space, a pipe)",
        )),
    }
}

/// Writes `files` into `dir` atomically (all or none), naming each on stderr.
pub(crate) fn write_files(dir: &Path, files: Vec<(String, String)>) -> Result<(), Diagnostic> {
    let files: Vec<(PathBuf, Vec<u8>)> = files
        .into_iter()
        .map(|(n, c)| (dir.join(n), c.into_bytes()))
        .collect();
    crate::report::write_all(&files).map_err(|e| {
        Diagnostic::new(
            dir.display().to_string(),
            format!("a directory that cannot be written ({e})"),
            "a writable output directory",
        )
    })?;
    for (p, _) in &files {
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}

/// Entry point of the `trainsim` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Run(a) => run::run(a),
        Command::Collective(a) => collective::collective(a),
        Command::Chips(a) => chips::chips(a),
        Command::Export(a) => export::export(a),
        Command::Sweep(a) => sweep::sweep(a),
        Command::Plan(a) => match plan::plan(a) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(1),
            Err(d) => Err(d),
        },
        Command::Validate(a) => match validate::validate(a) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(1),
            Err(d) => Err(d),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(d) => {
            eprintln!("{d}");
            ExitCode::from(2)
        }
    }
}
