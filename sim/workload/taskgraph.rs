//! One training step as a task graph: every micro-batch of every chunk on every GPU.
//!
//! Input is a [`StepPlan`] (timed segments per block, from the kernel and communication models);
//! output is a [`TaskGraph`]: tasks on per-GPU streams (compute, weight-gradient compute,
//! communication, pipeline send/recv, data-parallel sync), dependencies, and collective
//! membership. The pipeline order comes from [`schedule::program`]; DualPipe's overlapped
//! forward/backward pairs interleave their segments as DeepSeek-V3's trace shows (combine⁻¹,
//! attention F, experts B, dispatch F, dispatch⁻¹, experts W, experts F, attention B, attention W,
//! combine F). Pure: no timing happens here.

use crate::domain::Schedule;
use crate::workload::ops::CommKind;
use crate::workload::schedule::{self, Op};
use std::collections::{BTreeMap, VecDeque};

/// Streams of a GPU.
pub const COMPUTE: u8 = 0;
pub const WGRAD: u8 = 1;
pub const COMM: u8 = 2;
pub const P2P: u8 = 3;
pub const DP: u8 = 4;
pub const STREAMS: usize = 5;
/// The streams' names, by index.
pub const STREAM_NAMES: [&str; STREAMS] = ["compute", "wgrad", "comm", "pipeline", "data_parallel"];

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

/// Where a task sits in the step, for traces and reports (the engine never reads it): chunk,
/// block within the chunk, micro-batch, and the segment's [`SegDetail`] in
/// [`StepPlan::details`]. [`Label::NONE`]'s `u16::MAX` / `u32::MAX` mean "not applicable".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label {
    pub chunk: u16,
    pub block: u16,
    pub mb: u16,
    pub detail: u32,
}

impl Label {
    pub const NONE: Label = Label {
        chunk: u16::MAX,
        block: u16::MAX,
        mb: u16::MAX,
        detail: NO_DETAIL,
    };
    fn at(chunk: u32, block: usize, mb: u32) -> Label {
        let n = |v: u64| u16::try_from(v).unwrap_or(u16::MAX);
        Label {
            chunk: n(chunk as u64),
            block: n(block as u64),
            mb: n(mb as u64),
            detail: NO_DETAIL,
        }
    }
}

/// No [`SegDetail`].
pub const NO_DETAIL: u32 = u32::MAX;

/// What one timed segment is, for traces and reports: its kernels (or its transfer) with their
/// FLOPs and bytes. The engine never reads it; the DES prices the shared network's routes from
/// its operations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SegDetail {
    pub name: String,
    /// The model layer of the segment's block (`None`: the embedding, the head and MTP).
    pub layer: Option<u32>,
    pub kernels: Vec<KernelDetail>,
    /// Bytes a communication segment moves from this GPU's buffer (0 for compute).
    pub bytes: f64,
    /// SMs the segment's kernels may use.
    pub sms: u32,
    /// Bytes on the wire one instance of a transfer puts on each link (link id = edge index of
    /// the cluster graph), as the flow-level network carries it alone; empty for compute.
    pub links: Vec<(u32, f64)>,
    /// The communication operations the segment runs, one after another.
    pub ops: Vec<crate::net::CommOp>,
}

