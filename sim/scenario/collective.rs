//! `trainsim collective`: an nccl-tests-like tool for the simulated cluster.
//!
//! General collectives report size, time, algbw and busbw with nccl-tests' definitions
//! (all-reduce busbw = algbw·2(n−1)/n; all-gather, reduce-scatter and all-to-all
//! busbw = algbw·(n−1)/n). MoE dispatch/combine take DeepEP's test parameters and also report
//! the bottleneck bandwidths DeepEP prints: RDMA bytes per GPU over time (internode) and
//! NVLink bytes per GPU over time.

use crate::config::{parse_doc, Diagnostic, Override, Source};
use crate::domain::MoeDispatcher;
use crate::hw::Calibration;
use crate::net::collective::{Algorithm, Collectives, Measured, Op};
use crate::net::MoeRoute;
use crate::topo;
use crate::units::{ByteSize, Quantity};
use serde::Serialize;

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollectiveOp {
    Plain(Op),
    MoeDispatch,
    MoeCombine,
}

/// MoE test parameters (DeepEP's `test_internode.py` defaults: 4096 tokens, hidden 7168, top-8).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MoeArgs {
    pub ep: u32,
    pub tokens: u64,
    pub hidden: u64,
    pub topk: u64,
    pub experts: u64,
    pub groups: u64,
    pub topk_groups: u64,
    /// Bytes per element dispatched (combine is always BF16).
    pub dispatch_bytes: f64,
    /// DeepEP's kernels, or Megatron's NCCL all-to-all.
    pub dispatcher: MoeDispatcher,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    pub op: String,
    pub ranks: u32,
    pub size_bytes: f64,
    pub time_s: f64,
    pub algbw_gb_s: f64,
    pub busbw_gb_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rdma_gb_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nvlink_gb_s: Option<f64>,
    /// The algorithm and protocol NCCL's model picked ("ring/LL128"); absent for MoE ops.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    pub events: u64,
}

pub fn op_name(op: CollectiveOp) -> &'static str {
    match op {
        CollectiveOp::Plain(Op::AllReduce) => "all-reduce",
        CollectiveOp::Plain(Op::AllGather) => "all-gather",
        CollectiveOp::Plain(Op::ReduceScatter) => "reduce-scatter",
        CollectiveOp::Plain(Op::AllToAll) => "all-to-all",
        CollectiveOp::Plain(Op::SendRecv) => "send-recv",
        CollectiveOp::MoeDispatch => "moe-dispatch",
        CollectiveOp::MoeCombine => "moe-combine",
    }
}

/// Parses `--sizes 1KiB..8GiB` into the doubling series nccl-tests sweeps.
pub fn size_range(s: &str) -> Result<Vec<f64>, Diagnostic> {
    let bad = || {
        Diagnostic::new(
            "--sizes",
            format!("\"{s}\""),
            "MIN..MAX sizes with units, e.g. 1KiB..8GiB",
        )
    };
    let (a, b) = s.split_once("..").ok_or_else(bad)?;
    let a = ByteSize::parse(a).map_err(|_| bad())?.bytes;
    let b = ByteSize::parse(b).map_err(|_| bad())?.bytes;
    if !(a >= 1.0 && b >= a) {
        return Err(bad());
    }
    let mut v = Vec::new();
    let mut x = a;
    while x <= b * (1.0 + 1e-9) {
        v.push(x);
        x *= 2.0;
    }
    Ok(v)
}

