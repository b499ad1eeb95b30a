//! Pipeline schedules: bubble formulas and activations in flight.
//!
//! Used in closed form by the analytic engine and as test oracles for the discrete-event engine.
//! `f`, `b` and `w` are one *chunk's* forward, backward-for-input and backward-for-weights times
//! on the pipeline's slowest rank (a chunk is a stage, a 1/vpp virtual stage for the interleaved
//! schedule, or half a stage for DualPipeV); `fb` is the time of one forward chunk overlapped with
//! one backward chunk (DualPipe's "F&B"). Sources: Narayanan et al. SC21 (1F1B, interleaved),
//! Qi et al. 2023 (ZB1P), DeepSeek DualPipe README table.

use crate::domain::Schedule;

/// Pipeline bubble per step, in seconds.
pub fn bubble(s: Schedule, pp: u64, f: f64, b: f64, w: f64, fb: f64) -> f64 {
    let p = pp as f64;
    let full_b = b + w;
    match s {
        Schedule::Gpipe | Schedule::OneFOneB => (p - 1.0) * (f + full_b),
        // (p−1)(F+B)/v in stage times is (p−1)(f+b) in chunk times.
        Schedule::Interleaved => (p - 1.0) * (f + full_b),
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
        // Megatron's warm-up on rank 0: 2(p−1) + (v−1)p chunk forwards and one more, i.e.
        // p + (p−1)/v stages' worth; with few micro-batches, all m·v of them.
        Schedule::Interleaved => {
            let v = vpp.max(1) as f64;
            (p * v + p - 1.0).min(micro_batches as f64 * v) / v
        }
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
        let bub = bubble(Schedule::OneFOneB, p, f, b, 0.0, 0.0);
        let frac = bub / (bub + m as f64 * (f + b));
        assert!((frac - (p - 1) as f64 / (m + p - 1) as f64).abs() < 1e-12);
    }

    #[test]
    fn interleaving_divides_the_bubble() {
        // Same stages; with vpp 4 each chunk is a quarter of a stage.
        let a = bubble(Schedule::OneFOneB, 8, 1.0, 1.0, 1.0, 0.0);
        let b = bubble(Schedule::Interleaved, 8, 0.25, 0.25, 0.25, 0.0);
        assert!((a / b - 4.0).abs() < 1e-12);
    }

    #[test]
    fn zero_bubble_and_dualpipe_tables() {
        // ZB1P: (p−1)(F+B−2W) with B = 2 (input 1 + weights 1): (8−1)(1+2−2) = 7.
        assert_eq!(bubble(Schedule::Zb1p, 8, 1.0, 1.0, 1.0, 0.0), 7.0);
        // DualPipe: (PP/2−1)(F&B+B−3W) = 3·(2.5+2−3) = 4.5.
        assert_eq!(bubble(Schedule::Dualpipe, 8, 1.0, 1.0, 1.0, 2.5), 4.5);
        assert_eq!(activations_in_flight(Schedule::Dualpipe, 16, 1, 120), 17.0);
        assert_eq!(activations_in_flight(Schedule::OneFOneB, 16, 1, 120), 16.0);
        assert_eq!(activations_in_flight(Schedule::Gpipe, 16, 1, 120), 120.0);
    }
}

/// One step of a pipeline rank's program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Forward of `chunk` for micro-batch `mb`.
    F { chunk: u32, mb: u32 },
    /// Backward of `chunk` for `mb`; with `defer_w` its weight gradients wait for a later [`Op::W`].
    B { chunk: u32, mb: u32, defer_w: bool },
    /// Weight gradients of the oldest deferred backward.
    W,
    /// A forward and a backward of different micro-batches, overlapped (DualPipe's F&B).
    FB { f: (u32, u32), b: (u32, u32) },
    /// The two halves `mbs` of one micro-batch through `chunk` together, layer by layer
    /// (two-micro-batch overlap): their forwards, or their backwards with weight gradients.
    Twin {
        chunk: u32,
        mbs: (u32, u32),
        backward: bool,
    },
}