/// One kernel of a compute segment: its time alone on the segment's SMs, FLOPs and HBM bytes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KernelDetail {
    pub name: String,
    pub ps: u64,
    pub flops: f64,
    pub bytes: f64,
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
    pub label: Label,
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
            label: Label::NONE,
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
    /// Its [`SegDetail`] in [`StepPlan::details`], or [`NO_DETAIL`].
    pub detail: u32,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct BlockPlan {
    pub fwd: Vec<SegPlan>,
    pub bwd: Vec<SegPlan>,
    pub wgrad: Vec<SegPlan>,
    /// Gradient sync of this block's weights after its last backward (0: none), or after every
    /// backward with [`StepPlan::grad_sync_every_microbatch`].
    pub grad_sync_ps: u64,
    /// All-gather of this block's updated weights (ZeRO-1/2 with overlapped parameter gathers):
    /// issued at the start of the step in first-forward order, done before the block's first
    /// forward (0: none).
    pub step_gather_ps: u64,
    /// [`SegDetail`]s of the gradient sync and the step gather.
    pub sync_detail: (u32, u32),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChunkPlan {
    pub blocks: Vec<BlockPlan>,
    /// Activations one micro-batch leaves for the backward pass.
    pub act_bytes: f64,
    /// Sending this chunk's output activations (gradients) to the next (previous) chunk.
    pub p2p_fwd_ps: u64,
    pub p2p_bwd_ps: u64,
    /// [`SegDetail`]s of the two sends.
    pub p2p_detail: (u32, u32),
}

/// Everything needed to lay out one step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepPlan {
    pub schedule: Schedule,
    pub pp: u64,
    pub vpp: u64,
    pub micro_batches: u64,
    pub chunks: Vec<ChunkPlan>,
    /// Per pipeline rank: optimizer step and the parameter all-gather after it (ZeRO-1/2
    /// without overlapped parameter gathers).
    pub optimizer_ps: Vec<u64>,
    pub param_gather_ps: Vec<u64>,
    /// [`SegDetail`] of each rank's parameter gather.
    pub param_gather_detail: Vec<u32>,
    /// Gradients are reduce-scattered after every micro-batch's backward, not once per step
    /// (sharded gradients: ZeRO-2 and ZeRO-3 / FSDP FULL_SHARD keep no full gradient to
    /// accumulate into).
    pub grad_sync_every_microbatch: bool,
    /// The gradient sync is not overlapped ([`GradReduce::AfterBackward`]): the buckets leave
    /// once the backward is done (the step's, or with every-micro-batch syncs each pass's) and
    /// compute waits for them.
    ///
    /// [`GradReduce::AfterBackward`]: crate::domain::GradReduce::AfterBackward
    pub grad_sync_after_backward: bool,
    /// Megatron-Core's combined 1F1B: each rank's adjacent forward and backward of different
    /// micro-batches run as one overlapped pair ([`schedule::combined_program`]).
    pub combined_1f1b: bool,
    /// Two-micro-batch overlap: micro-batches `2j` and `2j+1` are the halves of one, and go
    /// through each chunk together ([`schedule::twin_program`]).
    pub two_micro_batch: bool,
    /// Group of the data-parallel gradient sync.
    pub dp_group: Group,
    /// SMs compute kernels may use (the GPU's, less any reserved for expert-parallel traffic).
    pub compute_sms: u32,
    /// SMs a data-parallel NCCL collective holds while it runs: one CTA per channel, and NCCL's
    /// CTAs never share an SM with compute kernels, which slow down meanwhile.
    pub dp_sms: u32,
    /// Whether each kind of traffic (indexed by `CommKind`) goes through the GPU's NIC: for the
    /// trace's NIC counters (the shared network times every transfer).
    pub nic: [bool; 5],
    /// GPUs per pipeline stage simulated: 1 for a representative replica, or all of them.
    pub replicas: u32,
    /// Routed-expert load relative to balanced, by `[chunk][block][position in the EP group]`
    /// (a replica uses position `replica % len`); empty where balanced.
    pub load: Vec<Vec<Vec<f32>>>,
    /// What each segment is, indexed by [`SegPlan::detail`]: for traces, never for timing.
    pub details: Vec<SegDetail>,
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
    /// As [`StepPlan::compute_sms`], [`StepPlan::dp_sms`] and [`StepPlan::nic`].
    pub compute_sms: u32,
    pub dp_sms: u32,
    pub nic: [bool; 5],
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

/// A dependency on a send another rank has not emitted yet.
#[derive(Clone, Copy)]
enum Pending {
    Fwd { chunk: u32, mb: u32 },
    Bwd { chunk: u32, mb: u32 },
}

/// The graph under construction, and the sends every rank's receives refer to.
struct Builder {
    tasks: Vec<Task>,
    edges: Vec<(u32, u32)>,
    streams: Vec<Vec<u32>>,
    coll_members: Vec<u32>,
    /// Per group key, the instances created so far (the k-th collective of every member matches).
    group_instances: BTreeMap<(u8, u32, u32), Vec<u32>>,
    group_seen: BTreeMap<(u8, u32, u32, u32), u32>,
    chunks: u32,
    micro_batches: u32,
    /// Send task by (replica, chunk, micro-batch), forward and backward; `u32::MAX` until built.
    send_f: Vec<u32>,
    send_b: Vec<u32>,
    /// Last forward task of (replica, chunk, micro-batch): the loss needs it before the backward.
    last_f: Vec<u32>,
    /// Receives whose send was not built yet: (task, replica, what).
    pending: Vec<(u32, u32, Pending)>,
    /// Where the tasks being added sit (chunk, block, micro-batch), stamped on each.
    at: Label,
}

/// One GPU's view while its program is laid out.
struct Rank<'p> {
    plan: &'p StepPlan,
    gpu: u32,
    rank: u32,
    rep: u32,
    reps: u32,
    /// The compute-stream task emitted last: weight gradients never start before it.
    last_compute: Option<u32>,
    /// Last weight-gradient task of each block, for its gradient bucket.
    last_w: Vec<Vec<Option<u32>>>,
    /// Backward passes of each chunk this rank runs in the step, and those whose weight
    /// gradients are laid out so far.
    passes: Vec<u32>,
    done: Vec<u32>,
    /// Gradient buckets issued: the optimizer waits for them.
    buckets: Vec<u32>,
    /// Buckets ready but held until the backward is done (not overlapped), and the buckets the
    /// next compute task must wait for.
    held: Vec<(u64, u32)>,
    barrier: Vec<u32>,
    /// The parameter gather of each block; whether each chunk ran its first forward.
    gather: Vec<Vec<Option<u32>>>,
    forwarded: Vec<bool>,
}

