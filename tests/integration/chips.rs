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
