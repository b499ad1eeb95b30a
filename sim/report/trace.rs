//! The discrete-event timeline in the Chrome trace event format (JSON), which Perfetto's UI and
//! `chrome://tracing` load.
//!
//! - One process per simulated GPU ("GPU 3 · stage 3"), one thread per stream (compute,
//!   weight-gradient compute, communication, pipeline, data-parallel).
//! - A complete event (`"ph": "X"`) per task — a timed segment: a run of kernels, or one
//!   transfer — with its FLOPs, bytes, SMs, micro-batch, chunk, block and layer in `args`.
//!   With `kernels`, inside each compute task one nested complete event per kernel, its share
//!   of the task's span in proportion to its time alone (a task slowed by SM sharing slows all
//!   its kernels alike). That is about four times the events, so it is asked for
//!   (`--trace-kernels`), not the default.
//! - Flow events (`"ph": "s"` / `"f"`) from each pipeline send to the task that receives it.
//! - Counter tracks per GPU: NIC and NVLink load, the sum over active transfers of buffer bytes
//!   over duration, as a share of the link's bandwidth per direction. An estimate from the
//!   transfers' own sizes and times: the flow-level network's per-link figures are not kept.
//!
//! Timestamps are microseconds with six decimals, so the engine's picoseconds survive.

use crate::step::{TimedTask, Timeline};
use crate::workload::ops::CommKind;
use crate::workload::taskgraph::{Pass, NO_DETAIL, P2P, STREAM_NAMES};
use std::fmt::Write;

/// Which simulated GPUs to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ranks {
    /// The first simulated GPU of each pipeline stage (every GPU of a representative run).
    Stages,
    All,
    /// These simulated GPUs.
    List(Vec<u32>),
}

impl Ranks {
    /// Parses `--trace-ranks`: `stages`, `all`, or GPU indices such as `0,8,16`.
    pub fn parse(s: &str) -> Result<Ranks, String> {
        match s.trim() {
            "stages" => Ok(Ranks::Stages),
            "all" => Ok(Ranks::All),
            list => list
                .split(',')
                .map(|x| x.trim().parse::<u32>().map_err(|_| x.trim().to_string()))
                .collect::<Result<Vec<_>, _>>()
                .map(Ranks::List)
                .map_err(|bad| format!("\"{bad}\"")),
        }
    }

    /// The GPUs selected from `t`, ascending; an index past the simulated GPUs is an error.
    pub fn select(&self, t: &Timeline) -> Result<Vec<u32>, u32> {
        let reps = t.replicas.max(1);
        let mut v: Vec<u32> = match self {
            Ranks::Stages => (0..t.gpus).filter(|g| g % reps == 0).collect(),
            Ranks::All => (0..t.gpus).collect(),
            Ranks::List(l) => {
                if let Some(&bad) = l.iter().find(|&&g| g >= t.gpus) {
                    return Err(bad);
                }
                l.clone()
            }
        };
        v.sort_unstable();
        v.dedup();
        Ok(v)
    }
}

/// Microseconds with picosecond precision.
fn us(ps: u64) -> String {
    format!("{}.{:06}", ps / 1_000_000, ps % 1_000_000)
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// The category of a task: its pass, or its communication kind.
pub fn category(p: Pass) -> &'static str {
    match p {
        Pass::Fwd => "forward",
        Pass::Bwd => "backward",
        Pass::Wgrad => "weight_grad",
        Pass::Optimizer => "optimizer",
        Pass::Comm(k) => k.name(),
    }
}

/// A task's display name: its segment's, or what it is.
pub fn task_name(t: &Timeline, tt: &TimedTask) -> String {
    let task = &tt.task;
    match t.details.get(task.label.detail as usize) {
        Some(d) if task.label.detail != NO_DETAIL => d.name.clone(),
        _ => match task.pass {
            Pass::Optimizer => "optimizer step".into(),
            Pass::Comm(CommKind::Pp) => {
                if task.label.mb == u16::MAX {
                    "pp send".into()
                } else {
                    format!("pp send mb {}", task.label.mb)
                }
            }
            Pass::Comm(CommKind::Dp) if task.stream == crate::workload::taskgraph::DP => {
                if task.label.block == u16::MAX {
                    "dp param all-gather".into()
                } else {
                    "dp gradient bucket".into()
                }
            }
            p => category(p).into(),
        },
    }
}

