//! The goodput model through the binary: ideal against effective figures in `run`, the Monte
//! Carlo's reproducibility, `--reliability none`, bad reliability input, and a plan in which a
//! larger cluster loses because it fails more often.

use crate::{fresh_dir, trainsim};
use serde_json::Value;

fn run(args: &[&str], name: &str) -> (crate::Out, String) {
    let out = fresh_dir(name);
    let mut all = vec![
        "run",
        "--no-band",
        "--quiet",
        "--engine",
        "analytic",
        "--out",
        out.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let o = trainsim(&all);
    let json = std::fs::read_to_string(out.join("summary.json")).unwrap_or_default();
    (o, json)
}

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

#[test]
fn run_reports_ideal_and_effective_figures_and_what_drives_the_difference() {
    let (o, json) = run(&[], "goodput-default");
    assert_eq!(o.code, 0, "{}", o.stderr);
    let v: Value = serde_json::from_str(&json).unwrap();
    let g = &v["goodput"];
    for key in [
        "ettr",
        "interruptions",
        "checkpoint_interval_s",
        "checkpoint_stall_s",
        "lost_gpu_hours",
        "restart_gpu_hours",
        "checkpoint_gpu_hours",
        "straggler_gpu_hours",
        "effective_gpu_hours",
        "mtbi_h",
    ] {
        assert!(g[key].is_number(), "goodput.{key} missing: {g}");
    }
    let (ideal, eff) = (num(&v, "gpu_hours"), num(&v, "effective_gpu_hours"));
    assert!(eff > ideal, "{eff} <= {ideal}");
    // The difference is exactly where the account says it goes.
    let parts = num(g, "lost_gpu_hours")
        + num(g, "restart_gpu_hours")
        + num(g, "checkpoint_gpu_hours")
        + num(g, "straggler_gpu_hours");
    assert!(
        ((eff - ideal) / parts - 1.0).abs() < 1e-6,
        "{eff} − {ideal} against {parts}"
    );
    // 2,048 GPUs at Llama 3's rates: one interruption per 50,700 / 2,048 ≈ 24.8 h (unplanned
    // and planned together: 45,600 / 2,048 ≈ 22.2 h).
    let mtbi = num(g, "mtbi_h");
    assert!((mtbi / 22.26 - 1.0).abs() < 0.01, "{mtbi}");
    let ettr = num(g, "ettr");
    assert!(ettr > 0.9 && ettr < 1.0, "{ettr}");
    // Each phase carries both figures.
    for p in v["phases"].as_array().unwrap() {
        assert!(num(p, "effective_gpu_hours") >= num(p, "gpu_hours"));
        assert!(p["effective_days"].is_number() && p["ettr"].is_number());
    }
    // The human summary shows both, where the time goes and the drivers.
    for s in [
        "goodput     ideal ",
        "→ effective ",
        "  where     lost work ",
        "  because   a ",
        "  driver    failure rates ×2",
    ] {
        assert!(o.stdout.contains(s), "missing {s:?} in\n{}", o.stdout);
    }
}

#[test]
fn monte_carlo_with_a_seed_gives_identical_bytes() {
    let args = [
        "--reliability",
        "monte-carlo",
        "--seed",
        "7",
        "--trials",
        "300",
    ];
    let (a, ja) = run(&args, "goodput-mc-a");
    let (b, jb) = run(&args, "goodput-mc-b");
    assert_eq!(a.code, 0, "{}", a.stderr);
    assert_eq!(a.stdout, b.stdout, "the human summaries differ");
    // summary.json differs only in the simulator's own wall time.
    let strip = |j: &str| {
        j.lines()
            .filter(|l| !l.trim_start().starts_with("\"wall_s\""))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&ja), strip(&jb));
    assert!(a.stderr.contains("seed 7"), "{}", a.stderr);
    let v: Value = serde_json::from_str(&ja).unwrap();
    let m = &v["goodput"]["monte_carlo"];
    assert_eq!(m["seed"], 7);
    assert_eq!(m["trials"], 300);
    let d = &m["days"];
    assert!(num(d, "p10") <= num(d, "p50") && num(d, "p50") <= num(d, "p90"));
    // The Monte Carlo's mean lands on the closed form.
    let mean = num(&m["gpu_hours"], "mean");
    let closed = num(&v, "effective_gpu_hours");
    assert!(
        (mean / closed - 1.0).abs() < 0.01,
        "{mean} against {closed}"
    );
    let (c, _) = run(
        &[
            "--reliability",
            "monte-carlo",
            "--seed",
            "8",
            "--trials",
            "300",
        ],
        "goodput-mc-c",
    );
    assert_ne!(a.stdout, c.stdout, "another seed, other draws");
}

