//! Communication: the operations a training step issues, and their cost.
//!
//! [`CommOp`] is the interface between the workload and the network. [`AlphaBeta`] prices an
//! operation in closed form (latency + bytes over the calibrated bandwidth of the slowest tier),
//! hierarchically: NVLink inside a node, the NIC between nodes. The flow-level network will
//! implement the same operations over the topology graph. No I/O here.

pub mod collective;
pub mod flow;
pub mod route;

use crate::domain::MoeDispatcher;
use crate::hw::Calibration;
use crate::topo::Cluster;

/// Where a process group sits: `size` members, `per_node` on each of `nodes` nodes. The
/// network's own word for a group's placement; the parallel layout builds one per group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Placement {
    pub size: u64,
    pub per_node: u64,
    pub nodes: u64,
    /// Nodes from one member's node to the next (1: consecutive nodes).
    #[serde(skip)]
    pub gap: u64,
}

impl Placement {
    /// Where a group of `size` ranks spaced `stride` apart lands on nodes of `gpus_per_node` GPUs.
    pub fn strided(size: u64, stride: u64, gpus_per_node: u64) -> Placement {
        let per_node = if stride >= gpus_per_node {
            1
        } else {
            size.min(gpus_per_node / stride).max(1)
        };
        Placement {
            size,
            per_node,
            nodes: size.div_ceil(per_node),
            gap: (stride / gpus_per_node.max(1)).max(1),
        }
    }
}

/// Routed-expert routing, for the expected fan-out of a token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MoeRoute {
    pub routed: u64,
    pub topk: u64,
    pub groups: u64,
    pub topk_groups: u64,
    /// SMs the dispatch and combine kernels run on (the layout's `comm_sms`); 0: not reserved,
    /// priced at the saturated rate its calibration measured.
    pub sms: u32,
    /// DeepEP's node-deduplicated dispatch, or Megatron's all-to-all (a copy per expert).
    pub dispatcher: MoeDispatcher,
}

/// A communication operation, from one GPU's point of view.
#[derive(Debug, Clone, PartialEq)]
pub enum CommOp {
    /// `bytes` is the buffer size on each rank.
    AllReduce {
        bytes: f64,
        span: Placement,
    },
    ReduceScatter {
        bytes: f64,
        span: Placement,
    },
    AllGather {
        bytes: f64,
        span: Placement,
    },
    /// An MoE layer's dispatch. DeepEP: each token goes once over InfiniBand to the same-index
    /// GPU of each target node, then over NVLink to the GPUs holding its experts. All-to-all:
    /// one copy per routed expert (`topk` per token), straight to the expert's GPU.
    MoeDispatch {
        tokens: u64,
        bytes_per_token: f64,
        span: Placement,
        route: MoeRoute,
    },
    /// The reverse of a dispatch (weighted sum of expert outputs back to the token's GPU).
    MoeCombine {
        tokens: u64,
        bytes_per_token: f64,
        span: Placement,
        route: MoeRoute,
    },
    /// Ring exchange: `steps` sends of `bytes` to the next rank. Through NCCL (context-parallel
    /// attention's send/recv) or, `nccl: false`, as Transformer Engine's userbuffers run
    /// `--tp-comm-overlap`: SM- and copy-engine-driven copies, without NCCL's protocols.
    Ring {
        bytes: f64,
        steps: u64,
        span: Placement,
        nccl: bool,
    },
    /// Pipeline send of `bytes` to the neighbouring stage.
    P2p {
        bytes: f64,
        cross_node: bool,
    },
}

/// Expected number of distinct items hit when `k` of `per × n` slots are drawn without
/// replacement and slots come in `n` equal bins of `per`: n·(1 − C((n−1)·per, k) / C(n·per, k)).
pub fn expected_bins_hit(n: u64, per: u64, k: u64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let total = (n * per) as f64;
    let other = ((n - 1) * per) as f64;
    let mut miss = 1.0;
    for i in 0..k {
        miss *= ((other - i as f64) / (total - i as f64)).max(0.0);
    }
    n as f64 * (1.0 - miss)
}

