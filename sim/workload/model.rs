//! Model math: parameter counts, FLOPs per token by operation, activation bytes.
//!
//! Pure functions of a validated [`Model`]. Conventions (DESIGN §3): training FLOPs per token
//! are 3 × forward (backward = 2 × forward for every term), causal attention counts half of the
//! score matrix, and multi-token-prediction (MTP) modules are reported separately.

use crate::config::model::ModelSpec;
use crate::config::Diagnostic;
use crate::domain::{Dtype, Recompute};

/// Attention variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attention {
    /// Multi-head / grouped-query attention.
    Gqa {
        heads: u64,
        kv_heads: u64,
        head_dim: u64,
    },
    /// DeepSeek multi-head latent attention with low-rank q and kv projections.
    Mla {
        heads: u64,
        q_lora: Option<u64>,
        kv_lora: u64,
        qk_nope: u64,
        qk_rope: u64,
        v_dim: u64,
    },
}

impl Attention {
    pub fn heads(&self) -> u64 {
        match *self {
            Attention::Gqa { heads, .. } | Attention::Mla { heads, .. } => heads,
        }
    }
    /// Per-head dimensions of the attention core: (q·k, v).
    pub fn core_dims(&self) -> (u64, u64) {
        match *self {
            Attention::Gqa { head_dim, .. } => (head_dim, head_dim),
            Attention::Mla {
                qk_nope,
                qk_rope,
                v_dim,
                ..
            } => (qk_nope + qk_rope, v_dim),
        }
    }
}

/// Mixture-of-Experts layer settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moe {
    pub routed: u64,
    pub shared: u64,
    pub topk: u64,
    pub expert_ffn: u64,
    pub shared_ffn: u64,
    /// The first `first_dense` layers keep a dense FFN.
    pub first_dense: u64,
    pub freq: u64,
    /// Expert groups and how many a token may use (node-limited routing when groups map to nodes).
    pub groups: u64,
    pub topk_groups: u64,
}

/// A validated model.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub name: String,
    pub hidden: u64,
    pub layers: u64,
    pub vocab: u64,
    pub tied_embeddings: bool,
    pub attention: Attention,
    /// SwiGLU (gate, up, down) or a two-matrix MLP.
    pub gated_ffn: bool,
    pub dense_ffn: u64,
    pub moe: Option<Moe>,
    /// Multi-token-prediction depth (DeepSeek-V3: 1).
    pub mtp_depth: u64,
    /// Biases on the attention and on the feed-forward linears.
    pub attention_bias: bool,
    pub mlp_bias: bool,
    /// Dropout probabilities on the residual branches and on the attention probabilities.
    pub hidden_dropout: f64,
    pub attention_dropout: f64,
    /// Whether a grouped-query attention ropes q and k (a separate rotary kernel); learned
    /// absolute positions and ALiBi do not.
    pub rotary: bool,
}

/// What a linear layer is part of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    Attention,
    DenseFfn,
    Router,
    RoutedExperts,
    SharedExperts,
    Head,
    MtpProjection,
}

/// One weight matrix (or a set of identical ones): `k` inputs → `n` outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Linear {
    pub name: &'static str,
    pub part: Part,
    pub k: u64,
    pub n: u64,
    /// Copies stored (routed experts: all of them).
    pub stored: u64,
    /// Copies each token passes through (routed experts: top-k).
    pub active: u64,
    /// Split across tensor-parallel ranks by output columns (true) or input rows (false);
    /// replicated when `None`.
    pub tp_split: Option<bool>,
}

impl Linear {
    pub fn params(&self) -> u64 {
        self.k * self.n * self.stored
    }
    pub fn fwd_flops_per_token(&self) -> f64 {
        2.0 * (self.k * self.n * self.active) as f64
    }
}

/// The kind of a transformer block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    Dense,
    Moe,
}

/// Parameter counts.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Params {
    pub total: u64,
    pub active: u64,
    pub embedding: u64,
    pub head: u64,
    /// Unique MTP parameters (embedding and head are shared with the main model).
    pub mtp: u64,
}

fn need(spec: &ModelSpec, v: Option<u64>, key: &str, file: &str) -> Result<u64, Diagnostic> {
    match v {
        Some(0) => Err(Diagnostic::new(file, "0", "a positive integer").at(format!("model.{key}"))),
        Some(x) => Ok(x),
        None => Err(Diagnostic::new(
            file,
            "nothing",
            format!(
                "the key `{key}` (Hugging Face config name) for model {}",
                spec.name.as_deref().unwrap_or("(unnamed)")
            ),
        )
        .at(format!("model.{key}"))),
    }
}

