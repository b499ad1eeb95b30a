//! The workload document (`workloads/*.yaml`): model, training settings, parallel layout, price.

use super::model::ModelSpec;
use crate::domain::{
    GradReduce, MoeDispatcher, MoeOverlap, Precision, Recompute, RoutingDistribution, Schedule,
};
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
    /// Plausible settings the sources do not rule out, each a list of overrides
    /// (`workload.PATH=VALUE` or `topology.PATH=VALUE`). `trainsim run` prices each one to
    /// widen its estimate's band; the central estimate uses the document as written.
    #[serde(default)]
    pub alternatives: Vec<AlternativeSpec>,
    /// Failures, checkpoints, restarts and stragglers: what turns the ideal time into the time
    /// the run really takes (every key has a sourced default; see
    /// [`crate::config::reliability`]).
    #[serde(default)]
    pub reliability: super::reliability::ReliabilitySpec,
}

/// One alternative setting: what it is and the overrides that make it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlternativeSpec {
    pub name: String,
    pub set: Vec<String>,
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

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingSpec {
    pub precision: Precision,
    /// Sequence length in tokens.
    pub seq_len: u64,
    /// Global batch in sequences.
    pub global_batch: u64,
    pub recompute: Recompute,
    /// With `recompute: selective` or `megatron_selective`, Megatron-Core's
    /// `--recompute-modules`: the submodules its selective recompute re-runs (`core_attn`,
    /// `mla_up_proj`, `layernorm`, `moe_act`), in place of the policy's own set.
    #[serde(default)]
    pub recompute_modules: Option<Vec<String>>,
    /// With `recompute: full`, Megatron's `--recompute-num-layers`: how many layers each
    /// recompute unit covers (see `recompute_method`).
    #[serde(default)]
    pub recompute_num_layers: Option<u64>,
    /// With `recompute_num_layers`: `block` (default; the first N layers of each pipeline chunk
    /// recomputed fully, the rest keeping their activations) or `uniform` (every layer
    /// recomputed, one input kept per N layers).
    #[serde(default)]
    pub recompute_method: Option<crate::domain::RecomputeMethod>,
    /// Attention kernel: `auto` (the fused warp-specialised kernel on Hopper and later, i.e.
    /// FlashAttention-3 on Hopper and cuDNN/FlashAttention-4 on Blackwell; FlashAttention-2 on
    /// Ampere), `flash3` (that fused kernel), `flash2`, or `unfused` (batched GEMMs around a
    /// softmax over the materialised score matrix, as in Megatron-LM before flash attention).
    #[serde(default)]
    pub attention_kernel: AttentionKernelSpec,
    /// The loss's kernels over the logits: `unfused` (Megatron's FP32 vocabulary-parallel cross
    /// entropy, the default) or `fused` (one kernel computing loss and gradient).
    #[serde(default)]
    pub loss_kernel: crate::domain::LossKernel,
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
    /// The phase's cluster size in nodes, where it differs from the topology's (Llama 3 405B:
    /// 8,192 GPUs, then 16,384): the phase runs on the same fabric with this many nodes, its
    /// layout sized to them (`dp: auto` follows).
    #[serde(default)]
    pub nodes: Option<u64>,
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

/// The named pipeline splits ([`crate::domain::PipelineSplit`] without an explicit list).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitName {
    #[default]
    Balanced,
    Even,
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
    /// When the gradient reduction runs: `overlap` (default), `after_backward` or
    /// `once_per_step` (see [`GradReduce`]).
    #[serde(default)]
    pub grad_reduce: GradReduce,
    /// How layers are cut into pipeline chunks: `balanced` (default: the slowest chunk's
    /// compute minimised) or `even` (Megatron's default: the same layer count on each).
    #[serde(default)]
    pub pipeline_split: SplitName,
    /// Layers on each chunk, in order (pp entries, pp × vpp when interleaved, 2pp under
    /// DualPipe-V): overrides `pipeline_split`.
    #[serde(default)]
    pub layers_per_chunk: Option<Vec<u64>>,
    /// Megatron-Core's `pipeline_model_parallel_layout` (alias `pipeline_layout`): the items of
    /// each chunk, as in `"Et*3|(tt|)*29,m|L"` (see [`crate::config::pipeline_layout`]).
    /// Overrides `pipeline_split`.
    #[serde(default, alias = "pipeline_layout")]
    pub pipeline_model_parallel_layout: Option<String>,
    /// With `pipeline_split: even`, these many layers on the first pipeline stage and the rest
    /// split evenly over the others (Megatron-Core's `num_layers_in_first_pipeline_stage`,
    /// `--decoder-first-pipeline-num-layers`; interleaved, a stage's layers are spread evenly
    /// over its virtual stages).
    #[serde(default, alias = "decoder_first_pipeline_num_layers")]
    pub num_layers_in_first_pipeline_stage: Option<u64>,
    /// Likewise for the last stage (`num_layers_in_last_pipeline_stage`,
    /// `--decoder-last-pipeline-num-layers`).
    #[serde(default, alias = "decoder_last_pipeline_num_layers")]
    pub num_layers_in_last_pipeline_stage: Option<u64>,
    /// With `pipeline_split: even`, the embedding counts as one layer of the first chunk
    /// (Megatron's `--account-for-embedding-in-pipeline-split`).
    #[serde(default)]
    pub account_for_embedding_in_pipeline_split: bool,
    /// With `pipeline_split: even`, the loss counts as one layer of the last chunk (Megatron's
    /// `--account-for-loss-in-pipeline-split`).
    #[serde(default)]
    pub account_for_loss_in_pipeline_split: bool,
    pub schedule: Schedule,
    /// How the MoE all-to-alls overlap compute outside DualPipe: `none` (default) or
    /// `combined_1f1b` (Megatron-Core's `--overlap-moe-expert-parallel-comm`).
    #[serde(default)]
    pub moe_overlap: MoeOverlap,
    /// The MoE token dispatcher: `deepep` (default; Megatron's `flex` with DeepEP) or
    /// `alltoall` (Megatron's NCCL all-to-all). Alias `moe_token_dispatcher_type`.
    #[serde(default, alias = "moe_token_dispatcher_type")]
    pub moe_dispatcher: MoeDispatcher,
    /// Token dropping (`--moe-expert-capacity-factor`): each expert takes at most this multiple
    /// of its balanced load. Absent: dropless. Needs the `alltoall` dispatcher.
    #[serde(default)]
    pub moe_expert_capacity_factor: Option<f64>,
    /// Pad every expert's input to its capacity (`--moe-pad-expert-input-to-capacity`).
    #[serde(default)]
    pub moe_pad_expert_input_to_capacity: bool,
    /// Run the shared experts beside the dispatch and combine (`--moe-shared-expert-overlap`).
    /// Needs the `alltoall` dispatcher, as in Megatron.
    #[serde(default)]
    pub moe_shared_expert_overlap: bool,
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
