//! Collectives as flows over the topology: rings, in-switch (NVLS) reduction, hierarchical
//! (NVLink inside the node, then the NIC rails), pairwise all-to-all, pipeline send/recv, and
//! DeepEP-style MoE dispatch/combine (InfiniBand once per target node to the same-index GPU,
//! then NVLink to the GPUs holding the experts).
//!
//! A collective is a list of phases; a phase's transfers run together as flows on one
//! [`FlowNet`] and the next phase starts when the last of them has arrived. Protocol efficiency
//! (the share of link bandwidth a collective's kernels achieve) comes from the calibration file
//! and scales the bytes a transfer puts on the wire.

use super::flow::{FlowNet, LinkId};
use super::route::Router;
use super::MoeRoute;
use crate::domain::MoeDispatcher;
use crate::hw::catalog::Architecture;
use crate::hw::Calibration;
use crate::topo::Cluster;

/// Where a transfer goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Path {
    /// GPU to GPU (NVLink inside a node, NIC rails between nodes).
    Gpu(u32, u32),
    /// Into the node's switch for an in-switch reduction, and its multicast back out.
    ToSwitch(u32),
    FromSwitch(u32),
    /// Up the GPU's NIC into the fabric for an in-network (SHARP) reduction, and its result
    /// back down. Above the leaves the switches reduce as they forward: one stream per leaf.
    ToFabric(u32),
    FromFabric(u32),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transfer {
    pub path: Path,
    /// Payload bytes (before protocol overhead).
    pub bytes: f64,
}

/// Transfers that run together, `times` times in a row (a ring's identical steps).
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    pub transfers: Vec<Transfer>,
    pub times: u32,
}

impl Default for Phase {
    fn default() -> Self {
        Phase::once(Vec::new())
    }
}

impl Phase {
    pub fn once(transfers: Vec<Transfer>) -> Self {
        Phase {
            transfers,
            times: 1,
        }
    }
}

/// Collective operations, with nccl-tests' size conventions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    AllReduce,
    AllGather,
    ReduceScatter,
    AllToAll,
    SendRecv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Algorithm {
    Ring,
    /// In-switch reduction (NVLink SHARP), single node.
    Nvls,
    /// Ring inside each node, ring across nodes over the rails, ring inside again.
    Hierarchical,
    /// Double binary tree (NCCL's inter-node all-reduce): two mirrored trees each reduce half
    /// the buffer up to a root and broadcast it back down, pipelined.
    Tree,
    /// NCCL's NVLSTree: an in-switch reduce-scatter inside each node, an all-reduce of each
    /// GPU's shard across nodes over its rail, and an in-switch all-gather, pipelined.
    NvlsTree,
    /// NCCL's CollNet (Direct) on a fabric that reduces in the network (SHARP): a
    /// reduce-scatter inside each node, each GPU's shard up its NIC and back reduced, an
    /// all-gather inside, pipelined.
    CollNet,
    Auto,
}

/// NCCL's wire protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    /// Low latency: 8-byte stores of data and flag.
    Ll,
    /// 128-byte lines, 120 of them data.
    Ll128,
    /// Bulk copies with a fence per chunk.
    Simple,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Ring => "ring",
            Algorithm::Nvls => "nvls",
            Algorithm::Hierarchical => "hierarchical",
            Algorithm::Tree => "tree",
            Algorithm::NvlsTree => "nvls-tree",
            Algorithm::CollNet => "collnet",
            Algorithm::Auto => "auto",
        }
    }

    /// Whether chunks stream through the algorithm's stages at once (NCCL's trees), so its
    /// phases share the links together rather than one after another.
    fn pipelined(self) -> bool {
        matches!(
            self,
            Algorithm::Tree | Algorithm::NvlsTree | Algorithm::CollNet
        )
    }
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::Ll, Protocol::Ll128, Protocol::Simple];
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Ll => "LL",
            Protocol::Ll128 => "LL128",
            Protocol::Simple => "Simple",
        }
    }
    fn index(self) -> usize {
        self as usize
    }
}

/// What a run measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measured {
    /// The algorithm and protocol NCCL's model picks (collectives and sends; none for MoE).
    pub choice: Option<(Algorithm, Protocol)>,
    pub time_s: f64,
    pub events: u64,
    /// Payload bytes each GPU sent over its NIC, and over NVLink.
    pub rdma_bytes: f64,
    pub nvlink_bytes: f64,
    /// Bytes on the wire (payload over protocol efficiency) each link carried, by link id,
    /// for the links that carried any.
    pub links: Vec<(LinkId, f64)>,
}

/// One phase's simulated time (once), and how often it runs.
#[derive(Debug, Clone, Copy)]
struct PhaseTime {
    ps: u64,
    times: u32,
}

/// What simulating phases found.
#[derive(Debug, Default)]
struct Flows {
    phases: Vec<PhaseTime>,
    events: u64,
    rdma: f64,
    nvlink: f64,
    links: Vec<(LinkId, f64)>,
}

/// Runs collectives on one cluster.
pub struct Collectives<'a> {
    pub cluster: &'a Cluster,
    pub cal: &'a Calibration,
    pub router: Router,
}

impl<'a> Collectives<'a> {
    pub fn new(cluster: &'a Cluster, cal: &'a Calibration) -> Self {
        Collectives {
            cluster,
            cal,
            router: Router::new(cluster),
        }
    }

    /// NCCL's achieved share of NVLink for ring/copy traffic on this GPU generation.
    fn nvlink_eff(&self) -> f64 {
        let n = &self.cal.network;
        match self.cluster.gpu.architecture {
            Architecture::Ampere => n.nccl_ring_efficiency_ampere.value,
            _ => n.nccl_ring_efficiency_hopper.value,
        }
    }

    /// Runs phases one after another; `eff` maps a transfer to its link efficiency. Each flow
    /// arrives one route latency after it drains, and the collective adds the calibrated
    /// launch latency once (DeepEP-style kernels; NCCL's collectives go through
    /// [`Collectives::nccl`]).
    pub fn run(&self, phases: &[Phase], eff: &dyn Fn(&Transfer) -> f64) -> Measured {
        let f = self.flows(phases, eff, true);
        let t: u64 = f.phases.iter().map(|p| p.ps * p.times as u64).sum();
        Measured {
            choice: None,
            time_s: t as f64 / 1e12 + self.cal.network.collective_latency.value.as_secs_f64(),
            events: f.events,
            rdma_bytes: f.rdma,
            nvlink_bytes: f.nvlink,
            links: f.links,
        }
    }