impl Model {
    /// Validates a model section (after any `hf_config` has been merged in).
    pub fn from_spec(s: &ModelSpec, file: &str) -> Result<Model, Diagnostic> {
        let hidden = need(s, s.hidden_size, "hidden_size", file)?;
        let layers = need(s, s.num_hidden_layers, "num_hidden_layers", file)?;
        let heads = need(s, s.num_attention_heads, "num_attention_heads", file)?;
        let vocab = need(s, s.vocab_size, "vocab_size", file)?;
        let attention = if s.kv_lora_rank.is_some() {
            Attention::Mla {
                heads,
                q_lora: s.q_lora_rank,
                kv_lora: need(s, s.kv_lora_rank, "kv_lora_rank", file)?,
                qk_nope: need(s, s.qk_nope_head_dim, "qk_nope_head_dim", file)?,
                qk_rope: need(s, s.qk_rope_head_dim, "qk_rope_head_dim", file)?,
                v_dim: need(s, s.v_head_dim, "v_head_dim", file)?,
            }
        } else {
            let kv_heads = s.num_key_value_heads.unwrap_or(heads);
            if kv_heads == 0 || heads % kv_heads != 0 {
                return Err(Diagnostic::new(
                    file,
                    kv_heads.to_string(),
                    format!("a divisor of num_attention_heads ({heads})"),
                )
                .at("model.num_key_value_heads"));
            }
            let head_dim = s.head_dim.unwrap_or(hidden / heads);
            if head_dim == 0 {
                return Err(Diagnostic::new(
                    file,
                    "head_dim 0",
                    "hidden_size ≥ num_attention_heads, or head_dim",
                )
                .at("model.head_dim"));
            }
            Attention::Gqa {
                heads,
                kv_heads,
                head_dim,
            }
        };
        let gated_ffn = match s.hidden_act.as_deref().unwrap_or("silu") {
            "silu" | "swiglu" | "swish" => true,
            // relu2: squared ReLU (Nemotron-4), two matrices like GELU.
            "gelu" | "gelu_new" | "gelu_pytorch_tanh" | "relu" | "relu2" => false,
            other => {
                return Err(Diagnostic::new(
                    file,
                    format!("\"{other}\""),
                    "one of silu, swiglu, gelu, gelu_new, gelu_pytorch_tanh, relu, relu2",
                )
                .at("model.hidden_act"))
            }
        };
        let rotary = match s.position_embedding_type.as_deref().unwrap_or("rope") {
            "rope" => true,
            "learned_absolute" | "alibi" | "none" => false,
            other => {
                return Err(Diagnostic::new(
                    file,
                    format!("\"{other}\""),
                    "one of rope, learned_absolute, alibi, none",
                )
                .at("model.position_embedding_type"))
            }
        };
        let moe = match s.n_routed_experts {
            None | Some(0) => None,
            Some(routed) => {
                let topk = need(s, s.num_experts_per_tok, "num_experts_per_tok", file)?;
                if topk > routed {
                    return Err(Diagnostic::new(
                        file,
                        topk.to_string(),
                        format!("at most n_routed_experts ({routed})"),
                    )
                    .at("model.num_experts_per_tok"));
                }
                let expert_ffn = need(s, s.moe_intermediate_size, "moe_intermediate_size", file)?;
                let shared = s.n_shared_experts.unwrap_or(0);
                let groups = s.n_group.unwrap_or(1).max(1);
                if routed % groups != 0 {
                    return Err(Diagnostic::new(
                        file,
                        groups.to_string(),
                        format!("a divisor of n_routed_experts ({routed})"),
                    )
                    .at("model.n_group"));
                }
                Some(Moe {
                    routed,
                    shared,
                    topk,
                    expert_ffn,
                    shared_ffn: s
                        .shared_expert_intermediate_size
                        .unwrap_or(expert_ffn * shared.max(1))
                        / shared.max(1),
                    first_dense: s.first_k_dense_replace.unwrap_or(0),
                    freq: s.moe_layer_freq.unwrap_or(1).max(1),
                    groups,
                    topk_groups: s.topk_group.unwrap_or(groups).min(groups),
                })
            }
        };
        let prob = |v: Option<f64>, key: &str| match v.unwrap_or(0.0) {
            p if (0.0..1.0).contains(&p) => Ok(p),
            p => Err(
                Diagnostic::new(file, p.to_string(), "a probability in [0, 1)")
                    .at(format!("model.{key}")),
            ),
        };
        let hidden_dropout = prob(s.hidden_dropout, "hidden_dropout")?;
        let attention_dropout = prob(s.attention_dropout, "attention_dropout")?;
        let dense_ffn = match moe {
            Some(m) if m.first_dense == 0 && m.freq == 1 => s.intermediate_size.unwrap_or(0),
            _ => need(s, s.intermediate_size, "intermediate_size", file)?,
        };
        Ok(Model {
            name: s.name.clone().unwrap_or_else(|| "model".into()),
            hidden,
            layers,
            vocab,
            tied_embeddings: s.tie_word_embeddings.unwrap_or(false),
            attention,
            gated_ffn,
            dense_ffn,
            moe,
            mtp_depth: s.num_nextn_predict_layers.unwrap_or(0),
            attention_bias: s.attention_bias.unwrap_or(false),
            mlp_bias: s.mlp_bias.unwrap_or(false),
            hidden_dropout,
            attention_dropout,
            rotary,
        })
    }

