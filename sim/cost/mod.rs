//! Cost: phases → steps → GPU-hours → dollars, wall-clock days and energy; and through
//! [`goodput`], the effective figures once failures, checkpoints and stragglers are paid for.

pub mod goodput;

use crate::config::reliability::Cause;
use crate::config::workload::PricingSpec;
use crate::workload::{Phase, PhaseKind, Workload};
use serde::Serialize;

/// One phase of the run, costed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseCost {
    pub name: String,
    /// Whether trainsim simulated this phase (false: reported GPU-hours taken as given).
    pub simulated: bool,
    pub tokens: f64,
    pub steps: f64,
    /// Step time of the phase's main segment (after any batch ramp).
    pub step_time_s: f64,
    /// GPUs the phase runs on (its own cluster size where it sets one; a reported phase: the
    /// run's).
    pub gpus: u64,
    pub gpu_hours: f64,
    pub cost_usd: f64,
    pub days: f64,
    /// With failures, checkpoints, restarts and stragglers (a reported phase: as reported).
    pub effective_gpu_hours: f64,
    pub effective_cost_usd: f64,
    pub effective_days: f64,
    /// Productive over wall time (1 for a reported phase or without the reliability model).
    pub ettr: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunCost {
    pub phases: Vec<PhaseCost>,
    pub gpu_hours: f64,
    pub cost_usd: f64,
    pub days: f64,
    /// Facility energy: GPU-hours × power per GPU × PUE.
    pub energy_mwh: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub energy_cost_usd: Option<f64>,
    /// The goodput model's account (absent when it is off).
    pub goodput: Option<Goodput>,
}

impl RunCost {
    /// GPU-hours, dollars and days as the run really takes them: the goodput model's effective
    /// figures, or the ideal ones when it is off.
    pub fn effective(&self) -> (f64, f64, f64) {
        match &self.goodput {
            Some(g) => (
                g.effective_gpu_hours,
                g.effective_cost_usd,
                g.effective_days,
            ),
            None => (self.gpu_hours, self.cost_usd, self.days),
        }
    }
}

/// One assumption doubled the bad way, and what it adds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Driver {
    pub what: String,
    pub effective_gpu_hours_delta: f64,
}

/// The run's goodput: the closed-form expectation of every simulated phase, summed, with the
/// assumptions that move it most (and a Monte Carlo's percentiles when one was asked for).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Goodput {
    pub mode: &'static str,
    /// Productive over wall time, over every simulated phase.
    pub ettr: f64,
    /// Ideal over effective GPU-hours.
    pub efficiency: f64,
    pub interruptions: f64,
    pub planned_interruptions: f64,
    /// The longest phase's figures: interval between checkpoints, the rule that chose it,
    /// Young's for comparison, the stall per checkpoint and the restart.
    pub checkpoint_interval_s: f64,
    pub interval_rule: &'static str,
    pub young_interval_s: f64,
    pub checkpoint_stall_s: f64,
    pub checkpoint_write_s: f64,
    pub checkpoint_mode: &'static str,
    pub checkpoint_bytes: f64,
    pub restart_s: f64,
    /// Mean time between interruptions (all causes) in the longest phase.
    pub mtbi_h: f64,
    pub ideal_gpu_hours: f64,
    pub effective_gpu_hours: f64,
    pub effective_cost_usd: f64,
    pub effective_days: f64,
    /// Where the difference goes.
    pub lost_gpu_hours: f64,
    pub restart_gpu_hours: f64,
    pub checkpoint_gpu_hours: f64,
    pub straggler_gpu_hours: f64,
    pub by_cause: Vec<goodput::CauseCount>,
    pub phases: Vec<goodput::PhaseGoodput>,
    /// Each assumption doubled, largest effect first.
    pub drivers: Vec<Driver>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monte_carlo: Option<goodput::MonteCarlo>,
}