/// Model chunks a pipeline of `pp` ranks cuts the layers into: one per rank, `vpp` per rank
/// interleaved, two per rank for DualPipeV's V.
pub fn chunk_count(s: Schedule, pp: u64, vpp: u64) -> u64 {
    pp * match s {
        Schedule::Interleaved => vpp,
        Schedule::Dualpipev => 2,
        _ => 1,
    }
}

/// The rank that runs `chunk` for micro-batch `mb`.
pub fn rank_of(s: Schedule, pp: u64, micro_batches: u64, chunk: u32, mb: u32) -> u32 {
    let p = narrow(pp);
    match s {
        Schedule::Interleaved => chunk % p,
        Schedule::Dualpipev => {
            if chunk < p {
                chunk
            } else {
                2 * p - 1 - chunk
            }
        }
        Schedule::Dualpipe => {
            if (mb as u64) < micro_batches / 2 {
                chunk
            } else {
                p - 1 - chunk
            }
        }
        _ => chunk,
    }
}

/// The program of pipeline rank `rank`: the order in which it runs its chunks.
pub fn program(s: Schedule, pp: u64, vpp: u64, micro_batches: u64, rank: u64) -> Vec<Op> {
    let (p, m, r) = (narrow(pp), narrow(micro_batches), narrow(rank));
    let f = |mb| Op::F { chunk: r, mb };
    let b = |mb, defer_w| Op::B {
        chunk: r,
        mb,
        defer_w,
    };
    let mut ops = Vec::new();
    match s {
        Schedule::Gpipe => {
            ops.extend((0..m).map(f));
            ops.extend((0..m).map(|i| b(i, false)));
        }
        Schedule::OneFOneB | Schedule::Zb1p => {
            let zb = s == Schedule::Zb1p;
            let warm = (p - r - 1).min(m);
            ops.extend((0..warm).map(f));
            let mut pending = 0u32;
            for i in 0..m - warm {
                ops.push(f(warm + i));
                ops.push(b(i, zb));
                if zb {
                    pending += 1;
                    // ZB-H1: the input gradient leaves as soon as B is done; W follows while
                    // the next dependency is in flight.
                    if pending > 0 {
                        ops.push(Op::W);
                        pending -= 1;
                    }
                }
            }
            for i in m - warm..m {
                ops.push(b(i, zb));
                if zb {
                    ops.push(Op::W);
                }
            }
            if zb {
                ops.extend((0..pending).map(|_| Op::W));
            }
        }
        Schedule::Interleaved => {
            let v = vpp as u32;
            let total = m * v;
            let warm = ((p - r - 1) * 2 + (v - 1) * p).min(total);
            let fwd = |k: u32| {
                let (chunk, mb) = interleaved_pass(p, v, r, k, false);
                Op::F { chunk, mb }
            };
            let bwd = |k: u32| {
                let (chunk, mb) = interleaved_pass(p, v, r, k, true);
                Op::B {
                    chunk,
                    mb,
                    defer_w: false,
                }
            };
            ops.extend((0..warm).map(fwd));
            for k in 0..total - warm {
                ops.push(fwd(warm + k));
                ops.push(bwd(k));
            }
            ops.extend((total - warm..total).map(bwd));
        }
        Schedule::Dualpipe | Schedule::Dualpipev => return dual_program(s, p, m, r),
    }
    ops
}

/// The (chunk, micro-batch) of rank `r`'s `k`-th forward (or backward) under Megatron's
/// interleaved order of `p` ranks × `v` chunks each: `p` micro-batches through one chunk, then
/// the next chunk (backwards from the last); with `v` = 1, plain 1F1B's k-th micro-batch.
fn interleaved_pass(p: u32, v: u32, r: u32, k: u32, backward: bool) -> (u32, u32) {
    let stage = (k / p) % v;
    let stage = if backward { v - 1 - stage } else { stage };
    (stage * p + r, (k / (p * v)) * p + k % p)
}

