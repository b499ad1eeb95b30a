//! The GPU catalog: published specifications with their sources.
//!
//! The shipped catalog is `topologies/gpus.yaml`, parsed by `builtin::catalog`; each figure
//! carries `source` and `secondary` (true where only a secondary source, or arithmetic, backs it).

use crate::domain::Dtype;
use crate::units::{Area, Bandwidth, ByteSize, FlopRate, Frequency, LinkBandwidth, Power};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Sourced<T> {
    pub value: T,
    pub source: String,
    pub secondary: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    Ampere,
    Hopper,
    Blackwell,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Peaks {
    #[serde(default)]
    pub fp8: Option<Sourced<FlopRate>>,
    pub bf16: Sourced<FlopRate>,
    pub tf32: Sourced<FlopRate>,
}

/// One accelerator.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GpuSpec {
    #[serde(default)]
    pub aliases: Vec<String>,
    pub description: String,
    pub architecture: Architecture,
    pub sms: Sourced<u32>,
    pub clock: Sourced<Frequency>,
    pub peak: Peaks,
    pub hbm_capacity: Sourced<ByteSize>,
    pub hbm_bandwidth: Sourced<Bandwidth>,
    pub scale_up: Sourced<LinkBandwidth>,
    pub nic: Sourced<LinkBandwidth>,
    pub tdp: Sourced<Power>,
    /// Area of the logic dies (HBM stacks excluded), for export rules' performance density.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub die_area: Option<Sourced<Area>>,
    /// Aggregate chip I/O to other ICs (scale-up links and host interface), for the 2022
    /// export criterion; absent: the scale-up bandwidth alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_bandwidth: Option<Sourced<LinkBandwidth>>,
}

impl GpuSpec {
    /// Dense tensor peak for a data type; `None` where the chip has no such tensor path (FP8 on
    /// Ampere). FP16 runs at the BF16 rate; FP32 GEMMs run as TF32.
    pub fn peak(&self, dtype: Dtype) -> Option<FlopRate> {
        match dtype {
            Dtype::Fp8 => self.peak.fp8.as_ref().map(|s| s.value),
            Dtype::Bf16 | Dtype::Fp16 => Some(self.peak.bf16.value),
            Dtype::Tf32 | Dtype::Fp32 => Some(self.peak.tf32.value),
        }
    }
    /// Dense tensor FLOPs per SM per clock cycle, derived from the quoted peak.
    pub fn flops_per_sm_cycle(&self, dtype: Dtype) -> Option<f64> {
        self.peak(dtype)
            .map(|p| p.flops / (self.sms.value as f64 * self.clock.value.hz))
    }
}

/// All chips, by canonical name.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub gpus: BTreeMap<String, GpuSpec>,
}

impl Catalog {
    /// Finds a chip by canonical name or alias, ignoring case.
    pub fn get(&self, name: &str) -> Option<(&str, &GpuSpec)> {
        let n = name.trim().to_ascii_lowercase();
        self.gpus
            .iter()
            .find(|(k, g)| {
                k.to_ascii_lowercase() == n || g.aliases.iter().any(|a| a.to_ascii_lowercase() == n)
            })
            .map(|(k, g)| (k.as_str(), g))
    }

    pub fn names(&self) -> Vec<&str> {
        self.gpus.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalog_has_the_required_chips() {
        let c = crate::builtin::catalog();
        for chip in [
            "H800", "H100", "H20", "H200", "A100", "A800", "B200", "GB200",
        ] {
            let found = c.gpus.keys().any(|k| k.starts_with(chip)) || c.get(chip).is_some();
            assert!(found, "{chip} missing from catalog");
        }
        assert!(c.get("h800").is_some(), "aliases are case-insensitive");
    }

    #[test]
    fn h800_matches_h100_except_nvlink() {
        let c = crate::builtin::catalog();
        let (_, h800) = c.get("H800").unwrap();
        let (_, h100) = c.get("H100").unwrap();
        assert!((h800.peak.bf16.value.flops - h100.peak.bf16.value.flops).abs() / 1e12 < 1.0);
        assert_eq!(h800.scale_up.value.per_direction().bytes_per_s, 200e9);
        assert_eq!(h100.scale_up.value.per_direction().bytes_per_s, 450e9);
        // 989.4 TFLOPS / (132 SMs × 1.83 GHz) = 4096 dense BF16 FLOP per SM per cycle.
        let per = h100.flops_per_sm_cycle(Dtype::Bf16).unwrap();
        assert!((per - 4096.0).abs() < 5.0, "{per}");
    }

    #[test]
    fn ampere_has_no_fp8() {
        let c = crate::builtin::catalog();
        assert!(c.get("A100").unwrap().1.peak(Dtype::Fp8).is_none());
        assert!(c.get("B200").unwrap().1.peak(Dtype::Fp8).is_some());
    }

    #[test]
    fn every_figure_cites_a_source() {
        let c = crate::builtin::catalog();
        for (name, g) in &c.gpus {
            let sources = [
                &g.sms.source,
                &g.clock.source,
                &g.peak.bf16.source,
                &g.peak.tf32.source,
                &g.hbm_capacity.source,
                &g.hbm_bandwidth.source,
                &g.scale_up.source,
                &g.nic.source,
                &g.tdp.source,
            ];
            for s in sources {
                assert!(s.len() > 5, "{name}: empty source");
            }
        }
    }
}