    /// Kind of block `i` (Hugging Face semantics of `first_k_dense_replace` / `moe_layer_freq`).
    pub fn layer_kind(&self, i: u64) -> LayerKind {
        match self.moe {
            Some(m) if i >= m.first_dense && i % m.freq == 0 => LayerKind::Moe,
            _ => LayerKind::Dense,
        }
    }

    pub fn layer_kinds(&self) -> Vec<LayerKind> {
        (0..self.layers).map(|i| self.layer_kind(i)).collect()
    }

    /// The block an MTP module carries: an MoE block when the model has experts.
    pub fn mtp_layer_kind(&self) -> LayerKind {
        if self.moe.is_some() {
            LayerKind::Moe
        } else {
            LayerKind::Dense
        }
    }

    /// Weight matrices of the attention part of a block.
    pub fn attention_linears(&self) -> Vec<Linear> {
        let h = self.hidden;
        let l = |name, k, n, tp_split| Linear {
            name,
            part: Part::Attention,
            k,
            n,
            stored: 1,
            active: 1,
            tp_split,
        };
        match self.attention {
            Attention::Gqa {
                heads,
                kv_heads,
                head_dim,
            } => vec![
                l("q_proj", h, heads * head_dim, Some(true)),
                l("kv_proj", h, 2 * kv_heads * head_dim, Some(true)),
                l("o_proj", heads * head_dim, h, Some(false)),
            ],
            Attention::Mla {
                heads,
                q_lora,
                kv_lora,
                qk_nope,
                qk_rope,
                v_dim,
            } => {
                let mut v = Vec::new();
                match q_lora {
                    Some(r) => {
                        v.push(l("q_a_proj", h, r, None));
                        v.push(l("q_b_proj", r, heads * (qk_nope + qk_rope), Some(true)));
                    }
                    None => v.push(l("q_proj", h, heads * (qk_nope + qk_rope), Some(true))),
                }
                v.push(l("kv_a_proj", h, kv_lora + qk_rope, None));
                v.push(l(
                    "kv_b_proj",
                    kv_lora,
                    heads * (qk_nope + v_dim),
                    Some(true),
                ));
                v.push(l("o_proj", heads * v_dim, h, Some(false)));
                v
            }
        }
    }

    fn ffn_linears(
        &self,
        name_up: &'static str,
        name_down: &'static str,
        part: Part,
        ffn: u64,
        stored: u64,
        active: u64,
    ) -> Vec<Linear> {
        let up = if self.gated_ffn { 2 * ffn } else { ffn };
        vec![
            Linear {
                name: name_up,
                part,
                k: self.hidden,
                n: up,
                stored,
                active,
                tp_split: Some(true),
            },
            Linear {
                name: name_down,
                part,
                k: ffn,
                n: self.hidden,
                stored,
                active,
                tp_split: Some(false),
            },
        ]
    }

