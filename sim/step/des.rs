//! The discrete-event engine: the whole step as tasks on GPU streams, run event by event.
//!
//! Lays the staged step (`step::Staging`: chunks, blocks, kernels, communication) out as a
//! task graph for the workload's pipeline schedule, runs it (`exec`), and reads the step time,
//! where each GPU's time went, and peak activation memory off the timeline.
//!
//! By default one data-parallel replica is simulated (one GPU per pipeline stage): with balanced
//! routing every GPU of a stage does the same work at the same time, so each collective's
//! members arrive together and one replica stands for all (a test checks this against the full
//! simulation). `full` simulates every GPU with collective membership.

use super::{Breakdown, LinkInfo, Memory, Staging, StepResult, TimedTask, Timeline};
use crate::domain::{GradReduce, MoeDispatch, MoeOverlap, RoutingDistribution};
use crate::exec::{self, Outcome};
use crate::hw::Calibration;
use crate::hw::KernelShape;
use crate::net::{CommCost, CommOp, FlowModel, Placement};
use crate::topo::Cluster;
use crate::units::Time;
use crate::workload::layout::Layout;
use crate::workload::model::LayerKind;
use crate::workload::ops::{BlockWork, CommKind, Kernel, Seg};
use crate::workload::taskgraph::{
    self, BlockPlan, ChunkPlan, Group, KernelDetail, Pass, SegDetail, SegKind, SegPlan, StepPlan,
    TaskGraph,
};
use crate::workload::{schedule, Workload};
use std::collections::BTreeMap;

fn ps(s: f64) -> u64 {
    Time::from_secs_f64(s).ps
}

fn group(kind: CommKind, l: &Layout) -> Group {
    let g = |size: u64, stride: u64| Group {
        size: size as u32,
        stride: stride as u32,
    };
    match kind {
        CommKind::Ep => g(l.ep, 1),
        CommKind::Tp => g(l.tp, 1),
        CommKind::Cp => g(l.cp, l.tp),
        CommKind::Pp | CommKind::Dp => g(1, 1),
    }
}

/// Whether each kind of traffic (indexed by `CommKind`) crosses nodes, through the GPU's NIC.
fn nic_traffic(l: &Layout, gpn: u64, moe: bool) -> [bool; 5] {
    let across = |s: Placement| s.size > 1 && s.nodes > 1;
    let mut nic = [false; 5];
    nic[CommKind::Ep as usize] = across(l.ep_span(gpn));
    nic[CommKind::Tp as usize] = across(l.tp_span(gpn));
    nic[CommKind::Cp as usize] = across(l.cp_span(gpn));
    nic[CommKind::Pp as usize] = l.pp > 1 && l.stages_cross_nodes(0, 1, gpn);
    nic[CommKind::Dp as usize] = across(Placement::strided(l.dp * l.cp, l.tp, gpn))
        || (moe && across(Placement::strided(l.expert_dp(), l.ep, gpn)));
    nic
}

/// HBM bytes a kernel moves at the least: a memory-bound kernel's traffic, a GEMM's operands
/// read once and its BF16 output written once, an attention core's Q, K, V and output.
fn kernel_bytes(shape: &KernelShape) -> f64 {
    match *shape {
        KernelShape::Memory { bytes } => bytes,
        KernelShape::Gemm(g) => {
            let e = g.dtype.bytes();
            (g.groups * (g.m * g.k + g.k * g.n)) as f64 * e + (g.groups * g.m * g.n) as f64 * 2.0
        }
        KernelShape::Attention(a) => {
            let rows = (a.batch * a.heads) as f64;
            rows * ((a.seq_q + a.seq_kv) * a.d_qk + (a.seq_kv + a.seq_q) * a.d_v) as f64 * 2.0
        }
    }
}

/// A compute segment's name: the distinct leading words of its kernels' names, in order.
fn seg_name(ks: &[Kernel]) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for k in ks {
        let head = k.name.split('.').next().unwrap_or(&k.name);
        if !parts.contains(&head) {
            parts.push(head);
        }
    }
    if parts.len() > 3 {
        format!("{} +{}", parts[..3].join(" + "), parts.len() - 3)
    } else {
        parts.join(" + ")
    }
}

fn price(
    st: &Staging,
    segs: &[Seg],
    layer: Option<u32>,
    details: &mut Vec<SegDetail>,
) -> Vec<SegPlan> {
    segs.iter()
        .map(|s| {
            let detail = details.len() as u32;
            match s {
                Seg::Compute(ks) => {
                    let t = |k: &Kernel| {
                        st.km
                            .busy(&k.shape, st.sms.saturating_sub(k.sm_margin).max(1))
                            .ps
                    };
                    details.push(SegDetail {
                        name: seg_name(ks),
                        layer,
                        kernels: ks
                            .iter()
                            .map(|k| KernelDetail {
                                name: k.name.clone(),
                                ps: t(k),
                                flops: k.shape.flops(),
                                bytes: kernel_bytes(&k.shape),
                            })
                            .collect(),
                        bytes: 0.0,
                        sms: st.sms,
                        links: Vec::new(),
                        ops: Vec::new(),
                    });
                    SegPlan {
                        kind: SegKind::Compute,
                        ps: ks.iter().map(t).sum(),
                        load_ps: ks.iter().filter(|k| scales_with_load(&k.name)).map(t).sum(),
                        detail,
                    }
                }
                Seg::Comm { comm, parallel } => {
                    details.push(SegDetail {
                        name: comm.name.clone(),
                        layer,
                        kernels: Vec::new(),
                        bytes: comm.op.bytes(),
                        sms: st.layout.comm_sms,
                        links: st.ab.links(&comm.op),
                        ops: vec![comm.op.clone()],
                    });
                    SegPlan {
                        kind: SegKind::Comm {
                            kind: comm.kind,
                            parallel: *parallel,
                            group: group(comm.kind, st.layout),
                        },
                        ps: ps(st.ab.time(&comm.op)),
                        load_ps: if comm.kind == CommKind::Ep {
                            ps(st.ab.time(&comm.op))
                        } else {
                            0
                        },
                        detail,
                    }
                }
            }
        })
        .collect()
}

/// Kernels whose work follows the routed tokens a GPU receives.
fn scales_with_load(kernel: &str) -> bool {
    kernel.starts_with("experts.")
        || kernel.starts_with("experts_swiglu")
        || kernel.starts_with("moe_permute")
        || kernel.starts_with("moe_unpermute")
}

/// Routed-expert load per GPU of an EP group, relative to balanced, for each block of the model:
/// expert popularity ~ Dirichlet(alpha) per MoE layer, drawn from the workload's seed. With a
/// capacity (`dispatch`), an expert takes at most that multiple of its balanced load and drops
/// the rest; padded to it, every expert computes exactly its capacity (priced in the kernels),
/// whatever the draw.
pub fn expert_load(w: &Workload, ep: u64, dispatch: MoeDispatch) -> Vec<Option<Vec<f32>>> {
    use rand::SeedableRng;
    use statrs::distribution::Gamma;
    let r = &w.routing;
    let Some(moe) = w.model.moe else {
        return vec![None; w.model.layers as usize];
    };
    if r.distribution == RoutingDistribution::Balanced || dispatch.pad_to_capacity {
        return vec![None; w.model.layers as usize];
    }
    let cap = dispatch.capacity.map_or(f64::INFINITY, |c| c.0);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(r.seed);
    // Below a concentration of 1 a Gamma(alpha) draw underflows to zero (every weight at 0 for
    // a tiny alpha, and the tokens lost): draw in log space instead, as Gamma(alpha + 1) ×
    // U^(1/alpha), and weigh against the largest, so that one weight is always 1.
    let small = r.alpha < 1.0;
    let gamma = Gamma::new(if small { r.alpha + 1.0 } else { r.alpha }, 1.0)
        .expect("alpha validated positive");
    let per_gpu = (moe.routed / ep) as usize;
    w.model
        .layer_kinds()
        .into_iter()
        .map(|k| {
            if k != LayerKind::Moe {
                return None;
            }
            let logs: Vec<f64> = (0..moe.routed)
                .map(|_| {
                    let g: f64 = rand::distr::Distribution::sample(&gamma, &mut rng);
                    if small {
                        // U in (0, 1].
                        let u: f64 = rand::distr::Distribution::<f64>::sample(
                            &rand::distr::StandardUniform,
                            &mut rng,
                        );
                        let u = 1.0 - u;
                        g.ln() + u.ln() / r.alpha
                    } else {
                        g.ln()
                    }
                })
                .collect();
            let top = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let weights: Vec<f64> = logs.iter().map(|l| (l - top).exp()).collect();
            let total: f64 = weights.iter().sum();
            // Each expert's load against balanced, capped at its capacity.
            let balanced = total / moe.routed as f64;
            Some(
                weights
                    .chunks(per_gpu)
                    .map(|c| {
                        if cap.is_infinite() {
                            return (c.iter().sum::<f64>() / total * ep as f64) as f32;
                        }
                        let kept: f64 = c.iter().map(|&x| (x / balanced).min(cap)).sum();
                        (kept / per_gpu as f64) as f32
                    })
                    .collect(),
            )
        })
        .collect()
}

