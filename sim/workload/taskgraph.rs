//! One training step as a task graph: every micro-batch of every chunk on every GPU.
//!
//! Input is a [`StepPlan`] (timed segments per block, from the kernel and communication models);
//! output is a [`TaskGraph`]: tasks on per-GPU streams (compute, weight-gradient compute,
//! communication, pipeline send/recv, data-parallel sync), dependencies, and collective
//! membership. The pipeline order comes from [`schedule::program`]; DualPipe's overlapped
//! forward/backward pairs interleave their segments as DeepSeek-V3's trace shows (combine⁻¹,
//! attention F, experts B, dispatch F, dispatch⁻¹, experts W, experts F, attention B, attention W,
//! combine F). Pure: no timing happens here.

use crate::config::workload::Schedule;
use crate::workload::ops::CommKind;
use crate::workload::schedule::{self, Op};

/// Streams of a GPU.
pub const COMPUTE: u8 = 0;
pub const WGRAD: u8 = 1;
pub const COMM: u8 = 2;
pub const P2P: u8 = 3;
pub const DP: u8 = 4;
pub const STREAMS: usize = 5;

/// No collective.
pub const SOLO: u32 = u32::MAX;

/// What a task is, for the breakdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    Fwd,
    Bwd,
    Wgrad,
    Comm(CommKind),
    Optimizer,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Task {
    pub gpu: u32,
    pub stream: u8,
    pub pass: Pass,
    /// Duration in picoseconds when running alone (compute tasks share SMs when concurrent).
    pub work: u64,
    /// Collective instance, or [`SOLO`].
    pub coll: u32,
    /// Activation bytes: allocated when the task starts (> 0) or freed when it ends (< 0).
    pub mem: f64,
    /// Chunk micro-batches in flight: +1 at start or −1 at end, as `mem`.
    pub inflight: i8,
}

impl Task {
    /// A task with no collective and no memory effect.
    pub fn new(gpu: u32, stream: u8, pass: Pass, work: u64) -> Task {
        Task {
            gpu,
            stream,
            pass,
            work,
            coll: SOLO,
            mem: 0.0,
            inflight: 0,
        }
    }
}

