//! The fabric end to end: what the tiers above the NIC do to a training step.

use crate::{fresh_dir, trainsim};
use serde_json::Value;

/// The Megatron GPT 7.1B case on 64 nodes of 8 H100 with 50 Gb/s NICs and node-local leaves
/// (one node per leaf at 1:1, radix 16), global batch 512: one micro-batch per rank, so most of
/// the data-parallel sync is exposed. `over`: the leaves' oversubscription.
fn step(over: &str, name: &str) -> Value {
    let out = fresh_dir(name);
    let o = trainsim(&[
        "run",
        "--json",
        "--quiet",
        "--workload",
        "workloads/dense/mcore-h100-7.1b.yaml",
        "--topology",
        "topologies/h100-64.yaml",
        "--set",
        "topology.nodes=64",
        "--set",
        "topology.scale_out.nic_bandwidth=50 Gb/s per direction",
        "--set",
        "topology.scale_out.fabric.rail_optimized=false",
        "--set",
        "topology.scale_out.fabric.switch_radix=16",
        "--set",
        "topology.scale_out.fabric.spine_radix=64",
        "--set",
        &format!("topology.scale_out.fabric.oversubscription={over}"),
        "--set",
        "workload.training.global_batch=512",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    serde_json::from_str(&o.stdout).unwrap()
}

fn f(v: &Value, path: &str) -> f64 {
    path.split('.')
        .fold(v, |v, k| &v[k])
        .as_f64()
        .unwrap_or_else(|| panic!("{path}"))
}

/// Oversubscribed leaves slow the step by what they do to its exposed data-parallel traffic:
/// the sync's own slowdown (its stream's busy time at 7:1 over 1:1) applied to the share of it
/// the step waits for at 1:1 predicts the step's difference within 10%.
#[test]
fn oversubscription_slows_the_step_by_its_exposed_traffic() {
    let (open, tapered) = (step("1.0", "over-1"), step("7.0", "over-7"));
    let (t1, t7) = (f(&open, "step_time_s"), f(&tapered, "step_time_s"));
    assert!(t7 > t1 * 1.05, "7:1 {t7} s against 1:1 {t1} s");
    let exposed = f(&open, "breakdown_s.exposed_comm_by_kind.dp");
    let slower = f(&tapered, "breakdown_s.stream_busy.data_parallel")
        / f(&open, "breakdown_s.stream_busy.data_parallel");
    let predicted = exposed * (slower - 1.0);
    let measured = t7 - t1;
    assert!(
        (measured / predicted - 1.0).abs() < 0.10,
        "step {t1:.4} → {t7:.4} s: {measured:.4} s against {predicted:.4} s predicted \
         (exposed DP {exposed:.4} s, DP {slower:.3}× slower)"
    );
    // Compute is the same on both fabrics.
    assert_eq!(
        f(&open, "breakdown_s.compute"),
        f(&tapered, "breakdown_s.compute")
    );
}
