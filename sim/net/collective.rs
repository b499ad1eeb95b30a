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
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transfer {
    pub path: Path,
    /// Payload bytes (before protocol overhead).
    pub bytes: f64,
}

/// Transfers that run together.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Phase {
    pub transfers: Vec<Transfer>,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Ring,
    /// In-switch reduction (NVLink SHARP), single node.
    Nvls,
    /// Ring inside each node, ring across nodes over the rails, ring inside again.
    Hierarchical,
    /// Double binary tree (NCCL's inter-node all-reduce): two mirrored trees each reduce half
    /// the buffer up to a root and broadcast it back down, pipelined.
    Tree,
    Auto,
}

/// What a run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    pub time_s: f64,
    pub events: u64,
    /// Payload bytes each GPU sent over its NIC, and over NVLink.
    pub rdma_bytes: f64,
    pub nvlink_bytes: f64,
    /// Bytes on the wire (payload over protocol efficiency) each link carried, by link id,
    /// for the links that carried any.
    pub links: Vec<(LinkId, f64)>,
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

    /// Runs phases one after another; `eff` maps a transfer to its protocol efficiency.
    pub fn run(&self, phases: &[Phase], eff: &dyn Fn(&Transfer) -> f64) -> Measured {
        let r = &self.router;
        let mut net = FlowNet::new(&r.capacity, &r.latency);
        let mut t = 0u64;
        let mut rdma = 0.0;
        let mut nvl = 0.0;
        for (pi, ph) in phases.iter().enumerate() {
            net.advance_to(t);
            for (i, tr) in ph.transfers.iter().enumerate() {
                let route = match tr.path {
                    Path::Gpu(a, b) => {
                        if a == b {
                            continue;
                        }
                        if r.node(a) == r.node(b) {
                            if a == 0 {
                                nvl += tr.bytes;
                            }
                        } else if a == 0 {
                            rdma += tr.bytes;
                        }
                        r.route(a, b, ((pi as u64) << 32) | i as u64)
                    }
                    Path::ToSwitch(a) => {
                        if a == 0 {
                            nvl += tr.bytes;
                        }
                        r.to_switch(a)
                    }
                    Path::FromSwitch(a) => r.from_switch(a),
                };
                net.start(route, tr.bytes / eff(tr), i as u32);
            }
            let mut end = t;
            while let Some(a) = net.next_arrival() {
                end = end.max(a.at);
            }
            t = end;
        }
        Measured {
            time_s: t as f64 / 1e12 + self.cal.network.collective_latency.value.as_secs_f64(),
            events: net.events(),
            rdma_bytes: rdma,
            nvlink_bytes: nvl,
            links: net
                .carried
                .iter()
                .enumerate()
                .filter(|(_, &b)| b > 0.0)
                .map(|(l, &b)| (l as LinkId, b))
                .collect(),
        }
    }

    fn default_eff(&self) -> impl Fn(&Transfer) -> f64 + '_ {
        let nvl = self.nvlink_eff();
        let ib = self.cal.network.ib_efficiency.value;
        let nvls = self.cal.network.nvls_efficiency.value;
        move |t: &Transfer| match t.path {
            Path::Gpu(a, b) if self.router.node(a) != self.router.node(b) => ib,
            Path::Gpu(..) => nvl,
            _ => nvls,
        }
    }

    /// Ring steps over `ranks`: `steps` phases, each rank sending `bytes` to the next.
    pub fn ring(ranks: &[u32], steps: usize, bytes: f64) -> Vec<Phase> {
        let n = ranks.len();
        (0..steps)
            .map(|_| Phase {
                transfers: (0..n)
                    .map(|i| Transfer {
                        path: Path::Gpu(ranks[i], ranks[(i + 1) % n]),
                        bytes,
                    })
                    .collect(),
            })
            .collect()
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

    /// The phases of a collective of `bytes` (nccl-tests convention) over `ranks`.
    pub fn phases(&self, op: Op, ranks: &[u32], bytes: f64, algo: Algorithm) -> Vec<Phase> {
        let n = ranks.len();
        if n <= 1 {
            return Vec::new();
        }
        let nodes = self.by_node(ranks);
        let single_node = nodes.len() == 1;
        let algo = match algo {
            Algorithm::Auto
                if op == Op::AllReduce && single_node && self.cluster.in_switch_reduction =>
            {
                Algorithm::Nvls
            }
            Algorithm::Auto if !single_node && nodes[0].len() > 1 => Algorithm::Hierarchical,
            Algorithm::Auto => Algorithm::Ring,
            a => a,
        };
        let nf = n as f64;
        match (op, algo) {
            (Op::SendRecv, _) => vec![Phase {
                transfers: vec![Transfer {
                    path: Path::Gpu(ranks[0], ranks[1]),
                    bytes,
                }],
            }],
            (Op::AllToAll, _) => vec![Phase {
                transfers: (0..n)
                    .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
                    .map(|(i, j)| Transfer {
                        path: Path::Gpu(ranks[i], ranks[j]),
                        bytes: bytes / nf,
                    })
                    .collect(),
            }],
            (Op::AllReduce, Algorithm::Nvls) => {
                let mut t: Vec<Transfer> = ranks
                    .iter()
                    .map(|&g| Transfer {
                        path: Path::ToSwitch(g),
                        bytes,
                    })
                    .collect();
                t.extend(ranks.iter().map(|&g| Transfer {
                    path: Path::FromSwitch(g),
                    bytes,
                }));
                vec![Phase { transfers: t }]
            }
            (Op::AllReduce, Algorithm::Ring) => Self::ring(ranks, 2 * (n - 1), bytes / nf),
            (Op::AllReduce, Algorithm::Tree) => {
                // Heap-ordered binary trees over the ranks and over the ranks reversed; in a
                // pipelined tree every edge carries its half of the buffer concurrently.
                let mut up = Phase::default();
                let mut down = Phase::default();
                for order in [
                    ranks.to_vec(),
                    ranks.iter().rev().copied().collect::<Vec<u32>>(),
                ] {
                    for i in 1..n {
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
            (
                Op::AllGather | Op::ReduceScatter,
                Algorithm::Ring | Algorithm::Nvls | Algorithm::Tree,
            ) => Self::ring(ranks, n - 1, bytes / nf),
            (_, Algorithm::Hierarchical) => {
                // Inside each node, then across nodes among same-position ranks, then inside again.
                let a = nodes[0].len();
                let inside = |steps: usize, b: f64| -> Vec<Phase> {
                    let mut ph: Vec<Phase> = vec![Phase::default(); steps];
                    for members in &nodes {
                        for (k, p) in Self::ring(members, steps, b).into_iter().enumerate() {
                            ph[k].transfers.extend(p.transfers);
                        }
                    }
                    ph
                };
                let across = |steps: usize, b: f64| -> Vec<Phase> {
                    let mut ph: Vec<Phase> = vec![Phase::default(); steps];
                    for pos in 0..a {
                        let rail: Vec<u32> =
                            nodes.iter().filter_map(|m| m.get(pos).copied()).collect();
                        for (k, p) in Self::ring(&rail, steps, b).into_iter().enumerate() {
                            ph[k].transfers.extend(p.transfers);
                        }
                    }
                    ph
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
        let phases = self.phases(op, ranks, bytes, algo);
        let eff = self.default_eff();
        self.run(&phases, &eff)
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
        let phase = Phase {
            transfers: t
                .into_iter()
                .map(|(a, b, bytes)| Transfer {
                    path: if dispatch {
                        Path::Gpu(a, b)
                    } else {
                        Path::Gpu(b, a)
                    },
                    bytes,
                })
                .collect(),
        };
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
        // own included) × bytes. The flows above carry only what really crosses each link.
        Measured {
            rdma_bytes: if k > 1 {
                tokens * d * bytes_per_token
            } else {
                0.0
            },
            nvlink_bytes: tokens * route.gpus_per_token(ranks.len() as u64, k) * bytes_per_token,
            ..m
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_doc, Source};

    fn cluster(oversubscription: f64, planes: u32) -> Cluster {
        cluster_with(oversubscription, planes, false)
    }

    fn cluster_with(oversubscription: f64, planes: u32, rail: bool) -> Cluster {
        let text = format!(
            r#"
name: t
gpu: H100
nodes: 8
gpus_per_node: 8
scale_up: {{ kind: nvswitch, latency: "3 us" }}
pcie: {{ bandwidth: "64 GB/s per direction", latency: "1 us" }}
scale_out:
  nics_per_node: 8
  fabric: {{ kind: fat_tree, layers: 2, planes: {planes}, rail_optimized: {rail}, switch_radix: 16, oversubscription: {oversubscription}, hop_latency: "0.5 us" }}
"#
        );
        let spec = parse_doc(&Source::embedded("t.yaml", &text), &[]).unwrap();
        crate::topo::build(&spec, &crate::builtin::catalog(), "t.yaml").unwrap()
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
}
