//! The analytic engine: a closed-form estimate of one training step.
//!
//! Per-kernel timing from the tile/wave model ([`KernelModel`]), communication from the
//! bandwidth + latency model ([`AlphaBeta`]), overlap by schedule (DualPipe overlaps one chunk's
//! communication with another's compute; other schedules expose expert and tensor-parallel
//! traffic), the pipeline bubble from the schedule's formula, data-parallel gradient
//! synchronization and the optimizer step. Fast enough for sweeps.

use crate::config::workload::Schedule;
use crate::hw::{Calibration, KernelModel, KernelShape};
use crate::net::AlphaBeta;
use crate::topo::Cluster;
use crate::workload::layout::{span, Layout, Span};
use crate::workload::model::{LayerKind, Model, Part};
use crate::workload::ops::{ChunkWork, CommKind, Expander, Extras};
use crate::workload::schedule;
use crate::workload::Workload;
use serde::Serialize;
use std::collections::BTreeMap;

/// Seconds of one pass through one chunk for one micro-batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChunkCost {
    /// Blocks `[first, last)`.
    pub blocks: (u64, u64),
    pub extras: String,
    pub fwd: f64,
    pub bwd: f64,
    pub wgrad: f64,
    /// Attention-core time (fwd + bwd), which context-parallel exchange can hide behind.
    pub attention: f64,
    /// Communication by kind (fwd + bwd).
    pub comm: BTreeMap<String, f64>,
    pub kernels: usize,
}

impl ChunkCost {
    fn compute(&self) -> f64 {
        self.fwd + self.bwd + self.wgrad
    }
    fn comm_total(&self) -> f64 {
        self.comm.values().sum()
    }
    fn add(&mut self, o: &ChunkCost) {
        self.fwd += o.fwd;
        self.bwd += o.bwd;
        self.wgrad += o.wgrad;
        self.attention += o.attention;
        self.kernels += o.kernels;
        for (k, v) in &o.comm {
            *self.comm.entry(k.clone()).or_default() += v;
        }
    }
}

/// Where the step time goes, in seconds per step on the slowest pipeline rank.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Breakdown {
    pub compute: f64,
    pub forward: f64,
    pub backward: f64,
    pub weight_grad: f64,
    pub exposed_comm: f64,
    pub exposed_comm_by_kind: BTreeMap<String, f64>,
    pub bubble: f64,
    pub optimizer: f64,
}

/// Peak memory per GPU, bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Memory {
    pub params: f64,
    pub weights: f64,
    pub grads: f64,
    pub optimizer: f64,
    pub activations: f64,
    pub total: f64,
    pub capacity: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    pub step_time_s: f64,
    pub breakdown: Breakdown,
    pub memory: Memory,
    pub chunks: Vec<ChunkCost>,
    pub bottleneck_rank: u64,
    pub kernels_per_step: u64,
}

fn kind_name(k: CommKind) -> &'static str {
    match k {
        CommKind::Ep => "ep",
        CommKind::Tp => "tp",
        CommKind::Cp => "cp",
        CommKind::Pp => "pp",
        CommKind::Dp => "dp",
    }
}

/// Prices a chunk's work.
fn cost(work: &ChunkWork, km: &KernelModel, sms: u32, ab: &AlphaBeta) -> ChunkCost {
    let t = |ks: &[crate::workload::ops::Kernel]| {
        ks.iter()
            .map(|k| km.time(&k.shape, sms).as_secs_f64())
            .sum::<f64>()
    };
    let attention = work
        .fwd
        .iter()
        .chain(&work.bwd)
        .filter(|k| matches!(k.shape, KernelShape::Attention { .. }))
        .map(|k| km.time(&k.shape, sms).as_secs_f64())
        .sum();
    let mut comm = BTreeMap::new();
    for c in work.comm_fwd.iter().chain(&work.comm_bwd) {
        *comm.entry(kind_name(c.kind).to_string()).or_insert(0.0) += ab.time(&c.op);
    }
    ChunkCost {
        blocks: (0, 0),
        extras: String::new(),
        fwd: t(&work.fwd),
        bwd: t(&work.bwd),
        wgrad: t(&work.wgrad),
        attention,
        comm,
        kernels: work.fwd.len() + work.bwd.len() + work.wgrad.len(),
    }
}

