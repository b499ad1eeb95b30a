//! `trainsim validate`: published reference cases → predictions → an error table.
//!
//! A case names what to simulate (a whole run, one GEMM, one attention kernel, one collective or
//! one MoE dispatch/combine), the metric to read off it, the published value, a relative
//! tolerance and the source. Suites live in `tests/reference/cases/*.yaml`; paths inside them
//! are relative to the directory `validate` runs in (the repository root). Cases run in
//! parallel; results keep the suites' order, so output is the same at any thread count.

use crate::config::workload::AttentionKernelSpec;

use super::collective::{self, CollectiveOp, MoeArgs};
use crate::config::{parse_doc, Diagnostic, Override, Source};
use crate::domain::{Dtype, Fp8Scaling, MoeDispatcher};
use crate::hw::{
    AttentionKernel, AttentionShape, Calibration, GemmShape, KernelModel, KernelShape,
};
use crate::net::collective::{Algorithm, Op};
use crate::pipeline::{self, Engine};
use crate::report::Summary;
use crate::units::{ByteSize, Duration, FlopRate};
use crate::workload::model::{Attention, Model};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One suite file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    pub cases: Vec<CaseSpec>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A whole training run (`trainsim run`).
    #[default]
    Run,
    Gemm,
    Attention,
    /// An nccl-tests-style collective (`trainsim collective`).
    Collective,
    /// A DeepEP-style MoE dispatch or combine.
    Moe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// GPU-hours of `phases` (all of them when absent).
    GpuHours,
    /// Steady-state GPU-hours per 10¹² tokens at the main layout's step time.
    GpuHoursPerTrillionTokens,
    StepTimeS,
    TokensPerSPerGpu,
    /// Throughput × the source's FLOPs per token (`flops`).
    TflopsPerGpu,
    /// TFLOPS per GPU (source's FLOPs) over `peak`.
    Mfu,
    /// Kernel duration.
    TimeUs,
    /// Kernel FLOPs (attention: `flops` convention) over its duration.
    Tflops,
    /// nccl-tests bus bandwidth.
    BusbwGbS,
    /// DeepEP's RDMA / NVLink bandwidths.
    RdmaGbS,
    NvlinkGbS,
    /// Expected interruptions (all causes) of the longest phase's job over `window` of wall time.
    Interruptions,
    /// The longest phase's effective training time ratio (productive over wall time).
    Ettr,
    /// Effective GPU-hours (with failures, checkpoints, restarts, stragglers) of `phases` (all
    /// when absent).
    EffectiveGpuHours,
}

/// A published figure that is a bound (`>90%`) rather than a value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    /// A value: the prediction within the tolerance of it.
    #[default]
    Value,
    /// At least the published figure (less the tolerance).
    AtLeast,
    /// At most the published figure (plus the tolerance).
    AtMost,
}

/// FLOPs-per-token conventions of published throughput figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Flops {
    /// trainsim's own model FLOPs (3 passes, causal attention as half the score matrix).
    Model,
    /// Narayanan et al. SC21 eq. (3): 96·L·h²·(1 + s/(6h) + V/(16·L·h)) per token.
    Megatron2021,
    /// Megatron-LM `num_floating_point_operations` (r0.8): 12·L·h²·((1 + G/H + s/h) + g·F/h +
    /// V/(2·L·h)) per token, g = 1.5 for gated FFNs.
    MegatronCore,
    /// FlashAttention's benchmark: fwd + bwd = 3.5 × the causal forward 4·b·s²·H·d / 2.
    FlashBench,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pass {
    Fwd,
    Bwd,
    FwdBwd,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseSpec {
    pub name: String,
    #[serde(default)]
    pub kind: Kind,
    pub metric: Metric,
    pub published: f64,
    /// Relative tolerance, e.g. "10%".
    pub tolerance: String,
    /// Cheap enough for CI's quick set.
    #[serde(default)]
    pub quick: bool,
    /// Reported but not counted in the exit code; `why` must say why.
    #[serde(default = "yes")]
    pub gating: bool,
    #[serde(default)]
    pub why: Option<String>,
    /// Run cases: settings the sources leave open, each a list of overrides priced as a run of
    /// its own; the case's band is the central prediction plus the alternatives' differences on
    /// each side.
    #[serde(default)]
    pub alternatives: Vec<crate::config::workload::AlternativeSpec>,
    /// `tolerance` (the default) or `band`: a case whose inputs are unpublished passes when
    /// the published figure lies inside its band. `band_reason` says which input, written when
    /// the case is added.
    #[serde(default)]
    pub gate: Gate,
    #[serde(default)]
    pub band_reason: Option<String>,
    pub source: String,
    /// Calibration point (the constant was derived from this figure) or validation.
    #[serde(default)]
    pub calibration: bool,

    // run, collective, moe
    #[serde(default)]
    pub workload: Option<String>,
    #[serde(default)]
    pub topology: Option<String>,
    #[serde(default)]
    pub set: Vec<String>,
    #[serde(default)]
    pub phases: Vec<String>,
    #[serde(default)]
    pub flops: Option<Flops>,
    #[serde(default)]
    pub peak: Option<FlopRate>,
    /// `interruptions`: the wall-clock window the published count covers.
    #[serde(default)]
    pub window: Option<Duration>,
    /// Whether `published` is a value or a bound.
    #[serde(default)]
    pub bound: Bound,

    // gemm, attention
    #[serde(default)]
    pub gpu: Option<String>,
    #[serde(default)]
    pub sms: Option<u32>,
    #[serde(default)]
    pub m: Option<u64>,
    #[serde(default)]
    pub n: Option<u64>,
    #[serde(default)]
    pub k: Option<u64>,
    #[serde(default)]
    pub groups: Option<u64>,
    #[serde(default)]
    pub dtype: Option<Dtype>,
    #[serde(default)]
    pub wgrad: bool,
    /// FP8 GEMM scaling: `blockwise` (DeepGEMM, the default) or `tensorwise` (cuBLASLt).
    #[serde(default)]
    pub scaling: Fp8Scaling,
    #[serde(default)]
    pub attention_kernel: Option<AttentionKernelSpec>,
    #[serde(default)]
    pub pass: Option<Pass>,
    #[serde(default)]
    pub batch: Option<u64>,
    #[serde(default)]
    pub heads: Option<u64>,
    #[serde(default)]
    pub seq: Option<u64>,
    #[serde(default)]
    pub d_qk: Option<u64>,
    #[serde(default)]
    pub d_v: Option<u64>,
    #[serde(default = "yes")]
    pub causal: bool,

    // collective, moe
    #[serde(default)]
    pub op: Option<String>,
    #[serde(default)]
    pub ranks: Option<u32>,
    #[serde(default)]
    pub size: Option<ByteSize>,
    #[serde(default)]
    pub algo: Option<String>,
    #[serde(default)]
    pub ep: Option<u32>,
    #[serde(default)]
    pub tokens: Option<u64>,
}

fn yes() -> bool {
    true
}

/// What a case's pass is judged on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    /// The central prediction within the tolerance.
    #[default]
    Tolerance,
    /// The published figure inside the band of the case's alternatives.
    Band,
}

