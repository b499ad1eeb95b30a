//! Command-line interface (clap). Thin: parse, call [`crate::pipeline`], print, set the exit code.

use crate::config::{Diagnostic, Override, Source};
use crate::pipeline::{self, Engine};
use crate::report;
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
}

fn source(path: &Option<PathBuf>, default: (&str, &str)) -> Result<Source, Diagnostic> {
    match path {
        Some(p) => Source::read(p),
        None => Ok(Source::embedded(default.0, default.1)),
    }
}

fn run(a: &RunArgs) -> Result<(), Diagnostic> {
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
    let summary = pipeline::run(&topo, &work, &sets, engine)?;
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
    let rows = netcli::run(&topo, op, a.ranks, &sizes, algo, Some(moe))?;
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

/// Entry point of the `trainsim` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Run(a) => run(a),
        Command::Collective(a) => collective(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(d) => {
            eprintln!("{d}");
            ExitCode::from(2)
        }
    }
}
