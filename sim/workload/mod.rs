//! Workloads: model math, parallel layout, pipeline schedules.

pub mod layout;
pub mod model;
pub mod ops;
pub mod schedule;
pub mod taskgraph;

use crate::config::model::{ModelSpec, HF_ALIASES};
use crate::config::workload::{
    AttentionKernelSpec, ParallelismSpec, PhaseSpec, PricingSpec, RoutingSpec, WorkloadSpec,
};
use crate::config::{Diagnostic, Source};
use crate::domain::{Dtype, Precision, Recompute};
use crate::hw::catalog::Architecture;
use crate::hw::AttentionKernel;
use crate::topo::Cluster;
use layout::Layout;
use model::Model;

/// Builds a validated layout from a parallelism section, sequence length, batch and key path.
/// Validates a layout: (parallelism, sequence, global batch, GPUs, key path).
type LayoutFn<'a> =
    dyn Fn(&ParallelismSpec, u64, u64, u64, &str) -> Result<Layout, Diagnostic> + 'a;

/// A validated workload on a given cluster.
#[derive(Debug, Clone)]
pub struct Workload {
    pub name: String,
    pub model: Model,
    pub precision: Precision,
    pub recompute: Recompute,
    /// Megatron's `--recompute-method` and `--recompute-num-layers` under full recompute.
    pub recompute_layers: Option<(crate::domain::RecomputeMethod, u64)>,
    /// The attention kernel, resolved for the cluster's chip.
    pub attention: AttentionKernel,
    pub loss: crate::domain::LossKernel,
    /// The document's alternatives: (name, overrides), each override checked.
    pub alternatives: Vec<(String, Vec<crate::config::Override>)>,
    /// The default layout (the training section and `parallelism` as written).
    pub layout: Layout,
    pub phases: Vec<Phase>,
    pub pricing: PricingSpec,
    pub routing: RoutingSpec,
    pub reliability: crate::config::reliability::ReliabilitySpec,
}

/// A stretch of training at one layout and batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub layout: Layout,
    pub steps: f64,
    pub tokens: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PhaseKind {
    /// Simulated: one or more segments (a batch ramp adds one at the ramp's mean batch).
    Simulated(Vec<Segment>),
    /// Reported GPU-hours, taken as given.
    Reported { gpu_hours: f64 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    pub name: String,
    pub kind: PhaseKind,
    /// The phase's own cluster size in nodes, where it sets one.
    pub nodes: Option<u64>,
    pub note: Option<String>,
}

/// Reads a Hugging Face `config.json` and overlays the YAML's own keys on it.
pub fn resolve_model(spec: &ModelSpec, src: &Source) -> Result<ModelSpec, Diagnostic> {
    let Some(rel) = &spec.hf_config else {
        return Ok(spec.clone());
    };
    let path = match &src.dir {
        Some(d) => d.join(rel),
        None => std::path::PathBuf::from(rel),
    };
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Diagnostic::new(
            &src.name,
            format!("\"{rel}\", which cannot be read ({e})"),
            "a path to a Hugging Face config.json, relative to the workload file",
        )
        .at("model.hf_config")
    })?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        Diagnostic::new(
            &shown,
            format!("invalid JSON ({e})"),
            "a Hugging Face config.json",
        )
        .line(e.line(), e.column())
    })?;
    let serde_json::Value::Object(map) = json else {
        return Err(Diagnostic::new(
            &shown,
            "a JSON value that is not an object",
            "a Hugging Face config.json object",
        ));
    };
    let kept: serde_json::Map<String, serde_json::Value> = map
        .into_iter()
        .filter(|(k, _)| {
            ModelSpec::HF_FIELDS.contains(&k.as_str()) || HF_ALIASES.contains(&k.as_str())
        })
        .collect();
    let base: ModelSpec = serde_path_to_error::deserialize(serde_json::Value::Object(kept))
        .map_err(|e| {
            let path = e.path().to_string();
            let (found, expected) =
                crate::config::diag::split_message(&e.inner().to_string(), &path);
            Diagnostic::new(&shown, found, expected).at(path)
        })?;
    Ok(spec.clone().overlay(base))
}

