//! `trainsim collective`: one collective, or one MoE dispatch/combine, on a simulated cluster.

use super::{calibration, source};
use crate::config::{Diagnostic, Override};
use crate::domain::MoeDispatcher;
use crate::net::collective::{Algorithm, Op};
use crate::pipeline;
use crate::scenario::collective::{self as measure, CollectiveOp, MoeArgs};
use clap::ValueEnum;
use std::path::PathBuf;

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
    NvlsTree,
    Collnet,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtypeArg {
    Fp8,
    Bf16,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DispatcherArg {
    Deepep,
    Alltoall,
}

#[derive(clap::Args, Debug)]
pub struct CollectiveArgs {
    /// Topology YAML (default: the embedded 2,048 × H800 cluster).
    #[arg(long)]
    pub topology: Option<PathBuf>,
    #[arg(long, value_enum)]
    pub op: OpArg,
    /// Override a topology value: topology.PATH=VALUE, e.g. topology.gpu=H200. Repeatable.
    #[arg(long = "set", value_name = "topology.PATH=VALUE")]
    pub set: Vec<String>,
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
    /// MoE ops: DeepEP's kernels, or Megatron's NCCL all-to-all (a copy per routed expert).
    #[arg(long, value_enum, default_value_t = DispatcherArg::Deepep)]
    pub dispatcher: DispatcherArg,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Calibration file to use instead of the embedded one.
    #[arg(long)]
    pub calibration: Option<PathBuf>,
}

pub(super) fn collective(a: &CollectiveArgs) -> Result<(), Diagnostic> {
    let cal = calibration(&a.calibration)?;
    let topo = source(&a.topology, pipeline::DEFAULT_TOPOLOGY)?;
    let sets = a
        .set
        .iter()
        .map(|s| Override::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
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
        AlgoArg::NvlsTree => Algorithm::NvlsTree,
        AlgoArg::Collnet => Algorithm::CollNet,
    };
    let sizes = match &a.sizes {
        Some(r) => measure::size_range(r)?,
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
        dispatcher: match a.dispatcher {
            DispatcherArg::Deepep => MoeDispatcher::Deepep,
            DispatcherArg::Alltoall => MoeDispatcher::AllToAll,
        },
    };
    let rows = measure::run(&topo, &sets, op, a.ranks, &sizes, algo, Some(moe), &cal)?;
    if a.json {
        let v = if rows.len() == 1 {
            serde_json::to_string_pretty(&rows[0])
        } else {
            serde_json::to_string_pretty(&serde_json::json!({ "results": rows }))
        };
        super::emit(&format!("{}\n", v.expect("rows serialize")))?;
    } else {
        super::emit(&measure::table(&rows))?;
    }
    Ok(())
}
