//! `trainsim validate`: the quick reference cases pass on a clean checkout, a broken calibration
//! makes it fail with exit code 1, and a bad case file is a diagnostic with exit code 2.

use crate::{fresh_dir, trainsim};
use serde_json::Value;

fn cases(json: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(json).expect("validate --json prints JSON");
    v["cases"].as_array().expect("a cases array").clone()
}

#[test]
fn quick_cases_pass_and_json_has_the_contract_fields() {
    let o = trainsim(&["validate", "--quick", "--json"]);
    assert_eq!(o.code, 0, "stdout:\n{}\nstderr:\n{}", o.stdout, o.stderr);
    let cs = cases(&o.stdout);
    assert!(cs.len() >= 40, "{} cases", cs.len());
    for c in &cs {
        for key in [
            "case",
            "metric",
            "predicted",
            "published",
            "error",
            "tolerance",
            "pass",
        ] {
            assert!(c.get(key).is_some(), "{key} missing in {c}");
        }
        if c["gating"] == true {
            assert_eq!(c["pass"], true, "gating case failed: {c}");
        }
        // The error is what the two numbers say it is.
        let (p, q) = (
            c["predicted"].as_f64().unwrap(),
            c["published"].as_f64().unwrap(),
        );
        assert!((c["error"].as_f64().unwrap() - (p / q - 1.0)).abs() < 1e-12);
    }
    // DeepSeek-V3 is in the quick set.
    assert!(cs.iter().any(|c| c["case"] == "deepseek-v3-pre-training"));
}

/// Halving the FP8 tensor-core efficiency breaks the calibration points derived from the trace,
/// and the DeepSeek-V3 runs built on them: validate must say so with exit code 1.
#[test]
fn a_broken_calibration_fails_validation() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/topologies/calibration.yaml"
    ))
    .unwrap();
    let needle = "  mma_efficiency_fp8:\n    value: 0.655";
    assert!(text.contains(needle), "calibration layout changed");
    let broken = text.replace(needle, "  mma_efficiency_fp8:\n    value: 0.33");
    let dir = fresh_dir("broken-calibration");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("calibration.yaml");
    std::fs::write(&path, broken).unwrap();
    let o = trainsim(&[
        "validate",
        "--json",
        "--calibration",
        path.to_str().unwrap(),
        "--case",
        "h800-mla-o-proj-fwd",
        "--case",
        "deepseek-v3-pre-training",
    ]);
    assert_eq!(o.code, 1, "stderr:\n{}", o.stderr);
    let cs = cases(&o.stdout);
    assert_eq!(cs.len(), 2);
    assert!(cs.iter().all(|c| c["pass"] == false), "{cs:?}");
    // The same cases pass with the embedded calibration.
    let ok = trainsim(&[
        "validate",
        "--case",
        "h800-mla-o-proj-fwd",
        "--case",
        "deepseek-v3-pre-training",
    ]);
    assert_eq!(ok.code, 0, "{}", ok.stdout);
    assert!(ok
        .stdout
        .contains("| h800-mla-o-proj-fwd (cal.) | time_us |"));
}

#[test]
fn a_bad_case_file_is_a_diagnostic() {
    let dir = fresh_dir("bad-cases");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("suite.yaml"),
        "cases:\n  - name: x\n    kind: gemm\n    metric: time_us\n    published: 1\n    tolerance: ten percent\n    source: none\n",
    )
    .unwrap();
    let o = trainsim(&["validate", "--cases", dir.to_str().unwrap()]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stdout.is_empty());
    assert!(o.stderr.contains("suite.yaml:6"), "{}", o.stderr);
    assert!(o.stderr.contains("cases.0.tolerance"), "{}", o.stderr);
    assert!(o.stderr.contains("\"ten percent\""), "{}", o.stderr);
}

/// `residuals` in calibration.yaml are each kernel class's worst calibration-point error, as
/// validate measures it now: a calibration change that moves a point must move its residual.
#[test]
fn residuals_are_the_worst_calibration_errors() {
    let dir = fresh_dir("calibration-points");
    std::fs::create_dir_all(&dir).unwrap();
    let suite = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/reference/cases/microbenchmarks.yaml"
    );
    std::fs::copy(suite, dir.join("microbenchmarks.yaml")).unwrap();
    let o = trainsim(&["validate", "--json", "--cases", dir.to_str().unwrap()]);
    let cs = cases(&o.stdout);
    let class = |name: &str| -> &'static str {
        if name.contains("nccl") || name.starts_with("deepep") {
            "network"
        } else if name.contains("cublaslt")
            || name.contains("mla-o-proj")
            || name.contains("mla-kv-b")
        {
            "gemm"
        } else if name.starts_with("gb200") || name.starts_with("b200") {
            "attention_blackwell"
        } else {
            "attention"
        }
    };
    let mut worst = std::collections::BTreeMap::new();
    for c in cs.iter().filter(|c| c["calibration"] == true) {
        let e = c["error"].as_f64().expect("a calibration point runs").abs();
        let w = worst
            .entry(class(c["case"].as_str().unwrap()))
            .or_insert(0.0f64);
        *w = w.max(e);
    }
    assert_eq!(worst.len(), 4, "{worst:?}");
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/topologies/calibration.yaml"
    ))
    .unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    for (k, measured) in worst {
        let stored = doc["residuals"][k]["value"].as_f64().expect(k);
        // Stored rounded up to 0.1 points.
        assert!(
            stored >= measured - 1e-9 && stored - measured < 0.001 + 1e-9,
            "residual {k}: stored {stored}, validate measures {measured:.4}"
        );
    }
}

