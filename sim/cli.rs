//! Command-line interface (clap). Thin: parse, call [`crate::pipeline`], print, set the exit code.

use crate::config::{Diagnostic, Override, Source};
use crate::hw::Calibration;
use crate::pipeline::{self, Engine};
use crate::report;
use crate::validate;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Also write the table as Markdown to this file (e.g. results/validation.md).
    #[arg(long)]
    pub markdown: Option<PathBuf>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpArg {
    AllReduce,
    AllGather,
    ReduceScatter,
    AllToAll,
    SendRecv,
    MoeDispatch,
    MoeCombine,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlgoArg {
    Auto,
    Ring,
    Nvls,
    Hierarchical,
    Tree,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtypeArg {
    Fp8,
    Bf16,
}

#[derive(clap::Args, Debug)]
pub struct CollectiveArgs {
    /// Topology YAML (default: the embedded 2,048 × H800 cluster).
    #[arg(long)]
    pub topology: Option<PathBuf>,
    #[arg(long, value_enum)]
    pub op: OpArg,
    /// Ranks, placed on GPUs 0..N (filling nodes in order).
    #[arg(long, default_value_t = 8)]
    pub ranks: u32,
    /// Buffer size per rank, with a unit (nccl-tests conventions), e.g. 1GiB.
    #[arg(long, default_value = "1GiB")]
    pub size: String,
    /// Sweep sizes, doubling: MIN..MAX, e.g. 1KiB..8GiB.
    #[arg(long)]
    pub sizes: Option<String>,
    #[arg(long, value_enum, default_value_t = AlgoArg::Auto)]
    pub algo: AlgoArg,
    /// MoE ops: expert-parallel ranks.
    #[arg(long, default_value_t = 8)]
    pub ep: u32,
    /// MoE ops: tokens per rank.
    #[arg(long, default_value_t = 4096)]
    pub tokens: u64,
    #[arg(long, default_value_t = 7168)]
    pub hidden: u64,
    #[arg(long, default_value_t = 8)]
    pub topk: u64,
    /// MoE ops: routed experts, expert groups, and groups a token may use (node-limited routing).
    #[arg(long, default_value_t = 256)]
    pub experts: u64,
    #[arg(long, default_value_t = 8)]
    pub groups: u64,
    #[arg(long, default_value_t = 4)]
    pub topk_groups: u64,
    /// MoE dispatch payload type (combine is BF16).
    #[arg(long, value_enum, default_value_t = DtypeArg::Fp8)]
    pub dtype: DtypeArg,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Calibration file to use instead of the embedded one.
    #[arg(long)]
    pub calibration: Option<PathBuf>,
}

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

fn source(path: &Option<PathBuf>, default: (&str, &str)) -> Result<Source, Diagnostic> {
    match path {
        Some(p) => Source::read(p),
        None => Ok(Source::embedded(default.0, default.1)),
    }
}

fn calibration(path: &Option<PathBuf>) -> Result<Calibration, Diagnostic> {
    match path {
        Some(p) => crate::builtin::parse_calibration(&Source::read(p)?),
        None => Ok(crate::builtin::calibration()),
    }
}

fn run(a: &RunArgs) -> Result<(), Diagnostic> {
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

fn collective(a: &CollectiveArgs) -> Result<(), Diagnostic> {
    use crate::net::collective::{Algorithm, Op};
    use crate::netcli::{self, CollectiveOp, MoeArgs};
    let cal = calibration(&a.calibration)?;
    let topo = source(&a.topology, pipeline::DEFAULT_TOPOLOGY)?;
    let op = match a.op {
        OpArg::AllReduce => CollectiveOp::Plain(Op::AllReduce),
        OpArg::AllGather => CollectiveOp::Plain(Op::AllGather),
        OpArg::ReduceScatter => CollectiveOp::Plain(Op::ReduceScatter),
        OpArg::AllToAll => CollectiveOp::Plain(Op::AllToAll),
        OpArg::SendRecv => CollectiveOp::Plain(Op::SendRecv),
        OpArg::MoeDispatch => CollectiveOp::MoeDispatch,
        OpArg::MoeCombine => CollectiveOp::MoeCombine,
    };
    let algo = match a.algo {
        AlgoArg::Auto => Algorithm::Auto,
        AlgoArg::Ring => Algorithm::Ring,
        AlgoArg::Nvls => Algorithm::Nvls,
        AlgoArg::Hierarchical => Algorithm::Hierarchical,
        AlgoArg::Tree => Algorithm::Tree,
    };
    let sizes = match &a.sizes {
        Some(r) => netcli::size_range(r)?,
        None => vec![
            <crate::units::ByteSize as crate::units::Quantity>::parse(&a.size)
                .map_err(|e| Diagnostic::new("--size", e.found, e.expected))?
                .bytes,
        ],
    };
    let moe = MoeArgs {
        ep: a.ep,
        tokens: a.tokens,
        hidden: a.hidden,
        topk: a.topk,
        experts: a.experts,
        groups: a.groups,
        topk_groups: a.topk_groups,
        dispatch_bytes: match a.dtype {
            DtypeArg::Fp8 => 1.0,
            DtypeArg::Bf16 => 2.0,
        },
    };
    let rows = netcli::run(&topo, op, a.ranks, &sizes, algo, Some(moe), &cal)?;
    if a.json {
        let v = if rows.len() == 1 {
            serde_json::to_string_pretty(&rows[0])
        } else {
            serde_json::to_string_pretty(&serde_json::json!({ "results": rows }))
        };
        println!("{}", v.expect("rows serialize"));
    } else {
        print!("{}", netcli::table(&rows));
    }
    Ok(())
}

/// Returns whether every gating case passed.
fn validate(a: &ValidateArgs) -> Result<bool, Diagnostic> {
    let cal = calibration(&a.calibration)?;
    let cases: Vec<_> = validate::load(&a.cases)?
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
    let results = validate::run(&cases, &cal);
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
        println!("{}", validate::json(&results));
    } else {
        print!("{table}");
    }
    eprintln!(
        "trainsim validate: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(validate::all_pass(&results))
}

/// Entry point of the `trainsim` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Run(a) => run(a),
        Command::Collective(a) => collective(a),
        Command::Validate(a) => match validate(a) {
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
