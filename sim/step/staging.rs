//! The stage model both engines consume: the step cut into pipeline chunks (a partition of the
//! blocks that balances their cost), each block's kernels and communication priced by the kernel
//! model and a [`CommCost`], the parameters and static memory of every pipeline rank, the
//! gradient passes and data-parallel synchronization, and the optimizer step.

use super::result::{ChunkCost, Memory};
use crate::domain::{
    Dtype, GradReduce, PipelineSplit, Precision, Recompute, RecomputeMethod, Schedule,
};
use crate::hw::{Calibration, KernelModel, KernelShape};
use crate::net::{AlphaBeta, CommCost, CommOp, Placement};
use crate::topo::Cluster;
use crate::workload::layout::Layout;
use crate::workload::model::{LayerKind, Model, Part};
#[cfg(test)]
use crate::workload::ops::ChunkWork;
use crate::workload::ops::{BlockWork, Comm, CommKind, Expander, Extras, Kernel, Seg};
use crate::workload::schedule;
use crate::workload::Workload;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Seconds of a run of kernels on `sms` SMs, less each kernel's margin.
fn kernels_secs<'k>(ks: impl IntoIterator<Item = &'k Kernel>, km: &KernelModel, sms: u32) -> f64 {
    ks.into_iter()
        .map(|k| {
            km.busy(&k.shape, sms.saturating_sub(k.sm_margin).max(1))
                .as_secs_f64()
        })
        .sum()
}

/// The kernels of a pass's compute segments, in order.
fn seg_kernels(segs: &[Seg]) -> impl Iterator<Item = &Kernel> + Clone {
    segs.iter().flat_map(|s| match s {
        Seg::Compute(ks) => ks.as_slice(),
        Seg::Comm { .. } => &[],
    })
}

/// The communication of a pass's segments, in order.
fn seg_comms(segs: &[Seg]) -> impl Iterator<Item = &Comm> {
    segs.iter().filter_map(|s| match s {
        Seg::Comm { comm, .. } => Some(comm),
        Seg::Compute(_) => None,
    })
}

/// Prices a block's work: its kernels and communication, and the communication that runs
/// beside a compute segment (`Seg::Comm { parallel }`) as far as that segment's time covers it.
fn cost_block(b: &BlockWork, km: &KernelModel, sms: u32, ab: &dyn CommCost) -> ChunkCost {
    let mut c = cost_of(
        [
            seg_kernels(&b.fwd),
            seg_kernels(&b.bwd),
            seg_kernels(&b.wgrad),
        ],
        seg_comms(&b.fwd)
            .chain(seg_comms(&b.bwd))
            .chain(seg_comms(&b.wgrad)),
        km,
        sms,
        ab,
    );
    c.comm_fwd = seg_comms(&b.fwd).map(|m| ab.time(&m.op)).sum();
    for segs in [&b.fwd, &b.bwd, &b.wgrad] {
        let mut beside = 0.0;
        for s in segs {
            match s {
                Seg::Compute(ks) => beside = kernels_secs(ks, km, sms),
                Seg::Comm {
                    comm,
                    parallel: true,
                } if comm.kind != CommKind::Cp => {
                    *c.hidden.entry(comm.kind.name().to_string()).or_default() +=
                        ab.time(&comm.op).min(beside);
                }
                Seg::Comm { .. } => {}
            }
        }
    }
    c
}

/// Prices a chunk's work (the trace tests price one layer pair this way).
#[cfg(test)]
fn cost(work: &ChunkWork, km: &KernelModel, sms: u32, ab: &dyn CommCost) -> ChunkCost {
    cost_of(
        [work.fwd.iter(), work.bwd.iter(), work.wgrad.iter()],
        work.comm_fwd.iter().chain(&work.comm_bwd),
        km,
        sms,
        ab,
    )
}

/// Prices kernels (forward, backward, weight gradients) and communication, in order.
fn cost_of<'k, K: Iterator<Item = &'k Kernel> + Clone>(
    [fwd, bwd, wgrad]: [K; 3],
    comms: impl Iterator<Item = &'k Comm>,
    km: &KernelModel,
    sms: u32,
    ab: &dyn CommCost,
) -> ChunkCost {
    let attention = fwd
        .clone()
        .chain(bwd.clone())
        .filter(|k| matches!(k.shape, KernelShape::Attention(_)))
        .map(|k| km.busy(&k.shape, sms).as_secs_f64())
        .sum();
    let mut comm = BTreeMap::new();
    for c in comms {
        *comm.entry(c.kind.name().to_string()).or_insert(0.0) += ab.time(&c.op);
    }
    let kernels = fwd.clone().count() + bwd.clone().count() + wgrad.clone().count();
    ChunkCost {
        blocks: (0, 0),
        extras: String::new(),
        fwd: kernels_secs(fwd, km, sms),
        bwd: kernels_secs(bwd, km, sms),
        wgrad: kernels_secs(wgrad, km, sms),
        attention,
        comm,
        hidden: BTreeMap::new(),
        kernels,
        comm_fwd: 0.0,
    }
}

