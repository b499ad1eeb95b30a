//! Goodput: from a phase's ideal training time to the wall-clock time it really takes, once
//! interruptions, checkpoints, restarts and stragglers are paid for.
//!
//! The model (one phase at a time, on the phase's GPUs):
//! - Unplanned interruptions arrive in wall-clock time at rate λ = Σ causes' rates per GPU-hour
//!   × GPUs (a Poisson process in the closed form; exponential or Weibull gaps renewed at each
//!   interruption in the Monte Carlo). Planned maintenance arrives the same way at its own rate.
//! - Training runs in intervals of T seconds, each followed by a checkpoint stall c: the whole
//!   write (synchronous) or the device-to-host copy (asynchronous, the write then runs behind
//!   the next interval, which is at least as long as the write, and the checkpoint counts only
//!   once written). The run ends with a synchronous save of the final state.
//! - An unplanned interruption loses the work since the last checkpoint that was written, and
//!   starts a restart of R seconds (detection, rescheduling, initialisation, loading the
//!   checkpoint); an interruption during a restart starts it again.
//! - Planned maintenance loses no work: the job drains with a synchronous checkpoint, restarts,
//!   and begins a fresh interval.
//! - Stragglers: each node is slow with probability f, by a fraction s of its step; a
//!   synchronous step waits for the slowest, so a step takes 1 + s·(1 − (1 − f)^nodes) times as
//!   long.
//!
//! The closed form (`expected`) is exact for unplanned interruptions with a synchronous
//! checkpoint (Daly's renewal: an interval of length s = T + c costs e^{λR}(e^{λs} − 1)/λ of wall
//! time); the asynchronous write adds its length to each interruption's lost work, and planned
//! maintenance divides the wall time by 1 − λₚ(C + R̃), both first order. `monte_carlo` simulates
//! the same process event by event and is the test of the closed form.

use crate::config::reliability::{
    Cause, CheckpointMode, FailureDistribution, Interval, ReliabilitySpec,
};
use crate::domain::Precision;
use crate::workload::model::Model;
use crate::workload::Workload;
use rand::SeedableRng;
use serde::Serialize;

/// What the goodput model needs beyond the phases.
#[derive(Debug, Clone, PartialEq)]
pub struct Inputs {
    pub spec: ReliabilitySpec,
    /// One checkpoint: weights, master copy and optimizer state of every parameter once (a
    /// distributed checkpoint writes each shard once, spread over all ranks).
    pub checkpoint_bytes: f64,
    pub gpus_per_node: u64,
    /// Also price each assumption doubled (the run's drivers); a layout search does without.
    pub drivers: bool,
}

impl Inputs {
    pub fn new(w: &Workload, gpus_per_node: u64) -> Inputs {
        Inputs::of(&w.reliability, &w.model, &w.precision, gpus_per_node)
    }
    pub fn of(
        spec: &ReliabilitySpec,
        model: &Model,
        precision: &Precision,
        gpus_per_node: u64,
    ) -> Inputs {
        Inputs {
            spec: spec.clone(),
            checkpoint_bytes: checkpoint_bytes(model, precision),
            gpus_per_node: gpus_per_node.max(1),
            drivers: true,
        }
    }
}

/// Bytes of one checkpoint: each parameter's working copy, master copy and both AdamW moments
/// (gradients are not saved).
pub fn checkpoint_bytes(model: &Model, precision: &Precision) -> f64 {
    let p = model.params();
    let per = precision.params.bytes()
        + precision.master.bytes()
        + 2.0 * precision.optimizer_states.bytes();
    (p.total + p.mtp) as f64 * per
}

/// One phase's time constants at its GPU count.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Params {
    pub gpus: u64,
    /// Unplanned interruptions per second of wall time.
    pub rate_per_s: f64,
    /// Planned maintenance per second of wall time.
    pub planned_rate_per_s: f64,
    /// Training stalled per periodic checkpoint.
    pub stall_s: f64,
    /// Writing one checkpoint to storage (synchronous: the stall).
    pub write_s: f64,
    pub asynchronous: bool,
    /// Loading it at a restart.
    pub load_s: f64,
    /// Detection + rescheduling + initialisation + load.
    pub restart_s: f64,
    /// Training between checkpoints (infinite without unplanned interruptions).
    pub interval_s: f64,
    /// Young's √(2cM), for comparison.
    pub young_s: f64,
    /// True when the rule's interval was raised to the asynchronous write's length.
    pub interval_raised_to_write: bool,
    /// Step time over the ideal, from stragglers.
    pub straggler_factor: f64,
}

