//! `summary.json` (the contract of DESIGN §3) and the human summary.

use crate::cost::{PhaseCost, RunCost};
use crate::domain::{MoeDispatcher, MoeOverlap};
use crate::step::{Breakdown, ChunkCost, StepResult};
use crate::topo::Cluster;
use crate::workload::layout::Layout;
use crate::workload::Workload;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize)]
pub struct ModelSummary {
    pub name: String,
    pub params_total: u64,
    pub params_active: u64,
    /// Training FLOPs per token of the main model (3 × forward, causal attention halved, no MTP).
    pub flops_per_token: f64,
    pub params_mtp: u64,
    pub flops_per_token_mtp: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SimInfo {
    pub engine: &'static str,
    pub events: u64,
    pub kernels_per_step: u64,
    pub wall_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemorySummary {
    pub weights: f64,
    pub grads: f64,
    pub optimizer: f64,
    pub activations: f64,
    pub capacity: f64,
}

/// Everything `trainsim run` writes.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub topology: String,
    pub workload: String,
    pub gpus: u64,
    pub gpu: String,
    pub step_time_s: f64,
    pub tokens_per_step: u64,
    pub tokens_per_s: f64,
    pub tokens_per_gpu_s: f64,
    pub model: ModelSummary,
    pub tflops_per_gpu: f64,
    /// Model FLOPs against the dense BF16 peak, as Meta and DeepSeek report it.
    pub mfu: f64,
    pub memory_gib_per_gpu: f64,
    pub memory_gib: MemorySummary,
    pub breakdown_s: Breakdown,
    pub layout: Layout,
    pub stages: Vec<ChunkCost>,
    pub phases: Vec<PhaseCost>,
    pub gpu_hours: f64,
    pub cost_usd: f64,
    pub price_per_gpu_hour_usd: f64,
    pub days: f64,
    pub energy_mwh: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub energy_cost_usd: Option<f64>,
    /// With failures, checkpoints, restarts and stragglers (equal to the ideal figures when
    /// the goodput model is off).
    pub effective_gpu_hours: f64,
    pub effective_cost_usd: f64,
    pub effective_days: f64,
    /// The goodput model's account: ETTR, interruptions, checkpoints, where the time goes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goodput: Option<crate::cost::Goodput>,
    pub routing: RoutingSummary,
    pub sim: SimInfo,
    /// The uncertainty band (`trainsim run` computes it; other drivers leave it out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bands: Option<Bands>,
}

/// The low–high range around a central estimate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BandRange {
    pub low: f64,
    pub central: f64,
    pub high: f64,
}

impl BandRange {
    /// `central` plus every difference that lowers it (low) and every one that raises it
    /// (high): the first-order corners of independent alternatives.
    pub fn around(central: f64, deltas: impl IntoIterator<Item = f64>) -> BandRange {
        let (mut low, mut high) = (central, central);
        for d in deltas {
            if d < 0.0 {
                low += d;
            } else {
                high += d;
            }
        }
        BandRange { low, central, high }
    }
}

/// One alternative's difference from the central estimate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BandTerm {
    pub name: String,
    pub step_time_s: f64,
    pub gpu_hours: f64,
    pub cost_usd: f64,
    /// The GPU-hours difference of each phase, in the summary's phase order.
    pub phase_gpu_hours: Vec<f64>,
}

/// One phase's GPU-hours band.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseBand {
    pub name: String,
    pub gpu_hours: BandRange,
}

/// An estimate's uncertainty band: each range is the central value plus every term that lowers
/// it (low) or raises it (high).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bands {
    pub step_time_s: BandRange,
    pub gpu_hours: BandRange,
    pub cost_usd: BandRange,
    pub phases: Vec<PhaseBand>,
    /// The engine the terms were priced on.
    pub terms_engine: &'static str,
    pub terms: Vec<BandTerm>,
}

/// How expert load was drawn, with the seed that reproduces it.
#[derive(Debug, Clone, Serialize)]
pub struct RoutingSummary {
    pub distribution: &'static str,
    pub alpha: f64,
    pub seed: u64,
}

