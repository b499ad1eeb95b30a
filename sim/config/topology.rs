//! The topology document (`topologies/*.yaml`): the cluster as the user writes it.

use crate::units::{LinkBandwidth, Time};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TopologySpec {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// A chip name or alias from the hardware catalog (`topologies/gpus.yaml`), or of `chips`.
    pub gpu: String,
    /// Chips beside the catalog's, in its format (`NAME: { description, architecture, sms, … }`):
    /// a hypothetical chip `trainsim chips --derive` wrote, for example.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chips: Option<serde_yaml::Value>,
    pub nodes: u32,
    pub gpus_per_node: u32,
    pub scale_up: ScaleUpSpec,
    pub pcie: PcieSpec,
    pub scale_out: ScaleOutSpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScaleUpKind {
    /// Every GPU of a node has one port bundle into a non-blocking NVSwitch fabric.
    Nvswitch,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleUpSpec {
    pub kind: ScaleUpKind,
    /// Per-GPU NVLink bandwidth; defaults to the catalog's figure for the chip.
    #[serde(default)]
    pub bandwidth: Option<LinkBandwidth>,
    /// One-way latency GPU → switch → GPU.
    pub latency: Time,
    /// Whether the switch can reduce in-network (NVLink SHARP, "NVLS").
    #[serde(default)]
    pub in_switch_reduction: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PcieSpec {
    /// GPU ↔ NIC bandwidth.
    pub bandwidth: LinkBandwidth,
    pub latency: Time,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleOutSpec {
    pub nics_per_node: u32,
    /// Per-NIC bandwidth; defaults to the catalog's typical NIC for the chip.
    #[serde(default)]
    pub nic_bandwidth: Option<LinkBandwidth>,
    pub fabric: FabricSpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FabricKind {
    FatTree,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FabricSpec {
    pub kind: FabricKind,
    /// Switch layers: 2 (leaf + spine) or 3 (leaf + spine in pods, and a core above the pods).
    pub layers: u32,
    /// Three layers: nodes per pod (a divisor of `nodes`). Each pod is a two-level fat-tree;
    /// spine `i` of every pod connects to core group `i`.
    #[serde(default)]
    pub pod_nodes: Option<u32>,
    /// Ports per spine switch (defaults to `switch_radix`): a chassis spine reaches more leaves.
    #[serde(default)]
    pub spine_radix: Option<u32>,
    /// Three layers: a spine's leaf-facing links per core-facing link (1.0 is non-blocking).
    #[serde(default = "one")]
    pub pod_oversubscription: f64,
    /// How a flow between leaves picks its path: one path per flow by a hash (`ecmp`), or
    /// sprayed evenly over every spine (and core) path (`adaptive`).
    #[serde(default)]
    pub routing: Routing,
    /// ECMP: flows (queue pairs) a transfer is split into, each hashed onto its own path (Meta's
    /// enhanced ECMP uses 16 per GPU pair). 1: a transfer is one flow.
    #[serde(default = "one_flow")]
    pub ecmp_flows: u32,
    /// Independent planes: NIC `i` of every node sits on plane `i mod planes` and reaches
    /// nothing else (DeepSeek's multi-plane fat-tree has 8). 1 is a single fabric.
    pub planes: u32,
    /// Within a plane, put the same-index NIC of every node on the same leaves (rails) rather
    /// than a node's NICs on one leaf.
    #[serde(default)]
    pub rail_optimized: bool,
    /// Ports per switch.
    pub switch_radix: u32,
    /// Leaf down-links per up-link (1.0 is non-blocking, 0.5 has twice the up-links).
    #[serde(default = "one")]
    pub oversubscription: f64,
    /// Switch-to-switch and NIC-to-switch link bandwidth; defaults to the NIC bandwidth.
    #[serde(default)]
    pub link_bandwidth: Option<LinkBandwidth>,
    /// Latency added per switch hop.
    pub hop_latency: Time,
    /// Whether the switches reduce in the network (InfiniBand SHARP, NCCL's CollNet): an
    /// all-reduce's shards go up to the switches once and come back reduced.
    #[serde(default)]
    pub in_network_reduction: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Routing {
    #[default]
    Ecmp,
    Adaptive,
}

fn one_flow() -> u32 {
    1
}

fn one() -> f64 {
    1.0
}