impl MoeRoute {
    /// Expected distinct nodes a token targets when the EP group spans `nodes` nodes.
    ///
    /// Node-limited routing (DeepSeek-V3): a token first picks `topk_groups` of the `groups`
    /// expert groups, then its `topk` experts among those groups' experts. With the groups spread
    /// evenly over the nodes, a node holding `j` chosen groups is hit unless all `topk` experts
    /// fall in the other chosen groups; `j` is hypergeometric.
    pub fn nodes_per_token(&self, nodes: u64) -> f64 {
        let (g, m, k) = (self.groups, self.topk_groups, self.topk);
        if nodes <= 1 {
            return 1.0;
        }
        if m >= g || g % nodes != 0 {
            return expected_bins_hit(nodes, self.routed / nodes, k);
        }
        let per_group = self.routed / g;
        let groups_per_node = g / nodes;
        let choose = |n: u64, r: u64| -> f64 {
            if r > n {
                return 0.0;
            }
            (0..r).map(|i| (n - i) as f64 / (i + 1) as f64).product()
        };
        // P(none of k draws (without replacement) from m·e eligible lands in the node's j·e).
        let miss = |j: u64| -> f64 {
            let (all, other) = ((m * per_group) as f64, ((m - j) * per_group) as f64);
            (0..k)
                .map(|i| ((other - i as f64) / (all - i as f64)).max(0.0))
                .product()
        };
        let total = choose(g, m);
        let p_hit: f64 = (1..=groups_per_node.min(m))
            .map(|j| {
                choose(groups_per_node, j) * choose(g - groups_per_node, m - j) / total
                    * (1.0 - miss(j))
            })
            .sum();
        nodes as f64 * p_hit
    }
    /// Expected distinct GPUs a token targets in an EP group of `ep` GPUs.
    pub fn gpus_per_token(&self, ep: u64, nodes: u64) -> f64 {
        let per_node = ep / nodes.max(1);
        let n = self.nodes_per_token(nodes);
        // Within a targeted node, the token's experts (topk/n on average) land on distinct GPUs.
        n * expected_bins_hit(
            per_node,
            self.routed / ep,
            (self.topk as f64 / n).round().max(1.0) as u64,
        )
    }
}

impl CommOp {
    /// The bytes this GPU contributes: the buffer of a collective, the tokens it dispatches or
    /// combines (once each, before fan-out), every step of a ring, or one send.
    pub fn bytes(&self) -> f64 {
        match *self {
            CommOp::AllReduce { bytes, .. }
            | CommOp::ReduceScatter { bytes, .. }
            | CommOp::AllGather { bytes, .. }
            | CommOp::P2p { bytes, .. } => bytes,
            CommOp::MoeDispatch {
                tokens,
                bytes_per_token,
                ..
            }
            | CommOp::MoeCombine {
                tokens,
                bytes_per_token,
                ..
            } => tokens as f64 * bytes_per_token,
            CommOp::Ring { bytes, steps, .. } => bytes * steps as f64,
        }
    }
}

/// Prices a communication operation, in seconds. Implemented in closed form ([`AlphaBeta`])
/// and by flow-level simulation over the topology ([`FlowModel`]).
pub trait CommCost {
    fn time(&self, op: &CommOp) -> f64;
    /// Bytes on the wire each link carries for one instance of `op`, by link id (the edge
    /// index of the cluster graph), where the model knows links; empty where it does not.
    fn links(&self, _op: &CommOp) -> Vec<(flow::LinkId, f64)> {
        Vec::new()
    }
    /// As [`CommCost::links`], for the instance on pipeline stage `stage`.
    fn links_at(&self, _op: &CommOp, _stage: u64) -> std::rc::Rc<[(flow::LinkId, f64)]> {
        std::rc::Rc::from(Vec::new())
    }
}

impl CommCost for AlphaBeta<'_> {
    fn time(&self, op: &CommOp) -> f64 {
        AlphaBeta::time(self, op)
    }
}

/// Communication priced by simulating each operation's flows on the cluster's topology, once
/// per distinct operation (the results are cached).
///
/// With a stage size ([`FlowModel::for_stages`]) an operation is priced together with its
/// siblings: every group of the same shape that tiles the pipeline stage and, by the symmetry
/// of the layout, runs at the same time (the other rails' data-parallel rings, the stage's
/// other expert groups, every GPU's pipeline send). So what they share above the NIC (leaf
/// up-links, spines, the oversubscribed tier above a pod) slows each of them as it would on
/// the cluster. Inside the set every flow shares links max-min fairly; between operations the
/// DES's shared network does ([`CommCost::links_at`] gives each stage's footprint).
pub struct FlowModel<'a> {
    pub co: collective::Collectives<'a>,
    /// GPUs of one pipeline stage; 0: each group is priced alone, at GPU 0.
    stage_gpus: u64,
    #[allow(clippy::type_complexity)]
    cache: std::cell::RefCell<
        std::collections::BTreeMap<(String, u64), (f64, std::rc::Rc<[(flow::LinkId, f64)]>)>,
    >,
}

