//! The `model:` section of a workload, in Hugging Face `config.json` field names.
//!
//! Users may paste a real `config.json` into the YAML, or point at one with
//! `model: { hf_config: PATH }`; keys written next to `hf_config` override the file.
//! Validation into a [`crate::workload::model::Model`] happens in `workload::model`.

use serde::{Deserialize, Serialize};

macro_rules! model_fields {
    ($($(#[$m:meta])* $f:ident : $t:ty),* $(,)?) => {
        /// The model section as written. Every architecture field is optional here; which are
        /// required depends on the architecture and is checked when the model is built.
        #[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
        #[serde(deny_unknown_fields)]
        pub struct ModelSpec {
            /// Display name.
            #[serde(default)]
            pub name: Option<String>,
            /// Path to a Hugging Face `config.json`, relative to the workload file.
            #[serde(default)]
            pub hf_config: Option<String>,
            $($(#[$m])* #[serde(default)] pub $f: Option<$t>,)*
        }

        impl ModelSpec {
            /// Field names taken from a Hugging Face `config.json`; other keys there are ignored.
            pub const HF_FIELDS: &'static [&'static str] = &[$(stringify!($f)),*];

            /// `self`'s fields where set, else `base`'s.
            pub fn overlay(self, base: ModelSpec) -> ModelSpec {
                ModelSpec {
                    name: self.name.or(base.name),
                    hf_config: None,
                    $($f: self.$f.or(base.$f),)*
                }
            }
        }
    };
}

model_fields! {
    hidden_size: u64,
    num_hidden_layers: u64,
    num_attention_heads: u64,
    num_key_value_heads: u64,
    head_dim: u64,
    intermediate_size: u64,
    vocab_size: u64,
    tie_word_embeddings: bool,
    /// `silu` (SwiGLU, three matrices) or `gelu`/`gelu_new`/`relu`/`relu2` (two matrices).
    hidden_act: String,
    #[serde(alias = "num_local_experts", alias = "num_experts")]
    n_routed_experts: u64,
    n_shared_experts: u64,
    num_experts_per_tok: u64,
    moe_intermediate_size: u64,
    shared_expert_intermediate_size: u64,
    first_k_dense_replace: u64,
    moe_layer_freq: u64,
    n_group: u64,
    topk_group: u64,
    q_lora_rank: u64,
    kv_lora_rank: u64,
    qk_nope_head_dim: u64,
    qk_rope_head_dim: u64,
    v_head_dim: u64,
    num_nextn_predict_layers: u64,
    max_position_embeddings: u64,
    /// Biases on the attention projections (Hugging Face Llama `attention_bias`).
    attention_bias: bool,
    /// Biases on the feed-forward projections (Hugging Face Llama `mlp_bias`).
    mlp_bias: bool,
    /// Dropout on each block's two residual branches (and the embedding), as a probability
    /// (Hugging Face GPT-NeoX `hidden_dropout`).
    hidden_dropout: f64,
    /// Dropout on the attention probabilities (Hugging Face GPT-NeoX `attention_dropout`).
    attention_dropout: f64,
    /// `rope` (default: a rotary kernel on q and k), `learned_absolute` (Megatron's GPT
    /// default: a table added to the embedding) or `alibi` (MPT: a bias inside the attention
    /// kernel). MLA always ropes its rotary part.
    position_embedding_type: String,
}

/// Aliases accepted from `config.json` besides [`ModelSpec::HF_FIELDS`].
pub const HF_ALIASES: &[&str] = &["num_local_experts", "num_experts"];
