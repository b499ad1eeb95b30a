//! Domain types: the vocabulary that the model, the kernel model and the engines share, below
//! any file format. `config` parses YAML into these; `hw`, `net`, `workload` and the engines
//! take them as they are. Serde derives give their names in documents (`bf16`, `1f1b`, ...),
//! but nothing here reads or writes a file.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RoutingDistribution {
    /// Every expert receives the same number of tokens (DeepSeek's profile trace assumes this).
    #[default]
    Balanced,
    /// Expert popularity drawn from a symmetric Dirichlet(alpha) per MoE layer: hot experts.
    Dirichlet,
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

/// The training loss's kernels over the logits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LossKernel {
    /// Megatron's vocabulary-parallel cross entropy in eager FP32 PyTorch ops (52 B per logit).
    #[default]
    Unfused,
    /// One fused kernel that computes the loss and the logit gradient in the forward pass
    /// (Liger-, Apex- or TE-style), then scales that gradient in backward (10 B per logit).
    Fused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Recompute {
    /// Keep every activation the backward pass reads.
    None,
    /// DeepSeek-V3's selective recompute (§3.2.3): recompute the cheap ops in backward (norms,
    /// up-projections, SwiGLU output), keep GEMM inputs.
    Selective,
    /// Megatron's selective recompute (Korthikanti et al. 2022, `--recompute-granularity
    /// selective`): recompute the core attention (scores, softmax, dropout, attention over V)
    /// in backward, so its score-sized activations are never kept; keep everything else.
    #[serde(alias = "megatron-selective")]
    MegatronSelective,
    /// Keep only each layer's input; re-run the whole layer forward in backward.
    Full,
    /// Megatron-Core's `--recompute-granularity selective` with its `--recompute-modules` list
    /// (written `recompute_modules: [..]` beside `recompute: selective`).
    #[serde(skip_deserializing)]
    Modules(RecomputeModules),
}

/// The submodules Megatron-Core's selective recompute re-runs in backward
/// (`--recompute-modules`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct RecomputeModules {
    /// `core_attn`: the core attention (scores, softmax, attention over V).
    pub core_attn: bool,
    /// `mla_up_proj`: MLA's query and key-value up-projections (with RoPE and the concat).
    pub mla_up_proj: bool,
    /// `layernorm`: the input and pre-MLP norms.
    pub layernorm: bool,
    /// `moe_act` (or `mlp_act`): the gated activation of the experts and MLPs.
    pub act: bool,
    /// `mlp`: a dense block's whole MLP, keeping only its input.
    pub mlp: bool,
    /// `moe`: an MoE block's whole feed-forward part (router, dispatch, experts, combine,
    /// shared experts), keeping only its input; the backward re-runs its all-to-alls.
    pub moe: bool,
    /// `shared_experts`: the shared experts of an MoE block.
    pub shared_experts: bool,
}

impl RecomputeModules {
    /// The set Megatron-Core's names in `names` make; an unknown or unmodelled name is the
    /// error, with what is accepted.
    pub fn from_names(names: &[String]) -> Result<RecomputeModules, String> {
        let mut m = RecomputeModules::default();
        for n in names {
            match n.as_str() {
                "core_attn" => m.core_attn = true,
                "mla_up_proj" => m.mla_up_proj = true,
                "layernorm" => m.layernorm = true,
                "moe_act" | "mlp_act" => m.act = true,
                "mlp" => m.mlp = true,
                "moe" => m.moe = true,
                "shared_experts" => m.shared_experts = true,
                _ => return Err(format!("the unknown module `{n}`")),
            }
        }
        Ok(m)
    }
}