/// A block's timed passes. Under ZeRO-3 its forward and its backward each start with an
/// all-gather of its sharded weights, issued beside the compute before it (prefetch).
fn block_plan(
    st: &Staging,
    b: &BlockWork,
    params: (f64, f64),
    layer: Option<u32>,
    details: &mut Vec<SegDetail>,
) -> BlockPlan {
    let mut p = BlockPlan {
        fwd: price(st, &b.fwd, layer, details),
        bwd: price(st, &b.bwd, layer, details),
        wgrad: price(st, &b.wgrad, layer, details),
        // Its gradient bucket, issued after its weight gradients (and, accumulated over the
        // step, prepared for the reduction just before it).
        grad_sync_ps: ps(st.grad_sync(params).0 + st.grad_prep_time(params)),
        step_gather_ps: 0,
        sync_detail: sync_details(st, params, layer, details),
    };
    // ZeRO-1/2 with overlapped parameter gathers: its updated weights, before its first forward.
    if (1..=2).contains(&st.layout.state_zero()) && st.layout.overlaps_param_gather() {
        p.step_gather_ps = ps(st.grad_sync(params).1);
    }
    let gather = st.param_gather(params);
    if gather > 0.0 {
        let ops = st.param_gather_ops(params);
        details.push(SegDetail {
            name: "dp.param_allgather".into(),
            layer,
            kernels: Vec::new(),
            bytes: ops.iter().map(CommOp::bytes).sum(),
            sms: st.dp_comm_sms(),
            links: Vec::new(),
            ops,
        });
        let seg = SegPlan {
            kind: SegKind::Comm {
                kind: CommKind::Dp,
                parallel: true,
                group: Group {
                    size: (st.layout.dp * st.layout.cp) as u32,
                    stride: st.layout.tp as u32,
                },
            },
            ps: ps(gather),
            load_ps: 0,
            detail: details.len() as u32 - 1,
        };
        p.fwd.insert(0, seg);
        p.bwd.insert(0, seg);
    }
    p
}

/// The [`SegDetail`] of transfers that run as one task (a pipeline send; the replicated and the
/// expert gradients' syncs): the bytes they move from this GPU's buffers, the links one instance
/// loads, and the SMs they hold.
fn ops_detail(
    st: &Staging,
    name: &str,
    ops: &[CommOp],
    layer: Option<u32>,
    sms: u32,
    details: &mut Vec<SegDetail>,
) -> u32 {
    let mut links: BTreeMap<u32, f64> = BTreeMap::new();
    for op in ops {
        for (l, b) in st.ab.links(op) {
            *links.entry(l).or_default() += b;
        }
    }
    details.push(SegDetail {
        name: name.into(),
        layer,
        kernels: Vec::new(),
        bytes: ops.iter().map(CommOp::bytes).fold(0.0, |a, b| a + b),
        sms,
        links: links.into_iter().collect(),
        ops: ops.to_vec(),
    });
    details.len() as u32 - 1
}

/// The gradient sync's and the weight gather's details for `params`.
fn sync_details(
    st: &Staging,
    params: (f64, f64),
    layer: Option<u32>,
    details: &mut Vec<SegDetail>,
) -> (u32, u32) {
    let (reduce, gather) = st.grad_sync_ops(params);
    let name = if st.layout.state_zero() == 0 {
        "dp.grad_allreduce"
    } else {
        "dp.grad_reduce_scatter"
    };
    (
        ops_detail(st, name, &reduce, layer, st.dp_comm_sms(), details),
        ops_detail(
            st,
            "dp.param_allgather",
            &gather,
            layer,
            st.dp_comm_sms(),
            details,
        ),
    )
}

/// A pipeline send from chunk `from` to chunk `to` (activations forward, gradients backward):
/// 0 where both run on one rank (no pipeline, or DualPipeV's turn), priced across nodes where
/// the two stages sit on different nodes for any micro-batch (DualPipe runs a chunk on two ranks).
fn p2p_comm(
    st: &Staging,
    from: usize,
    to: Option<usize>,
    forward: bool,
) -> Option<crate::workload::ops::Comm> {
    let l = st.layout;
    let to = to?;
    let m = l.micro_batches;
    let ranks = [0, m - 1].map(|mb| {
        let r = |c: usize| schedule::rank_of(l.schedule, l.pp, m, c as u32, mb as u32) as u64;
        (r(from), r(to))
    });
    if ranks.iter().all(|(a, b)| a == b) {
        return None;
    }
    let cross = ranks
        .iter()
        .any(|&(a, b)| l.stages_cross_nodes(a, b, st.gpus_per_node));
    let (pf, pb) = st.ex.p2p(cross);
    let mut c = if forward { pf } else { pb };
    if let CommOp::P2p { bytes, .. } = &mut c.op {
        *bytes *= st.p2p_streams(from.min(to)) as f64;
    }
    Some(c)
}

/// A chunk's passes need a task each (what the next chunk waits for): where its items have no
/// forward or no backward work (an empty chunk of a layout string, an embedding alone), an
/// empty compute segment stands in, passing the activations or gradients through.
fn pass_through(blocks: &mut Vec<BlockPlan>) {
    let nothing = SegPlan {
        kind: SegKind::Compute,
        ps: 0,
        load_ps: 0,
        detail: taskgraph::NO_DETAIL,
    };
    if blocks.is_empty() {
        blocks.push(BlockPlan::default());
    }
    // A prefetch beside the compute is no work of the pass's own.
    let idle = |segs: &[SegPlan]| {
        segs.iter()
            .all(|s| matches!(s.kind, SegKind::Comm { parallel: true, .. }))
    };
    if blocks.iter().all(|b| idle(&b.fwd)) {
        blocks[0].fwd.push(nothing);
    }
    if blocks.iter().all(|b| idle(&b.bwd)) {
        blocks[0].bwd.push(nothing);
    }
}

/// A pipeline send's time and detail: see [`p2p_comm`]; (0, no detail) where there is none.
fn p2p(
    st: &Staging,
    from: usize,
    to: Option<usize>,
    forward: bool,
    details: &mut Vec<SegDetail>,
) -> (u64, u32) {
    match p2p_comm(st, from, to, forward) {
        None => (0, taskgraph::NO_DETAIL),
        Some(c) => {
            let d = ops_detail(st, &c.name, std::slice::from_ref(&c.op), None, 0, details);
            (ps(st.ab.time(&c.op)), d)
        }
    }
}

/// The step as timed chunks, for `replicas` GPUs per stage.
pub fn step_plan(st: &Staging, replicas: u32) -> StepPlan {
    let l = st.layout;
    let n = st.runs.len();
    let mut chunks = Vec::with_capacity(n);
    let mut details = Vec::new();
    let details = &mut details;
    let [embedding, mtp, loss] = st.item_params();
    for (c, r) in st.runs.iter().enumerate() {
        let mut blocks = Vec::new();
        if r.embedding {
            blocks.push(block_plan(
                st,
                &st.blocks.embedding,
                embedding,
                None,
                details,
            ));
        }
        let (a, b) = r.blocks;
        for (pos, &k) in st.kinds[a..b].iter().enumerate() {
            let layer = Some((a + pos) as u32);
            blocks.push(block_plan(
                st,
                st.block_work_at(k, pos),
                st.block_params(k),
                layer,
                details,
            ));
        }
        for i in 0..r.mtp {
            // The first MTP module carries the chunk's copy of the embedding, if it keeps one.
            let params = if i == 0 && st.holds_embedding_copy(c) {
                (mtp.0 + embedding.0, mtp.1)
            } else {
                mtp
            };
            blocks.push(block_plan(st, &st.blocks.mtp, params, None, details));
        }
        if r.loss {
            blocks.push(block_plan(st, &st.blocks.loss, loss, None, details));
        }
        pass_through(&mut blocks);
        let fwd = p2p(st, c, (c + 1 < n).then_some(c + 1), true, details);
        let bwd = p2p(st, c, c.checked_sub(1), false, details);
        chunks.push(ChunkPlan {
            blocks,
            act_bytes: st.chunk_activations(c),
            p2p_fwd_ps: fwd.0,
            p2p_bwd_ps: bwd.0,
            p2p_detail: (fwd.1, bwd.1),
        });
    }
    let ranks = 0..l.pp;
    // Expert load per block; a single replica stands for its EP group's busiest GPU, which the
    // all-to-all makes everyone wait for.
    let per_block = expert_load(st.w, l.ep, l.moe_dispatch);
    let skewed = per_block.iter().any(Option::is_some);
    let load = if !skewed {
        Vec::new()
    } else {
        st.runs
            .iter()
            .map(|r| {
                let mut v: Vec<Vec<f32>> = Vec::new();
                if r.embedding {
                    v.push(Vec::new());
                }
                for l in &per_block[r.blocks.0..r.blocks.1] {
                    v.push(match l {
                        None => Vec::new(),
                        Some(g) if replicas == 1 => vec![g.iter().copied().fold(0.0, f32::max)],
                        Some(g) => g.clone(),
                    });
                }
                v
            })
            .collect()
    };
    StepPlan {
        schedule: l.schedule,
        pp: l.pp,
        vpp: l.vpp,
        micro_batches: l.micro_batches,
        chunks,
        optimizer_ps: ranks
            .clone()
            .map(|r| ps(st.optimizer_time(st.rank_params(r))))
            .collect(),
        // ZeRO-3 keeps its weights sharded (each block gathers them before use), and overlapped
        // gathers go block by block: only ZeRO-1/2 without overlap gathers after the optimizer.
        param_gather_detail: ranks
            .clone()
            .map(|r| {
                let gather = st.grad_sync_ops(st.rank_params(r)).1;
                ops_detail(
                    st,
                    "dp.param_allgather",
                    &gather,
                    None,
                    st.dp_comm_sms(),
                    details,
                )
            })
            .collect(),
        param_gather_ps: ranks
            .map(|r| {
                if (1..=2).contains(&l.state_zero()) && !l.overlaps_param_gather() {
                    ps(st.grad_sync(st.rank_params(r)).1)
                } else {
                    0
                }
            })
            .collect(),
        grad_sync_every_microbatch: l.state_zero() >= 2,
        grad_sync_after_backward: l.grad_reduce == GradReduce::AfterBackward,
        combined_1f1b: l.moe_overlap == MoeOverlap::Combined1f1b,
        two_micro_batch: l.moe_overlap == MoeOverlap::TwoMicroBatch,
        dp_group: Group {
            size: (l.dp * l.cp) as u32,
            stride: l.tp as u32,
        },
        compute_sms: st.sms,
        dp_sms: st.dp_comm_sms(),
        nic: nic_traffic(l, st.gpus_per_node, st.w.model.moe.is_some()),
        replicas,
        load,
        details: std::mem::take(details),
    }
}