impl Params {
    pub fn new(inp: &Inputs, gpus: u64) -> Params {
        let s = &inp.spec;
        let g = gpus as f64;
        let nodes = (gpus as f64 / inp.gpus_per_node as f64).ceil().max(1.0);
        let unplanned: f64 = s
            .failures_per_gpu_hour
            .by_cause()
            .iter()
            .filter(|(c, _)| *c != Cause::Planned)
            .map(|(_, r)| r)
            .sum();
        let rate = unplanned * s.failure_rate_scale * g / 3600.0;
        let planned = s.failures_per_gpu_hour.planned * s.failure_rate_scale * g / 3600.0;
        let ck = &s.checkpoint;
        let bw = |agg: f64, node: f64| agg.min(node * nodes);
        let write_s = inp.checkpoint_bytes
            / bw(
                ck.write_bandwidth.bytes_per_s,
                ck.write_bandwidth_per_node.bytes_per_s,
            );
        let load_s = inp.checkpoint_bytes
            / bw(
                ck.read_bandwidth.unwrap_or(ck.write_bandwidth).bytes_per_s,
                ck.read_bandwidth_per_node
                    .unwrap_or(ck.write_bandwidth_per_node)
                    .bytes_per_s,
            );
        let asynchronous = ck.mode == CheckpointMode::Async;
        let stall_s = if asynchronous {
            inp.checkpoint_bytes / g / ck.host_copy_bandwidth.bytes_per_s
        } else {
            write_s
        };
        let r = &s.restart;
        let restart_s = r.detection.secs + r.reschedule.secs + r.init.secs + load_s;
        let young_s = if rate > 0.0 {
            (2.0 * stall_s / rate).sqrt()
        } else {
            f64::INFINITY
        };
        let rule = match ck.interval {
            Interval::Optimal => optimal_interval(rate, stall_s),
            Interval::Young => young_s,
            Interval::Fixed(d) => d.secs,
        };
        let raised = asynchronous && rule < write_s;
        let st = &s.stragglers;
        Params {
            gpus,
            rate_per_s: rate,
            planned_rate_per_s: planned,
            stall_s,
            write_s,
            asynchronous,
            load_s,
            restart_s,
            interval_s: if raised { write_s } else { rule },
            young_s,
            interval_raised_to_write: raised,
            straggler_factor: 1.0 + st.slowdown * (1.0 - (1.0 - st.fraction).powf(nodes)),
        }
    }

    /// Wall time lost per interruption beyond the interval's own work: the asynchronous write
    /// in flight (a checkpoint counts only once written).
    fn in_flight_s(&self) -> f64 {
        if self.asynchronous {
            self.write_s
        } else {
            0.0
        }
    }
}

/// The training between checkpoints that minimises the expected wall time per unit of work
/// for interruptions at `rate` and a stall `c`: the root x = λT of (1 − x)·eˣ = e^{−λc} in
/// (0, 1), i.e. λT = 1 + W₀(−e^{−(1+λc)}) (Daly's higher-order optimum, exact for this model;
/// Young's √(2c/λ) is its first order).
pub fn optimal_interval(rate: f64, c: f64) -> f64 {
    if rate <= 0.0 {
        return f64::INFINITY;
    }
    let lc = rate * c;
    // g(x) = ln(1 − x) + x + λc falls from λc at 0 to −∞ at 1.
    let g = |x: f64| (-x).ln_1p() + x + lc;
    let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
    for _ in 0..64 {
        let mid = 0.5 * (lo + hi);
        if g(mid) > 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi) / rate
}

/// Expected wall time of one stretch of `work` seconds of training ending in a stall `stall`,
/// at interruption rate λ with restart R: Daly's e^{λR}(e^{λs} − 1)/λ (s = work + stall), plus
/// the in-flight write lost at each interruption.
fn stretch(p: &Params, work: f64, stall: f64) -> f64 {
    let l = p.rate_per_s;
    let s = work + stall;
    if l <= 0.0 {
        return s;
    }
    let fails = (l * s).exp_m1();
    (l * p.restart_s).exp() * (fails / l + fails * p.in_flight_s())
}