const GIB: f64 = 1073741824.0;

impl Summary {
    pub fn new(
        w: &Workload,
        c: &Cluster,
        e: &StepResult,
        cost: &RunCost,
        engine: &'static str,
        wall_s: f64,
    ) -> Summary {
        let l = &w.layout;
        let p = w.model.params();
        let gpus = c.gpus() as u64;
        let tokens_per_step = l.tokens_per_step();
        let tokens_per_s = tokens_per_step as f64 / e.step_time_s;
        let fpt = w.model.training_flops_per_token(l.seq_len);
        let tflops = fpt * tokens_per_s / gpus as f64 / 1e12;
        let m = &e.memory;
        Summary {
            topology: c.name.clone(),
            workload: w.name.clone(),
            gpus,
            gpu: c.gpu_name.clone(),
            step_time_s: e.step_time_s,
            tokens_per_step,
            tokens_per_s,
            tokens_per_gpu_s: tokens_per_s / gpus as f64,
            model: ModelSummary {
                name: w.model.name.clone(),
                params_total: p.total,
                params_active: p.active,
                flops_per_token: fpt,
                params_mtp: p.mtp,
                flops_per_token_mtp: w.model.mtp_training_flops_per_token(l.seq_len),
            },
            tflops_per_gpu: tflops,
            mfu: tflops * 1e12 / c.gpu.peak.bf16.value.flops,
            memory_gib_per_gpu: m.total / GIB,
            memory_gib: MemorySummary {
                weights: m.weights / GIB,
                grads: m.grads / GIB,
                optimizer: m.optimizer / GIB,
                activations: m.activations / GIB,
                capacity: m.capacity / GIB,
            },
            breakdown_s: e.breakdown.clone(),
            layout: l.clone(),
            stages: e.chunks.as_ref().clone(),
            phases: cost.phases.clone(),
            gpu_hours: cost.gpu_hours,
            cost_usd: cost.cost_usd,
            price_per_gpu_hour_usd: w.pricing.gpu_hour.usd,
            days: cost.days,
            energy_mwh: cost.energy_mwh,
            energy_cost_usd: cost.energy_cost_usd,
            effective_gpu_hours: cost.effective().0,
            effective_cost_usd: cost.effective().1,
            effective_days: cost.effective().2,
            goodput: cost.goodput.clone(),
            routing: RoutingSummary {
                distribution: match w.routing.distribution {
                    crate::domain::RoutingDistribution::Balanced => "balanced",
                    crate::domain::RoutingDistribution::Dirichlet => "dirichlet",
                },
                alpha: w.routing.alpha,
                seed: w.routing.seed,
            },
            sim: SimInfo {
                engine,
                events: e.events,
                kernels_per_step: e.kernels_per_step,
                wall_s,
            },
            bands: None,
        }
    }

    /// Drops the goodput account (`--reliability none`): effective figures become the ideal.
    pub fn without_goodput(&mut self) {
        self.goodput = None;
        crate::cost::without_goodput(&mut self.phases);
        self.effective_gpu_hours = self.gpu_hours;
        self.effective_cost_usd = self.cost_usd;
        self.effective_days = self.days;
    }

