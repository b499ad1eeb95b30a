//! The parallel layout: degrees, micro-batching, and where each process group lands.
//!
//! Ranks are ordered tensor-parallel fastest, then context-parallel, then data-parallel, then
//! pipeline (Megatron's order). An expert-parallel group is `ep` consecutive ranks of a stage.

use crate::config::workload::{DpSpec, ParallelismSpec, SplitName};

use crate::config::Diagnostic;
use crate::domain::{
    CapacityFactor, GradReduce, MoeDispatch, MoeDispatcher, MoeOverlap, PipelineSplit, Schedule,
    Segment,
};
use crate::hw::GpuSpec;
use crate::net::Placement;
use crate::workload::model::Model;
use crate::workload::schedule;

/// The pipeline split `p` asks for, checked against the model and the schedule's `chunks`.
fn split(
    p: &ParallelismSpec,
    model: &Model,
    chunks: u64,
    e: &dyn Fn(&str, String, String) -> Diagnostic,
) -> Result<PipelineSplit, Diagnostic> {
    let layers = model.layers;
    let accounted =
        p.account_for_embedding_in_pipeline_split || p.account_for_loss_in_pipeline_split;
    let given = [
        p.layers_per_chunk.is_some().then_some("layers_per_chunk"),
        p.pipeline_model_parallel_layout
            .is_some()
            .then_some("pipeline_model_parallel_layout"),
    ];
    if let [Some(a), Some(b)] = given {
        return Err(e(
            b,
            format!("both {a} and {b}"),
            "one explicit split".into(),
        ));
    }
    if accounted && (p.pipeline_split != SplitName::Even || given.iter().any(Option::is_some)) {
        let key = if p.account_for_embedding_in_pipeline_split {
            "account_for_embedding_in_pipeline_split"
        } else {
            "account_for_loss_in_pipeline_split"
        };
        return Err(e(
            key,
            format!(
                "true with {}",
                given
                    .iter()
                    .flatten()
                    .next()
                    .map_or("pipeline_split: balanced", |k| k)
            ),
            "pipeline_split: even (it counts the embedding or the loss as a layer of Megatron's \
             even split; a balanced or explicit split places them itself)"
                .into(),
        ));
    }
    // Uneven end stages refine the even split alone (checked there against every other key).
    let (first, last) = (
        p.num_layers_in_first_pipeline_stage,
        p.num_layers_in_last_pipeline_stage,
    );
    if first.is_some() || last.is_some() {
        return uneven_stages(p, model, (first, last), e).map(PipelineSplit::Explicit);
    }
    if let Some(text) = &p.pipeline_model_parallel_layout {
        let key = "pipeline_model_parallel_layout";
        let segs = crate::config::pipeline_layout::parse(text)
            .map_err(|m| e(key, format!("{text:?}: {m}"), LAYOUT_SYNTAX.into()))?;
        let count = |f: fn(&Segment) -> u64| segs.iter().map(f).sum::<u64>();
        let (t, m) = (count(|s| s.layers), count(|s| s.mtp));
        let problem = if segs.len() as u64 != chunks {
            Some(format!(
                "{chunks} chunks (the {} schedule's at pp {}{})",
                p.schedule.name(),
                p.pp,
                if p.vpp > 1 {
                    format!(" × vpp {}", p.vpp)
                } else {
                    String::new()
                }
            ))
        } else if t != layers || m != model.mtp_depth {
            Some(format!(
                "the model's {layers} layers `t` and {} MTP modules `m`",
                model.mtp_depth
            ))
        } else if !segs[0].embedding || !segs[segs.len() - 1].loss {
            Some("the embedding `E` in the first chunk and the loss `L` in the last".into())
        } else {
            None
        };
        return match problem {
            Some(expected) => Err(e(
                key,
                format!(
                    "{text:?}: {} chunks, {t} layers, {m} MTP modules{}",
                    segs.len(),
                    if segs[0].embedding && segs[segs.len() - 1].loss {
                        ""
                    } else {
                        ", the embedding or the loss elsewhere or missing"
                    }
                ),
                expected,
            )),
            None => Ok(PipelineSplit::Explicit(segs)),
        };
    }
    if let Some(v) = &p.layers_per_chunk {
        if v.len() as u64 != chunks || v.contains(&0) || v.iter().sum::<u64>() != layers {
            return Err(e(
                "layers_per_chunk",
                format!(
                    "{v:?} ({} entries summing to {})",
                    v.len(),
                    v.iter().sum::<u64>()
                ),
                format!(
                    "{chunks} positive layer counts (one per pipeline chunk of the {} \
                     schedule) summing to the model's {layers} layers",
                    p.schedule.name()
                ),
            ));
        }
        let n = v.len();
        return Ok(PipelineSplit::Explicit(
            v.iter()
                .enumerate()
                .map(|(c, &l)| Segment {
                    embedding: c == 0,
                    layers: l,
                    mtp: if c + 1 == n { model.mtp_depth } else { 0 },
                    loss: c + 1 == n,
                })
                .collect(),
        ));
    }
    if chunks > layers {
        return Err(e(
            "pp",
            format!("{chunks} pipeline chunks for {layers} layers"),
            "at most one chunk per layer (or an explicit pipeline_model_parallel_layout)".into(),
        ));
    }
    Ok(match p.pipeline_split {
        SplitName::Balanced => PipelineSplit::Balanced,
        SplitName::Even => {
            let (embedding, loss) = (
                p.account_for_embedding_in_pipeline_split,
                p.account_for_loss_in_pipeline_split,
            );
            let items = layers + u64::from(embedding) + u64::from(loss);
            if items % chunks != 0 {
                return Err(e(
                    "pipeline_split",
                    format!(
                        "even with {layers} layers{} over {chunks} chunks",
                        match (embedding, loss) {
                            (true, true) => " + the embedding + the loss",
                            (true, false) => " + the embedding",
                            (false, true) => " + the loss",
                            _ => "",
                        }
                    ),
                    "a count divisible by the chunk count (Megatron's even split), or \
                     `balanced`, or an explicit `layers_per_chunk` or \
                     `pipeline_model_parallel_layout`"
                        .into(),
                ));
            }
            PipelineSplit::Even { embedding, loss }
        }
    })
}