/// Costs every phase. `step_time` prices one step of a segment's layout.
pub fn run_cost(
    w: &Workload,
    gpus: u64,
    tdp_watts: f64,
    reliability: Option<&goodput::Inputs>,
    step_time: &mut dyn FnMut(&crate::workload::layout::Layout) -> f64,
) -> RunCost {
    phases_cost(
        &w.phases,
        &w.pricing,
        gpus,
        tdp_watts,
        reliability,
        step_time,
    )
}

/// Costs `phases` at `pricing` (a layout search's phases, at the layouts it chose), with the
/// goodput model's effective figures when `reliability` is given.
pub fn phases_cost(
    run: &[Phase],
    pricing: &PricingSpec,
    gpus: u64,
    tdp_watts: f64,
    reliability: Option<&goodput::Inputs>,
    step_time: &mut dyn FnMut(&crate::workload::layout::Layout) -> f64,
) -> RunCost {
    let price = pricing.gpu_hour.usd;
    let mut phases = Vec::new();
    for ph in run {
        let pc = match &ph.kind {
            PhaseKind::Reported { gpu_hours } => PhaseCost {
                name: ph.name.clone(),
                simulated: false,
                tokens: 0.0,
                steps: 0.0,
                step_time_s: 0.0,
                gpus,
                gpu_hours: *gpu_hours,
                cost_usd: gpu_hours * price,
                days: gpu_hours / gpus as f64 / 24.0,
                effective_gpu_hours: *gpu_hours,
                effective_cost_usd: gpu_hours * price,
                effective_days: gpu_hours / gpus as f64 / 24.0,
                ettr: 1.0,
                note: ph.note.clone(),
            },
            PhaseKind::Simulated(segs) => {
                let (mut tokens, mut steps, mut secs, mut main) = (0.0, 0.0, 0.0, 0.0);
                let (mut gpu_secs, mut on) = (0.0, gpus);
                for s in segs {
                    let st = step_time(&s.layout);
                    tokens += s.tokens;
                    steps += s.steps;
                    secs += s.steps * st;
                    // The phase's own GPUs: its layout spans them (a phase may set its nodes).
                    gpu_secs += s.steps * st * s.layout.gpus() as f64;
                    main = st;
                    on = s.layout.gpus();
                }
                let gpu_hours = gpu_secs / 3600.0;
                PhaseCost {
                    name: ph.name.clone(),
                    simulated: true,
                    tokens,
                    steps,
                    step_time_s: main,
                    gpus: on,
                    gpu_hours,
                    cost_usd: gpu_hours * price,
                    days: secs / 86400.0,
                    effective_gpu_hours: gpu_hours,
                    effective_cost_usd: gpu_hours * price,
                    effective_days: secs / 86400.0,
                    ettr: 1.0,
                    note: ph.note.clone(),
                }
            }
        };
        phases.push(pc);
    }
    let gpu_hours: f64 = phases.iter().map(|p| p.gpu_hours).sum();
    let energy_mwh = energy_mwh(pricing, gpu_hours, tdp_watts);
    let goodput = reliability.map(|inp| {
        let g = account(inp, &phases, price);
        for (pc, pg) in phases
            .iter_mut()
            .filter(|p| p.simulated)
            .zip(g.phases.iter())
        {
            pc.effective_gpu_hours = pg.wall_s * pg.gpus as f64 / 3600.0;
            pc.effective_cost_usd = pc.effective_gpu_hours * price;
            pc.effective_days = pg.wall_s / 86400.0;
            pc.ettr = pg.ettr;
        }
        g
    });
    RunCost {
        goodput,
        cost_usd: gpu_hours * price,
        days: phases.iter().map(|p| p.days).sum(),
        energy_cost_usd: pricing
            .electricity_per_kwh
            .map(|p| p.usd * energy_mwh * 1000.0),
        gpu_hours,
        energy_mwh,
        phases,
    }
}

fn energy_mwh(p: &PricingSpec, gpu_hours: f64, tdp_watts: f64) -> f64 {
    let watts = p.power_per_gpu.map(|w| w.watts).unwrap_or(tdp_watts);
    gpu_hours * watts * p.pue.unwrap_or(1.0) / 1e6
}

