//! The cluster as a directed graph (petgraph): GPUs, NVSwitches, NICs and fat-tree switches.
//!
//! Links are directed edges with a per-direction capacity and a latency. The builder makes an
//! NVSwitch node fabric, PCIe from each GPU to its NIC, and a two-level fat-tree per plane:
//! multi-plane (NIC `i` of every node on plane `i`, DeepSeek's MPFT) or a single fabric, with
//! rail-optimized or node-local leaf placement, switch radix and oversubscription.

use crate::config::topology::{FabricKind, TopologySpec};
use crate::config::Diagnostic;
use crate::hw::{Catalog, GpuSpec};
use crate::units::{Bandwidth, Time};
use petgraph::graph::{DiGraph, NodeIndex};

/// A vertex of the topology graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vertex {
    Gpu {
        id: u32,
        node: u32,
        local: u32,
    },
    NvSwitch {
        node: u32,
    },
    Nic {
        node: u32,
        index: u32,
        plane: u32,
    },
    Leaf {
        plane: u32,
        index: u32,
    },
    /// `index` counts over all pods; a pod's spines are consecutive.
    Spine {
        plane: u32,
        index: u32,
    },
    /// Core group `index` joins spine `index` of every pod (three layers only).
    Core {
        plane: u32,
        index: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    NvLink,
    Pcie,
    NicLeaf,
    LeafSpine,
    SpineCore,
}

/// A directed link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    pub kind: LinkKind,
    /// Capacity in this direction.
    pub capacity: Bandwidth,
    pub latency: Time,
}

/// A validated cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub name: String,
    /// Canonical catalog name of the chip.
    pub gpu_name: String,
    pub gpu: GpuSpec,
    pub nodes: u32,
    pub gpus_per_node: u32,
    pub nics_per_node: u32,
    pub planes: u32,
    /// Per-GPU NVLink bandwidth, one direction.
    pub scale_up: Bandwidth,
    pub scale_up_latency: Time,
    pub in_switch_reduction: bool,
    /// The fabric's switches reduce in the network (SHARP).
    pub in_network_reduction: bool,
    /// Per-NIC bandwidth, one direction.
    pub nic: Bandwidth,
    pub leaves_per_plane: u32,
    pub spines_per_plane: u32,
    /// Pods per plane (1 for two layers) and core groups per plane (0 for two layers).
    pub pods: u32,
    pub cores_per_plane: u32,
    /// Spread every leaf-to-leaf flow over all its paths instead of hashing it onto one.
    pub adaptive_routing: bool,
    /// ECMP: flows a transfer is split into, each hashed onto its own path.
    pub ecmp_flows: u32,
    pub graph: DiGraph<Vertex, Link>,
    /// Graph index of GPU `i`.
    pub gpu_vertices: Vec<NodeIndex>,
}

impl Cluster {
    pub fn gpus(&self) -> u32 {
        self.nodes * self.gpus_per_node
    }
    /// Fat-tree switches over all planes.
    pub fn fabric_switches(&self) -> u32 {
        self.planes * (self.leaves_per_plane + self.spines_per_plane + self.cores_per_plane)
    }
    /// Nodes per pod.
    pub fn pod_nodes(&self) -> u32 {
        self.nodes / self.pods.max(1)
    }
    /// Scale-out bandwidth per GPU, one direction.
    pub fn nic_per_gpu(&self) -> Bandwidth {
        Bandwidth {
            bytes_per_s: self.nic.bytes_per_s * self.nics_per_node as f64
                / self.gpus_per_node as f64,
        }
    }
}

/// The most GPUs one cluster may have (the largest shipped benchmark simulates 163,840).
pub const MAX_GPUS: u64 = 262_144;