#[test]
fn reliability_none_leaves_the_ideal_figures() {
    let (o, json) = run(&["--reliability", "none"], "goodput-none");
    assert_eq!(o.code, 0, "{}", o.stderr);
    let v: Value = serde_json::from_str(&json).unwrap();
    assert!(v.get("goodput").is_none());
    assert_eq!(num(&v, "effective_gpu_hours"), num(&v, "gpu_hours"));
    assert!(!o.stdout.contains("goodput"));
}

#[test]
fn bad_reliability_input_is_a_located_diagnostic() {
    for (set, says) in [
        (
            "workload.reliability.stragglers.fraction=2",
            "reliability.stragglers.fraction",
        ),
        (
            "workload.reliability.checkpoint.interval=soon",
            "`optimal`, `young` or a positive duration",
        ),
        (
            "workload.reliability.checkpoint.write_bandwidth=2 TB",
            "reliability.checkpoint.write_bandwidth",
        ),
        (
            "workload.reliability.failures_per_gpu_hour.gpu=0.9",
            "at most 100× its training time",
        ),
    ] {
        let (o, _) = run(&["--set", set], "goodput-bad");
        assert_eq!(o.code, 2, "{set}: {}", o.stderr);
        assert!(o.stderr.contains(says), "{set}: {}", o.stderr);
        assert!(o.stderr.contains("--set"), "{set}: {}", o.stderr);
    }
}

#[test]
fn a_cluster_that_fails_often_loses_the_plan_to_a_smaller_one() {
    let dir = fresh_dir("goodput-plan");
    std::fs::create_dir_all(&dir).unwrap();
    let base = std::fs::read_to_string("tests/fixtures/small-moe.yaml").unwrap();
    let flaky = dir.join("flaky.yaml");
    std::fs::write(
        &flaky,
        base + "reliability:\n  failures_per_gpu_hour: { gpu: 0.2 }\n  restart: { detection: \"10 min\", reschedule: \"20 min\" }\n",
    )
    .unwrap();
    let pick = |workload: &str, name: &str| {
        let out = fresh_dir(name);
        let o = trainsim(&[
            "plan",
            "tests/fixtures/plan-small.yaml",
            "--workload",
            workload,
            "--objective",
            "fastest",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_eq!(o.code, 0, "{}", o.stderr);
        let ranked = std::fs::read_to_string(out.join("ranked.csv")).unwrap();
        let first = ranked.lines().nth(1).unwrap().to_string();
        first.split(',').nth(1).unwrap().to_string()
    };
    // Fastest without failures: the most GPUs.
    assert_eq!(
        pick("tests/fixtures/small-moe.yaml", "goodput-plan-ideal"),
        "H800-SXM × 32"
    );
    // A failure every 9 min on 32 GPUs against a 30-minute restart: fewer GPUs finish first.
    let flaky_pick = pick(flaky.to_str().unwrap(), "goodput-plan-flaky");
    assert_ne!(flaky_pick, "H800-SXM × 32", "{flaky_pick}");
}

#[test]
fn reliability_inputs_are_sweep_axes() {
    let out = fresh_dir("goodput-sweep");
    let o = trainsim(&[
        "sweep",
        "workloads/sweeps/reliability.yaml",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let rows: Vec<Value> = std::fs::read_to_string(out.join("sweep.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 12);
    let m = |i: usize, k: &str| num(&rows[i]["metrics"], k);
    for i in 0..12 {
        // The ideal figures do not move; the effective ones rise along both axes (4 rates × 3
        // restarts, the restart axis fastest).
        assert_eq!(m(i, "gpu_hours"), m(0, "gpu_hours"));
        if i % 3 != 2 {
            assert!(
                m(i + 1, "effective_gpu_hours") > m(i, "effective_gpu_hours"),
                "{i}"
            );
        }
        if i + 3 < 12 {
            assert!(
                m(i + 3, "effective_gpu_hours") > m(i, "effective_gpu_hours"),
                "{i}"
            );
        }
    }
    assert!(out.join("sweep-effective_gpu_hours.svg").exists());
}