/// One row of the table.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CaseResult {
    pub case: String,
    pub metric: Metric,
    pub predicted: Option<f64>,
    pub published: f64,
    /// predicted / published − 1.
    pub error: Option<f64>,
    pub tolerance: f64,
    pub pass: bool,
    pub gating: bool,
    pub calibration: bool,
    /// What the case checks: `dense A100`, `dense H100`, `MoE`, `Blackwell` (runs, by chip and
    /// model), `kernels` or `collectives`.
    pub family: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    pub source: String,
    /// Why a case does not gate (required for those; `None` for gating cases).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// The low and high predictions of a case with alternatives.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub band: Option<[f64; 2]>,
    /// True when the case passes on its band rather than its tolerance.
    pub gate_on_band: bool,
    /// Whether the published figure is a bound.
    pub bound: Bound,
}

/// A case with where it came from, for messages.
#[derive(Debug, Clone)]
pub struct Case {
    pub file: String,
    pub index: usize,
    pub spec: CaseSpec,
    pub tolerance: f64,
}

fn parse_tolerance(t: &str) -> Option<f64> {
    let v = t.trim().strip_suffix('%')?.trim().parse::<f64>().ok()?;
    (v.is_finite() && v >= 0.0).then_some(v / 100.0)
}

/// Reads a file named inside a suite into a [`Source`]: the caller's I/O (the CLI reads the
/// file system), so that this module does none. `Sync`, as cases run in parallel.
pub type ReadSource<'a> = &'a (dyn Fn(&Path) -> Result<Source, Diagnostic> + Sync);

/// Parses the suites (in the order given: the CLI passes `dir`'s `*.yaml` in file-name order)
/// into cases, checking each case's tolerance, reason and name.
pub fn parse_suites(suites: &[Source], dir: &str) -> Result<Vec<Case>, Diagnostic> {
    let mut cases = Vec::new();
    for src in suites {
        let suite: Suite = parse_doc(src, &[])?;
        for (index, spec) in suite.cases.into_iter().enumerate() {
            let at = |key: &str| format!("cases.{index}.{key}");
            let bad = |key: &str, found: String, expected: &str| {
                Diagnostic::new(&src.name, found, expected)
                    .at(at(key))
                    .locate_in(&src.text)
            };
            let tolerance = parse_tolerance(&spec.tolerance).ok_or_else(|| {
                bad(
                    "tolerance",
                    format!("\"{}\"", spec.tolerance),
                    "a relative tolerance such as \"10%\"",
                )
            })?;
            if !(spec.published.is_finite() && spec.published > 0.0) {
                return Err(bad(
                    "published",
                    spec.published.to_string(),
                    "a positive published figure (errors are taken relative to it)",
                ));
            }
            if !spec.gating && spec.why.is_none() {
                return Err(bad(
                    "why",
                    "a non-gating case without a reason".into(),
                    "why: the reason this case does not count towards the exit code",
                ));
            }
            if spec.gate == Gate::Band
                && (spec.alternatives.is_empty() || spec.band_reason.is_none())
            {
                return Err(bad(
                    "gate",
                    "band without alternatives and a band_reason".into(),
                    "alternatives (the settings the sources leave open) and band_reason (which input is unpublished, written when the case is added)",
                ));
            }
            for (i, a) in spec.alternatives.iter().enumerate() {
                for (j, raw) in a.set.iter().enumerate() {
                    if let Err(d) = Override::parse(raw) {
                        return Err(bad(
                            &format!("alternatives.{i}.set.{j}"),
                            d.found,
                            &d.expected,
                        ));
                    }
                }
            }
            if !spec.alternatives.is_empty() && spec.kind != Kind::Run {
                return Err(bad(
                    "alternatives",
                    format!("alternatives on a {:?} case", spec.kind).to_lowercase(),
                    "alternatives on run cases only",
                ));
            }
            if cases.iter().any(|c: &Case| c.spec.name == spec.name) {
                return Err(bad(
                    "name",
                    format!("\"{}\" a second time", spec.name),
                    "a case name unique across all suites",
                ));
            }
            cases.push(Case {
                file: src.name.clone(),
                index,
                spec,
                tolerance,
            });
        }
    }
    if cases.is_empty() {
        return Err(Diagnostic::new(
            dir,
            "no cases",
            "at least one suite file (*.yaml) with cases",
        ));
    }
    Ok(cases)
}