    /// Weight matrices of the feed-forward part of a block.
    pub fn ffn_linears_of(&self, kind: LayerKind) -> Vec<Linear> {
        match (kind, self.moe) {
            (LayerKind::Moe, Some(m)) => {
                let mut v = vec![Linear {
                    name: "router",
                    part: Part::Router,
                    k: self.hidden,
                    n: m.routed,
                    stored: 1,
                    active: 1,
                    tp_split: None,
                }];
                // Whole experts on each GPU of the expert-parallel group (expert tensor
                // parallelism 1): not split over the tensor-parallel ranks.
                v.extend(
                    self.ffn_linears(
                        "experts.gate_up",
                        "experts.down",
                        Part::RoutedExperts,
                        m.expert_ffn,
                        m.routed,
                        m.topk,
                    )
                    .into_iter()
                    .map(|l| Linear {
                        tp_split: None,
                        ..l
                    }),
                );
                if m.shared > 0 {
                    v.extend(self.ffn_linears(
                        "shared.gate_up",
                        "shared.down",
                        Part::SharedExperts,
                        m.shared_ffn,
                        m.shared,
                        m.shared,
                    ));
                }
                v
            }
            _ => self.ffn_linears(
                "mlp.gate_up",
                "mlp.down",
                Part::DenseFfn,
                self.dense_ffn,
                1,
                1,
            ),
        }
    }

    pub fn block_linears(&self, kind: LayerKind) -> Vec<Linear> {
        let mut v = self.attention_linears();
        v.extend(self.ffn_linears_of(kind));
        v
    }

    /// Norm weights, biases and other vectors in a block.
    pub fn block_vector_params(&self, kind: LayerKind) -> u64 {
        let mut p = 2 * self.hidden;
        if self.attention_bias {
            p += self.attention_linears().iter().map(|l| l.n).sum::<u64>();
        }
        if self.mlp_bias {
            p += self
                .ffn_linears_of(kind)
                .iter()
                .filter(|l| matches!(l.part, Part::DenseFfn | Part::SharedExperts))
                .map(|l| l.n * l.stored)
                .sum::<u64>();
        }
        if let Attention::Mla {
            q_lora, kv_lora, ..
        } = self.attention
        {
            p += q_lora.unwrap_or(0) + kv_lora;
        }
        if let (LayerKind::Moe, Some(m)) = (kind, self.moe) {
            p += m.routed; // router score-correction bias (DeepSeek-V3 aux-loss-free balancing)
        }
        p
    }

    pub fn head_linear(&self) -> Linear {
        Linear {
            name: "lm_head",
            part: Part::Head,
            k: self.hidden,
            n: self.vocab,
            stored: 1,
            active: 1,
            tp_split: Some(true),
        }
    }

    pub fn mtp_projection(&self) -> Linear {
        Linear {
            name: "mtp.eh_proj",
            part: Part::MtpProjection,
            k: 2 * self.hidden,
            n: self.hidden,
            stored: 1,
            active: 1,
            tp_split: None,
        }
    }

    /// Parameters of one block: (stored, active per token).
    pub fn block_params(&self, kind: LayerKind) -> (u64, u64) {
        let lin = self.block_linears(kind);
        let vec = self.block_vector_params(kind);
        (
            lin.iter().map(Linear::params).sum::<u64>() + vec,
            lin.iter().map(|l| l.k * l.n * l.active).sum::<u64>() + vec,
        )
    }

    pub fn params(&self) -> Params {
        let embedding = self.vocab * self.hidden;
        let head = if self.tied_embeddings {
            0
        } else {
            self.head_linear().params()
        };
        let (mut total, mut active) = (
            embedding + head + self.hidden,
            embedding + head + self.hidden,
        );
        for k in self.layer_kinds() {
            let (t, a) = self.block_params(k);
            total += t;
            active += a;
        }
        let mtp = self.mtp_depth
            * (self.block_params(self.mtp_layer_kind()).0
                + self.mtp_projection().params()
                + 3 * self.hidden);
        Params {
            total,
            active,
            embedding,
            head: self.head_linear().params(),
            mtp,
        }
    }

    /// Forward FLOPs per token of the attention core of one block at sequence length `seq`
    /// (causal: each token attends to `seq/2` keys on average).
    pub fn attention_core_flops(&self, seq: u64) -> f64 {
        let (dqk, dv) = self.attention.core_dims();
        2.0 * self.attention.heads() as f64 * (dqk + dv) as f64 * seq as f64 / 2.0
    }