    /// Prices phases as NCCL runs them with `algo` on a buffer of `bytes` (nccl-tests
    /// convention): for each protocol the algorithm supports, the tuning model's base latency,
    /// each step's latency inside or between nodes, and the simulated bandwidth time at the
    /// protocol's share of the bandwidth, stretched by the pipeline fill; the cheapest wins.
    pub fn nccl(
        &self,
        phases: &[Phase],
        eff: &dyn Fn(&Transfer) -> f64,
        (op, algo, bytes): (Op, Algorithm, f64),
        (nodes, per_node): (usize, usize),
    ) -> Measured {
        // Each stage's steps, and the share of its hops that cross nodes.
        let stages: Vec<(f64, f64)> = phases
            .iter()
            .map(|p| (f64::from(p.times), self.crossing_share(p)))
            .collect();
        // NCCL's rings and trees are pipelines: a hop forwards what has arrived, so each runs
        // at its busiest link's pace. An all-to-all's or a send's peers stream independently.
        let f = match op {
            Op::AllToAll | Op::SendRecv => self.flows(phases, eff, false),
            _ if algo.pipelined() => self.streamed(&[Self::concurrent(phases)], eff),
            _ => self.streamed(phases, eff),
        };
        let m = &self.cal.network.nccl;
        // A pipelined algorithm fills each of its stages before the last one streams: its
        // window is the sum of its stages' (NVLS for in-switch stages, the copy window else).
        let medium = |p: &Phase| {
            let in_switch =
                |t: &Transfer| matches!(t.path, Path::ToSwitch(_) | Path::FromSwitch(_));
            if p.transfers.iter().any(in_switch) {
                m.nvls_window.value.bytes
            } else {
                m.ring_window.value.bytes
            }
        };
        let window = match algo {
            a if a.pipelined() => phases.iter().map(medium).sum(),
            Algorithm::Nvls => m.nvls_window.value.bytes,
            _ => m.ring_window.value.bytes,
        };
        let fill = 1.0 + window / (bytes.max(0.0) + window).max(f64::MIN_POSITIVE);
        let protocols: &[Protocol] = match (algo, op) {
            (Algorithm::Nvls | Algorithm::NvlsTree | Algorithm::CollNet, _) => &[Protocol::Simple],
            (_, Op::SendRecv | Op::AllToAll) => &[Protocol::Ll, Protocol::Simple],
            _ => &Protocol::ALL,
        };
        // A pipelined tree's pass takes one step per level: its levels between nodes, and
        // inside them.
        let levels = |n: usize| n.max(1).next_power_of_two().trailing_zeros() as f64;
        let (tree_net, tree_nvl) = (levels(nodes), levels(per_node));
        let time = |p: Protocol| -> (f64, f64) {
            let k = p.index();
            let share = match p {
                Protocol::Ll => m.ll_bandwidth.value,
                Protocol::Ll128 => m.ll128_bandwidth.value,
                Protocol::Simple => 1.0,
            };
            let (base, nvl, net) = match algo {
                Algorithm::Nvls => (m.nvls_latency.value.as_secs_f64(), 0.0, 0.0),
                Algorithm::NvlsTree => (
                    m.nvls_latency.value.as_secs_f64(),
                    0.0,
                    m.tree_step_latency_net.value[k].as_secs_f64(),
                ),
                Algorithm::CollNet => (
                    m.ring_base_latency.value[k].as_secs_f64(),
                    m.ring_step_latency_nvlink.value[k].as_secs_f64(),
                    m.tree_step_latency_net.value[k].as_secs_f64(),
                ),
                Algorithm::Tree => (
                    m.tree_base_latency.value[k].as_secs_f64(),
                    m.tree_step_latency_nvlink.value[k].as_secs_f64(),
                    m.tree_step_latency_net.value[k].as_secs_f64(),
                ),
                _ => (
                    m.ring_base_latency.value[k].as_secs_f64(),
                    m.ring_step_latency_nvlink.value[k].as_secs_f64(),
                    m.ring_step_latency_net.value[k].as_secs_f64(),
                ),
            };
            // A tree pass takes a step per level; NVLSTree's passes up and down its
            // inter-node tree are its only stepped latency; a ring's step pays the network's
            // latency on the hops that cross nodes and NVLink's on the rest.
            let latency: f64 = match algo {
                Algorithm::Tree => 2.0 * (tree_net * net + tree_nvl * nvl),
                Algorithm::NvlsTree => 2.0 * tree_net * net,
                // Up to the switches and back down once; the steps inside the nodes as a ring's.
                Algorithm::CollNet => 2.0 * net + 2.0 * (per_node.max(1) - 1) as f64 * nvl,
                _ => stages
                    .iter()
                    .map(|&(steps, cross)| steps * (cross * net + (1.0 - cross) * nvl))
                    .sum(),
            };
            let bandwidth: f64 = f
                .phases
                .iter()
                .map(|ph| ph.ps as f64 / 1e12 * f64::from(ph.times))
                .sum();
            (base + latency + bandwidth / share * fill, share)
        };
        let (p, (t, share)) = protocols
            .iter()
            .map(|&p| (p, time(p)))
            .min_by(|a, b| a.1 .0.total_cmp(&b.1 .0).then(a.0.cmp(&b.0)))
            .expect("a protocol");
        Measured {
            choice: Some((algo, p)),
            time_s: t,
            events: f.events,
            rdma_bytes: f.rdma,
            nvlink_bytes: f.nvlink,
            links: f.links.into_iter().map(|(l, b)| (l, b / share)).collect(),
        }
    }

    /// Phases one after another, each a pipeline whose transfers stream at once, every one at
    /// the same share of its bytes per second (a chunk crosses every hop): a phase takes its
    /// busiest link's bytes over that link's capacity, and no transfer drains early to hand its
    /// bandwidth to the rest. A transfer keeps its route (its connection) from phase to phase.
    fn streamed(&self, phases: &[Phase], eff: &dyn Fn(&Transfer) -> f64) -> Flows {
        let r = &self.router;
        let mut total = vec![0.0; r.capacity.len()];
        let mut load = vec![0.0; r.capacity.len()];
        let mut out = Flows::default();
        for ph in phases {
            let times = f64::from(ph.times);
            load.fill(0.0);
            for (i, tr) in ph.transfers.iter().enumerate() {
                self.count(&mut out, tr, times);
                let (links, weights) = self.route_of(tr, i);
                let bytes = tr.bytes / eff(tr);
                for (h, &l) in links.iter().enumerate() {
                    load[l as usize] += bytes * weights.get(h).copied().unwrap_or(1.0);
                }
            }
            let secs = load
                .iter()
                .zip(&r.capacity)
                .map(|(b, c)| b / c)
                .fold(0.0, f64::max);
            out.phases.push(PhaseTime {
                ps: (secs * 1e12).ceil() as u64,
                times: ph.times,
            });
            for (t, b) in total.iter_mut().zip(&load) {
                *t += b * times;
            }
        }
        out.links = total
            .into_iter()
            .enumerate()
            .filter(|&(_, b)| b > 0.0)
            .map(|(l, b)| (l as LinkId, b))
            .collect();
        out
    }

    /// Adds what GPU 0 sends in `tr`, `times` over, to its NIC or NVLink payload.
    fn count(&self, out: &mut Flows, tr: &Transfer, times: f64) {
        match tr.path {
            Path::Gpu(0, b) if b != 0 && self.router.node(b) == 0 => out.nvlink += tr.bytes * times,
            Path::Gpu(0, b) if b != 0 => out.rdma += tr.bytes * times,
            Path::ToSwitch(0) => out.nvlink += tr.bytes * times,
            Path::ToFabric(0) => out.rdma += tr.bytes * times,
            _ => {}
        }
    }

    /// A transfer's links, and each hop's share of it under adaptive routing (empty: all of it
    /// on every hop); `i`, its connection, salts its ECMP hash.
    fn route_of(&self, tr: &Transfer, i: usize) -> (Vec<LinkId>, Vec<f64>) {
        let r = &self.router;
        match tr.path {
            Path::Gpu(a, b) if a == b => (Vec::new(), Vec::new()),
            Path::Gpu(a, b) => r.route_weighted(a, b, i as u64),
            Path::ToSwitch(a) => (r.to_switch(a), Vec::new()),
            Path::FromSwitch(a) => (r.from_switch(a), Vec::new()),
            Path::ToFabric(a) => (r.to_fabric(a), Vec::new()),
            Path::FromFabric(a) => (r.from_fabric(a), Vec::new()),
        }
    }