/// What one simulated run gives the cases that share it: the summary and the model (for the
/// published FLOP conventions).
type RunOutput = Result<(Summary, Model), Diagnostic>;

fn run_key(c: &Case) -> Option<(Option<String>, Option<String>, Vec<String>)> {
    (c.spec.kind == Kind::Run).then(|| {
        (
            c.spec.workload.clone(),
            c.spec.topology.clone(),
            c.spec.set.clone(),
        )
    })
}

fn simulate(c: &Case, cal: &Calibration, read: ReadSource) -> RunOutput {
    let s = &c.spec;
    let what = "a path relative to the repository root";
    let topology = read(Path::new(&need(c, &s.topology, "topology", what)?))?;
    let workload = read(Path::new(&need(c, &s.workload, "workload", what)?))?;
    let sets = s
        .set
        .iter()
        .map(|o| Override::parse(o))
        .collect::<Result<Vec<_>, _>>()?;
    let sum = pipeline::run(
        &topology,
        &workload,
        &sets,
        Engine::Des { full: false },
        cal,
    )?;
    let (_, w) = pipeline::load(&topology, &workload, &sets)?;
    Ok((sum, w.model))
}

/// Runs `cases` (in parallel) against `cal`, reading the files they name with `read`. Cases
/// that share a scenario share one run. `tick` is called as each case finishes (in any order).
pub fn run(
    cases: &[Case],
    cal: &Calibration,
    read: ReadSource,
    tick: &(dyn Fn() + Sync),
) -> Vec<CaseResult> {
    let mut firsts: Vec<&Case> = Vec::new();
    for c in cases {
        if run_key(c).is_some() && !firsts.iter().any(|f| run_key(f) == run_key(c)) {
            firsts.push(c);
        }
    }
    let runs: Vec<RunOutput> = firsts
        .par_iter()
        .map(|c| guarded(c, || simulate(c, cal, read)))
        .collect();
    let output = |c: &Case| -> Option<&RunOutput> {
        firsts
            .iter()
            .position(|f| run_key(f) == run_key(c))
            .map(|i| &runs[i])
    };
    cases
        .par_iter()
        .map(|c| {
            let s = &c.spec;
            let result = match (s.kind, output(c)) {
                (Kind::Run, Some(Ok(out))) => predict_run(c, out),
                (Kind::Run, Some(Err(d))) => Err(d.clone()),
                _ => guarded(c, || predict(c, cal, read)),
            };
            let (predicted, failure) = match result {
                Ok(v) => (Some(v), None),
                Err(d) => (None, Some(d.to_string().replace('\n', "; "))),
            };
            let error = predicted.map(|p| p / s.published - 1.0);
            let (band, band_failure) = match predicted.map(|p| band_of(c, p, cal, read)) {
                Some(Ok(b)) => (b, None),
                Some(Err(d)) => (None, Some(d.to_string().replace('\n', "; "))),
                None => (None, None),
            };
            let failure = failure.or(band_failure);
            let family = match (s.kind, output(c)) {
                (Kind::Gemm | Kind::Attention, _) => "kernels",
                (Kind::Collective | Kind::Moe, _) => "collectives",
                (Kind::Run, Some(Ok(_)))
                    if matches!(
                        s.metric,
                        Metric::Interruptions | Metric::Ettr | Metric::EffectiveGpuHours
                    ) =>
                {
                    "goodput"
                }
                (Kind::Run, Some(Ok((sum, m)))) => run_family(&sum.gpu, m),
                (Kind::Run, _) => "runs that failed",
            };
            tick();
            CaseResult {
                case: s.name.clone(),
                metric: s.metric,
                predicted,
                published: s.published,
                error,
                tolerance: c.tolerance,
                pass: failure.is_none()
                    && match (s.gate, band) {
                        (Gate::Band, Some([lo, hi])) => lo <= s.published && s.published <= hi,
                        (Gate::Band, None) => false,
                        (Gate::Tolerance, _) => match s.bound {
                            Bound::Value => error.is_some_and(|e| e.abs() <= c.tolerance),
                            Bound::AtLeast => error.is_some_and(|e| e >= -c.tolerance),
                            Bound::AtMost => error.is_some_and(|e| e <= c.tolerance),
                        },
                    },
                gating: s.gating,
                calibration: s.calibration,
                family,
                failure,
                source: s.source.clone(),
                why: s.why.clone(),
                band,
                gate_on_band: s.gate == Gate::Band,
                bound: s.bound,
            }
        })
        .collect()
}