    /// Forward FLOPs per token of the main model by operation, summed over blocks.
    pub fn forward_flops_by_op(&self, seq: u64) -> Vec<(String, f64)> {
        let mut ops: std::collections::BTreeMap<String, f64> = Default::default();
        for k in self.layer_kinds() {
            for l in self.block_linears(k) {
                *ops.entry(l.name.to_string()).or_default() += l.fwd_flops_per_token();
            }
            *ops.entry("attention.core".into()).or_default() += self.attention_core_flops(seq);
        }
        ops.insert("lm_head".into(), self.head_linear().fwd_flops_per_token());
        ops.into_iter().collect()
    }

    /// Training FLOPs per token of the main model (3 × forward, MTP excluded).
    pub fn training_flops_per_token(&self, seq: u64) -> f64 {
        3.0 * self
            .forward_flops_by_op(seq)
            .iter()
            .map(|(_, f)| f)
            .sum::<f64>()
    }

    /// Training FLOPs per token of the MTP modules alone.
    pub fn mtp_training_flops_per_token(&self, seq: u64) -> f64 {
        let per = self
            .block_linears(self.mtp_layer_kind())
            .iter()
            .map(Linear::fwd_flops_per_token)
            .sum::<f64>()
            + self.attention_core_flops(seq)
            + self.mtp_projection().fwd_flops_per_token()
            + self.head_linear().fwd_flops_per_token();
        3.0 * self.mtp_depth as f64 * per
    }

