//! Cost: phases → steps → GPU-hours → dollars, wall-clock days and energy.

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
}

/// Costs every phase. `step_time` prices one step of a segment's layout.
pub fn run_cost(
    w: &Workload,
    gpus: u64,
    tdp_watts: f64,
    step_time: &mut dyn FnMut(&crate::workload::layout::Layout) -> f64,
) -> RunCost {
    phases_cost(&w.phases, &w.pricing, gpus, tdp_watts, step_time)
}

/// Costs `phases` at `pricing` (a layout search's phases, at the layouts it chose).
pub fn phases_cost(
    run: &[Phase],
    pricing: &PricingSpec,
    gpus: u64,
    tdp_watts: f64,
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
                    note: ph.note.clone(),
                }
            }
        };
        phases.push(pc);
    }
    let gpu_hours: f64 = phases.iter().map(|p| p.gpu_hours).sum();
    let energy_mwh = energy_mwh(pricing, gpu_hours, tdp_watts);
    RunCost {
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