/// Splits `costs` (non-negative) into `k` contiguous non-empty runs minimizing the largest sum;
/// among optimal cuts, each run ends as early as the dynamic program over cut points finds it
/// (the first best cut point, scanning left to right).
///
/// `best[j][i]` (the least largest sum of the first `i` items in `j` runs) is the minimum over
/// the last cut `c` of `max(best[j-1][c], prefix[i] - prefix[c])`: the first term never falls as
/// `c` grows and the second never rises, so the minimum sits where they cross, found by
/// bisection; ties left of the crossing are walked back to the first. A unit test holds this to
/// the plain O(k·n²) scan on random and tied costs.
pub fn partition(costs: &[f64], k: usize) -> Vec<(usize, usize)> {
    let n = costs.len();
    assert!(k >= 1 && k <= n, "cannot cut {n} items into {k} runs");
    let mut prefix = vec![0.0; n + 1];
    for i in 0..n {
        prefix[i + 1] = prefix[i] + costs[i];
    }
    let mut best = vec![vec![f64::INFINITY; n + 1]; k + 1];
    let mut cut = vec![vec![0usize; n + 1]; k + 1];
    best[0][0] = 0.0;
    for j in 1..=k {
        let (prev, cur) = best.split_at_mut(j);
        let (prev, cur) = (&prev[j - 1], &mut cur[0]);
        for i in j..=n {
            let f = |c: usize| prev[c].max(prefix[i] - prefix[c]);
            // The first c in [j-1, i) where the left part's best reaches the last run's sum.
            let (mut lo, mut hi) = (j - 1, i);
            while lo < hi {
                let mid = (lo + hi) / 2;
                if prev[mid] >= prefix[i] - prefix[mid] {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
            let mut c = if lo == i { i - 1 } else { lo };
            if lo > j - 1 && f(lo - 1) <= f(c) {
                c = lo - 1;
            }
            let v = f(c);
            while c > j - 1 && f(c - 1) == v {
                c -= 1;
            }
            cur[i] = v;
            cut[j][i] = c;
        }
    }
    let mut runs = Vec::with_capacity(k);
    let mut i = n;
    for j in (1..=k).rev() {
        let c = cut[j][i];
        runs.push((c, i));
        i = c;
    }
    runs.reverse();
    runs
}

/// Parameters of one block of `kind` on a GPU: (replicated weights, routed-expert weights).
fn block_params(model: &Model, l: &Layout, kind: LayerKind) -> (f64, f64) {
    let (mut dense_p, mut expert_p) = (model.block_vector_params(kind) as f64, 0.0);
    for lin in model.block_linears(kind) {
        let p = lin.params() as f64;
        match lin.part {
            Part::RoutedExperts => expert_p += p / l.ep as f64,
            _ if lin.tp_split.is_some() => dense_p += p / l.tp as f64,
            _ => dense_p += p,
        }
    }
    (dense_p, expert_p)
}

/// Parameters of the embedding (first chunk) on a GPU: (replicated weights, routed-expert weights).
fn embedding_params(model: &Model, l: &Layout) -> (f64, f64) {
    ((model.vocab * model.hidden / l.tp) as f64, 0.0)
}

/// Parameters of the output head on a GPU (the loss; MTP depths share it).
fn loss_params(model: &Model, l: &Layout) -> (f64, f64) {
    (model.head_linear().params() as f64 / l.tp as f64, 0.0)
}

/// Parameters of one MTP module on a GPU: its projection and its transformer block.
fn mtp_params(model: &Model, l: &Layout) -> (f64, f64) {
    let (d, e) = block_params(model, l, model.mtp_layer_kind());
    (d + model.mtp_projection().params() as f64, e)
}

/// Parameters of a chunk's items beyond its transformer blocks.
fn extras_params(model: &Model, l: &Layout, c: &ChunkItems) -> (f64, f64) {
    let mut p = (0.0, 0.0);
    let mut add = |(d, e): (f64, f64), n: f64| {
        p.0 += d * n;
        p.1 += e * n;
    };
    add(embedding_params(model, l), f64::from(u8::from(c.embedding)));
    add(mtp_params(model, l), c.mtp as f64);
    add(loss_params(model, l), f64::from(u8::from(c.loss)));
    p
}

/// What one pipeline chunk holds, in model order: the embedding, transformer blocks
/// `[blocks.0, blocks.1)`, MTP modules and the loss (the output head and cross entropy of the
/// main model and of every MTP depth).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkItems {
    pub embedding: bool,
    pub blocks: (usize, usize),
    pub mtp: u64,
    pub loss: bool,
}

impl ChunkItems {
    /// Items held: blocks, MTP modules, the embedding and the loss each counting one.
    pub fn count(&self) -> usize {
        self.blocks.1 - self.blocks.0
            + usize::from(self.embedding)
            + self.mtp as usize
            + usize::from(self.loss)
    }

    /// The chunks that `segs` describe, their layers numbered in order.
    fn from_segments(segs: &[crate::domain::Segment]) -> Vec<ChunkItems> {
        let mut at = 0;
        segs.iter()
            .map(|s| {
                let a = at;
                at += s.layers as usize;
                ChunkItems {
                    embedding: s.embedding,
                    blocks: (a, at),
                    mtp: s.mtp,
                    loss: s.loss,
                }
            })
            .collect()
    }
}

/// One item of the model in order, as the balanced split cuts them.
#[derive(Clone, Copy)]
enum Item {
    Embedding,
    Block(usize),
    Mtp,
    Loss,
}

/// The chunks holding `items` cut at `runs`.
fn gather_items(items: &[Item], runs: &[(usize, usize)]) -> Vec<ChunkItems> {
    // Blocks end here so far: a chunk without blocks sits where those before it end.
    let mut end = 0;
    runs.iter()
        .map(|&(a, e)| {
            let mut c = ChunkItems::default();
            let start = end;
            for it in &items[a..e] {
                match *it {
                    Item::Embedding => c.embedding = true,
                    Item::Block(i) => end = i + 1,
                    Item::Mtp => c.mtp += 1,
                    Item::Loss => c.loss = true,
                }
            }
            c.blocks = (start, end);
            c
        })
        .collect()
}

/// Data-parallel groups of replicated and of expert weights.
fn dp_groups(l: &Layout, gpus_per_node: u64) -> (Placement, Placement) {
    (
        Placement::strided(l.dp * l.cp, l.tp, gpus_per_node),
        Placement::strided(l.expert_dp(), l.ep, gpus_per_node),
    )
}

/// Weights, gradients and optimizer state per GPU of `params` (replicated, routed-expert),
/// bytes, by ZeRO stage.
fn static_memory(
    pr: &Precision,
    l: &Layout,
    gpus_per_node: u64,
    params: (f64, f64),
) -> (f64, f64, f64) {
    let (dg, eg) = dp_groups(l, gpus_per_node);
    let by = |stage: u8, bytes: f64| {
        let f = |p: f64, g: u64| {
            if l.state_zero() >= stage {
                p / g.max(1) as f64
            } else {
                p
            }
        };
        (f(params.0, dg.size) + f(params.1, eg.size)) * bytes
    };
    (
        by(3, pr.params.bytes()),
        by(2, pr.grads.bytes()),
        by(1, pr.master.bytes() + 2.0 * pr.optimizer_states.bytes()),
    )
}

/// Bytes per token one layer of kind `k` keeps for backward: the model's activations, and what
/// the core attention keeps beyond its inputs. A fused kernel keeps its FP32 log-sum-exp per
/// head (4 B). The unfused attention without recompute keeps its materialised score matrix
/// (Korthikanti et al. 2022, §4.1: the softmax output, 2 B per score, and with dropout its 1-byte
/// mask and its 2-byte output, which the attention over V reads back: 5as²b per layer). Neither
/// is kept where the backward recomputes the core attention.
fn layer_activations_per_token(w: &Workload, l: &Layout, k: LayerKind, r: Recompute) -> f64 {
    let m = &w.model;
    let mut b =
        m.activation_bytes_per_token(k, r, w.precision.activations, l.tp, l.sequence_parallel);
    if let (Recompute::Full, Some((RecomputeMethod::Uniform, n))) = (r, w.recompute_layers) {
        // One input kept per group of n layers recomputed together.
        return b / n as f64;
    }
    if r.recomputes_core_attention() {
        return b;
    }
    let heads = m.attention.heads() as f64 / l.tp as f64;
    if w.attention == crate::hw::AttentionKernel::Unfused {
        let per_score = 2.0 + if m.attention_dropout > 0.0 { 3.0 } else { 0.0 };
        b += heads * (l.seq_len / l.cp) as f64 * per_score;
    } else {
        b += heads * 4.0;
    }
    b
}

/// The recompute policy of the block at position `pos` of its chunk: Megatron's block method
/// recomputes the first N of each chunk fully and keeps the others' activations.
fn policy_at(w: &Workload, pos: usize) -> Recompute {
    if keeps_at(w.recompute_layers, pos) {
        Recompute::None
    } else {
        w.recompute
    }
}

/// Whether the block at position `pos` of its chunk keeps its activations under `layers`
/// (Megatron's block method keeps all past the first N).
fn keeps_at(layers: Option<(RecomputeMethod, u64)>, pos: usize) -> bool {
    matches!(layers, Some((RecomputeMethod::Block, n)) if pos as u64 >= n)
}

/// Bytes per token a micro-batch's loss keeps for backward, for the main head and each MTP
/// depth's: the final norm's and the head GEMM's inputs (one activation each, the sequence-
/// parallel norm's and gathered GEMM's on 1/tp of the tokens), and per logit of this rank's
/// vocabulary shard what the cross entropy saves: Megatron's unfused loss its FP32 softmax
/// (4 B, `_VocabParallelCrossEntropy`'s `exp_logits`), a fused loss the BF16 logit gradient
/// its forward computes (2 B).
fn loss_activations_per_token(w: &Workload, l: &Layout) -> f64 {
    let m = &w.model;
    let shard = if l.sequence_parallel { l.tp } else { 1 } as f64;
    let hidden = 2.0 * w.precision.activations.bytes() * m.hidden as f64 / shard;
    let per_logit = match w.loss {
        crate::domain::LossKernel::Unfused => 4.0,
        crate::domain::LossKernel::Fused => 2.0,
    };
    let logits = (m.vocab / l.tp) as f64 * per_logit;
    (1 + m.mtp_depth) as f64 * (hidden + logits)
}

/// Bytes per token one MTP module keeps: its two norms' inputs and its projection's
/// (the concatenation, two activations wide), then its transformer block's.
fn mtp_activations_per_token(w: &Workload, l: &Layout) -> f64 {
    let m = &w.model;
    let shard = if l.sequence_parallel { l.tp } else { 1 } as f64;
    4.0 * w.precision.activations.bytes() * m.hidden as f64 / shard
        + layer_activations_per_token(w, l, m.mtp_layer_kind(), w.recompute)
}

/// Activations one micro-batch leaves in a chunk holding `c`, bytes: (its transformer
/// blocks', its MTP modules' and loss's).
fn items_activations(w: &Workload, l: &Layout, kinds: &[LayerKind], c: &ChunkItems) -> (f64, f64) {
    let t = l.tokens_per_microbatch() as f64;
    let (a, b) = c.blocks;
    let blocks: f64 = kinds[a..b]
        .iter()
        .enumerate()
        .map(|(pos, &k)| layer_activations_per_token(w, l, k, policy_at(w, pos)))
        .sum();
    let loss = if c.loss {
        loss_activations_per_token(w, l)
    } else {
        0.0
    };
    (
        blocks * t,
        (c.mtp as f64 * mtp_activations_per_token(w, l) + loss) * t,
    )
}

/// A lower bound, in bytes, of the peak memory of the fullest pipeline rank, from the layout
/// alone (no kernel priced, no partition cut): the fullest rank holds at least what the average
/// rank holds, and the average rank holds each chunk's weights and activations at least as often
/// as the least-held chunk is held, over the ranks. A layout search drops layouts above HBM on
/// this before timing them; a property test holds it at or below both engines' peaks.
pub fn memory_floor(w: &Workload, l: &Layout, gpus_per_node: u64) -> f64 {
    let model = &w.model;
    let whole = ChunkItems {
        embedding: true,
        blocks: (0, 0),
        mtp: model.mtp_depth,
        loss: true,
    };
    let mut params = extras_params(model, l, &whole);
    // The blocks' activations only: the MTP modules' and the loss's sit on the last chunk,
    // which holds the fewest micro-batches in flight.
    let mut act = 0.0;
    let t = l.tokens_per_microbatch() as f64;
    let (pd, pm) = (
        block_params(model, l, LayerKind::Dense),
        model.moe.map(|_| block_params(model, l, LayerKind::Moe)),
    );
    for k in model.layer_kinds() {
        let p = match (k, pm) {
            (LayerKind::Moe, Some(p)) => p,
            _ => pd,
        };
        params = (params.0 + p.0, params.1 + p.1);
        // Full recompute's (the least) under the block method.
        act += layer_activations_per_token(w, l, k, w.recompute) * t;
    }
    let mut held = vec![0u64; l.chunks() as usize];
    let mut most = 1usize;
    for d in 0..l.pp {
        let ch = l.device_chunks(d);
        most = most.max(ch.len());
        for (c, _) in ch {
            held[c as usize] += 1;
        }
    }
    let least = held.iter().copied().min().unwrap_or(0) as f64;
    let pp = l.pp as f64;
    let share = |p: f64| p * least / pp;
    let (weights, grads, optimizer) = static_memory(
        &w.precision,
        l,
        gpus_per_node,
        (share(params.0), share(params.1)),
    );
    let inflight = schedule::activations_in_flight(l.schedule, l.pp, l.vpp, l.micro_batches);
    // As the analytic engine counts it: stages' worth in flight, a stage being chunks/pp of a
    // rank's mean chunk.
    let per_stage = l.chunks() as f64 / pp;
    weights + grads + optimizer + inflight * per_stage * act * least / (pp * most as f64)
}

/// Gradient elements of `params` (replicated, routed-expert) that a data-parallel group reduces.
fn synced(l: &Layout, (d, e): (f64, f64)) -> f64 {
    d * f64::from(l.dp * l.cp > 1) + e * f64::from(l.expert_dp() > 1)
}

/// Bytes per gradient element that memory-bound passes move before the data-parallel reduction.
/// Sharded gradients (ZeRO-2/3) leave every micro-batch's backward in the working precision and
/// are copied into one contiguous reduce buffer (PyTorch FSDP's flat gradient, DeepSpeed's reduce
/// bucket), then cast to the reduction precision where it differs; accumulated gradients
/// (ZeRO-0/1) are cast once per step where their precision differs. The buffer is then divided
/// by the group size in place (FSDP's gradient pre-divide; DDP's and Megatron-Core's gradient
/// scaling before the reduce-scatter).
fn grad_prep_bytes(pr: &Precision, zero: u8) -> f64 {
    let to_comm = |from: Dtype| {
        if from == pr.grad_comm {
            0.0
        } else {
            from.bytes() + pr.grad_comm.bytes()
        }
    };
    let before = if zero >= 2 {
        2.0 * pr.params.bytes() + to_comm(pr.params)
    } else {
        to_comm(pr.grads)
    };
    before + 2.0 * pr.grad_comm.bytes()
}

/// Chunkings already cut on one [`Blocks`]: (chunk count, the runs, the chunks' costs).
#[derive(Debug, Default)]
struct Chunkings(Mutex<Vec<Chunking>>);

type Chunking = (usize, Runs, Arc<Vec<ChunkCost>>);

/// What each chunk holds.
type Runs = Arc<Vec<ChunkItems>>;

impl Clone for Chunkings {
    fn clone(&self) -> Self {
        Chunkings(Mutex::new(
            self.0.lock().map(|v| v.clone()).unwrap_or_default(),
        ))
    }
}

/// Every block's work and its price: what a step's staging spends most of its time on, and
/// what depends on only part of the layout ([`Blocks::key`]), so that a layout search prices it
/// once for every layout that shares it.
#[derive(Debug, Clone)]
pub struct Blocks {
    /// The [`Blocks::key`] of the layout they were priced for.
    key: Layout,
    dense: BlockWork,
    moe: Option<BlockWork>,
    /// Under Megatron's block recompute method, the blocks past each chunk's first N, which
    /// keep their activations: (dense, MoE) work and price.
    keep: Option<(BlockWork, Option<BlockWork>, ChunkCost, Option<ChunkCost>)>,
    /// The workload's per-layer recompute counts (which positions keep activations).
    recompute_layers: Option<(RecomputeMethod, u64)>,
    /// The embedding, one MTP module (without its head), and the loss: the output head and
    /// cross entropy of the main model and of every MTP depth.
    pub embedding: BlockWork,
    pub mtp: BlockWork,
    pub loss: BlockWork,
    dense_c: ChunkCost,
    moe_c: Option<ChunkCost>,
    embedding_c: ChunkCost,
    mtp_c: ChunkCost,
    loss_c: ChunkCost,
    /// The cuts into chunks made so far: a function of the blocks and the chunk count alone.
    chunkings: Chunkings,
}

impl Blocks {
    /// Expands and prices the blocks of `w` at `layout`.
    pub fn new(
        w: &Workload,
        layout: &Layout,
        cluster: &Cluster,
        cal: &Calibration,
        net: &dyn CommCost,
    ) -> Blocks {
        let model: &Model = &w.model;
        let km = KernelModel::new(&cluster.gpu, cal).with_attention(w.attention);
        let sms = cluster.gpu.sms.value - layout.comm_sms;
        let ex = Expander {
            cal,
            model,
            layout,
            precision: &w.precision,
            recompute: w.recompute,
            loss: w.loss,
            gpus_per_node: cluster.gpus_per_node as u64,
        };
        let mut dense = ex.block(LayerKind::Dense);
        let mut moe = model.moe.map(|_| ex.block(LayerKind::Moe));
        let mut keep = matches!(w.recompute_layers, Some((RecomputeMethod::Block, _))).then(|| {
            let ex = Expander {
                recompute: Recompute::None,
                ..ex
            };
            (
                ex.block(LayerKind::Dense),
                model.moe.map(|_| ex.block(LayerKind::Moe)),
            )
        });
        let mut embedding = ex.extras(Extras {
            embedding: true,
            ..Default::default()
        });
        let mut mtp = ex.extras(Extras {
            mtp: 1,
            ..Default::default()
        });
        let mut loss = ex.extras(Extras {
            heads: 1 + model.mtp_depth,
            ..Default::default()
        });
        // Sharded gradients are prepared for their reduction after every micro-batch's backward.
        if layout.state_zero() >= 2 {
            let per = grad_prep_bytes(&w.precision, layout.state_zero());
            let prep = |b: &mut BlockWork, params: (f64, f64)| {
                let bytes = per * synced(layout, params);
                if bytes > 0.0 {
                    b.wgrad.push(Seg::Compute(vec![Kernel::memory(
                        "grad.reduce_prep",
                        bytes,
                    )]));
                }
            };
            prep(&mut dense, block_params(model, layout, LayerKind::Dense));
            if let Some((d, m)) = keep.as_mut() {
                prep(d, block_params(model, layout, LayerKind::Dense));
                if let Some(b) = m.as_mut() {
                    prep(b, block_params(model, layout, LayerKind::Moe));
                }
            }
            if let Some(b) = moe.as_mut() {
                prep(b, block_params(model, layout, LayerKind::Moe));
            }
            prep(&mut embedding, embedding_params(model, layout));
            prep(&mut mtp, mtp_params(model, layout));
            prep(&mut loss, loss_params(model, layout));
        }
        let price = |b: &BlockWork| cost_block(b, &km, sms, net);
        let keep = keep.map(|(d, m)| {
            let (dc, mc) = (price(&d), m.as_ref().map(price));
            (d, m, dc, mc)
        });
        Blocks {
            keep,
            recompute_layers: w.recompute_layers,
            key: Blocks::key(layout),
            dense_c: price(&dense),
            moe_c: moe.as_ref().map(price),
            embedding_c: price(&embedding),
            mtp_c: price(&mtp),
            loss_c: price(&loss),
            chunkings: Chunkings::default(),
            dense,
            moe,
            embedding,
            mtp,
            loss,
        }
    }

    /// What the blocks depend on: the layout with every field they do not read cleared. Two
    /// layouts of one workload and cluster with the same key have the same blocks (a test holds
    /// estimates from shared blocks to fresh ones). The blocks read the tensor-, context- and
    /// expert-parallel degrees and placement, the micro-batch and sequence, the SMs left to
    /// compute, sequence parallelism and its overlap (which, with a deferred weight-gradient
    /// schedule, keeps the reduce-scatter blocking), and with ZeRO-2/3 the gradient preparation
    /// of the data-parallel group.
    pub fn key(l: &Layout) -> Layout {
        let deferred = matches!(
            l.schedule,
            Schedule::Zb1p | Schedule::Dualpipe | Schedule::Dualpipev
        );
        let sharded = l.state_zero() >= 2;
        Layout {
            pp: 0,
            vpp: 0,
            micro_batches: 0,
            global_batch: 0,
            overlap_param_gather: false,
            grad_reduce: GradReduce::Overlap,
            moe_overlap: Default::default(),
            schedule: if deferred {
                Schedule::Zb1p
            } else {
                Schedule::OneFOneB
            },
            zero: if sharded { l.zero } else { 0 },
            dp: if sharded { l.dp } else { 0 },
            ..l.clone()
        }
    }

    /// The model cut into `k` chunks as the layout's split says (by default balancing their
    /// compute), and each chunk's cost: cut once per chunk count and kept.
    fn chunked(
        &self,
        kinds: &[LayerKind],
        layout: &Layout,
        mtp_depth: u64,
    ) -> (Runs, Arc<Vec<ChunkCost>>) {
        let k = layout.chunks() as usize;
        if let Ok(v) = self.chunkings.0.lock() {
            if let Some((_, r, c)) = v.iter().find(|(n, _, _)| *n == k) {
                return (r.clone(), c.clone());
            }
        }
        let n = kinds.len();
        let items: Vec<Item> = std::iter::once(Item::Embedding)
            .chain((0..n).map(Item::Block))
            .chain((0..mtp_depth).map(|_| Item::Mtp))
            .chain([Item::Loss])
            .collect();
        let runs: Vec<ChunkItems> = match &self.key.split {
            // The slowest chunk minimised. (Balancing the ranks instead, where each holds
            // several chunks, was tried and is slower in the DES: the interleaved schedule's
            // chunk-by-chunk hand-offs stall on the largest chunk.)
            PipelineSplit::Balanced => {
                let costs: Vec<f64> = items.iter().map(|&it| self.item_cost(kinds, it)).collect();
                gather_items(&items, &partition(&costs, k))
            }
            // Megatron's even split: the embedding and the loss either ride on the end chunks or
            // count as one layer each; the MTP modules go with the loss.
            &PipelineSplit::Even { embedding, loss } => {
                let lead = usize::from(embedding);
                let total = n + lead + usize::from(loss);
                let cut = |c: usize| (c * total / k).saturating_sub(lead).min(n);
                (0..k)
                    .map(|c| ChunkItems {
                        embedding: c == 0,
                        blocks: (cut(c), cut(c + 1)),
                        mtp: if c + 1 == k { mtp_depth } else { 0 },
                        loss: c + 1 == k,
                    })
                    .collect()
            }
            PipelineSplit::Explicit(segs) => ChunkItems::from_segments(segs),
        };
        let chunks: Vec<ChunkCost> = runs
            .iter()
            .map(|r| {
                let mut c = ChunkCost::default();
                let mut extras = Vec::new();
                if r.embedding {
                    c.add(&self.embedding_c);
                    extras.push("embedding".to_string());
                }
                for (pos, &kind) in kinds[r.blocks.0..r.blocks.1].iter().enumerate() {
                    c.add(self.cost_at(kind, pos));
                }
                for _ in 0..r.mtp {
                    c.add(&self.mtp_c);
                }
                if r.loss {
                    c.add(&self.loss_c);
                    extras.push("head".into());
                }
                match r.mtp {
                    0 => {}
                    1 => extras.push("mtp".into()),
                    m => extras.push(format!("mtp×{m}")),
                }
                c.blocks = (r.blocks.0 as u64, r.blocks.1 as u64);
                c.extras = extras.join("+");
                c
            })
            .collect();
        let (runs, chunks) = (Arc::new(runs), Arc::new(chunks));
        if let Ok(mut v) = self.chunkings.0.lock() {
            v.push((k, runs.clone(), chunks.clone()));
        }
        (runs, chunks)
    }

    /// Compute seconds of one item, as the balanced split weighs it.
    fn item_cost(&self, kinds: &[LayerKind], it: Item) -> f64 {
        match it {
            Item::Embedding => self.embedding_c.compute(),
            Item::Block(i) => self.cost(kinds[i]).compute(),
            Item::Mtp => self.mtp_c.compute(),
            Item::Loss => self.loss_c.compute(),
        }
    }

    /// The price of a block of kind `k` at position `pos` of its chunk (see [`policy_at`]).
    fn cost_at(&self, k: LayerKind, pos: usize) -> &ChunkCost {
        match (&self.keep, self.keeps_at(pos), k) {
            (Some((_, _, d, _)), true, LayerKind::Dense) => d,
            (Some((_, _, _, Some(m))), true, LayerKind::Moe) => m,
            _ => self.cost(k),
        }
    }

    /// Whether the block at position `pos` of its chunk keeps its activations under the block
    /// recompute method.
    fn keeps_at(&self, pos: usize) -> bool {
        keeps_at(self.recompute_layers, pos)
    }

    fn cost(&self, k: LayerKind) -> &ChunkCost {
        match k {
            LayerKind::Moe => self
                .moe_c
                .as_ref()
                .expect("MoE block in a model with experts"),
            LayerKind::Dense => &self.dense_c,
        }
    }
}

/// The step cut into pipeline chunks, with each block's work and the models that price it.
/// Shared by the analytic and the discrete-event engines.
pub struct Staging<'a> {
    pub w: &'a Workload,
    pub layout: &'a Layout,
    pub km: KernelModel<'a>,
    pub ab: &'a dyn CommCost,
    /// SMs left to compute kernels.
    pub sms: u32,
    pub gpus_per_node: u64,
    pub ex: Expander<'a>,
    pub kinds: Vec<LayerKind>,
    /// Every block's work and price (shared by layouts with the same [`Blocks::key`]).
    pub blocks: Cow<'a, Blocks>,
    /// What each chunk holds.
    pub runs: Arc<Vec<ChunkItems>>,
    /// Per-micro-batch cost of each chunk.
    pub chunks: Arc<Vec<ChunkCost>>,
    /// Per-GPU parameters of a dense block and, in an MoE model, of an MoE block: computed once,
    /// read for every block of every rank.
    params_dense: (f64, f64),
    params_moe: Option<(f64, f64)>,
    /// All-reduce of the gradient-norm scalar over every GPU (clipping): latency-bound, so
    /// priced by the closed-form model even when the DES prices the rest by flows.
    norm_sync: f64,
}