/// Megatron's uneven first and last stages: `first` and `last` layers on the end stages (where
/// given), the rest evenly over the stages between; interleaved, each stage's layers evenly
/// over its virtual stages. The embedding rides on the first stage, the MTP modules and the
/// loss on the last.
fn uneven_stages(
    p: &ParallelismSpec,
    model: &Model,
    (first, last): (Option<u64>, Option<u64>),
    e: &dyn Fn(&str, String, String) -> Diagnostic,
) -> Result<Vec<Segment>, Diagnostic> {
    let key = if first.is_some() {
        "num_layers_in_first_pipeline_stage"
    } else {
        "num_layers_in_last_pipeline_stage"
    };
    let (pp, layers) = (p.pp, model.layers);
    let vpp = if p.schedule == Schedule::Interleaved {
        p.vpp
    } else {
        1
    };
    let conflict = [
        (
            p.pipeline_split != SplitName::Even,
            "pipeline_split: balanced",
        ),
        (p.layers_per_chunk.is_some(), "layers_per_chunk"),
        (
            p.pipeline_model_parallel_layout.is_some(),
            "pipeline_model_parallel_layout",
        ),
        (
            p.account_for_embedding_in_pipeline_split || p.account_for_loss_in_pipeline_split,
            "account_for_*_in_pipeline_split",
        ),
        (
            matches!(p.schedule, Schedule::Dualpipe | Schedule::Dualpipev),
            "a DualPipe schedule",
        ),
    ]
    .into_iter()
    .find_map(|(bad, what)| bad.then_some(what));
    if let Some(what) = conflict {
        return Err(e(
            key,
            format!("set with {what}"),
            "pipeline_split: even on a GPipe, 1F1B, ZB1P or interleaved schedule, and no other \
             split key (Megatron's uneven first and last stages refine its even split)"
                .into(),
        ));
    }
    let ends = u64::from(first.is_some()) + u64::from(last.is_some());
    let fixed = first.unwrap_or(0) + last.unwrap_or(0);
    let middle = pp.saturating_sub(ends);
    let rest = layers.checked_sub(fixed);
    let per = match (rest, middle) {
        (Some(0), 0) => Some(0),
        (Some(r), m) if m > 0 && r % m == 0 => Some(r / m),
        _ => None,
    };
    let stage = |s: u64| match (s, first, last) {
        (0, Some(f), _) => Some(f),
        (s, _, Some(l)) if s + 1 == pp => Some(l),
        _ => per,
    };
    let sizes: Option<Vec<u64>> = (0..pp).map(stage).collect();
    match sizes {
        Some(v) if pp >= ends && v.iter().all(|&n| n > 0 && n % vpp == 0) => {
            let k = (pp * vpp) as usize;
            Ok((0..k)
                .map(|c| Segment {
                    embedding: c == 0,
                    layers: v[c % pp as usize] / vpp,
                    mtp: if c + 1 == k { model.mtp_depth } else { 0 },
                    loss: c + 1 == k,
                })
                .collect())
        }
        _ => Err(e(
            key,
            format!(
                "first {} and last {} of {layers} layers over pp {pp}{}",
                first.map_or("even".into(), |f| f.to_string()),
                last.map_or("even".into(), |l| l.to_string()),
                if vpp > 1 {
                    format!(" × vpp {vpp}")
                } else {
                    String::new()
                }
            ),
            format!(
                "end stages that leave a positive layer count dividing evenly over the {middle} \
                 other stages{}",
                if vpp > 1 {
                    ", every stage's count divisible by vpp"
                } else {
                    ""
                }
            ),
        )),
    }
}

