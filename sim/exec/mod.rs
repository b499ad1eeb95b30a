//! Executes a [`TaskGraph`] on the discrete-event core.
//!
//! Each GPU stream is a FIFO queue: its head task starts once its dependencies are done and the
//! stream is free. Compute and weight-gradient streams share the GPU's compute SMs by processor
//! sharing: with two kernels resident each progresses at half speed, so completions are
//! re-planned (and stale ones cancelled lazily) whenever one starts or ends. Communication runs
//! on the SMs reserved for it, pipeline sends and data-parallel sync on their own streams. A
//! data-parallel NCCL collective holds its channels' SMs while it runs, so the compute kernels
//! resident meanwhile progress at the share of SMs left to them.
//! A collective starts on all members together once every member has reached it. Transfers that
//! cross nodes at once share the GPU's NIC by processor sharing, as compute kernels share SMs:
//! each is priced alone, and k of them each progress at 1/k (NVLink, several times faster, is not
//! shared). A collective progresses at the rate its first member's GPU allows (its members are
//! symmetric).

use crate::engine::Sim;
use crate::workload::ops::CommKind;
use crate::workload::taskgraph::{Pass, Task, TaskGraph, COMPUTE, SOLO, STREAMS, WGRAD};

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Time the last task ends, picoseconds.
    pub makespan: u64,
    pub events: u64,
    pub cancelled: u64,
    pub start: Vec<u64>,
    pub end: Vec<u64>,
    /// Peak activation bytes and chunk micro-batches in flight, per GPU.
    pub peak_mem: Vec<f64>,
    pub peak_inflight: Vec<i32>,
}

struct State<'g> {
    g: &'g TaskGraph,
    deps_left: Vec<u32>,
    cursor: Vec<u32>,
    busy: Vec<bool>,
    arrived: Vec<bool>,
    waiting: Vec<Vec<u32>>,
    active: Vec<[u32; 2]>,
    remaining: Vec<f64>,
    last_update: Vec<u64>,
    start: Vec<u64>,
    end: Vec<u64>,
    mem: Vec<f64>,
    peak_mem: Vec<f64>,
    inflight: Vec<i32>,
    peak_inflight: Vec<i32>,
    /// SMs held by running NCCL collectives, per GPU.
    held: Vec<u32>,
    /// Running transfers through each GPU's NIC.
    on_nic: Vec<u32>,
    /// Running transfers (jobs) led by each GPU, and the jobs (free slots reused).
    led: Vec<Vec<u32>>,
    jobs: Vec<Job>,
    free_jobs: Vec<u32>,
    done: usize,
}

/// A running transfer: one communication task, or the members of a collective.
#[derive(Default)]
struct Job {
    /// Its first member, whose GPU sets its rate; the others (collectives only).
    leader: u32,
    others: Vec<u32>,
    /// Standalone work left (ps), when that was last brought up to date, and the current rate.
    remaining: f64,
    last: u64,
    rate: f64,
}

const NONE: u32 = u32::MAX;

fn is_compute(stream: u8) -> bool {
    stream == COMPUTE || stream == WGRAD
}

/// SMs a task keeps from compute kernels while it runs.
fn held_sms(g: &TaskGraph, t: &Task) -> u32 {
    match t.pass {
        Pass::Comm(CommKind::Dp) => g.dp_sms,
        _ => 0,
    }
}

/// Whether a task is a transfer through its GPU's NIC.
fn crosses_nodes(g: &TaskGraph, t: &Task) -> bool {
    match t.pass {
        Pass::Comm(kind) if !is_compute(t.stream) => g.nic[kind as usize],
        _ => false,
    }
}

impl<'g> State<'g> {
    /// Speed of compute kernels on `gpu` relative to having all their SMs.
    fn rate(&self, gpu: usize) -> f64 {
        let s = self.g.compute_sms.max(1);
        s.saturating_sub(self.held[gpu]).max(1) as f64 / s as f64
    }

    /// Re-plans `gpu`'s compute kernels as `sms` SMs are taken (> 0) or given back (< 0).
    fn hold(&mut self, sim: &mut Sim<u32>, gpu: usize, sms: i64) {
        if sms == 0 {
            return;
        }
        self.advance(gpu, sim.now());
        self.held[gpu] = (self.held[gpu] as i64 + sms) as u32;
        self.replan(sim, gpu);
    }

    fn stream_id(&self, t: u32) -> usize {
        let task = &self.g.tasks[t as usize];
        task.gpu as usize * STREAMS + task.stream as usize
    }