impl Rank<'_> {
    fn group_id(&self, g: Group) -> u32 {
        (self.rep / (g.size * g.stride)) * g.stride + self.rep % g.stride
    }
    fn chunk(&self, c: u32) -> &ChunkPlan {
        &self.plan.chunks[c as usize]
    }
}

impl Builder {
    fn add(&mut self, mut t: Task, deps: &[u32]) -> u32 {
        t.label = Label {
            detail: t.label.detail,
            ..self.at
        };
        let id = u32::try_from(self.tasks.len()).expect("fewer than 2^32 tasks in a step");
        self.streams[t.gpu as usize * STREAMS + t.stream as usize].push(id);
        self.tasks.push(t);
        for &d in deps {
            self.edges.push((d, id));
        }
        id
    }

    fn slot(&self, rep: u32, chunk: u32, mb: u32) -> usize {
        ((rep * self.chunks + chunk) * self.micro_batches + mb) as usize
    }

    /// The collective instance for this GPU's next collective of `class` in its group `g`.
    fn instance(&mut self, r: &Rank, class: u8, g: Group) -> u32 {
        let size = g.size.min(r.reps);
        if size <= 1 {
            return SOLO;
        }
        let group = r.group_id(g);
        let seen = self
            .group_seen
            .entry((class, r.rank, group, r.gpu))
            .or_insert(0);
        let k = *seen as usize;
        *seen += 1;
        let list = self
            .group_instances
            .entry((class, r.rank, group))
            .or_default();
        if k == list.len() {
            list.push(self.coll_members.len() as u32);
            self.coll_members.push(size);
        }
        list[k]
    }

    /// Depend on a send, now or once it is built.
    fn wait_for(&mut self, task: u32, rep: u32, what: Pending) {
        let from = match what {
            Pending::Fwd { chunk, mb } => self.send_f[self.slot(rep, chunk, mb)],
            Pending::Bwd { chunk, mb } => self.send_b[self.slot(rep, chunk, mb)],
        };
        if from == u32::MAX {
            self.pending.push((task, rep, what));
        } else {
            self.edges.push((from, task));
        }
    }

    /// Emits segments of one pass in order; returns what the next segment must wait for (the
    /// last task, and a parallel segment beside it). `after` are the data deps.
    fn emit(&mut self, r: &mut Rank, segs: &[SegPlan], pass: Pass, after: Vec<u32>) -> Vec<u32> {
        let mut prev = after;
        let mut before_prev: Vec<u32> = Vec::new();
        for s in segs {
            let (stream, p, coll, deps) = match s.kind {
                SegKind::Compute => {
                    let mut deps = prev.clone();
                    deps.append(&mut r.barrier);
                    (COMPUTE, pass, SOLO, deps)
                }
                SegKind::Comm {
                    kind,
                    parallel,
                    group,
                } => {
                    let coll = self.instance(r, kind as u8, group);
                    let deps = if parallel {
                        before_prev.clone()
                    } else {
                        prev.clone()
                    };
                    (COMM, Pass::Comm(kind), coll, deps)
                }
            };
            let id = self.add(
                Task {
                    coll,
                    label: Label {
                        detail: s.detail,
                        ..Label::NONE
                    },
                    ..Task::new(r.gpu, stream, p, s.ps)
                },
                &deps,
            );
            if stream == COMPUTE {
                r.last_compute = Some(id);
            }
            match s.kind {
                // The next segment waits for both the compute beside it and this.
                SegKind::Comm { parallel: true, .. } => prev.push(id),
                _ => before_prev = std::mem::replace(&mut prev, vec![id]),
            }
        }
        assert!(!prev.is_empty(), "a pass has at least one segment");
        prev
    }

    /// Forward of one chunk: its blocks in order, after the activation from the previous chunk.
    fn forward(&mut self, r: &mut Rank, chunk: u32, mb: u32) -> u32 {
        let mut after = Vec::new();
        for (i, blk) in r.chunk(chunk).blocks.clone().iter().enumerate() {
            self.at = Label::at(chunk, i, mb);
            let gathered = self.param_wait(r, chunk, i);
            let start = self.tasks.len() as u32;
            let first = start + leading_parallel(&blk.fwd);
            after = self.emit(r, &blk.fwd, Pass::Fwd, after);
            self.edges.extend(gathered.map(|g| (g, start)));
            if i == 0 {
                self.first_forward(r, first, chunk, mb);
            }
        }
        r.forwarded[chunk as usize] = true;
        *after.iter().max().expect("a forward has tasks")
    }

