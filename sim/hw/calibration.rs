//! The calibration file: every efficiency constant of the models, each with its source.
//!
//! The shipped file is `topologies/calibration.yaml`, parsed by `builtin::calibration`. Code elsewhere must not carry tuning constants;
//! it takes them from here.

use crate::units::{Bandwidth, ByteSize, Time};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Constant<T> {
    pub value: T,
    pub source: String,
    /// Plausible values the source does not rule out. `trainsim run` prices each one to widen
    /// its estimate's band; the central estimate uses `value`.
    #[serde(default = "Vec::new", skip_serializing_if = "Vec::is_empty")]
    pub alternatives: Vec<T>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    pub gemm: GemmCal,
    pub attention: AttentionCal,
    pub memory: MemoryCal,
    pub streams: StreamCal,
    pub network: NetworkCal,
    /// Each kernel class's worst calibration error: how far the calibrated models miss their
    /// own calibration points, which widens every estimate's band.
    pub residuals: ResidualCal,
}

/// Worst calibration-point error (a fraction) by kernel class, as `trainsim validate` measures
/// it on the calibration points.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResidualCal {
    /// GEMMs (DeepGEMM trace kernels, cuBLASLt).
    pub gemm: Constant<f64>,
    /// Fused attention on Hopper and Ampere (FlashAttention-3 trace kernels, FlashAttention-2).
    pub attention: Constant<f64>,
    /// Fused attention on Blackwell (cuDNN SDPA, FlashAttention-2).
    pub attention_blackwell: Constant<f64>,
    /// NCCL collectives and DeepEP dispatch and combine.
    pub network: Constant<f64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GemmCal {
    pub tile_m: Constant<u64>,
    pub tile_n: Constant<u64>,
    pub tile_k: Constant<u64>,
    pub mma_efficiency_fp8: Constant<f64>,
    pub mma_efficiency_cublaslt_ampere: Constant<f64>,
    pub mma_efficiency_cublaslt_hopper: Constant<f64>,
    pub mma_efficiency_cublaslt_blackwell: Constant<f64>,
    pub mma_efficiency_wgrad_fp8: Constant<f64>,
    pub tile_overhead_cycles: Constant<f64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AttentionCal {
    pub block: Constant<u64>,
    pub fwd_efficiency: Constant<f64>,
    pub bwd_efficiency: Constant<f64>,
    /// Blackwell's fused attention (cuDNN, FlashAttention-4; FA3 does not run there): its own
    /// block efficiencies and per-query-tile cost in cycles.
    pub blackwell_fwd_efficiency: Constant<f64>,
    pub blackwell_bwd_efficiency: Constant<f64>,
    pub blackwell_fwd_tile_cycles: Constant<f64>,
    pub blackwell_bwd_tile_cycles: Constant<f64>,
    /// FlashAttention-2's throughput relative to the chip's fused-attention block model, by
    /// architecture.
    pub flash2_rate_hopper: Constant<f64>,
    pub flash2_rate_ampere: Constant<f64>,
    pub flash2_rate_blackwell: Constant<f64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryCal {
    /// STREAM-class HBM bandwidth over the spec: GEMM epilogues, the optimizer step, and every
    /// memory-bound kernel at its real bytes.
    pub hbm_efficiency: Constant<f64>,
    /// The same, measured on Ampere.
    pub hbm_efficiency_ampere: Constant<f64>,
    /// How elementwise and other memory-bound kernels are priced.
    pub elementwise: Constant<ElementwisePricing>,
    /// Bytes an elementwise or norm kernel's backward moves, as a multiple of its forward's.
    pub elementwise_backward_ratio: Constant<f64>,
    /// The achieved share of spec bandwidth the trace's memory-bound kernels imply
    /// (`elementwise: trace`).
    pub elementwise_efficiency: Constant<f64>,
    pub min_kernel_time: Constant<Time>,
}

/// How memory-bound kernels are priced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ElementwisePricing {
    /// At the share of spec bandwidth that makes the model's memory kernels of one DeepSeek-V3
    /// layer pair take as long as the trace's (a residual over unlike kernel sets).
    Trace,
    /// At STREAM bandwidth and each kernel's real bytes.
    Stream,
}

/// How the idle time between a stream's kernels is priced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GapModel {
    /// As the share of the stream's span the DeepSeek-V3 trace shows idle.
    IdleFraction,
    /// As one launch gap per kernel, from a launch microbenchmark.
    LaunchGap,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StreamCal {
    /// How the idle time between a stream's kernels is priced.
    pub gaps: Constant<GapModel>,
    /// Share of a compute stream's span spent idle between kernels (`gaps: idle_fraction`): a
    /// kernel of duration t holds its stream for t / (1 - f).
    pub compute_idle_fraction: Constant<f64>,
    /// The gap a stream sits idle between two back-to-back kernels launched eagerly (launch and
    /// dispatch; `gaps: launch_gap`): every kernel holds its stream this much longer than it
    /// runs.
    pub launch_gap: Constant<Time>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkCal {
    pub nvlink_efficiency: Constant<f64>,
    pub ib_efficiency: Constant<f64>,
    pub moe_dispatch_rdma_efficiency: Constant<f64>,
    pub moe_combine_rdma_efficiency: Constant<f64>,
    pub moe_dispatch_nvlink_efficiency: Constant<f64>,
    pub moe_combine_nvlink_efficiency: Constant<f64>,
    /// SMs at which DeepEP-style dispatch and combine saturate the links; with fewer reserved
    /// SMs they move bytes at that share of the calibrated rate.
    pub moe_saturation_sms: Constant<u32>,
    pub nccl_ring_efficiency_hopper: Constant<f64>,
    pub nccl_ring_efficiency_ampere: Constant<f64>,
    pub nvls_efficiency: Constant<f64>,
    pub collective_latency: Constant<Time>,
    /// Bandwidth one NCCL channel (one CTA, one SM) carries: NCCL launches as many channels as
    /// its topology's bandwidth needs, up to [`NetworkCal::nccl_max_channels`].
    pub nccl_sm_bandwidth: Constant<Bandwidth>,
    pub nccl_max_channels: Constant<u32>,
    /// The all-gather size at which a data-parallel group's NCCL channel count is read (the
    /// SMs the group's collectives take from compute).
    pub nccl_dp_reference_size: Constant<ByteSize>,
    /// SMs a GEMM gives up while Transformer Engine's userbuffers run a tensor-parallel
    /// collective beside it.
    pub userbuffers_sms: Constant<u32>,
    /// NCCL's protocols and the latencies of its tuning model.
    pub nccl: NcclCal,
}

/// NCCL's wire protocols (LL, LL128, Simple) and the latency tables of its tuning model, by
/// algorithm: once per collective, and per step inside a node (NVLink) or between nodes.
/// Tables list [LL, LL128, Simple].
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NcclCal {
    /// Share of Simple's bandwidth that LL (4 data bytes and a 4-byte flag per 8-byte store)
    /// and LL128 (120 data bytes per 128-byte line) carry.
    pub ll_bandwidth: Constant<f64>,
    pub ll128_bandwidth: Constant<f64>,
    pub ring_base_latency: Constant<[Time; 3]>,
    pub tree_base_latency: Constant<[Time; 3]>,
    pub ring_step_latency_nvlink: Constant<[Time; 3]>,
    pub ring_step_latency_net: Constant<[Time; 3]>,
    pub tree_step_latency_nvlink: Constant<[Time; 3]>,
    pub tree_step_latency_net: Constant<[Time; 3]>,
    /// NVLS (in-switch reduction; Simple only): latency of one collective.
    pub nvls_latency: Constant<Time>,
    /// Pipeline fill: a collective of S bytes runs its bandwidth term S/B as
    /// S/B · (1 + W/(S + W)). Below the window W its chunks cross the pipeline's stages
    /// without overlap (twice S/B); far above it the fill is amortised. W for NVLS, and for
    /// the copy-based algorithms (ring, tree, send/recv, all-to-all).
    pub nvls_window: Constant<ByteSize>,
    pub ring_window: Constant<ByteSize>,
}

impl NetworkCal {
    /// The share of the calibrated dispatch/combine rate that `sms` reserved SMs reach (1 at or
    /// above saturation, and for 0: kernels that are not given SMs of their own).
    pub fn moe_sm_share(&self, sms: u32) -> f64 {
        let s = self.moe_saturation_sms.value.max(1);
        if sms == 0 || sms >= s {
            1.0
        } else {
            f64::from(sms) / f64::from(s)
        }
    }

    /// (RDMA, NVLink) link efficiency of DeepEP-style MoE dispatch or combine.
    pub fn moe_efficiency(&self, dispatch: bool) -> (f64, f64) {
        if dispatch {
            (
                self.moe_dispatch_rdma_efficiency.value,
                self.moe_dispatch_nvlink_efficiency.value,
            )
        } else {
            (
                self.moe_combine_rdma_efficiency.value,
                self.moe_combine_nvlink_efficiency.value,
            )
        }
    }
}

impl GemmCal {
    /// Every GEMM main-loop efficiency, for what-ifs that move them together.
    fn efficiencies_mut(&mut self) -> [&mut Constant<f64>; 5] {
        [
            &mut self.mma_efficiency_fp8,
            &mut self.mma_efficiency_cublaslt_ampere,
            &mut self.mma_efficiency_cublaslt_hopper,
            &mut self.mma_efficiency_cublaslt_blackwell,
            &mut self.mma_efficiency_wgrad_fp8,
        ]
    }
}

impl MemoryCal {
    /// STREAM's share of the spec HBM bandwidth on `arch`.
    pub fn hbm_efficiency(&self, arch: crate::hw::catalog::Architecture) -> f64 {
        match arch {
            crate::hw::catalog::Architecture::Ampere => self.hbm_efficiency_ampere.value,
            _ => self.hbm_efficiency.value,
        }
    }
}

impl Calibration {
    /// Every kernel class's efficiencies moved by its calibration residual: `sign` +1 makes
    /// every class faster by its residual, −1 slower (efficiencies capped at 1). The band's
    /// corners.
    pub fn residual_scaled(&self, sign: f64) -> Calibration {
        let mut c = self.clone();
        let r = self.residuals.clone();
        let scale = |e: &mut Constant<f64>, r: &Constant<f64>| {
            e.value = (e.value * (1.0 + sign * r.value)).min(1.0);
        };
        for e in c.gemm.efficiencies_mut() {
            scale(e, &r.gemm);
        }
        let a = &mut c.attention;
        for e in [
            &mut a.fwd_efficiency,
            &mut a.bwd_efficiency,
            &mut a.flash2_rate_hopper,
            &mut a.flash2_rate_ampere,
        ] {
            scale(e, &r.attention);
        }
        for e in [
            &mut a.blackwell_fwd_efficiency,
            &mut a.blackwell_bwd_efficiency,
            &mut a.flash2_rate_blackwell,
        ] {
            scale(e, &r.attention_blackwell);
        }
        let n = &mut c.network;
        for e in [
            &mut n.nvlink_efficiency,
            &mut n.ib_efficiency,
            &mut n.moe_dispatch_rdma_efficiency,
            &mut n.moe_combine_rdma_efficiency,
            &mut n.moe_dispatch_nvlink_efficiency,
            &mut n.moe_combine_nvlink_efficiency,
            &mut n.nccl_ring_efficiency_hopper,
            &mut n.nccl_ring_efficiency_ampere,
            &mut n.nvls_efficiency,
        ] {
            scale(e, &r.network);
        }
        c
    }

    /// Every kernel efficiency (GEMM MMA, fused-attention blocks, which FlashAttention-2's rates
    /// are relative to, and HBM streaming) scaled by `factor`, each capped at 1: the "kernels
    /// ±10%" what-if of a plan's sensitivity table. Networks, overheads and tiles stay.
    pub fn kernels_scaled(&self, factor: f64) -> Calibration {
        let mut c = self.clone();
        let a = &mut c.attention;
        let m = &mut c.memory;
        for e in c.gemm.efficiencies_mut().into_iter().chain([
            &mut a.fwd_efficiency,
            &mut a.bwd_efficiency,
            &mut a.blackwell_fwd_efficiency,
            &mut a.blackwell_bwd_efficiency,
            &mut m.hbm_efficiency,
            &mut m.hbm_efficiency_ampere,
            &mut m.elementwise_efficiency,
        ]) {
            e.value = (e.value * factor).min(1.0);
        }
        c
    }
}

#[cfg(test)]
mod tests {

    /// NCCL's per-channel bandwidth: 16 SMs carry a DGX A100's 190 GB/s (nccl #689).
    #[test]
    fn nccl_sm_bandwidth_from_the_dgx_a100_channel_count() {
        let cal = crate::builtin::calibration();
        let per_sm = cal.network.nccl_sm_bandwidth.value.bytes_per_s;
        assert!((per_sm * 16.0 - 190e9).abs() < 1e6, "{per_sm}");
        // An H100 NVLink ring (~370 GB/s) needs all of NCCL's default 32 channels.
        assert_eq!(
            (370e9 / per_sm).ceil() as u32,
            cal.network.nccl_max_channels.value
        );
    }

    /// `streams.launch_gap` and its alternative are the eager and CUDA-graph launch costs of
    /// tests/reference/launch-overhead.md.
    #[test]
    fn launch_gap_from_the_launch_overhead_reference() {
        let text = include_str!("../../tests/reference/launch-overhead.md");
        let us = |path: &str| -> f64 {
            let row = text
                .lines()
                .find(|l| l.starts_with("| H100 |") && l.contains(path))
                .unwrap_or_else(|| panic!("no H100 {path} row"));
            let cell = row.split('|').nth(3).expect("a cost cell").trim();
            cell.trim_end_matches(" us").parse().expect("µs")
        };
        let cal = crate::builtin::calibration();
        let gap = &cal.streams.launch_gap;
        assert!((gap.value.as_secs_f64() * 1e6 - us("eager")).abs() < 1e-9);
        assert_eq!(gap.alternatives.len(), 1);
        assert!((gap.alternatives[0].as_secs_f64() * 1e6 - us("CUDA graph")).abs() < 1e-9);
    }
}