impl<'a> FlowModel<'a> {
    pub fn new(cluster: &'a Cluster, cal: &'a Calibration) -> Self {
        Self::for_stages(cluster, cal, 0)
    }

    /// Prices every operation with its siblings in a stage of `stage_gpus` GPUs.
    pub fn for_stages(cluster: &'a Cluster, cal: &'a Calibration, stage_gpus: u64) -> Self {
        FlowModel {
            co: collective::Collectives::new(cluster, cal),
            stage_gpus: stage_gpus.min(cluster.gpus() as u64),
            cache: Default::default(),
        }
    }

    /// GPUs of a group placed as `span` says: `per_node` on each of `nodes` nodes, spread over
    /// the node's rails.
    pub fn ranks(&self, span: Placement) -> Vec<u32> {
        self.sibling(span, 0, 0).unwrap_or_default()
    }

    /// Sibling `copy` of a group placed as `span` in the stage starting at GPU `base`: the
    /// copies first take the node's other rails, then the next blocks of nodes. `None` if it
    /// does not fit in the cluster.
    fn sibling(&self, span: Placement, base: u64, copy: u64) -> Option<Vec<u32>> {
        let gpn = self.co.cluster.gpus_per_node as u64;
        let width = if self.stage_gpus > 0 {
            self.stage_gpus.min(gpn)
        } else {
            gpn
        };
        let spread = (width / span.per_node.max(1)).max(1);
        let (o, b) = (copy % spread, copy / spread);
        let gap = span.gap.max(1);
        let first = (b / gap) * span.nodes * gap + b % gap;
        let ranks: Vec<u32> = (0..span.nodes)
            .flat_map(|n| {
                (0..span.per_node).map(move |j| base + (first + n * gap) * gpn + j * spread + o)
            })
            .take(span.size as usize)
            .map(|g| g as u32)
            .collect();
        ranks
            .iter()
            .all(|&g| g < self.co.cluster.gpus())
            .then_some(ranks)
    }

    /// The groups priced together for `span` in the stage at `base`: the group and the
    /// siblings that share a leaf switch with it.
    ///
    /// A group's flows meet other groups' flows only on links of the leaves its NICs sit on
    /// (their up- and down-links, the NIC links below them); siblings on other leaves are the
    /// same pattern moved along the fabric, and load only their own leaves' links. So the
    /// neighbourhood alone gives the group its rates, and stands for the stage in the shared
    /// network, where every transfer of the stage is priced on the same neighbourhood.
    fn groups(&self, span: Placement, base: u64) -> Vec<Vec<u32>> {
        let copies = (self.stage_gpus / span.size.max(1)).max(1);
        let v: Vec<Vec<u32>> = (0..copies)
            .map_while(|c| self.sibling(span, base, c))
            .collect();
        let Some(first) = v.first() else {
            return vec![self.ranks(span)];
        };
        let r = &self.co.router;
        let leaves: std::collections::BTreeSet<_> =
            first.iter().filter_map(|&g| r.leaf_of(g)).collect();
        if leaves.is_empty() || r.node(first[0]) == r.node(*first.last().expect("a rank")) {
            // Inside one node: nothing leaves it, nothing is shared with the other copies.
            return vec![first.clone()];
        }
        v.into_iter()
            .enumerate()
            .filter(|(c, g)| {
                *c == 0
                    || g.iter()
                        .any(|&x| r.leaf_of(x).is_some_and(|l| leaves.contains(&l)))
            })
            .map(|(_, g)| g)
            .collect()
    }