    /// Bytes per token that one block keeps for its backward pass.
    ///
    /// `act` is the format of cached GEMM inputs (DeepSeek-V3 caches them in FP8); norms and the
    /// residual stream stay BF16. `Selective` recomputes norms, up-projections and the SwiGLU
    /// output (DeepSeek-V3 §3.2.3); `MegatronSelective` keeps what `None` keeps (the core
    /// attention's own activations are the caller's); `Full` keeps only the block input (split over the
    /// tensor-parallel ranks, as Megatron's distributed checkpointed activations or sequence
    /// parallelism keep it). `sp`: sequence parallelism, which shards the norm and residual
    /// activations over the tensor-parallel ranks.
    pub fn activation_bytes_per_token(
        &self,
        kind: LayerKind,
        recompute: Recompute,
        act: Dtype,
        tp: u64,
        sp: bool,
    ) -> f64 {
        let h = self.hidden as f64;
        let a = act.bytes();
        let tp = tp as f64;
        if recompute == Recompute::Full {
            return 2.0 * h / tp;
        }
        let seq_tp = if sp { tp } else { 1.0 };
        let heads = self.attention.heads() as f64 / tp;
        let (dqk, dv) = self.attention.core_dims();
        let (dqk, dv) = (dqk as f64, dv as f64);
        // Residual stream at both norms (BF16), normed block inputs feeding GEMMs; sharded over
        // the tensor-parallel ranks under sequence parallelism.
        let mut b = (2.0 * 2.0 * h + 2.0 * h * a) / seq_tp;
        // Attention: latent/projection inputs, q/k/v for the core, its output and log-sum-exp.
        match self.attention {
            Attention::Mla {
                q_lora,
                kv_lora,
                qk_rope,
                ..
            } => {
                b += (q_lora.unwrap_or(0) + kv_lora + qk_rope) as f64 * a;
                if !recompute.recomputes_up_proj() {
                    b += heads * (2.0 * dqk + dv) * 2.0;
                }
            }
            Attention::Gqa {
                kv_heads, head_dim, ..
            } => {
                b += (heads + 2.0 * kv_heads as f64 / tp) * head_dim as f64 * 2.0;
            }
        }
        // The core attention's output (the output projection's input); what the core keeps
        // beyond its inputs depends on its kernel (see `step::staging`).
        b += heads * dv * a;
        // Feed-forward: SwiGLU inputs (and output unless recomputed), expert copies.
        let ffn = |width: f64, copies: f64| {
            let up = if self.gated_ffn { 2.0 } else { 1.0 };
            let keep_out = if !recompute.recomputes_act() {
                1.0
            } else {
                0.0
            };
            copies * width / tp * (up + keep_out) * a
        };
        // Megatron's `mlp`, `moe` and `shared_experts` recompute modules keep only the part's
        // input (the normed block input above).
        match (kind, self.moe) {
            (LayerKind::Moe, Some(_)) if recompute.recomputes_moe() => {}
            (LayerKind::Moe, Some(m)) => {
                b += m.topk as f64 * h * a / tp; // dispatched copies of the token
                b += ffn(m.expert_ffn as f64, m.topk as f64);
                if !recompute.recomputes_shared_experts() {
                    b += ffn(m.shared_ffn as f64, m.shared as f64);
                }
                b += m.routed as f64 * 4.0 / tp; // router probabilities (FP32)
            }
            _ if recompute.recomputes_mlp() => {}
            _ => b += ffn(self.dense_ffn as f64, 1.0),
        }
        // Dropout masks of the two residual branches, one byte per element.
        if self.hidden_dropout > 0.0 {
            b += 2.0 * h / seq_tp;
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn deepseek_v3() -> Model {
        let s = ModelSpec {
            name: Some("DeepSeek-V3".into()),
            hidden_size: Some(7168),
            num_hidden_layers: Some(61),
            num_attention_heads: Some(128),
            num_key_value_heads: Some(128),
            intermediate_size: Some(18432),
            vocab_size: Some(129280),
            n_routed_experts: Some(256),
            n_shared_experts: Some(1),
            num_experts_per_tok: Some(8),
            moe_intermediate_size: Some(2048),
            first_k_dense_replace: Some(3),
            moe_layer_freq: Some(1),
            n_group: Some(8),
            topk_group: Some(4),
            q_lora_rank: Some(1536),
            kv_lora_rank: Some(512),
            qk_nope_head_dim: Some(128),
            qk_rope_head_dim: Some(64),
            v_head_dim: Some(128),
            num_nextn_predict_layers: Some(1),
            ..Default::default()
        };
        Model::from_spec(&s, "t").unwrap()
    }

    #[test]
    fn deepseek_v3_parameter_counts() {
        let p = deepseek_v3().params();
        // Published: 671B total, 37B active (36.6–37.6B); MTP 11.5B unique (reference: 11.61B).
        assert!(
            (p.total as f64 / 671e9 - 1.0).abs() < 0.005,
            "total {}",
            p.total
        );
        assert!(
            (36.6e9..=37.6e9).contains(&(p.active as f64)),
            "active {}",
            p.active
        );
        assert!((p.mtp as f64 / 11.61e9 - 1.0).abs() < 0.01, "mtp {}", p.mtp);
    }

    #[test]
    fn deepseek_v3_flops_per_token() {
        let m = deepseek_v3();
        let f = m.training_flops_per_token(4096);
        // ISCA Table 2: 250 GFLOPs/token at 4K, causal, MTP excluded.
        assert!((f / 250e9 - 1.0).abs() < 0.02, "{f}");
        // Reference recomputation: 260.6 with MTP included.
        let with_mtp = f + m.mtp_training_flops_per_token(4096);
        assert!((with_mtp / 260.6e9 - 1.0).abs() < 0.01, "{with_mtp}");
        // ~465 GF at 32K and ~1202 at 128K (reference §1.3).
        assert!((m.training_flops_per_token(32768) / 465e9 - 1.0).abs() < 0.01);
        assert!((m.training_flops_per_token(131072) / 1202e9 - 1.0).abs() < 0.01);
    }

    #[test]
    fn flops_oracle_is_six_n_plus_attention() {
        // With no attention term (seq → 0) training FLOPs are 6 × active linear params.
        let m = deepseek_v3();
        let lin: f64 = m.forward_flops_by_op(0).iter().map(|(_, f)| f).sum();
        let p = m.params();
        let active_linear = p.active - p.embedding;
        // Non-linear active params are the norm vectors and router biases: < 0.1%.
        assert!((lin / 2.0 / active_linear as f64 - 1.0).abs() < 1e-3);
    }

    #[test]
    fn layer_kinds_follow_hf_semantics() {
        let m = deepseek_v3();
        let k = m.layer_kinds();
        assert_eq!(k.iter().filter(|&&k| k == LayerKind::Dense).count(), 3);
        assert_eq!(k[2], LayerKind::Dense);
        assert_eq!(k[3], LayerKind::Moe);
    }

    #[test]
    fn full_recompute_keeps_only_the_block_input() {
        let m = deepseek_v3();
        assert_eq!(
            m.activation_bytes_per_token(LayerKind::Moe, Recompute::Full, Dtype::Fp8, 1, false),
            2.0 * 7168.0
        );
        let sel = m.activation_bytes_per_token(
            LayerKind::Moe,
            Recompute::Selective,
            Dtype::Fp8,
            1,
            false,
        );
        let none =
            m.activation_bytes_per_token(LayerKind::Moe, Recompute::None, Dtype::Bf16, 1, false);
        assert!(sel < none && sel > 2.0 * 7168.0);
    }
}