/// How a communication segment groups GPUs in a full (non-representative) graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group {
    pub size: u32,
    pub stride: u32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SegKind {
    Compute,
    /// `parallel`: runs beside the preceding compute segment.
    Comm {
        kind: CommKind,
        parallel: bool,
        group: Group,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegPlan {
    pub kind: SegKind,
    pub ps: u64,
    /// The part of `ps` that grows with this GPU's routed-expert load (expert GEMMs, token
    /// permutes, all-to-all traffic).
    pub load_ps: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct BlockPlan {
    pub fwd: Vec<SegPlan>,
    pub bwd: Vec<SegPlan>,
    pub wgrad: Vec<SegPlan>,
    /// Gradient sync of this block's weights after its last backward (0: none).
    pub grad_sync_ps: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChunkPlan {
    pub blocks: Vec<BlockPlan>,
    /// Activations one micro-batch leaves for the backward pass.
    pub act_bytes: f64,
    /// Sending this chunk's output activations (gradients) to the next (previous) chunk.
    pub p2p_fwd_ps: u64,
    pub p2p_bwd_ps: u64,
}

/// Everything needed to lay out one step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepPlan {
    pub schedule: Schedule,
    pub pp: u64,
    pub vpp: u64,
    pub micro_batches: u64,
    pub chunks: Vec<ChunkPlan>,
    /// Per pipeline rank: optimizer step and the parameter all-gather after it (ZeRO ≥ 1).
    pub optimizer_ps: Vec<u64>,
    pub param_gather_ps: Vec<u64>,
    /// Group of the data-parallel gradient sync.
    pub dp_group: Group,
    /// GPUs per pipeline stage simulated: 1 for a representative replica, or all of them.
    pub replicas: u32,
    /// Routed-expert load relative to balanced, by `[chunk][block][position in the EP group]`
    /// (a replica uses position `replica % len`); empty where balanced.
    pub load: Vec<Vec<Vec<f32>>>,
}

impl StepPlan {
    /// The plan as replica `rep` sees it: expert-load-dependent time scaled by its load.
    pub fn for_replica(&self, rep: u32) -> StepPlan {
        let mut p = self.clone();
        if self.load.is_empty() {
            return p;
        }
        for (c, chunk) in p.chunks.iter_mut().enumerate() {
            for (i, blk) in chunk.blocks.iter_mut().enumerate() {
                let Some(l) = self
                    .load
                    .get(c)
                    .and_then(|b| b.get(i))
                    .filter(|l| !l.is_empty())
                else {
                    continue;
                };
                let f = l[rep as usize % l.len()] as f64;
                for s in blk
                    .fwd
                    .iter_mut()
                    .chain(blk.bwd.iter_mut())
                    .chain(blk.wgrad.iter_mut())
                {
                    s.ps = s.ps - s.load_ps + (s.load_ps as f64 * f).round() as u64;
                }
            }
        }
        p
    }
}

/// The graph.
#[derive(Debug, Clone, Default)]
pub struct TaskGraph {
    pub gpus: u32,
    pub tasks: Vec<Task>,
    /// Number of predecessors of each task.
    pub deps: Vec<u32>,
    /// Successors in CSR form.
    pub succ_start: Vec<u32>,
    pub succ: Vec<u32>,
    /// Task order of each stream (`gpu * STREAMS + stream`), CSR form.
    pub stream_start: Vec<u32>,
    pub stream_tasks: Vec<u32>,
    /// Members of each collective instance.
    pub coll_members: Vec<u32>,
}

impl TaskGraph {
    pub fn successors(&self, t: u32) -> &[u32] {
        &self.succ[self.succ_start[t as usize] as usize..self.succ_start[t as usize + 1] as usize]
    }
    pub fn stream(&self, gpu: u32, stream: u8) -> &[u32] {
        let i = gpu as usize * STREAMS + stream as usize;
        &self.stream_tasks[self.stream_start[i] as usize..self.stream_start[i + 1] as usize]
    }
}

/// Placeholder for a dependency on a send another rank has not emitted yet.
#[derive(Clone, Copy)]
enum Pending {
    Fwd { chunk: u32, mb: u32 },
    Bwd { chunk: u32, mb: u32 },
}

struct Builder {
    tasks: Vec<Task>,
    edges: Vec<(u32, u32)>,
    streams: Vec<Vec<u32>>,
    coll_members: Vec<u32>,
    /// Per group key, the instances created so far (the k-th collective of every member matches).
    group_instances: std::collections::BTreeMap<(u8, u32, u32), Vec<u32>>,
    group_seen: std::collections::BTreeMap<(u8, u32, u32, u32), u32>,
}

impl Builder {
    fn add(&mut self, t: Task, deps: &[u32]) -> u32 {
        let id = self.tasks.len() as u32;
        self.streams[t.gpu as usize * STREAMS + t.stream as usize].push(id);
        self.tasks.push(t);
        for &d in deps {
            self.edges.push((d, id));
        }
        id
    }

    /// The collective instance for `gpu`'s next collective of class `class` in `group`.
    fn instance(&mut self, class: u8, rank: u32, group: u32, gpu: u32, size: u32) -> u32 {
        if size <= 1 {
            return SOLO;
        }
        let seen = self
            .group_seen
            .entry((class, rank, group, gpu))
            .or_insert(0);
        let k = *seen as usize;
        *seen += 1;
        let list = self
            .group_instances
            .entry((class, rank, group))
            .or_default();
        if k == list.len() {
            list.push(self.coll_members.len() as u32);
            self.coll_members.push(size);
        }
        list[k]
    }
}

/// Lays out one step.
pub fn build(plan: &StepPlan) -> TaskGraph {
    let pp = plan.pp as u32;
    let reps = plan.replicas.max(1);
    let gpus = pp * reps;
    let m = plan.micro_batches as u32;
    let chunks = plan.chunks.len() as u32;
    let mut b = Builder {
        tasks: Vec::new(),
        edges: Vec::new(),
        streams: vec![Vec::new(); gpus as usize * STREAMS],
        coll_members: Vec::new(),
        group_instances: Default::default(),
        group_seen: Default::default(),
    };
    // Sends, by (replica, chunk, micro-batch); deps on sends not yet built are resolved at the end.
    let slot = |rep: u32, c: u32, mb: u32| ((rep * chunks + c) * m + mb) as usize;
    let mut send_f = vec![u32::MAX; (reps * chunks * m) as usize];
    let mut send_b = send_f.clone();
    // Last forward task of (replica, chunk, mb): the loss needs it before the backward.
    let mut last_f = send_f.clone();
    let mut pending: Vec<(u32, u32, Pending)> = Vec::new(); // (task, replica, what)

    let original = plan;
    for rep in 0..reps {
        let scaled = original.for_replica(rep);
        let plan = &scaled;
        for rank in 0..pp {
            let gpu = rank * reps + rep;
            let program = schedule::program(
                plan.schedule,
                plan.pp,
                plan.vpp,
                plan.micro_batches,
                rank as u64,
            );
            let mut last_compute: Option<u32> = None;
            let mut deferred: std::collections::VecDeque<(u32, u32, u32)> = Default::default(); // (chunk, mb, last B task)
            let mut last_w_of_block: Vec<Vec<Option<u32>>> = plan
                .chunks
                .iter()
                .map(|c| vec![None; c.blocks.len()])
                .collect();

            // Emits one pass of one block; returns its last task. `after` are the data deps.
            let mut emit_segs = |b: &mut Builder,
                                 segs: &[SegPlan],
                                 pass: Pass,
                                 after: Vec<u32>,
                                 last_compute: &mut Option<u32>|
             -> u32 {
                let mut prev = after;
                let mut before_prev: Vec<u32> = Vec::new();
                for s in segs {
                    let (stream, p, coll, deps) = match s.kind {
                        SegKind::Compute => (COMPUTE, pass, SOLO, prev.clone()),
                        SegKind::Comm {
                            kind,
                            parallel,
                            group,
                        } => {
                            let gid = (rep / (group.size * group.stride)) * group.stride
                                + rep % group.stride;
                            let coll = b.instance(kind as u8, rank, gid, gpu, group.size.min(reps));
                            let deps = if parallel {
                                before_prev.clone()
                            } else {
                                prev.clone()
                            };
                            (COMM, Pass::Comm(kind), coll, deps)
                        }
                    };
                    let id = b.add(
                        Task {
                            gpu,
                            stream,
                            pass: p,
                            work: s.ps,
                            coll,
                            mem: 0.0,
                            inflight: 0,
                        },
                        &deps,
                    );
                    if stream == COMPUTE {
                        *last_compute = Some(id);
                    }
                    match s.kind {
                        SegKind::Comm { parallel: true, .. } => {
                            // The next segment waits for both the compute beside it and this.
                            prev.push(id);
                        }
                        _ => {
                            before_prev = std::mem::replace(&mut prev, vec![id]);
                        }
                    }
                }
                *prev.iter().max().expect("a pass has at least one segment")
            };

            for op in program {
                match op {
                    Op::F { chunk, mb } => {
                        let t = forward(
                            &mut b,
                            plan,
                            &mut emit_segs,
                            &mut last_compute,
                            rep,
                            chunk,
                            mb,
                            &mut pending,
                            &send_f,
                            slot,
                        );
                        finish_forward(
                            &mut b,
                            plan,
                            gpu,
                            rep,
                            chunk,
                            mb,
                            &[t],
                            &mut send_f,
                            &mut last_f,
                            slot,
                        );
                    }
                    Op::B { chunk, mb, defer_w } => {
                        let last = backward(
                            &mut b,
                            plan,
                            &mut emit_segs,
                            &mut last_compute,
                            rep,
                            chunk,
                            mb,
                            &mut pending,
                            &send_b,
                            &last_f,
                            slot,
                        );
                        if defer_w {
                            finish_backward(
                                &mut b,
                                plan,
                                gpu,
                                rep,
                                chunk,
                                mb,
                                &[last],
                                &mut send_b,
                                slot,
                            );
                            deferred.push_back((chunk, mb, last));
                        } else {
                            // Weight gradients computed with the backward: the gradient leaves after both.
                            let lw = weights(
                                &mut b,
                                plan,
                                &mut last_compute,
                                gpu,
                                chunk,
                                last,
                                &mut last_w_of_block,
                            );
                            finish_backward(
                                &mut b,
                                plan,
                                gpu,
                                rep,
                                chunk,
                                mb,
                                &[last, lw],
                                &mut send_b,
                                slot,
                            );
                        }
                    }
                    Op::W => {
                        let (chunk, _mb, last) = deferred
                            .pop_front()
                            .expect("W with a deferred backward (checked by tests)");
                        weights(
                            &mut b,
                            plan,
                            &mut last_compute,
                            gpu,
                            chunk,
                            last,
                            &mut last_w_of_block,
                        );
                    }
                    Op::FB { f, b: bk } => {
                        overlapped(
                            &mut b,
                            plan,
                            &mut emit_segs,
                            &mut last_compute,
                            gpu,
                            rep,
                            f,
                            bk,
                            &mut pending,
                            &mut send_f,
                            &mut send_b,
                            &mut last_f,
                            slot,
                            &mut last_w_of_block,
                        );
                    }
                }
            }
            // Gradient sync per block after its last weight gradients, then optimizer, then gather.
            let mut syncs = Vec::new();
            for (c, blocks) in last_w_of_block.iter().enumerate() {
                for (i, w) in blocks.iter().enumerate() {
                    let bp = &plan.chunks[c].blocks[i];
                    if let (Some(w), true) = (w, bp.grad_sync_ps > 0) {
                        let g = plan.dp_group;
                        let gid = (rep / (g.size * g.stride)) * g.stride + rep % g.stride;
                        let coll = b.instance(CommKind::Dp as u8, rank, gid, gpu, g.size.min(reps));
                        syncs.push(b.add(
                            Task {
                                gpu,
                                stream: DP,
                                pass: Pass::Comm(CommKind::Dp),
                                work: bp.grad_sync_ps,
                                coll,
                                mem: 0.0,
                                inflight: 0,
                            },
                            &[*w],
                        ));
                    }
                }
            }
            let mut opt_deps = syncs.clone();
            opt_deps.extend(last_compute);
            let opt = b.add(
                Task::new(
                    gpu,
                    COMPUTE,
                    Pass::Optimizer,
                    plan.optimizer_ps[rank as usize],
                ),
                &opt_deps,
            );
            if plan.param_gather_ps[rank as usize] > 0 {
                let g = plan.dp_group;
                let gid = (rep / (g.size * g.stride)) * g.stride + rep % g.stride;
                let coll = b.instance(CommKind::Dp as u8, rank, gid, gpu, g.size.min(reps));
                b.add(
                    Task {
                        gpu,
                        stream: DP,
                        pass: Pass::Comm(CommKind::Dp),
                        work: plan.param_gather_ps[rank as usize],
                        coll,
                        mem: 0.0,
                        inflight: 0,
                    },
                    &[opt],
                );
            }
        }
    }
    for (task, rep, what) in pending {
        let from = match what {
            Pending::Fwd { chunk, mb } => send_f[slot(rep, chunk, mb)],
            Pending::Bwd { chunk, mb } => send_b[slot(rep, chunk, mb)],
        };
        assert!(
            from != u32::MAX,
            "a receive without its send (schedule bug)"
        );
        b.edges.push((from, task));
    }
    finish(b, gpus)
}

type EmitFn<'a> = dyn FnMut(&mut Builder, &[SegPlan], Pass, Vec<u32>, &mut Option<u32>) -> u32 + 'a;

/// Forward of one chunk: its blocks in order, after the activation from the previous chunk.
#[allow(clippy::too_many_arguments)]
fn forward(
    b: &mut Builder,
    plan: &StepPlan,
    emit: &mut EmitFn,
    last_compute: &mut Option<u32>,
    rep: u32,
    chunk: u32,
    mb: u32,
    pending: &mut Vec<(u32, u32, Pending)>,
    send_f: &[u32],
    slot: impl Fn(u32, u32, u32) -> usize,
) -> u32 {
    let first_task = b.tasks.len() as u32;
    let mut after = Vec::new();
    if chunk > 0 {
        let s = send_f[slot(rep, chunk - 1, mb)];
        if s != u32::MAX {
            after.push(s);
        } else {
            pending.push((
                first_task,
                rep,
                Pending::Fwd {
                    chunk: chunk - 1,
                    mb,
                },
            ));
        }
    }
    let mut last = u32::MAX;
    for (i, blk) in plan.chunks[chunk as usize].blocks.iter().enumerate() {
        last = emit(b, &blk.fwd, Pass::Fwd, after.clone(), last_compute);
        if i == 0 {
            let t = &mut b.tasks[first_task as usize];
            t.mem = plan.chunks[chunk as usize].act_bytes;
            t.inflight = 1;
        }
        after = vec![last];
    }
    last
}

/// Sends a chunk's output to the neighbouring chunk (`to`) unless both run on the same rank;
/// returns the task a receiver waits for.
#[allow(clippy::too_many_arguments)]
fn send(
    b: &mut Builder,
    plan: &StepPlan,
    gpu: u32,
    chunk: u32,
    to: Option<u32>,
    mb: u32,
    after: &[u32],
    work: u64,
) -> u32 {
    let last = *after.iter().max().expect("a pass has tasks");
    let rank = |c| schedule::rank_of(plan.schedule, plan.pp, plan.micro_batches, c, mb);
    match to {
        Some(to) if rank(to) != rank(chunk) => {
            b.add(Task::new(gpu, P2P, Pass::Comm(CommKind::Pp), work), after)
        }
        _ => last,
    }
}

#[allow(clippy::too_many_arguments)]
fn finish_forward(
    b: &mut Builder,
    plan: &StepPlan,
    gpu: u32,
    rep: u32,
    chunk: u32,
    mb: u32,
    after: &[u32],
    send_f: &mut [u32],
    last_f: &mut [u32],
    slot: impl Fn(u32, u32, u32) -> usize,
) {
    last_f[slot(rep, chunk, mb)] = *after.iter().max().expect("a forward has tasks");
    let next = (chunk + 1 < plan.chunks.len() as u32).then_some(chunk + 1);
    send_f[slot(rep, chunk, mb)] = send(
        b,
        plan,
        gpu,
        chunk,
        next,
        mb,
        after,
        plan.chunks[chunk as usize].p2p_fwd_ps,
    );
}

/// Backward (input gradients) of one chunk: blocks in reverse, after the gradient from the next
/// chunk (or the loss). Returns the last task.
#[allow(clippy::too_many_arguments)]
fn backward(
    b: &mut Builder,
    plan: &StepPlan,
    emit: &mut EmitFn,
    last_compute: &mut Option<u32>,
    rep: u32,
    chunk: u32,
    mb: u32,
    pending: &mut Vec<(u32, u32, Pending)>,
    send_b: &[u32],
    last_f: &[u32],
    slot: impl Fn(u32, u32, u32) -> usize + Copy,
) -> u32 {
    let first_task = b.tasks.len() as u32;
    let mut after = vec![last_f[slot(rep, chunk, mb)]];
    if chunk + 1 < plan.chunks.len() as u32 {
        let s = send_b[slot(rep, chunk + 1, mb)];
        if s != u32::MAX {
            after.push(s);
        } else {
            pending.push((
                first_task,
                rep,
                Pending::Bwd {
                    chunk: chunk + 1,
                    mb,
                },
            ));
        }
    }
    let mut last = u32::MAX;
    for blk in plan.chunks[chunk as usize].blocks.iter().rev() {
        last = emit(b, &blk.bwd, Pass::Bwd, after.clone(), last_compute);
        after = vec![last];
    }
    let t = &mut b.tasks[last as usize];
    t.mem = -plan.chunks[chunk as usize].act_bytes;
    t.inflight = -1;
    last
}

#[allow(clippy::too_many_arguments)]
fn finish_backward(
    b: &mut Builder,
    plan: &StepPlan,
    gpu: u32,
    rep: u32,
    chunk: u32,
    mb: u32,
    after: &[u32],
    send_b: &mut [u32],
    slot: impl Fn(u32, u32, u32) -> usize,
) {
    let prev = chunk.checked_sub(1);
    send_b[slot(rep, chunk, mb)] = send(
        b,
        plan,
        gpu,
        chunk,
        prev,
        mb,
        after,
        plan.chunks[chunk as usize].p2p_bwd_ps,
    );
}

/// The stream weight gradients run on: DualPipe's go to a second compute stream that shares
/// the SMs with the first (DeepSeek's trace, streams 7 and 23); everywhere else they run on the
/// compute stream where the schedule places them (ZB1P's deferred W fill bubbles in order).
fn wgrad_stream(s: Schedule) -> u8 {
    match s {
        Schedule::Dualpipe | Schedule::Dualpipev => WGRAD,
        _ => COMPUTE,
    }
}

/// One weight-gradient task: after `after` and no earlier than the compute task emitted before it.
fn add_wgrad(
    b: &mut Builder,
    plan: &StepPlan,
    gpu: u32,
    work: u64,
    after: u32,
    last_compute: Option<u32>,
) -> u32 {
    let mut deps = vec![after];
    deps.extend(last_compute);
    b.add(
        Task::new(gpu, wgrad_stream(plan.schedule), Pass::Wgrad, work),
        &deps,
    )
}

/// Weight gradients of one chunk's backward, no earlier than the schedule puts them (after the
/// compute task emitted before them).
#[allow(clippy::too_many_arguments)]
fn weights(
    b: &mut Builder,
    plan: &StepPlan,
    last_compute: &mut Option<u32>,
    gpu: u32,
    chunk: u32,
    after_b: u32,
    last_w: &mut [Vec<Option<u32>>],
) -> u32 {
    let mut prev = after_b;
    for (i, blk) in plan.chunks[chunk as usize].blocks.iter().enumerate().rev() {
        for s in &blk.wgrad {
            prev = add_wgrad(b, plan, gpu, s.ps, prev, *last_compute);
        }
        last_w[chunk as usize][i] = Some(prev);
    }
    prev
}

/// DualPipe's F&B: the forward of one micro-batch and the backward of another, block by block,
/// segments alternating so one's communication hides under the other's compute.
#[allow(clippy::too_many_arguments)]
fn overlapped(
    b: &mut Builder,
    plan: &StepPlan,
    emit: &mut EmitFn,
    last_compute: &mut Option<u32>,
    gpu: u32,
    rep: u32,
    f: (u32, u32),
    bk: (u32, u32),
    pending: &mut Vec<(u32, u32, Pending)>,
    send_f: &mut [u32],
    send_b: &mut [u32],
    last_f: &mut [u32],
    slot: impl Fn(u32, u32, u32) -> usize + Copy,
    last_w: &mut [Vec<Option<u32>>],
) {
    let (fc, fmb) = f;
    let (bc, bmb) = bk;
    let fblocks = &plan.chunks[fc as usize].blocks;
    let bblocks: Vec<(usize, &BlockPlan)> = plan.chunks[bc as usize]
        .blocks
        .iter()
        .enumerate()
        .rev()
        .collect();
    // Data deps of the first forward and first backward segments.
    let mut f_after: Vec<u32> = Vec::new();
    let mut f_pending = None;
    if fc > 0 {
        let s = send_f[slot(rep, fc - 1, fmb)];
        if s != u32::MAX {
            f_after.push(s);
        } else {
            f_pending = Some(Pending::Fwd {
                chunk: fc - 1,
                mb: fmb,
            });
        }
    }
    let mut b_after = vec![last_f[slot(rep, bc, bmb)]];
    let mut b_pending = None;
    if bc + 1 < plan.chunks.len() as u32 {
        let s = send_b[slot(rep, bc + 1, bmb)];
        if s != u32::MAX {
            b_after.push(s);
        } else {
            b_pending = Some(Pending::Bwd {
                chunk: bc + 1,
                mb: bmb,
            });
        }
    }
    let n = fblocks.len().max(bblocks.len());
    let mut f_first_task = None;
    let mut w_last: Option<u32> = None;
    let mut b_last = u32::MAX;
    let mut f_last = u32::MAX;
    for i in 0..n {
        let fseg: &[SegPlan] = fblocks.get(i).map(|x| x.fwd.as_slice()).unwrap_or(&[]);
        let (bi, bseg, wseg): (Option<usize>, &[SegPlan], &[SegPlan]) = match bblocks.get(i) {
            Some((bi, x)) => (Some(*bi), x.bwd.as_slice(), x.wgrad.as_slice()),
            None => (None, &[], &[]),
        };
        // Alternate: backward segment k, forward segment k, ...; weight segments follow the
        // backward's compute segments.
        let mut fi = 0;
        let mut bj = 0;
        let mut wk = 0;
        let mut b_prev = b_after.clone();
        let mut f_prev = f_after.clone();
        while fi < fseg.len() || bj < bseg.len() {
            if bj < bseg.len() {
                let s = bseg[bj];
                let id = emit(b, &[s], Pass::Bwd, b_prev.clone(), last_compute);
                if let Some(p) = b_pending.take() {
                    pending.push((id, rep, p));
                }
                b_prev = vec![id];
                b_last = id;
                bj += 1;
                if matches!(s.kind, SegKind::Compute) && wk < wseg.len() {
                    let w = add_wgrad(b, plan, gpu, wseg[wk].ps, id, *last_compute);
                    wk += 1;
                    w_last = Some(w);
                    if let Some(bi) = bi {
                        last_w[bc as usize][bi] = Some(w);
                    }
                }
            }
            if fi < fseg.len() {
                let s = fseg[fi];
                let id = emit(b, &[s], Pass::Fwd, f_prev.clone(), last_compute);
                if f_first_task.is_none() {
                    f_first_task = Some(id);
                    let t = &mut b.tasks[id as usize];
                    t.mem = plan.chunks[fc as usize].act_bytes;
                    t.inflight = 1;
                    if let Some(p) = f_pending.take() {
                        pending.push((id, rep, p));
                    }
                }
                f_prev = vec![id];
                f_last = id;
                fi += 1;
            }
        }
        // Weight segments the backward had no compute for.
        while wk < wseg.len() {
            let w = add_wgrad(b, plan, gpu, wseg[wk].ps, b_last, *last_compute);
            wk += 1;
            w_last = Some(w);
            if let Some(bi) = bi {
                last_w[bc as usize][bi] = Some(w);
            }
        }
        f_after = if fseg.is_empty() { f_after } else { f_prev };
        b_after = if bseg.is_empty() { b_after } else { b_prev };
    }
    let t = &mut b.tasks[b_last as usize];
    t.mem = -plan.chunks[bc as usize].act_bytes;
    t.inflight = -1;
    // DualPipe sends both results once the pair is done.
    let mut all = vec![f_last, b_last];
    all.extend(w_last);
    finish_forward(b, plan, gpu, rep, fc, fmb, &all, send_f, last_f, slot);
    last_f[slot(rep, fc, fmb)] = f_last;
    finish_backward(b, plan, gpu, rep, bc, bmb, &all, send_b, slot);
}

fn finish(b: Builder, gpus: u32) -> TaskGraph {
    let n = b.tasks.len();
    let mut deps = vec![0u32; n];
    let mut count = vec![0u32; n + 1];
    let mut edges = b.edges;
    edges.sort_unstable();
    edges.dedup();
    for &(from, to) in &edges {
        deps[to as usize] += 1;
        count[from as usize + 1] += 1;
    }
    for i in 0..n {
        count[i + 1] += count[i];
    }
    let mut fill = count.clone();
    let mut succ = vec![0u32; edges.len()];
    for &(from, to) in &edges {
        succ[fill[from as usize] as usize] = to;
        fill[from as usize] += 1;
    }
    let mut stream_start = Vec::with_capacity(b.streams.len() + 1);
    let mut stream_tasks = Vec::with_capacity(n);
    stream_start.push(0);
    for s in &b.streams {
        stream_tasks.extend_from_slice(s);
        stream_start.push(stream_tasks.len() as u32);
    }
    TaskGraph {
        gpus,
        tasks: b.tasks,
        deps,
        succ_start: count,
        succ,
        stream_start,
        stream_tasks,
        coll_members: b.coll_members,
    }
}
