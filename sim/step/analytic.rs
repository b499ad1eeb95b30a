//! The analytic engine: a closed-form estimate of one training step.
//!
//! Per-kernel timing from the tile/wave model ([`KernelModel`]), communication from the
//! bandwidth + latency model ([`AlphaBeta`]), overlap by schedule (DualPipe overlaps one chunk's
//! communication with another's compute; other schedules expose expert and tensor-parallel
//! traffic), the pipeline bubble from the schedule's formula, data-parallel gradient
//! synchronization and the optimizer step. Fast enough for sweeps.

use super::{Blocks, Breakdown, ChunkCost, Memory, Staging, StepResult};
use crate::domain::{GradReduce, MoeOverlap, Schedule};
use crate::hw::Calibration;
use crate::net::AlphaBeta;
use crate::topo::Cluster;
use crate::workload::layout::Layout;
use crate::workload::schedule;
use crate::workload::Workload;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Exposed part of `n` equal transfers totalling `total` that become ready (or are needed) one
/// by one, `window / n` apart, beside compute on their own stream: the last one, or all that the
/// compute cannot cover.
pub(crate) fn hidden_behind(total: f64, n: f64, window: f64) -> f64 {
    if total <= 0.0 || n <= 0.0 {
        return 0.0;
    }
    (total / n).max(total - window * (n - 1.0) / n)
}

/// Communication a DualPipe F&B pair leaves exposed per micro-batch of chunk `c`: the
/// forward's communication hides behind the paired backward's compute (input and weight
/// gradients) and the backward's behind the paired forward's (TR §3.2.1, Figure 4); each side
/// exposes what its partner cannot cover.
pub(crate) fn paired_exposure(c: &ChunkCost) -> f64 {
    let total = c.comm_total();
    let f_comm = c.comm_fwd.min(total);
    (f_comm - (c.bwd + c.wgrad)).max(0.0) + (total - f_comm - c.fwd).max(0.0)
}

/// Communication a two-micro-batch pair leaves exposed per half of chunk `c`: each half's
/// forward communication hides behind the other half's forward compute, and its backward
/// communication behind the other's backward (input and weight gradients).
pub(crate) fn twin_exposure(c: &ChunkCost) -> f64 {
    let total = c.comm_total();
    let f_comm = c.comm_fwd.min(total);
    (f_comm - c.fwd).max(0.0) + (total - f_comm - c.bwd - c.wgrad).max(0.0)
}

/// Estimates one step of `w` at `layout` on `cluster`.
pub fn estimate(w: &Workload, layout: &Layout, cluster: &Cluster, cal: &Calibration) -> StepResult {
    let ab = AlphaBeta::new(cluster, cal);
    staged(&Staging::new(w, layout, cluster, cal, &ab))
}

/// The blocks of `w` at `layout`, priced as this engine prices them: shared by every layout
/// with the same [`Blocks::key`] (see [`estimate_on`]).
pub fn blocks(w: &Workload, layout: &Layout, cluster: &Cluster, cal: &Calibration) -> Blocks {
    Blocks::new(w, layout, cluster, cal, &AlphaBeta::new(cluster, cal))
}

/// [`estimate`] on blocks already priced by [`blocks`] for a layout with the same key: the same
/// result, without pricing the blocks again (a layout search prices many layouts per key).
pub fn estimate_on(
    w: &Workload,
    layout: &Layout,
    cluster: &Cluster,
    cal: &Calibration,
    blocks: &Blocks,
) -> StepResult {
    let ab = AlphaBeta::new(cluster, cal);
    staged(&Staging::with_blocks(
        w,
        layout,
        cluster,
        cal,
        &ab,
        Cow::Borrowed(blocks),
    ))
}

