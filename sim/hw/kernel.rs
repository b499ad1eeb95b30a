//! The cycle-approximate kernel model (DESIGN §4).
//!
//! A kernel is a grid of tiles spread in waves over the SMs it may use. A GEMM tile costs a fixed
//! overhead, then one main-loop step per `tile_k` slice of K (tensor-core work at the calibrated
//! efficiency), then an epilogue that writes (or, for weight gradients, read-modify-writes) the
//! output tile at the SM's share of HBM bandwidth. Flash attention is tiles of 128 queries that
//! walk 128-key blocks (half of them under a causal mask). Everything else is memory-bound:
//! bytes over the calibrated HBM bandwidth. Constants come from [`Calibration`].

use super::calibration::Calibration;
use super::catalog::GpuSpec;
use crate::config::workload::Dtype;
use crate::units::Time;

/// What a kernel does, in enough detail to time it.
#[derive(Debug, Clone, PartialEq)]
pub enum KernelShape {
    /// `groups` independent GEMMs of `m × k` by `k × n` (grouped expert GEMMs have groups > 1).
    Gemm {
        m: u64,
        n: u64,
        k: u64,
        groups: u64,
        dtype: Dtype,
        /// Weight-gradient GEMM accumulating into an FP32 gradient (read-modify-write epilogue).
        wgrad: bool,
    },
    /// Flash attention over `batch × heads` sequences of `seq` tokens.
    Attention {
        backward: bool,
        batch: u64,
        heads: u64,
        seq_q: u64,
        seq_kv: u64,
        d_qk: u64,
        d_v: u64,
        causal: bool,
    },
    /// Memory-bound kernel moving `bytes` to and from HBM.
    Memory { bytes: f64 },
}

impl KernelShape {
    /// FLOPs the kernel executes (causal attention counts half the score matrix).
    pub fn flops(&self) -> f64 {
        match *self {
            KernelShape::Gemm {
                m, n, k, groups, ..
            } => 2.0 * (m * n * k * groups) as f64,
            KernelShape::Attention {
                backward,
                batch,
                heads,
                seq_q,
                seq_kv,
                d_qk,
                d_v,
                causal,
            } => {
                let pairs = if causal {
                    seq_q as f64 * (seq_kv as f64 + 1.0) / 2.0
                } else {
                    (seq_q * seq_kv) as f64
                };
                // Backward re-forms S = QKᵀ, then dP, dV, dQ, dK: three GEMMs over d_qk, two over d_v.
                let per_pair = if backward {
                    2.0 * (3 * d_qk + 2 * d_v) as f64
                } else {
                    2.0 * (d_qk + d_v) as f64
                };
                (batch * heads) as f64 * pairs * per_pair
            }
            KernelShape::Memory { .. } => 0.0,
        }
    }
}

/// Times kernels on one GPU type with one calibration.
#[derive(Debug, Clone, Copy)]
pub struct KernelModel<'a> {
    pub gpu: &'a GpuSpec,
    pub cal: &'a Calibration,
}

impl<'a> KernelModel<'a> {
    pub fn new(gpu: &'a GpuSpec, cal: &'a Calibration) -> Self {
        KernelModel { gpu, cal }
    }

    fn clock(&self) -> f64 {
        self.gpu.clock.value.hz
    }

    /// HBM bytes per cycle available to each of `sms` busy SMs.
    fn hbm_bytes_per_sm_cycle(&self, sms: u32) -> f64 {
        self.gpu.hbm_bandwidth.value.bytes_per_s * self.cal.memory.hbm_efficiency.value
            / sms as f64
            / self.clock()
    }

    /// Kernel duration on `sms` SMs. Panics if the chip lacks the data type's tensor path:
    /// workloads are validated against the chip before kernels are timed.
    pub fn time(&self, k: &KernelShape, sms: u32) -> Time {
        assert!(sms > 0, "a kernel needs at least one SM");
        let min = self.cal.memory.min_kernel_time.value.as_secs_f64();
        let s = match *k {
            KernelShape::Gemm {
                m,
                n,
                k,
                groups,
                dtype,
                wgrad,
            } => self.gemm_secs(m, n, k, groups, dtype, wgrad, sms),
            KernelShape::Attention { .. } => self.attention_secs(k, sms),
            KernelShape::Memory { bytes } => {
                bytes
                    / (self.gpu.hbm_bandwidth.value.bytes_per_s
                        * self.cal.memory.hbm_efficiency.value)
            }
        };
        Time::from_secs_f64(s.max(min))
    }

