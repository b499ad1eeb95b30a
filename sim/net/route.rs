//! Routes through the topology graph.
//!
//! Inside a node: GPU → NVSwitch → GPU. Between nodes a flow leaves through the NIC of its
//! source GPU, so it stays on that NIC's plane (a NIC reaches only its own plane): PCIe → NIC →
//! leaf → (spine chosen by a deterministic ECMP hash) → leaf → the same-index NIC of the target
//! node → its GPU, then over NVLink to the target GPU if that is another one (cross-plane
//! traffic is forwarded inside the node, like NCCL's PXN and DeepEP).

use super::flow::LinkId;
use crate::topo::{Cluster, Vertex};
use petgraph::graph::NodeIndex;
use petgraph::visit::EdgeRef;

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
        for v in g.node_indices() {
            if let Vertex::Leaf { .. } = g[v] {
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
        Router {
            gpus_per_node: c.gpus_per_node,
            nvl_up,
            nvl_down,
            nic_of,
            nic,
            nics_per_node: c.nics_per_node,
            spines,
            down,
            capacity: g.edge_weights().map(|l| l.capacity.bytes_per_s).collect(),
            latency: g.edge_weights().map(|l| l.latency.ps).collect(),
        }
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

    /// The GPU that receives, on `b`'s node, what `a` sends over its NIC (the same-index GPU).
    pub fn relay(&self, a: u32, b: u32) -> u32 {
        let (index, _, _) = self.nic_of[a as usize].expect("a GPU with a NIC");
        self.nic[(self.node(b) * self.nics_per_node + index) as usize].3
    }

    /// Route from GPU `a` to GPU `b`; `salt` varies the ECMP choice between flows of one pair.
    pub fn route(&self, a: u32, b: u32, salt: u64) -> Vec<LinkId> {
        if self.node(a) == self.node(b) {
            return self.nvlink(a, b);
        }
        let (index, pcie_up, _) =
            self.nic_of[a as usize].expect("a GPU with a NIC (checked by the topology builder)");
        let src = self.nic[(self.node(a) * self.nics_per_node + index) as usize];
        let dst = self.nic[(self.node(b) * self.nics_per_node + index) as usize];
        let mut r = vec![pcie_up, src.0];
        if src.2 != dst.2 {
            let list = &self.spines[&src.2];
            let h = mix(((a as u64) << 32) ^ (b as u64) ^ salt.wrapping_mul(0x2545_f491_4f6c_dd1d));
            let (spine, up, _) = list[(h % list.len() as u64) as usize];
            r.push(up);
            r.push(self.down[&(dst.2, spine)]);
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
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_doc, Source};

    use proptest::prelude::*;

    fn cluster(text: &str) -> Cluster {
        let spec = parse_doc(&Source::embedded("t.yaml", text), &[]).unwrap();
        crate::topo::build(&spec, &crate::builtin::catalog(), "t.yaml").unwrap()
    }

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

    const MULTI_PLANE: &str = r#"
name: mp
gpu: H800
nodes: 8
gpus_per_node: 8
scale_up: { kind: nvswitch, latency: "3 us" }
pcie: { bandwidth: "64 GB/s per direction", latency: "1 us" }
scale_out:
  nics_per_node: 8
  fabric: { kind: fat_tree, layers: 2, planes: 8, switch_radix: 4, hop_latency: "0.5 us" }
"#;

    const RAIL_OVERSUBSCRIBED: &str = r#"
name: rail
gpu: H100
nodes: 8
gpus_per_node: 8
scale_up: { kind: nvswitch, latency: "3 us" }
pcie: { bandwidth: "64 GB/s per direction", latency: "1 us" }
scale_out:
  nics_per_node: 4
  fabric: { kind: fat_tree, layers: 2, planes: 1, rail_optimized: true, switch_radix: 16, oversubscription: 3.0, hop_latency: "0.5 us" }
"#;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn routes_are_valid_paths(a in 0u32..64, b in 0u32..64, salt in any::<u64>(), rail in any::<bool>()) {
            let c = cluster(if rail { RAIL_OVERSUBSCRIBED } else { MULTI_PLANE });
            let r = Router::new(&c);
            check(&c, &r, a, b, salt)?;
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