/// The band of a run case with alternatives: its central prediction `central` plus each
/// alternative's difference, the lowering ones for the low end and the raising ones for the
/// high. `None` without alternatives; an alternative that does not run is the case's failure.
fn band_of(
    c: &Case,
    central: f64,
    cal: &Calibration,
    read: ReadSource,
) -> Result<Option<[f64; 2]>, Diagnostic> {
    if c.spec.alternatives.is_empty() {
        return Ok(None);
    }
    let d: Vec<f64> = c
        .spec
        .alternatives
        .par_iter()
        .map(|a| {
            let mut alt = c.clone();
            alt.spec.set.extend(a.set.iter().cloned());
            let out = guarded(&alt, || simulate(&alt, cal, read));
            out.and_then(|o| predict_run(&alt, &o))
                .map(|p| p - central)
                .map_err(|e| {
                    Diagnostic::new(
                        e.file.clone(),
                        format!("the alternative '{}' does not run: {}", a.name, e.found),
                        e.expected.clone(),
                    )
                })
        })
        .collect::<Result<_, _>>()?;
    let r = crate::report::summary::BandRange::around(central, d);
    Ok(Some([r.low, r.high]))
}

/// A run's family: Blackwell chips, then MoE models, then dense by chip generation.
fn run_family(gpu: &str, m: &Model) -> &'static str {
    let g = gpu.to_ascii_uppercase();
    if g.contains("B200") || g.contains("B300") || g.contains("GB2") {
        "Blackwell"
    } else if m.moe.is_some() {
        "MoE"
    } else if g.contains("A100") {
        "dense A100"
    } else {
        "dense H100"
    }
}

/// Runs `f`, turning a panic (a trainsim bug) into this case's failure so that one broken case
/// cannot take the whole table down.
fn guarded<T>(c: &Case, f: impl FnOnce() -> Result<T, Diagnostic>) -> Result<T, Diagnostic> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        Err(Diagnostic::new(
            &c.file,
            format!("an internal error (a trainsim bug): {msg}"),
            "a simulation that completes",
        )
        .at(format!("cases.{}", c.index)))
    })
}

/// Whether every gating case passed.
pub fn all_pass(results: &[CaseResult]) -> bool {
    results.iter().all(|r| r.pass || !r.gating)
}

fn need<T: Clone>(c: &Case, v: &Option<T>, key: &str, what: &str) -> Result<T, Diagnostic> {
    v.clone().ok_or_else(|| {
        Diagnostic::new(&c.file, format!("no `{key}`"), what).at(format!("cases.{}.{key}", c.index))
    })
}

fn wrong_metric(c: &Case, allowed: &str) -> Diagnostic {
    Diagnostic::new(
        &c.file,
        format!("metric {:?} for a {:?} case", c.spec.metric, c.spec.kind),
        allowed.to_string(),
    )
    .at(format!("cases.{}.metric", c.index))
}

fn predict(c: &Case, cal: &Calibration, read: ReadSource) -> Result<f64, Diagnostic> {
    match c.spec.kind {
        Kind::Run => predict_run(c, &simulate(c, cal, read)?),
        Kind::Gemm | Kind::Attention => predict_kernel(c, cal),
        Kind::Collective | Kind::Moe => predict_network(c, cal, read),
    }
}

/// FLOPs per token of `m` at sequence length `s` under a published convention; `None` for a
/// kernel-level convention (`flash_bench`), which has no per-token meaning.
pub fn flops_per_token(conv: Flops, m: &Model, s: u64, model_flops: f64) -> Option<f64> {
    let (l, h, v, f) = (
        m.layers as f64,
        m.hidden as f64,
        m.vocab as f64,
        m.dense_ffn as f64,
    );
    let s = s as f64;
    let (heads, kv, q) = match m.attention {
        Attention::Gqa {
            heads,
            kv_heads,
            head_dim,
        } => (heads as f64, kv_heads as f64, (heads * head_dim) as f64 / h),
        Attention::Mla { heads, .. } => (heads as f64, heads as f64, 1.0),
    };
    let g = if m.gated_ffn { 1.5 } else { 1.0 };
    Some(match conv {
        Flops::Model => model_flops,
        Flops::Megatron2021 => 96.0 * l * h * h * (1.0 + s / (6.0 * h) + v / (16.0 * l * h)),
        Flops::MegatronCore => {
            12.0 * l * h * h * ((1.0 + kv / heads + s / h) * q + g * f / h + v / (2.0 * l * h))
        }
        Flops::FlashBench => return None,
    })
}