    /// The goodput lines of the human summary: ideal against effective, where the difference
    /// goes, and the assumptions that drive it.
    pub fn goodput_lines(&self) -> String {
        let Some(g) = &self.goodput else {
            return String::new();
        };
        let mut s = String::new();
        let pct = |h: f64| 100.0 * h / g.ideal_gpu_hours.max(1e-9);
        s += &format!(
            "goodput     ideal {:.3}M GPU-hours (${:.3}M, {:.1} days) → effective {:.3}M (${:.3}M, {:.1} days) · ETTR {:.1}% · {:.0} interruptions ({:.0} planned), one per {:.1} h\n",
            g.ideal_gpu_hours / 1e6,
            self.cost_usd / 1e6,
            self.days,
            g.effective_gpu_hours / 1e6,
            g.effective_cost_usd / 1e6,
            g.effective_days,
            g.ettr * 100.0,
            g.interruptions,
            g.planned_interruptions,
            g.mtbi_h
        );
        s += &format!(
            "  where     lost work {:.0}K GPU-h ({:.1}%) · restarts {:.0}K ({:.1}%) · checkpoints {:.0}K ({:.1}%) · stragglers {:.0}K ({:.1}%)\n",
            g.lost_gpu_hours / 1e3,
            pct(g.lost_gpu_hours),
            g.restart_gpu_hours / 1e3,
            pct(g.restart_gpu_hours),
            g.checkpoint_gpu_hours / 1e3,
            pct(g.checkpoint_gpu_hours),
            g.straggler_gpu_hours / 1e3,
            pct(g.straggler_gpu_hours)
        );
        s += &format!(
            "  because   a {:.2} TB checkpoint every {:.1} min ({}; Young {:.1} min), {:.1} s stall ({}), {:.1} min per restart\n",
            g.checkpoint_bytes / 1e12,
            g.checkpoint_interval_s / 60.0,
            g.interval_rule.split(' ').next().unwrap_or(""),
            g.young_interval_s / 60.0,
            g.checkpoint_stall_s,
            g.checkpoint_mode,
            g.restart_s / 60.0
        );
        for d in g
            .drivers
            .iter()
            .filter(|d| d.effective_gpu_hours_delta > 0.0)
        {
            s += &format!(
                "  driver    {:<52} {:+.0}K GPU-h ({:+.1}%)\n",
                d.what,
                d.effective_gpu_hours_delta / 1e3,
                pct(d.effective_gpu_hours_delta)
            );
        }
        if let Some(m) = &g.monte_carlo {
            s += &format!(
                "  monte     {} trials, seed {} ({}): days P10 {:.1} · P50 {:.1} · P90 {:.1}; GPU-hours P10 {:.3}M · P50 {:.3}M · P90 {:.3}M\n",
                m.trials,
                m.seed,
                match m.distribution {
                    crate::config::reliability::FailureDistribution::Exponential => "exponential".to_string(),
                    crate::config::reliability::FailureDistribution::Weibull =>
                        format!("Weibull k = {}", m.weibull_shape.unwrap_or(1.0)),
                },
                m.days.p10,
                m.days.p50,
                m.days.p90,
                m.gpu_hours.p10 / 1e6,
                m.gpu_hours.p50 / 1e6,
                m.gpu_hours.p90 / 1e6
            );
        }
        s
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("summary serializes") + "\n"
    }

    /// The parallel layout in one line: degrees, schedule, micro-batching, ZeRO stage, and the
    /// MoE settings that differ from the defaults.
    pub fn layout_line(&self) -> String {
        let l = &self.layout;
        let twin = l.moe_overlap == MoeOverlap::TwoMicroBatch;
        let halves = if twin { 2 } else { 1 };
        let mut s = format!(
            "TP{} PP{} EP{} CP{} DP{} · {} · {} micro-batches of {} × {} tokens{} · ZeRO-{}",
            l.tp,
            l.pp,
            l.ep,
            l.cp,
            l.dp,
            l.schedule.name(),
            l.micro_batches / halves,
            l.micro_batch * halves,
            l.seq_len,
            if twin { ", each as two halves" } else { "" },
            l.zero
        );
        if l.ep > 1 {
            let d = &l.moe_dispatch;
            if l.moe_overlap != MoeOverlap::None {
                s += &format!(" · MoE overlap {}", l.moe_overlap.name());
            }
            if d.dispatcher != MoeDispatcher::Deepep {
                s += &format!(" · {} dispatcher", d.dispatcher.name());
            }
            if let Some(c) = d.capacity {
                let pad = if d.pad_to_capacity { ", padded" } else { "" };
                s += &format!(" · capacity {}{pad}", c.0);
            }
            if d.shared_expert_overlap {
                s += " · shared experts overlapped";
            }
        }
        s
    }