/// Where one GPU's time went, in seconds, from its timeline.
pub fn breakdown(g: &TaskGraph, o: &Outcome, gpu: u32) -> Breakdown {
    // Classes: 0 optimizer, 1 compute, 2.. comm kinds in order of precedence.
    const KINDS: [CommKind; 5] = CommKind::ALL;
    let class = |p: Pass| match p {
        Pass::Optimizer => 0usize,
        Pass::Fwd | Pass::Bwd | Pass::Wgrad => 1,
        Pass::Comm(k) => 2 + KINDS.iter().position(|&x| x == k).expect("known kind"),
    };
    let mut edges: Vec<(u64, usize, i32)> = Vec::new();
    let mut work = [0.0f64; 3];
    for (i, t) in g.tasks.iter().enumerate() {
        if t.gpu != gpu {
            continue;
        }
        let c = class(t.pass);
        if o.end[i] > o.start[i] {
            edges.push((o.start[i], c, 1));
            edges.push((o.end[i], c, -1));
        }
        match t.pass {
            Pass::Fwd => work[0] += t.work as f64,
            Pass::Bwd => work[1] += t.work as f64,
            Pass::Wgrad => work[2] += t.work as f64,
            _ => {}
        }
    }
    // Each stream's busy time: the union of its tasks' intervals.
    let mut stream_busy = BTreeMap::new();
    for (st, name) in taskgraph::STREAM_NAMES.iter().enumerate() {
        let mut spans: Vec<(u64, u64)> = g
            .stream(gpu, st as u8)
            .iter()
            .map(|&i| (o.start[i as usize], o.end[i as usize]))
            .filter(|(a, b)| b > a)
            .collect();
        if spans.is_empty() {
            continue;
        }
        spans.sort_unstable();
        let (mut busy, mut cur) = (0u64, spans[0]);
        for &(a, b) in &spans[1..] {
            if a > cur.1 {
                busy += cur.1 - cur.0;
                cur = (a, b);
            } else {
                cur.1 = cur.1.max(b);
            }
        }
        busy += cur.1 - cur.0;
        stream_busy.insert(name.to_string(), busy as f64 / 1e12);
    }
    edges.sort_unstable();
    let mut active = [0i32; 7];
    let mut acc = [0u64; 8]; // per class, and [7] idle
    let mut last = 0u64;
    for (t, c, d) in edges.into_iter().chain(std::iter::once((o.makespan, 0, 0))) {
        let dt = t - last;
        let who = (0..7).find(|&k| active[k] > 0).unwrap_or(7);
        acc[who] += dt;
        active[c] += d;
        last = t;
    }
    let s = |p: u64| p as f64 / 1e12;
    let compute = s(acc[1]);
    let total_work: f64 = work.iter().sum::<f64>().max(1.0);
    let mut by_kind = BTreeMap::new();
    for (i, k) in KINDS.iter().enumerate() {
        by_kind.insert(k.name().to_string(), s(acc[2 + i]));
    }
    Breakdown {
        compute,
        forward: compute * work[0] / total_work,
        backward: compute * work[1] / total_work,
        weight_grad: compute * work[2] / total_work,
        exposed_comm: by_kind.values().sum(),
        exposed_comm_by_kind: by_kind,
        bubble: s(acc[7]),
        optimizer: s(acc[0]),
        stream_busy,
    }
}

/// The links that `details` load, named and classed.
fn link_info(cluster: &Cluster, details: &[SegDetail]) -> BTreeMap<u32, LinkInfo> {
    use crate::topo::{LinkKind, Vertex};
    let name = |v: &Vertex| match *v {
        Vertex::Gpu { id, .. } => format!("GPU {id}"),
        Vertex::NvSwitch { node } => format!("NVSwitch {node}"),
        Vertex::Nic { node, index, .. } => format!("NIC {node}.{index}"),
        Vertex::Leaf { plane, index } => format!("leaf {plane}.{index}"),
        Vertex::Spine { plane, index } => format!("spine {plane}.{index}"),
        Vertex::Core { plane, index } => format!("core {plane}.{index}"),
    };
    let mut out = BTreeMap::new();
    for &(l, _) in details.iter().flat_map(|d| &d.links) {
        if out.contains_key(&l) {
            continue;
        }
        let e = petgraph::graph::EdgeIndex::new(l as usize);
        let (Some(link), Some((a, b))) = (
            cluster.graph.edge_weight(e),
            cluster.graph.edge_endpoints(e),
        ) else {
            continue;
        };
        out.insert(
            l,
            LinkInfo {
                class: match link.kind {
                    LinkKind::NvLink => "NVLink",
                    LinkKind::Pcie => "PCIe",
                    LinkKind::NicLeaf => "NIC–leaf",
                    LinkKind::LeafSpine => "leaf–spine",
                    LinkKind::SpineCore => "spine–core",
                },
                name: format!("{} → {}", name(&cluster.graph[a]), name(&cluster.graph[b])),
                bytes_per_s: link.capacity.bytes_per_s,
            },
        );
    }
    out
}

/// The shared network of a step: for each communication segment on each pipeline stage, the
/// bytes its operations put on each link per picosecond of their standalone time (priced with
/// their siblings, on that stage's GPUs).
///
/// Links that every route loads with the same weight (and that have the same capacity) are one
/// constraint, so they are merged into one link: an exact reduction by the fabric's symmetry,
/// which leaves a stage's hundreds of NIC links as a handful.
pub fn shared_links(
    cluster: &Cluster,
    net: &dyn CommCost,
    details: &[SegDetail],
    pp: u64,
) -> exec::Links {
    let stages = pp.max(1);
    let capacity: Vec<f64> = cluster
        .graph
        .edge_weights()
        .map(|l| l.capacity.bytes_per_s)
        .collect();
    // Distinct footprints, by their operations and stage.
    let mut seen: BTreeMap<(String, u64), u32> = BTreeMap::new();
    let mut prints: Vec<Vec<(u32, f64)>> = Vec::new();
    let mut route_of = vec![u32::MAX; details.len() * stages as usize];
    for (d, det) in details.iter().enumerate() {
        if det.ops.is_empty() {
            continue;
        }
        let alone: f64 = det.ops.iter().map(|op| net.time(op)).sum();
        if alone <= 0.0 {
            continue;
        }
        let key = format!("{:?}", det.ops);
        for s in 0..stages {
            let id = *seen.entry((key.clone(), s)).or_insert_with(|| {
                // Each operation's loads come sorted by link: merge them.
                let mut bytes: Vec<(u32, f64)> = Vec::new();
                for op in &det.ops {
                    let next = net.links_at(op, s);
                    bytes = merge_sorted(&bytes, &next);
                }
                let per_ps = alone * 1e12;
                prints.push(bytes.into_iter().map(|(l, b)| (l, b / per_ps)).collect());
                prints.len() as u32 - 1
            });
            route_of[d * stages as usize + s as usize] = id;
        }
    }
    // Merge links with the same capacity and the same load from every footprint (looked up in
    // a hash map, numbered in link order).
    let mut sig: Vec<Vec<(u32, u64)>> = vec![Vec::new(); capacity.len()];
    for (f, p) in prints.iter().enumerate() {
        for &(l, w) in p {
            sig[l as usize].push((f as u32, w.to_bits()));
        }
    }
    let mut class_of: std::collections::HashMap<(u64, Vec<(u32, u64)>), u32> = Default::default();
    let mut link_class = vec![u32::MAX; capacity.len()];
    let mut class_cap = Vec::new();
    for (l, v) in sig.into_iter().enumerate() {
        if v.is_empty() {
            continue;
        }
        let cap = capacity[l];
        let next = class_cap.len() as u32;
        let c = *class_of.entry((cap.to_bits(), v)).or_insert(next);
        if c == next {
            class_cap.push(cap);
        }
        link_class[l] = c;
    }
    let routes = prints
        .iter()
        .map(|p| {
            let mut r: Vec<(u32, f64)> = p
                .iter()
                .map(|&(l, w)| (link_class[l as usize], w))
                .collect();
            r.sort_by_key(|x| x.0);
            r.dedup_by_key(|x| x.0);
            r.into_iter().filter(|x| x.1 > 0.0).unzip()
        })
        .collect();
    exec::Links {
        capacity: class_cap,
        routes,
        route_of,
        stages: stages as u32,
    }
}

