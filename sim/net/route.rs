//! Routes through the topology graph.
//!
//! Inside a node: GPU → NVSwitch → GPU. Between nodes a flow leaves through the NIC of its
//! source GPU, so it stays on that NIC's plane (a NIC reaches only its own plane): PCIe → NIC →
//! leaf → (spine chosen by a deterministic ECMP hash) → leaf → the same-index NIC of the target
//! node → its GPU, then over NVLink to the target GPU if that is another one (cross-plane
//! traffic is forwarded inside the node, like NCCL's PXN and DeepEP).
//!
//! In a three-layer fabric a flow between pods climbs from its leaf to spine `i` of its pod
//! (by the hash), on to core group `i`, and down through spine `i` of the target pod. With
//! adaptive routing a flow is sprayed evenly over every spine (and so core) path instead: one
//! weighted flow whose share on each path's switch links is 1/k.

use super::flow::LinkId;
use crate::topo::{Cluster, Vertex};
use petgraph::graph::NodeIndex;
use petgraph::visit::EdgeRef;

/// What a link is, in terms that survive a shift of nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Addr {
    NvUp(u32),
    NvDown(u32),
    PcieUp(u32),
    PcieDown(u32),
    /// NIC `(node, index)` up to its leaf, and back.
    NicUp(u32, u32),
    NicDown(u32, u32),
    /// Leaf (vertex) to its `k`-th spine, and back.
    LeafUp(NodeIndex, u32),
    LeafDown(NodeIndex, u32),
    /// Spine (vertex) to its core group, and back.
    SpineUp(NodeIndex),
    SpineDown(NodeIndex),
    Other,
}

/// Precomputed edge lookups for routing.
pub struct Router {
    pub gpus_per_node: u32,
    /// Per GPU: NVLink up (GPU → switch) and down (switch → GPU).
    nvl_up: Vec<LinkId>,
    nvl_down: Vec<LinkId>,
    /// Per GPU: the NIC index serving it, PCIe GPU → NIC and NIC → GPU.
    nic_of: Vec<Option<(u32, LinkId, LinkId)>>,
    /// Per (node, NIC index): NIC → leaf, leaf → NIC, leaf vertex, and the first GPU it serves.
    nic: Vec<(LinkId, LinkId, NodeIndex, u32)>,
    nics_per_node: u32,
    /// Per leaf vertex index: (spine vertex, up edge, down edge) in spine order.
    spines: std::collections::BTreeMap<NodeIndex, Vec<(NodeIndex, LinkId, LinkId)>>,
    /// Per (leaf, spine) → down edge spine → leaf.
    down: std::collections::BTreeMap<(NodeIndex, NodeIndex), LinkId>,
    /// Per leaf: its pod.
    pod: std::collections::BTreeMap<NodeIndex, u32>,
    /// Per spine: its core group, the edge up to it and the edge down from it.
    core: std::collections::BTreeMap<NodeIndex, (NodeIndex, LinkId, LinkId)>,
    /// Per (core group, pod): that pod's spine in the group.
    core_spine: std::collections::BTreeMap<(NodeIndex, u32), NodeIndex>,
    adaptive: bool,
    ecmp_flows: u32,
    /// What each link is, for moving a footprint to other nodes by the fabric's symmetry.
    addr: Vec<Addr>,
    nodes: u32,
    pub capacity: Vec<f64>,
    pub latency: Vec<u64>,
}