    /// Before block `bi`'s first forward of the step: the gather of its updated weights it must
    /// wait for, if any.
    fn param_wait(&self, r: &Rank, chunk: u32, bi: usize) -> Option<u32> {
        if r.forwarded[chunk as usize] {
            return None;
        }
        r.gather[chunk as usize][bi]
    }

    /// The first task of a chunk's forward holds its activations and waits for its input.
    fn first_forward(&mut self, r: &Rank, task: u32, chunk: u32, mb: u32) {
        let t = &mut self.tasks[task as usize];
        t.mem = r.chunk(chunk).act_bytes;
        t.inflight = 1;
        if chunk > 0 {
            self.wait_for(
                task,
                r.rep,
                Pending::Fwd {
                    chunk: chunk - 1,
                    mb,
                },
            );
        }
    }

    /// Sends a chunk's output to the neighbouring chunk `to` unless both run on the same rank;
    /// returns the task a receiver waits for.
    fn send(
        &mut self,
        r: &Rank,
        chunk: u32,
        to: Option<u32>,
        mb: u32,
        after: &[u32],
        (work, detail): (u64, u32),
    ) -> u32 {
        let p = r.plan;
        let rank = |c| schedule::rank_of(p.schedule, p.pp, p.micro_batches, c, mb);
        match to {
            Some(to) if rank(to) != rank(chunk) => {
                let label = Label {
                    detail,
                    ..Label::NONE
                };
                self.add(
                    Task {
                        label,
                        ..Task::new(r.gpu, P2P, Pass::Comm(CommKind::Pp), work)
                    },
                    after,
                )
            }
            _ => *after.iter().max().expect("a pass has tasks"),
        }
    }

    fn finish_forward(&mut self, r: &Rank, chunk: u32, mb: u32, after: &[u32]) {
        self.at = Label::at(chunk, usize::MAX, mb);
        let slot = self.slot(r.rep, chunk, mb);
        self.last_f[slot] = *after.iter().max().expect("a forward has tasks");
        let next = (chunk + 1 < self.chunks).then_some(chunk + 1);
        let c = r.chunk(chunk);
        self.send_f[slot] = self.send(r, chunk, next, mb, after, (c.p2p_fwd_ps, c.p2p_detail.0));
    }

    fn finish_backward(&mut self, r: &Rank, chunk: u32, mb: u32, after: &[u32]) {
        self.at = Label::at(chunk, usize::MAX, mb);
        let slot = self.slot(r.rep, chunk, mb);
        self.send_b[slot] = self.send(
            r,
            chunk,
            chunk.checked_sub(1),
            mb,
            after,
            (r.chunk(chunk).p2p_bwd_ps, r.chunk(chunk).p2p_detail.1),
        );
    }

    /// Data deps of a chunk's backward: its own forward (the loss, the saved activations) and
    /// the gradient from the next chunk.
    fn first_backward(&mut self, r: &Rank, task: u32, chunk: u32, mb: u32) {
        let f = self.last_f[self.slot(r.rep, chunk, mb)];
        self.edges.push((f, task));
        if chunk + 1 < self.chunks {
            self.wait_for(
                task,
                r.rep,
                Pending::Bwd {
                    chunk: chunk + 1,
                    mb,
                },
            );
        }
    }

    /// The last task of a chunk's backward frees its activations.
    fn last_backward(&mut self, r: &Rank, task: u32, chunk: u32) {
        let t = &mut self.tasks[task as usize];
        t.mem = -r.chunk(chunk).act_bytes;
        t.inflight = -1;
    }

    /// Backward of one chunk: blocks in reverse. With `with_w` each block's weight gradients
    /// follow its input gradients, as autograd computes them layer by layer (each block's
    /// gradient bucket can then leave during the rest of the backward); otherwise the input
    /// gradients alone. Returns the last task, which frees the activations.
    fn backward(&mut self, r: &mut Rank, chunk: u32, mb: u32, with_w: bool) -> u32 {
        let mut after = Vec::new();
        let mut last = None;
        let blocks = r.chunk(chunk).blocks.clone();
        for (j, (i, blk)) in blocks.iter().enumerate().rev().enumerate() {
            self.at = Label::at(chunk, i, mb);
            let first = self.tasks.len() as u32 + leading_parallel(&blk.bwd);
            after = self.emit(r, &blk.bwd, Pass::Bwd, after);
            if j == 0 {
                self.first_backward(r, first, chunk, mb);
            }
            let mut t = *after.iter().max().expect("a block's backward has tasks");
            if with_w {
                for s in &blk.wgrad {
                    t = self.wgrad(r, s, t);
                }
                self.grads_ready(r, chunk, i, t);
            }
            last = Some(t);
        }
        if with_w {
            r.done[chunk as usize] += 1;
        }
        let last = last.expect("a backward has tasks");
        self.last_backward(r, last, chunk);
        last
    }