/// The MoE dispatch settings, checked as Megatron-Core checks them; an error is (key, found,
/// expected).
fn moe_dispatch(
    p: &ParallelismSpec,
    model: &Model,
) -> Result<MoeDispatch, (&'static str, String, &'static str)> {
    let alltoall = p.moe_dispatcher == MoeDispatcher::AllToAll;
    let capacity =
        match p.moe_expert_capacity_factor {
            None => None,
            Some(c) if !(c.is_finite() && c > 0.0) => return Err((
                "moe_expert_capacity_factor",
                c.to_string(),
                "a positive multiple of an expert's balanced load, such as 1.0 (absent: dropless)",
            )),
            Some(c) if !alltoall => {
                return Err((
                    "moe_expert_capacity_factor",
                    format!("{c} with the deepep dispatcher"),
                    "moe_dispatcher: alltoall (Megatron-Core drops tokens only in its all-to-all \
                 dispatcher; DeepEP is dropless)",
                ))
            }
            Some(c) => Some(CapacityFactor(c)),
        };
    if p.moe_pad_expert_input_to_capacity && capacity.is_none() {
        return Err((
            "moe_pad_expert_input_to_capacity",
            "true without moe_expert_capacity_factor".into(),
            "a capacity to pad to (moe_expert_capacity_factor), or false",
        ));
    }
    if p.moe_shared_expert_overlap {
        let shared = model.moe.is_some_and(|m| m.shared > 0);
        let problem = if !shared {
            Some("a model with shared experts (n_shared_experts > 0), or false")
        } else if !alltoall {
            Some(
                "moe_dispatcher: alltoall (Megatron-Core overlaps the shared experts only with its \
                 all-to-all dispatcher), or false",
            )
        } else if pairs_passes(p) {
            Some(
                "a schedule that runs one pass at a time, or false (DualPipe and combined 1F1B \
                 already hide the all-to-alls under the other micro-batch's compute)",
            )
        } else {
            None
        };
        if let Some(expected) = problem {
            return Err((
                "moe_shared_expert_overlap",
                format!(
                    "true with the {} dispatcher and the {} schedule (moe_overlap: {})",
                    p.moe_dispatcher.name(),
                    p.schedule.name(),
                    p.moe_overlap.name()
                ),
                expected,
            ));
        }
    }
    Ok(MoeDispatch {
        dispatcher: p.moe_dispatcher,
        capacity,
        pad_to_capacity: p.moe_pad_expert_input_to_capacity,
        shared_expert_overlap: p.moe_shared_expert_overlap,
    })
}

/// Why the layout cannot run its MoE overlap mode, if it cannot: what it needs instead.
fn moe_overlap_problem(p: &ParallelismSpec, model: &Model) -> Option<&'static str> {
    let none = p.moe_overlap == MoeOverlap::None;
    if !none && (model.moe.is_none() || p.ep < 2) {
        return Some("experts spread over several GPUs (ep ≥ 2): there is no all-to-all to hide");
    }
    match p.moe_overlap {
        MoeOverlap::Combined1f1b
            if !(p.schedule == Schedule::Interleaved
                || (p.pp == 1 && p.schedule == Schedule::OneFOneB)) =>
        {
            Some(
                "the interleaved schedule, or 1F1B without pipeline parallelism (Megatron-Core's \
                 combined 1F1B; DualPipe pairs its forwards and backwards itself)",
            )
        }
        MoeOverlap::TwoMicroBatch if p.micro_batch % 2 != 0 => Some(
            "an even micro_batch: the two halves are whole sequences (splitting a sequence is \
             not modelled)",
        ),
        MoeOverlap::TwoMicroBatch
            if !matches!(
                p.schedule,
                Schedule::Gpipe | Schedule::OneFOneB | Schedule::Interleaved
            ) =>
        {
            Some(
                "gpipe, 1f1b or interleaved (ZB1P defers weight gradients, DualPipe pairs its \
                 forwards and backwards itself)",
            )
        }
        _ => None,
    }
}