/// Runs one collective (or MoE op) at each size on the topology, with the `topology.`
/// overrides of `sets` applied to it (any other override is an error).
#[allow(clippy::too_many_arguments)]
pub fn run(
    topology: &Source,
    sets: &[Override],
    op: CollectiveOp,
    ranks: u32,
    sizes: &[f64],
    algo: Algorithm,
    moe: Option<MoeArgs>,
    cal: &Calibration,
) -> Result<Vec<Row>, Diagnostic> {
    if let Some(o) = sets.iter().find(|o| o.doc != "topology") {
        return Err(Diagnostic::new(
            "--set",
            o.raw.clone(),
            "topology.PATH=VALUE (a collective has no workload)",
        ));
    }
    let spec = parse_doc(topology, &sets.iter().collect::<Vec<_>>())?;
    let catalog = crate::builtin::catalog_for(&spec, &topology.name)
        .map_err(|d| d.locate_in(&topology.text))?;
    let cluster =
        topo::build(&spec, &catalog, &topology.name).map_err(|d| d.locate_in(&topology.text))?;
    let co = Collectives::new(&cluster, cal);
    let n = match (op, moe) {
        (CollectiveOp::MoeDispatch | CollectiveOp::MoeCombine, Some(m)) => m.ep,
        _ => ranks,
    };
    if n < 2 || n > cluster.gpus() {
        return Err(Diagnostic::new(
            "--ranks",
            n.to_string(),
            format!(
                "between 2 and the {} GPUs of {}",
                cluster.gpus(),
                cluster.name
            ),
        ));
    }
    if matches!(algo, Algorithm::Nvls | Algorithm::NvlsTree) && !cluster.in_switch_reduction {
        return Err(Diagnostic::new(
            "--algo",
            format!("{} on {}, whose NVSwitches do not reduce", algo.name(), cluster.name),
            "a cluster with in-switch reduction (scale_up.in_switch_reduction: true, NVLink SHARP on Hopper and later), or another algorithm",
        ));
    }
    if let (CollectiveOp::MoeDispatch | CollectiveOp::MoeCombine, Some(m)) = (op, moe) {
        let bad = |flag: &str, found: u64, expected: String| {
            Err(Diagnostic::new(flag, found.to_string(), expected))
        };
        if m.experts == 0 || m.experts % u64::from(m.ep) != 0 {
            return bad(
                "--experts",
                m.experts,
                format!("a positive multiple of --ep {}", m.ep),
            );
        }
        if m.topk == 0 || m.topk > m.experts {
            return bad("--topk", m.topk, format!("1 to the {} experts", m.experts));
        }
        if m.groups == 0 || m.experts % m.groups != 0 {
            return bad(
                "--groups",
                m.groups,
                format!("a positive divisor of the {} experts", m.experts),
            );
        }
        if m.topk_groups == 0 || m.topk_groups > m.groups {
            return bad(
                "--topk-groups",
                m.topk_groups,
                format!("1 to the {} groups", m.groups),
            );
        }
        if m.topk > m.topk_groups * (m.experts / m.groups) {
            return bad(
                "--topk",
                m.topk,
                format!(
                    "at most the {} experts of the {} groups a token may use",
                    m.topk_groups * (m.experts / m.groups),
                    m.topk_groups
                ),
            );
        }
        if m.tokens == 0 || m.tokens > 1 << 24 || m.hidden == 0 || m.hidden > 1 << 20 {
            return bad(
                "--tokens",
                m.tokens,
                "1 to 16,777,216 tokens per rank, and --hidden 1 to 1,048,576".into(),
            );
        }
    }
    let members: Vec<u32> = (0..n).collect();
    let row = |size: f64, m: &Measured, factor: f64| Row {
        op: op_name(op).into(),
        ranks: n,
        size_bytes: size,
        time_s: m.time_s,
        algbw_gb_s: size / m.time_s / 1e9,
        busbw_gb_s: size / m.time_s / 1e9 * factor,
        rdma_gb_s: None,
        nvlink_gb_s: None,
        algorithm: m.choice.map(|(a, p)| format!("{}/{}", a.name(), p.name())),
        events: m.events,
    };
    let nf = n as f64;
    match (op, moe) {
        (CollectiveOp::Plain(p), _) => {
            let factor = match p {
                Op::AllReduce => 2.0 * (nf - 1.0) / nf,
                Op::SendRecv => 1.0,
                _ => (nf - 1.0) / nf,
            };
            Ok(sizes
                .iter()
                .map(|&s| row(s, &co.collective(p, &members, s, algo), factor))
                .collect())
        }
        (_, Some(m)) => {
            if m.experts % m.ep as u64 != 0 || m.groups == 0 || m.experts % m.groups != 0 {
                return Err(Diagnostic::new(
                    "--ep",
                    m.ep.to_string(),
                    "a divisor of --experts, with --groups dividing --experts too",
                ));
            }
            let route = MoeRoute {
                routed: m.experts,
                topk: m.topk,
                groups: m.groups,
                topk_groups: m.topk_groups,
                sms: 0,
                dispatcher: m.dispatcher,
            };
            let dispatch = op == CollectiveOp::MoeDispatch;
            let bpt = if dispatch {
                m.hidden as f64 * m.dispatch_bytes
                    + if m.dispatch_bytes < 2.0 {
                        m.hidden as f64 / 128.0 * 4.0
                    } else {
                        0.0
                    }
            } else {
                m.hidden as f64 * 2.0
            };
            let me = co.moe(&members, m.tokens as f64, bpt, route, dispatch);
            let size = m.tokens as f64 * bpt;
            let mut r = row(size, &me, 1.0);
            r.rdma_gb_s = (me.rdma_bytes > 0.0).then(|| me.rdma_bytes / me.time_s / 1e9);
            r.nvlink_gb_s = Some(me.nvlink_bytes / me.time_s / 1e9);
            Ok(vec![r])
        }
        _ => Err(Diagnostic::new(
            "--op",
            op_name(op),
            "--ep and the other MoE arguments for MoE ops",
        )),
    }
}