/// Two lists sorted by link, summed where they share one.
fn merge_sorted(a: &[(u32, f64)], b: &[(u32, f64)]) -> Vec<(u32, f64)> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x.0 == y.0 => {
                out.push((x.0, x.1 + y.1));
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x.0 < y.0 => {
                out.push(*x);
                i += 1;
            }
            (Some(x), None) => {
                out.push(*x);
                i += 1;
            }
            (_, Some(y)) => {
                out.push(*y);
                j += 1;
            }
            (None, None) => unreachable!("one list has more"),
        }
    }
    out
}

/// Simulates one step.
pub fn estimate(
    w: &Workload,
    layout: &Layout,
    cluster: &Cluster,
    cal: &Calibration,
    full: bool,
) -> StepResult {
    step(w, layout, cluster, cal, full, false).0
}

/// Simulates one step and keeps its timeline (for traces and reports).
pub fn simulate(
    w: &Workload,
    layout: &Layout,
    cluster: &Cluster,
    cal: &Calibration,
    full: bool,
) -> (StepResult, Timeline) {
    let (r, t) = step(w, layout, cluster, cal, full, true);
    (r, t.expect("asked for the timeline"))
}

/// One step, and its timeline when `keep` (copying every task is not free under `--full`).
fn step(
    w: &Workload,
    layout: &Layout,
    cluster: &Cluster,
    cal: &Calibration,
    full: bool,
    keep: bool,
) -> (StepResult, Option<Timeline>) {
    let net = FlowModel::for_stages(cluster, cal, layout.tp * layout.cp * layout.dp);
    let st = Staging::new(w, layout, cluster, cal, &net);
    let replicas = if full {
        (layout.tp * layout.cp * layout.dp) as u32
    } else {
        1
    };
    let mut plan = step_plan(&st, replicas);
    let details = std::mem::take(&mut plan.details);
    let graph = taskgraph::build(&plan);
    let links = shared_links(cluster, &net, &details, layout.pp);
    let out = exec::run_on(&graph, &links);
    // The bottleneck: the GPU with the most compute work.
    let mut load = vec![0u64; graph.gpus as usize];
    for t in &graph.tasks {
        if matches!(t.pass, Pass::Fwd | Pass::Bwd | Pass::Wgrad) {
            load[t.gpu as usize] += t.work;
        }
    }
    let gpu = (0..graph.gpus)
        .max_by_key(|&g| (load[g as usize], std::cmp::Reverse(g)))
        .unwrap_or(0);
    let rank = (gpu / replicas) as u64;
    let bd = breakdown(&graph, &out, gpu);
    // Memory: static state plus the simulated activation peak, worst rank.
    let mut mem = Memory::default();
    for g in 0..graph.gpus {
        let m = st.rank_memory((g / replicas) as u64, out.peak_mem[g as usize]);
        if m.total > mem.total {
            mem = m;
        }
    }
    let chunks = st.chunks.clone();
    let result = StepResult {
        step_time_s: out.makespan as f64 / 1e12,
        breakdown: bd,
        memory: mem,
        chunks,
        bottleneck_rank: rank,
        kernels_per_step: st.kernels_per_step(),
        events: out.events,
        beyond_horizon: out.beyond_horizon,
    };
    if !keep {
        return (result, None);
    }
    // Pipeline sends and the tasks on other GPUs that wait for them.
    let mut flows = Vec::new();
    for (i, t) in graph.tasks.iter().enumerate() {
        if t.stream == taskgraph::P2P {
            for &n in graph.successors(i as u32) {
                if graph.tasks[n as usize].gpu != t.gpu {
                    flows.push((i as u32, n));
                }
            }
        }
    }
    let timeline = Timeline {
        gpus: graph.gpus,
        replicas,
        bottleneck_gpu: gpu,
        makespan_ps: out.makespan,
        tasks: graph
            .tasks
            .iter()
            .enumerate()
            .map(|(i, &task)| TimedTask {
                task,
                start_ps: out.start[i],
                end_ps: out.end[i],
            })
            .collect(),
        flows,
        details,
        nic: graph.nic,
        nic_bytes_per_s: cluster.nic_per_gpu().bytes_per_s,
        nvlink_bytes_per_s: cluster.scale_up.bytes_per_s,
        links: BTreeMap::new(),
    };
    let mut timeline = timeline;
    timeline.links = link_info(cluster, &timeline.details);
    (result, Some(timeline))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Schedule;

    /// A pipeline of identical chunks: forward f, backward b, weight-gradient w picoseconds.
    fn uniform(s: Schedule, pp: u64, vpp: u64, m: u64, f: u64, b: u64, w: u64) -> (StepPlan, u64) {
        let chunks = schedule::chunk_count(s, pp, vpp);
        let seg = |ps| SegPlan {
            kind: SegKind::Compute,
            ps,
            load_ps: 0,
            detail: taskgraph::NO_DETAIL,
        };
        let chunk = ChunkPlan {
            blocks: vec![BlockPlan {
                fwd: vec![seg(f)],
                bwd: vec![seg(b)],
                wgrad: vec![seg(w)],
                grad_sync_ps: 0,
                step_gather_ps: 0,
                sync_detail: (taskgraph::NO_DETAIL, taskgraph::NO_DETAIL),
            }],
            act_bytes: 1.0,
            p2p_fwd_ps: 0,
            p2p_bwd_ps: 0,
            p2p_detail: (taskgraph::NO_DETAIL, taskgraph::NO_DETAIL),
        };
        let plan = StepPlan {
            schedule: s,
            pp,
            vpp,
            micro_batches: m,
            chunks: vec![chunk; chunks as usize],
            optimizer_ps: vec![0; pp as usize],
            param_gather_ps: vec![0; pp as usize],
            param_gather_detail: Vec::new(),
            grad_sync_every_microbatch: false,
            grad_sync_after_backward: false,
            combined_1f1b: false,
            two_micro_batch: false,
            dp_group: Group { size: 1, stride: 1 },
            compute_sms: 132,
            dp_sms: 0,
            nic: [false; 5],
            replicas: 1,
            load: Vec::new(),
            details: Vec::new(),
        };
        let per_rank = chunks / pp * m * (f + b + w);
        (plan, per_rank)
    }

    /// The simulated bubble on uniform chunks equals each schedule's formula within one chunk time.
    #[test]
    fn bubbles_match_their_formulas() {
        let (f, b, w) = (100u64, 150u64, 50u64);
        for (s, pp, vpp, m) in [
            (Schedule::Gpipe, 4, 1, 8),
            (Schedule::OneFOneB, 4, 1, 8),
            (Schedule::OneFOneB, 8, 1, 32),
            (Schedule::Interleaved, 4, 2, 8),
            (Schedule::Zb1p, 4, 1, 8),
            (Schedule::Dualpipe, 4, 1, 16),
            (Schedule::Dualpipe, 8, 1, 20),
            (Schedule::Dualpipev, 4, 1, 10),
        ] {
            let (plan, work) = uniform(s, pp, vpp, m, f, b, w);
            let g = taskgraph::build(&plan);
            let o = exec::run(&g);
            let simulated = o.makespan as f64 - work as f64;
            // Without communication, an overlapped F&B pair is just F + B + W back to back.
            let formula = schedule::bubble(s, pp, f as f64, b as f64, w as f64, (f + b + w) as f64);
            let chunk = (f + b + w) as f64;
            println!("{s:?} pp{pp} m{m}: simulated bubble {simulated}, formula {formula}");
            assert!(
                (simulated - formula).abs() <= chunk,
                "{s:?}: simulated {simulated} vs formula {formula}"
            );
        }
    }

    /// Two-micro-batch overlap on one block of compute C, an all-to-all D and compute C, in
    /// each direction: the halves' passes interleave, each all-to-all beside the other half's
    /// compute, so a pair's forward takes 2C + 2·max(C, D) and so does its backward; run one
    /// after the other the two halves take 2(2C + D) per direction.
    #[test]
    fn two_micro_batch_pairs_hide_each_halfs_all_to_all() {
        let c = 1000u64;
        for d in [c / 2, 2 * c] {
            let seg = |kind, ps| SegPlan {
                kind,
                ps,
                load_ps: 0,
                detail: taskgraph::NO_DETAIL,
            };
            let a2a = SegKind::Comm {
                kind: CommKind::Ep,
                parallel: false,
                group: Group { size: 1, stride: 1 },
            };
            let pass = vec![
                seg(SegKind::Compute, c),
                seg(a2a, d),
                seg(SegKind::Compute, c),
            ];
            let run = |twin: bool| {
                let (mut plan, _) = uniform(Schedule::OneFOneB, 1, 1, 2, 0, 0, 0);
                plan.chunks[0].blocks[0].fwd = pass.clone();
                plan.chunks[0].blocks[0].bwd = pass.clone();
                plan.chunks[0].blocks[0].wgrad = Vec::new();
                plan.two_micro_batch = twin;
                exec::run(&taskgraph::build(&plan)).makespan
            };
            assert_eq!(run(true), 2 * (2 * c + 2 * c.max(d)), "D = {d}");
            assert_eq!(run(false), 2 * 2 * (2 * c + d), "D = {d}");
        }
    }

    /// Chunks of `blocks` identical blocks (forward f, backward b, weight gradients w), each with
    /// a gradient bucket of `sync` picoseconds.
    #[allow(clippy::too_many_arguments)]
    fn blocky(
        s: Schedule,
        pp: u64,
        vpp: u64,
        m: u64,
        blocks: usize,
        (f, b, w): (u64, u64, u64),
        sync: u64,
    ) -> StepPlan {
        let (mut plan, _) = uniform(s, pp, vpp, m, f, b, w);
        for c in &mut plan.chunks {
            let blk = BlockPlan {
                grad_sync_ps: sync,
                ..c.blocks[0].clone()
            };
            c.blocks = vec![blk; blocks];
        }
        plan
    }

    /// Autograd computes each block's weight gradients right after its input gradients under
    /// GPipe, 1F1B and interleaved 1F1B; ZB1P keeps a pass's weight gradients for later.
    #[test]
    fn weight_gradients_follow_their_blocks_backward() {
        for (s, vpp) in [
            (Schedule::Gpipe, 1),
            (Schedule::OneFOneB, 1),
            (Schedule::Interleaved, 2),
            (Schedule::Zb1p, 1),
        ] {
            let g = taskgraph::build(&blocky(s, 2, vpp, 4, 3, (100, 200, 100), 0));
            let passes: Vec<Pass> = g
                .stream(0, taskgraph::COMPUTE)
                .iter()
                .map(|&t| g.tasks[t as usize].pass)
                .filter(|p| matches!(p, Pass::Bwd | Pass::Wgrad))
                .collect();
            let pairs = passes
                .windows(2)
                .filter(|w| w == &[Pass::Bwd, Pass::Wgrad])
                .count();
            let bwd = passes.iter().filter(|&&p| p == Pass::Bwd).count();
            if s == Schedule::Zb1p {
                // One B→W switch per deferred pass: W runs after all of the pass's blocks.
                assert_eq!(pairs * 3, bwd, "{s:?}: {passes:?}");
            } else {
                assert_eq!(pairs, bwd, "{s:?}: every block's B is followed by its W");
            }
        }
    }

    /// Gradient buckets leave as each block's weight gradients finish and hide under the rest
    /// of the backward: with a bucket shorter than one block's backward, at most about one
    /// bucket (the first block's, last to be ready) is exposed, whatever the block count.
    #[test]
    fn gradient_buckets_hide_under_the_backward() {
        let (fbw, sync) = ((100, 200, 100), 150);
        for (s, pp, vpp, m) in [
            (Schedule::Gpipe, 1, 1, 4),
            (Schedule::OneFOneB, 1, 1, 4),
            (Schedule::OneFOneB, 4, 1, 8),
            (Schedule::Interleaved, 2, 2, 4),
        ] {
            let run =
                |sync| exec::run(&taskgraph::build(&blocky(s, pp, vpp, m, 8, fbw, sync))).makespan;
            let (with, without) = (run(sync), run(0));
            println!("{s:?} pp{pp}: {with} with buckets of {sync}, {without} without");
            assert!(
                with <= without + sync + 1,
                "{s:?}: {} exposed, more than one bucket",
                with - without
            );
        }
    }

    /// Not overlapped (`grad_reduce: after_backward`), the reduction adds exactly its own time
    /// to the step: every bucket of the rank that finishes last (the first stage), back to back
    /// after its last backward, and with sharded gradients every micro-batch's buckets, which
    /// the next compute waits for.
    #[test]
    fn non_overlapped_reduction_adds_its_time() {
        let (m, blocks, sync) = (4u64, 8usize, 150u64);
        for (s, pp, vpp, every) in [
            (Schedule::Gpipe, 1, 1, false),
            (Schedule::OneFOneB, 1, 1, false),
            (Schedule::OneFOneB, 4, 1, false),
            (Schedule::Interleaved, 2, 2, false),
            (Schedule::OneFOneB, 1, 1, true),
            (Schedule::Zb1p, 1, 1, true),
        ] {
            let run = |sync, after| {
                let mut plan = blocky(s, pp, vpp, m, blocks, (100, 200, 100), sync);
                plan.grad_sync_every_microbatch = every;
                plan.grad_sync_after_backward = after;
                exec::run(&taskgraph::build(&plan)).makespan
            };
            let chunks = schedule::chunk_count(s, pp, vpp) / pp;
            let passes = if every { m } else { 1 };
            let buckets = passes * chunks * blocks as u64;
            let (after, without) = (run(sync, true), run(0, true));
            assert_eq!(
                after,
                without + buckets * sync,
                "{s:?} pp{pp} every {every}"
            );
            // Overlapped, the same buckets cost less (ZB1P on one stage keeps every W, so
            // every bucket, for the end, where nothing is left to hide them).
            assert!(run(sync, false) < after, "{s:?} pp{pp}");
        }
    }

    /// Sharded gradients (ZeRO-2/3) are reduce-scattered after every micro-batch's backward,
    /// block by block, and still hide under the backward that follows each block's W.
    #[test]
    fn sharded_gradients_sync_every_micro_batch() {
        let (m, blocks, sync) = (4u64, 8usize, 150u64);
        for (s, pp, vpp) in [
            (Schedule::OneFOneB, 1, 1),
            (Schedule::OneFOneB, 2, 1),
            (Schedule::Interleaved, 2, 2),
        ] {
            let run = |sync, every| {
                let mut plan = blocky(s, pp, vpp, m, blocks, (100, 200, 100), sync);
                plan.grad_sync_every_microbatch = every;
                let g = taskgraph::build(&plan);
                let dp = g.stream(0, taskgraph::DP).len();
                (exec::run(&g).makespan, dp)
            };
            let chunks = schedule::chunk_count(s, pp, vpp) / pp;
            let (with, dp) = run(sync, true);
            let (once, dp_once) = run(sync, false);
            let (without, _) = run(0, true);
            assert_eq!(dp as u64, m * chunks * blocks as u64, "{s:?}");
            assert_eq!(dp_once as u64, chunks * blocks as u64, "{s:?}");
            assert!(with <= without + sync + 1, "{s:?}: {}", with - without);
            assert!(once <= without + sync + 1, "{s:?}: {}", once - without);
        }
    }

    /// Overlapped parameter gathers (ZeRO-1/2, --overlap-param-gather) leave at the start of the
    /// step, block after block, each needed by its block's first forward: a gather shorter than
    /// a block's forward exposes only the first block's; a longer one exposes what the forwards
    /// cannot cover, the closed form's total − window·(n−1)/n. Later pipeline stages gather
    /// while they wait for their first activations, so overlapping never costs more than
    /// gathering everything after the optimizer.
    #[test]
    fn overlapped_param_gathers_wait_only_for_the_first_block() {
        let (m, blocks, f) = (4u64, 8usize, 100u64);
        for (s, pp, vpp) in [
            (Schedule::OneFOneB, 1, 1),
            (Schedule::Gpipe, 1, 1),
            (Schedule::OneFOneB, 4, 1),
            (Schedule::Interleaved, 2, 2),
        ] {
            let run = |gather: u64, overlap: bool| {
                let mut plan = blocky(s, pp, vpp, m, blocks, (f, 200, 100), 0);
                let per_rank = schedule::chunk_count(s, pp, vpp) / pp * blocks as u64;
                if overlap {
                    for c in &mut plan.chunks {
                        for b in &mut c.blocks {
                            b.step_gather_ps = gather;
                        }
                    }
                } else {
                    plan.param_gather_ps = vec![gather * per_rank; pp as usize];
                }
                let g = taskgraph::build(&plan);
                if overlap && gather > 0 {
                    // Gathered once, before the first micro-batch's forward only.
                    assert_eq!(g.stream(0, taskgraph::DP).len() as u64, per_rank);
                }
                exec::run(&g).makespan
            };
            let without = run(0, true);
            let short = run(50, true) - without;
            println!("{s:?} pp{pp}: gathers of 50 expose {short}");
            assert!(short <= 50 + 1, "{s:?}: {short}");
            assert_eq!(run(50, false) - without, 50 * blocks as u64 * (vpp));
            assert!(run(150, true) <= run(150, false), "{s:?} pp{pp}");
            if pp == 1 {
                // The first gather cannot hide; the longer ones outrun the forwards.
                assert_eq!(short, 50);
                let long = run(150, true) - without;
                let n = blocks as f64;
                let closed = crate::step::analytic::hidden_behind(150.0 * n, n, f as f64 * n);
                assert!((long as f64 - closed).abs() <= 1.0, "{long} vs {closed}");
            }
        }
    }

    /// DualPipe holds PP+1 chunk activations at its peak (DualPipe README table); 1F1B holds PP.
    #[test]
    fn activations_in_flight_match_the_tables() {
        for (s, pp, m, expect) in [
            (Schedule::Dualpipe, 8, 20, 9),
            (Schedule::OneFOneB, 8, 20, 8),
            (Schedule::Gpipe, 4, 6, 6),
        ] {
            let (plan, _) = uniform(s, pp, 1, m, 100, 150, 50);
            let o = exec::run(&taskgraph::build(&plan));
            let peak = *o.peak_inflight.iter().max().unwrap();
            assert_eq!(peak, expect, "{s:?}: peak in flight {:?}", o.peak_inflight);
        }
        // Megatron's interleaved warm-up: rank 0 runs 2(p−1) + (v−1)p chunk forwards, then one
        // more before its first backward: p + (p−1)/v stages' worth, in 1/v-stage chunks; with
        // m ≤ p micro-batches every forward (m·v chunks) runs first.
        for (pp, vpp, m, expect) in [(4u64, 2u64, 8u64, 11u64), (4, 4, 8, 19), (4, 2, 4, 8)] {
            let (plan, _) = uniform(Schedule::Interleaved, pp, vpp, m, 100, 150, 50);
            let o = exec::run(&taskgraph::build(&plan));
            let peak = *o.peak_inflight.iter().max().unwrap();
            assert_eq!(
                peak as u64, expect,
                "interleaved: peak in flight {:?}",
                o.peak_inflight
            );
            let stages = schedule::activations_in_flight(Schedule::Interleaved, pp, vpp, m);
            assert!(
                (stages * vpp as f64 - expect as f64).abs() < 1.0,
                "{stages}"
            );
        }
    }
}

