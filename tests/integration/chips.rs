//! `trainsim chips`: the catalog under the export rules, and derived chips.

use crate::{fresh_dir, trainsim};

/// The whole table, snapshot-tested: metrics and each rule's status for every catalog chip.
#[test]
fn chips_table() {
    let o = trainsim(&["chips"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    insta::assert_snapshot!(o.stdout);
}

/// A derived chip is written as a catalog entry that reads back: its metrics in `--json` are
/// the caps (an H100 at the H800's 400 GB/s NVLink and TPP 4,800 keeps its HBM), and the
/// 2022 rule no longer controls it.
#[test]
fn derived_chip_reads_back_as_a_catalog_entry() {
    let dir = fresh_dir("chips-derive");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("h100-capped.yaml");
    let o = trainsim(&[
        "chips",
        "--json",
        "--derive",
        "H100",
        "--cap",
        "scale_up=400GB/s",
        "--cap",
        "tpp=4800",
        "--name",
        "H100-X",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let (base, x) = (&v[0], &v[1]);
    assert_eq!(x["chip"], "H100-X");
    assert!((x["metrics"]["tpp"].as_f64().unwrap() - 4800.0).abs() < 1e-6);
    assert_eq!(
        x["metrics"]["hbm_bandwidth"],
        base["metrics"]["hbm_bandwidth"]
    );
    assert_eq!(x["metrics"]["io_bandwidth"].as_f64().unwrap(), 528e9);
    assert_eq!(x["statuses"][0]["status"], "not controlled");
    assert_eq!(base["statuses"][0]["status"], "3A090");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.contains("H100-X:") && text.contains("400 GB/s bidirectional"),
        "{text}"
    );
    for (args, at) in [
        (
            vec!["chips", "--derive", "H100", "--cap", "nvlink=1"],
            "--cap",
        ),
        (
            vec!["chips", "--derive", "H100", "--cap", "tpp=-3"],
            "--cap",
        ),
        (
            vec!["chips", "--derive", "H100", "--cap", "hbm=2 TB"],
            "--cap",
        ),
        (vec!["chips", "--derive", "Z9"], "--derive"),
    ] {
        let o = trainsim(&args);
        assert_eq!(o.code, 2, "{args:?}");
        assert!(
            o.stderr.contains(&format!("bad input in {at}")),
            "{}",
            o.stderr
        );
    }
}

/// A derived chip runs: written into a copy of a topology (`--topology`), a run on it prices the
/// cap. A cap above the chip's own figures changes nothing; an NVLink cap moves only the
/// tensor-parallel traffic (the compute is the same, the exposed TP time grows, the step with
/// it); a cap on HBM bandwidth moves the compute, not the traffic's standalone cost. A chip
/// that takes a catalog name is a located diagnostic.
#[test]
fn a_derived_chip_runs_and_moves_what_it_caps() {
    let dir = fresh_dir("chips-topology");
    std::fs::create_dir_all(&dir).unwrap();
    let workload = "workloads/dense/dgxc-h100-llama3.1-70b.yaml";
    let run = |caps: &[&str], name: &str| -> serde_json::Value {
        let topo = dir.join(format!("{name}.yaml"));
        let mut args = vec!["chips", "--derive", "H100", "--name", name];
        for c in caps {
            args.extend(["--cap", c]);
        }
        let t = topo.to_str().unwrap();
        args.extend(["--topology", "topologies/h100-64.yaml", "--out", t]);
        let o = trainsim(&args);
        assert_eq!(o.code, 0, "{}", o.stderr);
        let out = dir.join(format!("{name}-out"));
        let o = trainsim(&[
            "run",
            "--quiet",
            "--no-band",
            "--topology",
            t,
            "--workload",
            workload,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_eq!(o.code, 0, "{}", o.stderr);
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
    };
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap();
    let b = |v: &serde_json::Value, k: &str| v["breakdown_s"][k].as_f64().unwrap();
    let tp = |v: &serde_json::Value| {
        v["breakdown_s"]["exposed_comm_by_kind"]["tp"]
            .as_f64()
            .unwrap()
    };
    let same = run(&[], "H100-SAME");
    let above = run(
        &["scale_up=2TB/s", "tpp=99999", "hbm=9TB/s", "nic=800Gb/s"],
        "H100-ABOVE",
    );
    assert_eq!(f(&same, "step_time_s"), f(&above, "step_time_s"));
    let nv = run(&["scale_up=400GB/s"], "H100-NV400");
    assert!((b(&nv, "compute") - b(&same, "compute")).abs() < 1e-3 * b(&same, "compute"));
    assert!(tp(&nv) > tp(&same) && f(&nv, "step_time_s") > f(&same, "step_time_s"));
    let hbm = run(&["hbm=2TB/s"], "H100-HBM2");
    assert!(b(&hbm, "compute") > b(&same, "compute"));
    let topo = dir.join("clash.yaml");
    std::fs::write(
        &topo,
        std::fs::read_to_string(dir.join("H100-SAME.yaml"))
            .unwrap()
            .replace("H100-SAME", "H800"),
    )
    .unwrap();
    let o = trainsim(&["run", "--topology", topo.to_str().unwrap()]);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("at:       chips.H800"), "{}", o.stderr);
}

/// `--plot` writes the two scatters of the catalog against the rules' thresholds: every chip
/// with a die area on the density plot (Blackwell has none), every chip on the bandwidth plot,
/// each rule outcome in the legend.
#[test]
fn chips_plot_writes_the_two_scatters() {
    let dir = fresh_dir("chips-plot");
    let o = trainsim(&["chips", "--plot", dir.to_str().unwrap()]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let pd = std::fs::read_to_string(dir.join("chips-tpp-pd.svg")).unwrap();
    let hbm = std::fs::read_to_string(dir.join("chips-tpp-hbm.svg")).unwrap();
    for s in [
        "H20",
        "A100-SXM-80GB, A800-SXM-80GB",
        "3A090-2023: 3A090.a",
        "performance density",
    ] {
        assert!(pd.contains(s), "{s}");
    }
    assert!(!pd.contains("B200"));
    for s in [
        "B200",
        "GB200",
        "case-by-case-2026: case-by-case review",
        "DRAM bandwidth (TB/s)",
    ] {
        assert!(hbm.contains(s), "{s}");
    }
}