impl<'a> Staging<'a> {
    pub fn new(
        w: &'a Workload,
        layout: &'a Layout,
        cluster: &'a Cluster,
        cal: &'a Calibration,
        net: &'a dyn CommCost,
    ) -> Self {
        let blocks = Blocks::new(w, layout, cluster, cal, net);
        Self::with_blocks(w, layout, cluster, cal, net, Cow::Owned(blocks))
    }

    /// Stages a step on blocks already priced for a layout with the same [`Blocks::key`].
    pub fn with_blocks(
        w: &'a Workload,
        layout: &'a Layout,
        cluster: &'a Cluster,
        cal: &'a Calibration,
        net: &'a dyn CommCost,
        blocks: Cow<'a, Blocks>,
    ) -> Self {
        assert!(
            blocks.key == Blocks::key(layout),
            "blocks priced for another layout key"
        );
        let model: &Model = &w.model;
        let km = KernelModel::new(&cluster.gpu, cal).with_attention(w.attention);
        let sms = cluster.gpu.sms.value - layout.comm_sms;
        let gpn = cluster.gpus_per_node as u64;
        let ex = Expander {
            cal,
            model,
            layout,
            precision: &w.precision,
            recompute: w.recompute,
            loss: w.loss,
            gpus_per_node: gpn,
        };
        let kinds = model.layer_kinds();
        let (runs, chunks) = blocks.chunked(&kinds, layout, model.mtp_depth);
        Staging {
            w,
            layout,
            km,
            ab: net,
            sms,
            gpus_per_node: gpn,
            ex,
            kinds,
            blocks,
            runs,
            chunks,
            params_dense: block_params(model, layout, LayerKind::Dense),
            params_moe: model
                .moe
                .map(|_| block_params(model, layout, LayerKind::Moe)),
            norm_sync: AlphaBeta::new(cluster, cal).time(&CommOp::AllReduce {
                bytes: 8.0,
                span: Placement::strided(layout.gpus(), 1, gpn),
            }),
        }
    }