/// Whether the schedule runs a forward and a backward as one overlapped pair.
pub fn pairs_passes(p: &ParallelismSpec) -> bool {
    matches!(p.schedule, Schedule::Dualpipe | Schedule::Dualpipev)
        || p.moe_overlap == MoeOverlap::Combined1f1b
}

/// What a layout string may hold, for its diagnostics.
const LAYOUT_SYNTAX: &str = "Megatron's layout syntax: E (embedding), t (layer), m (MTP module), \
    L (loss), | between chunks, X*n or (…)*n to repeat, e.g. \"Et*3|(tt|)*29,m|L\"";

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Layout {
    pub tp: u64,
    pub pp: u64,
    pub ep: u64,
    pub cp: u64,
    pub dp: u64,
    pub vpp: u64,
    pub zero: u8,
    /// ZeRO-1/2: each block's parameter all-gather overlaps the next step's first forwards.
    pub overlap_param_gather: bool,
    /// When the gradient reduction runs.
    pub grad_reduce: GradReduce,
    /// How the layers are cut into chunks.
    pub split: PipelineSplit,
    pub schedule: Schedule,
    /// How the MoE all-to-alls overlap compute (outside DualPipe).
    pub moe_overlap: MoeOverlap,
    /// The MoE token dispatcher, its token dropping and the shared experts' overlap.
    pub moe_dispatch: MoeDispatch,
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
        let split = split(p, model, chunks, &e)?;
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
        if p.overlap_param_gather && !(1..=2).contains(&p.zero) {
            return Err(e(
                "overlap_param_gather",
                format!("true with zero: {}", p.zero),
                "zero: 1 or 2 (it overlaps the sharded optimizer's parameter all-gather, which \
                 ZeRO-0 does not have and ZeRO-3 replaces by gathers before every use)"
                    .into(),
            ));
        }
        if let Some(expected) = moe_overlap_problem(p, model) {
            return Err(e(
                "moe_overlap",
                format!(
                    "{} with ep {}, micro_batch {} and the {} schedule at pp {}",
                    p.moe_overlap.name(),
                    p.ep,
                    p.micro_batch,
                    p.schedule.name(),
                    p.pp
                ),
                expected.into(),
            ));
        }
        if model.moe.is_some() && p.tp > 1 && !p.sequence_parallel {
            return Err(e(
                "sequence_parallel",
                format!("false with tp {} on a mixture-of-experts model", p.tp),
                "true (Megatron-Core requires sequence parallelism for MoE with tensor \
                 parallelism: each rank routes its own shard of the tokens to whole experts)"
                    .into(),
            ));
        }
        let halves = if p.moe_overlap == MoeOverlap::TwoMicroBatch {
            2
        } else {
            1
        };
        let moe_dispatch = moe_dispatch(p, model)
            .map_err(|(key, found, expected)| e(key, found, expected.into()))?;
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
            overlap_param_gather: p.overlap_param_gather,
            grad_reduce: p.grad_reduce,
            split,
            schedule: p.schedule,
            moe_overlap: p.moe_overlap,
            moe_dispatch,
            // Two-micro-batch overlap runs halves: each half is a micro-batch to the kernels and
            // the memory, and the schedule moves them in pairs.
            micro_batch: p.micro_batch / halves,
            micro_batches: m * halves,
            seq_len,
            global_batch,
            comm_sms: p.comm_sms,
            sequence_parallel: p.sequence_parallel && p.tp > 1,
            tp_comm_overlap: p.tp_comm_overlap && p.tp > 1,
        })
    }

    /// The ZeRO stage the step runs with. Reducing once per step keeps gradients (and
    /// ZeRO-3's weights) whole through the step, which is ZeRO-1 from the first forward to
    /// the optimizer; the optimizer state stays sharded.
    pub fn state_zero(&self) -> u8 {
        if self.grad_reduce == GradReduce::OncePerStep {
            self.zero.min(1)
        } else {
            self.zero
        }
    }

    /// Whether the updated weights are gathered block by block before their first forward
    /// (ZeRO-1/2's `--overlap-param-gather`, and ZeRO-3 reducing once per step), instead of
    /// all at once after the optimizer.
    pub fn overlaps_param_gather(&self) -> bool {
        self.overlap_param_gather || (self.zero == 3 && self.grad_reduce == GradReduce::OncePerStep)
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

    pub fn tp_span(&self, gpn: u64) -> Placement {
        Placement::strided(self.tp, 1, gpn)
    }
    pub fn cp_span(&self, gpn: u64) -> Placement {
        Placement::strided(self.cp, self.tp, gpn)
    }
    pub fn ep_span(&self, gpn: u64) -> Placement {
        Placement::strided(self.ep, 1, gpn)
    }
    /// Data-parallel degree of the routed-expert weights (replicas of each expert).
    pub fn expert_dp(&self) -> u64 {
        self.tp * self.cp * self.dp / self.ep
    }
    /// Whether the same-position GPUs of pipeline stages `a` and `b` (a pipeline send goes from
    /// a GPU to the one `tp·cp·dp` ranks away per stage) sit on different nodes for some position.
    pub fn stages_cross_nodes(&self, a: u64, b: u64, gpn: u64) -> bool {
        let stride = self.tp * self.cp * self.dp;
        let (lo, hi) = (a.min(b), a.max(b));
        if lo == hi {
            return false;
        }
        let d = (hi - lo) * stride;
        if d >= gpn {
            return true;
        }
        // Stage `lo` holds GPUs lo·stride .. lo·stride + stride − 1; one of them is within `d` of
        // its node's end exactly when the last one's offset in the node (no wrap: d < gpn, and a
        // wrap reaches the node's last GPU) is at least gpn − d.
        let first = (lo * stride) % gpn;
        first + stride > gpn - d
    }

    /// Whether any pipeline send crosses nodes (false without a pipeline).
    pub fn pp_crosses_nodes(&self, gpn: u64) -> bool {
        (1..self.pp).any(|s| self.stages_cross_nodes(s - 1, s, gpn))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(tp: u64, pp: u64, dp: u64) -> Layout {
        Layout {
            tp,
            pp,
            ep: 1,
            cp: 1,
            dp,
            vpp: 1,
            zero: 0,
            overlap_param_gather: false,
            grad_reduce: GradReduce::Overlap,
            split: PipelineSplit::Balanced,
            schedule: Schedule::OneFOneB,
            moe_overlap: MoeOverlap::None,
            moe_dispatch: Default::default(),
            micro_batch: 1,
            micro_batches: 8,
            seq_len: 2048,
            global_batch: 8 * dp,
            comm_sms: 0,
            sequence_parallel: false,
            tp_comm_overlap: false,
        }
    }

    /// Stage s holds GPUs [s·tp·dp, (s+1)·tp·dp); a send crosses nodes when a GPU and its peer
    /// one stage on sit on different 8-GPU nodes.
    #[test]
    fn pipeline_sends_cross_nodes_only_between_nodes() {
        // No pipeline, no sends, whatever fills the node (the PP1 single-node regression).
        assert!(!layout(8, 1, 1).pp_crosses_nodes(8));
        assert!(!layout(1, 1, 8).pp_crosses_nodes(8));
        // A whole stage per node or more: every boundary crosses.
        assert!(layout(8, 2, 1).pp_crosses_nodes(8));
        assert!(layout(8, 4, 4).stages_cross_nodes(2, 3, 8));
        // A 4-stage pipeline of 2 GPUs per stage inside one node: none does.
        assert!(!layout(2, 4, 1).pp_crosses_nodes(8));
        // 4 GPUs per stage on 8-GPU nodes: 0→1 stays in node 0, 1→2 crosses, 2→3 stays in node 1.
        let l = layout(2, 4, 2);
        let crossing: Vec<bool> = (1..4).map(|s| l.stages_cross_nodes(s - 1, s, 8)).collect();
        assert_eq!(crossing, [false, true, false]);
        assert!(l.pp_crosses_nodes(8));
        // Interleaving wraps from the last stage to the first: 3→0 crosses.
        assert!(l.stages_cross_nodes(3, 0, 8));
        // 3 GPUs per stage: stage 2 (GPUs 6–8) straddles the node edge, so 1→2 and 2→3 cross.
        let l = layout(3, 4, 1);
        let crossing: Vec<bool> = (1..4).map(|s| l.stages_cross_nodes(s - 1, s, 8)).collect();
        assert_eq!(crossing, [false, true, true]);
    }
}