    fn simulate(&self, op: &CommOp, base: u64) -> collective::Measured {
        use collective::{Algorithm, Collectives, Op};
        let co = &self.co;
        let many = |o: Op, bytes: f64, span: Placement| {
            co.collective_groups(o, &self.groups(span, base), bytes, Algorithm::Auto)
        };
        match *op {
            CommOp::AllReduce { bytes, span } => many(Op::AllReduce, bytes, span),
            CommOp::ReduceScatter { bytes, span } => many(Op::ReduceScatter, bytes, span),
            CommOp::AllGather { bytes, span } => many(Op::AllGather, bytes, span),
            CommOp::MoeDispatch {
                tokens,
                bytes_per_token,
                span,
                route,
            }
            | CommOp::MoeCombine {
                tokens,
                bytes_per_token,
                span,
                route,
            } => co.moe_groups(
                &self.groups(span, base),
                tokens as f64,
                bytes_per_token,
                route,
                matches!(op, CommOp::MoeDispatch { .. }),
            ),
            CommOp::Ring {
                bytes,
                steps,
                span,
                nccl,
            } => {
                if span.size < 2 {
                    return collective::Measured::default();
                }
                // Each transfer at its own link's efficiency, as every other collective: NCCL's
                // send/recv at NCCL's NVLink and IB shares, userbuffers' copies over NVLink at
                // the copy engines' (`nvlink_efficiency`).
                let by_path = co.default_eff();
                let copy = co.cal.network.nvlink_efficiency.value;
                let eff = |t: &collective::Transfer| {
                    let e = by_path(t);
                    match t.path {
                        collective::Path::Gpu(a, b)
                            if !nccl && co.router.node(a) == co.router.node(b) =>
                        {
                            copy
                        }
                        _ => e,
                    }
                };
                let groups = self.groups(span, base);
                let phases = Collectives::merged(
                    groups
                        .iter()
                        .map(|r| Collectives::ring(r, steps as usize, bytes)),
                );
                if nccl {
                    co.nccl(
                        &phases,
                        &eff,
                        (Op::SendRecv, Algorithm::Ring, bytes),
                        (2, 1),
                    )
                } else {
                    co.run(&phases, &eff)
                }
            }
            CommOp::P2p { bytes, cross_node } => {
                let gpus = co.cluster.gpus() as u64;
                if self.stage_gpus == 0 {
                    // GPU 0 and the same-position GPU of the next node, or a neighbour on its own.
                    let other = if cross_node {
                        co.cluster.gpus_per_node
                    } else {
                        1
                    };
                    assert!(
                        other < co.cluster.gpus(),
                        "a pipeline send to GPU {other} of a {}-GPU cluster (no such peer)",
                        co.cluster.gpus()
                    );
                    return co.collective(Op::SendRecv, &[0, other], bytes, Algorithm::Auto);
                }
                // Every GPU of the stage sends to the same position of the next stage (of the
                // one before, for the last).
                let s = self.stage_gpus;
                let to = |g: u64| -> Option<u64> {
                    let next = base + s + g;
                    if next < gpus {
                        Some(next)
                    } else {
                        (base + g).checked_sub(s)
                    }
                };
                let transfers = (0..s)
                    .filter_map(|g| Some((base + g, to(g)?)))
                    .map(|(a, b)| collective::Transfer {
                        path: collective::Path::Gpu(a as u32, b as u32),
                        bytes,
                    })
                    .collect();
                co.run(&[collective::Phase::once(transfers)], &co.default_eff())
            }
        }
    }

    /// The operation's simulated time and link loads in the stage at GPU `base`, simulated once
    /// per distinct operation and stage.
    fn measured_at(&self, op: &CommOp, base: u64) -> (f64, std::rc::Rc<[(flow::LinkId, f64)]>) {
        let key = (format!("{op:?}"), base);
        if let Some(hit) = self.cache.borrow().get(&key) {
            return hit.clone();
        }
        let m = self.simulate(op, base);
        let v = (m.time_s, std::rc::Rc::from(m.links));
        self.cache.borrow_mut().insert(key, v.clone());
        v
    }
}

impl CommCost for FlowModel<'_> {
    fn time(&self, op: &CommOp) -> f64 {
        self.measured_at(op, 0).0
    }
    fn links(&self, op: &CommOp) -> Vec<(flow::LinkId, f64)> {
        self.measured_at(op, 0).1.to_vec()
    }
    fn links_at(&self, op: &CommOp, stage: u64) -> std::rc::Rc<[(flow::LinkId, f64)]> {
        let base = stage * self.stage_gpus;
        let first = self.measured_at(op, 0).1;
        if stage == 0 || base >= self.co.cluster.gpus() as u64 {
            return first;
        }
        // Stage 0's loads moved along by the fabric's symmetry, where the move is one.
        let gpn = self.co.cluster.gpus_per_node as u64;
        if base % gpn == 0 {
            if let Some(moved) = self.co.router.shifted(&first, (base / gpn) as u32) {
                return std::rc::Rc::from(moved);
            }
        }
        self.measured_at(op, base).1
    }
}