/// The simulated phases' ideal seconds on their GPUs.
fn exposures(phases: &[PhaseCost]) -> Vec<(&str, f64, u64)> {
    phases
        .iter()
        .filter(|p| p.simulated)
        .map(|p| (p.name.as_str(), p.days * 86400.0, p.gpus))
        .collect()
}

/// Every simulated phase's expectation under `inp`.
fn expect_all(inp: &goodput::Inputs, phases: &[PhaseCost]) -> Vec<goodput::PhaseGoodput> {
    exposures(phases)
        .into_iter()
        .map(|(name, ideal, gpus)| {
            goodput::expected(inp, name, ideal, goodput::Params::new(inp, gpus))
        })
        .collect()
}

fn effective_hours(pg: &[goodput::PhaseGoodput]) -> f64 {
    pg.iter().map(|p| p.wall_s * p.gpus as f64 / 3600.0).sum()
}

/// The goodput account of `phases` (ideal figures already costed).
fn account(inp: &goodput::Inputs, phases: &[PhaseCost], price: f64) -> Goodput {
    let pg = expect_all(inp, phases);
    let reported: f64 = phases
        .iter()
        .filter(|p| !p.simulated)
        .map(|p| p.gpu_hours)
        .sum();
    let ideal: f64 = phases.iter().map(|p| p.gpu_hours).sum();
    let hours = |f: &dyn Fn(&goodput::PhaseGoodput) -> f64| -> f64 {
        pg.iter().map(|p| f(p) * p.gpus as f64 / 3600.0).sum()
    };
    let effective = effective_hours(&pg) + reported;
    let wall: f64 = pg.iter().map(|p| p.wall_s).sum();
    let productive: f64 = pg.iter().map(|p| p.productive_s).sum();
    let main = pg
        .iter()
        .max_by(|a, b| a.ideal_s.total_cmp(&b.ideal_s))
        .map(|p| p.params);
    let mut by_cause: Vec<goodput::CauseCount> = Cause::ALL
        .iter()
        .map(|c| goodput::CauseCount {
            cause: *c,
            interruptions: 0.0,
        })
        .collect();
    for p in &pg {
        for (acc, c) in by_cause.iter_mut().zip(&p.by_cause) {
            acc.interruptions += c.interruptions;
        }
    }
    let base = effective_hours(&pg);
    let mut drivers: Vec<Driver> = variants(&inp.spec)
        .into_iter()
        .filter(|_| inp.drivers)
        .map(|(what, spec)| {
            let v = goodput::Inputs {
                spec,
                ..inp.clone()
            };
            Driver {
                what,
                effective_gpu_hours_delta: effective_hours(&expect_all(&v, phases)) - base,
            }
        })
        .collect();
    drivers.sort_by(|a, b| {
        b.effective_gpu_hours_delta
            .total_cmp(&a.effective_gpu_hours_delta)
    });
    let day_sum = |p: &PhaseCost| p.days;
    let reported_days: f64 = phases.iter().filter(|p| !p.simulated).map(day_sum).sum();
    let ck = &inp.spec.checkpoint;
    Goodput {
        mode: "expected",
        ettr: if wall > 0.0 { productive / wall } else { 1.0 },
        efficiency: if effective > 0.0 {
            ideal / effective
        } else {
            1.0
        },
        interruptions: pg.iter().map(|p| p.interruptions).sum(),
        planned_interruptions: pg.iter().map(|p| p.planned_interruptions).sum(),
        checkpoint_interval_s: main.map_or(0.0, |p| p.interval_s),
        interval_rule: match ck.interval {
            crate::config::reliability::Interval::Optimal => {
                "optimal (Daly's higher order, exact for exponential failures)"
            }
            crate::config::reliability::Interval::Young => "Young",
            crate::config::reliability::Interval::Fixed(_) => "fixed",
        },
        young_interval_s: main.map_or(0.0, |p| p.young_s),
        checkpoint_stall_s: main.map_or(0.0, |p| p.stall_s),
        checkpoint_write_s: main.map_or(0.0, |p| p.write_s),
        checkpoint_mode: match ck.mode {
            crate::config::reliability::CheckpointMode::Sync => "sync",
            crate::config::reliability::CheckpointMode::Async => "async",
        },
        checkpoint_bytes: inp.checkpoint_bytes,
        restart_s: main.map_or(0.0, |p| p.restart_s),
        mtbi_h: main.map_or(f64::INFINITY, |p| {
            1.0 / (p.rate_per_s + p.planned_rate_per_s) / 3600.0
        }),
        ideal_gpu_hours: ideal,
        effective_gpu_hours: effective,
        effective_cost_usd: effective * price,
        effective_days: wall / 86400.0 + reported_days,
        lost_gpu_hours: hours(&|p| p.lost_s),
        restart_gpu_hours: hours(&|p| p.restart_s),
        checkpoint_gpu_hours: hours(&|p| p.checkpoint_stall_s),
        straggler_gpu_hours: hours(&|p| p.straggler_s),
        by_cause,
        phases: pg,
        drivers,
        monte_carlo: None,
    }
}