    /// Block `bi` of `chunk` has this backward pass's weight gradients once `w` is done. On the
    /// chunk's last pass of the step its gradient bucket leaves right away, beside the rest of
    /// the backward (Megatron's --overlap-grad-reduce, PyTorch DDP/FSDP hooks).
    fn grads_ready(&mut self, r: &mut Rank, chunk: u32, bi: usize, w: u32) {
        r.last_w[chunk as usize][bi] = Some(w);
        let blk = &r.chunk(chunk).blocks[bi];
        let (work, detail) = (blk.grad_sync_ps, blk.sync_detail.0);
        let last_pass = r.done[chunk as usize] + 1 == r.passes[chunk as usize];
        if work > 0 && (last_pass || r.plan.grad_sync_every_microbatch) {
            if r.plan.grad_sync_after_backward {
                r.held.push((work, detail));
            } else {
                let t = self.dp(r, (work, detail), &[w]);
                r.buckets.push(t);
            }
        }
    }

    /// Not-overlapped gradient sync: the held buckets leave one after another once everything
    /// computed so far is done, and the next compute waits for them.
    fn release_held(&mut self, r: &mut Rank) {
        if r.held.is_empty() {
            return;
        }
        let mut deps: Vec<u32> = r.last_w.iter().flatten().flatten().copied().collect();
        deps.extend(r.last_compute);
        for bucket in std::mem::take(&mut r.held) {
            let t = self.dp(r, bucket, &deps);
            r.buckets.push(t);
            r.barrier.push(t);
        }
    }

    /// A data-parallel collective on the data-parallel stream.
    fn dp(&mut self, r: &Rank, (work, detail): (u64, u32), deps: &[u32]) -> u32 {
        let coll = self.instance(r, CommKind::Dp as u8, r.plan.dp_group);
        self.add(
            Task {
                coll,
                label: Label {
                    detail,
                    ..Label::NONE
                },
                ..Task::new(r.gpu, DP, Pass::Comm(CommKind::Dp), work)
            },
            deps,
        )
    }

    /// One weight-gradient task: after `after`, and no earlier than the compute task emitted
    /// before it.
    fn wgrad(&mut self, r: &mut Rank, s: &SegPlan, after: u32) -> u32 {
        let mut deps = vec![after];
        deps.extend(r.last_compute);
        deps.append(&mut r.barrier);
        self.add(
            Task {
                label: Label {
                    detail: s.detail,
                    ..Label::NONE
                },
                ..Task::new(r.gpu, wgrad_stream(r.plan.schedule), Pass::Wgrad, s.ps)
            },
            &deps,
        )
    }

    /// Weight gradients of one chunk's backward, where the schedule puts them.
    fn weights(&mut self, r: &mut Rank, chunk: u32, after_b: u32) -> u32 {
        let mut prev = after_b;
        let mb = self.tasks[after_b as usize].label.mb;
        for (i, blk) in r.chunk(chunk).blocks.clone().iter().enumerate().rev() {
            self.at = Label {
                mb,
                ..Label::at(chunk, i, 0)
            };
            for s in &blk.wgrad {
                prev = self.wgrad(r, s, prev);
            }
            self.grads_ready(r, chunk, i, prev);
        }
        r.done[chunk as usize] += 1;
        prev
    }

    /// Emits one segment of an overlapped pass after `after` (which becomes its successor's
    /// deps); returns its task and whether it is the pass's first data-carrying task. A leading
    /// prefetch does not count as the pass having started.
    fn emit_one(
        &mut self,
        r: &mut Rank,
        s: SegPlan,
        pass: Pass,
        after: &mut Vec<u32>,
        last: &mut Option<u32>,
    ) -> (u32, bool) {
        let next = self.emit(r, &[s], pass, std::mem::take(after));
        let id = *next.iter().max().expect("a segment");
        *after = next;
        if last.is_none() && matches!(s.kind, SegKind::Comm { parallel: true, .. }) {
            return (id, false);
        }
        let first = last.is_none();
        *last = Some(id);
        (id, first)
    }