/// Builds and validates the cluster graph.
pub fn build(spec: &TopologySpec, catalog: &Catalog, file: &str) -> Result<Cluster, Diagnostic> {
    let err =
        |path: &str, found: String, expected: &str| Diagnostic::new(file, found, expected).at(path);
    let (gpu_name, gpu) = catalog.get(&spec.gpu).ok_or_else(|| {
        err(
            "gpu",
            format!("the unknown chip \"{}\"", spec.gpu),
            &format!("a chip from the catalog: {}", catalog.names().join(", ")),
        )
    })?;
    for (path, v) in [("nodes", spec.nodes), ("gpus_per_node", spec.gpus_per_node)] {
        if v == 0 {
            return Err(err(path, "0".into(), "a positive integer"));
        }
    }
    let gpus = u64::from(spec.nodes) * u64::from(spec.gpus_per_node);
    if gpus > MAX_GPUS {
        return Err(err(
            "nodes",
            format!(
                "{} nodes of {} GPUs, {gpus} GPUs",
                spec.nodes, spec.gpus_per_node
            ),
            &format!("at most {MAX_GPUS} GPUs in one cluster (trainsim's limit)"),
        ));
    }
    let so = &spec.scale_out;
    let f = &so.fabric;
    let nics = so.nics_per_node;
    if nics == 0 && spec.nodes > 1 {
        return Err(err(
            "scale_out.nics_per_node",
            "0 NICs with several nodes".into(),
            "at least one NIC per node, or nodes: 1",
        ));
    }
    if nics > 0 && spec.gpus_per_node % nics != 0 {
        return Err(err(
            "scale_out.nics_per_node",
            format!("{nics} NICs for {} GPUs per node", spec.gpus_per_node),
            "a divisor of gpus_per_node (each NIC serves the same number of GPUs)",
        ));
    }
    if f.planes == 0 || (nics > 0 && nics % f.planes != 0) {
        return Err(err(
            "scale_out.fabric.planes",
            format!("{} planes for {nics} NICs per node", f.planes),
            "a positive divisor of nics_per_node",
        ));
    }
    if f.layers != 2 && f.layers != 3 {
        return Err(err(
            "scale_out.fabric.layers",
            f.layers.to_string(),
            "2 (leaf + spine) or 3 (leaf + spine in pods + core)",
        ));
    }
    let pod_nodes = match (f.layers, f.pod_nodes) {
        (2, None) => spec.nodes,
        (2, Some(_)) => {
            return Err(err(
                "scale_out.fabric.pod_nodes",
                "pod_nodes with a two-layer fabric".into(),
                "no pod_nodes, or layers: 3",
            ))
        }
        (_, None) => {
            return Err(err(
                "scale_out.fabric.pod_nodes",
                "a three-layer fabric without pod_nodes".into(),
                "the nodes in one pod, a divisor of nodes",
            ))
        }
        (_, Some(p)) if p == 0 || spec.nodes % p != 0 => {
            return Err(err(
                "scale_out.fabric.pod_nodes",
                format!("{p} nodes per pod for {} nodes", spec.nodes),
                "a positive divisor of nodes",
            ))
        }
        (_, Some(p)) => p,
    };
    if f.ecmp_flows == 0 || f.ecmp_flows > 1024 {
        return Err(err(
            "scale_out.fabric.ecmp_flows",
            f.ecmp_flows.to_string(),
            "1 to 1024 flows per transfer",
        ));
    }
    if !(f.pod_oversubscription.is_finite() && f.pod_oversubscription >= 1.0) {
        return Err(err(
            "scale_out.fabric.pod_oversubscription",
            f.pod_oversubscription.to_string(),
            "a ratio of leaf-facing to core-facing spine links of at least 1.0",
        ));
    }
    if f.switch_radix < 2 {
        return Err(err(
            "scale_out.fabric.switch_radix",
            f.switch_radix.to_string(),
            "at least 2 ports",
        ));
    }
    if !(f.oversubscription.is_finite() && f.oversubscription > 0.0) {
        return Err(err(
            "scale_out.fabric.oversubscription",
            f.oversubscription.to_string(),
            "a positive ratio of down-links to up-links (1.0 is non-blocking)",
        ));
    }
    let FabricKind::FatTree = f.kind;
    let scale_up = spec
        .scale_up
        .bandwidth
        .unwrap_or(gpu.scale_up.value)
        .per_direction();
    let nic_bw = so.nic_bandwidth.unwrap_or(gpu.nic.value).per_direction();
    let fabric_bw = f
        .link_bandwidth
        .map(|b| b.per_direction())
        .unwrap_or(nic_bw);
    for (path, bw) in [
        ("scale_up.bandwidth", scale_up),
        ("pcie.bandwidth", spec.pcie.bandwidth.per_direction()),
        ("scale_out.nic_bandwidth", nic_bw),
        ("scale_out.fabric.link_bandwidth", fabric_bw),
    ] {
        if bw.bytes_per_s <= 0.0 {
            return Err(err(
                path,
                "a zero bandwidth".into(),
                "a bandwidth above zero",
            ));
        }
    }

    // Fat-tree sizing per plane and pod.
    let pods = spec.nodes / pod_nodes;
    let endpoints = pod_nodes * nics / f.planes.max(1);
    let radix = f.switch_radix;
    let up = ((radix as f64 / (1.0 + f.oversubscription)).floor() as u32).max(1);
    let down = radix - up;
    let leaves = endpoints
        .div_ceil(down.max(1))
        .max(if nics > 0 { 1 } else { 0 });
    let spine_radix = f.spine_radix.unwrap_or(radix);
    // A spine's leaf-facing ports: all of them, or what the core-facing ones leave.
    let spine_ports = if pods > 1 {
        ((spine_radix as f64 * f.pod_oversubscription / (1.0 + f.pod_oversubscription)).floor()
            as u32)
            .max(1)
    } else {
        spine_radix
    };
    let spines = if leaves <= 1 && pods == 1 {
        0
    } else {
        (leaves * up).div_ceil(spine_ports).max(1)
    };
    if leaves > 1 && leaves > spine_ports {
        let per = if pods > 1 {
            "per plane and pod"
        } else {
            "per plane"
        };
        let key = if f.spine_radix.is_some() {
            "scale_out.fabric.spine_radix"
        } else {
            "scale_out.fabric.switch_radix"
        };
        return Err(err(
            key,
            format!("{endpoints} NICs {per}, which need {leaves} leaves of {down} down-ports"),
            &format!(
                "at most {} NICs {per} for a two-level fat-tree whose spines have {spine_ports} leaf ports (add planes or pods, or raise the radix)",
                spine_ports * down
            ),
        ));
    }
    if spines > up {
        return Err(err(
            "scale_out.fabric.switch_radix",
            format!("{spines} spines for leaves of {up} up-links"),
            "at least one up-link from every leaf to every spine (fewer leaves per spine, or more up-links)",
        ));
    }
    // A spine's cables down to its pod's leaves, and up to its core group.
    let spine_down = (leaves * up).div_ceil(spines.max(1));
    let spine_up = if pods > 1 {
        ((spine_down as f64 / f.pod_oversubscription).round() as u32).max(1)
    } else {
        0
    };

    // Sized up front: a 2,048-GPU cluster has ~4.5K vertices and ~17K links.
    let per_plane_links =
        pods as usize * (endpoints as usize + leaves as usize * (spines.min(up) as usize) + 1);
    let cores = if pods > 1 { spines } else { 0 };
    let mut g: DiGraph<Vertex, Link> = DiGraph::with_capacity(
        (spec.nodes * (1 + spec.gpus_per_node + nics)
            + f.planes * (pods * (leaves + spines) + cores)) as usize,
        2 * (spec.nodes as usize * (2 * spec.gpus_per_node as usize)
            + f.planes as usize * per_plane_links),
    );
    let both = |g: &mut DiGraph<Vertex, Link>, a, b, up: Link, downl: Link| {
        g.add_edge(a, b, up);
        g.add_edge(b, a, downl);
    };
    let nvl = Link {
        kind: LinkKind::NvLink,
        capacity: scale_up,
        latency: Time::from_ps(spec.scale_up.latency.ps / 2),
    };
    let pcie = Link {
        kind: LinkKind::Pcie,
        capacity: spec.pcie.bandwidth.per_direction(),
        latency: spec.pcie.latency,
    };
    let mut gpu_vertices = Vec::new();
    let mut nic_vertices = Vec::new(); // (node, index, vertex)
    for node in 0..spec.nodes {
        let sw = g.add_node(Vertex::NvSwitch { node });
        let first = gpu_vertices.len();
        for local in 0..spec.gpus_per_node {
            let v = g.add_node(Vertex::Gpu {
                id: node * spec.gpus_per_node + local,
                node,
                local,
            });
            both(&mut g, v, sw, nvl, nvl);
            gpu_vertices.push(v);
        }
        let per_nic = spec.gpus_per_node.checked_div(nics).unwrap_or(0);
        for index in 0..nics {
            let nic = g.add_node(Vertex::Nic {
                node,
                index,
                plane: index % f.planes,
            });
            for j in 0..per_nic {
                both(
                    &mut g,
                    gpu_vertices[first + (index * per_nic + j) as usize],
                    nic,
                    pcie,
                    pcie,
                );
            }
            nic_vertices.push((node, index, nic));
        }
    }
    let hop = f.hop_latency;
    let cable = |kind, n: u32| Link {
        kind,
        capacity: Bandwidth {
            bytes_per_s: fabric_bw.bytes_per_s * n as f64,
        },
        latency: hop,
    };
    for plane in 0..f.planes {
        let core_v: Vec<NodeIndex> = (0..cores)
            .map(|index| g.add_node(Vertex::Core { plane, index }))
            .collect();
        let mut members: Vec<(u32, u32, NodeIndex)> = nic_vertices
            .iter()
            .copied()
            .filter(|(_, i, _)| i % f.planes == plane)
            .collect();
        if f.rail_optimized {
            members.sort_by_key(|&(node, index, _)| (node / pod_nodes, index, node));
        }
        for pod in 0..pods {
            let leaf_v: Vec<NodeIndex> = (0..leaves)
                .map(|i| {
                    g.add_node(Vertex::Leaf {
                        plane,
                        index: pod * leaves + i,
                    })
                })
                .collect();
            let spine_v: Vec<NodeIndex> = (0..spines)
                .map(|i| {
                    g.add_node(Vertex::Spine {
                        plane,
                        index: pod * spines + i,
                    })
                })
                .collect();
            let per_pod = endpoints as usize;
            for (e, &(_, _, nic)) in members[pod as usize * per_pod..(pod as usize + 1) * per_pod]
                .iter()
                .enumerate()
            {
                let leaf = leaf_v[e / down as usize];
                let l = |latency| Link {
                    kind: LinkKind::NicLeaf,
                    capacity: fabric_bw,
                    latency,
                };
                both(&mut g, nic, leaf, l(hop), l(Time::ZERO));
            }
            // Each leaf's up-links go round-robin over the spines; parallel cables merge into
            // one edge.
            for &leaf in &leaf_v {
                let mut cables = vec![0u32; spine_v.len()];
                for u in 0..up {
                    if !cables.is_empty() {
                        let i = u as usize % cables.len();
                        cables[i] += 1;
                    }
                }
                for (s, &n) in spine_v.iter().zip(&cables) {
                    if n > 0 {
                        let l = cable(LinkKind::LeafSpine, n);
                        both(&mut g, leaf, *s, l, l);
                    }
                }
            }
            // Spine `i` up to core group `i`.
            for (s, &c) in spine_v.iter().zip(&core_v) {
                let l = cable(LinkKind::SpineCore, spine_up);
                both(&mut g, *s, c, l, l);
            }
        }
    }

    let cluster = Cluster {
        name: spec.name.clone(),
        gpu_name: gpu_name.to_string(),
        gpu: gpu.clone(),
        nodes: spec.nodes,
        gpus_per_node: spec.gpus_per_node,
        nics_per_node: nics,
        planes: f.planes,
        scale_up,
        scale_up_latency: spec.scale_up.latency,
        in_switch_reduction: spec.scale_up.in_switch_reduction,
        in_network_reduction: f.in_network_reduction,
        nic: nic_bw,
        leaves_per_plane: leaves * pods,
        spines_per_plane: spines * pods,
        pods,
        cores_per_plane: cores,
        adaptive_routing: f.routing == crate::config::topology::Routing::Adaptive,
        ecmp_flows: f.ecmp_flows,
        graph: g,
        gpu_vertices,
    };
    check_reachable(&cluster, file)?;
    Ok(cluster)
}