/// A run case with alternatives carries a band: the central prediction and the alternative's,
/// in order. With `gate: band` it passes exactly when the published figure lies inside.
#[test]
fn a_band_gated_case_passes_inside_its_band_and_fails_outside() {
    let case = |name: &str, published: f64, set: &str, band: bool| {
        let extra = if band {
            "    gate: band\n    band_reason: \"the loss kernel is not published\"\n    alternatives:\n      - { name: fused loss, set: [\"workload.training.loss_kernel=fused\"] }\n"
        } else {
            ""
        };
        format!(
            "  - name: {name}\n    workload: workloads/dense/mlm-a100-1.7b.yaml\n    topology: topologies/a100-64.yaml\n    set: [\"topology.nodes=4\"{set}]\n    metric: step_time_s\n    published: {published}\n    tolerance: 50%\n    source: a test\n{extra}"
        )
    };
    let suite = |dir: &str, cases: &[String]| {
        let d = fresh_dir(dir);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("s.yaml"), format!("cases:\n{}", cases.concat())).unwrap();
        d
    };
    let d = suite(
        "band-probe",
        &[
            case("central", 1.0, "", false),
            case(
                "fused",
                1.0,
                ", \"workload.training.loss_kernel=fused\"",
                false,
            ),
        ],
    );
    let o = trainsim(&["validate", "--json", "--cases", d.to_str().unwrap()]);
    let cs = cases(&o.stdout);
    let (c, f) = (
        cs[0]["predicted"].as_f64().unwrap(),
        cs[1]["predicted"].as_f64().unwrap(),
    );
    assert!(f < c, "a fused loss is faster: {f} vs {c}");
    let mid = 0.5 * (c + f);
    let d = suite(
        "band-gated",
        &[
            case("inside", mid, "", true),
            case("outside", c * 1.01, "", true),
        ],
    );
    let o = trainsim(&["validate", "--json", "--cases", d.to_str().unwrap()]);
    assert_eq!(o.code, 1, "the outside case gates: {}", o.stderr);
    let cs = cases(&o.stdout);
    for r in &cs {
        let band = r["band"].as_array().expect("a band");
        assert!((band[0].as_f64().unwrap() - f).abs() < 1e-9 * c);
        assert!((band[1].as_f64().unwrap() - c).abs() < 1e-9 * c);
        assert_eq!(r["gate_on_band"], true);
    }
    assert_eq!(cs[0]["pass"], true, "{}", cs[0]);
    assert_eq!(cs[1]["pass"], false, "{}", cs[1]);
    // gate: band needs its alternatives and its reason.
    let d = suite(
        "band-unreasoned",
        &[case("inside", mid, "", true).replace(
            "    band_reason: \"the loss kernel is not published\"\n",
            "",
        )],
    );
    let o = trainsim(&["validate", "--cases", d.to_str().unwrap()]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stderr.contains("cases.0.gate"), "{}", o.stderr);
    // A malformed alternative is an input error where it stands; one that names no such key
    // is the case's failure (its row says so) and bad input (exit 2), never a band quietly
    // left out.
    let fused = "workload.training.loss_kernel=fused";
    let d = suite(
        "band-malformed",
        &[case("inside", mid, "", true).replace(fused, "loss_kernel fused")],
    );
    let o = trainsim(&["validate", "--cases", d.to_str().unwrap()]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(
        o.stderr.contains("cases.0.alternatives.0.set.0"),
        "{}",
        o.stderr
    );
    let d = suite(
        "band-unknown-key",
        &[case("inside", mid, "", true).replace(fused, "workload.training.no_such_key=1")],
    );
    let o = trainsim(&["validate", "--json", "--cases", d.to_str().unwrap()]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stderr.contains("could not be priced"), "{}", o.stderr);
    let cs = cases(&o.stdout);
    assert_eq!(cs[0]["pass"], false);
    let why = cs[0]["failure"].as_str().expect("a failure");
    assert!(
        why.contains("fused loss") && why.contains("no_such_key"),
        "{why}"
    );
}

/// A case whose inputs do not read is bad input (exit 2, naming the case), not a failing row;
/// and a published figure must be a positive number.
#[test]
fn a_case_that_cannot_be_priced_is_a_diagnostic() {
    for (name, workload, published, says) in [
        (
            "missing",
            "workloads/no-such.yaml",
            "1.0",
            "could not be priced",
        ),
        (
            "negative",
            "workloads/dense/mlm-a100-1.7b.yaml",
            "-3",
            "a positive published figure",
        ),
        (
            "nan",
            "workloads/dense/mlm-a100-1.7b.yaml",
            ".nan",
            "a finite number",
        ),
    ] {
        let dir = fresh_dir(&format!("case-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("s.yaml"),
            format!("cases:\n  - name: {name}\n    workload: {workload}\n    topology: topologies/a100-64.yaml\n    metric: step_time_s\n    published: {published}\n    tolerance: 50%\n    source: a test\n"),
        )
        .unwrap();
        let o = trainsim(&["validate", "--cases", dir.to_str().unwrap()]);
        assert_eq!(o.code, 2, "{name}: {}", o.stderr);
        assert!(o.stderr.contains(says), "{name}: {}", o.stderr);
        assert!(!o.stderr.contains("panicked"), "{name}: {}", o.stderr);
    }
}
