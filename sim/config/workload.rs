//! The workload document (`workloads/*.yaml`): model, training settings, parallel layout, price.

use super::model::ModelSpec;
use crate::units::{Count, Money, Power};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub model: ModelSpec,
    pub training: TrainingSpec,
    pub parallelism: ParallelismSpec,
    pub pricing: PricingSpec,
    /// How routed-expert load spreads over the experts (default: perfectly balanced).
    #[serde(default)]
    pub routing: RoutingSpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RoutingDistribution {
    /// Every expert receives the same number of tokens (DeepSeek's profile trace assumes this).
    #[default]
    Balanced,
    /// Expert popularity drawn from a symmetric Dirichlet(alpha) per MoE layer: hot experts.
    Dirichlet,
}

/// Routed-expert load.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingSpec {
    #[serde(default)]
    pub distribution: RoutingDistribution,
    /// Dirichlet concentration: smaller is more skewed (1.0: popularity ~ uniform on the simplex).
    #[serde(default = "alpha")]
    pub alpha: f64,
    /// Seed of the random draws (printed with every run).
    #[serde(default)]
    pub seed: u64,
}

fn alpha() -> f64 {
    8.0
}

impl Default for RoutingSpec {
    fn default() -> Self {
        RoutingSpec {
            distribution: RoutingDistribution::Balanced,
            alpha: alpha(),
            seed: 0,
        }
    }
}

/// Number formats, as DeepSeek-V3 §3.3 describes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dtype {
    Fp8,
    Bf16,
    Fp16,
    Tf32,
    Fp32,
}

impl Dtype {
    pub fn bytes(self) -> f64 {
        match self {
            Dtype::Fp8 => 1.0,
            Dtype::Bf16 | Dtype::Fp16 => 2.0,
            Dtype::Tf32 | Dtype::Fp32 => 4.0,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Dtype::Fp8 => "fp8",
            Dtype::Bf16 => "bf16",
            Dtype::Fp16 => "fp16",
            Dtype::Tf32 => "tf32",
            Dtype::Fp32 => "fp32",
        }
    }
}

/// The optimizer's master copy of the weights.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MasterCopy {
    /// No separate copy: the optimizer steps the working weights.
    None,
    /// A 16-bit copy; also the size of Apex's FP32 "param remainders" kept beside BF16 weights.
    Bf16,
    Fp16,
    #[default]
    Fp32,
}