    /// DualPipe's F&B: the forward of one micro-batch and the backward of another, block by
    /// block, segments alternating so one's communication hides under the other's compute; the
    /// backward's weight gradients follow its compute segments.
    fn overlapped(&mut self, r: &mut Rank, (fc, fmb): (u32, u32), (bc, bmb): (u32, u32)) {
        let fblocks = r.chunk(fc).blocks.clone();
        let bblocks: Vec<(usize, BlockPlan)> = r
            .chunk(bc)
            .blocks
            .clone()
            .into_iter()
            .enumerate()
            .rev()
            .collect();
        let (mut f_after, mut b_after) = (Vec::new(), Vec::new());
        let (mut f_last, mut b_last, mut w_last) = (None, None, None);
        for i in 0..fblocks.len().max(bblocks.len()) {
            let fseg: &[SegPlan] = fblocks.get(i).map(|x| x.fwd.as_slice()).unwrap_or(&[]);
            let (bi, bseg, wseg) = match bblocks.get(i) {
                Some((bi, x)) => (Some(*bi), x.bwd.as_slice(), x.wgrad.as_slice()),
                None => (None, &[][..], &[][..]),
            };
            let (mut fi, mut bj, mut wk) = (0, 0, 0);
            while fi < fseg.len() || bj < bseg.len() {
                if bj < bseg.len() {
                    let s = bseg[bj];
                    self.at = Label::at(bc, bi.unwrap_or(usize::MAX), bmb);
                    let (id, first) = self.emit_one(r, s, Pass::Bwd, &mut b_after, &mut b_last);
                    if first {
                        self.first_backward(r, id, bc, bmb);
                    }
                    bj += 1;
                    if matches!(s.kind, SegKind::Compute) && wk < wseg.len() {
                        w_last = Some(self.wgrad(r, &wseg[wk], id));
                        wk += 1;
                    }
                }
                if fi < fseg.len() {
                    self.at = Label::at(fc, i, fmb);
                    let gathered = if fi == 0 {
                        self.param_wait(r, fc, i)
                    } else {
                        None
                    };
                    let start = self.tasks.len() as u32;
                    let (id, first) =
                        self.emit_one(r, fseg[fi], Pass::Fwd, &mut f_after, &mut f_last);
                    self.edges.extend(gathered.map(|g| (g, start)));
                    if first {
                        self.first_forward(r, id, fc, fmb);
                    }
                    fi += 1;
                }
            }
            // Weight segments the backward had no compute for.
            if let Some(bi) = bi {
                self.at = Label::at(bc, bi, bmb);
            }
            while wk < wseg.len() {
                let after = b_last.expect("a backward segment ran");
                w_last = Some(self.wgrad(r, &wseg[wk], after));
                wk += 1;
            }
            if let Some(bi) = bi {
                let ready = if wseg.is_empty() { b_last } else { w_last };
                self.grads_ready(r, bc, bi, ready.expect("a backward segment ran"));
            }
        }
        r.done[bc as usize] += 1;
        r.forwarded[fc as usize] = true;
        let (f_last, b_last) = (f_last.expect("forward ran"), b_last.expect("backward ran"));
        self.last_backward(r, b_last, bc);
        // DualPipe sends both results once the pair is done.
        let mut all = vec![f_last, b_last];
        all.extend(w_last);
        self.finish_forward(r, fc, fmb, &all);
        let slot = self.slot(r.rep, fc, fmb);
        self.last_f[slot] = f_last;
        self.finish_backward(r, bc, bmb, &all);
    }

    /// Two-micro-batch overlap: the halves `mbs` of one micro-batch through `chunk` together,
    /// block by block and segment by segment (the first half's, then the second's), so each
    /// half's communication runs beside the other's compute. A backward's weight gradients
    /// follow each block's input gradients, half by half, as autograd computes them; the
    /// pair's gradient bucket leaves after the second half's. Each half waits for its own input
    /// and sends its own output.
    fn twin(&mut self, r: &mut Rank, chunk: u32, mbs: (u32, u32), backward: bool) {
        let halves = [mbs.0, mbs.1];
        let mut blocks: Vec<(usize, BlockPlan)> = r
            .chunk(chunk)
            .blocks
            .clone()
            .into_iter()
            .enumerate()
            .collect();
        if backward {
            blocks.reverse();
        }
        let pass = if backward { Pass::Bwd } else { Pass::Fwd };
        let mut after: [Vec<u32>; 2] = [Vec::new(), Vec::new()];
        let mut last: [Option<u32>; 2] = [None, None];
        // Each half's latest task, weight gradients included.
        let mut end: [Option<u32>; 2] = [None, None];
        for (i, blk) in &blocks {
            let segs = if backward { &blk.bwd } else { &blk.fwd };
            let gathered = if backward {
                None
            } else {
                self.param_wait(r, chunk, *i)
            };
            for (j, s) in segs.iter().enumerate() {
                for h in 0..2 {
                    self.at = Label::at(chunk, *i, halves[h]);
                    let start = self.tasks.len() as u32;
                    let (id, first) = self.emit_one(r, *s, pass, &mut after[h], &mut last[h]);
                    if h == 0 && j == 0 {
                        self.edges.extend(gathered.map(|g| (g, start)));
                    }
                    if first && backward {
                        self.first_backward(r, id, chunk, halves[h]);
                    } else if first {
                        self.first_forward(r, id, chunk, halves[h]);
                    }
                    end[h] = Some(id);
                }
            }
            if backward {
                for h in 0..2 {
                    self.at = Label::at(chunk, *i, halves[h]);
                    let mut t = *after[h].iter().max().expect("a block's backward has tasks");
                    for w in &blk.wgrad {
                        t = self.wgrad(r, w, t);
                    }
                    end[h] = Some(t);
                }
                self.grads_ready(r, chunk, *i, end[1].expect("the second half ran"));
            }
        }
        for h in 0..2 {
            let mb = halves[h];
            self.at = Label::at(chunk, usize::MAX, mb);
            let done = end[h].expect("a pass has tasks");
            if backward {
                self.last_backward(r, done, chunk);
                self.finish_backward(r, chunk, mb, &[done]);
            } else {
                let mut tail = after[h].clone();
                tail.push(done);
                self.finish_forward(r, chunk, mb, &tail);
            }
        }
        if backward {
            r.done[chunk as usize] += 1;
        } else {
            r.forwarded[chunk as usize] = true;
        }
    }