/// Each assumption doubled the bad way.
fn variants(
    s: &crate::config::reliability::ReliabilitySpec,
) -> Vec<(String, crate::config::reliability::ReliabilitySpec)> {
    let mut out = Vec::new();
    let mut v = s.clone();
    v.failure_rate_scale *= 2.0;
    out.push(("failure rates ×2".to_string(), v));
    let mut v = s.clone();
    v.restart.detection.secs *= 2.0;
    v.restart.reschedule.secs *= 2.0;
    v.restart.init.secs *= 2.0;
    out.push((
        "restart (detection, rescheduling, initialisation) ×2".to_string(),
        v,
    ));
    let mut v = s.clone();
    let ck = &mut v.checkpoint;
    let half = |b: crate::units::Bandwidth| crate::units::Bandwidth {
        bytes_per_s: b.bytes_per_s / 2.0,
    };
    ck.read_bandwidth = Some(half(ck.read_bandwidth.unwrap_or(ck.write_bandwidth)));
    ck.read_bandwidth_per_node = Some(half(
        ck.read_bandwidth_per_node
            .unwrap_or(ck.write_bandwidth_per_node),
    ));
    ck.write_bandwidth = half(ck.write_bandwidth);
    ck.write_bandwidth_per_node = half(ck.write_bandwidth_per_node);
    ck.host_copy_bandwidth = half(ck.host_copy_bandwidth);
    out.push(("checkpoint storage and copy bandwidth ÷2".to_string(), v));
    if s.stragglers.fraction > 0.0 && s.stragglers.slowdown > 0.0 {
        let mut v = s.clone();
        v.stragglers.slowdown *= 2.0;
        out.push(("straggler slowdown ×2".to_string(), v));
    }
    out
}

/// Adds a Monte Carlo of the run's simulated phases to its goodput account `g` (`trials`
/// trials from `seed`); `phases` are the run's costed phases (the reported ones' GPU-hours are
/// added to every trial as they are).
pub fn with_monte_carlo(
    g: &mut Goodput,
    phases: &[PhaseCost],
    inp: &goodput::Inputs,
    price: f64,
    seed: u64,
    trials: u64,
) {
    let sim: Vec<(f64, goodput::Params)> = g.phases.iter().map(|p| (p.ideal_s, p.params)).collect();
    let reported: f64 = phases
        .iter()
        .filter(|p| !p.simulated)
        .map(|p| p.gpu_hours)
        .sum();
    g.mode = "monte-carlo";
    g.monte_carlo = Some(goodput::monte_carlo(
        &inp.spec, &sim, reported, price, seed, trials,
    ));
}

/// The ideal figures alone: the goodput account removed and each phase's effective figures set
/// to its ideal ones (`--reliability none`).
pub fn without_goodput(phases: &mut [PhaseCost]) {
    for p in phases {
        p.effective_gpu_hours = p.gpu_hours;
        p.effective_cost_usd = p.cost_usd;
        p.effective_days = p.days;
        p.ettr = 1.0;
    }
}