/// Expected wall time of `work` seconds of training in intervals of T (the last one shorter,
/// ending in the final synchronous save), before planned maintenance.
fn unplanned_wall(p: &Params, work: f64, interval: f64) -> (f64, f64) {
    if work <= 0.0 {
        return (0.0, 0.0);
    }
    let k = if interval.is_finite() {
        (work / interval).ceil().max(1.0)
    } else {
        1.0
    };
    let last = work - (k - 1.0) * interval.min(work);
    let full = if k > 1.0 {
        (k - 1.0) * stretch(p, interval, p.stall_s)
    } else {
        0.0
    };
    let wall = full + stretch(p, last, p.write_s);
    (wall, k)
}

/// Expected wall time per second of training at interval `t`, for long phases (the quantity
/// the optimal interval minimises).
pub fn wall_per_work(p: &Params, t: f64) -> f64 {
    stretch(p, t, p.stall_s) / t
}

/// One phase's goodput.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseGoodput {
    pub name: String,
    pub gpus: u64,
    pub ideal_s: f64,
    /// Training time with stragglers: what the job spends on steps it keeps.
    pub productive_s: f64,
    pub wall_s: f64,
    /// Effective training time ratio: productive / wall (Meta's ETTR).
    pub ettr: f64,
    /// Ideal / wall.
    pub efficiency: f64,
    /// Unplanned and planned interruptions.
    pub interruptions: f64,
    pub planned_interruptions: f64,
    pub by_cause: Vec<CauseCount>,
    pub checkpoints: f64,
    pub checkpoint_stall_s: f64,
    pub restart_s: f64,
    pub lost_s: f64,
    pub straggler_s: f64,
    pub params: Params,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CauseCount {
    pub cause: Cause,
    pub interruptions: f64,
}

/// The closed-form expectation for `ideal_s` seconds of training on `p`.
pub fn expected(inp: &Inputs, name: &str, ideal_s: f64, p: Params) -> PhaseGoodput {
    let work = ideal_s * p.straggler_factor;
    let (uwall, k) = unplanned_wall(&p, work, p.interval_s);
    let l = p.rate_per_s;
    let r = p.restart_s;
    // A restart that an unplanned interruption may cut short and start again.
    let restart_wall = if l > 0.0 { (l * r).exp_m1() / l } else { r };
    let drain = p.write_s + restart_wall;
    let keep = 1.0 - p.planned_rate_per_s * drain;
    let wall = if keep > 0.0 {
        uwall / keep
    } else {
        f64::INFINITY
    };
    let unplanned = l * wall;
    let planned = p.planned_rate_per_s * wall;
    let attempt = if l > 0.0 { -(-l * r).exp_m1() / l } else { r };
    let restart_s = (unplanned + planned) * attempt;
    let stall = (k - 1.0) * p.stall_s + p.write_s + planned * p.write_s;
    let stall = if work > 0.0 { stall } else { 0.0 };
    let lost = (wall - work - stall - restart_s).max(0.0);
    let total_rate: f64 = inp
        .spec
        .failures_per_gpu_hour
        .by_cause()
        .iter()
        .map(|(_, v)| v)
        .sum();
    let by_cause = inp
        .spec
        .failures_per_gpu_hour
        .by_cause()
        .iter()
        .map(|(c, v)| CauseCount {
            cause: *c,
            interruptions: if total_rate > 0.0 {
                (unplanned + planned) * v / total_rate
            } else {
                0.0
            },
        })
        .collect();
    PhaseGoodput {
        name: name.to_string(),
        gpus: p.gpus,
        ideal_s,
        productive_s: work,
        wall_s: wall,
        ettr: if wall > 0.0 { work / wall } else { 1.0 },
        efficiency: if wall > 0.0 { ideal_s / wall } else { 1.0 },
        interruptions: unplanned + planned,
        planned_interruptions: planned,
        by_cause,
        checkpoints: k + planned,
        checkpoint_stall_s: stall,
        restart_s,
        lost_s: lost,
        straggler_s: work - ideal_s,
        params: p,
    }
}

/// P10, P50 and P90 of a Monte Carlo figure, with its mean.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub p10: f64,
    pub p50: f64,
    pub p90: f64,
    pub mean: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `v`.
    pub fn of(mut v: Vec<f64>) -> Percentiles {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let at = |q: f64| v[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
        Percentiles {
            p10: at(0.1),
            p50: at(0.5),
            p90: at(0.9),
            mean: v.iter().sum::<f64>() / n as f64,
        }
    }
}

/// One simulated run of every phase.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trial {
    pub wall_s: f64,
    pub interruptions: f64,
}