#[cfg(test)]
mod scenario_tests {
    use super::*;

    /// DeepSeek-V3's layer design cut to 4 layers on two H800 nodes: PP2 × EP8, DualPipe.
    fn small(extra: &[&str]) -> (Cluster, Workload) {
        try_small(extra).unwrap()
    }

    fn try_small(extra: &[&str]) -> Result<(Cluster, Workload), crate::config::Diagnostic> {
        crate::workload::ops::tests::moe(extra)
    }

    /// One step of the small case with `sets`, in `engine` ("des" or "analytic").
    fn step_in(engine: &str, sets: &[&str]) -> StepResult {
        let (c, w) = small(sets);
        let cal = crate::builtin::calibration();
        if engine == "des" {
            estimate(&w, &w.layout, &c, &cal, false)
        } else {
            crate::step::analytic::estimate(&w, &w.layout, &c, &cal)
        }
    }

    /// Each of `bad` added to `base` is refused with a diagnostic located at `path`.
    fn refused_at(base: &str, bad: &[&[&str]], path: &str) {
        for b in bad {
            let mut sets = vec![base];
            sets.extend(b.iter().copied());
            let d = try_small(&sets).unwrap_err();
            assert_eq!(d.path.as_deref(), Some(path), "{b:?}: {d:?}");
        }
    }