    /// The work of a block of kind `k` at position `pos` of its chunk (see [`policy_at`]).
    pub fn block_work_at(&self, k: LayerKind, pos: usize) -> &BlockWork {
        match (&self.blocks.keep, self.blocks.keeps_at(pos), k) {
            (Some((d, _, _, _)), true, LayerKind::Dense) => d,
            (Some((_, Some(m), _, _)), true, LayerKind::Moe) => m,
            _ => self.block_work(k),
        }
    }

    pub fn block_work(&self, k: LayerKind) -> &BlockWork {
        match k {
            LayerKind::Moe => self
                .blocks
                .moe
                .as_ref()
                .expect("MoE block in a model with experts"),
            LayerKind::Dense => &self.blocks.dense,
        }
    }

    /// Parameters of one block of `kind` on a GPU: (replicated weights, routed-expert weights).
    pub fn block_params(&self, kind: LayerKind) -> (f64, f64) {
        match (kind, self.params_moe) {
            (LayerKind::Dense, _) => self.params_dense,
            (LayerKind::Moe, Some(p)) => p,
            (LayerKind::Moe, None) => block_params(&self.w.model, self.layout, kind),
        }
    }

    /// Parameters held for chunk `c`: (replicated weights, routed-expert weights), per GPU.
    pub fn chunk_params(&self, c: usize) -> (f64, f64) {
        let r = &self.runs[c];
        let mut extras = self.extras_params(c);
        if self.holds_embedding_copy(c) {
            extras.0 += embedding_params(&self.w.model, self.layout).0;
        }
        self.kinds[r.blocks.0..r.blocks.1]
            .iter()
            .map(|&k| self.block_params(k))
            .fold(extras, |acc, p| (acc.0 + p.0, acc.1 + p.1))
    }

    /// Hidden-state streams a pipeline send after chunk `c` carries: past an MTP module the
    /// main and every depth's hidden states travel on together (Megatron concatenates them) to
    /// the loss.
    pub fn p2p_streams(&self, c: usize) -> u64 {
        1 + self.runs[..=c].iter().map(|r| r.mtp).sum::<u64>()
    }

    /// Whether chunk `c` keeps its own copy of the embedding: it runs MTP modules (each embeds
    /// the next tokens with the main model's embedding) on a rank that does not hold the
    /// embedding's chunk. Megatron keeps such a copy on the last stage, its gradients
    /// all-reduced with the first stage's; DualPipe's ranks hold both ends and share it
    /// (DeepSeek-V3 §2.2).
    pub fn holds_embedding_copy(&self, c: usize) -> bool {
        let r = &self.runs[c];
        if r.mtp == 0 || r.embedding {
            return false;
        }
        let Some(home) = self.runs.iter().position(|x| x.embedding) else {
            return false;
        };
        (0..self.layout.pp).any(|d| {
            let held = self.layout.device_chunks(d);
            held.iter().any(|&(x, _)| x as usize == c)
                && !held.iter().any(|&(x, _)| x as usize == home)
        })
    }

    /// Parameters of chunk `c`'s embedding, MTP modules and loss, per GPU.
    pub fn extras_params(&self, c: usize) -> (f64, f64) {
        extras_params(&self.w.model, self.layout, &self.runs[c])
    }

    /// Parameters of the embedding, of one MTP module and of the loss, per GPU.
    pub fn item_params(&self) -> [(f64, f64); 3] {
        let (m, l) = (&self.w.model, self.layout);
        [embedding_params(m, l), mtp_params(m, l), loss_params(m, l)]
    }

