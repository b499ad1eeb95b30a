//! `trainsim run` end to end: the contract fields, the published figures it must reproduce,
//! every shipped YAML, overrides, and atomic output.

use crate::{fresh_dir, trainsim};
use serde_json::Value;

fn run_json(args: &[&str], name: &str) -> Value {
    let out = fresh_dir(name);
    let mut all = vec!["run", "--json", "--out", out.to_str().unwrap()];
    all.extend_from_slice(args);
    let o = trainsim(&all);
    assert_eq!(o.code, 0, "stderr:\n{}", o.stderr);
    let v: Value = serde_json::from_str(&o.stdout).expect("stdout is the summary JSON alone");
    let file: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        strip_wall(v.clone()),
        strip_wall(file),
        "stdout and summary.json differ"
    );
    v
}

fn strip_wall(mut v: Value) -> Value {
    v["sim"]["wall_s"] = Value::Null;
    v
}

fn f(v: &Value, path: &str) -> f64 {
    path.split('.')
        .fold(v, |v, k| {
            v.get(k).unwrap_or_else(|| panic!("missing field {path}"))
        })
        .as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number"))
}

#[test]
fn default_run_has_every_contract_field_and_the_published_model() {
    let v = run_json(&[], "default");
    for key in [
        "gpus",
        "gpu",
        "step_time_s",
        "tokens_per_step",
        "tokens_per_s",
        "tokens_per_gpu_s",
        "model",
        "tflops_per_gpu",
        "mfu",
        "memory_gib_per_gpu",
        "breakdown_s",
        "phases",
        "gpu_hours",
        "cost_usd",
        "days",
        "sim",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    for key in ["params_total", "params_active", "flops_per_token"] {
        assert!(v["model"].get(key).is_some(), "missing model.{key}");
    }
    for key in ["compute", "exposed_comm", "bubble", "optimizer"] {
        assert!(
            v["breakdown_s"].get(key).is_some(),
            "missing breakdown_s.{key}"
        );
    }
    for key in ["engine", "events", "wall_s"] {
        assert!(v["sim"].get(key).is_some(), "missing sim.{key}");
    }
    for p in v["phases"].as_array().unwrap() {
        for key in ["name", "tokens", "step_time_s", "gpu_hours", "cost_usd"] {
            assert!(p.get(key).is_some(), "missing phases[].{key}");
        }
    }
    assert_eq!(v["gpus"], 2048);
    assert_eq!(v["gpu"], "H800-SXM");
    assert_eq!(v["tokens_per_step"], 15360 * 4096);
    // DeepSeek-V3 TR: 671B total, 37B active (36.6–37.6B); ISCA Table 2: 250 GFLOPs/token at 4K.
    let total = f(&v, "model.params_total");
    assert!((total / 671e9 - 1.0).abs() < 0.005, "{total}");
    let active = f(&v, "model.params_active");
    assert!((36.6e9..=37.6e9).contains(&active), "{active}");
    let fpt = f(&v, "model.flops_per_token");
    assert!((fpt / 250e9 - 1.0).abs() < 0.02, "{fpt}");
    // Internal consistency: throughput, MFU and cost follow from the step time.
    let step = f(&v, "step_time_s");
    assert!((f(&v, "tokens_per_s") * step / (15360.0 * 4096.0) - 1.0).abs() < 1e-9);
    let mfu = f(&v, "tflops_per_gpu") * 1e12 / 989e12;
    assert!((f(&v, "mfu") / mfu - 1.0).abs() < 1e-9);
    let hours: f64 = v["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["gpu_hours"].as_f64().unwrap())
        .sum();
    assert!((f(&v, "gpu_hours") / hours - 1.0).abs() < 1e-9);
    assert!((f(&v, "cost_usd") - 2.0 * hours).abs() < 1e-3 * hours);
    // The breakdown adds up to the step.
    let b = &v["breakdown_s"];
    let sum = f(b, "compute") + f(b, "exposed_comm") + f(b, "bubble") + f(b, "optimizer");
    assert!((sum / step - 1.0).abs() < 1e-9, "{sum} vs {step}");
    assert_eq!(v["sim"]["engine"], "des");
    assert!(
        v["sim"]["events"].as_u64().unwrap() > 10_000,
        "the DES processed events"
    );
}

#[test]
fn analytic_engine_agrees_with_the_des_within_ten_percent() {
    let des = run_json(&[], "engine-des");
    let ana = run_json(&["--engine", "analytic"], "engine-analytic");
    assert_eq!(ana["sim"]["engine"], "analytic");
    let (a, d) = (f(&ana, "step_time_s"), f(&des, "step_time_s"));
    // Same kernels and traffic; the DES adds what closed forms miss (warm-up, drain, stalls).
    assert!(d >= a * 0.99 && d < a * 1.10, "analytic {a} vs des {d}");
    let b = &ana["breakdown_s"];
    let sum = f(b, "compute") + f(b, "exposed_comm") + f(b, "bubble") + f(b, "optimizer");
    assert!(
        (sum / a - 1.0).abs() < 1e-9,
        "analytic breakdown {sum} vs step {a}"
    );
}

#[test]
fn human_summary_names_the_scenario() {
    let out = fresh_dir("human");
    let o = trainsim(&["run", "--out", out.to_str().unwrap()]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stdout.contains("DeepSeek-V3 pre-training on h800-2048"),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("GPU-hours"));
    assert!(out.join("summary.json").exists());
}

#[test]
fn llama_405b_from_its_hf_config() {
    let v = run_json(
        &[
            "--topology",
            "topologies/h100-16384.yaml",
            "--workload",
            "workloads/llama3.1-405b.yaml",
        ],
        "llama",
    );
    let total = f(&v, "model.params_total");
    assert!((total / 405e9 - 1.0).abs() < 0.01, "{total}");
    assert_eq!(v["gpus"], 16384);
    // Dense model: every parameter is active.
    assert_eq!(v["model"]["params_total"], v["model"]["params_active"]);
}

#[test]
fn every_shipped_workload_runs_on_its_cluster() {
    for (t, w) in [
        ("topologies/h800-2048.yaml", "workloads/deepseek-v3.yaml"),
        ("topologies/h100-16384.yaml", "workloads/llama3.1-405b.yaml"),
    ] {
        let o = trainsim(&[
            "run",
            "--json",
            "--topology",
            t,
            "--workload",
            w,
            "--out",
            fresh_dir("shipped").to_str().unwrap(),
        ]);
        assert_eq!(o.code, 0, "{w} on {t}: {}", o.stderr);
    }
    // The small test cluster runs DeepSeek-V3's design cut down to fit it.
    let o = trainsim(&[
        "run",
        "--json",
        "--topology",
        "topologies/h800-16.yaml",
        "--set",
        "workload.parallelism.pp=2",
        "--set",
        "workload.parallelism.ep=8",
        "--set",
        "workload.model.num_hidden_layers=8",
        "--set",
        "workload.model.n_routed_experts=64",
        "--set",
        "workload.training.global_batch=256",
        "--set",
        "workload.training.phases=[{name: pre-training, tokens: 1B}]",
        "--out",
        fresh_dir("small").to_str().unwrap(),
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
}

#[test]
fn overrides_change_the_scenario() {
    let base = run_json(&[], "set-base");
    let ep128 = run_json(&["--set", "workload.parallelism.ep=128"], "set-ep");
    assert_eq!(ep128["layout"]["ep"], 128);
    // Doubling EP halves the routed experts each GPU holds: less weight memory.
    assert!(f(&ep128, "memory_gib.weights") < f(&base, "memory_gib.weights"));
    let price = run_json(&["--set", "workload.pricing.gpu_hour=$3"], "set-price");
    assert!((f(&price, "cost_usd") / f(&base, "cost_usd") - 1.5).abs() < 1e-9);
    // No NVLink fabric to speak of: the all-to-all no longer hides under compute.
    let slow = run_json(
        &[
            "--set",
            "topology.scale_out.nic_bandwidth=50 Gb/s per direction",
        ],
        "set-nic",
    );
    assert!(f(&slow, "step_time_s") > f(&base, "step_time_s"));
    assert!(f(&slow, "breakdown_s.exposed_comm_by_kind.ep") > 0.0);
}

#[test]
fn same_inputs_same_bytes() {
    let a = run_json(&[], "det-a");
    let b = run_json(&[], "det-b");
    assert_eq!(
        serde_json::to_string(&strip_wall(a)).unwrap(),
        serde_json::to_string(&strip_wall(b)).unwrap()
    );
}

/// The default run's band: every range holds its central value, each corner is the central
/// value plus the terms on its side, the published DeepSeek-V3 total (2.788M GPU-hours) lies
/// inside, and each named alternative is priced.
#[test]
fn default_run_carries_a_band_with_the_published_figure_inside() {
    let v = run_json(&[], "band");
    let b = &v["bands"];
    let terms = b["terms"].as_array().expect("bands.terms");
    let names: Vec<&str> = terms.iter().map(|t| t["name"].as_str().unwrap()).collect();
    for want in [
        "calibration memory.elementwise = stream",
        "calibration streams.gaps = launch_gap",
        "workload: fused loss kernel (10 B per logit instead of 52)",
        "kernel classes slower by their calibration residuals",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    for key in ["step_time_s", "gpu_hours", "cost_usd"] {
        let (lo, c, hi) = (
            f(b, &format!("{key}.low")),
            f(b, &format!("{key}.central")),
            f(b, &format!("{key}.high")),
        );
        assert!(lo <= c && c <= hi, "{key}: {lo} {c} {hi}");
        let side = |neg: bool| -> f64 {
            terms
                .iter()
                .map(|t| t[key].as_f64().unwrap())
                .filter(|d| if neg { *d < 0.0 } else { *d > 0.0 })
                .sum()
        };
        assert!((lo - (c + side(true))).abs() < 1e-6 * c.abs().max(1.0));
        assert!((hi - (c + side(false))).abs() < 1e-6 * c.abs().max(1.0));
    }
    assert_eq!(f(b, "step_time_s.central"), f(&v, "step_time_s"));
    let (lo, hi) = (f(b, "gpu_hours.low"), f(b, "gpu_hours.high"));
    assert!(
        lo < 2.788e6 && 2.788e6 < hi,
        "published total outside {lo}–{hi}"
    );
    // A faster fused loss lowers the step; slower kernel classes raise it.
    let d = |name: &str| {
        terms.iter().find(|t| t["name"] == name).unwrap()["step_time_s"]
            .as_f64()
            .unwrap()
    };
    assert!(d("workload: fused loss kernel (10 B per logit instead of 52)") < 0.0);
    assert!(d("kernel classes slower by their calibration residuals") > 0.0);
    // --no-band leaves it out.
    let v = run_json(&["--no-band"], "no-band");
    assert!(v.get("bands").is_none());
}

/// A workload alternative whose override is malformed is a diagnostic at its place, exit 2.
#[test]
fn a_bad_alternative_is_located() {
    let dir = fresh_dir("bad-alternative");
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/workloads/deepseek-v3.yaml"
    ))
    .unwrap();
    let bad = text.replace(
        "\"workload.training.loss_kernel=fused\"",
        "\"loss_kernel fused\"",
    );
    assert_ne!(bad, text);
    let path = dir.join("w.yaml");
    std::fs::write(&path, bad).unwrap();
    let o = trainsim(&[
        "run",
        "--workload",
        path.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(o.code, 2, "stderr:\n{}", o.stderr);
    assert!(o.stderr.contains("alternatives.0.set.0"), "{}", o.stderr);
    assert!(!dir.join("summary.json").exists());
}

/// Without recompute, the unfused attention keeps its score matrix for backward: the FP16
/// probabilities, the dropout's 1-byte mask and its 2-byte output, 5 B per score of every layer
/// (Korthikanti et al. 2022), where the fused kernel keeps only its FP32 log-sum-exp per head
/// and token. Megatron-LM SC21's 1.7B (24 layers, 24 heads, 2,048 tokens, one micro-batch of
/// one sequence in flight) keeps 24 × 24 × 2048 × (2048 × 5 − 4) B more.
#[test]
fn unfused_attention_without_recompute_keeps_its_scores() {
    let act = |kernel: &str| {
        let v = run_json(
            &[
                "--no-band",
                "--topology",
                "topologies/a100-64.yaml",
                "--workload",
                "workloads/dense/mlm-a100-1.7b.yaml",
                "--set",
                "topology.nodes=4",
                "--set",
                "workload.training.recompute=none",
                "--set",
                &format!("workload.training.attention_kernel={kernel}"),
                "--set",
                "workload.training.global_batch=32",
                "--set",
                "workload.parallelism.micro_batch=1",
            ],
            &format!("scores-{kernel}"),
        );
        f(&v, "memory_gib.activations") * 1073741824.0
    };
    let extra = act("unfused") - act("flash2");
    let want = 24.0 * 24.0 * 2048.0 * (2048.0 * 5.0 - 4.0);
    assert!((extra - want).abs() < 1e-6 * want, "{extra} vs {want}");
}

/// The report carries the band: its step-time row is summary.json's band, and `--no-band`
/// leaves the section out.
#[test]
fn the_report_shows_the_band() {
    let out = fresh_dir("band-report");
    let o = trainsim(&["run", "--report", "--quiet", "--out", out.to_str().unwrap()]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    let row = format!(
        "| step time (s) | {:.2} | {:.2} | {:.2} |",
        f(&v, "bands.step_time_s.low"),
        f(&v, "bands.step_time_s.central"),
        f(&v, "bands.step_time_s.high")
    );
    assert!(
        md.contains("## Uncertainty band") && md.contains(&row),
        "{row} not in report.md"
    );
    let out = fresh_dir("no-band-report");
    let o = trainsim(&[
        "run",
        "--report",
        "--no-band",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(!md.contains("Uncertainty band"));
}

/// A phase may run on a cluster of its own size (Llama 3 405B: 8,192 GPUs, then 16,384). Its
/// node count equal to the topology's changes nothing; on half the nodes with half the batch
/// (the same work per GPU) the phase takes twice the days for the same GPU-hours, within the
/// data-parallel sync's difference. A zero, a reported phase's and a layout search's node
/// counts are refused.
#[test]
fn a_phase_runs_on_its_own_cluster_size() {
    let phases = |nodes: &str| {
        format!(
            "workload.training.phases=[{{name: a, tokens: 200B{nodes}}}, {{name: b, tokens: 200B}}]"
        )
    };
    let run = |nodes: &str, name: &str| run_json(&["--no-band", "--set", &phases(nodes)], name);
    let plain = run("", "phase-nodes-plain");
    let same = run(", nodes: 256", "phase-nodes-same");
    assert_eq!(plain["phases"], same["phases"]);
    let half = run(", nodes: 128, global_batch: 7680", "phase-nodes-half");
    let (a, b) = (&half["phases"][0], &half["phases"][1]);
    let g = |v: &Value, k: &str| v[k].as_f64().unwrap();
    let days = g(a, "days") / g(b, "days");
    let hours = g(a, "gpu_hours") / g(b, "gpu_hours");
    assert!((days / 2.0 - 1.0).abs() < 0.03, "days {days}");
    assert!((hours - 1.0).abs() < 0.03, "GPU-hours {hours}");
    assert!((g(&half, "gpu_hours") - g(a, "gpu_hours") - g(b, "gpu_hours")).abs() < 1.0);
    assert_eq!((g(a, "gpus"), g(b, "gpus")), (1024.0, 2048.0));
    for (bad, at) in [
        (phases(", nodes: 0"), "training.phases.0.nodes"),
        (
            "workload.training.phases=[{name: a, tokens: 1T}, {name: r, reported_gpu_hours: 5, nodes: 8}]"
                .to_string(),
            "training.phases.1.nodes",
        ),
    ] {
        let o = trainsim(&["run", "--no-band", "--set", &bad]);
        assert_eq!(o.code, 2, "{bad}: {}", o.stderr);
        assert!(o.stderr.contains(&format!("at:       {at}")), "{}", o.stderr);
    }
    let dir = fresh_dir("phase-nodes-plan");
    std::fs::create_dir_all(&dir).unwrap();
    let wl = dir.join("w.yaml");
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/workloads/deepseek-v3.yaml"
    ))
    .unwrap()
    .replace(
        "    - name: context-extension-32k\n",
        "    - name: context-extension-32k\n      nodes: 128\n",
    );
    std::fs::write(&wl, text).unwrap();
    let o = trainsim(&[
        "plan",
        "--quiet",
        "--workload",
        wl.to_str().unwrap(),
        "--chip",
        "H800",
        "--gpus",
        "2048",
        "--out",
        dir.join("out").to_str().unwrap(),
    ]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(
        o.stderr.contains("at:       training.phases.1.nodes"),
        "{}",
        o.stderr
    );
}

/// A standard output that cannot be written is a diagnostic (exit 2), not a panic; a closed
/// pipe ends the program quietly.
#[test]
fn stdout_failures_are_handled() {
    let dir = crate::fresh_dir("stdout-full");
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full");
    if let Ok(full) = full {
        for args in [
            vec![
                "run",
                "--json",
                "--engine",
                "analytic",
                "--out",
                dir.to_str().unwrap(),
            ],
            vec!["chips"],
        ] {
            let o = std::process::Command::new(env!("CARGO_BIN_EXE_trainsim"))
                .args(&args)
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .stdout(full.try_clone().unwrap())
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
            assert!(err.contains("standard output"), "{err}");
            assert!(!err.contains("panicked"), "{err}");
        }
    }
    // A reader that closes at once: the write fails with a broken pipe.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_trainsim"))
        .args(["chips", "--json"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(o.status.code(), Some(0), "{err}");
}