fn predict_run(c: &Case, (sum, model): &(Summary, Model)) -> Result<f64, Diagnostic> {
    let s = &c.spec;
    let tflops = |c: &Case| -> Result<f64, Diagnostic> {
        let conv = need(c, &c.spec.flops, "flops", "the source's FLOP convention")?;
        let fpt = flops_per_token(conv, model, sum.layout.seq_len, sum.model.flops_per_token)
            .ok_or_else(|| {
                Diagnostic::new(
                    &c.file,
                    "flops: flash_bench for a whole run",
                    "model, megatron2021 or megatron_core (flash_bench is for attention cases)",
                )
                .at(format!("cases.{}.flops", c.index))
            })?;
        Ok(sum.tokens_per_gpu_s * fpt / 1e12)
    };
    Ok(match s.metric {
        Metric::GpuHours if s.phases.is_empty() => sum.gpu_hours,
        Metric::EffectiveGpuHours if s.phases.is_empty() => sum.effective_gpu_hours,
        Metric::Interruptions | Metric::Ettr => {
            let main = sum
                .goodput
                .as_ref()
                .and_then(|g| g.phases.iter().max_by(|a, b| a.ideal_s.total_cmp(&b.ideal_s)))
                .ok_or_else(|| wrong_metric(c, "a run metric (this run has no simulated phase)"))?;
            if s.metric == Metric::Ettr {
                main.ettr
            } else {
                let w = need(c, &s.window, "window", "the wall-clock window the count covers, e.g. \"54 d\"")?;
                // Interruptions arrive in wall-clock time, restarts included.
                (main.params.rate_per_s + main.params.planned_rate_per_s) * w.secs
            }
        }
        Metric::GpuHours | Metric::EffectiveGpuHours => {
            let effective = s.metric == Metric::EffectiveGpuHours;
            let mut total = 0.0;
            for p in &s.phases {
                let ph = sum.phases.iter().find(|x| &x.name == p).ok_or_else(|| {
                    Diagnostic::new(
                        &c.file,
                        format!("phase \"{p}\""),
                        format!(
                            "one of the workload's phases: {}",
                            sum.phases
                                .iter()
                                .map(|x| x.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                    .at(format!("cases.{}.phases", c.index))
                })?;
                total += if effective {
                    ph.effective_gpu_hours
                } else {
                    ph.gpu_hours
                };
            }
            total
        }
        Metric::GpuHoursPerTrillionTokens => {
            sum.step_time_s * sum.gpus as f64 / 3600.0 / sum.tokens_per_step as f64 * 1e12
        }
        Metric::StepTimeS => sum.step_time_s,
        Metric::TokensPerSPerGpu => sum.tokens_per_gpu_s,
        Metric::TflopsPerGpu => tflops(c)?,
        Metric::Mfu => {
            let peak = need(c, &s.peak, "peak", "the peak the source divides by")?;
            tflops(c)? * 1e12 / peak.flops
        }
        _ => {
            return Err(wrong_metric(
                c,
                "gpu_hours, effective_gpu_hours, gpu_hours_per_trillion_tokens, step_time_s, tokens_per_s_per_gpu, tflops_per_gpu, mfu, interruptions or ettr",
            ))
        }
    })
}

fn predict_kernel(c: &Case, cal: &Calibration) -> Result<f64, Diagnostic> {
    let s = &c.spec;
    let catalog = crate::builtin::catalog();
    let name = need(c, &s.gpu, "gpu", "a chip of the catalog, e.g. H100")?;
    let (_, gpu) = catalog.get(&name).ok_or_else(|| {
        Diagnostic::new(&c.file, format!("gpu \"{name}\""), "a chip of the catalog")
            .at(format!("cases.{}.gpu", c.index))
    })?;
    let sms = s.sms.unwrap_or(gpu.sms.value);
    let shape_dims = "a positive integer";
    let mut km = KernelModel::new(gpu, cal);
    let (secs, flops) = match s.kind {
        Kind::Gemm => {
            let k = KernelShape::Gemm(GemmShape {
                m: need(c, &s.m, "m", shape_dims)?,
                n: need(c, &s.n, "n", shape_dims)?,
                k: need(c, &s.k, "k", shape_dims)?,
                groups: s.groups.unwrap_or(1),
                dtype: need(c, &s.dtype, "dtype", "fp8, bf16, fp16 or fp32")?,
                scaling: s.scaling,
                wgrad: s.wgrad,
            });
            (km.time(&k, sms).as_secs_f64(), k.flops())
        }
        _ => {
            km = km.with_attention(match s.attention_kernel.unwrap_or_default() {
                AttentionKernelSpec::Auto => AttentionKernel::default_for(gpu.architecture),
                AttentionKernelSpec::Flash3 => AttentionKernel::Flash3,
                AttentionKernelSpec::Flash2 => AttentionKernel::Flash2,
                AttentionKernelSpec::Unfused => AttentionKernel::Unfused,
            });
            let seq = need(c, &s.seq, "seq", shape_dims)?;
            let shape = |backward| -> Result<KernelShape, Diagnostic> {
                Ok(KernelShape::Attention(AttentionShape {
                    backward,
                    batch: s.batch.unwrap_or(1),
                    heads: need(c, &s.heads, "heads", shape_dims)?,
                    seq_q: seq,
                    seq_kv: seq,
                    d_qk: need(c, &s.d_qk, "d_qk", shape_dims)?,
                    d_v: need(c, &s.d_v, "d_v", shape_dims)?,
                    causal: s.causal,
                    dropout: false,
                }))
            };
            let t = |b| -> Result<(f64, f64), Diagnostic> {
                let k = shape(b)?;
                Ok((km.time(&k, sms).as_secs_f64(), k.flops()))
            };
            let pass = need(c, &s.pass, "pass", "fwd, bwd or fwd_bwd")?;
            let (secs, model_flops) = match pass {
                Pass::Fwd => t(false)?,
                Pass::Bwd => t(true)?,
                Pass::FwdBwd => {
                    let (a, fa) = t(false)?;
                    let (b, fb) = t(true)?;
                    (a + b, fa + fb)
                }
            };
            let flops = match s.flops {
                Some(Flops::FlashBench) => {
                    let fwd = 4.0
                        * (s.batch.unwrap_or(1) * seq * seq) as f64
                        * (need(c, &s.heads, "heads", shape_dims)? * s.d_qk.unwrap_or(0)) as f64
                        / if s.causal { 2.0 } else { 1.0 };
                    match pass {
                        Pass::Fwd => fwd,
                        Pass::Bwd => 2.5 * fwd,
                        Pass::FwdBwd => 3.5 * fwd,
                    }
                }
                _ => model_flops,
            };
            (secs, flops)
        }
    };
    match s.metric {
        Metric::TimeUs => Ok(secs * 1e6),
        Metric::Tflops => Ok(flops / secs / 1e12),
        _ => Err(wrong_metric(c, "time_us or tflops")),
    }
}

fn predict_network(c: &Case, cal: &Calibration, read: ReadSource) -> Result<f64, Diagnostic> {
    let s = &c.spec;
    let topology = read(Path::new(&need(
        c,
        &s.topology,
        "topology",
        "a path relative to the repository root",
    )?))?;
    let op_name = need(c, &s.op, "op", "an operation name")?;
    let bad_op = |expected: &str| {
        Diagnostic::new(&c.file, format!("op \"{op_name}\""), expected.to_string())
            .at(format!("cases.{}.op", c.index))
    };
    let (op, moe) = if s.kind == Kind::Moe {
        let op = match op_name.as_str() {
            "dispatch" => CollectiveOp::MoeDispatch,
            "combine" => CollectiveOp::MoeCombine,
            _ => return Err(bad_op("dispatch or combine")),
        };
        let moe = MoeArgs {
            ep: need(c, &s.ep, "ep", "expert-parallel ranks")?,
            tokens: s.tokens.unwrap_or(4096),
            hidden: 7168,
            topk: 8,
            experts: 256,
            groups: 8,
            topk_groups: 4,
            dispatch_bytes: match s.dtype.unwrap_or(Dtype::Fp8) {
                Dtype::Fp8 => 1.0,
                _ => 2.0,
            },
            dispatcher: MoeDispatcher::Deepep,
        };
        (op, Some(moe))
    } else {
        let op = match op_name.as_str() {
            "all_reduce" => Op::AllReduce,
            "all_gather" => Op::AllGather,
            "reduce_scatter" => Op::ReduceScatter,
            "all_to_all" => Op::AllToAll,
            _ => {
                return Err(bad_op(
                    "all_reduce, all_gather, reduce_scatter or all_to_all",
                ))
            }
        };
        (CollectiveOp::Plain(op), None)
    };
    let algo = match s.algo.as_deref().unwrap_or("auto") {
        "auto" => Algorithm::Auto,
        "ring" => Algorithm::Ring,
        "nvls" => Algorithm::Nvls,
        "tree" => Algorithm::Tree,
        "hierarchical" => Algorithm::Hierarchical,
        "nvls-tree" => Algorithm::NvlsTree,
        "collnet" => Algorithm::CollNet,
        other => {
            return Err(Diagnostic::new(
                &c.file,
                format!("algo \"{other}\""),
                "auto, ring, nvls, nvls-tree, collnet, tree or hierarchical",
            )
            .at(format!("cases.{}.algo", c.index)))
        }
    };
    let size = s.size.map(|b| b.bytes).unwrap_or(1073741824.0);
    let sets = s
        .set
        .iter()
        .map(|o| Override::parse(o))
        .collect::<Result<Vec<_>, _>>()?;
    let ranks = s.ranks.unwrap_or(8);
    let rows = collective::run(&topology, &sets, op, ranks, &[size], algo, moe, cal)?;
    let row = &rows[0];
    match s.metric {
        Metric::BusbwGbS => Ok(row.busbw_gb_s),
        Metric::RdmaGbS => row
            .rdma_gb_s
            .ok_or_else(|| wrong_metric(c, "nvlink_gb_s (this EP group stays in one node)")),
        Metric::NvlinkGbS => row.nvlink_gb_s.ok_or_else(|| wrong_metric(c, "rdma_gb_s")),
        _ => Err(wrong_metric(c, "busbw_gb_s, rdma_gb_s or nvlink_gb_s")),
    }
}

fn fmt_value(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.3}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}K", v / 1e3)
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.4}")
    }
}