/// Bandwidth + latency model of the cluster.
#[derive(Debug, Clone, Copy)]
pub struct AlphaBeta<'a> {
    pub cluster: &'a Cluster,
    pub cal: &'a Calibration,
    /// GPU → NIC → leaf → spine → leaf → NIC → GPU, found once in the graph.
    inter_latency: f64,
}

impl<'a> AlphaBeta<'a> {
    pub fn new(cluster: &'a Cluster, cal: &'a Calibration) -> Self {
        // Leaf–spine links are built last and all carry the fabric's hop latency: search from
        // the end.
        let hop = cluster
            .graph
            .raw_edges()
            .iter()
            .rev()
            .map(|e| &e.weight)
            .find(|l| l.kind == crate::topo::LinkKind::LeafSpine);
        let pcie = cluster
            .graph
            .edge_weights()
            .find(|l| l.kind == crate::topo::LinkKind::Pcie);
        let h = hop.map(|l| l.latency.as_secs_f64()).unwrap_or(0.0);
        let inter_latency = 3.0 * h + 2.0 * pcie.map(|l| l.latency.as_secs_f64()).unwrap_or(0.0);
        AlphaBeta {
            cluster,
            cal,
            inter_latency,
        }
    }
    fn nvlink(&self) -> f64 {
        self.cluster.scale_up.bytes_per_s * self.cal.network.nvlink_efficiency.value
    }
    fn ib(&self) -> f64 {
        self.cluster.nic_per_gpu().bytes_per_s * self.cal.network.ib_efficiency.value
    }
    fn intra_latency(&self) -> f64 {
        self.cluster.scale_up_latency.as_secs_f64()
    }
    /// GPU → NIC → leaf → spine → leaf → NIC → GPU.
    fn inter_latency(&self) -> f64 {
        self.inter_latency
    }

    /// Ring reduce-scatter (or all-gather) of a `bytes` buffer, hierarchical over nodes.
    fn half_ring(&self, bytes: f64, s: Placement) -> f64 {
        let a = s.per_node as f64;
        let b = s.nodes as f64;
        let intra = if s.per_node > 1 {
            (a - 1.0) / a * bytes / self.nvlink() + (a - 1.0) * self.intra_latency()
        } else {
            0.0
        };
        let inter = if s.nodes > 1 {
            (b - 1.0) / b * bytes / a / self.ib() + (b - 1.0) * self.inter_latency()
        } else {
            0.0
        };
        intra + inter
    }

