//! The export scenario document (`trainsim export FILE`): a target run, the chips to price it
//! on, the caps to impose on the reference chip, and what the re-planning search may vary.

use crate::config::plan::{PriceSpec, SearchSpec};
use crate::units::{Bandwidth, LinkBandwidth};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExportSpec {
    #[serde(default)]
    pub name: Option<String>,
    /// The target run, relative to this file (default: DeepSeek-V3's pre-training).
    #[serde(default)]
    pub workload: Option<String>,
    /// Phases of the workload to price, by name (default: its main phase alone, the
    /// pre-training tokens; reported phases cannot move with a chip and are never priced).
    #[serde(default)]
    pub phases: Vec<String>,
    /// The topology every chip sits in, scaled to `gpus` node by node, each chip with its own
    /// scale-up and NIC figures (default: DeepSeek's 2,048-GPU MPFT fabric).
    #[serde(default)]
    pub template: Option<String>,
    /// GPUs of every priced cluster (default: the template's).
    #[serde(default)]
    pub gpus: Option<u64>,
    /// The unrestricted chip every multiple is taken against, and that the caps are imposed on.
    #[serde(default = "reference")]
    pub reference: ChipEntry,
    /// The chips to price beside it, each on its own interconnect.
    #[serde(default)]
    pub chips: Vec<ChipEntry>,
    /// What a GPU-hour costs where a chip names no price (default: the workload's).
    #[serde(default)]
    pub price: Option<PriceSpec>,
    #[serde(default)]
    pub caps: CapGrid,
    /// Pairs (or more) of cap axes to cross: every combination of their values.
    #[serde(default)]
    pub cross: Vec<Vec<CapAxis>>,
    /// Re-plan the layout at every point (default true); false prices the fixed layout alone.
    #[serde(default = "yes")]
    pub replan: bool,
    /// Find the GPUs that finish in the reference's days at every point (default true).
    #[serde(default = "yes")]
    pub same_days: bool,
    /// What the re-planning search may vary (defaults: the export's bounded space).
    #[serde(default)]
    pub search: Option<SearchSpec>,
}

fn reference() -> ChipEntry {
    ChipEntry::Name("H100".into())
}
fn yes() -> bool {
    true
}

/// A chip of the catalog, with an optional price of its own.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ChipEntry {
    Name(String),
    Priced {
        chip: String,
        #[serde(default)]
        price: Option<PriceSpec>,
    },
}

impl ChipEntry {
    pub fn chip(&self) -> &str {
        match self {
            ChipEntry::Name(n) => n,
            ChipEntry::Priced { chip, .. } => chip,
        }
    }
    pub fn price(&self) -> Option<&PriceSpec> {
        match self {
            ChipEntry::Name(_) => None,
            ChipEntry::Priced { price, .. } => price.as_ref(),
        }
    }
}

/// The values each cap takes, one axis at a time (a cap above the reference's own figure is
/// the reference itself).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CapGrid {
    /// Scale-up (NVLink) bandwidth per GPU, with its direction: "400 GB/s bidirectional".
    #[serde(default)]
    pub scale_up: Vec<LinkBandwidth>,
    /// Scale-out bandwidth per GPU (its NICs together), with its direction:
    /// "100 Gb/s per direction".
    #[serde(default)]
    pub scale_out: Vec<LinkBandwidth>,
    /// Total processing performance (2 × MacTOPS × bit length, dense).
    #[serde(default)]
    pub tpp: Vec<f64>,
    /// DRAM (HBM) bandwidth: "2 TB/s".
    #[serde(default)]
    pub hbm: Vec<Bandwidth>,
}

/// One capped resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CapAxis {
    ScaleUp,
    ScaleOut,
    Tpp,
    Hbm,
}

impl CapAxis {
    pub const ALL: [CapAxis; 4] = [
        CapAxis::ScaleUp,
        CapAxis::ScaleOut,
        CapAxis::Tpp,
        CapAxis::Hbm,
    ];

    pub fn key(self) -> &'static str {
        match self {
            CapAxis::ScaleUp => "scale_up",
            CapAxis::ScaleOut => "scale_out",
            CapAxis::Tpp => "tpp",
            CapAxis::Hbm => "hbm",
        }
    }
}