    /// ZeRO-3 gathers a block's sharded weights before each use: seconds per gather.
    pub fn param_gather(&self, params: (f64, f64)) -> f64 {
        let ops = self.param_gather_ops(params);
        ops.iter().map(|op| self.ab.time(op)).sum()
    }

    /// ZeRO-3's gathers of a block's sharded weights (none below ZeRO-3).
    pub fn param_gather_ops(&self, params: (f64, f64)) -> Vec<CommOp> {
        if self.layout.state_zero() < 3 {
            return Vec::new();
        }
        let (dg, eg) = self.dp_groups();
        let bytes = self.w.precision.params.bytes();
        [(params.0, dg), (params.1, eg)]
            .into_iter()
            .filter(|(p, g)| *p > 0.0 && g.size > 1)
            .map(|(p, g)| CommOp::AllGather {
                bytes: p * bytes,
                span: g,
            })
            .collect()
    }

    /// Parameters on pipeline rank `d` (DualPipe holds two stages' worth).
    pub fn rank_params(&self, d: u64) -> (f64, f64) {
        self.layout
            .device_chunks(d)
            .iter()
            .map(|&(c, _)| self.chunk_params(c as usize))
            .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1))
    }

    /// Data-parallel groups of replicated and of expert weights.
    pub fn dp_groups(&self) -> (Placement, Placement) {
        dp_groups(self.layout, self.gpus_per_node)
    }

    /// Gradient sync of `params` (dense, expert): (reduce-scatter or all-reduce, all-gather) seconds.
    pub fn grad_sync(&self, params: (f64, f64)) -> (f64, f64) {
        let (reduce, gather) = self.grad_sync_ops(params);
        let time = |ops: &[CommOp]| ops.iter().fold(0.0, |t, op| t + self.ab.time(op));
        (time(&reduce), time(&gather))
    }

    /// The operations of `params`' gradient sync, over the replicated and the expert
    /// data-parallel groups: (the reductions, the gathers of updated weights). ZeRO-0 all-reduces;
    /// ZeRO-1 and above reduce-scatter and all-gather.
    pub fn grad_sync_ops(&self, params: (f64, f64)) -> (Vec<CommOp>, Vec<CommOp>) {
        let pr = &self.w.precision;
        let (dg, eg) = self.dp_groups();
        let (mut reduce, mut gather) = (Vec::new(), Vec::new());
        for (p, g) in [(params.0, dg), (params.1, eg)] {
            if g.size <= 1 || p == 0.0 {
                continue;
            }
            let grads = p * pr.grad_comm.bytes();
            let weights = p * pr.params.bytes();
            if self.layout.state_zero() == 0 {
                reduce.push(CommOp::AllReduce {
                    bytes: grads,
                    span: g,
                });
            } else {
                reduce.push(CommOp::ReduceScatter {
                    bytes: grads,
                    span: g,
                });
                gather.push(CommOp::AllGather {
                    bytes: weights,
                    span: g,
                });
            }
        }
        (reduce, gather)
    }

    /// Accumulated gradients' (ZeRO-0/1) preparation for their once-a-step reduction, seconds
    /// (sharded gradients pay theirs in every micro-batch's backward: see `Staging::new`).
    pub fn grad_prep_time(&self, params: (f64, f64)) -> f64 {
        let elems = synced(self.layout, params);
        if self.layout.state_zero() >= 2 || elems == 0.0 {
            return 0.0;
        }
        let bytes = elems * grad_prep_bytes(&self.w.precision, self.layout.state_zero());
        self.km
            .time(&KernelShape::Memory { bytes }, self.sms)
            .as_secs_f64()
    }

    /// SMs a data-parallel collective holds while it runs: NCCL's channels for the bandwidth
    /// the group reaches (a 1 GiB all-gather, as nccl-tests measures it), one SM each.
    pub fn dp_comm_sms(&self) -> u32 {
        let (dg, eg) = self.dp_groups();
        let g = if dg.size > 1 || self.w.model.moe.is_none() {
            dg
        } else {
            eg
        };
        if g.size <= 1 {
            return 0;
        }
        let net = &self.km.cal.network;
        let bytes = net.nccl_dp_reference_size.value.bytes;
        let t = self.ab.time(&CommOp::AllGather { bytes, span: g });
        let n = g.size as f64;
        let busbw = bytes * (n - 1.0) / n / t;
        let sms = (busbw / net.nccl_sm_bandwidth.value.bytes_per_s).ceil() as u32;
        sms.clamp(1, net.nccl_max_channels.value)
    }

    /// Gradient clipping and AdamW over this rank's shard. Clipping reads the gradients once for
    /// their squared norm and all-reduces that scalar over every GPU; AdamW then streams
    /// gradients, master weights, both moments and the working weights.
    pub fn optimizer_time(&self, params: (f64, f64)) -> f64 {
        let pr = &self.w.precision;
        let (dg, eg) = self.dp_groups();
        let shard = |p: f64, g: u64| {
            if self.layout.state_zero() >= 1 {
                p / g.max(1) as f64
            } else {
                p
            }
        };
        let n = shard(params.0, dg.size) + shard(params.1, eg.size);
        let norm = n * pr.grads.bytes();
        let adamw = n
            * (pr.grads.bytes()
                + 2.0 * pr.master.bytes()
                + 4.0 * pr.optimizer_states.bytes()
                + pr.params.bytes());
        self.km.stream_time(norm).as_secs_f64()
            + self.norm_sync
            + self.km.stream_time(adamw).as_secs_f64()
    }

    /// Weights, gradients and optimizer state per GPU, bytes, by ZeRO stage.
    pub fn static_memory(&self, params: (f64, f64)) -> (f64, f64, f64) {
        static_memory(&self.w.precision, self.layout, self.gpus_per_node, params)
    }

    /// Memory of pipeline rank `d` holding `activations` bytes of activations at its peak.
    pub fn rank_memory(&self, d: u64, activations: f64) -> Memory {
        let p = self.rank_params(d);
        let (weights, grads, optimizer) = self.static_memory(p);
        Memory {
            params: p.0 + p.1,
            weights,
            grads,
            optimizer,
            activations,
            total: weights + grads + optimizer + activations,
            capacity: self.km.gpu.hbm_capacity.value.bytes,
        }
    }

    /// Activations one micro-batch leaves in chunk `c`, bytes.
    pub fn chunk_activations(&self, c: usize) -> f64 {
        let (blocks, ends) = self.chunk_activations_split(c);
        blocks + ends
    }

    /// [`Staging::chunk_activations`] as (the transformer blocks', the MTP modules' and loss's).
    pub fn chunk_activations_split(&self, c: usize) -> (f64, f64) {
        items_activations(self.w, self.layout, &self.kinds, &self.runs[c])
    }

    /// Kernels launched per step over the whole cluster.
    pub fn kernels_per_step(&self) -> u64 {
        let l = self.layout;
        (0..l.pp)
            .flat_map(|d| l.device_chunks(d))
            .map(|(c, m)| m * self.chunks[c as usize].kernels as u64)
            .sum::<u64>()
            * l.tp
            * l.cp
            * l.dp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FSDP with BF16 weights and FP32 reduction moves 18 bytes per gradient element in every
    /// micro-batch (copy 2+2, cast 2+4, pre-divide 4+4); Megatron's FP32 gradient buffer only
    /// its once-a-step scaling (4+4); BF16 reduction of BF16 gradients 2+2 plus the copy.
    #[test]
    fn gradients_are_copied_cast_and_averaged_before_their_reduction() {
        use Dtype::{Bf16, Fp32};
        let pr = |params, grads, grad_comm| Precision {
            params,
            grads,
            grad_comm,
            ..crate::workload::ops::tests::gpt(&[]).1.precision
        };
        assert_eq!(grad_prep_bytes(&pr(Bf16, Fp32, Fp32), 3), 18.0);
        assert_eq!(grad_prep_bytes(&pr(Bf16, Fp32, Fp32), 1), 8.0);
        assert_eq!(grad_prep_bytes(&pr(Bf16, Bf16, Bf16), 2), 8.0);
        assert_eq!(grad_prep_bytes(&pr(Bf16, Bf16, Fp32), 0), 14.0);
    }

    /// Korthikanti et al. 2022 (§4.1, eq. 1–2): a GPT layer (GELU MLP 4h, dropout, FP16/BF16
    /// activations) without recompute keeps sbh(34 + 5as/h) bytes for its backward; with
    /// tensor parallelism t, sbh(10 + 24/t + 5as/(ht)), and sbh(34/t + 5as/(ht)) with sequence
    /// parallelism; Megatron's selective recompute (the core attention) leaves 34sbh/t under
    /// sequence parallelism, and full recompute keeps the 2sbh/t input.
    #[test]
    fn korthikanti_activations_per_layer() {
        let base = [
            "workload.model.hidden_dropout=0.1",
            "workload.model.attention_dropout=0.1",
            "workload.training.attention_kernel=unfused",
        ];
        let per_layer = |extra: &[&str]| {
            let sets: Vec<&str> = base.iter().chain(extra).copied().collect();
            let (_, w) = crate::workload::ops::tests::gpt(&sets);
            let l = &w.layout;
            let sbh = (l.seq_len * l.micro_batch) as f64 * w.model.hidden as f64;
            let tokens = (l.seq_len * l.micro_batch) as f64;
            (
                layer_activations_per_token(&w, l, LayerKind::Dense, w.recompute) * tokens / sbh,
                w.model.attention.heads() as f64 * l.seq_len as f64 / w.model.hidden as f64,
            )
        };
        // 32 heads, hidden 4096, 2,048 tokens: 5as/h = 80.
        // Per row: sbh's coefficient, as a constant plus a multiple of 5as/h.
        for (t, sp, recompute, c, k) in [
            (1, false, "none", 34.0, 1.0),
            (8, false, "none", 10.0 + 24.0 / 8.0, 1.0 / 8.0),
            (8, true, "none", 34.0 / 8.0, 1.0 / 8.0),
            (8, true, "megatron_selective", 34.0 / 8.0, 0.0),
            (8, true, "full", 2.0 / 8.0, 0.0),
        ] {
            let tp = format!("workload.parallelism.tp={t}");
            let sp = format!("workload.parallelism.sequence_parallel={sp}");
            let rc = format!("workload.training.recompute={recompute}");
            let (got, r) = per_layer(&[tp.as_str(), sp.as_str(), rc.as_str()]);
            let want = c + k * 5.0 * r;
            assert!(
                (got - want).abs() < 1e-9,
                "tp {t} {sp} {recompute}: {got} vs {want}"
            );
        }
    }

    /// The pipeline split: an explicit `layers_per_chunk` puts exactly those layers on each
    /// chunk, `even` is Megatron's layers/chunks on each, and `balanced` (the default) never
    /// leaves the slowest chunk slower than either, nor the step in the DES; bad lists are
    /// located diagnostics.
    /// MTP modules embed the next tokens with the main model's embedding. On a rank that does
    /// not hold the embedding (1F1B's last stage) the MTP chunk keeps a copy: exactly
    /// vocab × hidden more parameters than the same chunk where DualPipe puts both ends on one
    /// rank; without MTP there is no copy.
    #[test]
    fn mtp_keeps_an_embedding_copy_away_from_the_embedding() {
        let cal = crate::builtin::calibration();
        let last = |sets: &[&str]| {
            let mut all = vec!["workload.parallelism.pipeline_layout=\"Ett|ttmL\""];
            all.extend(sets);
            let (c, w) = crate::workload::ops::tests::moe(&all).unwrap();
            let ab = AlphaBeta::new(&c, &cal);
            let st = Staging::new(&w, &w.layout, &c, &cal, &ab);
            (st.holds_embedding_copy(1), st.chunk_params(1).0)
        };
        let (copy, one) = last(&["workload.parallelism.schedule=1f1b"]);
        let (shared, dual) = last(&[]);
        assert!(copy && !shared);
        assert_eq!(one - dual, (129280 * 7168) as f64);
        let (none, _) = last(&[
            "workload.parallelism.schedule=1f1b",
            "workload.parallelism.pipeline_layout=\"Ett|ttL\"",
            "workload.model.num_nextn_predict_layers=0",
        ]);
        assert!(!none);
    }

    #[test]
    fn pipeline_splits_cut_where_they_say() {
        let cal = crate::builtin::calibration();
        let cut = |extra: &[&str]| {
            let mut sets = vec!["workload.parallelism.pp=2", "workload.parallelism.tp=8"];
            sets.extend(extra);
            let (c, w) = crate::workload::ops::tests::gpt(&sets);
            let ab = AlphaBeta::new(&c, &cal);
            let st = Staging::new(&w, &w.layout, &c, &cal, &ab);
            let slowest = st.chunks.iter().map(|c| c.compute()).fold(0.0, f64::max);
            let step = crate::step::des::estimate(&w, &w.layout, &c, &cal, false).step_time_s;
            let runs: Vec<_> = st.runs.iter().map(|r| r.blocks).collect();
            (runs, slowest, step)
        };
        let (runs, _, uneven) = cut(&["workload.parallelism.layers_per_chunk=[1, 3]"]);
        assert_eq!(runs, vec![(0, 1), (1, 4)]);
        let (runs, even_slowest, even) = cut(&["workload.parallelism.pipeline_split=even"]);
        assert_eq!(runs, vec![(0, 2), (2, 4)]);
        let (_, slowest, balanced) = cut(&[]);
        assert!(slowest <= even_slowest);
        assert!(
            balanced <= even && balanced <= uneven,
            "{balanced} {even} {uneven}"
        );
        for (set, key) in [
            (
                "workload.parallelism.layers_per_chunk=[2, 1]",
                "layers_per_chunk",
            ),
            (
                "workload.parallelism.layers_per_chunk=[4]",
                "layers_per_chunk",
            ),
            (
                "workload.parallelism.layers_per_chunk=[0, 4]",
                "layers_per_chunk",
            ),
            ("workload.model.num_hidden_layers=5", "pipeline_split"),
        ] {
            let mut sets = vec![
                "workload.parallelism.pp=2",
                "workload.parallelism.tp=8",
                "workload.parallelism.pipeline_split=even",
                set,
            ];
            if key == "layers_per_chunk" {
                sets.remove(2);
            }
            let d = crate::workload::ops::tests::try_gpt(&sets).unwrap_err();
            assert_eq!(
                d.path.as_deref(),
                Some(&*format!("parallelism.{key}")),
                "{set}"
            );
        }
    }

    /// Megatron's other ways to write a split put the same items on the same chunks: a layout
    /// string and the list it spells, uneven end stages and the list they make, the embedding
    /// and loss accounted as layers, and a chunk holding only the embedding or only the loss,
    /// or nothing, which both engines run. Malformed or misfitting layouts are located
    /// diagnostics.
    #[test]
    fn megatron_split_keys_place_what_they_say() {
        let cal = crate::builtin::calibration();
        let gpt = |pp: &str, extra: &[&str]| {
            let mut sets = vec![pp, "workload.parallelism.tp=8"];
            sets.extend(extra);
            crate::workload::ops::tests::gpt(&sets)
        };
        let items = |pp: &str, extra: &[&str]| {
            let (c, w) = gpt(pp, extra);
            let ab = AlphaBeta::new(&c, &cal);
            let st = Staging::new(&w, &w.layout, &c, &cal, &ab);
            let des = crate::step::des::estimate(&w, &w.layout, &c, &cal, false);
            let analytic = crate::step::analytic::estimate(&w, &w.layout, &c, &cal);
            assert!(des.step_time_s.is_finite() && analytic.step_time_s.is_finite());
            let v: Vec<(bool, (usize, usize), u64, bool)> = st
                .runs
                .iter()
                .map(|r| (r.embedding, r.blocks, r.mtp, r.loss))
                .collect();
            (v, des.step_time_s)
        };
        let pp2 = "workload.parallelism.pp=2";
        let listed = items(pp2, &["workload.parallelism.layers_per_chunk=[1, 3]"]);
        let spelled = items(pp2, &["workload.parallelism.pipeline_layout=Et|t*3L"]);
        assert_eq!(listed, spelled);
        let uneven = items(
            pp2,
            &[
                "workload.parallelism.pipeline_split=even",
                "workload.parallelism.num_layers_in_first_pipeline_stage=1",
            ],
        );
        assert_eq!(listed, uneven);
        // Five layers and the embedding counted: 6 items, 3 per chunk.
        let counted = items(
            pp2,
            &[
                "workload.model.num_hidden_layers=5",
                "workload.parallelism.pipeline_split=even",
                "workload.parallelism.account_for_embedding_in_pipeline_split=true",
            ],
        );
        assert_eq!(
            counted.0,
            vec![(true, (0, 2), 0, false), (false, (2, 5), 0, true)]
        );
        // Ends on their own, and an empty chunk passing activations through: it adds a
        // pipeline hop and no work.
        let (ends, alone) = items(
            "workload.parallelism.pp=4",
            &[
                "workload.parallelism.tp=4",
                "workload.parallelism.pipeline_layout=E|tttt||L",
            ],
        );
        assert_eq!(
            ends,
            vec![
                (true, (0, 0), 0, false),
                (false, (0, 4), 0, false),
                (false, (4, 4), 0, false),
                (false, (4, 4), 0, true)
            ]
        );
        assert!(alone > 0.0);
        for (set, key, says) in [
            (
                "workload.parallelism.pipeline_layout=Et|ttt",
                "pipeline_model_parallel_layout",
                "the embedding `E` in the first chunk and the loss `L` in the last",
            ),
            (
                "workload.parallelism.pipeline_layout=Et|tttttL",
                "pipeline_model_parallel_layout",
                "the model's 4 layers",
            ),
            (
                "workload.parallelism.pipeline_layout=Et|t|ttL",
                "pipeline_model_parallel_layout",
                "2 chunks",
            ),
            (
                "workload.parallelism.pipeline_layout=Et|ttx|L",
                "pipeline_model_parallel_layout",
                "at character 6",
            ),
            (
                "workload.parallelism.num_layers_in_first_pipeline_stage=3",
                "num_layers_in_first_pipeline_stage",
                "pipeline_split: even",
            ),
            (
                "workload.parallelism.account_for_loss_in_pipeline_split=true",
                "account_for_loss_in_pipeline_split",
                "pipeline_split: even",
            ),
        ] {
            let d = crate::workload::ops::tests::try_gpt(&[pp2, "workload.parallelism.tp=8", set])
                .unwrap_err();
            assert_eq!(
                d.path.as_deref(),
                Some(&*format!("parallelism.{key}")),
                "{set}"
            );
            let text = format!("{} / {}", d.found, d.expected);
            assert!(text.contains(says), "{set}: {text}");
        }
        // Uneven end stages beside an explicit layout are refused, not ignored.
        let d = crate::workload::ops::tests::try_gpt(&[
            pp2,
            "workload.parallelism.tp=8",
            "workload.parallelism.pipeline_split=even",
            "workload.parallelism.num_layers_in_first_pipeline_stage=1",
            "workload.parallelism.pipeline_layout=Et|t*3L",
        ])
        .unwrap_err();
        assert_eq!(
            d.path.as_deref(),
            Some("parallelism.num_layers_in_first_pipeline_stage")
        );
        assert!(
            d.found.contains("pipeline_model_parallel_layout"),
            "{}",
            d.found
        );
        let d = crate::workload::ops::tests::try_gpt(&[
            "workload.parallelism.pp=4",
            "workload.parallelism.tp=4",
            "workload.parallelism.pipeline_split=even",
            "workload.parallelism.num_layers_in_last_pipeline_stage=2",
        ])
        .unwrap_err();
        assert!(
            d.expected
                .contains("dividing evenly over the 3 other stages"),
            "{}",
            d.expected
        );
    }

    /// Megatron's per-layer recompute counts: under the block method the first N layers of a
    /// chunk keep what full recompute keeps and the others what no recompute keeps, so a
    /// 4-layer chunk with N = 1 holds a quarter of full's activations plus three quarters of
    /// none's, and N = 4 is full recompute; the uniform method keeps one input per N layers and
    /// recomputes every layer (full's time); misuse is a located diagnostic.
    #[test]
    fn recompute_num_layers_split_full_and_none() {
        let cal = crate::builtin::calibration();
        let run = |extra: &[&str]| {
            let (c, w) = crate::workload::ops::tests::gpt(extra);
            let r = crate::step::analytic::estimate(&w, &w.layout, &c, &cal);
            (r.memory.activations, r.step_time_s)
        };
        let full = ["workload.training.recompute=full"];
        let (a_none, t_none) = run(&[]);
        let (a_full, t_full) = run(&full);
        let with = |n: &str, method: &str| {
            let n = format!("workload.training.recompute_num_layers={n}");
            let m = format!("workload.training.recompute_method={method}");
            run(&[full[0], &n, &m])
        };
        let (a1, t1) = with("1", "block");
        let want = 0.25 * a_full + 0.75 * a_none;
        assert!((a1 / want - 1.0).abs() < 1e-9, "{a1} vs {want}");
        assert!(t_none < t1 && t1 < t_full, "{t_none} {t1} {t_full}");
        assert_eq!(with("4", "block"), (a_full, t_full));
        let (a2, t2) = with("2", "uniform");
        assert!(
            a2 < a_full && (t2 / t_full - 1.0).abs() < 1e-12,
            "{a2} {t2}"
        );
        for (sets, key) in [
            (
                vec!["workload.training.recompute_num_layers=2"],
                "training.recompute_num_layers",
            ),
            (
                vec![full[0], "workload.training.recompute_num_layers=0"],
                "training.recompute_num_layers",
            ),
            (
                vec![full[0], "workload.training.recompute_method=block"],
                "training.recompute_method",
            ),
        ] {
            let d = crate::workload::ops::tests::try_gpt(&sets).unwrap_err();
            assert_eq!(d.path.as_deref(), Some(key), "{sets:?}");
        }
    }

    /// A balanced split equalises the stages' compute within one layer's time: DeepSeek-V3
    /// (dense and MoE layers, the embedding, MTP and loss of their own) and a GPT at several
    /// pipeline depths.
    #[test]
    fn balanced_split_equalises_stage_compute_within_one_layer() {
        let cal = crate::builtin::calibration();
        let check = |c: &Cluster, w: &Workload| {
            let ab = AlphaBeta::new(c, &cal);
            let st = Staging::new(w, &w.layout, c, &cal, &ab);
            let t: Vec<f64> = st.chunks.iter().map(ChunkCost::compute).collect();
            let spread =
                t.iter().copied().fold(0.0, f64::max) - t.iter().copied().fold(f64::MAX, f64::min);
            let layer = st
                .kinds
                .iter()
                .map(|&k| st.blocks.cost(k).compute())
                .fold(0.0, f64::max);
            assert!(
                spread <= layer * (1.0 + 1e-9),
                "pp {}: {t:?} spread {spread} > {layer}",
                w.layout.pp
            );
        };
        for pp in ["4", "8", "16"] {
            use crate::config::{Override, Source};
            use crate::pipeline::{load, DEFAULT_TOPOLOGY, DEFAULT_WORKLOAD};
            let sets: Vec<Override> = [
                format!("workload.parallelism.pp={pp}"),
                "workload.parallelism.schedule=1f1b".into(),
            ]
            .iter()
            .map(|s| Override::parse(s).unwrap())
            .collect();
            let (c, w) = load(
                &Source::embedded(DEFAULT_TOPOLOGY.0, DEFAULT_TOPOLOGY.1),
                &Source::embedded(DEFAULT_WORKLOAD.0, DEFAULT_WORKLOAD.1),
                &sets,
            )
            .unwrap();
            check(&c, &w);
        }
        for (pp, tp) in [("2", "8"), ("4", "4"), ("8", "2")] {
            let (c, w) = crate::workload::ops::tests::gpt(&[
                &format!("workload.parallelism.pp={pp}"),
                &format!("workload.parallelism.tp={tp}"),
                "workload.model.num_hidden_layers=16",
            ]);
            check(&c, &w);
        }
    }

    /// A data-parallel group of one GPU per node runs at one NIC's ~47 GB/s: 4 NCCL channels of
    /// 11.875 GB/s; no data parallelism, no channels.
    #[test]
    fn data_parallel_collectives_hold_the_channels_their_bandwidth_needs() {
        let cal = crate::builtin::calibration();
        let sms = |sets: &[&str]| {
            let (c, w) = crate::workload::ops::tests::gpt(sets);
            let ab = AlphaBeta::new(&c, &cal);
            Staging::new(&w, &w.layout, &c, &cal, &ab).dp_comm_sms()
        };
        assert_eq!(sms(&[]), 4, "TP8 on two nodes: DP2 over InfiniBand");
        assert_eq!(sms(&["topology.nodes=1"]), 0);
        let in_node = sms(&["topology.nodes=1", "workload.parallelism.tp=1"]);
        assert!(
            (4..=32).contains(&in_node) && in_node > 4,
            "NVLink ring: {in_node}"
        );
    }

    /// ZeRO-1 shards the master copy and both moments over data parallelism: FP32 everything
    /// is 4 + 2 x 4 bytes per parameter per DP rank, Apex's BF16-state optimizer without a master
    /// copy (`master: none`) 2 x 2; weights and gradients stay whole.
    #[test]
    fn optimizer_state_bytes_follow_the_master_copy_and_moment_dtypes() {
        let cal = crate::builtin::calibration();
        let mem = |sets: &[&str]| {
            let mut all = vec!["workload.parallelism.zero=1", "workload.parallelism.tp=1"];
            all.extend_from_slice(sets);
            let (c, w) = crate::workload::ops::tests::gpt(&all);
            let ab = AlphaBeta::new(&c, &cal);
            let dp = w.layout.dp as f64;
            let st = Staging::new(&w, &w.layout, &c, &cal, &ab);
            let (weights, grads, optimizer) = st.static_memory((1e9, 0.0));
            (weights / 1e9, grads / 1e9, optimizer / 1e9 * dp)
        };
        assert_eq!(mem(&[]), (2.0, 4.0, 12.0));
        let bf16 = mem(&[
            "workload.training.precision.master=none",
            "workload.training.precision.optimizer_states=bf16",
            "workload.training.precision.grads=bf16",
        ]);
        assert_eq!(bf16, (2.0, 2.0, 4.0));
        let remainders = mem(&["workload.training.precision.master=bf16"]);
        assert_eq!(remainders.2, 10.0);
    }

    /// The plain scan over every cut point: the oracle for [`partition`].
    fn partition_reference(costs: &[f64], k: usize) -> Vec<(usize, usize)> {
        let n = costs.len();
        assert!(k >= 1 && k <= n, "cannot cut {n} items into {k} runs");
        let mut prefix = vec![0.0; n + 1];
        for i in 0..n {
            prefix[i + 1] = prefix[i] + costs[i];
        }
        // best[j][i]: minimal max over the first i items cut into j runs; cut[j][i]: last cut point.
        let mut best = vec![vec![f64::INFINITY; n + 1]; k + 1];
        let mut cut = vec![vec![0usize; n + 1]; k + 1];
        best[0][0] = 0.0;
        for j in 1..=k {
            for i in j..=n {
                for c in (j - 1)..i {
                    let v = best[j - 1][c].max(prefix[i] - prefix[c]);
                    if v < best[j][i] {
                        best[j][i] = v;
                        cut[j][i] = c;
                    }
                }
            }
        }
        let mut runs = Vec::with_capacity(k);
        let mut i = n;
        for j in (1..=k).rev() {
            let c = cut[j][i];
            runs.push((c, i));
            i = c;
        }
        runs.reverse();
        runs
    }

    /// The bisection finds exactly the cuts the plain scan finds, ties included (costs from a
    /// few values make many optimal cuts; zero costs make flat stretches).
    #[test]
    fn partition_matches_the_plain_scan() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for case in 0..3000 {
            let n = rng.random_range(1..48usize);
            let k = rng.random_range(1..=n);
            let costs: Vec<f64> = (0..n)
                .map(|_| match case % 3 {
                    0 => [0.0, 0.5, 1.0, 2.0, 3.0][rng.random_range(0..5usize)],
                    1 => rng.random_range(0.0..10.0f64),
                    _ => [1.0, 1.0, 4.0][rng.random_range(0..3usize)] * 1e-3,
                })
                .collect();
            assert_eq!(
                partition(&costs, k),
                partition_reference(&costs, k),
                "case {case}: {costs:?} into {k}"
            );
        }
    }

    #[test]
    fn partition_is_optimal_on_small_cases() {
        let runs = partition(&[1.0, 1.0, 1.0, 1.0], 2);
        assert_eq!(runs, vec![(0, 2), (2, 4)]);
        let runs = partition(&[5.0, 1.0, 1.0, 1.0, 1.0, 1.0], 2);
        assert_eq!(runs, vec![(0, 1), (1, 6)]);
        // Every run non-empty and contiguous.
        let runs = partition(&[1.0; 7], 7);
        assert!(runs.iter().all(|(a, b)| b - a == 1));
    }
}

