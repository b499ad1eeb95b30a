//! The planning document (`trainsim plan --plan FILE`): which clusters to consider, what each
//! costs, the constraints and the objective, and what the layout search may vary.

use crate::domain::{Recompute, Schedule};
use crate::units::{Duration, Money, Power};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSpec {
    #[serde(default)]
    pub name: Option<String>,
    /// The workload to plan, relative to this file (its model, phases and token budget).
    #[serde(default)]
    pub workload: Option<String>,
    pub candidates: Vec<CandidateSpec>,
    #[serde(default)]
    pub constraints: ConstraintsSpec,
    #[serde(default)]
    pub objective: Objective,
    #[serde(default)]
    pub search: SearchSpec,
}

/// Clusters to consider: a topology file as it is, or a chip at several GPU counts (a template
/// topology scaled to each count, node by node).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CandidateSpec {
    /// A topology file, relative to the plan file.
    #[serde(default)]
    pub topology: Option<String>,
    /// A chip from the catalog (`topologies/gpus.yaml`).
    #[serde(default)]
    pub chip: Option<String>,
    /// GPU counts for `chip`: `"512..8192"` (doubling), `"512..4096 x2"`, a list, or one number.
    #[serde(default)]
    pub gpus: Option<GpuCounts>,
    /// The topology whose nodes, fabric and links a `chip` candidate scales (default: the
    /// shipped cluster of the chip's family: `h100-16384` for H100/H200, `a100-64`, `gb200-nvl72`,
    /// else `h800-2048`); its chip is replaced and its link speeds, unless the chip is the
    /// template's own, fall back to the catalog's figures for the new chip.
    #[serde(default)]
    pub template: Option<String>,
    /// What a GPU-hour costs here (default: the workload's price).
    #[serde(default)]
    pub price: Option<PriceSpec>,
}

/// `"512..8192"`, `"512..8192 x2"`, `[512, 1024]` or `2048`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuCounts(pub Vec<u64>);

impl<'de> Deserialize<'de> for GpuCounts {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            L(Vec<u64>),
            S(String),
        }
        let bad = || {
            serde::de::Error::custom(
                "found something else, expected a GPU count, a list of counts, or a range \"512..8192\" (doubling) / \"512..8192 x4\"",
            )
        };
        match Raw::deserialize(d).map_err(|_| bad())? {
            Raw::N(n) => GpuCounts::new(vec![n]).map_err(serde::de::Error::custom),
            Raw::L(v) => GpuCounts::new(v).map_err(serde::de::Error::custom),
            Raw::S(s) => GpuCounts::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

impl GpuCounts {
    fn new(v: Vec<u64>) -> Result<GpuCounts, String> {
        if v.is_empty() || v.contains(&0) {
            return Err(format!(
                "found {v:?}, expected at least one positive GPU count"
            ));
        }
        Ok(GpuCounts(v))
    }

    /// `A..B` (A, 2A, 4A, … up to B), `A..B xF` (factor F), `A,B,C`, or `N`.
    pub fn parse(s: &str) -> Result<GpuCounts, String> {
        let bad = || {
            format!("found \"{s}\", expected a GPU count, \"A,B,C\", or a range \"512..8192\" (doubling) / \"512..8192 x4\"")
        };
        let t = s.trim();
        if let Some((a, rest)) = t.split_once("..") {
            let (b, f) = match rest.split_once(['x', '×']) {
                Some((b, f)) => (b.trim(), f.trim().parse::<u64>().map_err(|_| bad())?),
                None => (rest.trim(), 2),
            };
            let (a, b): (u64, u64) = (
                a.trim().parse().map_err(|_| bad())?,
                b.parse().map_err(|_| bad())?,
            );
            if a == 0 || b < a || f < 2 {
                return Err(format!(
                    "found \"{s}\", expected 0 < A ≤ B and a factor of at least 2"
                ));
            }
            let mut v = vec![a];
            while let Some(n) = v.last().and_then(|l| l.checked_mul(f)).filter(|n| *n <= b) {
                v.push(n);
            }
            return Ok(GpuCounts(v));
        }
        let v = t
            .split(',')
            .map(|x| x.trim().parse::<u64>().map_err(|_| bad()))
            .collect::<Result<Vec<_>, _>>()?;
        GpuCounts::new(v)
    }
}

/// A GPU-hour's price: a rental rate, or ownership (capital spread over its years of use, plus
/// the electricity the facility draws).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum PriceSpec {
    Rate(Money),
    Owned(OwnedSpec),
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OwnedSpec {
    /// Purchase price per GPU, with its share of servers, network and facility.
    pub capex_per_gpu: Money,
    /// Years over which the purchase is written off (straight line, used around the clock).
    pub amortization_years: f64,
    /// Average draw per GPU, all-in (the chip's TDP if absent).
    #[serde(default)]
    pub power_per_gpu: Option<Power>,
    /// Facility power over IT power.
    #[serde(default = "pue")]
    pub pue: f64,
    pub electricity_per_kwh: Money,
}

fn pue() -> f64 {
    1.0
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConstraintsSpec {
    #[serde(default)]
    pub max_gpus: Option<u64>,
    /// Wall-clock limit for the whole run (every simulated and reported phase).
    #[serde(default)]
    pub deadline: Option<Duration>,
    /// Dollar limit for the whole run (GPU-hours and, when owned, electricity).
    #[serde(default)]
    pub budget: Option<Money>,
}

/// What "best" means.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// The fewest dollars that meet the constraints.
    #[default]
    Cheapest,
    /// The fewest days that meet the constraints.
    Fastest,
    /// The front of days against dollars; the pick is the cheapest point on it that meets the
    /// constraints.
    Pareto,
}

impl Objective {
    pub fn name(self) -> &'static str {
        match self {
            Objective::Cheapest => "cheapest",
            Objective::Fastest => "fastest",
            Objective::Pareto => "pareto",
        }
    }
}