    #[allow(clippy::too_many_arguments)]
    fn gemm_secs(
        &self,
        m: u64,
        n: u64,
        k: u64,
        groups: u64,
        dtype: Dtype,
        wgrad: bool,
        sms: u32,
    ) -> f64 {
        let g = &self.cal.gemm;
        let (tm, tn, tk) = (g.tile_m.value, g.tile_n.value, g.tile_k.value);
        let per_sm = self.gpu.flops_per_sm_cycle(dtype).unwrap_or_else(|| {
            panic!(
                "chip has no {} tensor path (workload validation missed it)",
                dtype.name()
            )
        });
        let eff = match (dtype, wgrad) {
            (Dtype::Fp8, true) => g.mma_efficiency_wgrad_fp8.value,
            (Dtype::Fp8, false) => g.mma_efficiency_fp8.value,
            _ => g.mma_efficiency_bf16.value,
        };
        let tiles = groups * m.div_ceil(tm) * n.div_ceil(tn);
        let waves = tiles.div_ceil(sms as u64);
        let k_steps = k.div_ceil(tk) as f64;
        let mma = 2.0 * (tm * tn * tk) as f64 / (per_sm * eff);
        // Output tile: BF16 store, or FP32 read + write for accumulated weight gradients.
        let out_bytes = (tm * tn) as f64 * if wgrad { 8.0 } else { 2.0 };
        let epilogue = out_bytes / self.hbm_bytes_per_sm_cycle(sms.min(tiles as u32).max(1));
        let tile_cycles = g.tile_overhead_cycles.value + k_steps * mma + epilogue;
        waves as f64 * tile_cycles / self.clock()
    }