#[cfg(test)]
mod trace_tests {
    use super::*;
    use crate::config::{Override, Source};
    use crate::pipeline::{load, DEFAULT_TOPOLOGY, DEFAULT_WORKLOAD};

    /// The default DeepSeek-V3 cluster and one MoE layer's work (forward, backward, weights).
    fn ds_moe_layer() -> (Cluster, ChunkWork) {
        let t = Source::embedded(DEFAULT_TOPOLOGY.0, DEFAULT_TOPOLOGY.1);
        let w = Source::embedded(DEFAULT_WORKLOAD.0, DEFAULT_WORKLOAD.1);
        let (cluster, wl) = load(&t, &w, &[] as &[Override]).unwrap();
        let ex = Expander {
            cal: crate::builtin::calibration_ref(),
            model: &wl.model,
            layout: &wl.layout,
            precision: &wl.precision,
            recompute: wl.recompute,
            loss: wl.loss,
            gpus_per_node: 8,
        };
        let work = ex.block(LayerKind::Moe).flatten();
        (cluster, work)
    }

    /// The trace's compute-stream kernels of one layer pair: (phase, stream, kernel, µs per layer).
    fn trace_rows() -> Vec<(String, String, String, f64)> {
        let text = include_str!("../../tests/reference/deepseek-v3-h800-kernels.csv");
        let mut r = csv::Reader::from_reader(text.as_bytes());
        r.records()
            .map(|rec| rec.expect("trace CSV parses"))
            .filter(|rec| rec[2].starts_with("compute"))
            .map(|rec| {
                (
                    rec[0].to_string(),
                    rec[1].to_string(),
                    rec[3].to_string(),
                    rec[11].parse::<f64>().expect("total_us_per_layer"),
                )
            })
            .collect()
    }