    /// A short human summary.
    pub fn human(&self) -> String {
        let b = &self.breakdown_s;
        let mut s = String::new();
        s += &format!(
            "trainsim · {} on {} ({} × {})\n",
            self.workload, self.topology, self.gpus, self.gpu
        );
        s += &format!("layout      {}\n", self.layout_line());
        s += &format!(
            "model       {:.1}B params, {:.2}B active, {:.1} GFLOPs/token (training, no MTP)\n",
            self.model.params_total as f64 / 1e9,
            self.model.params_active as f64 / 1e9,
            self.model.flops_per_token / 1e9
        );
        s += &format!(
            "step        {:.2} s · {:.0} tokens/s/GPU · {:.0} TFLOPS/GPU · MFU {:.1}%\n",
            self.step_time_s,
            self.tokens_per_gpu_s,
            self.tflops_per_gpu,
            self.mfu * 100.0
        );
        let kinds: BTreeMap<_, _> = b
            .exposed_comm_by_kind
            .iter()
            .filter(|(_, v)| **v > 0.0)
            .collect();
        let kinds: Vec<String> = kinds.iter().map(|(k, v)| format!("{k} {:.2}", v)).collect();
        s += &format!(
            "breakdown   forward {:.2} + backward {:.2} + weight-grad {:.2} + bubble {:.2} + exposed comm {:.2} ({}) + optimizer {:.2} s\n",
            b.forward,
            b.backward,
            b.weight_grad,
            b.bubble,
            b.exposed_comm,
            if kinds.is_empty() { "none".into() } else { kinds.join(", ") },
            b.optimizer
        );
        s += &format!(
            "memory      {:.1} GiB of {:.0} GiB per GPU (weights {:.1}, grads {:.1}, optimizer {:.1}, activations {:.1})\n",
            self.memory_gib_per_gpu,
            self.memory_gib.capacity,
            self.memory_gib.weights,
            self.memory_gib.grads,
            self.memory_gib.optimizer,
            self.memory_gib.activations
        );
        for p in &self.phases {
            s += &format!(
                "phase       {:<28} {:>10} GPU-h  {:>9}  {:>6.1} days{}\n",
                p.name,
                format!("{:.0}K", p.gpu_hours / 1e3),
                format!("${:.3}M", p.cost_usd / 1e6),
                p.days,
                if !p.simulated {
                    "  (reported, not simulated)".to_string()
                } else if p.gpus != self.gpus {
                    format!("  on {} GPUs", p.gpus)
                } else {
                    String::new()
                }
            );
        }
        s += &format!(
            "total       {:.3}M GPU-hours · ${:.3}M at ${}/GPU-hour · {:.1} days · {:.0} MWh\n",
            self.gpu_hours / 1e6,
            self.cost_usd / 1e6,
            self.price_per_gpu_hour_usd,
            self.days,
            self.energy_mwh
        );
        s += &self.goodput_lines();
        if let Some(b) = &self.bands {
            s += &format!(
                "band        step {:.2} s ({:.2}–{:.2}) · {:.3}M GPU-hours ({:.3}–{:.3}M) · ${:.3}M ({:.3}–{:.3}M)\n",
                b.step_time_s.central,
                b.step_time_s.low,
                b.step_time_s.high,
                b.gpu_hours.central / 1e6,
                b.gpu_hours.low / 1e6,
                b.gpu_hours.high / 1e6,
                b.cost_usd.central / 1e6,
                b.cost_usd.low / 1e6,
                b.cost_usd.high / 1e6
            );
            for p in b
                .phases
                .iter()
                .filter(|p| p.gpu_hours.low < p.gpu_hours.high)
            {
                s += &format!(
                    "  {:<28} {:.3}M GPU-hours ({:.3}–{:.3}M)\n",
                    p.name,
                    p.gpu_hours.central / 1e6,
                    p.gpu_hours.low / 1e6,
                    p.gpu_hours.high / 1e6
                );
            }
            for t in &b.terms {
                s += &format!(
                    "  {:+8.2} s  {:+8.3}M GPU-h  {}\n",
                    t.step_time_s,
                    t.gpu_hours / 1e6,
                    t.name
                );
            }
        }
        s
    }
}
