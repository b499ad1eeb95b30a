//! Pipeline schedules: bubble formulas and activations in flight.
//!
//! Used in closed form by the analytic engine and as test oracles for the discrete-event engine.
//! `f`, `b` and `w` are one chunk's forward, backward-for-input and backward-for-weights times
//! on the pipeline's slowest rank; `fb` is the time of one forward chunk overlapped with one
//! backward chunk (DualPipe's "F&B"). Sources: Narayanan et al. SC21 (1F1B, interleaved),
//! Qi et al. 2023 (ZB1P), DeepSeek DualPipe README table.

use crate::config::workload::Schedule;

/// Pipeline bubble per step, in seconds.
pub fn bubble(s: Schedule, pp: u64, vpp: u64, f: f64, b: f64, w: f64, fb: f64) -> f64 {
    let p = pp as f64;
    let full_b = b + w;
    match s {
        Schedule::Gpipe | Schedule::OneFOneB => (p - 1.0) * (f + full_b),
        Schedule::Interleaved => (p - 1.0) * (f + full_b) / vpp.max(1) as f64,
        // (PP−1)(F+B−2W) with B the full backward.
        Schedule::Zb1p => ((p - 1.0) * (f + full_b - 2.0 * w)).max(0.0),
        // (PP/2−1)(F&B+B−3W) with PP the stage count: pp for DualPipe, 2·pp chunks for DualPipeV.
        Schedule::Dualpipe => ((p / 2.0 - 1.0) * (fb + full_b - 3.0 * w)).max(0.0),
        Schedule::Dualpipev => ((p - 1.0) * (fb + full_b - 3.0 * w)).max(0.0),
    }
}

/// Micro-batches of one chunk's activations held at the peak by the busiest rank, in units of
/// one pipeline stage's activations (so DualPipeV's half-size chunks count a half each).
pub fn activations_in_flight(s: Schedule, pp: u64, vpp: u64, micro_batches: u64) -> f64 {
    let p = pp as f64;
    match s {
        Schedule::Gpipe => micro_batches as f64,
        Schedule::OneFOneB | Schedule::Zb1p => p.min(micro_batches as f64),
        Schedule::Interleaved => p + (p - 1.0) / vpp.max(1) as f64,
        Schedule::Dualpipe => p + 1.0,
        Schedule::Dualpipev => (2.0 * p + 1.0) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_f_one_b_bubble_fraction() {
        // With m micro-batches of F + B each, 1F1B idles (p−1)/(m+p−1) of the step.
        let (p, m, f, b) = (8u64, 32u64, 1.0, 2.0);
        let bub = bubble(Schedule::OneFOneB, p, 1, f, b, 0.0, 0.0);
        let frac = bub / (bub + m as f64 * (f + b));
        assert!((frac - (p - 1) as f64 / (m + p - 1) as f64).abs() < 1e-12);
    }

    #[test]
    fn interleaving_divides_the_bubble() {
        let a = bubble(Schedule::OneFOneB, 8, 1, 1.0, 1.0, 1.0, 0.0);
        let b = bubble(Schedule::Interleaved, 8, 4, 1.0, 1.0, 1.0, 0.0);
        assert!((a / b - 4.0).abs() < 1e-12);
    }

    #[test]
    fn zero_bubble_and_dualpipe_tables() {
        // ZB1P: (p−1)(F+B−2W) with B = 2 (input 1 + weights 1): (8−1)(1+2−2) = 7.
        assert_eq!(bubble(Schedule::Zb1p, 8, 1, 1.0, 1.0, 1.0, 0.0), 7.0);
        // DualPipe: (PP/2−1)(F&B+B−3W) = 3·(2.5+2−3) = 4.5.
        assert_eq!(bubble(Schedule::Dualpipe, 8, 1, 1.0, 1.0, 1.0, 2.5), 4.5);
        assert_eq!(activations_in_flight(Schedule::Dualpipe, 16, 1, 120), 17.0);
        assert_eq!(activations_in_flight(Schedule::OneFOneB, 16, 1, 120), 16.0);
        assert_eq!(activations_in_flight(Schedule::Gpipe, 16, 1, 120), 120.0);
    }
}