/// The gaps between interruptions: exponential, or Weibull at the same mean.
enum Gaps {
    None,
    Exp(statrs::distribution::Exp),
    Weibull(statrs::distribution::Weibull),
}

impl Gaps {
    fn new(rate: f64, dist: FailureDistribution, shape: f64) -> Gaps {
        if rate <= 0.0 {
            return Gaps::None;
        }
        match dist {
            FailureDistribution::Exponential => {
                Gaps::Exp(statrs::distribution::Exp::new(rate).expect("a positive rate"))
            }
            FailureDistribution::Weibull => {
                let scale = 1.0 / rate / statrs::function::gamma::gamma(1.0 + 1.0 / shape);
                Gaps::Weibull(
                    statrs::distribution::Weibull::new(shape, scale)
                        .expect("a positive shape and scale"),
                )
            }
        }
    }
    fn draw(&self, rng: &mut rand_chacha::ChaCha8Rng) -> f64 {
        use rand::distr::Distribution;
        match self {
            Gaps::None => f64::INFINITY,
            Gaps::Exp(d) => d.sample(rng),
            Gaps::Weibull(d) => d.sample(rng),
        }
    }
}

/// One phase simulated event by event: returns its wall time and interruptions.
pub fn simulate_phase(
    p: &Params,
    ideal_s: f64,
    dist: FailureDistribution,
    shape: f64,
    rng: &mut rand_chacha::ChaCha8Rng,
) -> Trial {
    let work = ideal_s * p.straggler_factor;
    let gaps = Gaps::new(p.rate_per_s, dist, shape);
    let planned = Gaps::new(p.planned_rate_per_s, FailureDistribution::Exponential, 1.0);
    let mut t = 0.0_f64;
    let mut fail = gaps.draw(rng);
    let mut maint = planned.draw(rng);
    let mut count = 0.0;
    // Work done, and work safe in a written checkpoint; an asynchronous checkpoint in flight
    // (its work, the time it is written).
    let (mut done, mut safe) = (0.0_f64, 0.0_f64);
    let mut flight: Option<(f64, f64)> = None;
    let t_len = p.interval_s;
    // A restart from `at`, which interruptions may cut and start again.
    let restart =
        |at: f64, fail: &mut f64, count: &mut f64, rng: &mut rand_chacha::ChaCha8Rng| -> f64 {
            let mut at = at;
            loop {
                let end = at + p.restart_s;
                if *fail < end {
                    at = *fail;
                    *count += 1.0;
                    *fail = at + gaps.draw(rng);
                } else {
                    return end;
                }
            }
        };
    while safe < work {
        let len = (work - done).min(t_len);
        let last = done + len >= work;
        let stall = if last { p.write_s } else { p.stall_s };
        let end = t + len + stall;
        // The checkpoint in flight is written once its time comes.
        let settle = |flight: &mut Option<(f64, f64)>, safe: &mut f64, now: f64| {
            if let Some((w, at)) = *flight {
                if at <= now {
                    *safe = w;
                    *flight = None;
                }
            }
        };
        // Planned maintenance first: the job drains with a synchronous save from `maint`.
        let planned_first = maint < end && maint < fail;
        let limit = if planned_first {
            maint + p.write_s
        } else {
            end
        };
        let drain_from = maint;
        if planned_first {
            count += 1.0;
            maint += planned.draw(rng);
        }
        if fail < limit {
            // Unplanned (during a drain too): back to the last written checkpoint, restart.
            settle(&mut flight, &mut safe, fail);
            flight = None;
            count += 1.0;
            let at = fail;
            fail = at + gaps.draw(rng);
            t = restart(at, &mut fail, &mut count, rng);
            done = safe;
            continue;
        }
        if planned_first {
            // Planned: keep the work so far, restart after the save.
            done += (drain_from - t).min(len);
            safe = done;
            flight = None;
            t = restart(limit, &mut fail, &mut count, rng);
            continue;
        }
        t = end;
        done += len;
        settle(&mut flight, &mut safe, t - stall);
        if p.asynchronous && !last {
            flight = Some((done, t + p.write_s));
        } else {
            safe = done;
            flight = None;
        }
    }
    Trial {
        wall_s: t,
        interruptions: count,
    }
}

/// Monte Carlo over the phases `(GPUs' cost per second, ideal seconds, params)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonteCarlo {
    pub seed: u64,
    pub trials: u64,
    pub distribution: FailureDistribution,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weibull_shape: Option<f64>,
    pub days: Percentiles,
    pub gpu_hours: Percentiles,
    pub cost_usd: Percentiles,
    pub ettr: Percentiles,
    pub interruptions: Percentiles,
}