fn metric_name(m: Metric) -> String {
    serde_json::to_value(m)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A relative error as a signed percentage, one decimal: `+5.2%`.
fn signed_pct(e: f64) -> String {
    format!("{:+.1}%", e * 100.0)
}

/// The table `validate` prints (and `results/validation.md` holds), as Markdown.
pub fn table(results: &[CaseResult]) -> String {
    let mut out = String::from(
        "| case | metric | predicted | published | error | tolerance | result |\n|---|---|---:|---:|---:|---:|---|\n",
    );
    for r in results {
        let verdict = match (r.pass, r.gating, &r.failure) {
            (_, _, Some(_)) => "**error**",
            (true, true, _) if r.gate_on_band => "pass (on its band)",
            (false, true, _) if r.gate_on_band => "**FAIL** (outside its band)",
            (true, true, _) => "pass",
            (false, true, _) => "**FAIL**",
            (true, false, _) => "pass (not gating)",
            (false, false, _) => "fail (not gating)",
        };
        out.push_str(&format!(
            "| {}{} | {} | {} | {} | {} | {} | {} |\n",
            r.case,
            if r.calibration { " (cal.)" } else { "" },
            metric_name(r.metric),
            match (r.predicted, r.band) {
                (Some(p), Some([lo, hi])) =>
                    format!("{} ({}–{})", fmt_value(p), fmt_value(lo), fmt_value(hi)),
                (Some(p), None) => fmt_value(p),
                (None, _) => "–".into(),
            },
            fmt_value(r.published),
            r.error.map(signed_pct).unwrap_or_else(|| "–".into()),
            match r.bound {
                Bound::Value => format!("±{:.0}%", r.tolerance * 100.0),
                Bound::AtLeast => format!("≥ −{:.0}%", r.tolerance * 100.0),
                Bound::AtMost => format!("≤ +{:.0}%", r.tolerance * 100.0),
            },
            verdict
        ));
    }
    out.push_str(&summary(results));
    for r in results.iter().filter(|r| r.failure.is_some()) {
        out.push_str(&format!(
            "\n{}: {}\n",
            r.case,
            r.failure.as_deref().unwrap_or("")
        ));
    }
    out
}

/// Pass counts and error means over the validation cases alone (calibration points are counted
/// apart: they reproduce what a constant was derived from, and check nothing), overall and by
/// family, with the worst case of each.
pub fn summary(results: &[CaseResult]) -> String {
    let val: Vec<&CaseResult> = results.iter().filter(|r| !r.calibration).collect();
    let gating: Vec<&CaseResult> = val.iter().copied().filter(|r| r.gating).collect();
    let cal: Vec<&CaseResult> = results.iter().filter(|r| r.calibration).collect();
    let mut out = format!(
        "\n{} of {} gating validation cases pass; {} of {} calibration points reproduce; {} cases in all.\n",
        gating.iter().filter(|r| r.pass).count(),
        gating.len(),
        cal.iter().filter(|r| r.pass).count(),
        cal.len(),
        results.len()
    );
    let line = |name: &str, rs: &[&CaseResult]| -> Option<String> {
        let errs: Vec<(&CaseResult, f64)> = rs
            .iter()
            .filter_map(|r| r.error.map(|e| (*r, e.abs())))
            .collect();
        let worst = errs.iter().max_by(|a, b| a.1.total_cmp(&b.1))?;
        let mape = errs.iter().map(|e| e.1).sum::<f64>() / errs.len() as f64;
        Some(format!(
            "| {name} | {} | {:.1}% | {} ({}) |\n",
            errs.len(),
            mape * 100.0,
            worst.0.case,
            signed_pct(worst.0.error.unwrap_or(0.0))
        ))
    };
    out.push_str(
        "\nValidation-only mean absolute error (calibration points excluded):\n\n| cases | n | MAPE | worst |\n|---|---:|---:|---|\n",
    );
    let mut rows = Vec::new();
    rows.extend(line("gating", &gating));
    rows.extend(line("all validation", &val));
    let mut families: Vec<&str> = gating.iter().map(|r| r.family).collect();
    families.sort_unstable();
    families.dedup();
    for f in families {
        let of: Vec<&CaseResult> = gating.iter().copied().filter(|r| r.family == f).collect();
        rows.extend(line(&format!("gating, {f}"), &of));
    }
    out.push_str(&rows.concat());
    out
}

/// The Markdown notes under the table in `results/validation.md`: each case that does not gate,
/// with its result and the reason it does not count towards the exit code.
pub fn not_gating_notes(results: &[CaseResult]) -> String {
    let mut out = String::new();
    for r in results.iter().filter(|r| !r.gating) {
        let error = r
            .error
            .map(signed_pct)
            .unwrap_or_else(|| "no prediction".into());
        out.push_str(&format!(
            "- **{}** ({error}, {}): {}\n",
            r.case,
            if r.pass {
                "within tolerance"
            } else {
                "outside tolerance"
            },
            r.why.as_deref().unwrap_or("")
        ));
    }
    if out.is_empty() {
        return out;
    }
    format!("\n## Cases that do not gate, and why\n\n{out}")
}

/// `{"cases": [...]}`.
pub fn json(results: &[CaseResult]) -> String {
    serde_json::to_string_pretty(&serde_json::json!({ "cases": results }))
        .expect("results serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A case result at `error` (a ±15% step-time case), gating and not a calibration point.
    fn row(case: &str, error: f64) -> CaseResult {
        CaseResult {
            case: case.into(),
            metric: Metric::StepTimeS,
            predicted: Some(1.0 + error),
            published: 1.0,
            error: Some(error),
            tolerance: 0.15,
            pass: error.abs() <= 0.15,
            gating: true,
            calibration: false,
            family: "dense H100",
            failure: None,
            source: "a paper".into(),
            why: None,
            band: None,
            gate_on_band: false,
            bound: Bound::Value,
        }
    }

    /// The notes under the Markdown table list exactly the cases that do not gate, each with its
    /// error and its reason, and are absent when every case gates.
    #[test]
    fn notes_list_each_case_that_does_not_gate_with_its_reason() {
        let row = |case: &str, error: f64, gating: bool, why: Option<&str>| CaseResult {
            gating,
            why: why.map(str::to_string),
            ..row(case, error)
        };
        let gating = row("a", 0.05, true, None);
        assert_eq!(not_gating_notes(std::slice::from_ref(&gating)), "");
        let notes = not_gating_notes(&[
            gating,
            row("b", -0.247, false, Some("settings unpublished")),
            row("c", 0.10, false, Some("older kernel")),
        ]);
        assert_eq!(
            notes,
            "\n## Cases that do not gate, and why\n\n\
             - **b** (-24.7%, outside tolerance): settings unpublished\n\
             - **c** (+10.0%, within tolerance): older kernel\n"
        );
    }

    /// Calibration points count apart: they are in neither the pass total nor the error means,
    /// and each family's line names its worst case.
    #[test]
    fn summary_counts_validation_cases_only() {
        let row = |case: &str, error: f64, calibration: bool, family| CaseResult {
            calibration,
            family,
            ..row(case, error)
        };
        let s = summary(&[
            row("a", 0.05, false, "dense H100"),
            row("b", -0.20, false, "MoE"),
            row("k", 0.30, true, "kernels"),
        ]);
        assert_eq!(
            s,
            "\n1 of 2 gating validation cases pass; 0 of 1 calibration points reproduce; 3 cases in all.\n\n\
             Validation-only mean absolute error (calibration points excluded):\n\n\
             | cases | n | MAPE | worst |\n|---|---:|---:|---|\n\
             | gating | 2 | 12.5% | b (-20.0%) |\n\
             | all validation | 2 | 12.5% | b (-20.0%) |\n\
             | gating, MoE | 1 | 20.0% | b (-20.0%) |\n\
             | gating, dense H100 | 1 | 5.0% | a (+5.0%) |\n"
        );
    }

    #[test]
    fn tolerances_parse_as_percentages() {
        assert_eq!(parse_tolerance("10%"), Some(0.10));
        assert_eq!(parse_tolerance(" 2.5 % "), Some(0.025));
        assert_eq!(parse_tolerance("10"), None);
        assert_eq!(parse_tolerance("-1%"), None);
    }

    /// Megatron's formulas against the per-sequence figures NVIDIA publishes for GPT-3 175B
    /// (2.20e15 per 2048-token sequence, `nemo_megatron/README_175b.md`) and the SC21 form.
    #[test]
    fn flop_conventions_match_published_per_sequence_figures() {
        let m = Model {
            name: "gpt3-175b".into(),
            hidden: 12288,
            layers: 96,
            vocab: 51200,
            tied_embeddings: true,
            attention: Attention::Gqa {
                heads: 96,
                kv_heads: 96,
                head_dim: 128,
            },
            gated_ffn: false,
            dense_ffn: 4 * 12288,
            moe: None,
            mtp_depth: 0,
            attention_bias: true,
            mlp_bias: true,
            hidden_dropout: 0.0,
            attention_dropout: 0.0,
            rotary: true,
        };
        let per_seq = flops_per_token(Flops::MegatronCore, &m, 2048, 0.0).unwrap() * 2048.0;
        assert!((per_seq / 2.20e15 - 1.0).abs() < 0.02, "{per_seq:e}");
        // SC21 counts a fourth (recompute) pass: 4/3 of the three-pass figure, give or take
        // the attention and logit terms.
        let sc21 = flops_per_token(Flops::Megatron2021, &m, 2048, 0.0).unwrap() * 2048.0;
        assert!(
            (sc21 / per_seq - 4.0 / 3.0).abs() < 0.05,
            "{}",
            sc21 / per_seq
        );
    }
}
