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
//!
//! Every transfer with a route in [`Links`] runs on one shared flow network (`net::flow`) as a
//! weighted class: it loads each link with the bytes it puts there per picosecond when it runs
//! alone, never runs faster than alone, and concurrent transfers share every link max-min
//! fairly. A transfer without a route takes its standalone time.

use crate::engine::Sim;
use crate::net::flow::FlowNet;
use crate::workload::ops::CommKind;
use crate::workload::taskgraph::{Pass, Task, TaskGraph, COMPUTE, SOLO, STREAMS, WGRAD};

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Time the last task ends, picoseconds.
    pub makespan: u64,
    /// Some time passed the engine's horizon: the times saturated and mean nothing.
    pub beyond_horizon: bool,
    pub events: u64,
    pub cancelled: u64,
    pub start: Vec<u64>,
    pub end: Vec<u64>,
    /// Peak activation bytes and chunk micro-batches in flight, per GPU.
    pub peak_mem: Vec<f64>,
    pub peak_inflight: Vec<i32>,
}

/// The links that concurrent transfers share, and how each transfer loads them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Links {
    /// Capacity of each link, bytes/s.
    pub capacity: Vec<f64>,
    /// Per route: its links, and the bytes each carries per picosecond of the transfer's
    /// standalone time.
    pub routes: Vec<(Vec<u32>, Vec<f64>)>,
    /// The route of a task with detail `d` on pipeline stage `s`: `route_of[d * stages + s]`,
    /// or `u32::MAX` (no route: the task takes its standalone time).
    pub route_of: Vec<u32>,
    pub stages: u32,
}

impl Links {
    fn route(&self, g: &TaskGraph, t: &Task) -> Option<u32> {
        if self.stages == 0 || t.label.detail == u32::MAX {
            return None;
        }
        let stage = t.gpu / (g.gpus / self.stages).max(1);
        let r = *self
            .route_of
            .get((t.label.detail as usize) * self.stages as usize + stage as usize)?;
        (r != u32::MAX).then_some(r)
    }
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
    links: &'g Links,
    /// The shared network, and the members of each transfer on it (free slots reused).
    net: FlowNet,
    jobs: Vec<Vec<u32>>,
    free_jobs: Vec<u32>,
    done: usize,
}