impl MasterCopy {
    pub fn bytes(self) -> f64 {
        match self {
            MasterCopy::None => 0.0,
            MasterCopy::Bf16 | MasterCopy::Fp16 => 2.0,
            MasterCopy::Fp32 => 4.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Recompute {
    /// Keep every activation the backward pass reads.
    None,
    /// Recompute the cheap ops in backward (norms, up-projections, SwiGLU output), keep GEMM inputs.
    Selective,
    /// Keep only each layer's input; re-run the whole layer forward in backward.
    Full,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PrecisionSpec {
    /// Data type of the linear-layer GEMMs (Fprop, Dgrad, Wgrad).
    pub gemm: Dtype,
    /// Attention core (flash attention) data type.
    #[serde(default = "bf16")]
    pub attention: Dtype,
    /// Working copy of the weights that GEMMs read.
    #[serde(default = "bf16")]
    pub params: Dtype,
    /// Weight gradients as accumulated.
    #[serde(default = "fp32")]
    pub grads: Dtype,
    /// Master copy of the weights kept by the optimizer, or `none` when the optimizer updates
    /// the working weights in place (Apex's distributed Adam with BF16 state and BF16 weights).
    #[serde(default)]
    pub master: MasterCopy,
    /// AdamW first and second moments.
    #[serde(default = "fp32")]
    pub optimizer_states: Dtype,
    /// Cached activations that feed GEMMs in backward.
    #[serde(default = "bf16")]
    pub activations: Dtype,
    /// Gradient all-reduce / reduce-scatter payload.
    #[serde(default = "bf16")]
    pub grad_comm: Dtype,
    /// MoE dispatch payload (combine is always in the activation's BF16).
    #[serde(default = "bf16")]
    pub dispatch: Dtype,
    /// How FP8 GEMMs are scaled, which decides the kernels that run them.
    #[serde(default)]
    pub fp8_scaling: Fp8Scaling,
}

/// FP8 scaling recipe of the linear layers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fp8Scaling {
    /// Fine-grained scales (1×128 activation tiles, 128×128 weight blocks), DeepSeek-V3 §3.3:
    /// DeepGEMM kernels, priced with the H800 trace's efficiencies.
    #[default]
    Blockwise,
    /// One scale per tensor (Transformer Engine's delayed or current scaling): cuBLASLt GEMMs,
    /// priced with the cuBLASLt FP8 measurements.
    Tensorwise,
}

fn bf16() -> Dtype {
    Dtype::Bf16
}
fn fp32() -> Dtype {
    Dtype::Fp32
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingSpec {
    pub precision: PrecisionSpec,
    /// Sequence length in tokens.
    pub seq_len: u64,
    /// Global batch in sequences.
    pub global_batch: u64,
    pub recompute: Recompute,
    /// Attention kernel: `auto` (the fused warp-specialised kernel on Hopper and later, i.e.
    /// FlashAttention-3 on Hopper and cuDNN/FlashAttention-4 on Blackwell; FlashAttention-2 on
    /// Ampere), `flash3` (that fused kernel), `flash2`, or `unfused` (batched GEMMs around a
    /// softmax over the materialised score matrix, as in Megatron-LM before flash attention).
    #[serde(default)]
    pub attention_kernel: AttentionKernelSpec,
    /// The run, phase by phase.
    pub phases: Vec<PhaseSpec>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttentionKernelSpec {
    #[default]
    Auto,
    Flash3,
    Flash2,
    Unfused,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseSpec {
    pub name: String,
    /// Tokens trained in this phase (give this or `steps`).
    #[serde(default)]
    pub tokens: Option<Count>,
    /// Optimizer steps in this phase (give this or `tokens`).
    #[serde(default)]
    pub steps: Option<Count>,
    /// Overrides of the training defaults for this phase.
    #[serde(default)]
    pub seq_len: Option<u64>,
    #[serde(default)]
    pub global_batch: Option<u64>,
    #[serde(default)]
    pub parallelism: Option<ParallelismOverride>,
    /// A linear batch-size ramp at the start of the phase.
    #[serde(default)]
    pub batch_ramp: Option<BatchRamp>,
    /// GPU-hours as reported, for a phase trainsim does not simulate (e.g. RL post-training).
    #[serde(default)]
    pub reported_gpu_hours: Option<f64>,
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRamp {
    /// Global batch (sequences) at the start of the ramp; it grows linearly to the phase's batch.
    pub from: u64,
    /// Tokens over which the batch ramps.
    pub tokens: Count,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    Gpipe,
    #[serde(rename = "1f1b")]
    OneFOneB,
    Interleaved,
    Zb1p,
    Dualpipe,
    Dualpipev,
}

impl Schedule {
    pub fn name(self) -> &'static str {
        match self {
            Schedule::Gpipe => "gpipe",
            Schedule::OneFOneB => "1f1b",
            Schedule::Interleaved => "interleaved",
            Schedule::Zb1p => "zb1p",
            Schedule::Dualpipe => "dualpipe",
            Schedule::Dualpipev => "dualpipev",
        }
    }
}

/// `dp: auto` or a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DpSpec {
    Auto,
    Fixed(u64),
}

impl<'de> Deserialize<'de> for DpSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("found something else, expected `auto` or a positive integer")
        })? {
            Raw::N(n) => Ok(DpSpec::Fixed(n)),
            Raw::S(s) if s == "auto" => Ok(DpSpec::Auto),
            Raw::S(s) => Err(serde::de::Error::custom(format!(
                "found \"{s}\", expected `auto` or a positive integer"
            ))),
        }
    }
}

fn one() -> u64 {
    1
}
fn auto() -> DpSpec {
    DpSpec::Auto
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ParallelismSpec {
    #[serde(default = "one")]
    pub tp: u64,
    #[serde(default = "one")]
    pub pp: u64,
    /// Expert parallelism: GPUs that share one copy of a MoE layer's routed experts.
    #[serde(default = "one")]
    pub ep: u64,
    #[serde(default = "one")]
    pub cp: u64,
    #[serde(default = "auto")]
    pub dp: DpSpec,
    /// Virtual stages per rank (interleaved schedule).
    #[serde(default = "one")]
    pub vpp: u64,
    /// ZeRO stage 0–3.
    #[serde(default)]
    pub zero: u8,
    /// ZeRO-1/2 (Megatron's distributed optimizer, `--overlap-param-gather`): all-gather the
    /// updated parameters block by block, each before that block's first forward of the next
    /// step and beside the compute, instead of all at once after the optimizer.
    #[serde(default)]
    pub overlap_param_gather: bool,
    pub schedule: Schedule,
    /// Sequences per micro-batch.
    #[serde(default = "one")]
    pub micro_batch: u64,
    /// SMs reserved for communication kernels (DeepSeek-V3: 20 of 132).
    #[serde(default)]
    pub comm_sms: u32,
    /// Megatron `--sequence-parallel`: tensor-parallel all-reduces become all-gather +
    /// reduce-scatter, and norms, dropout and residuals work on 1/tp of the sequence.
    #[serde(default)]
    pub sequence_parallel: bool,
    /// Megatron/Transformer Engine `--tp-comm-overlap` (userbuffers): tensor-parallel
    /// all-gathers and reduce-scatters pipelined with their GEMMs. Needs `sequence_parallel`.
    #[serde(default)]
    pub tp_comm_overlap: bool,
}

/// Keys a phase may change in the parallel layout.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ParallelismOverride {
    #[serde(default)]
    pub tp: Option<u64>,
    #[serde(default)]
    pub pp: Option<u64>,
    #[serde(default)]
    pub ep: Option<u64>,
    #[serde(default)]
    pub cp: Option<u64>,
    #[serde(default)]
    pub dp: Option<DpSpec>,
    #[serde(default)]
    pub micro_batch: Option<u64>,
}

impl ParallelismSpec {
    pub fn with(&self, o: &ParallelismOverride) -> ParallelismSpec {
        ParallelismSpec {
            tp: o.tp.unwrap_or(self.tp),
            pp: o.pp.unwrap_or(self.pp),
            ep: o.ep.unwrap_or(self.ep),
            cp: o.cp.unwrap_or(self.cp),
            dp: o.dp.unwrap_or(self.dp),
            micro_batch: o.micro_batch.unwrap_or(self.micro_batch),
            ..self.clone()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PricingSpec {
    /// Rental price per GPU-hour.
    pub gpu_hour: Money,
    /// Optional electricity price per kWh, for the energy line of the cost.
    #[serde(default)]
    pub electricity_per_kwh: Option<Money>,
    /// Power usage effectiveness of the data centre (facility power / IT power).
    #[serde(default)]
    pub pue: Option<f64>,
    /// Average electrical draw per GPU for the energy line; defaults to the chip's TDP.
    #[serde(default)]
    pub power_per_gpu: Option<Power>,
}