    /// Simulates phases one after another on an empty network each, `latency`: with each
    /// route's latency in the flows' arrivals.
    ///
    /// A phase identical to the one before it (a ring's steps) takes the same time and loads
    /// the same links: it is simulated once. A transfer keeps its route from phase to phase,
    /// as an NCCL connection keeps its queue pair and so its ECMP hash.
    fn flows(&self, phases: &[Phase], eff: &dyn Fn(&Transfer) -> f64, latency: bool) -> Flows {
        let r = &self.router;
        let lat: Vec<u64> = if latency {
            r.latency.clone()
        } else {
            vec![0; r.latency.len()]
        };
        let mut net = FlowNet::new(&r.capacity, &lat);
        let mut t = 0u64;
        let mut out = Flows::default();
        // The previous phase, its duration and the bytes it put on each link.
        let mut last: Option<(&Phase, u64, Vec<f64>)> = None;
        let mut repeated = vec![0.0; r.capacity.len()];
        for ph in phases {
            let times = ph.times as f64;
            for tr in &ph.transfers {
                self.count(&mut out, tr, times);
            }
            if let Some((prev, dur, delta)) = &last {
                if prev.transfers == ph.transfers {
                    t += dur * ph.times as u64;
                    for (x, d) in repeated.iter_mut().zip(delta) {
                        *x += d * times;
                    }
                    out.phases.push(PhaseTime {
                        ps: *dur,
                        times: ph.times,
                    });
                    continue;
                }
            }
            net.advance_to(t);
            let before = net.carried.clone();
            for (i, tr) in ph.transfers.iter().enumerate() {
                if matches!(tr.path, Path::Gpu(a, b) if a == b) {
                    continue;
                }
                let (links, weights) = self.route_of(tr, i);
                let bytes = tr.bytes / eff(tr);
                if weights.is_empty() {
                    net.start(links, bytes, i as u32);
                } else {
                    net.start_class(links, weights, f64::INFINITY, bytes, i as u32);
                }
            }
            let mut end = t;
            while let Some(a) = net.next_arrival() {
                end = end.max(a.at);
            }
            let delta: Vec<f64> = net
                .carried
                .iter()
                .zip(&before)
                .map(|(a, b)| a - b)
                .collect();
            let dur = end - t;
            t = end + dur * (ph.times as u64 - 1);
            for (x, d) in repeated.iter_mut().zip(&delta) {
                *x += d * (times - 1.0);
            }
            out.phases.push(PhaseTime {
                ps: dur,
                times: ph.times,
            });
            last = Some((ph, dur, delta));
        }
        out.events = net.events();
        out.links = net
            .carried
            .iter()
            .zip(&repeated)
            .enumerate()
            .map(|(l, (&b, &x))| (l as LinkId, b + x))
            .filter(|&(_, b)| b > 0.0)
            .collect();
        out
    }

    /// Phases of several groups that run at once, merged step by step.
    pub fn merged(groups: impl IntoIterator<Item = Vec<Phase>>) -> Vec<Phase> {
        let mut out: Vec<Phase> = Vec::new();
        for phases in groups {
            for (k, p) in phases.into_iter().enumerate() {
                if k == out.len() {
                    out.push(Phase {
                        transfers: Vec::new(),
                        times: p.times,
                    });
                }
                debug_assert_eq!(out[k].times, p.times, "groups of one shape");
                out[k].transfers.extend(p.transfers);
            }
        }
        out
    }

    /// Phases run as one: each transfer carries its bytes for every time its phase repeats
    /// (the steady state of a pipeline whose stages all stream at once).
    fn concurrent(phases: &[Phase]) -> Phase {
        Phase::once(
            phases
                .iter()
                .flat_map(|p| {
                    p.transfers.iter().map(|t| Transfer {
                        bytes: t.bytes * f64::from(p.times),
                        ..*t
                    })
                })
                .collect(),
        )
    }

    /// The share of a phase's GPU-to-GPU transfers that cross nodes.
    fn crossing_share(&self, p: &Phase) -> f64 {
        let (mut all, mut cross) = (0u32, 0u32);
        for t in &p.transfers {
            if let Path::Gpu(a, b) = t.path {
                all += 1;
                cross += u32::from(self.router.node(a) != self.router.node(b));
            }
        }
        if all == 0 {
            0.0
        } else {
            f64::from(cross) / f64::from(all)
        }
    }

    /// NCCL's rings over ranks on several nodes of `a` ranks each: one ring per position,
    /// each visiting every node's ranks in turn and carrying `bytes` / `a` in `steps` steps.
    /// Ring `c` enters node `k` at position `c - k` and leaves it from the position before,
    /// to the same position of the next node: on a rail, each NIC sending for one ring.
    fn rings(nodes: &[Vec<u32>], steps: usize, bytes: f64) -> Vec<Phase> {
        let a = nodes[0].len();
        let n = a * nodes.len();
        if steps == 0 || n < 2 {
            return Vec::new();
        }
        let step_bytes = bytes / (a * n) as f64;
        // Inside a node every ring but the one leaving from a position takes the same hop from
        // it to the next position: those hops travel as one transfer of their bytes together,
        // so a node holds 2a transfers, not a² (exact for rings, priced by their links' loads).
        let mut transfers: Vec<Transfer> = Vec::with_capacity(2 * n);
        let mut index: std::collections::HashMap<(u32, u32), usize> =
            std::collections::HashMap::with_capacity(2 * n);
        for c in 0..a {
            let order: Vec<u32> = nodes
                .iter()
                .enumerate()
                .flat_map(|(k, m)| {
                    let start = (c + a - k % a) % a;
                    (0..a).map(move |j| m[(start + j) % a])
                })
                .collect();
            for i in 0..n {
                let (from, to) = (order[i], order[(i + 1) % n]);
                match index.get(&(from, to)) {
                    Some(&t) => transfers[t].bytes += step_bytes,
                    None => {
                        index.insert((from, to), transfers.len());
                        transfers.push(Transfer {
                            path: Path::Gpu(from, to),
                            bytes: step_bytes,
                        });
                    }
                }
            }
        }
        vec![Phase {
            transfers,
            times: steps as u32,
        }]
    }