fn mix(mut x: u64) -> u64 {
    // splitmix64: a fixed, platform-independent hash for ECMP choices.
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Router {
    pub fn new(c: &Cluster) -> Router {
        let g = &c.graph;
        let edge = |a: NodeIndex, b: NodeIndex| {
            g.find_edge(a, b).expect("topology edge").index() as LinkId
        };
        let n = c.gpus() as usize;
        let mut nvl_up = vec![0; n];
        let mut nvl_down = vec![0; n];
        let mut nic_of = vec![None; n];
        let mut nic =
            vec![(0, 0, NodeIndex::new(0), u32::MAX); (c.nodes * c.nics_per_node) as usize];
        for (i, &v) in c.gpu_vertices.iter().enumerate() {
            for e in g.edges(v) {
                match g[e.target()] {
                    Vertex::NvSwitch { .. } => {
                        nvl_up[i] = e.id().index() as LinkId;
                        nvl_down[i] = edge(e.target(), v);
                    }
                    Vertex::Nic { node, index, .. } => {
                        nic_of[i] = Some((index, e.id().index() as LinkId, edge(e.target(), v)));
                        let slot = &mut nic[(node * c.nics_per_node + index) as usize];
                        if slot.3 == u32::MAX || (i as u32) < slot.3 {
                            slot.3 = i as u32;
                        }
                        for le in g.edges(e.target()) {
                            if let Vertex::Leaf { .. } = g[le.target()] {
                                slot.0 = le.id().index() as LinkId;
                                slot.1 = edge(le.target(), e.target());
                                slot.2 = le.target();
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        let mut spines: std::collections::BTreeMap<NodeIndex, Vec<(NodeIndex, LinkId, LinkId)>> =
            Default::default();
        let mut down = std::collections::BTreeMap::new();
        let mut pod = std::collections::BTreeMap::new();
        let mut core = std::collections::BTreeMap::new();
        let mut core_spine = std::collections::BTreeMap::new();
        let leaves_per_pod = (c.leaves_per_plane / c.pods.max(1)).max(1);
        let spines_per_pod = (c.spines_per_plane / c.pods.max(1)).max(1);
        for v in g.node_indices() {
            if let Vertex::Spine { index, .. } = g[v] {
                for e in g.edges(v) {
                    if let Vertex::Core { .. } = g[e.target()] {
                        let p = index / spines_per_pod;
                        core.insert(
                            v,
                            (e.target(), e.id().index() as LinkId, edge(e.target(), v)),
                        );
                        core_spine.insert((e.target(), p), v);
                    }
                }
            }
            if let Vertex::Leaf { index, .. } = g[v] {
                pod.insert(v, index / leaves_per_pod);
                let mut list: Vec<(NodeIndex, LinkId, LinkId)> = g
                    .edges(v)
                    .filter(|e| matches!(g[e.target()], Vertex::Spine { .. }))
                    .map(|e| (e.target(), e.id().index() as LinkId, edge(e.target(), v)))
                    .collect();
                list.sort_by_key(|x| x.0);
                for &(s, _, d) in &list {
                    down.insert((v, s), d);
                }
                spines.insert(v, list);
            }
        }
        let mut r = Router {
            gpus_per_node: c.gpus_per_node,
            nvl_up,
            nvl_down,
            nic_of,
            nic,
            nics_per_node: c.nics_per_node,
            spines,
            down,
            pod,
            core,
            core_spine,
            adaptive: c.adaptive_routing,
            ecmp_flows: c.ecmp_flows.max(1),
            addr: Vec::new(),
            nodes: c.nodes,
            capacity: g.edge_weights().map(|l| l.capacity.bytes_per_s).collect(),
            latency: g.edge_weights().map(|l| l.latency.ps).collect(),
        };
        r.addr = r.addresses();
        r
    }

    fn addresses(&self) -> Vec<Addr> {
        let mut a = vec![Addr::Other; self.capacity.len()];
        for g in 0..self.nvl_up.len() {
            a[self.nvl_up[g] as usize] = Addr::NvUp(g as u32);
            a[self.nvl_down[g] as usize] = Addr::NvDown(g as u32);
            if let Some((_, up, down)) = self.nic_of[g] {
                a[up as usize] = Addr::PcieUp(g as u32);
                a[down as usize] = Addr::PcieDown(g as u32);
            }
        }
        for (i, &(up, down, _, first)) in self.nic.iter().enumerate() {
            if first == u32::MAX {
                continue;
            }
            let (node, index) = (i as u32 / self.nics_per_node, i as u32 % self.nics_per_node);
            a[up as usize] = Addr::NicUp(node, index);
            a[down as usize] = Addr::NicDown(node, index);
        }
        for (&leaf, list) in &self.spines {
            for (k, &(_, up, down)) in list.iter().enumerate() {
                a[up as usize] = Addr::LeafUp(leaf, k as u32);
                a[down as usize] = Addr::LeafDown(leaf, k as u32);
            }
        }
        for (&spine, &(_, up, down)) in &self.core {
            a[up as usize] = Addr::SpineUp(spine);
            a[down as usize] = Addr::SpineDown(spine);
        }
        a
    }

    /// Moves per-link loads `shift` nodes along, by the fabric's symmetry: each GPU's, NIC's
    /// and PCIe link to its counterpart, each leaf to the leaf that holds the moved NICs, each
    /// spine to the same spine of the moved pod. `None` where the shift is not a symmetry of
    /// the links involved (a node past the end, leaves that split, a link it cannot place).
    pub fn shifted(&self, loads: &[(LinkId, f64)], shift: u32) -> Option<Vec<(LinkId, f64)>> {
        use std::collections::BTreeMap;
        let gpus = self.nvl_up.len() as u32;
        let dg = shift.checked_mul(self.gpus_per_node)?;
        let gpu = |g: u32| (g + dg < gpus).then_some(g + dg);
        let nic = |node: u32, index: u32| -> Option<(LinkId, LinkId, NodeIndex, u32)> {
            if node + shift >= self.nodes {
                return None;
            }
            let n = self.nic[((node + shift) * self.nics_per_node + index) as usize];
            (n.3 != u32::MAX).then_some(n)
        };
        // Leaves, from the NICs the loads touch.
        let mut leaf: BTreeMap<NodeIndex, NodeIndex> = BTreeMap::new();
        for &(l, _) in loads {
            if let Addr::NicUp(node, index) | Addr::NicDown(node, index) = self.addr[l as usize] {
                let from = self.nic[(node * self.nics_per_node + index) as usize].2;
                let to = nic(node, index)?.2;
                if *leaf.entry(from).or_insert(to) != to {
                    return None;
                }
            }
        }
        let pod = |l: NodeIndex| self.pod.get(&l).copied();
        let spine = |s: NodeIndex, from_leaf: Option<NodeIndex>| -> Option<NodeIndex> {
            // The spine of the same position in the pod the loads move to.
            let (core, _, _) = *self.core.get(&s)?;
            let to_pod = pod(leaf[&from_leaf?])?;
            self.core_spine.get(&(core, to_pod)).copied()
        };
        let mut pod_leaf: BTreeMap<u32, NodeIndex> = BTreeMap::new();
        for &from in leaf.keys() {
            if let Some(p) = pod(from) {
                pod_leaf.entry(p).or_insert(from);
            }
        }
        let spine_pod = |s: NodeIndex| -> Option<u32> {
            self.core_spine
                .iter()
                .find(|(_, &v)| v == s)
                .map(|(&(_, p), _)| p)
        };
        let mut out = Vec::with_capacity(loads.len());
        for &(l, b) in loads {
            let to = match self.addr[l as usize] {
                Addr::NvUp(g) => self.nvl_up[gpu(g)? as usize],
                Addr::NvDown(g) => self.nvl_down[gpu(g)? as usize],
                Addr::PcieUp(g) => self.nic_of[gpu(g)? as usize]?.1,
                Addr::PcieDown(g) => self.nic_of[gpu(g)? as usize]?.2,
                Addr::NicUp(node, index) => nic(node, index)?.0,
                Addr::NicDown(node, index) => nic(node, index)?.1,
                Addr::LeafUp(from, k) => self.spines[leaf.get(&from)?].get(k as usize)?.1,
                Addr::LeafDown(from, k) => self.spines[leaf.get(&from)?].get(k as usize)?.2,
                Addr::SpineUp(s) | Addr::SpineDown(s) => {
                    let p = spine_pod(s)?;
                    let moved = spine(s, pod_leaf.get(&p).copied())?;
                    let (_, up, down) = self.core[&moved];
                    if matches!(self.addr[l as usize], Addr::SpineUp(_)) {
                        up
                    } else {
                        down
                    }
                }
                Addr::Other => return None,
            };
            out.push((to, b));
        }
        // Two pods' spines may not land on one; every leaf of a pod moves to one pod.
        let mut moved_pod: BTreeMap<u32, u32> = BTreeMap::new();
        for (&from, &to) in &leaf {
            if let (Some(a), Some(b)) = (pod(from), pod(to)) {
                if *moved_pod.entry(a).or_insert(b) != b {
                    return None;
                }
            }
        }
        out.sort_by_key(|x| x.0);
        Some(out)
    }

    pub fn node(&self, gpu: u32) -> u32 {
        gpu / self.gpus_per_node
    }

    /// NVLink path inside a node.
    pub fn nvlink(&self, a: u32, b: u32) -> Vec<LinkId> {
        if a == b {
            return Vec::new();
        }
        vec![self.nvl_up[a as usize], self.nvl_down[b as usize]]
    }

    /// GPU → switch (an in-switch reduction's input) and switch → GPU (its multicast).
    pub fn to_switch(&self, a: u32) -> Vec<LinkId> {
        vec![self.nvl_up[a as usize]]
    }
    pub fn from_switch(&self, a: u32) -> Vec<LinkId> {
        vec![self.nvl_down[a as usize]]
    }

    /// GPU → its NIC → the NIC's leaf (an in-network reduction's input), and leaf → NIC → GPU
    /// (its result).
    pub fn to_fabric(&self, a: u32) -> Vec<LinkId> {
        let (index, pcie_up, _) = self.nic_of[a as usize].expect("a GPU with a NIC");
        vec![
            pcie_up,
            self.nic[(self.node(a) * self.nics_per_node + index) as usize].0,
        ]
    }
    pub fn from_fabric(&self, a: u32) -> Vec<LinkId> {
        let (index, _, pcie_down) = self.nic_of[a as usize].expect("a GPU with a NIC");
        vec![
            self.nic[(self.node(a) * self.nics_per_node + index) as usize].1,
            pcie_down,
        ]
    }

    /// The leaf switch of the NIC serving `gpu` (`None` without one).
    pub fn leaf_of(&self, gpu: u32) -> Option<NodeIndex> {
        let (index, _, _) = self.nic_of[gpu as usize]?;
        Some(self.nic[(self.node(gpu) * self.nics_per_node + index) as usize].2)
    }

    /// The GPU that receives, on `b`'s node, what `a` sends over its NIC (the same-index GPU).
    pub fn relay(&self, a: u32, b: u32) -> u32 {
        let (index, _, _) = self.nic_of[a as usize].expect("a GPU with a NIC");
        self.nic[(self.node(b) * self.nics_per_node + index) as usize].3
    }

    /// Route from GPU `a` to GPU `b` on one path (ECMP); `salt` varies the choice between flows
    /// of one pair.
    pub fn route(&self, a: u32, b: u32, salt: u64) -> Vec<LinkId> {
        self.path(a, b, Some(salt)).0
    }

    /// Route from `a` to `b` as the fabric routes it: one path (weights empty), or with adaptive
    /// routing every path at once, each switch link with its share of the flow.
    pub fn route_weighted(&self, a: u32, b: u32, salt: u64) -> (Vec<LinkId>, Vec<f64>) {
        self.path(a, b, (!self.adaptive).then_some(salt))
    }

    /// The links between two leaves through spine `spine` of the source pod.
    fn through(&self, from: NodeIndex, to: NodeIndex, up: LinkId, spine: NodeIndex) -> Vec<LinkId> {
        if self.pod[&from] == self.pod[&to] {
            return vec![up, self.down[&(to, spine)]];
        }
        let (core, s_up, _) = self.core[&spine];
        let far = self.core_spine[&(core, self.pod[&to])];
        let (_, _, c_down) = self.core[&far];
        vec![up, s_up, c_down, self.down[&(to, far)]]
    }

    /// `salt`: one path chosen by hash; `None`: every path, weighted.
    fn path(&self, a: u32, b: u32, salt: Option<u64>) -> (Vec<LinkId>, Vec<f64>) {
        if self.node(a) == self.node(b) {
            return (self.nvlink(a, b), Vec::new());
        }
        let (index, pcie_up, _) =
            self.nic_of[a as usize].expect("a GPU with a NIC (checked by the topology builder)");
        let src = self.nic[(self.node(a) * self.nics_per_node + index) as usize];
        let dst = self.nic[(self.node(b) * self.nics_per_node + index) as usize];
        let mut r = vec![pcie_up, src.0];
        let mut w = Vec::new();
        if src.2 != dst.2 {
            let list = &self.spines[&src.2];
            let pick = |salt: u64| {
                let h =
                    mix(((a as u64) << 32) ^ (b as u64) ^ salt.wrapping_mul(0x2545_f491_4f6c_dd1d));
                (h % list.len() as u64) as usize
            };
            // How many of the transfer's flows take each spine.
            let mut count = vec![0u32; list.len()];
            match salt {
                Some(salt) if self.ecmp_flows == 1 => count[pick(salt)] = 1,
                Some(salt) => {
                    for q in 0..self.ecmp_flows as u64 {
                        count[pick(salt.wrapping_mul(1024).wrapping_add(q))] += 1;
                    }
                }
                None => count.fill(1),
            }
            let total: u32 = count.iter().sum();
            let used = count.iter().filter(|&&c| c > 0).count();
            for (&(spine, up, _), &c) in list.iter().zip(&count) {
                if c == 0 {
                    continue;
                }
                let hops = self.through(src.2, dst.2, up, spine);
                if used > 1 {
                    w.resize(r.len(), 1.0);
                    w.extend(std::iter::repeat_n(c as f64 / total as f64, hops.len()));
                }
                r.extend(hops);
            }
        }
        r.push(dst.1);
        // Straight to `b` if the NIC serves it, else to the GPU it serves and on over NVLink.
        let served = self.nic_of[b as usize].is_some_and(|(i, _, _)| i == index);
        let target = if served { b } else { dst.3 };
        let (_, _, pcie_down) = self.nic_of[target as usize].expect("target has a NIC");
        r.push(pcie_down);
        if target != b {
            r.extend(self.nvlink(target, b));
        }
        if !w.is_empty() {
            w.resize(r.len(), 1.0);
        }
        (r, w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(c: &Cluster, r: &Router, a: u32, b: u32, salt: u64) -> Result<(), TestCaseError> {
        let g = &c.graph;
        let route = r.route(a, b, salt);
        prop_assert_eq!(&route, &r.route(a, b, salt), "ECMP is deterministic");
        if a == b {
            prop_assert!(route.is_empty());
            return Ok(());
        }
        let ends: Vec<(NodeIndex, NodeIndex)> = route
            .iter()
            .map(|&l| {
                g.edge_endpoints(petgraph::graph::EdgeIndex::new(l as usize))
                    .unwrap()
            })
            .collect();
        prop_assert_eq!(
            ends[0].0,
            c.gpu_vertices[a as usize],
            "starts at the source GPU"
        );
        prop_assert_eq!(
            ends.last().unwrap().1,
            c.gpu_vertices[b as usize],
            "ends at the target GPU"
        );
        for w in ends.windows(2) {
            prop_assert_eq!(w[0].1, w[1].0, "a connected path");
        }
        let mut planes = std::collections::BTreeSet::new();
        for (x, y) in &ends {
            if let (Vertex::Nic { plane, .. }, Vertex::Leaf { plane: p, .. })
            | (Vertex::Leaf { plane: p, .. }, Vertex::Nic { plane, .. }) = (g[*x], g[*y])
            {
                prop_assert_eq!(plane, p, "a NIC reaches only its own plane");
                planes.insert(p);
            }
        }
        prop_assert!(planes.len() <= 1, "one plane per flow");
        let cross = r.node(a) != r.node(b);
        prop_assert_eq!(
            cross,
            !planes.is_empty(),
            "only inter-node traffic leaves the node"
        );
        Ok(())
    }

    const MULTI_PLANE: (&str, u32, &str) = (
        "H800",
        8,
        r#"{ kind: fat_tree, layers: 2, planes: 8, switch_radix: 4, hop_latency: "0.5 us" }"#,
    );
    const RAIL_OVERSUBSCRIBED: (&str, u32, &str) = (
        "H100",
        4,
        r#"{ kind: fat_tree, layers: 2, planes: 1, rail_optimized: true, switch_radix: 16, oversubscription: 3.0, hop_latency: "0.5 us" }"#,
    );
    const PODS: (&str, u32, &str) = (
        "H100",
        8,
        r#"{ kind: fat_tree, layers: 3, pod_nodes: 2, pod_oversubscription: 4, spine_radix: 32, planes: 1, switch_radix: 16, hop_latency: "0.5 us" }"#,
    );

    fn cluster((gpu, nics, fabric): (&str, u32, &str)) -> Cluster {
        crate::topo::fixture(gpu, 8, 8, nics, fabric)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn routes_are_valid_paths(a in 0u32..64, b in 0u32..64, salt in any::<u64>(), kind in 0u8..3) {
            let c = cluster([RAIL_OVERSUBSCRIBED, MULTI_PLANE, PODS][kind as usize]);
            let r = Router::new(&c);
            check(&c, &r, a, b, salt)?;
            // Between pods a route climbs to the core; inside one it does not.
            let cores = r.route(a, b, salt).iter().filter(|&&l| {
                c.graph[petgraph::graph::EdgeIndex::new(l as usize)].kind == crate::topo::LinkKind::SpineCore
            }).count();
            let pods = c.pod_nodes() * c.gpus_per_node;
            prop_assert_eq!(cores, if a / pods != b / pods { 2 } else { 0 });
        }

        /// Sprayed over every path, a route's weights on each tier add up to one flow.
        #[test]
        fn adaptive_routes_split_one_flow_over_every_path(a in 0u32..64, b in 0u32..64) {
            let adaptive = PODS.2.replace("hop_latency", "routing: adaptive, hop_latency");
            let c = cluster((PODS.0, PODS.1, &adaptive));
            let r = Router::new(&c);
            let (links, w) = r.route_weighted(a, b, 0);
            if r.node(a) != r.node(b) && !w.is_empty() {
                prop_assert_eq!(links.len(), w.len());
                let mut by_kind: std::collections::BTreeMap<String, f64> = Default::default();
                for (&l, &x) in links.iter().zip(&w) {
                    let e = petgraph::graph::EdgeIndex::new(l as usize);
                    let (from, _) = c.graph.edge_endpoints(e).unwrap();
                    let key = format!("{:?} from {:?}", c.graph[e].kind, std::mem::discriminant(&c.graph[from]));
                    *by_kind.entry(key).or_default() += x;
                }
                for (k, v) in by_kind {
                    prop_assert!((v - 1.0).abs() < 1e-9, "{k}: {v}");
                }
            }
        }
    }

    /// ECMP spreads the flows of one pair over the spines.
    #[test]
    fn ecmp_uses_every_spine() {
        let c = cluster(MULTI_PLANE);
        let r = Router::new(&c);
        let spines: std::collections::BTreeSet<LinkId> =
            (0..64u64).map(|s| r.route(0, 56, s)[2]).collect();
        assert_eq!(spines.len() as u32, c.spines_per_plane, "{spines:?}");
    }
}