    fn try_stream(&mut self, sim: &mut Sim<u32>, gpu: u32, stream: u8) {
        let s = gpu as usize * STREAMS + stream as usize;
        if self.busy[s] {
            return;
        }
        let list = self.g.stream(gpu, stream);
        let Some(&t) = list.get(self.cursor[s] as usize) else {
            return;
        };
        if self.deps_left[t as usize] > 0 {
            return;
        }
        let coll = self.g.tasks[t as usize].coll;
        if coll == SOLO {
            let w = self.g.tasks[t as usize].work;
            self.start_with(sim, &[t], w);
            return;
        }
        if !self.arrived[t as usize] {
            self.arrived[t as usize] = true;
            self.busy[s] = true; // the stream is held by the waiting collective
            self.waiting[coll as usize].push(t);
            if self.waiting[coll as usize].len() as u32 == self.g.coll_members[coll as usize] {
                let members = std::mem::take(&mut self.waiting[coll as usize]);
                // All members finish together: the slowest member's time.
                let work = members
                    .iter()
                    .map(|&m| self.g.tasks[m as usize].work)
                    .max()
                    .unwrap_or(0);
                self.start_with(sim, &members, work);
            }
        }
    }

    /// Starts `members` (one task, or a collective's) with `work` ps of standalone time.
    fn start_with(&mut self, sim: &mut Sim<u32>, members: &[u32], work: u64) {
        for &t in members {
            self.begin(sim, t, work);
        }
        let lead = self.g.tasks[members[0] as usize];
        if crosses_nodes(self.g, &lead) {
            self.start_job(sim, members, work);
        } else if !is_compute(lead.stream) {
            for &t in members {
                sim.schedule(sim.now() + work, t, t);
            }
        }
    }

    /// A task's start: its stream, memory, SMs held, and (compute) its share of the SMs.
    fn begin(&mut self, sim: &mut Sim<u32>, t: u32, work: u64) {
        let s = self.stream_id(t);
        self.busy[s] = true;
        let now = sim.now();
        self.start[t as usize] = now;
        let task = self.g.tasks[t as usize];
        let gpu = task.gpu as usize;
        if task.mem > 0.0 {
            self.mem[gpu] += task.mem;
            self.peak_mem[gpu] = self.peak_mem[gpu].max(self.mem[gpu]);
        }
        if task.inflight > 0 {
            self.inflight[gpu] += task.inflight as i32;
            self.peak_inflight[gpu] = self.peak_inflight[gpu].max(self.inflight[gpu]);
        }
        self.hold(sim, gpu, held_sms(self.g, &task) as i64);
        if is_compute(task.stream) {
            self.advance(gpu, now);
            let slot = if task.stream == COMPUTE { 0 } else { 1 };
            self.active[gpu][slot] = t;
            self.remaining[t as usize] = work as f64;
            self.replan(sim, gpu);
        }
    }

    /// Starts a transfer through the NIC; it ends when its work is done at its rate.
    fn start_job(&mut self, sim: &mut Sim<u32>, members: &[u32], work: u64) {
        let job = Job {
            leader: members[0],
            others: members[1..].to_vec(),
            remaining: work as f64,
            last: sim.now(),
            rate: 1.0,
        };
        let j = match self.free_jobs.pop() {
            Some(j) => {
                self.jobs[j as usize] = job;
                j
            }
            None => {
                self.jobs.push(job);
                self.jobs.len() as u32 - 1
            }
        };
        let gpu = self.lead_gpu(j);
        self.led[gpu].push(j);
        for &m in members {
            let gpu = self.g.tasks[m as usize].gpu as usize;
            self.load(sim, gpu, 1);
        }
    }

    fn lead_gpu(&self, j: u32) -> usize {
        self.g.tasks[self.jobs[j as usize].leader as usize].gpu as usize
    }

    /// Adds `delta` transfers to `gpu`'s NIC and re-plans the transfers that GPU leads.
    fn load(&mut self, sim: &mut Sim<u32>, gpu: usize, delta: i64) {
        let now = sim.now();
        for &j in &self.led[gpu] {
            let job = &mut self.jobs[j as usize];
            job.remaining = (job.remaining - (now - job.last) as f64 * job.rate).max(0.0);
            job.last = now;
        }
        self.on_nic[gpu] = (self.on_nic[gpu] as i64 + delta) as u32;
        let (n, rate) = (
            self.g.tasks.len() as u32,
            1.0 / self.on_nic[gpu].max(1) as f64,
        );
        for k in 0..self.led[gpu].len() {
            let j = self.led[gpu][k];
            let job = &mut self.jobs[j as usize];
            job.rate = rate;
            sim.cancel(job.leader);
            let at = now + (job.remaining / job.rate).ceil() as u64;
            sim.schedule(at, job.leader, n + j);
        }
    }