/// Writes the trace of `gpus` (from [`Ranks::select`]).
pub fn chrome_trace(t: &Timeline, gpus: &[u32], command: &str, kernels: bool) -> String {
    let reps = t.replicas.max(1);
    let keep = |g: u32| gpus.binary_search(&g).is_ok();
    let mut out = String::with_capacity(1 << 20);
    out.push_str("{\"displayTimeUnit\":\"ms\",\"otherData\":{\"generator\":");
    out.push_str(&json_str(&format!(
        "trainsim {} ({command})",
        env!("CARGO_PKG_VERSION")
    )));
    let _ = write!(
        out,
        ",\"bottleneck_gpu\":{},\"step_ps\":{}",
        t.bottleneck_gpu, t.makespan_ps
    );
    out.push_str("},\"traceEvents\":[\n");
    let mut first = true;
    let mut ev = |out: &mut String, e: &str| {
        if !first {
            out.push_str(",\n");
        }
        first = false;
        out.push_str(e);
    };
    for &g in gpus {
        let stage = g / reps;
        let name = if reps > 1 {
            format!("GPU {g} · stage {stage} · replica {}", g % reps)
        } else {
            format!("GPU {g} · stage {stage}")
        };
        ev(
            &mut out,
            &format!(
                "{{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":{g},\"tid\":0,\"ts\":0,\"args\":{{\"name\":{}}}}}",
                json_str(&name)
            ),
        );
        ev(
            &mut out,
            &format!("{{\"ph\":\"M\",\"name\":\"process_sort_index\",\"pid\":{g},\"tid\":0,\"ts\":0,\"args\":{{\"sort_index\":{g}}}}}"),
        );
        for (s, sname) in STREAM_NAMES.iter().enumerate() {
            ev(
                &mut out,
                &format!("{{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":{g},\"tid\":{s},\"ts\":0,\"args\":{{\"name\":\"{sname}\"}}}}"),
            );
            ev(
                &mut out,
                &format!("{{\"ph\":\"M\",\"name\":\"thread_sort_index\",\"pid\":{g},\"tid\":{s},\"ts\":0,\"args\":{{\"sort_index\":{s}}}}}"),
            );
        }
    }
    let names: Vec<String> = t.details.iter().map(|d| json_str(&d.name)).collect();
    let mut e = String::new();
    for tt in &t.tasks {
        let task = &tt.task;
        if !keep(task.gpu) || tt.end_ps < tt.start_ps {
            continue;
        }
        let dur = tt.end_ps - tt.start_ps;
        let detail = (task.label.detail != NO_DETAIL)
            .then(|| t.details.get(task.label.detail as usize))
            .flatten();
        let name = match detail {
            Some(_) => names[task.label.detail as usize].clone(),
            None => json_str(&task_name(t, tt)),
        };
        e.clear();
        let _ = write!(
            e,
            "{{\"ph\":\"X\",\"pid\":{},\"tid\":{},\"ts\":{},\"dur\":{},\"name\":{name},\"cat\":\"{}\",\"args\":{{\"stage\":{}",
            task.gpu,
            task.stream,
            us(tt.start_ps),
            us(dur),
            category(task.pass),
            task.gpu / reps
        );
        let l = task.label;
        for (k, v) in [
            ("chunk", l.chunk),
            ("block", l.block),
            ("micro_batch", l.mb),
        ] {
            if v != u16::MAX {
                let _ = write!(e, ",\"{k}\":{v}");
            }
        }
        if let Some(layer) = detail.and_then(|d| d.layer) {
            let _ = write!(e, ",\"layer\":{layer}");
        }
        if let Some(d) = detail {
            let flops: f64 = d.kernels.iter().map(|k| k.flops).sum();
            let bytes: f64 = d.bytes + d.kernels.iter().map(|k| k.bytes).sum::<f64>();
            let _ = write!(
                e,
                ",\"flops\":{flops:e},\"bytes\":{bytes:e},\"sms\":{},\"kernels\":{}",
                d.sms,
                d.kernels.len()
            );
        }
        e.push_str("}}");
        ev(&mut out, &e);
        // The kernels inside a compute task, in proportion to their time alone.
        if let Some(d) = detail.filter(|d| kernels && d.kernels.len() > 1) {
            let alone: u64 = d.kernels.iter().map(|k| k.ps).sum::<u64>().max(1);
            let mut at = 0u64;
            for (i, k) in d.kernels.iter().enumerate() {
                let from = tt.start_ps + (dur as u128 * at as u128 / alone as u128) as u64;
                at += k.ps;
                let to = if i + 1 == d.kernels.len() {
                    tt.end_ps
                } else {
                    tt.start_ps + (dur as u128 * at as u128 / alone as u128) as u64
                };
                e.clear();
                let _ = write!(
                    e,
                    "{{\"ph\":\"X\",\"pid\":{},\"tid\":{},\"ts\":{},\"dur\":{},\"name\":{}}}",
                    task.gpu,
                    task.stream,
                    us(from),
                    us(to - from),
                    json_str(&k.name)
                );
                ev(&mut out, &e);
            }
        }
    }
    // Pipeline sends to their receivers.
    for (id, &(from, to)) in t.flows.iter().enumerate() {
        let (s, r) = (&t.tasks[from as usize], &t.tasks[to as usize]);
        if !keep(s.task.gpu) || !keep(r.task.gpu) {
            continue;
        }
        ev(
            &mut out,
            &format!(
                "{{\"ph\":\"s\",\"id\":{id},\"pid\":{},\"tid\":{P2P},\"ts\":{},\"name\":\"pp\",\"cat\":\"pp\"}}",
                s.task.gpu,
                us(s.end_ps.saturating_sub(1).max(s.start_ps))
            ),
        );
        ev(
            &mut out,
            &format!(
                "{{\"ph\":\"f\",\"bp\":\"e\",\"id\":{id},\"pid\":{},\"tid\":{},\"ts\":{},\"name\":\"pp\",\"cat\":\"pp\"}}",
                r.task.gpu,
                r.task.stream,
                us(r.start_ps)
            ),
        );
    }
    for (name, series) in counters(t, gpus) {
        for (g, points) in series {
            for (ts, v) in points {
                ev(
                    &mut out,
                    &format!(
                        "{{\"ph\":\"C\",\"pid\":{g},\"tid\":0,\"ts\":{},\"name\":\"{name}\",\"args\":{{\"load\":{v:.4}}}}}",
                        us(ts)
                    ),
                );
            }
        }
    }
    out.push_str("\n]}\n");
    out
}