/// A test cluster: `nodes` nodes of `gpn` GPUs of `gpu` (the catalog's NIC speed) with `nics`
/// NICs each, NVSwitch inside (3 us), PCIe at 64 GB/s (1 us), and `fabric`, the flow mapping of
/// `scale_out.fabric` (e.g. `{ kind: fat_tree, layers: 2, planes: 8, switch_radix: 4,
/// hop_latency: "0.5 us" }`).
#[cfg(test)]
pub fn fixture(gpu: &str, nodes: u32, gpn: u32, nics: u32, fabric: &str) -> Cluster {
    let text = format!(
        "name: t\ngpu: {gpu}\nnodes: {nodes}\ngpus_per_node: {gpn}\n\
         scale_up: {{ kind: nvswitch, latency: \"3 us\" }}\n\
         pcie: {{ bandwidth: \"64 GB/s per direction\", latency: \"1 us\" }}\n\
         scale_out:\n  nics_per_node: {nics}\n  fabric: {fabric}\n"
    );
    let src = crate::config::Source::embedded("t.yaml", &text);
    let spec = crate::config::parse_doc(&src, &[]).unwrap();
    build(&spec, &crate::builtin::catalog(), "t.yaml").unwrap()
}

/// Every GPU reaches every other. The builder adds every link with its reverse, so a strongly
/// connected cluster is a connected one: union-find over the links, in their order.
fn check_reachable(c: &Cluster, file: &str) -> Result<(), Diagnostic> {
    fn root(parent: &mut [u32], mut v: u32) -> u32 {
        while parent[v as usize] != v {
            let up = parent[parent[v as usize] as usize];
            parent[v as usize] = up;
            v = up;
        }
        v
    }
    let mut parent: Vec<u32> = (0..c.graph.node_count() as u32).collect();
    for e in c.graph.raw_edges() {
        let (a, b) = (
            root(&mut parent, e.source().index() as u32),
            root(&mut parent, e.target().index() as u32),
        );
        parent[a.max(b) as usize] = a.min(b);
    }
    let first = root(&mut parent, c.gpu_vertices[0].index() as u32);
    if let Some(bad) = c
        .gpu_vertices
        .iter()
        .position(|v| root(&mut parent, v.index() as u32) != first)
    {
        return Err(Diagnostic::new(
            file,
            format!("GPU {bad} cannot reach GPU 0"),
            "a topology in which every GPU pair is connected",
        )
        .at("scale_out"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_doc, Source};

    fn spec(extra: &str) -> TopologySpec {
        let text = format!(
            r#"
name: t
gpu: H800
nodes: 4
gpus_per_node: 8
scale_up: {{ kind: nvswitch, latency: "3.3 us" }}
pcie: {{ bandwidth: "64 GB/s per direction", latency: "1 us" }}
scale_out:
  nics_per_node: 8
  fabric: {{ kind: fat_tree, layers: 2, planes: {extra}, switch_radix: 4, hop_latency: "0.5 us" }}
"#
        );
        parse_doc(&Source::embedded("t.yaml", &text), &[]).unwrap()
    }

    /// Without their PCIe links the nodes are islands: the check names the first GPU cut off
    /// from GPU 0; with them every GPU is reached.
    #[test]
    fn a_cluster_cut_into_islands_is_not_connected() {
        let mut c = build(&spec("8"), &crate::builtin::catalog(), "t.yaml").unwrap();
        assert!(check_reachable(&c, "t.yaml").is_ok());
        c.graph.retain_edges(|g, e| g[e].kind != LinkKind::Pcie);
        let e = check_reachable(&c, "t.yaml").unwrap_err();
        assert_eq!(e.found, "GPU 8 cannot reach GPU 0", "{e}");
    }

    #[test]
    fn multi_plane_counts_and_reachability() {
        let cat = crate::builtin::catalog();
        let c = build(&spec("8"), &cat, "t.yaml").unwrap();
        // 4 NICs per plane, radix 4 (2 down, 2 up): 2 leaves and 1 spine per plane.
        assert_eq!((c.leaves_per_plane, c.spines_per_plane), (2, 1));
        assert_eq!(c.fabric_switches(), 24);
        assert_eq!(c.gpus(), 32);
        // Per node: 8 GPUs + 1 switch + 8 NICs; per plane 3 switches.
        assert_eq!(c.graph.node_count(), 4 * 17 + 24);
    }

    #[test]
    fn a_nic_reaches_only_its_own_plane() {
        let cat = crate::builtin::catalog();
        let c = build(&spec("8"), &cat, "t.yaml").unwrap();
        for e in c.graph.edge_indices() {
            let (a, b) = c.graph.edge_endpoints(e).unwrap();
            if let (Vertex::Nic { plane, .. }, Vertex::Leaf { plane: p2, .. }) =
                (c.graph[a], c.graph[b])
            {
                assert_eq!(plane, p2);
            }
        }
    }

    #[test]
    fn radix_too_small_is_a_diagnostic() {
        let cat = crate::builtin::catalog();
        let mut s = spec("1");
        s.nodes = 16; // 128 NICs on one plane with radix 4 → needs 64 leaves
        let e = build(&s, &cat, "t.yaml").unwrap_err();
        assert_eq!(e.path.as_deref(), Some("scale_out.fabric.switch_radix"));
    }

    /// Meta's 24K cluster as published: 8 pods of 384 nodes, a leaf per rack of 16 NICs with
    /// twice that up, 16 spines per pod, 16 core groups; the tier above the pod carries 1/7 of
    /// the spines' leaf-facing bandwidth.
    #[test]
    fn meta_24k_is_eight_pods_under_a_tapered_core() {
        let text = include_str!("../../topologies/h100-24k-meta.yaml");
        let spec = parse_doc(&Source::embedded("m.yaml", text), &[]).unwrap();
        let c = build(&spec, &crate::builtin::catalog(), "m.yaml").unwrap();
        assert_eq!(c.gpus(), 24_576);
        assert_eq!((c.pods, c.pod_nodes()), (8, 384));
        assert_eq!(
            (c.leaves_per_plane, c.spines_per_plane, c.cores_per_plane),
            (1536, 128, 16)
        );
        let bw = |k: LinkKind| -> f64 {
            c.graph
                .edge_indices()
                .filter(|&e| {
                    let (a, _) = c.graph.edge_endpoints(e).unwrap();
                    c.graph[e].kind == k
                        && matches!(c.graph[a], Vertex::Leaf { .. } | Vertex::Spine { .. })
                        && !(k == LinkKind::LeafSpine && matches!(c.graph[a], Vertex::Spine { .. }))
                })
                .map(|e| c.graph[e].capacity.bytes_per_s)
                .sum()
        };
        let nics = 24_576.0 * 50e9;
        assert!(
            (bw(LinkKind::LeafSpine) / nics - 2.0).abs() < 1e-9,
            "leaves up: twice the NICs"
        );
        let core = bw(LinkKind::SpineCore) / bw(LinkKind::LeafSpine);
        assert!((core - 55.0 / 384.0).abs() < 1e-9, "{core}");
    }

    #[test]
    fn three_layer_fabrics_need_pods_that_divide_the_nodes() {
        let cat = crate::builtin::catalog();
        let mut s = spec("1");
        s.scale_out.fabric.layers = 3;
        let e = build(&s, &cat, "t.yaml").unwrap_err();
        assert_eq!(e.path.as_deref(), Some("scale_out.fabric.pod_nodes"));
        s.scale_out.fabric.pod_nodes = Some(3);
        let e = build(&s, &cat, "t.yaml").unwrap_err();
        assert_eq!(e.found, "3 nodes per pod for 4 nodes");
        s.scale_out.fabric.pod_nodes = Some(2);
        s.scale_out.fabric.switch_radix = 16;
        let c = build(&s, &cat, "t.yaml").unwrap();
        // 16 NICs per pod on leaves of 8 down, 8 up; spines of 8 leaf ports and 8 core ports.
        assert_eq!((c.pods, c.leaves_per_plane, c.cores_per_plane), (2, 4, 2));
    }
}