    /// Seconds the operation takes.
    pub fn time(&self, op: &CommOp) -> f64 {
        let net = &self.cal.network;
        match *op {
            CommOp::AllReduce { bytes, span } => 2.0 * self.half_ring(bytes, span),
            CommOp::ReduceScatter { bytes, span } | CommOp::AllGather { bytes, span } => {
                self.half_ring(bytes, span)
            }
            CommOp::MoeDispatch {
                tokens,
                bytes_per_token,
                span,
                route,
            }
            | CommOp::MoeCombine {
                tokens,
                bytes_per_token,
                span,
                route,
            } => {
                let dispatch = matches!(op, CommOp::MoeDispatch { .. });
                let (rdma_eff, nvl_eff) = net.moe_efficiency(dispatch);
                let sm = net.moe_sm_share(route.sms);
                let (rdma_eff, nvl_eff) = (rdma_eff * sm, nvl_eff * sm);
                let nodes = span.nodes.max(1);
                let t = tokens as f64;
                let per_node = span.per_node.max(1) as f64;
                // Copies of a token that cross InfiniBand, and that cross NVLink.
                let (remote, local) = match route.dispatcher {
                    MoeDispatcher::Deepep => (
                        route.nodes_per_token(nodes) * (nodes - 1) as f64 / nodes as f64,
                        route.gpus_per_token(span.size, nodes) * (per_node - 1.0) / per_node,
                    ),
                    MoeDispatcher::AllToAll => {
                        let ep = span.size.max(1) as f64;
                        let k = route.topk as f64;
                        // Remote copies arrive through the target node's NIC, then NVLink.
                        let remote = k * (ep - per_node) / ep;
                        (
                            remote,
                            k * (per_node - 1.0) / ep + remote * (per_node - 1.0) / per_node,
                        )
                    }
                };
                let rdma = t * remote * bytes_per_token
                    / (self.cluster.nic_per_gpu().bytes_per_s * rdma_eff);
                let nvl =
                    t * local * bytes_per_token / (self.cluster.scale_up.bytes_per_s * nvl_eff);
                let lat = if nodes > 1 {
                    self.inter_latency()
                } else {
                    self.intra_latency()
                };
                rdma.max(nvl) + lat
            }
            CommOp::Ring {
                bytes, steps, span, ..
            } => {
                let bw = if span.nodes > 1 {
                    self.ib()
                } else {
                    self.nvlink()
                };
                let lat = if span.nodes > 1 {
                    self.inter_latency()
                } else {
                    self.intra_latency()
                };
                steps as f64 * (bytes / bw + lat)
            }
            CommOp::P2p { bytes, cross_node } => {
                if cross_node {
                    bytes / self.ib() + self.inter_latency()
                } else {
                    bytes / self.nvlink() + self.intra_latency()
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stage's loads moved to the next stage by the fabric's symmetry are the loads simulated
    /// there: a 16-GPU all-reduce and an expert dispatch on nodes 0–1 moved to nodes 2–3 (the
    /// other leaf of each plane), and the same ops simulated at GPU 16.
    #[test]
    fn shifted_loads_are_the_loads_simulated_there() {
        let c = crate::topo::fixture(
            "H800",
            8,
            8,
            8,
            r#"{ kind: fat_tree, layers: 2, planes: 8, switch_radix: 4, hop_latency: "0.5 us" }"#,
        );
        let cal = crate::builtin::calibration();
        let m = FlowModel::for_stages(&c, &cal, 16);
        let span = Placement::strided(16, 1, 8);
        let route = MoeRoute {
            routed: 256,
            topk: 8,
            groups: 8,
            topk_groups: 4,
            sms: 0,
            dispatcher: MoeDispatcher::Deepep,
        };
        for op in [
            CommOp::AllReduce { bytes: 1e9, span },
            CommOp::MoeDispatch {
                tokens: 4096,
                bytes_per_token: 7168.0,
                span,
                route,
            },
        ] {
            let moved =
                m.co.router
                    .shifted(&m.measured_at(&op, 0).1, 2)
                    .expect("two nodes along is a symmetry here");
            assert_eq!(&moved[..], &m.links_at(&op, 1)[..]);
            let simulated = m.measured_at(&op, 16).1;
            assert_eq!(moved.len(), simulated.len(), "{op:?}");
            for (a, b) in moved.iter().zip(simulated.iter()) {
                assert_eq!(a.0, b.0);
                assert!((a.1 - b.1).abs() <= 1e-9 * b.1, "{a:?} vs {b:?}");
            }
            // Nothing of stage 1's loads is on stage 0's GPUs.
            assert!(moved
                .iter()
                .all(|x| !m.links_at(&op, 0).iter().any(|y| y.0 == x.0
                    && matches!(
                        c.graph[petgraph::graph::EdgeIndex::new(x.0 as usize)].kind,
                        crate::topo::LinkKind::NvLink | crate::topo::LinkKind::Pcie
                    ))));
        }
    }

    #[test]
    fn bins_hit_limits() {
        // One draw hits one bin; drawing everything hits all bins.
        assert!((expected_bins_hit(8, 32, 1) - 1.0).abs() < 1e-12);
        assert!((expected_bins_hit(4, 2, 8) - 4.0).abs() < 1e-12);
        // DeepSeek-V3: 8 experts among 4 node-groups of 32 → ~3.63 nodes per token.
        let r = MoeRoute {
            routed: 256,
            topk: 8,
            groups: 8,
            topk_groups: 4,
            sms: 0,
            dispatcher: MoeDispatcher::Deepep,
        };
        let n = r.nodes_per_token(8);
        assert!((n - 3.63).abs() < 0.01, "{n}");
        // Without a node limit the same experts spread over more nodes.
        let free = MoeRoute {
            topk_groups: 8,
            ..r
        };
        assert!(free.nodes_per_token(8) > n + 1.0);
        // Two nodes of four groups each: at most both are hit, and usually both are.
        let two = r.nodes_per_token(2);
        assert!(two > 1.5 && two <= 2.0, "{two}");
    }
}