impl Recompute {
    pub const ALL: [Recompute; 4] = [
        Recompute::None,
        Recompute::Selective,
        Recompute::MegatronSelective,
        Recompute::Full,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Recompute::None => "none",
            Recompute::Selective => "selective",
            Recompute::MegatronSelective => "megatron_selective",
            Recompute::Full => "full",
            Recompute::Modules(_) => "recompute_modules",
        }
    }

    /// Whether the backward recomputes the cheap ops (norms, up-projections, activation
    /// outputs) instead of keeping their outputs: DeepSeek's selective, and full.
    pub fn recomputes_cheap_ops(self) -> bool {
        matches!(self, Recompute::Selective | Recompute::Full)
    }

    /// Whether the norms are recomputed in backward (DeepSeek's selective, full, Megatron's
    /// `layernorm` module).
    pub fn recomputes_norms(self) -> bool {
        match self {
            Recompute::Modules(m) => m.layernorm,
            r => r.recomputes_cheap_ops(),
        }
    }

    /// Whether MLA's up-projections (with RoPE and the concat) are recomputed, so their q, k
    /// and v are not kept (DeepSeek's selective, full, Megatron's `mla_up_proj`).
    pub fn recomputes_up_proj(self) -> bool {
        match self {
            Recompute::Modules(m) => m.mla_up_proj,
            r => r.recomputes_cheap_ops(),
        }
    }

    /// Whether the gated activation's output is recomputed rather than kept (DeepSeek's
    /// selective, full, Megatron's `moe_act`).
    pub fn recomputes_act(self) -> bool {
        match self {
            Recompute::Modules(m) => m.act,
            r => r.recomputes_cheap_ops(),
        }
    }

    /// Megatron's `mlp` module: a dense block's whole MLP is re-run in backward.
    pub fn recomputes_mlp(self) -> bool {
        matches!(self, Recompute::Modules(m) if m.mlp)
    }

    /// Megatron's `moe` module: an MoE block's whole feed-forward part is re-run in backward.
    pub fn recomputes_moe(self) -> bool {
        matches!(self, Recompute::Modules(m) if m.moe)
    }

    /// Megatron's `shared_experts` module (or `moe`, which re-runs them with the rest).
    pub fn recomputes_shared_experts(self) -> bool {
        matches!(self, Recompute::Modules(m) if m.shared_experts || m.moe)
    }

    /// Whether the backward re-runs the core attention's forward: Megatron's selective, and
    /// full.
    pub fn recomputes_core_attention(self) -> bool {
        match self {
            Recompute::Modules(m) => m.core_attn,
            r => matches!(r, Recompute::MegatronSelective | Recompute::Full),
        }
    }
}

/// Which layers full recompute covers (Megatron's `--recompute-method` with
/// `--recompute-num-layers N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecomputeMethod {
    /// Every layer re-runs its forward; one input is kept per group of N consecutive layers
    /// (checkpointed together).
    Uniform,
    /// The first N layers of each pipeline chunk are fully recomputed, the others keep all
    /// their activations.
    Block,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Precision {
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

/// How the model is cut into pipeline chunks (stages, or virtual stages when interleaved). The
/// items cut are, in model order: the embedding, the transformer layers, the MTP modules and
/// the loss (the output head and cross entropy, the MTP depths' heads with it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub enum PipelineSplit {
    /// Contiguous runs of items that minimise the slowest chunk's compute: the embedding, the
    /// MTP modules and the loss are items of their own, so the loss may get a chunk to itself
    /// where it is worth one.
    #[default]
    Balanced,
    /// Megatron's default: the same number of layers on every chunk, the embedding on the
    /// first and the MTP modules and loss on the last, whatever they add. With
    /// `account_for_embedding_in_pipeline_split` (`embedding`) the embedding counts as one
    /// layer of the first chunk, with `account_for_loss_in_pipeline_split` (`loss`) the loss
    /// as one layer of the last.
    Even { embedding: bool, loss: bool },
    /// These items on each chunk, in order: `layers_per_chunk`, or Megatron's
    /// `pipeline_model_parallel_layout` (a chunk may hold no layer, or nothing at all).
    Explicit(Vec<Segment>),
}

/// What one pipeline chunk of an explicit split holds, in model order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Segment {
    pub embedding: bool,
    pub layers: u64,
    pub mtp: u64,
    pub loss: bool,
}

/// How a mixture-of-experts layer's all-to-alls overlap compute outside DualPipe (which pairs
/// its forwards and backwards itself).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MoeOverlap {
    /// Dispatch and combine on the critical path of their own micro-batch.
    #[default]
    None,
    /// Megatron-Core's combined 1F1B (`--overlap-moe-expert-parallel-comm`, "EP A2A overlap"):
    /// each steady-state forward runs merged with the backward of another micro-batch, layer by
    /// layer, each one's all-to-alls beside the other's compute, as DualPipe pairs them. Needs
    /// experts over several GPUs, and with pipeline parallelism the interleaved schedule.
    #[serde(
        rename = "combined_1f1b",
        alias = "overlap_moe_expert_parallel_comm",
        alias = "ep_a2a_overlap"
    )]
    Combined1f1b,
    /// Two-micro-batch overlap, as serving runs it (SGLang's two-batch overlap, DeepSeek's
    /// dual micro-batch overlap): each micro-batch is split into two halves of whole sequences
    /// that go through every chunk together, layer by layer, one half's all-to-alls beside the
    /// other half's compute, in the forward and in the backward. The pipeline moves the pair as
    /// one micro-batch. Needs experts over several GPUs and an even micro-batch.
    #[serde(rename = "two_micro_batch", alias = "tbo", alias = "two_batch_overlap")]
    TwoMicroBatch,
}