    /// Megatron-Core's combined 1F1B hides the all-to-alls under the paired pass's compute, in
    /// both engines: less exposed expert-parallel time and a shorter step than the same layout
    /// without it (interleaved at pp 2, and 1F1B without a pipeline), one more chunk's
    /// activations held; layouts Megatron does not run it on are located diagnostics.
    #[test]
    fn combined_1f1b_hides_the_all_to_alls() {
        for layout in [
            [
                "workload.parallelism.schedule=interleaved",
                "workload.parallelism.vpp=2",
            ],
            [
                "workload.parallelism.schedule=1f1b",
                "workload.parallelism.pp=1",
            ],
        ] {
            for engine in ["des", "analytic"] {
                let run = |overlap: &str| {
                    let mut sets = layout.to_vec();
                    let o = format!("workload.parallelism.moe_overlap={overlap}");
                    sets.push(&o);
                    step_in(engine, &sets)
                };
                let (none, comb) = (run("none"), run("combined_1f1b"));
                let ep = |r: &StepResult| r.breakdown.exposed_comm_by_kind["ep"];
                assert!(
                    ep(&comb) < 0.5 * ep(&none),
                    "{engine} {layout:?}: {} vs {}",
                    ep(&comb),
                    ep(&none)
                );
                assert!(
                    comb.step_time_s < none.step_time_s,
                    "{engine} {layout:?}: {} vs {}",
                    comb.step_time_s,
                    none.step_time_s
                );
                assert!(
                    comb.memory.activations > none.memory.activations,
                    "{engine} {layout:?}"
                );
            }
        }
        refused_at(
            "workload.parallelism.moe_overlap=combined_1f1b",
            &[
                &["workload.parallelism.schedule=1f1b"],
                &["workload.parallelism.schedule=dualpipe"],
                &[
                    "workload.parallelism.schedule=1f1b",
                    "workload.parallelism.pp=1",
                    "workload.parallelism.ep=1",
                ],
            ],
            "parallelism.moe_overlap",
        );
    }

    /// Two-micro-batch overlap hides each half's all-to-alls under the other half's compute in
    /// both engines: less exposed expert-parallel time and a shorter step than the same
    /// micro-batches run whole, holding the same activations (two halves of each micro-batch in
    /// flight); layouts it cannot run on are located diagnostics.
    #[test]
    fn two_micro_batch_overlap_hides_the_all_to_alls() {
        for engine in ["des", "analytic"] {
            let run = |overlap: &str| {
                let o = format!("workload.parallelism.moe_overlap={overlap}");
                // Experts over both nodes: the all-to-alls cross InfiniBand.
                let sets = [
                    "workload.parallelism.schedule=1f1b",
                    "workload.parallelism.micro_batch=2",
                    "workload.parallelism.pp=1",
                    "workload.parallelism.ep=16",
                    &o,
                ];
                step_in(engine, &sets)
            };
            let (none, twin) = (run("none"), run("two_micro_batch"));
            let ep = |r: &StepResult| r.breakdown.exposed_comm_by_kind["ep"];
            assert!(
                ep(&twin) < 0.6 * ep(&none),
                "{engine}: {} vs {}",
                ep(&twin),
                ep(&none)
            );
            assert!(twin.step_time_s < none.step_time_s, "{engine}");
            let (a, b) = (twin.memory.activations, none.memory.activations);
            assert!((a - b).abs() <= 0.02 * b, "{engine}: {a} vs {b}");
        }
        refused_at(
            "workload.parallelism.moe_overlap=two_micro_batch",
            &[
                &["workload.parallelism.schedule=1f1b"],
                &["workload.parallelism.micro_batch=2"],
                &[
                    "workload.parallelism.schedule=1f1b",
                    "workload.parallelism.micro_batch=2",
                    "workload.parallelism.ep=1",
                ],
            ],
            "parallelism.moe_overlap",
        );
    }

    /// The shared experts beside the all-to-alls shorten the step in both engines, by no more
    /// than the shared experts' own compute takes: what is hidden is theirs or the
    /// all-to-all's, whichever is shorter.
    #[test]
    fn shared_expert_overlap_hides_at_most_the_shared_experts() {
        for engine in ["des", "analytic"] {
            let run = |extra: &[&str]| {
                let mut sets = vec![
                    "workload.parallelism.schedule=1f1b",
                    "workload.parallelism.moe_dispatcher=alltoall",
                ];
                sets.extend(extra);
                step_in(engine, &sets)
            };
            let plain = run(&[]);
            let over = run(&["workload.parallelism.moe_shared_expert_overlap=true"]);
            // The shared experts' compute: the step without them, with nothing else changed.
            let none = run(&["workload.model.n_shared_experts=0"]);
            let saved = plain.step_time_s - over.step_time_s;
            let shared = plain.step_time_s - none.step_time_s;
            assert!(saved > 0.0, "{engine}: {saved}");
            assert!(
                saved <= shared * 1.0001,
                "{engine}: saved {saved} of {shared}"
            );
        }
    }

    /// Token dropping caps each expert at its capacity: under a skewed routing draw no GPU of
    /// the group computes more than the capacity, the busiest computes less than without a
    /// cap, and padding to capacity leaves no skew (every expert computes exactly it).
    #[test]
    fn capacity_caps_the_busiest_gpu() {
        let skew = [
            "workload.routing.distribution=dirichlet",
            "workload.routing.alpha=0.5",
            "workload.parallelism.moe_dispatcher=alltoall",
        ];
        let load = |extra: &[&str]| {
            let mut sets = skew.to_vec();
            sets.extend(extra);
            let (_, w) = small(&sets);
            expert_load(&w, 8, w.layout.moe_dispatch)
        };
        let busiest = |v: &[Option<Vec<f32>>]| -> f32 {
            v.iter().flatten().flatten().copied().fold(0.0, f32::max)
        };
        let free = load(&[]);
        let cap = "workload.parallelism.moe_expert_capacity_factor=1.25";
        let capped = load(&[cap]);
        assert!(busiest(&free) > 1.25, "{}", busiest(&free));
        assert!(busiest(&capped) <= 1.25 + 1e-6, "{}", busiest(&capped));
        assert!(capped.iter().flatten().flatten().all(|&x| x > 0.0));
        let padded = load(&[
            cap,
            "workload.parallelism.moe_pad_expert_input_to_capacity=true",
        ]);
        assert!(padded.iter().all(Option::is_none));
    }