fn human_size(b: f64) -> String {
    let units = [("GiB", 1073741824.0), ("MiB", 1048576.0), ("KiB", 1024.0)];
    for (u, f) in units {
        if b >= f {
            return format!("{:.4} {u}", b / f).replace(".0000", "");
        }
    }
    format!("{b} B")
}

/// An nccl-tests-like table.
pub fn table(rows: &[Row]) -> String {
    let algo = rows.iter().any(|r| r.algorithm.is_some());
    let mut s = format!(
        "# {} over {} ranks\n#{:>14} {:>12} {:>12} {:>12}{}{}\n",
        rows.first().map(|r| r.op.as_str()).unwrap_or(""),
        rows.first().map(|r| r.ranks).unwrap_or(0),
        "size",
        "time(us)",
        "algbw(GB/s)",
        "busbw(GB/s)",
        if algo { "  algorithm" } else { "" },
        if rows
            .iter()
            .any(|r| r.rdma_gb_s.is_some() || r.nvlink_gb_s.is_some())
        {
            "   rdma(GB/s) nvlink(GB/s)"
        } else {
            ""
        }
    );
    for r in rows {
        s += &format!(
            "{:>15} {:>12.2} {:>12.2} {:>12.2}",
            human_size(r.size_bytes),
            r.time_s * 1e6,
            r.algbw_gb_s,
            r.busbw_gb_s
        );
        if let Some(a) = &r.algorithm {
            s += &format!("  {a}");
        }
        if r.rdma_gb_s.is_some() || r.nvlink_gb_s.is_some() {
            let f = |x: Option<f64>| x.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into());
            s += &format!(" {:>12} {:>12}", f(r.rdma_gb_s), f(r.nvlink_gb_s));
        }
        s += "\n";
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::ByteSize;

    /// The published busbw of a calibration case in `tests/reference/cases/microbenchmarks.yaml`,
    /// with its size.
    fn reference(name: &str) -> (f64, f64) {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/reference/cases/microbenchmarks.yaml"
        );
        let doc: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(path).expect("the suite")).unwrap();
        let case = doc["cases"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|c| c["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("case {name}"));
        assert_eq!(
            case["calibration"].as_bool(),
            Some(true),
            "{name} is a calibration point"
        );
        let size = ByteSize::parse(case["size"].as_str().unwrap())
            .unwrap()
            .bytes;
        (size, case["published"].as_f64().unwrap())
    }

    /// Re-derives NCCL's pipeline-fill windows as `topologies/calibration.yaml` says they were
    /// found: the least-squares log error over the named curve points, on a 2 MB grid.
    #[test]
    fn pipeline_windows_rederive_from_their_curves() {
        let base = crate::builtin::calibration();
        let fits: [(&str, &[&str], bool); 2] = [
            (
                "h100-64.yaml",
                &[
                    "h100-nccl-curve-dgxc-16mib",
                    "h100-nccl-curve-dgxc-128mib",
                    "h100-nccl-curve-dgxc-1gib",
                ],
                true,
            ),
            (
                "a100-64.yaml",
                &[
                    "a100-nccl-curve-azure-16mib",
                    "a100-nccl-curve-azure-256mib",
                ],
                false,
            ),
        ];
        for (topology, cases, nvls) in fits {
            let path = format!("{}/topologies/{topology}", env!("CARGO_MANIFEST_DIR"));
            let src = Source::embedded(topology, &std::fs::read_to_string(path).unwrap());
            let points: Vec<(f64, f64)> = cases.iter().map(|c| reference(c)).collect();
            let sizes: Vec<f64> = points.iter().map(|p| p.0).collect();
            let sse = |w: f64| -> f64 {
                let mut cal = base.clone();
                let m = &mut cal.network.nccl;
                let win = if nvls {
                    &mut m.nvls_window
                } else {
                    &mut m.ring_window
                };
                win.value = ByteSize { bytes: w };
                let rows = run(
                    &src,
                    &[],
                    CollectiveOp::Plain(Op::AllReduce),
                    8,
                    &sizes,
                    Algorithm::Auto,
                    None,
                    &cal,
                )
                .unwrap();
                rows.iter()
                    .zip(&points)
                    .map(|(r, p)| (r.busbw_gb_s / p.1).ln().powi(2))
                    .sum()
            };
            let best = (0..=30)
                .map(|k| 2e6 * f64::from(k))
                .min_by(|a, b| sse(*a).total_cmp(&sse(*b)))
                .unwrap();
            let n = &base.network.nccl;
            let shipped = if nvls { &n.nvls_window } else { &n.ring_window };
            assert_eq!(best, shipped.value.bytes, "{topology}");
        }
    }
}