/// The document's `alternatives`, each override parsed: a bad one is an error at its place.
fn alternatives(
    spec: &WorkloadSpec,
    file: &str,
) -> Result<Vec<(String, Vec<crate::config::Override>)>, Diagnostic> {
    spec.alternatives
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let sets = a
                .set
                .iter()
                .enumerate()
                .map(|(j, raw)| {
                    crate::config::Override::parse(raw).map_err(|d| {
                        Diagnostic::new(file, d.found, d.expected)
                            .at(format!("alternatives.{i}.set.{j}"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((a.name.clone(), sets))
        })
        .collect()
}

impl Workload {
    pub fn new(
        spec: &WorkloadSpec,
        src: &Source,
        cluster: &Cluster,
    ) -> Result<Workload, Diagnostic> {
        let file = src.name.as_str();
        let model = Model::from_spec(&resolve_model(&spec.model, src)?, file)?;
        Self::with_model(spec, model, file, cluster, None)
    }

    /// The workload of `spec` with its model already built. With `layout`, that is its layout
    /// and it has no phases (a layout search builds each phase at the layouts it tries, with
    /// [`Workload::phase_at`]); without, the document's own layout and phases are validated.
    pub fn with_model(
        spec: &WorkloadSpec,
        model: Model,
        file: &str,
        cluster: &Cluster,
        layout: Option<Layout>,
    ) -> Result<Workload, Diagnostic> {
        let t = &spec.training;
        for (key, d) in [
            ("gemm", t.precision.gemm),
            ("attention", t.precision.attention),
        ] {
            if cluster.gpu.peak(d).is_none() {
                return Err(Diagnostic::new(
                    file,
                    format!(
                        "{} on {}, which has no {} tensor cores",
                        d.name(),
                        cluster.gpu_name,
                        d.name()
                    ),
                    "a data type the chip supports (e.g. bf16)",
                )
                .at(format!("training.precision.{key}")));
            }
        }
        let attention = match t.attention_kernel {
            AttentionKernelSpec::Auto => AttentionKernel::default_for(cluster.gpu.architecture),
            AttentionKernelSpec::Flash3 if cluster.gpu.architecture == Architecture::Ampere => {
                return Err(Diagnostic::new(
                    file,
                    format!("flash3 on {}, an Ampere chip", cluster.gpu_name),
                    "flash2 or unfused (FlashAttention-3 needs Hopper or later)",
                )
                .at("training.attention_kernel"));
            }
            AttentionKernelSpec::Flash3 => AttentionKernel::Flash3,
            AttentionKernelSpec::Flash2 => AttentionKernel::Flash2,
            AttentionKernelSpec::Unfused => AttentionKernel::Unfused,
        };
        if t.precision.attention == Dtype::Fp8 {
            return Err(Diagnostic::new(
                file,
                "fp8",
                "bf16 or fp16 (the attention model is calibrated on BF16 flash attention)",
            )
            .at("training.precision.attention"));
        }
        let recompute = match &t.recompute_modules {
            None => t.recompute,
            Some(names) => {
                let at = |found: String, expected: String| {
                    Diagnostic::new(file, found, expected).at("training.recompute_modules")
                };
                if !matches!(
                    t.recompute,
                    Recompute::Selective | Recompute::MegatronSelective
                ) {
                    return Err(at(
                        format!("a module list with recompute: {}", t.recompute.name()),
                        "recompute: selective or megatron_selective (Megatron's \
                         --recompute-modules refines its selective granularity)"
                            .into(),
                    ));
                }
                let m = crate::domain::RecomputeModules::from_names(names).map_err(|e| {
                    at(
                        e,
                        "Megatron-Core's module names core_attn, mla_up_proj, layernorm, moe_act"
                            .into(),
                    )
                })?;
                Recompute::Modules(m)
            }
        };
        let recompute_layers = match (t.recompute_num_layers, t.recompute_method) {
            (None, None) => None,
            (None, Some(m)) => {
                return Err(Diagnostic::new(
                    file,
                    format!("recompute_method {m:?} without recompute_num_layers").to_lowercase(),
                    "recompute_num_layers too (the layers each recompute unit covers)",
                )
                .at("training.recompute_method"))
            }
            (Some(n), _) if n == 0 || t.recompute != Recompute::Full => {
                return Err(Diagnostic::new(
                    file,
                    format!("{n} with recompute: {}", t.recompute.name()),
                    "a positive layer count with recompute: full (Megatron's \
                     --recompute-num-layers refines full recompute)",
                )
                .at("training.recompute_num_layers"))
            }
            (Some(n), m) => Some((m.unwrap_or(crate::domain::RecomputeMethod::Block), n)),
        };
        let gpus = cluster.gpus() as u64;
        let mk = |p: &ParallelismSpec, seq: u64, batch: u64, gpus: u64, at: &str| {
            Layout::new(p, seq, batch, gpus, &model, &cluster.gpu, file, at)
        };
        let searched = layout.is_some();
        let layout = match layout {
            Some(l) => l,
            None => mk(
                &spec.parallelism,
                t.seq_len,
                t.global_batch,
                gpus,
                "parallelism",
            )?,
        };
        let r = &spec.routing;
        if !(r.alpha.is_finite() && r.alpha > 0.0) {
            return Err(Diagnostic::new(
                file,
                r.alpha.to_string(),
                "a positive Dirichlet concentration",
            )
            .at("routing.alpha"));
        }
        if t.phases.is_empty() {
            return Err(Diagnostic::new(
                file,
                "no phases",
                "at least one phase with tokens or steps",
            )
            .at("training.phases"));
        }
        let phases = t
            .phases
            .iter()
            .enumerate()
            .filter(|_| !searched)
            .map(|(i, ph)| {
                let par = match &ph.parallelism {
                    Some(o) => spec.parallelism.with(o),
                    None => spec.parallelism.clone(),
                };
                phase(
                    ph,
                    i,
                    spec,
                    &par,
                    &mk,
                    (gpus, cluster.gpus_per_node as u64),
                    file,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Workload {
            name: spec.name.clone(),
            model,
            precision: t.precision.clone(),
            recompute,
            recompute_layers,
            attention,
            loss: t.loss_kernel,
            alternatives: alternatives(spec, file)?,
            layout,
            phases,
            pricing: spec.pricing.clone(),
            routing: spec.routing.clone(),
            reliability: spec.reliability.clone(),
        })
    }

    /// Phase `i` of `spec` at the layout `par` (its own `parallelism` override ignored: the
    /// caller chooses), with this workload's model on `cluster`: what a layout search prices.
    pub fn phase_at(
        &self,
        spec: &WorkloadSpec,
        i: usize,
        par: &ParallelismSpec,
        cluster: &Cluster,
        file: &str,
    ) -> Result<Phase, Diagnostic> {
        // (A plan refuses phase node counts up front: the search sizes the cluster.)
        let ph = &spec.training.phases[i];
        let gpus = cluster.gpus() as u64;
        let mk = |p: &ParallelismSpec, seq: u64, batch: u64, gpus: u64, at: &str| {
            Layout::new(p, seq, batch, gpus, &self.model, &cluster.gpu, file, at)
        };
        phase(
            ph,
            i,
            spec,
            par,
            &mk,
            (gpus, cluster.gpus_per_node as u64),
            file,
        )
    }
}

/// Phase `i` of `spec` at the parallel layout `par`.
fn phase(
    ph: &PhaseSpec,
    i: usize,
    spec: &WorkloadSpec,
    par: &ParallelismSpec,
    mk: &LayoutFn,
    (cluster_gpus, gpus_per_node): (u64, u64),
    file: &str,
) -> Result<Phase, Diagnostic> {
    let at = format!("training.phases.{i}");
    let err = |key: &str, found: String, expected: &str| {
        Diagnostic::new(file, found, expected).at(format!("{at}{key}"))
    };
    let gpus = match ph.nodes {
        Some(0) => return Err(err(".nodes", "0".into(), "a positive node count")),
        Some(_) if ph.reported_gpu_hours.is_some() => {
            return Err(err(
                ".nodes",
                "nodes on a reported phase".into(),
                "nodes on a simulated phase only (a reported one gives its GPU-hours)",
            ))
        }
        Some(n) => n * gpus_per_node,
        None => cluster_gpus,
    };
    if let Some(h) = ph.reported_gpu_hours {
        if ph.tokens.is_some() || ph.steps.is_some() {
            return Err(err(
                "",
                "reported_gpu_hours with tokens or steps".into(),
                "either reported_gpu_hours, or tokens/steps to simulate",
            ));
        }
        if !(h.is_finite() && h >= 0.0) {
            return Err(err(
                ".reported_gpu_hours",
                h.to_string(),
                "a non-negative number of GPU-hours",
            ));
        }
        return Ok(Phase {
            name: ph.name.clone(),
            kind: PhaseKind::Reported { gpu_hours: h },
            nodes: None,
            note: ph.note.clone(),
        });
    }
    let seq = ph.seq_len.unwrap_or(spec.training.seq_len);
    let batch = ph.global_batch.unwrap_or(spec.training.global_batch);
    let layout = mk(par, seq, batch, gpus, &format!("{at}.parallelism"))?;
    let per_step = layout.tokens_per_step() as f64;
    let total = match (ph.tokens, ph.steps) {
        (Some(t), None) => t.value,
        (None, Some(s)) => s.value * per_step,
        _ => {
            return Err(err(
                "",
                "neither or both of tokens and steps".into(),
                "exactly one of `tokens` or `steps`",
            ))
        }
    };
    let mut segments = Vec::new();
    let mut rest = total;
    if let Some(r) = &ph.batch_ramp {
        if r.tokens.value > total {
            return Err(err(
                ".batch_ramp.tokens",
                format!("{} tokens", r.tokens.value),
                "no more tokens than the phase has",
            ));
        }
        // A linear ramp in batch size: its mean batch, rounded to a layout-valid multiple.
        let unit = layout.dp * layout.micro_batch * 2;
        let mean = (((r.from + batch) as f64 / 2.0 / unit as f64).round() as u64).max(1) * unit;
        let ramp = mk(par, seq, mean, gpus, &format!("{at}.batch_ramp"))?;
        segments.push(Segment {
            steps: r.tokens.value / ramp.tokens_per_step() as f64,
            tokens: r.tokens.value,
            layout: ramp,
        });
        rest -= r.tokens.value;
    }
    segments.push(Segment {
        steps: (rest / per_step).ceil(),
        tokens: rest,
        layout,
    });
    Ok(Phase {
        name: ph.name.clone(),
        kind: PhaseKind::Simulated(segments),
        nodes: ph.nodes,
        note: ph.note.clone(),
    })
}