    /// µs per layer pair of the trace's memory-bound kernels: everything on the compute streams
    /// but the GEMMs and the two flash-attention main kernels (194 kernels, 8,607 µs).
    fn trace_memory_us() -> f64 {
        let is_gemm = |k: &str| k.starts_with("deepgemm") || k.contains("xmma_gemm");
        let is_attn = |k: &str| {
            k.starts_with("flash::compute_attn_ws") || k.starts_with("flash::FlashAttnBwd (")
        };
        let measured: f64 = trace_rows()
            .iter()
            .filter(|r| !is_gemm(&r.2) && !is_attn(&r.2))
            .map(|r| r.3)
            .sum();
        assert!((measured - 8607.0).abs() < 1.0, "memory class {measured}");
        measured
    }

    /// `memory.elementwise_efficiency` is derived, not chosen: the trace's memory-bound kernels
    /// (everything on the compute streams but the GEMMs and the two flash-attention main
    /// kernels) take 8,607 µs per layer pair; the model's memory kernels of the same layer pair
    /// must take as long at the calibrated efficiency.
    #[test]
    fn elementwise_efficiency_from_the_trace() {
        let measured = trace_memory_us();
        let (cluster, work) = ds_moe_layer();
        let bytes: Vec<f64> = work
            .fwd
            .iter()
            .chain(&work.bwd)
            .chain(&work.wgrad)
            .filter_map(|k| match k.shape {
                KernelShape::Memory { bytes } => Some(bytes),
                _ => None,
            })
            .collect();
        let cal = crate::builtin::calibration();
        let floor = cal.memory.min_kernel_time.value.as_secs_f64() * 1e6;
        let bw = cluster.gpu.hbm_bandwidth.value.bytes_per_s;
        let at = |e: f64| -> f64 { bytes.iter().map(|b| (b / (bw * e) * 1e6).max(floor)).sum() };
        // Bisect for the efficiency that reproduces the trace (time falls as e rises).
        let (mut lo, mut hi) = (0.05, 1.0);
        for _ in 0..60 {
            let mid = 0.5 * (lo + hi);
            if at(mid) > measured {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let e = 0.5 * (lo + hi);
        let c = cal.memory.elementwise_efficiency.value;
        println!(
            "{} memory kernels, {:.1} MB per layer pair; trace {measured:.0} us gives e = {e:.4} (calibration {c})",
            bytes.len(),
            bytes.iter().sum::<f64>() / 1e6
        );
        assert!(
            (c / e - 1.0).abs() < 0.005,
            "calibration {c} vs derived {e:.4}"
        );
    }

    /// The model's memory-bound kernels of one layer pair, at STREAM bandwidth and their real
    /// bytes, against the trace's (everything on the compute streams but the GEMMs and the two
    /// flash-attention main kernels: 194 kernels, 8,607 µs). The model prices a subset of the
    /// trace's kernels at a bandwidth no elementwise kernel beats, so it may not take longer.
    #[test]
    fn memory_kernels_against_the_trace() {
        let measured = trace_memory_us();
        let (cluster, work) = ds_moe_layer();
        let cal = mechanisms();
        let km = KernelModel::new(&cluster.gpu, &cal);
        let mem: Vec<f64> = work
            .fwd
            .iter()
            .chain(&work.bwd)
            .chain(&work.wgrad)
            .filter(|k| matches!(k.shape, KernelShape::Memory { .. }))
            .map(|k| km.time(&k.shape, 112).as_secs_f64() * 1e6)
            .collect();
        let model: f64 = mem.iter().sum();
        println!(
            "{} memory kernels take {model:.0} us against the trace's 194 in {measured:.0} us ({:+.1}%)",
            mem.len(),
            (model / measured - 1.0) * 100.0
        );
        assert!(model <= measured, "{model} > {measured}");
    }

    /// The calibration with both mechanisms in place of the two trace fits: memory kernels at
    /// STREAM bandwidth, one launch gap per kernel.
    fn mechanisms() -> Calibration {
        let mut cal = crate::builtin::calibration();
        cal.memory.elementwise.value = crate::hw::calibration::ElementwisePricing::Stream;
        cal.streams.gaps.value = crate::hw::calibration::GapModel::LaunchGap;
        cal
    }

    /// One DeepSeek-V3 MoE layer (4096-token micro-batch, EP64, 112 compute SMs) against the
    /// H800 profile trace, pass by pass. Kernel time per pass against the trace's compute-stream
    /// kernel totals (reference §6.2: F 8,974, B 14,647, W 8,766 µs), each within 15%; the
    /// stream time with its gaps against the trace's wall span, 129.0 ms for four layer pairs
    /// (§6.1), within 10%. Checked with the shipped calibration and with both mechanisms; the
    /// tolerances were set before the first run with the mechanisms.
    #[test]
    fn moe_layer_pair_against_the_trace() {
        let rows = trace_rows();
        let trace = |pass: &str| -> f64 {
            rows.iter()
                .filter(|r| r.0.ends_with(&format!("({pass})")))
                .map(|r| r.3)
                .sum()
        };
        let (tf, tb, tw) = (trace("F"), trace("B"), trace("W"));
        for (got, want) in [(tf, 8974.0), (tb, 14647.0), (tw, 8766.0)] {
            assert!((got - want).abs() < 2.0, "trace pass total {got} vs {want}");
        }
        let (cluster, work) = ds_moe_layer();
        for (label, cal) in [
            ("shipped", crate::builtin::calibration()),
            ("mechanisms", mechanisms()),
        ] {
            let km = KernelModel::new(&cluster.gpu, &cal);
            let ab = AlphaBeta::new(&cluster, &cal);
            let c = cost(&work, &km, 112, &ab as &dyn CommCost);
            let kernel_us = |ks: &[Kernel]| -> f64 {
                ks.iter()
                    .map(|k| km.time(&k.shape, 112 - k.sm_margin).as_secs_f64() * 1e6)
                    .sum()
            };
            let mut worst = 0.0f64;
            for (pass, ks, want) in [
                ("fwd", &work.fwd, tf),
                ("bwd", &work.bwd, tb),
                ("wgrad", &work.wgrad, tw),
            ] {
                let got = kernel_us(ks);
                let err = got / want - 1.0;
                println!(
                    "{label}: {pass}: {} kernels, {got:.0} us against the trace's {want:.0} us: {:+.1}%",
                    ks.len(),
                    err * 100.0
                );
                worst = worst.max(err.abs());
            }
            let total = c.compute() * 1e6;
            let span = 129_000.0 / 4.0;
            let err = total / span - 1.0;
            println!(
                "{label}: F+B+W with gaps {total:.0} us against the trace's {span:.0} us span per layer pair: {:+.1}%",
                err * 100.0
            );
            assert!(
                worst < 0.15,
                "{label}: a pass is off by {:.1}%",
                worst * 100.0
            );
            assert!(
                err.abs() < 0.10,
                "{label}: layer pair off by {:+.1}%",
                err * 100.0
            );
        }
    }
}