    pub fn default_eff(&self) -> impl Fn(&Transfer) -> f64 + '_ {
        let nvl = self.nvlink_eff();
        let ib = self.cal.network.ib_efficiency.value;
        let nvls = self.cal.network.nvls_efficiency.value;
        move |t: &Transfer| match t.path {
            Path::Gpu(a, b) if self.router.node(a) != self.router.node(b) => ib,
            Path::Gpu(..) => nvl,
            Path::ToFabric(_) | Path::FromFabric(_) => ib,
            _ => nvls,
        }
    }

    /// Ring steps over `ranks`: `steps` times, each rank sending `bytes` to the next.
    pub fn ring(ranks: &[u32], steps: usize, bytes: f64) -> Vec<Phase> {
        let n = ranks.len();
        if steps == 0 || n == 0 {
            return Vec::new();
        }
        vec![Phase {
            transfers: (0..n)
                .map(|i| Transfer {
                    path: Path::Gpu(ranks[i], ranks[(i + 1) % n]),
                    bytes,
                })
                .collect(),
            times: steps as u32,
        }]
    }

    /// Each of `ranks` sends `up` into its node's switch and takes `down` from its multicast.
    fn switch(ranks: &[u32], up: f64, down: f64) -> Phase {
        let to = ranks.iter().map(|&g| Transfer {
            path: Path::ToSwitch(g),
            bytes: up,
        });
        let from = ranks.iter().map(|&g| Transfer {
            path: Path::FromSwitch(g),
            bytes: down,
        });
        Phase::once(to.chain(from).collect())
    }

    /// The rails of ranks grouped by node: for each position of the first node, the ranks at
    /// that position of every node that has one.
    fn rails(nodes: &[Vec<u32>]) -> impl Iterator<Item = Vec<u32>> + '_ {
        (0..nodes[0].len())
            .map(move |pos| nodes.iter().filter_map(|m| m.get(pos).copied()).collect())
    }

    /// A double binary tree over `ranks`: heap-ordered binary trees over the ranks and over the
    /// ranks reversed, each reducing half of `bytes` up (the first phase) and broadcasting it
    /// back down (the second); in a pipelined tree every edge carries its half at once.
    fn trees(ranks: &[u32], bytes: f64) -> Vec<Phase> {
        let mut up = Phase::default();
        let mut down = Phase::default();
        for order in [
            ranks.to_vec(),
            ranks.iter().rev().copied().collect::<Vec<u32>>(),
        ] {
            for i in 1..order.len() {
                let (child, parent) = (order[i], order[(i - 1) / 2]);
                up.transfers.push(Transfer {
                    path: Path::Gpu(child, parent),
                    bytes: bytes / 2.0,
                });
                down.transfers.push(Transfer {
                    path: Path::Gpu(parent, child),
                    bytes: bytes / 2.0,
                });
            }
        }
        vec![up, down]
    }

    /// Whether ranks span several nodes with the same number (above one) on each: NCCL's
    /// multi-node rings and trees then start one channel per position.
    fn even(nodes: &[Vec<u32>]) -> bool {
        nodes.len() > 1 && nodes[0].len() > 1 && nodes.iter().all(|m| m.len() == nodes[0].len())
    }

    /// Groups `ranks` by node, in order.
    fn by_node(&self, ranks: &[u32]) -> Vec<Vec<u32>> {
        let mut out: Vec<Vec<u32>> = Vec::new();
        for &g in ranks {
            match out.last_mut() {
                Some(v) if self.router.node(v[0]) == self.router.node(g) => v.push(g),
                _ => out.push(vec![g]),
            }
        }
        out
    }

    /// The algorithm `Auto` stands for on `ranks` (before any choice by price): NVLS inside a
    /// node with in-switch reduction, the hierarchical ring across nodes of several ranks each,
    /// else the flat ring.
    fn resolve(&self, op: Op, ranks: &[u32], algo: Algorithm) -> Algorithm {
        let nodes = self.by_node(ranks);
        let single_node = nodes.len() == 1;
        match algo {
            Algorithm::Auto
                if op == Op::AllReduce && single_node && self.cluster.in_switch_reduction =>
            {
                Algorithm::Nvls
            }
            Algorithm::Auto if !single_node && nodes[0].len() > 1 => Algorithm::Hierarchical,
            Algorithm::Auto => Algorithm::Ring,
            // NVLSTree needs several nodes, each with an in-switch reduction and several ranks.
            Algorithm::NvlsTree if single_node && self.cluster.in_switch_reduction => {
                Algorithm::Nvls
            }
            // CollNet needs a fabric that reduces and several nodes with the same ranks on each.
            Algorithm::CollNet
                if op != Op::AllReduce
                    || !self.cluster.in_network_reduction
                    || nodes.len() < 2
                    || nodes.iter().any(|m| m.len() != nodes[0].len()) =>
            {
                Algorithm::Ring
            }
            Algorithm::NvlsTree
                if op != Op::AllReduce
                    || !self.cluster.in_switch_reduction
                    || !Self::even(&nodes) =>
            {
                Algorithm::Tree
            }
            a => a,
        }
    }

    /// The phases of a collective of `bytes` (nccl-tests convention) over `ranks`.
    pub fn phases(&self, op: Op, ranks: &[u32], bytes: f64, algo: Algorithm) -> Vec<Phase> {
        let n = ranks.len();
        if n <= 1 {
            return Vec::new();
        }
        let nodes = self.by_node(ranks);
        let algo = self.resolve(op, ranks, algo);
        let nf = n as f64;
        match (op, algo) {
            (Op::SendRecv, _) => vec![Phase::once(vec![Transfer {
                path: Path::Gpu(ranks[0], ranks[1]),
                bytes,
            }])],
            (Op::AllToAll, _) => vec![Phase::once(
                (0..n)
                    .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
                    .map(|(i, j)| Transfer {
                        path: Path::Gpu(ranks[i], ranks[j]),
                        bytes: bytes / nf,
                    })
                    .collect(),
            )],
            (Op::AllReduce, Algorithm::Nvls) => vec![Self::switch(ranks, bytes, bytes)],
            (Op::AllReduce, Algorithm::CollNet) => {
                let a = nodes[0].len();
                let shard = bytes / a as f64;
                let inside = Self::merged(nodes.iter().map(|m| Self::ring(m, a - 1, shard)));
                let mut fabric = Phase::once(
                    ranks
                        .iter()
                        .map(|&g| Transfer {
                            path: Path::ToFabric(g),
                            bytes: shard,
                        })
                        .collect(),
                );
                fabric.transfers.extend(ranks.iter().map(|&g| Transfer {
                    path: Path::FromFabric(g),
                    bytes: shard,
                }));
                let mut v = inside.clone();
                v.push(fabric);
                v.extend(inside);
                v
            }
            (Op::AllReduce, Algorithm::Ring) if Self::even(&nodes) => {
                Self::rings(&nodes, 2 * (n - 1), bytes)
            }
            (Op::AllReduce, Algorithm::Ring) => Self::ring(ranks, 2 * (n - 1), bytes / nf),
            (Op::AllReduce, Algorithm::NvlsTree) => {
                let shard = bytes / nodes[0].len() as f64;
                let b = nodes.len();
                let mut v = vec![Self::switch(ranks, bytes, shard)];
                v.extend(Self::merged(
                    Self::rails(&nodes)
                        .map(|rail| Self::ring(&rail, 2 * (b - 1), shard / b as f64)),
                ));
                v.push(Self::switch(ranks, shard, bytes));
                v
            }
            (Op::AllReduce, Algorithm::Tree) if Self::even(&nodes) => {
                // NCCL's tree across nodes: a reduce-scatter inside each node, the double
                // binary tree over each position's rail on that position's shard, and an
                // all-gather inside again, all streaming at once.
                let a = nodes[0].len();
                let shard = bytes / a as f64;
                let inside = Self::merged(nodes.iter().map(|m| Self::ring(m, a - 1, shard)));
                let mut v = inside.clone();
                v.extend(Self::merged(
                    Self::rails(&nodes).map(|rail| Self::trees(&rail, shard)),
                ));
                v.extend(inside);
                v
            }
            (Op::AllReduce, Algorithm::Tree) => Self::trees(ranks, bytes),
            (Op::AllGather | Op::ReduceScatter, Algorithm::Ring) if Self::even(&nodes) => {
                Self::rings(&nodes, n - 1, bytes)
            }
            (
                Op::AllGather | Op::ReduceScatter,
                Algorithm::Ring
                | Algorithm::Nvls
                | Algorithm::Tree
                | Algorithm::NvlsTree
                | Algorithm::CollNet,
            ) => Self::ring(ranks, n - 1, bytes / nf),
            (_, Algorithm::Hierarchical) => {
                // Inside each node, then across nodes among same-position ranks, then inside again.
                let a = nodes[0].len();
                let inside = |steps: usize, b: f64| -> Vec<Phase> {
                    Self::merged(nodes.iter().map(|members| Self::ring(members, steps, b)))
                };
                let across = |steps: usize, b: f64| -> Vec<Phase> {
                    Self::merged(Self::rails(&nodes).map(|rail| Self::ring(&rail, steps, b)))
                };
                let b = nodes.len();
                let shard = bytes / a as f64;
                let mut v = Vec::new();
                match op {
                    Op::AllReduce => {
                        v.extend(inside(a - 1, shard));
                        v.extend(across(2 * (b - 1), shard / b as f64));
                        v.extend(inside(a - 1, shard));
                    }
                    Op::ReduceScatter => {
                        v.extend(inside(a - 1, shard));
                        v.extend(across(b - 1, shard / b as f64));
                    }
                    _ => {
                        v.extend(across(b - 1, shard / b as f64));
                        v.extend(inside(a - 1, shard));
                    }
                }
                v.retain(|p| !p.transfers.is_empty());
                v
            }
            (_, Algorithm::Auto) => unreachable!("resolved above"),
        }
    }

    /// One collective over `ranks`.
    pub fn collective(&self, op: Op, ranks: &[u32], bytes: f64, algo: Algorithm) -> Measured {
        self.collective_groups(op, &[ranks.to_vec()], bytes, algo)
    }

    /// The same collective over several groups of one shape at once (each GPU's counts as in
    /// one). `Auto` prices every algorithm NCCL would consider and runs the cheapest, as NCCL's
    /// tuner does; each algorithm runs its cheapest protocol.
    pub fn collective_groups(
        &self,
        op: Op,
        groups: &[Vec<u32>],
        bytes: f64,
        algo: Algorithm,
    ) -> Measured {
        let ranks = &groups[0];
        let n = ranks.len();
        let eff = self.default_eff();
        let by_node = self.by_node(ranks);
        let nodes = by_node.len();
        let algos: Vec<Algorithm> = match algo {
            Algorithm::Auto => {
                let mut v = vec![Algorithm::Auto];
                if op == Op::AllReduce && nodes > 1 && n > 2 {
                    v.push(Algorithm::Tree);
                    if self.cluster.in_switch_reduction && Self::even(&by_node) {
                        v.push(Algorithm::NvlsTree);
                    }
                    if self.cluster.in_network_reduction {
                        v.push(Algorithm::CollNet);
                    }
                }
                if self.resolve(op, ranks, Algorithm::Auto) != Algorithm::Ring {
                    v.push(Algorithm::Ring);
                }
                v
            }
            a => vec![a],
        };
        let mut best: Option<Measured> = None;
        let mut priced: Vec<Algorithm> = Vec::new();
        for a in algos {
            // Candidates that fall back to the same algorithm (CollNet on uneven nodes, to
            // the ring) are priced once.
            let resolved = self.resolve(op, ranks, a);
            if priced.contains(&resolved) {
                continue;
            }
            priced.push(resolved);
            let phases = Self::merged(groups.iter().map(|r| self.phases(op, r, bytes, resolved)));
            let m = self.nccl(
                &phases,
                &eff,
                (op, resolved, bytes),
                (nodes, n.div_ceil(nodes.max(1))),
            );
            if best.as_ref().is_none_or(|b| m.time_s < b.time_s) {
                best = Some(m);
            }
        }
        best.unwrap_or_default()
    }

    /// DeepEP-style MoE dispatch (or combine, its reverse) over the EP group `ranks`:
    /// `tokens` per GPU, `bytes_per_token` on the wire.
    pub fn moe(
        &self,
        ranks: &[u32],
        tokens: f64,
        bytes_per_token: f64,
        route: MoeRoute,
        dispatch: bool,
    ) -> Measured {
        self.moe_groups(&[ranks.to_vec()], tokens, bytes_per_token, route, dispatch)
    }

    /// [`Collectives::moe`] over several EP groups at once (each GPU's counts as in one).
    pub fn moe_groups(
        &self,
        groups: &[Vec<u32>],
        tokens: f64,
        bytes_per_token: f64,
        route: MoeRoute,
        dispatch: bool,
    ) -> Measured {
        let phase = Phase::once(
            groups
                .iter()
                .flat_map(|g| {
                    self.moe_phase(g, tokens, bytes_per_token, route, dispatch)
                        .transfers
                })
                .collect(),
        );
        let ranks = &groups[0];
        let k = self.by_node(ranks).len() as u64;
        let d = route.nodes_per_token(k);
        let (rdma, nvl) = self.cal.network.moe_efficiency(dispatch);
        let sm = self.cal.network.moe_sm_share(route.sms);
        let (rdma, nvl) = (rdma * sm, nvl * sm);
        let eff = |tr: &Transfer| match tr.path {
            Path::Gpu(a, b) if self.router.node(a) != self.router.node(b) => rdma,
            _ => nvl,
        };
        let m = self.run(&[phase], &eff);
        // DeepEP's test reports bytes per rank as it counts them: RDMA = tokens × distinct target
        // nodes (its own node included) × bytes; NVLink = tokens received (from every rank, its
        // own included) × bytes. The flows above carry only what really crosses each link. An
        // all-to-all's copies: RDMA those to other nodes, NVLink those inside the node.
        let (rdma, nvlink) = match route.dispatcher {
            MoeDispatcher::Deepep => (
                if k > 1 { d } else { 0.0 },
                route.gpus_per_token(ranks.len() as u64, k),
            ),
            MoeDispatcher::AllToAll => {
                let (ep, per_node) = (ranks.len() as f64, (ranks.len() as u64 / k) as f64);
                let topk = route.topk as f64;
                (topk * (ep - per_node) / ep, topk * per_node / ep)
            }
        };
        Measured {
            rdma_bytes: tokens * rdma * bytes_per_token,
            nvlink_bytes: tokens * nvlink * bytes_per_token,
            ..m
        }
    }

    /// One EP group's dispatch (or combine) transfers.
    fn moe_phase(
        &self,
        ranks: &[u32],
        tokens: f64,
        bytes_per_token: f64,
        route: MoeRoute,
        dispatch: bool,
    ) -> Phase {
        if route.dispatcher == MoeDispatcher::AllToAll {
            // A copy of each token per routed expert, spread evenly over the experts: every
            // other GPU of the group gets topk/ep of this GPU's tokens, straight from it.
            let each = tokens * route.topk as f64 / ranks.len() as f64 * bytes_per_token;
            let t = ranks
                .iter()
                .flat_map(|&a| ranks.iter().filter(move |&&b| b != a).map(move |&b| (a, b)))
                .map(|(a, b)| Transfer {
                    path: if dispatch {
                        Path::Gpu(a, b)
                    } else {
                        Path::Gpu(b, a)
                    },
                    bytes: each,
                })
                .collect();
            return Phase::once(t);
        }
        let nodes = self.by_node(ranks);
        let k = nodes.len() as u64;
        let per_node = nodes[0].len();
        let d = route.nodes_per_token(k);
        // A token's experts on one targeted node land on this many distinct GPUs there.
        let g = route.gpus_per_token(ranks.len() as u64, k) / d;
        let share = d / k as f64; // of a GPU's tokens, the share that targets a given node
        let mut t = Vec::new();
        for (ni, members) in nodes.iter().enumerate() {
            for (pos, &s) in members.iter().enumerate() {
                for (nj, other) in nodes.iter().enumerate() {
                    let node_bytes = tokens * share * bytes_per_token;
                    if ni == nj {
                        // Local tokens go straight to the local expert GPUs over NVLink.
                        for &dst in other.iter().filter(|&&x| x != s) {
                            t.push((s, dst, node_bytes * g / per_node as f64));
                        }
                    } else {
                        // Once over InfiniBand to the same-position GPU, then NVLink fan-out.
                        let relay = other[pos.min(other.len() - 1)];
                        t.push((s, relay, node_bytes));
                        for &dst in other.iter().filter(|&&x| x != relay) {
                            t.push((relay, dst, node_bytes * g / per_node as f64));
                        }
                    }
                }
            }
        }
        Phase::once(
            t.into_iter()
                .map(|(a, b, bytes)| Transfer {
                    path: if dispatch {
                        Path::Gpu(a, b)
                    } else {
                        Path::Gpu(b, a)
                    },
                    bytes,
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(oversubscription: f64, planes: u32) -> Cluster {
        cluster_with(oversubscription, planes, false)
    }

    fn cluster_with(oversubscription: f64, planes: u32, rail: bool) -> Cluster {
        crate::topo::fixture(
            "H100",
            8,
            8,
            8,
            &format!(
                r#"{{ kind: fat_tree, layers: 2, planes: {planes}, rail_optimized: {rail}, switch_radix: 16, oversubscription: {oversubscription}, hop_latency: "0.5 us" }}"#
            ),
        )
    }

    /// Megatron's all-to-all dispatcher sends a copy of each token per routed expert straight
    /// to the expert's GPU. Inside one node of n GPUs every GPU sends t·k·(n−1)/n copies over
    /// its NVLink, which bounds the time: bytes over the link at DeepEP's NVLink efficiency.
    /// Over two nodes it sends k·(ep − n)/ep copies of a token over InfiniBand, where DeepEP
    /// sends one per other target node: with DeepSeek-V3's routing, about four times fewer.
    #[test]
    fn alltoall_dispatch_sends_a_copy_per_expert() {
        let c = cluster(1.0, 8);
        let cal = crate::builtin::calibration();
        let co = Collectives::new(&c, &cal);
        let route = |dispatcher| MoeRoute {
            routed: 256,
            topk: 8,
            groups: 8,
            topk_groups: 4,
            sms: 0,
            dispatcher,
        };
        let (t, bpt) = (65536.0, 7168.0 * 2.0);
        let node: Vec<u32> = (0..8).collect();
        let m = co.moe(&node, t, bpt, route(MoeDispatcher::AllToAll), true);
        let (_, nvl) = cal.network.moe_efficiency(true);
        let want = t * 8.0 * 7.0 / 8.0 * bpt / (c.scale_up.bytes_per_s * nvl);
        assert!(
            (m.time_s - want).abs() < 0.01 * want,
            "{} vs {want}",
            m.time_s
        );
        assert_eq!(m.rdma_bytes, 0.0);
        let two: Vec<u32> = (0..16).collect();
        let a2a = co.moe(&two, 4096.0, bpt, route(MoeDispatcher::AllToAll), true);
        let deepep = co.moe(&two, 4096.0, bpt, route(MoeDispatcher::Deepep), true);
        assert!((a2a.rdma_bytes - 4096.0 * 4.0 * bpt).abs() < 1e-6 * a2a.rdma_bytes);
        let copies = route(MoeDispatcher::Deepep).nodes_per_token(2) / 2.0;
        let ratio = 4.0 / copies;
        let slower = a2a.time_s / deepep.time_s;
        assert!(
            (slower - ratio).abs() < 0.15 * ratio,
            "all-to-all {slower:.2}x DeepEP's time, {ratio:.2}x its InfiniBand copies"
        );
    }

    /// A ring all-reduce of S over the n GPUs of a node sends 2(n−1)/n·S from every GPU: each
    /// GPU's NVLink up-link carries that over the protocol efficiency, and nothing leaves the
    /// node. A send to the next node puts S/efficiency on every hop of its route.
    #[test]
    fn links_carry_what_the_collective_sends() {
        use crate::topo::LinkKind;
        let c = cluster(1.0, 1);
        let cal = crate::builtin::calibration();
        let co = Collectives::new(&c, &cal);
        let (n, s) = (8.0, 1e9);
        let m = co.collective(
            Op::AllReduce,
            &(0..8).collect::<Vec<_>>(),
            s,
            Algorithm::Ring,
        );
        let kind = |l: LinkId| c.graph.edge_weights().nth(l as usize).expect("a link").kind;
        let eff = co.nvlink_eff();
        let want = 2.0 * (n - 1.0) / n * s / eff;
        let up: Vec<f64> = m
            .links
            .iter()
            .filter(|&&(l, _)| kind(l) == LinkKind::NvLink)
            .map(|&(_, b)| b)
            .collect();
        assert_eq!(up.len(), 16, "8 GPUs up and 8 down");
        for b in &up {
            assert!((b - want).abs() < 1e-6 * want, "{b} vs {want}");
        }
        assert!(m.links.iter().all(|&(l, _)| kind(l) == LinkKind::NvLink));
        let p = co.collective(Op::SendRecv, &[0, 8], s, Algorithm::Auto);
        let ib = cal.network.ib_efficiency.value;
        let kinds: Vec<LinkKind> = p.links.iter().map(|&(l, _)| kind(l)).collect();
        assert!(kinds.contains(&LinkKind::Pcie) && kinds.contains(&LinkKind::NicLeaf));
        for &(_, b) in &p.links {
            assert!((b - s / ib).abs() < 1e-6 * s, "{b} on a hop of one send");
        }
    }

    /// A tree all-reduce moves each half of the buffer up and down one tree: on a switch it takes
    /// about 2·S/B (a ring takes 2(n−1)/n·S/B), and it needs only two phases instead of 2(n−1).
    #[test]
    fn tree_all_reduce_is_two_pipelined_passes() {
        let cal = crate::builtin::calibration();
        let c = cluster(1.0, 1);
        let co = Collectives::new(&c, &cal);
        let ranks: Vec<u32> = (0..8).collect();
        assert_eq!(
            co.phases(Op::AllReduce, &ranks, 1e9, Algorithm::Tree).len(),
            2
        );
        let tree = co
            .collective(Op::AllReduce, &ranks, 1e9, Algorithm::Tree)
            .time_s;
        let ring = co
            .collective(Op::AllReduce, &ranks, 1e9, Algorithm::Ring)
            .time_s;
        assert!(
            tree > ring && tree < ring * 1.5,
            "tree {tree} vs ring {ring}"
        );
    }

    /// Congestion appears where it physically would: an all-to-all across nodes slows down on
    /// oversubscribed leaf uplinks, while traffic inside one node does not notice.
    #[test]
    fn oversubscribed_uplinks_slow_cross_node_traffic_only() {
        let cal = crate::builtin::calibration();
        let (fat, thin) = (cluster(1.0, 1), cluster(3.0, 1));
        let all: Vec<u32> = (0..64).collect();
        let one_node: Vec<u32> = (0..8).collect();
        let t = |c: &Cluster, r: &[u32]| {
            Collectives::new(c, &cal)
                .collective(Op::AllToAll, r, 1e9, Algorithm::Auto)
                .time_s
        };
        let (a, b) = (t(&fat, &all), t(&thin, &all));
        assert!(b > a * 1.5, "oversubscribed {b} vs non-blocking {a}");
        let (c, d) = (t(&fat, &one_node), t(&thin, &one_node));
        assert!((c - d).abs() < 1e-12);
    }

    /// Rail traffic (hierarchical all-reduce): eight planes and a rail-optimized fabric keep
    /// each rail on its own leaf and run at NIC speed; a node-local leaf layout sends the same
    /// flows up to the spines, where ECMP hash collisions slow some of them down.
    #[test]
    fn rails_planes_and_ecmp_collisions() {
        let cal = crate::builtin::calibration();
        let ranks: Vec<u32> = (0..64).collect();
        let t = |c: &Cluster| {
            Collectives::new(c, &cal)
                .collective(Op::AllReduce, &ranks, 1e9, Algorithm::Hierarchical)
                .time_s
        };
        let planes = t(&cluster(1.0, 8));
        let rail = t(&cluster_with(1.0, 1, true));
        let node_local = t(&cluster(1.0, 1));
        assert!((rail / planes - 1.0).abs() < 0.01, "{rail} vs {planes}");
        assert!(
            node_local > planes * 1.1,
            "ECMP collisions: {node_local} vs {planes}"
        );
    }

    /// `nodes` nodes of `gpn` GPUs with a NIC each, in pods of `pod` nodes (0: two layers) on
    /// leaves of `radix` ports at `over`:1, spines of 16 ports at `pod_over`:1 to the core.
    fn fabric(nodes: u32, gpn: u32, radix: u32, over: f64, pod: u32, pod_over: f64) -> Cluster {
        let tiers = if pod > 0 {
            format!(
                "layers: 3, pod_nodes: {pod}, spine_radix: 16, pod_oversubscription: {pod_over}"
            )
        } else {
            "layers: 2".into()
        };
        crate::topo::fixture(
            "H100",
            nodes,
            gpn,
            gpn,
            &format!(
                r#"{{ kind: fat_tree, {tiers}, planes: 1, switch_radix: {radix}, oversubscription: {over}, hop_latency: "0.5 us" }}"#
            ),
        )
    }

    /// Sends `a[i] → b[i]` of `bytes` each, all at once: the time beyond the same sends'
    /// latency (their time with no payload).
    fn transfer_time(c: &Cluster, pairs: &[(u32, u32)], bytes: f64) -> f64 {
        let cal = crate::builtin::calibration();
        let co = Collectives::new(c, &cal);
        let t = |b: f64| {
            let ph = Phase::once(
                pairs
                    .iter()
                    .map(|&(x, y)| Transfer {
                        path: Path::Gpu(x, y),
                        bytes: b,
                    })
                    .collect(),
            );
            co.run(&[ph], &co.default_eff()).time_s
        };
        t(bytes) - t(0.0)
    }

    /// k flows through a leaf whose one up-link serves k NICs (k:1) each get 1/k of it: together
    /// they take k times as long as one alone, and a leaf with k up-links does not slow them.
    #[test]
    fn k_flows_through_a_one_to_k_uplink_each_get_a_kth() {
        for k in [2u32, 4, 7] {
            // Leaves of k down-ports and 1 up-port; two leaves.
            let thin = fabric(2 * k, 1, k + 1, k as f64, 0, 1.0);
            let fat = fabric(2 * k, 1, 2 * k, 1.0, 0, 1.0);
            let pairs: Vec<(u32, u32)> = (0..k).map(|i| (i, k + i)).collect();
            let one = transfer_time(&thin, &pairs[..1], 1e9);
            let all = transfer_time(&thin, &pairs, 1e9);
            assert!(
                (all / one - k as f64).abs() < 1e-6,
                "k = {k}: {all} vs {one}"
            );
            let free = transfer_time(&fat, &pairs, 1e9);
            assert!((free / one - 1.0).abs() < 1e-6, "k = {k}: {free} vs {one}");
        }
    }

    /// Traffic that stays inside a pod never notices the tier above it: an all-reduce over the
    /// 8 GPUs of pod 0 takes exactly as long under 8:1 above the pods as under 1:1, while one
    /// over all 16 GPUs (both pods) slows down.
    #[test]
    fn traffic_inside_a_pod_is_unaffected_by_the_tier_above() {
        let cal = crate::builtin::calibration();
        let (open, tapered) = (fabric(8, 2, 8, 1.0, 4, 1.0), fabric(8, 2, 8, 1.0, 4, 8.0));
        assert_eq!((open.pods, open.cores_per_plane), (2, 1));
        let t = |c: &Cluster, n: u32| {
            let ranks: Vec<u32> = (0..n).collect();
            Collectives::new(c, &cal)
                .collective(Op::AllToAll, &ranks, 1e9, Algorithm::Auto)
                .time_s
        };
        assert_eq!(t(&open, 8), t(&tapered, 8));
        assert!(t(&tapered, 16) > t(&open, 16) * 1.5);
    }

    /// A data-parallel ring (with its sibling on the other rail) placed across two pods sends
    /// one flow per rail each way over the core, whose single cable (8:1 above the pod) they
    /// share: each moves at half the NIC's speed, so the ring's bandwidth time is exactly twice
    /// that of the same rings placed inside one pod.
    #[test]
    fn a_ring_across_pods_pays_the_oversubscribed_tier_by_the_oracle() {
        let c = fabric(8, 2, 8, 1.0, 4, 8.0);
        let cal = crate::builtin::calibration();
        let co = Collectives::new(&c, &cal);
        let t = |nodes: &[u32], bytes: f64| {
            let rings = (0..2).map(|rail| {
                let r: Vec<u32> = nodes.iter().map(|n| n * 2 + rail).collect();
                Collectives::ring(&r, 3, bytes)
            });
            co.run(&Collectives::merged(rings), &co.default_eff())
                .time_s
        };
        let bw = |nodes: &[u32]| t(nodes, 1e9) - t(nodes, 0.0);
        let inside = bw(&[0, 1, 2, 3]);
        let across = bw(&[2, 3, 4, 5]);
        assert!((across / inside - 2.0).abs() < 1e-6, "{across} vs {inside}");
        // With a non-blocking core the placement does not matter.
        let open = fabric(8, 2, 8, 1.0, 4, 1.0);
        let co = Collectives::new(&open, &cal);
        let t = |nodes: &[u32], bytes: f64| {
            let r: Vec<u32> = nodes.iter().map(|n| n * 2).collect();
            co.run(&Collectives::ring(&r, 3, bytes), &co.default_eff())
                .time_s
        };
        let (i, a) = (
            t(&[0, 1, 2, 3], 1e9) - t(&[0, 1, 2, 3], 0.0),
            t(&[2, 3, 4, 5], 1e9) - t(&[2, 3, 4, 5], 0.0),
        );
        assert!((a / i - 1.0).abs() < 1e-6, "{a} vs {i}");
    }

    /// A transfer split into many ECMP flows, or sprayed adaptively, suffers fewer collisions
    /// than one hashed whole: on a node-local leaf layout (every rail's flows up to the spines)
    /// 16 flows per transfer come closer to the adaptive bound than 1.
    #[test]
    fn more_flows_per_transfer_average_out_collisions() {
        let cal = crate::builtin::calibration();
        let ranks: Vec<u32> = (0..64).collect();
        let t = |extra: &str| {
            let fabric = format!(
                r#"{{ kind: fat_tree, layers: 2, planes: 1, switch_radix: 16, hop_latency: "0.5 us"{extra} }}"#
            );
            Collectives::new(&crate::topo::fixture("H100", 8, 8, 8, &fabric), &cal)
                .collective(Op::AllReduce, &ranks, 1e9, Algorithm::Hierarchical)
                .time_s
        };
        let (one, many, sprayed) = (t(""), t(", ecmp_flows: 16"), t(", routing: adaptive"));
        assert!(
            sprayed <= many * (1.0 + 1e-9) && many < one,
            "{sprayed} {many} {one}"
        );
    }

    /// NCCL's model as the oracle: a ring all-reduce of S inside one node sends 2(n−1)/n·S per
    /// GPU at the link's NCCL rate, and each protocol adds its base latency and 2(n−1) steps of
    /// its per-step latency, LL at half the bandwidth and LL128 at 120/128. A 4 KiB buffer
    /// runs LL, a 1 GiB one Simple, each at exactly the oracle's time; the pick is the cheapest.
    #[test]
    fn protocols_by_size_follow_nccls_model() {
        let cal = crate::builtin::calibration();
        let c = cluster(1.0, 1);
        let co = Collectives::new(&c, &cal);
        let ranks: Vec<u32> = (0..8).collect();
        let m = &cal.network.nccl;
        let link = c.scale_up.bytes_per_s * co.nvlink_eff();
        let oracle = |p: Protocol, s: f64| {
            let (k, share) = match p {
                Protocol::Ll => (0, m.ll_bandwidth.value),
                Protocol::Ll128 => (1, m.ll128_bandwidth.value),
                Protocol::Simple => (2, 1.0),
            };
            let w = m.ring_window.value.bytes;
            m.ring_base_latency.value[k].as_secs_f64()
                + 14.0 * m.ring_step_latency_nvlink.value[k].as_secs_f64()
                + 2.0 * 7.0 / 8.0 * s / (link * share) * (1.0 + w / (s + w))
        };
        for (s, want) in [
            (4096.0, Protocol::Ll),
            (f64::from(1u32 << 30), Protocol::Simple),
        ] {
            let got = co.collective(Op::AllReduce, &ranks, s, Algorithm::Ring);
            assert_eq!(got.choice, Some((Algorithm::Ring, want)), "{s} B");
            let t = oracle(want, s);
            // To the picosecond rounding of each drain.
            assert!(
                (got.time_s - t).abs() < 1e-9,
                "{s} B: {} vs {t}",
                got.time_s
            );
            let cheapest = Protocol::ALL
                .iter()
                .map(|&p| oracle(p, s))
                .fold(f64::INFINITY, f64::min);
            assert!((got.time_s - cheapest).abs() < 1e-9);
        }
        // Across nodes the tuner also weighs the tree: at 4 KiB over 64 GPUs its log-depth
        // latency beats the ring's 126 steps.
        let all: Vec<u32> = (0..64).collect();
        let small = co.collective(Op::AllReduce, &all, 4096.0, Algorithm::Auto);
        assert_eq!(small.choice.map(|c| c.0), Some(Algorithm::Tree));
    }

    /// Below the pipeline's window a message crosses the pipeline's halves without overlap, so
    /// its bandwidth time is twice the streaming one; far above the window it streams. Latency
    /// is taken out as the time of an empty collective's steps (the 1-byte message).
    #[test]
    fn pipeline_fill_doubles_small_messages_and_vanishes_for_large() {
        let cal = crate::builtin::calibration();
        let c = cluster(1.0, 1);
        let co = Collectives::new(&c, &cal);
        let ranks: Vec<u32> = (0..8).collect();
        let simple = |s: f64| {
            let m = co.collective(Op::AllReduce, &ranks, s, Algorithm::Nvls);
            assert_eq!(m.choice, Some((Algorithm::Nvls, Protocol::Simple)));
            m.time_s
        };
        let lat = simple(1.0);
        let w = cal.network.nccl.nvls_window.value.bytes;
        let (small, large) = (w / 1e3, w * 1e3);
        let per_byte_small = (simple(small) - lat) / small;
        let per_byte_large = (simple(large) - lat) / large;
        assert!(
            (per_byte_small / per_byte_large - 2.0).abs() < 0.01,
            "{per_byte_small} vs {per_byte_large}"
        );
        // Half way: a message of one window pays half a window's worth extra.
        let mid = (simple(w) - lat) / w;
        assert!((mid / per_byte_large - 1.5).abs() < 0.01, "{mid}");
    }

    /// NCCL's rings across nodes: one ring per position, each leaving every node through a
    /// different NIC, so the all-reduce's bus bandwidth is the node's NICs together (each NIC
    /// carrying one ring), not one NIC's (a single ring through one exit).
    #[test]
    fn rings_across_nodes_use_every_nic() {
        let cal = crate::builtin::calibration();
        let c = cluster_with(1.0, 1, true);
        let co = Collectives::new(&c, &cal);
        let ranks: Vec<u32> = (0..16).collect();
        let s = 16.0 * f64::from(1u32 << 30);
        let m = co.collective(Op::AllReduce, &ranks, s, Algorithm::Ring);
        let n = 16.0;
        let busbw = s / m.time_s * 2.0 * (n - 1.0) / n;
        // NIC-bound: each GPU sends one ring's step over its NIC and seven over NVLink, which
        // carries them faster (7/8 of the bytes at the higher rate).
        let nic = c.nic.bytes_per_s * cal.network.ib_efficiency.value;
        let w = cal.network.nccl.ring_window.value.bytes;
        let want = 8.0 * nic / (1.0 + w / (s + w));
        assert!((busbw / want - 1.0).abs() < 0.01, "{busbw} vs {want}");
        // Every NIC sends its share: 2(n-1)/n · S/8 each.
        let single = co.collective(Op::AllReduce, &ranks, s, Algorithm::Hierarchical);
        assert!(m.time_s < single.time_s);
    }

    /// NVLSTree streams its three stages at once: each GPU's NVLink up-link carries the
    /// reduce-scatter's S and the all-gather's S/8 together (the slowest link of the
    /// concurrent stages sets the time), against the sum of the stages run one after another.
    #[test]
    fn nvls_tree_stages_share_the_links_at_once() {
        let cal = crate::builtin::calibration();
        let mut c = cluster_with(1.0, 1, true);
        c.in_switch_reduction = true;
        let co = Collectives::new(&c, &cal);
        let ranks: Vec<u32> = (0..16).collect();
        let s = 16.0 * f64::from(1u32 << 30);
        let m = co.collective(Op::AllReduce, &ranks, s, Algorithm::NvlsTree);
        assert_eq!(m.choice, Some((Algorithm::NvlsTree, Protocol::Simple)));
        let up = c.scale_up.bytes_per_s * cal.network.nvls_efficiency.value;
        let nc = &cal.network.nccl;
        let w = 2.0 * nc.nvls_window.value.bytes + nc.ring_window.value.bytes;
        let want = (1.0 + 1.0 / 8.0) * s / up * (1.0 + w / (s + w));
        let lat = co
            .collective(Op::AllReduce, &ranks, 1.0, Algorithm::NvlsTree)
            .time_s;
        let got = m.time_s - lat;
        assert!((got / want - 1.0).abs() < 0.01, "{got} vs {want}");
    }

    /// SHARP: each GPU's buffer goes up its NIC once and comes back reduced once, so across
    /// nodes of one GPU each the all-reduce takes S over the NIC where a ring takes 2(n−1)/n·S;
    /// and the switches above the leaves carry one reduced stream per leaf, so a 4:1
    /// oversubscribed tier leaves it as fast as on a non-blocking one, while the ring slows.
    #[test]
    fn in_network_reduction_sends_the_buffer_once_and_skips_the_tier_above() {
        let cal = crate::builtin::calibration();
        let sharp = |over: f64| {
            let mut c = crate::topo::fixture(
                "H100",
                8,
                8,
                8,
                &format!(
                    r#"{{ kind: fat_tree, layers: 2, planes: 1, switch_radix: 16, oversubscription: {over}, hop_latency: "0.5 us", in_network_reduction: true }}"#
                ),
            );
            c.in_switch_reduction = false;
            c
        };
        let ranks: Vec<u32> = (0..8).map(|i| i * 8).collect();
        let s = 16.0 * f64::from(1u32 << 30);
        let time = |c: &Cluster, algo| {
            Collectives::new(c, &cal).collective(Op::AllReduce, &ranks, s, algo)
        };
        let (flat, over) = (sharp(1.0), sharp(4.0));
        let m = time(&flat, Algorithm::CollNet);
        assert_eq!(m.choice, Some((Algorithm::CollNet, Protocol::Simple)));
        let nic = flat.nic.bytes_per_s * cal.network.ib_efficiency.value;
        let nc = &cal.network.nccl;
        let w = nc.ring_window.value.bytes;
        let lat = 2.0 * nc.tree_step_latency_net.value[2].as_secs_f64()
            + nc.ring_base_latency.value[2].as_secs_f64();
        let want = s / nic * (1.0 + w / (s + w)) + lat;
        assert!(
            (m.time_s / want - 1.0).abs() < 0.01,
            "{} vs {want}",
            m.time_s
        );
        let ring = time(&flat, Algorithm::Ring).time_s;
        assert!(
            (ring / m.time_s - 1.75).abs() < 0.02,
            "ring {ring} vs {}",
            m.time_s
        );
        // All 64 GPUs: an all-to-all crosses the oversubscribed leaf tier and slows, the
        // reduction stops at the leaves and does not.
        let all: Vec<u32> = (0..64).collect();
        let on = |c: &Cluster, op, algo| {
            Collectives::new(c, &cal)
                .collective(op, &all, s, algo)
                .time_s
        };
        let (co, cf) = (
            on(&over, Op::AllReduce, Algorithm::CollNet),
            on(&flat, Op::AllReduce, Algorithm::CollNet),
        );
        assert!((co / cf - 1.0).abs() < 1e-9, "{co} vs {cf}");
        let (ao, af) = (
            on(&over, Op::AllToAll, Algorithm::Auto),
            on(&flat, Op::AllToAll, Algorithm::Auto),
        );
        assert!(ao > 1.5 * af, "all-to-all {ao} vs {af}");
        // The tuner takes it where the fabric has it.
        let auto = time(&flat, Algorithm::Auto);
        assert_eq!(auto.choice.map(|c| c.0), Some(Algorithm::CollNet));
    }
}
