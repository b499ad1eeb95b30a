//! Executes a [`TaskGraph`] on the discrete-event core.
//!
//! Each GPU stream is a FIFO queue: its head task starts once its dependencies are done and the
//! stream is free. Compute and weight-gradient streams share the GPU's compute SMs by processor
//! sharing: with two kernels resident each progresses at half speed, so completions are
//! re-planned (and stale ones cancelled lazily) whenever one starts or ends. Communication runs
//! on the SMs reserved for it, pipeline sends and data-parallel sync on their own streams. A
//! data-parallel NCCL collective holds its channels' SMs while it runs, so the compute kernels
//! resident meanwhile progress at the share of SMs left to them.
//! A collective starts on all members together once every member has reached it.

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
    done: usize,
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
            self.start_task(sim, t);
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
                for m in members {
                    self.start_with(sim, m, work);
                }
            }
        }
    }

    fn start_task(&mut self, sim: &mut Sim<u32>, t: u32) {
        let w = self.g.tasks[t as usize].work;
        self.start_with(sim, t, w);
    }

    fn start_with(&mut self, sim: &mut Sim<u32>, t: u32, work: u64) {
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
        } else {
            sim.schedule(now + work, t, t);
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
        done: 0,
    };
    let mut sim: Sim<u32> = Sim::new(n);
    for gpu in 0..g.gpus {
        for s in 0..STREAMS as u8 {
            st.try_stream(&mut sim, gpu, s);
        }
    }
    sim.run(|sim, _, t| st.complete(sim, t));
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
    use crate::workload::taskgraph::{Task, COMM, DP};

    /// One GPU: a compute kernel of `work` ps beside a data-parallel collective of `comm` ps
    /// that holds `dp_sms` of the 100 compute SMs. Returns when the kernel ends.
    fn kernel_end(work: u64, comm: u64, dp_sms: u32, kind: CommKind) -> u64 {
        let stream = if kind == CommKind::Dp { DP } else { COMM };
        let tasks = vec![
            Task::new(0, COMPUTE, Pass::Fwd, work),
            Task::new(0, stream, Pass::Comm(kind), comm),
        ];
        let mut stream_start = vec![0u32];
        let mut stream_tasks = Vec::new();
        for s in 0..STREAMS as u8 {
            stream_tasks.extend((0..tasks.len() as u32).filter(|&t| tasks[t as usize].stream == s));
            stream_start.push(stream_tasks.len() as u32);
        }
        let g = TaskGraph {
            gpus: 1,
            deps: vec![0; tasks.len()],
            succ_start: vec![0; tasks.len() + 1],
            succ: Vec::new(),
            tasks,
            stream_start,
            stream_tasks,
            coll_members: Vec::new(),
            compute_sms: 100,
            dp_sms,
        };
        let o = run(&g);
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
}