    /// Megatron-Core's recompute modules name the pieces of the policies: DeepSeek's
    /// selective is `mla_up_proj` + `layernorm` + `moe_act`, Megatron's selective is
    /// `core_attn`, each giving the same step and memory in both engines; `mla_up_proj` alone
    /// keeps less than no recompute and more than DeepSeek's set. Unknown and unmodelled
    /// modules are located diagnostics.
    #[test]
    fn recompute_modules_compose_the_policies() {
        let run = |sets: &[&str], engine: &str| {
            let (c, w) = small(sets);
            let cal = crate::builtin::calibration();
            let r = if engine == "des" {
                estimate(&w, &w.layout, &c, &cal, false)
            } else {
                crate::step::analytic::estimate(&w, &w.layout, &c, &cal)
            };
            (r.step_time_s, r.memory.activations)
        };
        let modules = |list: &str| format!("workload.training.recompute_modules={list}");
        for engine in ["des", "analytic"] {
            let deepseek = run(&["workload.training.recompute=selective"], engine);
            let as_modules = modules("[mla_up_proj, layernorm, moe_act]");
            assert_eq!(run(&[&as_modules], engine), deepseek, "{engine}");
            let megatron = run(&["workload.training.recompute=megatron_selective"], engine);
            let core = modules("[core_attn]");
            assert_eq!(run(&[&core], engine), megatron, "{engine}");
            let none = run(&["workload.training.recompute=none"], engine);
            let up = modules("[mla_up_proj]");
            let up = run(&[&up], engine);
            assert!(
                deepseek.1 < up.1 && up.1 < none.1,
                "{engine}: {deepseek:?} {up:?} {none:?}"
            );
        }
        for engine in ["des", "analytic"] {
            // Whole parts keep less and cost more: the MoE part re-runs its all-to-alls too.
            let none = run(&["workload.training.recompute=none"], engine);
            let shared = run(&[&modules("[shared_experts]")], engine);
            let moe = run(&[&modules("[moe]")], engine);
            let both = run(&[&modules("[mlp, moe]")], engine);
            assert!(
                none.1 > shared.1 && shared.1 > moe.1 && moe.1 > both.1,
                "{engine}: {none:?} {shared:?} {moe:?} {both:?}"
            );
            assert!(
                none.0 < shared.0 && shared.0 < moe.0 && moe.0 < both.0,
                "{engine}: {none:?} {shared:?} {moe:?} {both:?}"
            );
        }
        let d = try_small(&[&modules("[attn]")]).unwrap_err();
        assert_eq!(d.path.as_deref(), Some("training.recompute_modules"));
        assert!(d.found.contains("the unknown module `attn`"), "{}", d.found);
        let d =
            try_small(&["workload.training.recompute=full", &modules("[core_attn]")]).unwrap_err();
        assert_eq!(d.path.as_deref(), Some("training.recompute_modules"));
    }

    /// One replica per stage stands for all 16 GPUs: the full simulation agrees within 1%.
    #[test]
    fn representative_matches_full_simulation() {
        let (c, w) = small(&[]);
        let cal = crate::builtin::calibration();
        let rep = estimate(&w, &w.layout, &c, &cal, false);
        let full = estimate(&w, &w.layout, &c, &cal, true);
        let err = rep.step_time_s / full.step_time_s - 1.0;
        println!(
            "representative {:.6} s ({} events), full {:.6} s ({} events): {:+.4}%",
            rep.step_time_s,
            rep.events,
            full.step_time_s,
            full.events,
            err * 100.0
        );
        // Every GPU's tasks, though a collective's members travel as one transfer.
        assert!(
            full.events >= rep.events * 4,
            "the full run simulates every GPU"
        );
        assert!(err.abs() < 0.01);
    }

    /// A DeepSeek-like step on 256 GPUs (PP4 DualPipe × EP32, 8 layers) on one fabric plane
    /// whose leaves are 3:1 oversubscribed, so the stages' expert all-to-alls, pipeline sends
    /// and data-parallel syncs contend on the leaf up-links: every GPU simulated agrees with one
    /// replica per stage standing for its siblings within 1%.
    #[test]
    fn representative_matches_full_simulation_under_contention_at_256_gpus() {
        let (c, w) = small(&[
            "topology.nodes=32",
            "topology.scale_out.fabric.planes=1",
            "topology.scale_out.fabric.switch_radix=32",
            "topology.scale_out.fabric.oversubscription=3",
            "workload.model.num_hidden_layers=8",
            "workload.training.global_batch=512",
            "workload.parallelism.pp=4",
            "workload.parallelism.ep=32",
        ]);
        let cal = crate::builtin::calibration();
        let rep = estimate(&w, &w.layout, &c, &cal, false);
        let full = estimate(&w, &w.layout, &c, &cal, true);
        let err = rep.step_time_s / full.step_time_s - 1.0;
        assert!(
            err.abs() < 0.01,
            "representative {} s, full {} s",
            rep.step_time_s,
            full.step_time_s
        );
        // The fabric matters here: the same step on a non-blocking fabric is faster.
        let (open, _) = small(&[
            "topology.nodes=32",
            "topology.scale_out.fabric.planes=1",
            "topology.scale_out.fabric.switch_radix=32",
            "workload.model.num_hidden_layers=8",
            "workload.training.global_batch=512",
            "workload.parallelism.pp=4",
            "workload.parallelism.ep=32",
        ]);
        let fast = estimate(&w, &w.layout, &open, &cal, false);
        assert!(
            fast.step_time_s < rep.step_time_s * 0.98,
            "{} vs {}",
            fast.step_time_s,
            rep.step_time_s
        );
    }

    /// Without a pipeline there are no pipeline sends, even when a stage fills the node (a
    /// send priced to "the next node" of a one-node cluster used to index past its GPUs).
    #[test]
    fn one_stage_on_one_node_sends_nothing() {
        let (c, w) = small(&[
            "workload.parallelism.pp=1",
            "workload.parallelism.schedule=1f1b",
            "topology.nodes=1",
        ]);
        assert_eq!((c.gpus(), w.layout.pp, w.layout.dp), (8, 1, 8));
        let cal = crate::builtin::calibration();
        let net = FlowModel::new(&c, &cal);
        let st = Staging::new(&w, &w.layout, &c, &cal, &net);
        let plan = step_plan(&st, 1);
        assert!(plan
            .chunks
            .iter()
            .all(|ch| ch.p2p_fwd_ps == 0 && ch.p2p_bwd_ps == 0));
        let e = estimate(&w, &w.layout, &c, &cal, false);
        assert_eq!(e.breakdown.exposed_comm_by_kind["pp"], 0.0);
        assert!(e.step_time_s > 0.0);
    }

    /// Routed tokens are conserved at every concentration the workload accepts: each MoE
    /// layer's loads average exactly balanced (they sum to the EP group), down to the smallest
    /// alpha, where (Dirichlet's limit) one GPU takes every token; and a smaller alpha is never
    /// the faster step (it was, when tiny draws underflowed to zero and lost their tokens).
    #[test]
    fn routed_tokens_are_conserved_down_to_the_smallest_alpha() {
        let cal = crate::builtin::calibration();
        let mut steps = Vec::new();
        for alpha in ["1e-12", "0.001", "0.5", "2.0"] {
            let (c, w) = small(&[
                "workload.routing.distribution=dirichlet",
                &format!("workload.routing.alpha={alpha}"),
            ]);
            let ep = w.layout.ep;
            let loads = expert_load(&w, ep, w.layout.moe_dispatch);
            let mut moe = 0;
            for l in loads.iter().flatten() {
                moe += 1;
                let sum: f64 = l.iter().map(|&x| f64::from(x)).sum();
                assert!(
                    (sum - ep as f64).abs() < 1e-4 * ep as f64,
                    "alpha {alpha}: {sum} of {ep}"
                );
                assert!(l.iter().all(|x| x.is_finite() && *x >= 0.0));
                if alpha == "1e-12" {
                    let top = l.iter().copied().fold(0.0f32, f32::max);
                    assert!(
                        f64::from(top) > 0.999 * ep as f64,
                        "alpha {alpha}: top {top}"
                    );
                }
            }
            assert!(moe > 0, "the fixture has MoE layers");
            steps.push(estimate(&w, &w.layout, &c, &cal, false).step_time_s);
        }
        for k in 1..steps.len() {
            assert!(steps[k - 1] >= steps[k], "alpha order, steps {steps:?}");
        }
    }

    /// Hot experts slow the step: the all-to-all waits for the busiest GPU.
    #[test]
    fn skewed_routing_is_seeded_and_slower() {
        let cal = crate::builtin::calibration();
        let (c, w) = small(&[]);
        let balanced = estimate(&w, &w.layout, &c, &cal, false).step_time_s;
        let run = |seed: &str, alpha: &str| {
            let (c, w) = small(&[
                "workload.routing.distribution=dirichlet",
                &format!("workload.routing.alpha={alpha}"),
                &format!("workload.routing.seed={seed}"),
            ]);
            estimate(&w, &w.layout, &c, &cal, false).step_time_s
        };
        let a = run("7", "2.0");
        assert_eq!(a, run("7", "2.0"), "same seed, same result");
        assert!(a > balanced, "skewed {a} vs balanced {balanced}");
        let hotter = run("7", "0.5");
        assert!(
            hotter > a,
            "alpha 0.5 ({hotter}) should be slower than alpha 2 ({a})"
        );
        // The full simulation sees the same imbalance through the all-to-all's slowest member.
        let (c, w) = small(&[
            "workload.routing.distribution=dirichlet",
            "workload.routing.alpha=2.0",
            "workload.routing.seed=7",
        ]);
        let full = estimate(&w, &w.layout, &c, &cal, true).step_time_s;
        println!("balanced {balanced:.6}, skewed representative {a:.6}, skewed full {full:.6}");
        assert!(full > balanced);
    }
}

#[cfg(test)]
mod zero_tests {
    use super::*;
    use crate::config::{Override, Source};
    use crate::pipeline::{load, DEFAULT_WORKLOAD};

    /// DeepSeek-V3's layer design cut to 4 layers on two H800 nodes, PP2 × EP8, at ZeRO stage
    /// `zero`, optionally overlapping its parameter gathers.
    fn small(zero: &str, overlap: bool) -> (Cluster, Workload) {
        small_with(zero, overlap, &[])
    }