    /// A transfer's work is done: it leaves the NICs it shared, and its members complete.
    fn finish_job(&mut self, sim: &mut Sim<u32>, j: u32) {
        let gpu = self.lead_gpu(j);
        let at = self.led[gpu]
            .iter()
            .position(|&x| x == j)
            .expect("a finishing job is led by its leader's GPU");
        self.led[gpu].swap_remove(at);
        let job = std::mem::take(&mut self.jobs[j as usize]);
        self.free_jobs.push(j);
        let members = || std::iter::once(job.leader).chain(job.others.iter().copied());
        for m in members() {
            let g = self.g.tasks[m as usize].gpu as usize;
            self.load(sim, g, -1);
        }
        for m in members() {
            self.complete(sim, m);
        }
    }

    /// Progress the resident compute kernels of `gpu` up to `now`.
    fn advance(&mut self, gpu: usize, now: u64) {
        let act = self.active[gpu];
        let n = act.iter().filter(|&&a| a != NONE).count();
        if n > 0 {
            let dt = (now - self.last_update[gpu]) as f64 * self.rate(gpu) / n as f64;
            for a in act.into_iter().filter(|&a| a != NONE) {
                self.remaining[a as usize] = (self.remaining[a as usize] - dt).max(0.0);
            }
        }
        self.last_update[gpu] = now;
    }

    fn replan(&mut self, sim: &mut Sim<u32>, gpu: usize) {
        let act = self.active[gpu];
        let n = act.iter().filter(|&&a| a != NONE).count() as f64;
        let slow = n / self.rate(gpu);
        for a in act.into_iter().filter(|&a| a != NONE) {
            sim.cancel(a);
            let at = sim.now() + (self.remaining[a as usize] * slow).ceil() as u64;
            sim.schedule(at, a, a);
        }
    }

    fn complete(&mut self, sim: &mut Sim<u32>, t: u32) {
        let now = sim.now();
        self.end[t as usize] = now;
        self.done += 1;
        let task = self.g.tasks[t as usize];
        let gpu = task.gpu as usize;
        if task.mem < 0.0 {
            self.mem[gpu] += task.mem;
        }
        if task.inflight < 0 {
            self.inflight[gpu] += task.inflight as i32;
        }
        self.hold(sim, gpu, -(held_sms(self.g, &task) as i64));
        if is_compute(task.stream) {
            self.advance(gpu, now);
            let slot = if task.stream == COMPUTE { 0 } else { 1 };
            self.active[gpu][slot] = NONE;
            self.replan(sim, gpu);
        }
        let s = self.stream_id(t);
        self.busy[s] = false;
        self.cursor[s] += 1;
        for &n in self.g.successors(t) {
            self.deps_left[n as usize] -= 1;
            if self.deps_left[n as usize] == 0 {
                let nt = self.g.tasks[n as usize];
                self.try_stream(sim, nt.gpu, nt.stream);
            }
        }
        self.try_stream(sim, task.gpu, task.stream);
    }
}