    /// A rank's whole program (gradient buckets leave as their weight gradients finish), then
    /// its optimizer and parameter gather.
    fn rank(&mut self, r: &mut Rank) {
        let p = r.plan;
        let program = if p.combined_1f1b {
            schedule::combined_program(p.schedule, p.pp, p.vpp, p.micro_batches, r.rank as u64)
        } else if p.two_micro_batch {
            schedule::twin_program(p.schedule, p.pp, p.vpp, p.micro_batches, r.rank as u64)
        } else {
            schedule::program(p.schedule, p.pp, p.vpp, p.micro_batches, r.rank as u64)
        };
        let mut first_forwards = Vec::new();
        for op in &program {
            match *op {
                Op::B { chunk, .. } => r.passes[chunk as usize] += 1,
                Op::FB {
                    f: (fc, _),
                    b: (bc, _),
                } => {
                    r.passes[bc as usize] += 1;
                    first_forwards.push(fc);
                }
                Op::F { chunk, .. }
                | Op::Twin {
                    chunk,
                    backward: false,
                    ..
                } => first_forwards.push(chunk),
                // The pair is one pass: its gradient buckets leave once.
                Op::Twin { chunk, .. } => r.passes[chunk as usize] += 1,
                Op::W => {}
            }
        }
        // Overlapped parameter gathers (Megatron's --overlap-param-gather) leave at the start of
        // the step on every stage (its default --align-param-gather), one block after another
        // in the order the forwards need them; each block's first forward waits for its own.
        // Where a rank computes from the start this is Megatron's one-bucket-ahead chain (each
        // forward pre-hook dispatching the next bucket): the stream runs them back to back.
        let mut seen = vec![false; p.chunks.len()];
        for c in first_forwards {
            if !std::mem::replace(&mut seen[c as usize], true) {
                for (b, blk) in p.chunks[c as usize].blocks.iter().enumerate() {
                    self.at = Label::at(c, b, u32::MAX);
                    if blk.step_gather_ps > 0 {
                        r.gather[c as usize][b] =
                            Some(self.dp(r, (blk.step_gather_ps, blk.sync_detail.1), &[]));
                    }
                }
            }
        }
        let mut deferred: VecDeque<(u32, u32)> = VecDeque::new(); // (chunk, last B task)
        for op in program {
            match op {
                Op::F { chunk, mb } => {
                    let t = self.forward(r, chunk, mb);
                    self.finish_forward(r, chunk, mb, &[t]);
                }
                Op::B {
                    chunk,
                    mb,
                    defer_w: true,
                } => {
                    let last = self.backward(r, chunk, mb, false);
                    self.finish_backward(r, chunk, mb, &[last]);
                    deferred.push_back((chunk, last));
                }
                Op::B {
                    chunk,
                    mb,
                    defer_w: false,
                } => {
                    // Weight gradients computed with the backward: the gradient leaves after both.
                    let last = if w_with_b(p.schedule) {
                        self.backward(r, chunk, mb, true)
                    } else {
                        let last = self.backward(r, chunk, mb, false);
                        self.weights(r, chunk, last)
                    };
                    self.finish_backward(r, chunk, mb, &[last]);
                }
                Op::W => {
                    let (chunk, last) = deferred
                        .pop_front()
                        .expect("W with a deferred backward (checked by tests)");
                    self.weights(r, chunk, last);
                }
                Op::FB { f, b } => self.overlapped(r, f, b),
                Op::Twin {
                    chunk,
                    mbs,
                    backward,
                } => self.twin(r, chunk, mbs, backward),
            }
            if p.grad_sync_every_microbatch {
                self.release_held(r);
            }
        }
        self.release_held(r);
        // The optimizer needs every weight gradient and every gradient bucket.
        self.at = Label::NONE;
        let mut opt_deps = r.buckets.clone();
        opt_deps.extend(r.last_w.iter().flatten().flatten());
        opt_deps.extend(r.last_compute);
        let opt = self.add(
            Task::new(
                r.gpu,
                COMPUTE,
                Pass::Optimizer,
                p.optimizer_ps[r.rank as usize],
            ),
            &opt_deps,
        );
        if p.param_gather_ps[r.rank as usize] > 0 {
            let rank = r.rank as usize;
            let detail = p
                .param_gather_detail
                .get(rank)
                .copied()
                .unwrap_or(NO_DETAIL);
            self.dp(r, (p.param_gather_ps[rank], detail), &[opt]);
        }
    }
}

