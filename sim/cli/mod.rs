//! Command-line interface (clap): the [`Cli`] and its subcommands, one file each. Thin: parse,
//! read files, call the pipeline or a scenario, print, write, set the exit code.

mod collective;
mod run;
mod validate;

use crate::config::{Diagnostic, Source};
use crate::hw::Calibration;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub use collective::CollectiveArgs;
pub use run::RunArgs;
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
}

/// Reads a YAML document from a file; relative paths inside it resolve against its directory.
pub fn read_source(path: &Path) -> Result<Source, Diagnostic> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostic::new(
            path.display().to_string(),
            format!("a file that cannot be read ({e})"),
            "a readable YAML file",
        )
    })?;
    Ok(Source {
        name: path.display().to_string(),
        text,
        dir: path.parent().map(Path::to_path_buf),
    })
}

pub(crate) fn source(path: &Option<PathBuf>, default: (&str, &str)) -> Result<Source, Diagnostic> {
    match path {
        Some(p) => read_source(p),
        None => Ok(Source::embedded(default.0, default.1)),
    }
}

pub(crate) fn calibration(path: &Option<PathBuf>) -> Result<Calibration, Diagnostic> {
    match path {
        Some(p) => crate::builtin::parse_calibration(&read_source(p)?),
        None => Ok(crate::builtin::calibration()),
    }
}

/// Entry point of the `trainsim` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Run(a) => run::run(a),
        Command::Collective(a) => collective::collective(a),
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