/// Runs the graph to completion. Panics on a deadlock, which would be a task-graph bug.
pub fn run(g: &TaskGraph) -> Outcome {
    let n = g.tasks.len();
    let streams = g.gpus as usize * STREAMS;
    let gpus = g.gpus as usize;
    let mut st = State {
        g,
        deps_left: g.deps.clone(),
        cursor: vec![0; streams],
        busy: vec![false; streams],
        arrived: vec![false; n],
        waiting: vec![Vec::new(); g.coll_members.len()],
        active: vec![[NONE; 2]; gpus],
        remaining: vec![0.0; n],
        last_update: vec![0; gpus],
        start: vec![0; n],
        end: vec![0; n],
        mem: vec![0.0; gpus],
        peak_mem: vec![0.0; gpus],
        inflight: vec![0; gpus],
        peak_inflight: vec![0; gpus],
        held: vec![0; gpus],
        on_nic: vec![0; gpus],
        led: vec![Vec::new(); gpus],
        jobs: Vec::new(),
        free_jobs: Vec::new(),
        done: 0,
    };
    let mut sim: Sim<u32> = Sim::new(n);
    for gpu in 0..g.gpus {
        for s in 0..STREAMS as u8 {
            st.try_stream(&mut sim, gpu, s);
        }
    }
    let n_tasks = n as u32;
    sim.run(|sim, _, p| {
        if p >= n_tasks {
            st.finish_job(sim, p - n_tasks);
        } else {
            st.complete(sim, p);
        }
    });
    if st.done != n {
        let stuck = (0..n)
            .find(|&t| st.end[t] == 0 && st.deps_left[t] == 0)
            .unwrap_or(0);
        let t = g.tasks[stuck];
        panic!(
            "task graph deadlocked: {} of {n} tasks done; task {stuck} ({:?}) on GPU {} stream {} is ready but blocked",
            st.done, t.pass, t.gpu, t.stream
        );
    }
    Outcome {
        makespan: st.end.iter().copied().max().unwrap_or(0),
        events: sim.processed(),
        cancelled: sim.stale(),
        start: st.start,
        end: st.end,
        peak_mem: st.peak_mem,
        peak_inflight: st.peak_inflight,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::taskgraph::{COMM, DP};

    /// One GPU with 100 compute SMs running `tasks`, with dependencies `edges` (from, to).
    fn graph(tasks: Vec<Task>, edges: &[(u32, u32)], dp_sms: u32, nic: [bool; 5]) -> TaskGraph {
        let streams: Vec<Vec<u32>> = (0..STREAMS as u8)
            .map(|s| {
                (0..tasks.len() as u32)
                    .filter(|&t| tasks[t as usize].stream == s)
                    .collect()
            })
            .collect();
        TaskGraph {
            compute_sms: 100,
            dp_sms,
            nic,
            ..TaskGraph::assemble(1, tasks, edges.to_vec(), &streams, Vec::new())
        }
    }

    /// A compute kernel of `work` ps beside a `kind` collective of `comm` ps that holds `dp_sms`
    /// of the 100 compute SMs. Returns when the kernel ends.
    fn kernel_end(work: u64, comm: u64, dp_sms: u32, kind: CommKind) -> u64 {
        let stream = if kind == CommKind::Dp { DP } else { COMM };
        let tasks = vec![
            Task::new(0, COMPUTE, Pass::Fwd, work),
            Task::new(0, stream, Pass::Comm(kind), comm),
        ];
        let o = run(&graph(tasks, &[], dp_sms, [false; 5]));
        assert_eq!(o.end[1], comm, "the collective runs its own time");
        o.end[0]
    }

    /// NCCL's CTAs take whole SMs: while a collective holding k of S SMs runs, a compute kernel
    /// progresses at (S - k) / S and finishes the rest at full speed afterwards.
    #[test]
    fn a_data_parallel_collective_slows_the_compute_beside_it_by_its_sms() {
        // 400 ps at half speed do 200 of the 1000; the other 800 follow: 1200.
        assert_eq!(kernel_end(1000, 400, 50, CommKind::Dp), 1200);
        // A collective longer than the kernel: 1000 of work at 3/4 speed.
        assert_eq!(kernel_end(1000, 5000, 25, CommKind::Dp), 1334);
        // No SMs held, or a collective that is not NCCL data-parallel traffic: no slowdown.
        assert_eq!(kernel_end(1000, 400, 0, CommKind::Dp), 1000);
        assert_eq!(kernel_end(1000, 400, 50, CommKind::Ep), 1000);
    }

    /// Transfers through one NIC share it: an expert all-to-all of 100 ps and a gradient
    /// reduce-scatter of 100 ps that starts 50 ps later (after a 50 ps kernel). The first runs
    /// alone for 50, then both at half speed until it ends at 150; the second finishes its last
    /// 50 alone at 200. Traffic that stays in the node does not share.
    #[test]
    fn transfers_through_one_nic_share_it() {
        let tasks = || {
            vec![
                Task::new(0, COMPUTE, Pass::Fwd, 50),
                Task::new(0, COMM, Pass::Comm(CommKind::Ep), 100),
                Task::new(0, DP, Pass::Comm(CommKind::Dp), 100),
            ]
        };
        let mut nic = [false; 5];
        nic[CommKind::Ep as usize] = true;
        nic[CommKind::Dp as usize] = true;
        let o = run(&graph(tasks(), &[(0, 2)], 0, nic));
        assert_eq!((o.start[2], o.end[1], o.end[2]), (50, 150, 200));
        // The reduce-scatter inside the node: nothing shared.
        nic[CommKind::Dp as usize] = false;
        let o = run(&graph(tasks(), &[(0, 2)], 0, nic));
        assert_eq!((o.end[1], o.end[2]), (100, 150));
    }
}