/// Splits `costs` into `k` contiguous non-empty runs minimizing the largest sum.
pub fn partition(costs: &[f64], k: usize) -> Vec<(usize, usize)> {
    let n = costs.len();
    assert!(k >= 1 && k <= n, "cannot cut {n} items into {k} runs");
    let mut prefix = vec![0.0; n + 1];
    for i in 0..n {
        prefix[i + 1] = prefix[i] + costs[i];
    }
    // best[j][i]: minimal max over the first i items cut into j runs; cut[j][i]: last cut point.
    let mut best = vec![vec![f64::INFINITY; n + 1]; k + 1];
    let mut cut = vec![vec![0usize; n + 1]; k + 1];
    best[0][0] = 0.0;
    for j in 1..=k {
        for i in j..=n {
            for c in (j - 1)..i {
                let v = best[j - 1][c].max(prefix[i] - prefix[c]);
                if v < best[j][i] {
                    best[j][i] = v;
                    cut[j][i] = c;
                }
            }
        }
    }
    let mut runs = Vec::with_capacity(k);
    let mut i = n;
    for j in (1..=k).rev() {
        let c = cut[j][i];
        runs.push((c, i));
        i = c;
    }
    runs.reverse();
    runs
}

/// Estimates one step of `w` at `layout` on `cluster`.
pub fn estimate(w: &Workload, layout: &Layout, cluster: &Cluster, cal: &Calibration) -> Estimate {
    let model: &Model = &w.model;
    let km = KernelModel::new(&cluster.gpu, cal);
    let ab = AlphaBeta::new(cluster, cal);
    let sms = cluster.gpu.sms.value - layout.comm_sms;
    let gpn = cluster.gpus_per_node as u64;
    let ex = Expander {
        model,
        layout,
        precision: &w.precision,
        recompute: w.recompute,
        gpus_per_node: gpn,
    };
    let dense = cost(&ex.block(LayerKind::Dense).flatten(), &km, sms, &ab);
    let moe = model
        .moe
        .map(|_| cost(&ex.block(LayerKind::Moe).flatten(), &km, sms, &ab));
    let block_cost = |k: LayerKind| match k {
        LayerKind::Moe => moe.clone().expect("MoE block in a model with experts"),
        LayerKind::Dense => dense.clone(),
    };
    let first = cost(
        &ex.extras(Extras {
            embedding: true,
            ..Default::default()
        })
        .flatten(),
        &km,
        sms,
        &ab,
    );
    let last = cost(
        &ex.extras(Extras {
            head: true,
            mtp_depth: model.mtp_depth,
            ..Default::default()
        })
        .flatten(),
        &km,
        sms,
        &ab,
    );
    let kinds = model.layer_kinds();
    let n = kinds.len();
    let mut item_costs: Vec<f64> = kinds.iter().map(|&k| block_cost(k).compute()).collect();
    item_costs[0] += first.compute();
    item_costs[n - 1] += last.compute();
    let runs = partition(&item_costs, layout.chunks() as usize);
    let chunks: Vec<ChunkCost> = runs
        .iter()
        .enumerate()
        .map(|(ci, &(a, b))| {
            let mut c = ChunkCost::default();
            for &k in &kinds[a..b] {
                c.add(&block_cost(k));
            }
            let mut extras = Vec::new();
            if ci == 0 {
                c.add(&first);
                extras.push("embedding");
            }
            if ci == runs.len() - 1 {
                c.add(&last);
                extras.push("head");
                if model.mtp_depth > 0 {
                    extras.push("mtp");
                }
            }
            c.blocks = (a as u64, b as u64);
            c.extras = extras.join("+");
            c
        })
        .collect();

    let overlapped = matches!(layout.schedule, Schedule::Dualpipe | Schedule::Dualpipev);
    // Time of one micro-batch through a chunk (forward + backward), and the exposed part by kind.
    let pair = |c: &ChunkCost| -> (f64, BTreeMap<String, f64>) {
        let mut exposed = BTreeMap::new();
        if overlapped {
            let over = (c.comm_total() - c.compute()).max(0.0);
            let total = c.comm_total();
            for (k, v) in &c.comm {
                exposed.insert(k.clone(), if total > 0.0 { over * v / total } else { 0.0 });
            }
            (c.compute() + over, exposed)
        } else {
            let mut t = c.compute();
            for (k, v) in &c.comm {
                let e = if k == "cp" {
                    (v - c.attention).max(0.0)
                } else {
                    *v
                };
                exposed.insert(k.clone(), e);
                t += e;
            }
            (t, exposed)
        }
    };

    // The slowest pipeline rank sets the pace.
    let mut bottleneck = (0u64, f64::NEG_INFINITY);
    for d in 0..layout.pp {
        let t: f64 = layout
            .device_chunks(d)
            .iter()
            .map(|&(c, m)| m as f64 * pair(&chunks[c as usize]).0)
            .sum();
        if t > bottleneck.1 {
            bottleneck = (d, t);
        }
    }
    let (rank, steady) = bottleneck;
    let mine = layout.device_chunks(rank);
    let mbs: f64 = mine.iter().map(|&(_, m)| m as f64).sum();
    let mut bd = Breakdown::default();
    let mut avg = ChunkCost::default();
    let mut avg_pair = 0.0;
    for &(c, m) in &mine {
        let cc = &chunks[c as usize];
        let (p, exposed) = pair(cc);
        let m = m as f64;
        bd.forward += m * cc.fwd;
        bd.backward += m * cc.bwd;
        bd.weight_grad += m * cc.wgrad;
        for (k, v) in exposed {
            *bd.exposed_comm_by_kind.entry(k).or_default() += m * v;
        }
        avg.fwd += m * cc.fwd / mbs;
        avg.bwd += m * cc.bwd / mbs;
        avg.wgrad += m * cc.wgrad / mbs;
        avg_pair += m * p / mbs;
    }
    bd.compute = bd.forward + bd.backward + bd.weight_grad;
    bd.bubble = schedule::bubble(
        layout.schedule,
        layout.pp,
        layout.vpp,
        avg.fwd,
        avg.bwd,
        avg.wgrad,
        avg_pair,
    );

    // Pipeline fill and drain: one activation send and one gradient send per stage boundary.
    let (pf, pb) = ex.p2p();
    let pp_exposed = if layout.pp > 1 {
        (layout.pp - 1) as f64 * (ab.time(&pf.op) + ab.time(&pb.op))
    } else {
        0.0
    };
    *bd.exposed_comm_by_kind.entry("pp".into()).or_default() += pp_exposed;

    // Parameters on the bottleneck rank, split into replicated (dense) and expert weights.
    let chunk_params = |c: &ChunkCost| -> (f64, f64) {
        let (mut dense_p, mut expert_p) = (0.0, 0.0);
        for i in c.blocks.0..c.blocks.1 {
            for l in model.block_linears(model.layer_kind(i)) {
                let p = l.params() as f64;
                match l.part {
                    Part::RoutedExperts => expert_p += p / layout.ep as f64,
                    _ if l.tp_split.is_some() => dense_p += p / layout.tp as f64,
                    _ => dense_p += p,
                }
            }
            dense_p += model.block_vector_params(model.layer_kind(i)) as f64;
        }
        if c.extras.contains("embedding") {
            dense_p += (model.vocab * model.hidden / layout.tp) as f64;
        }
        if c.extras.contains("head") {
            dense_p += model.head_linear().params() as f64 / layout.tp as f64;
        }
        if c.extras.contains("mtp") {
            let k = model.mtp_layer_kind();
            for l in model.block_linears(k) {
                let p = l.params() as f64;
                match l.part {
                    Part::RoutedExperts => {
                        expert_p += p / layout.ep as f64 * model.mtp_depth as f64
                    }
                    _ => {
                        dense_p += p * model.mtp_depth as f64
                            / if l.tp_split.is_some() {
                                layout.tp as f64
                            } else {
                                1.0
                            }
                    }
                }
            }
            dense_p += model.mtp_projection().params() as f64 * model.mtp_depth as f64;
        }
        (dense_p, expert_p)
    };
    let (mut dense_p, mut expert_p) = (0.0, 0.0);
    for &(c, _) in &mine {
        let (d, e) = chunk_params(&chunks[c as usize]);
        dense_p += d;
        expert_p += e;
    }

    // Data-parallel gradient sync: all-reduce (ZeRO-0) or reduce-scatter + all-gather.
    let pr = &w.precision;
    let dense_group = span(layout.dp * layout.cp, layout.tp, gpn);
    let expert_group = span(layout.expert_dp(), layout.ep, gpn);
    let sync = |params: f64, g: Span| -> f64 {
        if g.size <= 1 || params == 0.0 {
            return 0.0;
        }
        let grads = params * pr.grad_comm.bytes();
        let weights = params * pr.params.bytes();
        match layout.zero {
            0 => ab.time(&crate::net::CommOp::AllReduce {
                bytes: grads,
                span: g,
            }),
            _ => {
                ab.time(&crate::net::CommOp::ReduceScatter {
                    bytes: grads,
                    span: g,
                }) + ab.time(&crate::net::CommOp::AllGather {
                    bytes: weights,
                    span: g,
                })
            }
        }
    };
    let dp_time = sync(dense_p, dense_group) + sync(expert_p, expert_group);
    *bd.exposed_comm_by_kind.entry("dp".into()).or_default() += dp_time;
    bd.exposed_comm = bd.exposed_comm_by_kind.values().sum();

    // Optimizer: AdamW streams grads, master weights, two moments and the working weights.
    let shard = |p: f64, g: u64| {
        if layout.zero >= 1 {
            p / g.max(1) as f64
        } else {
            p
        }
    };
    let opt_params = shard(dense_p, dense_group.size) + shard(expert_p, expert_group.size);
    let per_param = pr.grads.bytes()
        + 2.0 * pr.master.bytes()
        + 4.0 * pr.optimizer_states.bytes()
        + pr.params.bytes();
    bd.optimizer = km
        .time(
            &KernelShape::Memory {
                bytes: opt_params * per_param,
            },
            cluster.gpu.sms.value,
        )
        .as_secs_f64();

    // Memory on the bottleneck rank.
    let params = dense_p + expert_p;
    let by_zero = |p_dense: f64, p_exp: f64, stage: u8, bytes: f64| {
        let f = |p: f64, g: u64| {
            if layout.zero >= stage {
                p / g.max(1) as f64
            } else {
                p
            }
        };
        (f(p_dense, dense_group.size) + f(p_exp, expert_group.size)) * bytes
    };
    let t = layout.tokens_per_microbatch() as f64;
    let act_per_mb: f64 = mine
        .iter()
        .map(|&(c, _)| {
            let cc = &chunks[c as usize];
            (cc.blocks.0..cc.blocks.1)
                .map(|i| {
                    model.activation_bytes_per_token(
                        model.layer_kind(i),
                        w.recompute,
                        pr.activations,
                        layout.tp,
                    ) * t
                })
                .sum::<f64>()
        })
        .sum::<f64>()
        / mine.len() as f64;
    let inflight = schedule::activations_in_flight(
        layout.schedule,
        layout.pp,
        layout.vpp,
        layout.micro_batches,
    );
    let mem = Memory {
        params,
        weights: by_zero(dense_p, expert_p, 3, pr.params.bytes()),
        grads: by_zero(dense_p, expert_p, 2, pr.grads.bytes()),
        optimizer: by_zero(
            dense_p,
            expert_p,
            1,
            pr.master.bytes() + 2.0 * pr.optimizer_states.bytes(),
        ),
        activations: act_per_mb * inflight,
        total: 0.0,
        capacity: cluster.gpu.hbm_capacity.value.bytes,
    };
    let mem = Memory {
        total: mem.weights + mem.grads + mem.optimizer + mem.activations,
        ..mem
    };

    let step = steady + bd.bubble + pp_exposed + dp_time + bd.optimizer;
    let kernels_per_step = (0..layout.pp)
        .flat_map(|d| layout.device_chunks(d))
        .map(|(c, m)| m * chunks[c as usize].kernels as u64)
        .sum::<u64>()
        * layout.tp
        * layout.cp
        * layout.dp;
    Estimate {
        step_time_s: step,
        breakdown: bd,
        memory: mem,
        chunks,
        bottleneck_rank: rank,
        kernels_per_step,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_is_optimal_on_small_cases() {
        let runs = partition(&[1.0, 1.0, 1.0, 1.0], 2);
        assert_eq!(runs, vec![(0, 2), (2, 4)]);
        let runs = partition(&[5.0, 1.0, 1.0, 1.0, 1.0, 1.0], 2);
        assert_eq!(runs, vec![(0, 1), (1, 6)]);
        // Every run non-empty and contiguous.
        let runs = partition(&[1.0; 7], 7);
        assert!(runs.iter().all(|(a, b)| b - a == 1));
    }
}

#[cfg(test)]
mod trace_tests {
    use super::*;
    use crate::config::{Override, Source};
    use crate::pipeline::{load, DEFAULT_TOPOLOGY, DEFAULT_WORKLOAD};

    /// One DeepSeek-V3 MoE layer (4096-token micro-batch, EP64, 112 compute SMs) against the
    /// H800 profile trace's per-layer phase totals (reference §6.2): F 8,974, B 14,647, W 8,766 µs.
    #[test]
    fn moe_layer_pair_against_the_trace() {
        let t = Source::embedded(DEFAULT_TOPOLOGY.0, DEFAULT_TOPOLOGY.1);
        let w = Source::embedded(DEFAULT_WORKLOAD.0, DEFAULT_WORKLOAD.1);
        let (cluster, wl) = load(&t, &w, &[] as &[Override]).unwrap();
        let cal = Calibration::embedded();
        let km = KernelModel::new(&cluster.gpu, &cal);
        let ab = AlphaBeta::new(&cluster, &cal);
        let ex = Expander {
            model: &wl.model,
            layout: &wl.layout,
            precision: &wl.precision,
            recompute: wl.recompute,
            gpus_per_node: 8,
        };
        let work = ex.block(LayerKind::Moe).flatten();
        let c = cost(&work, &km, 112, &ab);
        for (pass, ks) in [
            ("fwd", &work.fwd),
            ("bwd", &work.bwd),
            ("wgrad", &work.wgrad),
        ] {
            for k in ks.iter() {
                println!(
                    "{pass:6} {:40} {:9.1} us",
                    k.name,
                    km.time(&k.shape, 112).as_secs_f64() * 1e6
                );
            }
        }
        let us = |s: f64| s * 1e6;
        println!(
            "F {:.0} (trace 8974)  B {:.0} (trace 14647)  W {:.0} (trace 8766)  comm {:?}",
            us(c.fwd),
            us(c.bwd),
            us(c.wgrad),
            c.comm
        );
        let total = us(c.compute());
        println!(
            "F+B+W {total:.0} us against 32,387 us in the trace: {:+.1}%",
            (total / 32387.0 - 1.0) * 100.0
        );
    }
}