const NONE: u32 = u32::MAX;
/// The payload of the network's wake-up event.
const WAKE: u32 = u32::MAX;

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
        if let Some(route) = self.links.route(self.g, &lead).filter(|_| work > 0) {
            self.start_job(sim, members, work, route);
        } else if !is_compute(lead.stream) {
            for &t in members {
                sim.schedule(sim.later(work), t, t);
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

    /// Starts a transfer on the shared network: `work` ps of standalone time over `route`.
    fn start_job(&mut self, sim: &mut Sim<u32>, members: &[u32], work: u64, route: u32) {
        let j = match self.free_jobs.pop() {
            Some(j) => {
                self.jobs[j as usize] = members.to_vec();
                j
            }
            None => {
                self.jobs.push(members.to_vec());
                self.jobs.len() as u32 - 1
            }
        };
        self.net.advance_to(sim.now());
        let (links, weights) = &self.links.routes[route as usize];
        // A route is priced for all of a stage's instances at once; with every GPU of a stage
        // simulated, each instance (its members) carries its share.
        let reps = (self.g.gpus / self.links.stages.max(1)).max(1);
        let share = (members.len() as f64 / reps as f64).min(1.0);
        let weights = weights.iter().map(|w| w * share).collect();
        // At most one picosecond of work per picosecond: its standalone speed.
        self.net
            .start_class(links.clone(), weights, 1e12, work as f64, j);
        self.wake(sim);
    }

    /// Plans the network's next drain on the task clock.
    fn wake(&mut self, sim: &mut Sim<u32>) {
        let wake = self.g.tasks.len() as u32;
        sim.cancel(wake);
        if let Some(at) = self.net.next_drain() {
            sim.schedule(at, wake, WAKE);
        }
    }

    /// The network's transfers due now are done: their members complete.
    fn drain(&mut self, sim: &mut Sim<u32>) {
        let now = sim.now();
        while self.net.next_drain() == Some(now) {
            let a = self.net.next_arrival().expect("a flow drains now");
            let members = std::mem::take(&mut self.jobs[a.tag as usize]);
            self.free_jobs.push(a.tag);
            for m in members {
                self.complete(sim, m);
            }
        }
        self.wake(sim);
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
            let at = sim.later_f(self.remaining[a as usize] * slow);
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

/// Runs the graph to completion with every transfer at its standalone time. Panics on a
/// deadlock, which would be a task-graph bug.
pub fn run(g: &TaskGraph) -> Outcome {
    run_on(g, &Links::default())
}

/// Runs the graph to completion, the transfers [`Links`] routes sharing one flow network.
pub fn run_on(g: &TaskGraph, links: &Links) -> Outcome {
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
        links,
        net: FlowNet::new(&links.capacity, &vec![0; links.capacity.len()]),
        jobs: Vec::new(),
        free_jobs: Vec::new(),
        done: 0,
    };
    let mut sim: Sim<u32> = Sim::new(n + 1);
    for gpu in 0..g.gpus {
        for s in 0..STREAMS as u8 {
            st.try_stream(&mut sim, gpu, s);
        }
    }
    sim.run(|sim, _, p| {
        if p == WAKE {
            st.drain(sim);
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
    let makespan = st.end.iter().copied().max().unwrap_or(0);
    Outcome {
        makespan,
        beyond_horizon: sim.beyond_horizon()
            || st.net.beyond_horizon()
            || makespan > crate::engine::HORIZON,
        events: sim.processed() + st.net.events(),
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

    /// Tasks with details 0, 1, 2… whose routes are `routes` (one per detail, one stage) over
    /// links of `capacity` bytes/s.
    fn shared(capacity: &[f64], routes: &[(Vec<u32>, Vec<f64>)]) -> Links {
        Links {
            capacity: capacity.to_vec(),
            routes: routes.to_vec(),
            route_of: (0..routes.len() as u32).collect(),
            stages: 1,
        }
    }

    fn comm(stream: u8, kind: CommKind, work: u64, detail: u32) -> Task {
        let mut t = Task::new(0, stream, Pass::Comm(kind), work);
        t.label.detail = detail;
        t
    }

    /// Transfers that each fill one link share it: an expert all-to-all of 100 ps and a
    /// gradient reduce-scatter of 100 ps that starts 50 ps later (after a 50 ps kernel). The
    /// first runs alone for 50, then both at half speed until it ends at 150; the second
    /// finishes its last 50 alone at 200. Transfers on different links do not notice each other.
    #[test]
    fn transfers_that_fill_one_link_share_it() {
        let tasks = vec![
            Task::new(0, COMPUTE, Pass::Fwd, 50),
            comm(COMM, CommKind::Ep, 100, 0),
            comm(DP, CommKind::Dp, 100, 1),
        ];
        let g = graph(tasks, &[(0, 2)], 0, [false; 5]);
        // 10 bytes/ps of a 10 bytes/ps link (10 TB/s) each.
        let one = shared(
            &[10e12, 10e12],
            &[(vec![0], vec![10.0]), (vec![0], vec![10.0])],
        );
        let o = run_on(&g, &one);
        assert_eq!((o.start[2], o.end[1], o.end[2]), (50, 150, 200));
        let apart = shared(
            &[10e12, 10e12],
            &[(vec![0], vec![10.0]), (vec![1], vec![10.0])],
        );
        let o = run_on(&g, &apart);
        assert_eq!((o.end[1], o.end[2]), (100, 150));
        // Without routes each takes its standalone time.
        let o = run(&g);
        assert_eq!((o.end[1], o.end[2]), (100, 150));
    }

    /// Max-min sharing, not processor sharing: two transfers that each use 30% of a link run at
    /// their own speed side by side; k transfers that would each fill a 1:k oversubscribed
    /// up-link (capacity 1/k of what they need together) each get 1/k of it and take k times
    /// as long.
    #[test]
    fn k_transfers_on_a_one_to_k_uplink_each_get_a_kth() {
        for (k, load, want) in [(2u32, 3.0, 1000u64), (4, 10.0, 4000), (7, 10.0, 7000)] {
            let tasks: Vec<Task> = (0..k)
                .map(|i| {
                    let stream = [COMM, DP, taskgraph_p2p()][(i % 3) as usize];
                    let mut t = comm(stream, CommKind::Dp, 1000, 0);
                    t.gpu = i / 3;
                    t
                })
                .collect();
            let gpus = k.div_ceil(3);
            let streams: Vec<Vec<u32>> = (0..gpus * STREAMS as u32)
                .map(|s| {
                    (0..k)
                        .filter(|&t| {
                            tasks[t as usize].gpu * STREAMS as u32 + tasks[t as usize].stream as u32
                                == s
                        })
                        .collect()
                })
                .collect();
            let g = TaskGraph {
                compute_sms: 100,
                ..TaskGraph::assemble(gpus, tasks, Vec::new(), &streams, Vec::new())
            };
            // Each needs `load` bytes/ps on the up-link of 10 bytes/ps; each GPU its own stage
            // (every task one whole instance).
            let links = Links {
                capacity: vec![10e12],
                routes: vec![(vec![0], vec![load])],
                route_of: vec![0; gpus as usize],
                stages: gpus,
            };
            let o = run_on(&g, &links);
            for t in 0..k as usize {
                assert_eq!(o.end[t], want, "{k} transfers of {load}/10: {:?}", o.end);
            }
        }
    }

    fn taskgraph_p2p() -> u8 {
        crate::workload::taskgraph::P2P
    }
}