/// The program of pipeline rank `rank` under two-micro-batch overlap: `schedule`'s own program
/// over the `micro_batches / 2` pairs, each pass of pair `j` run as its halves `2j` and `2j+1`
/// together.
pub fn twin_program(s: Schedule, pp: u64, vpp: u64, micro_batches: u64, rank: u64) -> Vec<Op> {
    program(s, pp, vpp, micro_batches / 2, rank)
        .into_iter()
        .map(|op| match op {
            Op::F { chunk, mb } => Op::Twin {
                chunk,
                mbs: (2 * mb, 2 * mb + 1),
                backward: false,
            },
            Op::B {
                chunk,
                mb,
                defer_w: false,
            } => Op::Twin {
                chunk,
                mbs: (2 * mb, 2 * mb + 1),
                backward: true,
            },
            other => panic!("{other:?} in a two-micro-batch program (checked by the layout)"),
        })
        .collect()
}

/// The program of pipeline rank `rank` under Megatron-Core's combined 1F1B
/// (`--overlap-moe-expert-parallel-comm`): 1F1B without a pipeline, or interleaved 1F1B, with
/// one more warm-up forward, then each steady-state forward merged with the next backward as
/// one overlapped pair (another micro-batch's, or another chunk's), layer by layer; the
/// cool-down backwards alone. Without a pipeline: F0, (F1 B0), (F2 B1), …, B(m−1).
pub fn combined_program(s: Schedule, pp: u64, vpp: u64, micro_batches: u64, rank: u64) -> Vec<Op> {
    let (p, m, r) = (narrow(pp), narrow(micro_batches), narrow(rank));
    let v = if s == Schedule::Interleaved {
        vpp as u32
    } else {
        1
    };
    let total = m * v;
    let warm = if s == Schedule::Interleaved {
        (p - r - 1) * 2 + (v - 1) * p
    } else {
        p - r - 1
    };
    let warm = (warm + 1).min(total);
    let fwd = |k: u32| interleaved_pass(p, v, r, k, false);
    let bwd = |k: u32| interleaved_pass(p, v, r, k, true);
    let mut ops: Vec<Op> = (0..warm)
        .map(|k| {
            let (chunk, mb) = fwd(k);
            Op::F { chunk, mb }
        })
        .collect();
    for k in 0..total - warm {
        ops.push(Op::FB {
            f: fwd(warm + k),
            b: bwd(k),
        });
    }
    ops.extend((total - warm..total).map(|k| {
        let (chunk, mb) = bwd(k);
        Op::B {
            chunk,
            mb,
            defer_w: false,
        }
    }));
    ops
}