/// Lays out one step.
pub fn build(plan: &StepPlan) -> TaskGraph {
    let pp = plan.pp as u32;
    let reps = plan.replicas.max(1);
    let gpus = pp * reps;
    let chunks = plan.chunks.len() as u32;
    let m =
        u32::try_from(plan.micro_batches).expect("micro-batches below 2^32 (the DES limits them)");
    let slots = (reps * chunks * m) as usize;
    let mut b = Builder {
        tasks: Vec::new(),
        edges: Vec::new(),
        streams: vec![Vec::new(); gpus as usize * STREAMS],
        coll_members: Vec::new(),
        group_instances: BTreeMap::new(),
        group_seen: BTreeMap::new(),
        chunks,
        micro_batches: m,
        send_f: vec![u32::MAX; slots],
        send_b: vec![u32::MAX; slots],
        last_f: vec![u32::MAX; slots],
        pending: Vec::new(),
        at: Label::NONE,
    };
    for rep in 0..reps {
        let scaled = plan.for_replica(rep);
        for rank in 0..pp {
            let mut r = Rank {
                plan: &scaled,
                gpu: rank * reps + rep,
                rank,
                rep,
                reps,
                last_compute: None,
                last_w: scaled
                    .chunks
                    .iter()
                    .map(|c| vec![None; c.blocks.len()])
                    .collect(),
                passes: vec![0; chunks as usize],
                done: vec![0; chunks as usize],
                buckets: Vec::new(),
                held: Vec::new(),
                barrier: Vec::new(),
                gather: scaled
                    .chunks
                    .iter()
                    .map(|c| vec![None; c.blocks.len()])
                    .collect(),
                forwarded: vec![false; chunks as usize],
            };
            b.rank(&mut r);
        }
    }
    for (task, rep, what) in std::mem::take(&mut b.pending) {
        let from = match what {
            Pending::Fwd { chunk, mb } => b.send_f[b.slot(rep, chunk, mb)],
            Pending::Bwd { chunk, mb } => b.send_b[b.slot(rep, chunk, mb)],
        };
        assert!(
            from != u32::MAX,
            "a receive without its send (schedule bug)"
        );
        b.edges.push((from, task));
    }
    finish(b, gpus, plan)
}

/// 1 if a pass opens with a segment that runs beside the previous compute (a prefetch), whose
/// task is then not the one that waits for the pass's input.
fn leading_parallel(segs: &[SegPlan]) -> u32 {
    matches!(
        segs.first(),
        Some(SegPlan {
            kind: SegKind::Comm { parallel: true, .. },
            ..
        })
    ) as u32
}

/// Whether a backward that does not defer its weight gradients computes them block by block
/// with its input gradients (PyTorch autograd under GPipe, 1F1B and interleaved 1F1B), rather
/// than after the whole chunk's input gradients on the second compute stream (DualPipe's
/// plain backward chunks, laid out as in its trace).
fn w_with_b(s: Schedule) -> bool {
    matches!(
        s,
        Schedule::Gpipe | Schedule::OneFOneB | Schedule::Interleaved
    )
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

fn finish(b: Builder, gpus: u32, plan: &StepPlan) -> TaskGraph {
    TaskGraph {
        compute_sms: plan.compute_sms,
        dp_sms: plan.dp_sms,
        nic: plan.nic,
        ..TaskGraph::assemble(gpus, b.tasks, b.edges, &b.streams, b.coll_members)
    }
}

impl TaskGraph {
    /// A graph of `tasks` on `gpus` GPUs: `edges` (from, to) become dependency counts and CSR
    /// successors, `streams` (indexed `gpu * STREAMS + stream`) the FIFO order of each stream.
    /// No SMs are set aside and no traffic crosses nodes until the caller says so.
    pub fn assemble(
        gpus: u32,
        tasks: Vec<Task>,
        mut edges: Vec<(u32, u32)>,
        streams: &[Vec<u32>],
        coll_members: Vec<u32>,
    ) -> TaskGraph {
        let n = tasks.len();
        let mut deps = vec![0u32; n];
        let mut count = vec![0u32; n + 1];
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
        let mut stream_start = Vec::with_capacity(streams.len() + 1);
        let mut stream_tasks = Vec::with_capacity(n);
        stream_start.push(0);
        for s in streams {
            stream_tasks.extend_from_slice(s);
            stream_start.push(stream_tasks.len() as u32);
        }
        TaskGraph {
            gpus,
            tasks,
            deps,
            succ_start: count,
            succ,
            stream_start,
            stream_tasks,
            coll_members,
            compute_sms: 0,
            dp_sms: 0,
            nic: [false; 5],
        }
    }
}