    fn small_with(zero: &str, overlap: bool, extra: &[&str]) -> (Cluster, Workload) {
        let t = Source::embedded(
            "topologies/h800-16.yaml",
            include_str!("../../topologies/h800-16.yaml"),
        );
        let w = Source::embedded(DEFAULT_WORKLOAD.0, DEFAULT_WORKLOAD.1);
        let sets: Vec<Override> = [
            "workload.model.num_hidden_layers=4",
            "workload.model.first_k_dense_replace=1",
            "workload.training.global_batch=64",
            "workload.parallelism.pp=2",
            "workload.parallelism.ep=8",
            &format!("workload.parallelism.zero={zero}"),
            &format!("workload.parallelism.overlap_param_gather={overlap}"),
            "workload.training.phases=[{name: p, tokens: 1B}]",
        ]
        .iter()
        .chain(extra)
        .map(|s| Override::parse(s).unwrap())
        .collect();
        load(&t, &w, &sets).unwrap()
    }

    /// The step of `(c, w)` priced by `engine` (`des` or `analytic`).
    fn by(engine: &str, (c, w): (Cluster, Workload)) -> StepResult {
        let cal = crate::builtin::calibration();
        if engine == "des" {
            estimate(&w, &w.layout, &c, &cal, false)
        } else {
            crate::step::analytic::estimate(&w, &w.layout, &c, &cal)
        }
    }

    fn plan(zero: &str, overlap: bool) -> StepPlan {
        let (c, w) = small(zero, overlap);
        let cal = crate::builtin::calibration();
        let net = FlowModel::new(&c, &cal);
        step_plan(&Staging::new(&w, &w.layout, &c, &cal, &net), 1)
    }

    /// Where each ZeRO stage syncs: ZeRO-1 reduces gradients once per step and gathers the
    /// updated weights after the optimizer (or block by block before the first forwards when
    /// overlapped); ZeRO-2 reduces after every micro-batch (its gradients are sharded); ZeRO-3
    /// (FSDP FULL_SHARD) reduces after every micro-batch and has no gather after the optimizer,
    /// its weights staying sharded and gathered per block before use.
    #[test]
    fn zero_stages_place_their_syncs() {
        let step_gathers = |p: &StepPlan| {
            p.chunks
                .iter()
                .flat_map(|c| &c.blocks)
                .filter(|b| b.step_gather_ps > 0)
                .count()
        };
        let blocks: usize = plan("1", false).chunks.iter().map(|c| c.blocks.len()).sum();
        for (zero, overlap, every_mb, after_opt, per_block) in [
            ("0", false, false, false, 0),
            ("1", false, false, true, 0),
            ("1", true, false, false, blocks),
            ("2", false, true, true, 0),
            ("2", true, true, false, blocks),
            ("3", false, true, false, 0),
        ] {
            let p = plan(zero, overlap);
            let what = format!("ZeRO-{zero} overlap {overlap}");
            assert_eq!(p.grad_sync_every_microbatch, every_mb, "{what}");
            assert_eq!(
                p.param_gather_ps.iter().all(|&g| g > 0),
                after_opt,
                "{what}"
            );
            assert_eq!(
                p.param_gather_ps.iter().any(|&g| g > 0),
                after_opt,
                "{what}"
            );
            assert_eq!(step_gathers(&p), per_block, "{what}");
            assert!(p
                .chunks
                .iter()
                .flat_map(|c| &c.blocks)
                .all(|b| b.grad_sync_ps > 0));
        }
    }

    /// Reducing once per step (FSDP under pipelining, as Llama 3) turns ZeRO-3 into ZeRO-1's
    /// traffic with overlapped gathers: one reduce-scatter per block per step, one gather of
    /// each block's weights before its first forward, none per use, and ZeRO-1's memory.
    #[test]
    fn once_per_step_reduction_is_zero_1_inside_the_step() {
        let (c, w) = small_with(
            "3",
            false,
            &["workload.parallelism.grad_reduce=once_per_step"],
        );
        let cal = crate::builtin::calibration();
        let net = FlowModel::new(&c, &cal);
        let p = step_plan(&Staging::new(&w, &w.layout, &c, &cal, &net), 1);
        let (c1, w1) = small("1", true);
        let p1 = step_plan(&Staging::new(&w1, &w1.layout, &c1, &cal, &net), 1);
        assert!(!p.grad_sync_every_microbatch);
        assert_eq!(p.chunks, p1.chunks);
        assert_eq!(p.param_gather_ps, p1.param_gather_ps);
        let e = estimate(&w, &w.layout, &c, &cal, false);
        let e1 = estimate(&w1, &w1.layout, &c1, &cal, false);
        assert_eq!(e.step_time_s, e1.step_time_s);
        assert_eq!(e.memory.total, e1.memory.total);
        // Against FSDP's per-use gathers and per-micro-batch reduce-scatters it moves less
        // and holds more.
        let (c3, w3) = small("3", false);
        let e3 = estimate(&w3, &w3.layout, &c3, &cal, false);
        assert!(e.step_time_s < e3.step_time_s);
        assert!(e.memory.total > e3.memory.total);
    }

    /// Not overlapped (`after_backward`), the reduction is exposed whole in both engines: the
    /// step and the exposed data-parallel time grow, and the engines agree on what is exposed.
    #[test]
    fn non_overlapped_reduction_is_exposed_in_both_engines() {
        let mut exposed = Vec::new();
        for engine in ["des", "analytic"] {
            let run = |zero: &str, mode: &str| {
                let set = format!("workload.parallelism.grad_reduce={mode}");
                by(engine, small_with(zero, false, &[set.as_str()]))
            };
            for zero in ["1", "2"] {
                let (over, after) = (run(zero, "overlap"), run(zero, "after_backward"));
                let dp = |e: &StepResult| e.breakdown.exposed_comm_by_kind["dp"];
                println!(
                    "{engine} ZeRO-{zero}: step {} -> {}, dp {} -> {}",
                    over.step_time_s,
                    after.step_time_s,
                    dp(&over),
                    dp(&after)
                );
                assert!(after.step_time_s > over.step_time_s, "{engine} ZeRO-{zero}");
                assert!(dp(&after) > dp(&over), "{engine} ZeRO-{zero}");
                exposed.push(dp(&after));
            }
        }
        for (d, a) in exposed[..2].iter().zip(&exposed[2..]) {
            assert!((d / a - 1.0).abs() < 0.1, "des {d} s, analytic {a} s");
        }
    }

    /// Overlapping the parameter gathers with the next step's forwards shortens the step, in
    /// both engines, and never exposes more data-parallel time than gathering after the step.
    #[test]
    fn overlapped_param_gathers_shorten_the_step() {
        for engine in ["des", "analytic"] {
            let run = |overlap| by(engine, small("1", overlap));
            let (plain, over) = (run(false), run(true));
            let dp = |e: &StepResult| e.breakdown.exposed_comm_by_kind["dp"];
            println!(
                "{engine}: step {} -> {}, dp {} -> {}",
                plain.step_time_s,
                over.step_time_s,
                dp(&plain),
                dp(&over)
            );
            assert!(over.step_time_s < plain.step_time_s, "{engine}");
            assert!(dp(&over) < dp(&plain), "{engine}");
        }
    }

    /// Under FSDP (ZeRO-3) both engines price the per-block gathers, the per-micro-batch gradient
    /// reduce-scatters and their preparation, and the SMs NCCL holds meanwhile: on MosaicML's
    /// MPT-13B (64 H100, compute-bound) they agree.
    #[test]
    fn engines_agree_under_fsdp() {
        let cal = crate::builtin::calibration();
        let t = Source::embedded(
            "topologies/h100-64.yaml",
            include_str!("../../topologies/h100-64.yaml"),
        );
        let w = Source::embedded(
            "workloads/dense/mosaic-h100-mpt-13b.yaml",
            include_str!("../../workloads/dense/mosaic-h100-mpt-13b.yaml"),
        );
        let (c, w) = load(&t, &w, &[Override::parse("topology.nodes=8").unwrap()]).unwrap();
        let des = estimate(&w, &w.layout, &c, &cal, false);
        let ana = crate::step::analytic::estimate(&w, &w.layout, &c, &cal);
        let err = des.step_time_s / ana.step_time_s - 1.0;
        println!(
            "des {} s, analytic {} s: {err:+.4}",
            des.step_time_s, ana.step_time_s
        );
        assert!(err.abs() < 0.02, "{err}");
        assert!(des.breakdown.exposed_comm_by_kind["dp"] > 0.0);
    }

    /// ZeRO-3 shards the weights and pays for it with an all-gather before every block's forward
    /// and backward; ZeRO-1 keeps whole weights and gathers once after the optimizer.
    #[test]
    fn zero3_trades_memory_for_gathers() {
        let run = |zero: &str| {
            let (c, wl) = small(zero, false);
            estimate(&wl, &wl.layout, &c, &crate::builtin::calibration(), false)
        };
        let (z1, z3) = (run("1"), run("3"));
        // Replicated weights shard over the 8 data-parallel GPUs; experts (EP8 on 8 GPUs, one
        // replica each) cannot.
        assert!(
            z3.memory.weights < z1.memory.weights * 0.8,
            "{} vs {}",
            z3.memory.weights,
            z1.memory.weights
        );
        assert!(z3.breakdown.exposed_comm_by_kind["dp"] > z1.breakdown.exposed_comm_by_kind["dp"]);
        assert!(z3.step_time_s > z1.step_time_s);
    }
}