/// DualPipe and DualPipeV (deepseek-ai/DualPipe): two "phases" per rank fed from both ends,
/// eight steps from warm-up through overlapped F&B pairs to the zero-bubble drain.
fn dual_program(s: Schedule, p: u32, m: u32, r: u32) -> Vec<Op> {
    let v = s == Schedule::Dualpipev;
    // (ranks per half, position in the half, micro-batches per phase, middle rank)
    let (half, hr, h, middle) = if v {
        (p, r, m, r == p - 1)
    } else {
        (p / 2, r.min(p - 1 - r), m / 2, r == p / 2 - 1 || r == p / 2)
    };
    let second_half = !v && r >= p / 2;
    let mut fc = [0u32; 2];
    let mut bc = [0u32; 2];
    // Phase → (chunk, micro-batch) for the next forward / backward of that phase.
    let mut next = |phase: u32, fwd: bool| -> (u32, u32) {
        let d = (phase ^ second_half as u32) as usize;
        let counter = if fwd { &mut fc[d] } else { &mut bc[d] };
        let k = *counter;
        *counter += 1;
        if v {
            (if d == 0 { r } else { 2 * p - 1 - r }, k)
        } else {
            (if d == 0 { r } else { p - 1 - r }, d as u32 * h + k)
        }
    };
    let mut ops = Vec::new();
    let f = |ops: &mut Vec<Op>, next: &mut dyn FnMut(u32, bool) -> (u32, u32), ph| {
        let (chunk, mb) = next(ph, true);
        ops.push(Op::F { chunk, mb });
    };
    let b = |ops: &mut Vec<Op>, next: &mut dyn FnMut(u32, bool) -> (u32, u32), ph, defer_w| {
        let (chunk, mb) = next(ph, false);
        ops.push(Op::B { chunk, mb, defer_w });
    };
    let fb = |ops: &mut Vec<Op>, next: &mut dyn FnMut(u32, bool) -> (u32, u32), p0, p1| {
        let fw = next(p0, true);
        let bw = next(p1, false);
        ops.push(Op::FB { f: fw, b: bw });
    };
    let rest = half - hr - 1;
    for _ in 0..rest * 2 {
        f(&mut ops, &mut next, 0);
    }
    for _ in 0..hr + 1 {
        f(&mut ops, &mut next, 0);
        f(&mut ops, &mut next, 1);
    }
    for _ in 0..rest {
        b(&mut ops, &mut next, 1, true);
        ops.push(Op::W);
        f(&mut ops, &mut next, 1);
    }
    let main = h + hr + 1 - 2 * half;
    for i in 0..main {
        if i == 0 && middle {
            // The middle ranks do not overlap their first pair (DualPipe: smaller bubble).
            f(&mut ops, &mut next, 0);
            b(&mut ops, &mut next, 1, false);
        } else {
            fb(&mut ops, &mut next, 0, 1);
        }
        fb(&mut ops, &mut next, 1, 0);
    }
    for _ in 0..rest {
        b(&mut ops, &mut next, 1, false);
        fb(&mut ops, &mut next, 1, 0);
    }
    // Drain: of the 2(hr+1) backward chunks, the second half defer their weight gradients.
    let n6 = 2 * (hr + 1);
    for i in 0..n6 {
        b(
            &mut ops,
            &mut next,
            if i % 2 == 0 { 1 } else { 0 },
            i >= n6 / 2,
        );
    }
    for _ in 0..rest {
        ops.push(Op::W);
        b(&mut ops, &mut next, 0, true);
    }
    for _ in 0..hr + 1 {
        ops.push(Op::W);
    }
    ops
}

#[cfg(test)]
mod program_tests {
    use super::*;