/// What the layout search may vary. An absent key searches every value the layout validator
/// accepts (within the bounds given on each key).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SearchSpec {
    /// Global batches (sequences) to consider for the main phase (default: the workload's).
    #[serde(default)]
    pub global_batch: Vec<u64>,
    #[serde(default)]
    pub schedules: Vec<Schedule>,
    #[serde(default)]
    pub recompute: Vec<Recompute>,
    #[serde(default)]
    pub zero: Vec<u8>,
    /// Sequences per micro-batch (default 1, 2, 4, 8).
    #[serde(default)]
    pub micro_batch: Vec<u64>,
    /// SMs reserved for communication in MoE models (default 8, 16, 20, 24, 32 and the
    /// workload's own); dense models keep the workload's.
    #[serde(default)]
    pub comm_sms: Vec<u32>,
    /// Virtual stages per rank for the interleaved schedule (default 2, 3, 4, 6, 8).
    #[serde(default)]
    pub vpp: Vec<u64>,
    /// Largest tensor-parallel degree (default: a node).
    #[serde(default)]
    pub max_tp: Option<u64>,
    /// Largest context-parallel degree (default 64).
    #[serde(default)]
    pub max_cp: Option<u64>,
    /// Layouts re-ranked by the discrete-event engine per round (0: no DES; the analytic
    /// engine's figures decide).
    #[serde(default = "top_k")]
    pub top_k: usize,
    /// Rows of the ranked table.
    #[serde(default = "top")]
    pub top: usize,
}

fn top_k() -> usize {
    16
}
fn top() -> usize {
    10
}

impl Default for SearchSpec {
    fn default() -> Self {
        SearchSpec {
            global_batch: Vec::new(),
            schedules: Vec::new(),
            recompute: Vec::new(),
            zero: Vec::new(),
            micro_batch: Vec::new(),
            comm_sms: Vec::new(),
            vpp: Vec::new(),
            max_tp: None,
            max_cp: None,
            top_k: top_k(),
            top: top(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_ranges_double_or_step_by_their_factor() {
        assert_eq!(
            GpuCounts::parse("512..4096").unwrap().0,
            [512, 1024, 2048, 4096]
        );
        assert_eq!(GpuCounts::parse("64..1100 x4").unwrap().0, [64, 256, 1024]);
        assert_eq!(GpuCounts::parse("8, 16,24").unwrap().0, [8, 16, 24]);
        assert!(GpuCounts::parse("4096..512").is_err());
        assert!(GpuCounts::parse("0").is_err());
        assert!(GpuCounts::parse("512..4096 x1").is_err());
    }
}