    fn attention_secs(&self, k: &KernelShape, sms: u32) -> f64 {
        let KernelShape::Attention {
            backward,
            batch,
            heads,
            seq_q,
            seq_kv,
            d_qk,
            d_v,
            causal,
        } = *k
        else {
            unreachable!()
        };
        let a = &self.cal.attention;
        let b = a.block.value;
        let per_sm = self
            .gpu
            .flops_per_sm_cycle(Dtype::Bf16)
            .expect("every chip has BF16");
        let (eff, gemms) = if backward {
            (a.bwd_efficiency.value, (3 * d_qk + 2 * d_v) as f64)
        } else {
            (a.fwd_efficiency.value, (d_qk + d_v) as f64)
        };
        let block_cycles = 2.0 * (b * b) as f64 * gemms / (per_sm * eff);
        let q_tiles = seq_q.div_ceil(b);
        let kv_blocks = seq_kv.div_ceil(b);
        // Causal: query tile i (aligned to the end of the key range) sees the blocks up to its own.
        let blocks_per_seq: u64 = if causal {
            (0..q_tiles)
                .map(|i| (kv_blocks - q_tiles + i + 1).min(kv_blocks))
                .sum()
        } else {
            q_tiles * kv_blocks
        };
        let tiles = batch * heads * q_tiles;
        let overhead = self.cal.gemm.tile_overhead_cycles.value;
        let total =
            (batch * heads * blocks_per_seq) as f64 * block_cycles + tiles as f64 * overhead;
        // Balanced over SMs, but no faster than the longest tile.
        let longest = kv_blocks as f64 * block_cycles + overhead;
        (total / sms as f64).max(longest) / self.clock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hw::catalog::Catalog;

    fn gemm(m: u64, n: u64, k: u64, groups: u64, wgrad: bool) -> KernelShape {
        KernelShape::Gemm {
            m,
            n,
            k,
            groups,
            dtype: Dtype::Fp8,
            wgrad,
        }
    }

    fn us(model: &KernelModel, k: &KernelShape) -> f64 {
        model.time(k, 112).as_secs_f64() * 1e6
    }

    /// The calibration points reproduce their own microbenchmarks (to rounding of the constants).
    #[test]
    fn calibration_points_reproduce() {
        let cat = Catalog::embedded();
        let cal = Calibration::embedded();
        let m = KernelModel::new(cat.get("H800").unwrap().1, &cal);
        let cases = [
            ("o_proj fwd", gemm(4096, 7168, 16384, 1, false), 900.8),
            ("kv_b fwd", gemm(4096, 32768, 512, 1, false), 244.2),
            ("o_proj wgrad", gemm(7168, 16384, 4096, 1, true), 1499.0),
        ];
        for (name, k, measured) in cases {
            let p = us(&m, &k);
            assert!(
                (p / measured - 1.0).abs() < 0.01,
                "{name}: predicted {p:.1} us, trace {measured} us"
            );
        }
        let attn = |backward| KernelShape::Attention {
            backward,
            batch: 1,
            heads: 128,
            seq_q: 4096,
            seq_kv: 4096,
            d_qk: 192,
            d_v: 128,
            causal: true,
        };
        let f = us(&m, &attn(false));
        assert!((f / 1237.0 - 1.0).abs() < 0.01, "attention fwd {f}");
        let b = us(&m, &attn(true));
        assert!((b / 3778.8 - 1.0).abs() < 0.01, "attention bwd {b}");
    }

    /// Kernels not used for calibration: the model predicts them within 15% (printed).
    #[test]
    fn held_out_trace_gemms_within_15_percent() {
        let cat = Catalog::embedded();
        let cal = Calibration::embedded();
        let m = KernelModel::new(cat.get("H800").unwrap().1, &cal);
        let cases = [
            ("q_a fwd", gemm(4096, 1536, 7168, 1, false), 103.5),
            ("kv_a fwd", gemm(4096, 576, 7168, 1, false), 53.2),
            ("q_b fwd", gemm(4096, 24576, 1536, 1, false), 371.5),
            (
                "routed gate+up fwd",
                gemm(8192, 4096, 7168, 4, false),
                1862.5,
            ),
            ("routed down fwd", gemm(8192, 7168, 2048, 4, false), 1035.2),
            (
                "shared gate+up fwd",
                gemm(4096, 4096, 7168, 1, false),
                259.0,
            ),
            ("shared down fwd", gemm(4096, 7168, 2048, 1, false), 138.0),
            ("o_proj dgrad", gemm(4096, 16384, 7168, 1, false), 927.0),
            ("q_b dgrad", gemm(4096, 1536, 24576, 1, false), 332.0),
            (
                "routed gate+up dgrad",
                gemm(8192, 7168, 4096, 4, false),
                1969.2,
            ),
            ("routed down dgrad", gemm(8192, 2048, 7168, 4, false), 864.5),
            ("q_b wgrad", gemm(24576, 1536, 4096, 1, true), 462.0),
            ("kv_b wgrad", gemm(32768, 512, 4096, 1, true), 221.5),
            ("q_a wgrad", gemm(1536, 7168, 4096, 1, true), 136.2),
        ];
        let mut worst: f64 = 0.0;
        for (name, k, measured) in cases {
            let p = us(&m, &k);
            let err = p / measured - 1.0;
            println!(
                "{name:24} predicted {p:8.1} us  trace {measured:8.1} us  error {:+6.1}%",
                err * 100.0
            );
            worst = worst.max(err.abs());
        }
        assert!(worst < 0.15, "worst error {:.1}%", worst * 100.0);
    }

    #[test]
    fn fewer_sms_never_faster_and_wave_quantization_shows() {
        let cat = Catalog::embedded();
        let cal = Calibration::embedded();
        let m = KernelModel::new(cat.get("H800").unwrap().1, &cal);
        let k = gemm(4096, 4096, 7168, 1, false);
        let t132 = m.time(&k, 132);
        let t112 = m.time(&k, 112);
        assert!(t112 >= t132);
        // 1024 tiles: 8 waves on 128 SMs, 9 on 127 — one SM fewer costs a whole wave.
        let t128 = m.time(&k, 128).ps as f64;
        let t127 = m.time(&k, 127).ps as f64;
        assert!((t127 / t128 - 9.0 / 8.0).abs() < 1e-3, "{t127} {t128}");
    }

    #[test]
    fn memory_kernel_is_bytes_over_bandwidth() {
        let cat = Catalog::embedded();
        let cal = Calibration::embedded();
        let gpu = cat.get("H100").unwrap().1;
        let m = KernelModel::new(gpu, &cal);
        let bytes = 1e9;
        let expect = bytes / (3.35e12 * cal.memory.hbm_efficiency.value);
        let got = m.time(&KernelShape::Memory { bytes }, 132).as_secs_f64();
        assert!((got / expect - 1.0).abs() < 1e-6, "{got} vs {expect}");
        assert_eq!(
            m.time(&KernelShape::Memory { bytes: 1.0 }, 132),
            cal.memory.min_kernel_time.value
        );
    }
}