/// Per counter ("NIC load", "NVLink load") and GPU: the step function of the transfers' load.
#[allow(clippy::type_complexity)]
fn counters(t: &Timeline, gpus: &[u32]) -> Vec<(&'static str, Vec<(u32, Vec<(u64, f64)>)>)> {
    let mut nic: Vec<Vec<(u64, f64)>> = vec![Vec::new(); gpus.len()];
    let mut nvl: Vec<Vec<(u64, f64)>> = vec![Vec::new(); gpus.len()];
    for tt in &t.tasks {
        let Pass::Comm(kind) = tt.task.pass else {
            continue;
        };
        let Ok(slot) = gpus.binary_search(&tt.task.gpu) else {
            continue;
        };
        let dur = tt.end_ps.saturating_sub(tt.start_ps);
        let bytes = t
            .details
            .get(tt.task.label.detail as usize)
            .map_or(0.0, |d| d.bytes);
        if dur == 0 || bytes <= 0.0 {
            continue;
        }
        let rate = bytes / (dur as f64 / 1e12);
        let over_nic = t.nic[kind as usize];
        if over_nic && t.nic_bytes_per_s > 0.0 {
            let v = rate / t.nic_bytes_per_s;
            nic[slot].push((tt.start_ps, v));
            nic[slot].push((tt.end_ps, -v));
        }
        // DeepEP forwards inter-node tokens over NVLink too; other kinds use it inside a node.
        if (!over_nic || kind == CommKind::Ep) && t.nvlink_bytes_per_s > 0.0 {
            let v = rate / t.nvlink_bytes_per_s;
            nvl[slot].push((tt.start_ps, v));
            nvl[slot].push((tt.end_ps, -v));
        }
    }
    let step = |mut d: Vec<(u64, f64)>| -> Vec<(u64, f64)> {
        d.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        let mut out: Vec<(u64, f64)> = Vec::new();
        let mut cur = 0.0f64;
        for (ts, dv) in d {
            cur += dv;
            let v = if cur.abs() < 1e-9 { 0.0 } else { cur };
            match out.last_mut() {
                Some(last) if last.0 == ts => last.1 = v,
                _ => out.push((ts, v)),
            }
        }
        out
    };
    vec![
        (
            "NIC load",
            gpus.iter()
                .copied()
                .zip(nic.into_iter().map(step))
                .collect(),
        ),
        (
            "NVLink load",
            gpus.iter()
                .copied()
                .zip(nvl.into_iter().map(step))
                .collect(),
        ),
    ]
}