/// Which kernels carry a mixture-of-experts layer's tokens to their experts and back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MoeDispatcher {
    /// DeepEP's kernels (DeepSeek-V3's own, Megatron-Core's `flex` dispatcher with
    /// `--moe-enable-deepep`): each token crosses InfiniBand once per target node, to the
    /// same-index GPU there, which forwards it over NVLink to every GPU holding one of its
    /// experts. Dropless.
    #[default]
    #[serde(alias = "flex")]
    Deepep,
    /// Megatron-Core's `alltoall` dispatcher: tokens permuted by expert, one NCCL all-to-all
    /// that sends a copy of each token to each of its experts' GPUs (two experts on one GPU:
    /// two copies), from GPU to GPU. Dropless, or with a capacity factor.
    #[serde(rename = "alltoall", alias = "all_to_all")]
    AllToAll,
}

impl MoeDispatcher {
    pub fn name(self) -> &'static str {
        match self {
            MoeDispatcher::Deepep => "deepep",
            MoeDispatcher::AllToAll => "alltoall",
        }
    }
}

/// An expert's capacity as a multiple of its balanced load (Megatron's
/// `--moe-expert-capacity-factor`). Finite and positive, so it compares and hashes by its bits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CapacityFactor(pub f64);

impl Eq for CapacityFactor {}

impl std::hash::Hash for CapacityFactor {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.to_bits().hash(state)
    }
}

/// How an MoE layer's tokens travel, as Megatron-Core configures it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
pub struct MoeDispatch {
    pub dispatcher: MoeDispatcher,
    /// Token dropping: an expert takes at most this multiple of its balanced load per source
    /// GPU; `None` is dropless.
    pub capacity: Option<CapacityFactor>,
    /// With a capacity, every expert's input is padded to it
    /// (`--moe-pad-expert-input-to-capacity`): each expert computes, and each GPU sends, exactly
    /// the capacity, whatever the routing.
    pub pad_to_capacity: bool,
    /// Megatron's `--moe-shared-expert-overlap`: the shared experts run on a side stream, their
    /// first GEMM and activation beside the dispatch, their second beside the combine (and so in
    /// the backward, which autograd runs on the streams of the forward).
    pub shared_expert_overlap: bool,
}

impl MoeDispatch {
    /// Tokens each expert computes (and each GPU sends) relative to dropless balanced routing:
    /// the capacity where inputs are padded to it, otherwise 1.
    pub fn padded_load(&self) -> f64 {
        match self.capacity {
            Some(c) if self.pad_to_capacity => c.0,
            _ => 1.0,
        }
    }
}

impl MoeOverlap {
    pub fn name(self) -> &'static str {
        match self {
            MoeOverlap::None => "none",
            MoeOverlap::Combined1f1b => "combined_1f1b",
            MoeOverlap::TwoMicroBatch => "two_micro_batch",
        }
    }
}

/// When the data-parallel gradient reduction runs. Orthogonal to ZeRO's sharding of state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GradReduce {
    /// Bucket by bucket as each block's weight gradients finish, beside the rest of the
    /// backward (Megatron's `--overlap-grad-reduce`, PyTorch DDP and FSDP hooks): on the last
    /// micro-batch, or after every micro-batch where gradients are sharded (ZeRO-2/3).
    #[default]
    Overlap,
    /// Not overlapped: the buckets leave once the backward they follow is done (the step's
    /// for whole gradients, each micro-batch's for sharded ones), and compute waits for them
    /// (Megatron's `overlap_grad_reduce=False`, its default before 2024 and the 2021 local
    /// DDP; DeepSpeed without `overlap_comm`).
    AfterBackward,
    /// Gradients accumulate whole across the micro-batches and are reduced once per step,
    /// bucket by bucket beside the last backward, even where ZeRO-2/3 shards them between
    /// steps; ZeRO-3's weights are gathered once per step, before each block's first forward,
    /// and kept (PyTorch FSDP under pipelining with `reshard_after_forward=False`, as Llama 3
    /// ran it).
    OncePerStep,
}

impl GradReduce {
    pub fn name(self) -> &'static str {
        match self {
            GradReduce::Overlap => "overlap",
            GradReduce::AfterBackward => "after_backward",
            GradReduce::OncePerStep => "once_per_step",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
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
    pub const ALL: [Schedule; 6] = [
        Schedule::Gpipe,
        Schedule::OneFOneB,
        Schedule::Interleaved,
        Schedule::Zb1p,
        Schedule::Dualpipe,
        Schedule::Dualpipev,
    ];

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
