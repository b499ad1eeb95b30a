//! The parallel layout: degrees, micro-batching, and where each process group lands.
//!
//! Ranks are ordered tensor-parallel fastest, then context-parallel, then data-parallel, then
//! pipeline (Megatron's order). An expert-parallel group is `ep` consecutive ranks of a stage.

use crate::config::workload::{DpSpec, ParallelismSpec, Schedule};
use crate::config::Diagnostic;
use crate::hw::GpuSpec;
use crate::workload::model::Model;
use crate::workload::schedule;

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Layout {
    pub tp: u64,
    pub pp: u64,
    pub ep: u64,
    pub cp: u64,
    pub dp: u64,
    pub vpp: u64,
    pub zero: u8,
    pub schedule: Schedule,
    /// Sequences per micro-batch.
    pub micro_batch: u64,
    /// Micro-batches per pipeline per step.
    pub micro_batches: u64,
    pub seq_len: u64,
    pub global_batch: u64,
    pub comm_sms: u32,
    pub sequence_parallel: bool,
    pub tp_comm_overlap: bool,
}

/// Where a process group sits: members per node and nodes spanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Span {
    pub size: u64,
    pub per_node: u64,
    pub nodes: u64,
}

impl Layout {
    /// Validates a layout for `gpus` GPUs. `file` and `at` (a key-path prefix such as
    /// `parallelism` or `training.phases.1.parallelism`) locate errors.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        p: &ParallelismSpec,
        seq_len: u64,
        global_batch: u64,
        gpus: u64,
        model: &Model,
        gpu: &GpuSpec,
        file: &str,
        at: &str,
    ) -> Result<Layout, Diagnostic> {
        let e = |key: &str, found: String, expected: String| {
            Diagnostic::new(file, found, expected).at(format!("{at}.{key}"))
        };
        for (k, v) in [
            ("tp", p.tp),
            ("pp", p.pp),
            ("ep", p.ep),
            ("cp", p.cp),
            ("vpp", p.vpp),
            ("micro_batch", p.micro_batch),
        ] {
            if v == 0 {
                return Err(e(k, "0".into(), "a positive integer".into()));
            }
        }
        let mp = p.tp * p.pp * p.cp;
        let dp = match p.dp {
            DpSpec::Fixed(0) => {
                return Err(e("dp", "0".into(), "a positive integer or `auto`".into()))
            }
            DpSpec::Fixed(d) => d,
            DpSpec::Auto => {
                if gpus % mp != 0 {
                    return Err(e(
                        "dp",
                        format!("auto, but tp·pp·cp = {mp} does not divide the {gpus} GPUs"),
                        format!("tp·pp·cp to divide {gpus}"),
                    ));
                }
                gpus / mp
            }
        };
        if mp * dp != gpus {
            return Err(e(
                "dp",
                format!(
                    "tp·pp·cp·dp = {}·{}·{}·{} = {}",
                    p.tp,
                    p.pp,
                    p.cp,
                    dp,
                    mp * dp
                ),
                format!("the cluster's {gpus} GPUs"),
            ));
        }
        let stage_gpus = p.tp * p.cp * dp;
        match model.moe {
            Some(m) => {
                if m.routed % p.ep != 0 {
                    return Err(e(
                        "ep",
                        p.ep.to_string(),
                        format!("a divisor of the {} routed experts", m.routed),
                    ));
                }
                if stage_gpus % p.ep != 0 {
                    return Err(e(
                        "ep",
                        p.ep.to_string(),
                        format!(
                            "a divisor of the {stage_gpus} GPUs of a pipeline stage (tp·cp·dp)"
                        ),
                    ));
                }
            }
            None if p.ep > 1 => {
                return Err(e(
                    "ep",
                    p.ep.to_string(),
                    "1: the model has no routed experts".into(),
                ));
            }
            None => {}
        }
        let heads = model.attention.heads();
        if heads % p.tp != 0 {
            return Err(e(
                "tp",
                p.tp.to_string(),
                format!("a divisor of the {heads} attention heads"),
            ));
        }
        if seq_len % p.cp != 0 {
            return Err(e(
                "cp",
                p.cp.to_string(),
                format!("a divisor of the sequence length {seq_len}"),
            ));
        }
        let per_step = dp * p.micro_batch;
        if global_batch % per_step != 0 {
            return Err(e(
                "micro_batch",
                format!(
                    "a global batch of {global_batch} sequences over dp {dp} × micro_batch {}",
                    p.micro_batch
                ),
                format!("a global batch divisible by dp × micro_batch = {per_step}"),
            ));
        }
        let m = global_batch / per_step;
        let chunks = schedule::chunk_count(p.schedule, p.pp, p.vpp);
        let blocks = model.layers;
        if chunks > blocks {
            return Err(e(
                "pp",
                format!("{chunks} pipeline chunks for {blocks} layers"),
                "at most one chunk per layer".into(),
            ));
        }
        match p.schedule {
            Schedule::Dualpipe | Schedule::Dualpipev
                if p.pp % 2 != 0 || m % 2 != 0 || m < 2 * p.pp =>
            {
                return Err(e(
                    "schedule",
                    format!("{} with pp {} and {m} micro-batches", p.schedule.name(), p.pp),
                    format!(
                        "an even pp and an even number of at least 2·pp = {} micro-batches (DualPipe feeds both ends)",
                        2 * p.pp
                    ),
                ));
            }
            Schedule::Interleaved if p.vpp < 2 || m % p.pp != 0 => {
                return Err(e(
                    "vpp",
                    format!("vpp {} with {m} micro-batches and pp {}", p.vpp, p.pp),
                    "vpp ≥ 2 and micro-batches divisible by pp (Megatron's interleaved schedule)"
                        .into(),
                ));
            }
            _ => {}
        }
        if p.zero > 3 {
            return Err(e(
                "zero",
                p.zero.to_string(),
                "a ZeRO stage 0, 1, 2 or 3".into(),
            ));
        }
        if p.comm_sms >= gpu.sms.value {
            return Err(e(
                "comm_sms",
                p.comm_sms.to_string(),
                format!("fewer than the chip's {} SMs", gpu.sms.value),
            ));
        }
        if p.tp_comm_overlap && !p.sequence_parallel {
            return Err(e(
                "tp_comm_overlap",
                "true without sequence_parallel".into(),
                "sequence_parallel: true (Megatron's --tp-comm-overlap needs --sequence-parallel)"
                    .into(),
            ));
        }
        Ok(Layout {
            tp: p.tp,
            pp: p.pp,
            ep: p.ep,
            cp: p.cp,
            dp,
            vpp: p.vpp,
            zero: p.zero,
            schedule: p.schedule,
            micro_batch: p.micro_batch,
            micro_batches: m,
            seq_len,
            global_batch,
            comm_sms: p.comm_sms,
            sequence_parallel: p.sequence_parallel && p.tp > 1,
            tp_comm_overlap: p.tp_comm_overlap && p.tp > 1,
        })
    }

    pub fn gpus(&self) -> u64 {
        self.tp * self.pp * self.cp * self.dp
    }

    /// Tokens one GPU processes per micro-batch.
    pub fn tokens_per_microbatch(&self) -> u64 {
        self.micro_batch * self.seq_len / self.cp
    }

    pub fn tokens_per_step(&self) -> u64 {
        self.global_batch * self.seq_len
    }

    /// Model chunks (pipeline stages × virtual stages) the layers are cut into.
    pub fn chunks(&self) -> u64 {
        schedule::chunk_count(self.schedule, self.pp, self.vpp)
    }

    /// Chunks held by pipeline rank `d`, with the micro-batches each runs per step.
    pub fn device_chunks(&self, d: u64) -> Vec<(u64, u64)> {
        let (p, m) = (self.pp, self.micro_batches);
        match self.schedule {
            Schedule::Interleaved => (0..self.vpp).map(|v| (d + v * p, m)).collect(),
            Schedule::Dualpipev => vec![(d, m), (2 * p - 1 - d, m)],
            Schedule::Dualpipe => vec![(d, m / 2), (p - 1 - d, m / 2)],
            _ => vec![(d, m)],
        }
    }

    pub fn tp_span(&self, gpn: u64) -> Span {
        span(self.tp, 1, gpn)
    }
    pub fn cp_span(&self, gpn: u64) -> Span {
        span(self.cp, self.tp, gpn)
    }
    pub fn ep_span(&self, gpn: u64) -> Span {
        span(self.ep, 1, gpn)
    }
    /// Data-parallel degree of the routed-expert weights (replicas of each expert).
    pub fn expert_dp(&self) -> u64 {
        self.tp * self.cp * self.dp / self.ep
    }
    /// Whether neighbouring pipeline stages sit on different nodes.
    pub fn pp_crosses_nodes(&self, gpn: u64) -> bool {
        self.tp * self.cp * self.dp >= gpn
    }
}

/// Where a group of `size` ranks spaced `stride` apart lands on nodes of `gpus_per_node` GPUs.
pub fn span(size: u64, stride: u64, gpus_per_node: u64) -> Span {
    let per_node = if stride >= gpus_per_node {
        1
    } else {
        size.min(gpus_per_node / stride).max(1)
    };
    Span {
        size,
        per_node,
        nodes: size.div_ceil(per_node),
    }
}