fn staged(st: &Staging) -> StepResult {
    let layout = st.layout;
    let chunks = &st.chunks;
    // DualPipe's F&B pairs, and Megatron-Core's combined 1F1B pairing its steady state alike.
    let overlapped = matches!(layout.schedule, Schedule::Dualpipe | Schedule::Dualpipev)
        || layout.moe_overlap == MoeOverlap::Combined1f1b;
    // Two-micro-batch overlap: each micro-batch here is a half, and the pipeline moves pairs.
    let twin = layout.moe_overlap == MoeOverlap::TwoMicroBatch;
    // Time of one micro-batch through a chunk (forward + backward), and the exposed part by kind.
    let pair = |c: &ChunkCost| -> (f64, BTreeMap<String, f64>) {
        let mut exposed = BTreeMap::new();
        if overlapped || twin {
            let total = c.comm_total();
            let over = if twin {
                twin_exposure(c)
            } else {
                paired_exposure(c)
            };
            for (k, v) in &c.comm {
                exposed.insert(k.clone(), if total > 0.0 { over * v / total } else { 0.0 });
            }
            (c.compute() + over, exposed)
        } else {
            let mut t = c.compute();
            for (k, v) in &c.comm {
                let e = if k == "cp" {
                    (v - c.attention).max(0.0)
                } else {
                    v - c.hidden.get(k).copied().unwrap_or(0.0)
                };
                exposed.insert(k.clone(), e);
                t += e;
            }
            (t, exposed)
        }
    };

    // Each chunk's pair once; the ranks and the bottleneck read them.
    let pairs: Vec<(f64, BTreeMap<String, f64>)> = chunks.iter().map(pair).collect();

    // The slowest pipeline rank sets the pace.
    let mut bottleneck = (0u64, f64::NEG_INFINITY);
    for d in 0..layout.pp {
        let t: f64 = layout
            .device_chunks(d)
            .iter()
            .map(|&(c, m)| m as f64 * pairs[c as usize].0)
            .sum();
        if t > bottleneck.1 {
            bottleneck = (d, t);
        }
    }
    let (rank, steady) = bottleneck;
    let mine = layout.device_chunks(rank);
    let mbs: f64 = mine.iter().map(|&(_, m)| m as f64).sum();
    let mut bd = Breakdown::default();
    let mut avg = ChunkCost::default();
    let mut avg_pair = 0.0;
    for &(c, m) in &mine {
        let cc = &chunks[c as usize];
        let (p, exposed) = &pairs[c as usize];
        let m = m as f64;
        bd.forward += m * cc.fwd;
        bd.backward += m * cc.bwd;
        bd.weight_grad += m * cc.wgrad;
        for (k, v) in exposed {
            *bd.exposed_comm_by_kind.entry(k.clone()).or_default() += m * v;
        }
        avg.fwd += m * cc.fwd / mbs;
        avg.bwd += m * cc.bwd / mbs;
        avg.wgrad += m * cc.wgrad / mbs;
        avg_pair += m * p / mbs;
    }
    bd.compute = bd.forward + bd.backward + bd.weight_grad;
    // The pipeline fills and drains a pair of halves at a time.
    bd.bubble = schedule::bubble(
        layout.schedule,
        layout.pp,
        avg.fwd,
        avg.bwd,
        avg.wgrad,
        avg_pair,
    ) * if twin { 2.0 } else { 1.0 };

    // Pipeline fill and drain: one activation send and one gradient send per stage boundary,
    // each carrying the MTP hidden states that travel past their module with the main ones.
    let pp_exposed: f64 = (1..layout.pp)
        .map(|s| {
            let (mut pf, mut pb) = st
                .ex
                .p2p(layout.stages_cross_nodes(s - 1, s, st.gpus_per_node));
            let streams = st.p2p_streams(s as usize - 1) as f64;
            for c in [&mut pf, &mut pb] {
                if let crate::net::CommOp::P2p { bytes, .. } = &mut c.op {
                    *bytes *= streams;
                }
            }
            st.ab.time(&pf.op) + st.ab.time(&pb.op)
        })
        .sum();
    *bd.exposed_comm_by_kind.entry("pp".into()).or_default() += pp_exposed;

    // Data-parallel sync, one bucket per block. Gradient buckets leave as each block's weight
    // gradients finish: once per step beside the last micro-batch's backward, or after every
    // micro-batch with sharded gradients (ZeRO-2/3). Updated weights are gathered after the
    // optimizer (ZeRO-1/2), or block by block before the first forwards (overlapped); ZeRO-3
    // keeps them sharded.
    let params = st.rank_params(rank);
    let (rs, ag) = st.grad_sync(params);
    let rs = rs + st.grad_prep_time(params);
    let chunk_blocks = |c: usize| st.runs[c].count() as f64;
    // Summed over the chunks this rank holds: once (one micro-batch through each), or over the
    // step's passes (each chunk runs its own micro-batches).
    let sum = |f: &dyn Fn(usize) -> f64, passes: bool| -> f64 {
        mine.iter()
            .map(|&(c, m)| (if passes { m as f64 } else { 1.0 }) * f(c as usize))
            .sum()
    };
    let fwd = |c: usize| chunks[c].fwd;
    let bwd = |c: usize| chunks[c].bwd + chunks[c].wgrad;
    let (blocks, backward) = (sum(&chunk_blocks, false), sum(&bwd, false));
    let (pass_blocks, pass_fwd, pass_bwd) =
        (sum(&chunk_blocks, true), sum(&fwd, true), sum(&bwd, true));
    // Sharded gradients: each pass reduces its own chunk's.
    let sharded = layout.state_zero() >= 2;
    let rs_total = if sharded {
        sum(&|c| st.grad_sync(st.chunk_params(c)).0, true)
    } else {
        rs
    };
    let rs = if layout.grad_reduce == GradReduce::AfterBackward {
        // Not overlapped: every bucket after its backward, compute waiting.
        rs_total
    } else if sharded {
        hidden_behind(rs_total, pass_blocks, pass_bwd)
    } else {
        hidden_behind(rs, blocks, backward)
    };
    let (ag, ag_hidden) = match layout.state_zero() {
        1 | 2 if layout.overlaps_param_gather() => {
            let e = hidden_behind(ag, blocks, sum(&fwd, false));
            (e, ag - e)
        }
        1 | 2 => (ag, 0.0),
        _ => (0.0, 0.0),
    };
    // ZeRO-3 gathers every block's weights before its forward and again before its backward,
    // each prefetched beside the block before it.
    let g3 = if layout.state_zero() >= 3 {
        sum(&|c| st.param_gather(st.chunk_params(c)), true)
    } else {
        0.0
    };
    let g3_f = hidden_behind(g3, pass_blocks, pass_fwd);
    let g3_b = hidden_behind(g3, pass_blocks, pass_bwd);
    *bd.exposed_comm_by_kind.entry("dp".into()).or_default() += rs + ag + g3_f + g3_b;
    // While a data-parallel collective hides behind compute it holds its NCCL channels' SMs:
    // the compute beside it does that share of its work later.
    let held = f64::from(st.dp_comm_sms()) / f64::from(st.sms.max(1));
    let slow_b = (rs_total - rs + g3 - g3_b) * held;
    let slow_f = (ag_hidden + g3 - g3_f) * held;
    bd.backward += slow_b;
    bd.forward += slow_f;
    bd.compute += slow_b + slow_f;
    bd.exposed_comm = bd.exposed_comm_by_kind.values().sum();
    bd.optimizer = st.optimizer_time(params);

    // Memory: the fullest rank (the ends of a pipeline hold fewer layers).
    let mut inflight = if twin {
        // Pairs in flight, each two halves.
        2.0 * schedule::activations_in_flight(
            layout.schedule,
            layout.pp,
            layout.vpp,
            layout.micro_batches / 2,
        )
    } else {
        schedule::activations_in_flight(
            layout.schedule,
            layout.pp,
            layout.vpp,
            layout.micro_batches,
        )
    };
    // Combined 1F1B warms up one chunk forward more.
    if layout.moe_overlap == MoeOverlap::Combined1f1b {
        let chunks_per_stage = layout.chunks() as f64 / layout.pp as f64;
        inflight = (inflight + 1.0 / chunks_per_stage).min(layout.micro_batches as f64);
    }
    // `inflight` counts pipeline stages' worth (a stage is 1/pp of the layers): a rank's
    // largest chunk times chunks/pp (DualPipe's chunks are whole stages; DualPipeV's halves and
    // interleaving's 1/vpp are made whole again). The largest, not the mean: which chunks are
    // in flight at the peak is the schedule's detail (the DES follows it), and a plan must not
    // pick a layout that does not fit.
    // The MTP modules and the loss sit at the pipeline's end, where each micro-batch's
    // backward follows its forward at once: one micro-batch of theirs is held (GPipe: all).
    let per_stage = layout.chunks() as f64 / layout.pp as f64;
    let ends_held = if layout.schedule == Schedule::Gpipe {
        layout.micro_batches as f64
    } else if twin {
        2.0
    } else {
        1.0
    };
    let mut mem = Memory::default();
    for d in 0..layout.pp {
        let ch = layout.device_chunks(d);
        let split: Vec<(f64, f64)> = ch
            .iter()
            .map(|&(c, _)| st.chunk_activations_split(c as usize))
            .collect();
        let blocks = split.iter().map(|a| a.0).fold(0.0, f64::max) * per_stage;
        let ends: f64 = split.iter().map(|a| a.1).sum();
        let m = st.rank_memory(d, blocks * inflight + ends * ends_held);
        if m.total > mem.total {
            mem = m;
        }
    }
    let step_time_s =
        steady + bd.bubble + pp_exposed + rs + ag + g3_f + g3_b + slow_b + slow_f + bd.optimizer;
    StepResult {
        step_time_s,
        breakdown: bd,
        memory: mem,
        chunks: chunks.clone(),
        bottleneck_rank: rank,
        kernels_per_step: st.kernels_per_step(),
        events: 0,
        beyond_horizon: step_time_s > crate::units::HORIZON_S,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DualPipe pair hides each direction's communication behind the other's compute only:
    /// 5 s of forward communication beside 3 s of backward compute exposes 2 s, where comparing
    /// the chunk's totals (6 s of communication against 5 s of compute) would expose 1 s.
    #[test]
    fn dualpipe_hides_each_direction_behind_the_other() {
        let c = |fwd: f64, bwd: f64, wgrad: f64, f_comm: f64, b_comm: f64| ChunkCost {
            fwd,
            bwd,
            wgrad,
            comm: [("ep".to_string(), f_comm + b_comm)].into_iter().collect(),
            comm_fwd: f_comm,
            ..Default::default()
        };
        assert_eq!(paired_exposure(&c(2.0, 2.0, 1.0, 5.0, 1.0)), 2.0);
        // The backward's communication against the forward's compute.
        assert_eq!(paired_exposure(&c(1.0, 4.0, 0.0, 1.0, 3.0)), 2.0);
        // Both covered: nothing exposed, and both short: the sum of the two excesses.
        assert_eq!(paired_exposure(&c(2.0, 3.0, 1.0, 2.0, 2.0)), 0.0);
        assert_eq!(paired_exposure(&c(1.0, 1.0, 0.0, 3.0, 4.0)), 5.0);
    }

    /// A pipeline send past an MTP module carries the main and the MTP hidden states: with the
    /// MTP module before the boundary ("Etttt,m|L") the fill and drain's sends move twice the
    /// bytes of the same split with MTP after it ("Etttt|mL").
    #[test]
    fn sends_past_an_mtp_module_carry_its_stream() {
        let cal = crate::builtin::calibration();
        let pp = |layout: &str| {
            let l = format!("workload.parallelism.pipeline_layout=\"{layout}\"");
            let (c, w) =
                crate::workload::ops::tests::moe(&["workload.parallelism.schedule=1f1b", &l])
                    .unwrap();
            let ab = AlphaBeta::new(&c, &cal);
            let st = Staging::new(&w, &w.layout, &c, &cal, &ab);
            let (pf, _) = st
                .ex
                .p2p(w.layout.stages_cross_nodes(0, 1, st.gpus_per_node));
            let one = ab.time(&pf.op);
            (
                estimate(&w, &w.layout, &c, &cal)
                    .breakdown
                    .exposed_comm_by_kind["pp"],
                one,
            )
        };
        let (before, one) = pp("Etttt,m|L");
        let (after, _) = pp("Etttt|mL");
        // The fill's forward send and the drain's backward send each gain one stream's bytes.
        assert!(before > after, "{before} vs {after}");
        assert!(before - after < 2.0 * one, "{before} {after} {one}");
    }

    /// Buckets that fit under their compute expose only the last; comm-bound ones expose all
    /// the compute cannot cover (8 buckets of 150 beside 8 blocks of 100: 150 + 7·50 = 500).
    #[test]
    fn overlapped_buckets_expose_the_last_or_the_excess() {
        assert_eq!(hidden_behind(8.0 * 50.0, 8.0, 800.0), 50.0);
        assert_eq!(hidden_behind(8.0 * 150.0, 8.0, 800.0), 500.0);
        assert_eq!(hidden_behind(300.0, 1.0, 1e9), 300.0);
        assert_eq!(hidden_behind(0.0, 8.0, 800.0), 0.0);
    }
}