/// Runs `trials` trials of the phases `(ideal seconds, params)` from `seed`; `extra_gpu_hours`
/// (reported phases) is added to each trial's GPU-hours. Trial i draws from its own stream
/// (seed, i), so the result does not depend on how trials are scheduled.
pub fn monte_carlo(
    spec: &ReliabilitySpec,
    phases: &[(f64, Params)],
    extra_gpu_hours: f64,
    price: f64,
    seed: u64,
    trials: u64,
) -> MonteCarlo {
    let trials = trials.max(1);
    let (mut days, mut gh, mut ettr, mut count) = (vec![], vec![], vec![], vec![]);
    for i in 0..trials {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(i);
        let (mut wall, mut hours, mut productive, mut n) = (0.0, extra_gpu_hours, 0.0, 0.0);
        for (ideal, p) in phases {
            let tr = simulate_phase(p, *ideal, spec.distribution, spec.weibull_shape, &mut rng);
            wall += tr.wall_s;
            hours += tr.wall_s * p.gpus as f64 / 3600.0;
            productive += ideal * p.straggler_factor;
            n += tr.interruptions;
        }
        days.push(wall / 86400.0);
        gh.push(hours);
        ettr.push(if wall > 0.0 { productive / wall } else { 1.0 });
        count.push(n);
    }
    let cost = gh.iter().map(|h| h * price).collect();
    MonteCarlo {
        seed,
        trials,
        distribution: spec.distribution,
        weibull_shape: (spec.distribution == FailureDistribution::Weibull)
            .then_some(spec.weibull_shape),
        days: Percentiles::of(days),
        gpu_hours: Percentiles::of(gh),
        cost_usd: Percentiles::of(cost),
        ettr: Percentiles::of(ettr),
        interruptions: Percentiles::of(count),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::reliability::{FailureRates, StragglerSpec};
    use crate::units::Duration;

    /// Inputs with only unplanned failures at `per_gpu_hour`, a `ckpt_tb` checkpoint and no
    /// stragglers.
    fn inputs(per_gpu_hour: f64, planned: f64, ckpt_tb: f64) -> Inputs {
        let mut spec = ReliabilitySpec {
            failures_per_gpu_hour: FailureRates {
                gpu: per_gpu_hour,
                hbm: 0.0,
                nvlink: 0.0,
                network: 0.0,
                host: 0.0,
                software: 0.0,
                planned,
            },
            stragglers: StragglerSpec {
                fraction: 0.0,
                slowdown: 0.0,
            },
            ..ReliabilitySpec::default()
        };
        spec.restart.detection = Duration { secs: 300.0 };
        Inputs {
            spec,
            checkpoint_bytes: ckpt_tb * 1e12,
            gpus_per_node: 8,
            drivers: true,
        }
    }

    fn mc_ettr(inp: &Inputs, gpus: u64, ideal: f64, trials: u64) -> (f64, f64) {
        let p = Params::new(inp, gpus);
        let m = monte_carlo(&inp.spec, &[(ideal, p)], 0.0, 2.0, 11, trials);
        let e = expected(inp, "x", ideal, p);
        (m.ettr.mean, e.ettr)
    }

    #[test]
    fn closed_form_matches_monte_carlo_for_exponential_failures() {
        // A failure every 2 h on 16,384 GPUs, 20 TB at 2 TB/s, 30 days of training.
        let inp = inputs(1.0 / (2.0 * 16_384.0), 0.0, 20.0);
        let (mc, cf) = mc_ettr(&inp, 16_384, 30.0 * 86400.0, 400);
        assert!(
            (mc / cf - 1.0).abs() < 0.01,
            "monte carlo {mc} closed form {cf}"
        );
        assert!(cf < 0.95 && cf > 0.5, "{cf}");
    }

    #[test]
    fn closed_form_matches_monte_carlo_with_planned_and_async() {
        let mut inp = inputs(1.0 / (3.0 * 16_384.0), 1.0 / (20.0 * 16_384.0), 20.0);
        inp.spec.checkpoint.mode = CheckpointMode::Async;
        let (mc, cf) = mc_ettr(&inp, 16_384, 30.0 * 86400.0, 400);
        assert!(
            (mc / cf - 1.0).abs() < 0.01,
            "monte carlo {mc} closed form {cf}"
        );
    }

    #[test]
    fn the_optimal_interval_minimises_the_closed_form() {
        let inp = inputs(1.0 / (3.0 * 16_384.0), 0.0, 6.0);
        let p = Params::new(&inp, 16_384);
        let t = p.interval_s;
        let at = wall_per_work(&p, t);
        for f in [0.5, 0.9, 0.99, 1.01, 1.1, 2.0] {
            assert!(wall_per_work(&p, t * f) > at, "x{f}");
        }
        // And over a whole phase, within the rounding of the last interval.
        let work = 40.0 * 86400.0;
        let wall = |t: f64| unplanned_wall(&p, work, t).0;
        for f in [0.8, 1.25] {
            assert!(wall(t * f) > wall(t), "phase x{f}");
        }
        // Young's first order is close when the stall is small against the MTBF.
        assert!((p.young_s / t - 1.0).abs() < 0.02, "{} {}", p.young_s, t);
    }

    #[test]
    fn doubling_the_gpus_halves_the_time_between_interruptions() {
        let inp = inputs(1.0 / 50_000.0, 0.0, 1.0);
        let mtbi = |gpus: u64| {
            let p = Params::new(&inp, gpus);
            let m = monte_carlo(&inp.spec, &[(20.0 * 86400.0, p)], 0.0, 2.0, 3, 200);
            m.days.mean * 24.0 / m.interruptions.mean
        };
        let (a, b) = (mtbi(2_048), mtbi(4_096));
        assert!((a / b - 2.0).abs() < 0.04, "{a} h against {b} h");
        // 50,000 GPU-hours per interruption on 2,048 GPUs: one every 24.4 h.
        assert!((a / (50_000.0 / 2_048.0) - 1.0).abs() < 0.03, "{a}");
    }

    #[test]
    fn without_failures_a_phase_takes_its_work_and_the_final_save() {
        let inp = inputs(0.0, 0.0, 4.0);
        let p = Params::new(&inp, 1_024);
        let e = expected(&inp, "x", 1e6, p);
        // 4 TB at min(2 TB/s, 128 nodes × 50 GB/s) = 2 s.
        assert!((e.wall_s - (1e6 + 2.0)).abs() < 1e-6, "{}", e.wall_s);
        assert_eq!(e.interruptions, 0.0);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let t = simulate_phase(&p, 1e6, FailureDistribution::Exponential, 1.0, &mut rng);
        assert!((t.wall_s - e.wall_s).abs() < 1e-6);
    }

    #[test]
    fn the_same_seed_gives_the_same_draws() {
        let inp = inputs(1.0 / 20_000.0, 1.0 / 200_000.0, 2.0);
        let p = Params::new(&inp, 4_096);
        let run = |seed| monte_carlo(&inp.spec, &[(1e6, p)], 5.0, 2.0, seed, 50);
        assert_eq!(run(7), run(7));
        assert_ne!(run(7).days, run(8).days);
        let m = run(7);
        assert!(m.days.p10 <= m.days.p50 && m.days.p50 <= m.days.p90);
    }

    #[test]
    fn weibull_gaps_keep_the_mean_rate() {
        let mut inp = inputs(1.0 / 30_000.0, 0.0, 1.0);
        inp.spec.distribution = FailureDistribution::Weibull;
        inp.spec.weibull_shape = 0.7;
        let p = Params::new(&inp, 4_096);
        let m = monte_carlo(&inp.spec, &[(30.0 * 86400.0, p)], 0.0, 2.0, 5, 300);
        let rate = m.interruptions.mean / (m.days.mean * 86400.0);
        assert!(
            (rate / p.rate_per_s - 1.0).abs() < 0.05,
            "{rate} {}",
            p.rate_per_s
        );
    }

    #[test]
    fn stragglers_stretch_every_step_by_the_chance_one_node_is_slow() {
        let mut inp = inputs(0.0, 0.0, 1.0);
        inp.spec.stragglers = StragglerSpec {
            fraction: 0.01,
            slowdown: 0.2,
        };
        // 100 nodes: P(at least one slow) = 1 − 0.99^100 = 0.634.
        let p = Params::new(&inp, 800);
        assert!((p.straggler_factor - (1.0 + 0.2 * 0.633_967)).abs() < 1e-5);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=10).rev().map(f64::from).collect();
        let p = Percentiles::of(v);
        assert_eq!((p.p10, p.p50, p.p90, p.mean), (1.0, 5.0, 9.0, 5.5));
    }
}