    /// Every rank runs each of its (chunk, micro-batch) forwards and backwards exactly once,
    /// and every deferred weight gradient is eventually run.
    #[test]
    fn programs_are_complete() {
        // 0: the schedule's own program, 1: combined 1F1B, 2: two-micro-batch overlap.
        for (s, pp, vpp, m, kind) in [
            (Schedule::OneFOneB, 1, 1, 4, 1),
            (Schedule::Interleaved, 4, 2, 8, 1),
            (Schedule::Interleaved, 2, 4, 2, 1),
            (Schedule::OneFOneB, 4, 1, 16, 2),
            (Schedule::Gpipe, 4, 1, 8, 2),
            (Schedule::Interleaved, 4, 2, 16, 2),
        ]
        .into_iter()
        .chain(
            [
                (Schedule::Gpipe, 4, 1, 8),
                (Schedule::OneFOneB, 4, 1, 8),
                (Schedule::OneFOneB, 4, 1, 2),
                (Schedule::Zb1p, 4, 1, 8),
                (Schedule::Interleaved, 4, 2, 8),
                (Schedule::Dualpipe, 4, 1, 8),
                (Schedule::Dualpipe, 8, 1, 20),
                (Schedule::Dualpipev, 4, 1, 10),
            ]
            .map(|(s, pp, vpp, m)| (s, pp, vpp, m, 0)),
        ) {
            let chunks = chunk_count(s, pp, vpp) as u32;
            let mut f_seen = vec![0u32; (chunks * m as u32) as usize];
            let mut b_seen = f_seen.clone();
            for r in 0..pp {
                let mut deferred = 0i32;
                let ops = match kind {
                    1 => combined_program(s, pp, vpp, m, r),
                    2 => twin_program(s, pp, vpp, m, r),
                    _ => program(s, pp, vpp, m, r),
                };
                // A backward never comes before its own forward on the rank.
                let mut fwd_done = std::collections::BTreeSet::new();
                for op in &ops {
                    match *op {
                        Op::F { chunk, mb } => {
                            fwd_done.insert((chunk, mb));
                        }
                        Op::FB { f, b } => {
                            assert!(fwd_done.contains(&b), "{s:?} rank {r}: B{b:?} before its F");
                            fwd_done.insert(f);
                        }
                        Op::B { chunk, mb, .. } if rank_of(s, pp, m, chunk, mb) as u64 == r => {
                            assert!(
                                fwd_done.contains(&(chunk, mb)),
                                "{s:?} rank {r}: B({chunk}, {mb}) before its F"
                            );
                        }
                        Op::Twin {
                            chunk,
                            mbs,
                            backward,
                        } => {
                            assert_eq!(mbs.1, mbs.0 + 1, "halves of one micro-batch");
                            for mb in [mbs.0, mbs.1] {
                                if backward {
                                    assert!(fwd_done.contains(&(chunk, mb)), "{s:?} rank {r}");
                                } else {
                                    fwd_done.insert((chunk, mb));
                                }
                            }
                        }
                        _ => {}
                    }
                }
                if kind == 1 && pp == 1 {
                    let f = |mb| Op::F { chunk: 0, mb };
                    let fb = |a, b| Op::FB {
                        f: (0, a),
                        b: (0, b),
                    };
                    let b = Op::B {
                        chunk: 0,
                        mb: 3,
                        defer_w: false,
                    };
                    assert_eq!(ops, vec![f(0), fb(1, 0), fb(2, 1), fb(3, 2), b]);
                }
                for op in ops {
                    let mut see = |c: u32, mb: u32, fwd: bool| {
                        assert_eq!(
                            rank_of(s, pp, m, c, mb) as u64,
                            r,
                            "{s:?} rank {r} runs chunk {c} mb {mb}"
                        );
                        let v = if fwd { &mut f_seen } else { &mut b_seen };
                        v[(c * m as u32 + mb) as usize] += 1;
                    };
                    match op {
                        Op::F { chunk, mb } => see(chunk, mb, true),
                        Op::B { chunk, mb, defer_w } => {
                            see(chunk, mb, false);
                            deferred += defer_w as i32;
                        }
                        Op::W => {
                            deferred -= 1;
                            assert!(deferred >= 0, "{s:?}: W with nothing deferred");
                        }
                        Op::FB { f, b } => {
                            see(f.0, f.1, true);
                            see(b.0, b.1, false);
                        }
                        Op::Twin {
                            chunk,
                            mbs,
                            backward,
                        } => {
                            see(chunk, mbs.0, !backward);
                            see(chunk, mbs.1, !backward);
                        }
                    }
                }
                assert_eq!(
                    deferred, 0,
                    "{s:?} rank {r}: deferred weight gradients left"
                );
            }
            assert!(f_seen.iter().all(|&n| n == 1), "{s:?}: forwards {f_seen:?}");
            assert!(
                b_seen.iter().all(|&n| n == 1),
                "{s:?}: backwards {b_seen:?}"
            );
        }
    }
}

/// A pipeline count as the schedules hold it: the callers' limits (the DES's
/// micro-batches per replica, the layout's degrees) keep it far below 2^32.
fn narrow(v: u64) -> u32 {
    u32::try_from(v)
        .expect("a pipeline count below 2^32 (the DES limits micro-batches per replica)")
}
