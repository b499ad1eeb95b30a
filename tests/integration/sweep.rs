//! `trainsim sweep`: fixed order at any thread count, shards that merge into the unsharded
//! output, infeasible points as rows, bad axes as diagnostics, and resuming.

use crate::outputs::SMALL;
use crate::{fresh_dir, trainsim};
use std::collections::BTreeMap;
use std::path::Path;

/// Six points on the small two-node case: two NVLink caps × three prices.
const AXES: [&str; 4] = [
    "--axis",
    "topology.scale_up.bandwidth=200 GB/s bidirectional,400 GB/s bidirectional",
    "--axis",
    "workload.pricing.gpu_hour=$1..$3 +$1",
];

fn sweep(out: &Path, extra: &[&str]) -> crate::Out {
    let mut args = vec!["sweep", "--quiet", "--out", out.to_str().unwrap()];
    args.extend_from_slice(&SMALL);
    args.extend_from_slice(&AXES);
    args.extend_from_slice(extra);
    trainsim(&args)
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().to_string(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// The two directories hold the same files with the same bytes; names the ones that differ.
fn assert_same(a: &BTreeMap<String, Vec<u8>>, b: &BTreeMap<String, Vec<u8>>, what: &str) {
    let names: Vec<&String> = a.keys().chain(b.keys()).collect();
    let differ: Vec<&&String> = names
        .iter()
        .filter(|n| a.get(n.as_str()) != b.get(n.as_str()))
        .collect();
    assert!(differ.is_empty(), "{what}: {differ:?} differ");
}

#[test]
fn output_is_the_same_at_any_thread_count_and_after_merging_shards() {
    let one = fresh_dir("sweep-j1");
    let o = sweep(&one, &["-j", "1"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let two = fresh_dir("sweep-j2");
    assert_eq!(sweep(&two, &["-j", "2"]).code, 0);
    let a = files(&one);
    assert!(a.contains_key("sweep.csv") && a.contains_key("sweep.html"));
    assert!(a.contains_key("sweep-step_time.svg") && a.contains_key("sweep-dollars.svg"));
    assert_same(&a, &files(&two), "-j 1 against -j 2");
    let rows = String::from_utf8(a["sweep.jsonl"].clone()).unwrap();
    assert_eq!(rows.lines().count(), 6);
    // Price scales the cost and nothing else: $3 is three times $1 at the same cap.
    let v: Vec<serde_json::Value> = rows
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let cost = |i: usize| v[i]["metrics"]["cost_usd"].as_f64().unwrap();
    let step = |i: usize| v[i]["metrics"]["step_time_s"].as_f64().unwrap();
    assert!(
        (cost(2) / cost(0) - 3.0).abs() < 1e-9,
        "{} vs {}",
        cost(2),
        cost(0)
    );
    assert_eq!(step(0), step(2));
    // Halving the NVLink bandwidth never speeds the step up.
    assert!(
        step(0) >= step(3),
        "{} at 200 GB/s vs {} at 400 GB/s",
        step(0),
        step(3)
    );
    // Three shards, merged.
    let mut dirs = Vec::new();
    for k in 1..=3 {
        let d = fresh_dir(&format!("sweep-shard-{k}"));
        let o = sweep(&d, &["--shard", &format!("{k}/3")]);
        assert_eq!(o.code, 0, "{}", o.stderr);
        let n = std::fs::read_to_string(d.join("sweep.jsonl"))
            .unwrap()
            .lines()
            .count();
        assert_eq!(n, 2, "shard {k} runs a third of the points");
        dirs.push(d);
    }
    let merged = fresh_dir("sweep-merged");
    let mut args = vec!["sweep", "merge", "--out", merged.to_str().unwrap()];
    args.extend(dirs.iter().map(|d| d.to_str().unwrap()));
    let o = trainsim(&args);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_same(&files(&merged), &a, "merged shards against one run");
    // Merging two of three shards is an error that says what is missing.
    let partial = fresh_dir("sweep-partial");
    let o = trainsim(&[
        "sweep",
        "merge",
        "--out",
        partial.to_str().unwrap(),
        dirs[0].to_str().unwrap(),
        dirs[1].to_str().unwrap(),
    ]);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("missing"), "{}", o.stderr);
    assert!(!partial.exists());
}

#[test]
fn a_shard_resumed_unsharded_runs_only_what_is_missing() {
    let full = fresh_dir("sweep-resume-ref");
    assert_eq!(sweep(&full, &[]).code, 0);
    let d = fresh_dir("sweep-resume");
    assert_eq!(sweep(&d, &["--shard", "1/2"]).code, 0);
    let o = sweep(&d, &["--resume"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stderr.contains("(3 to run, 3 kept)"), "{}", o.stderr);
    assert_same(&files(&d), &files(&full), "resumed against one run");
}

#[test]
fn an_infeasible_point_is_a_row_with_its_reason() {
    let d = fresh_dir("sweep-infeasible");
    let mut args = vec!["sweep", "--quiet", "--out", d.to_str().unwrap()];
    args.extend_from_slice(&SMALL);
    args.extend_from_slice(&["--axis", "workload.parallelism.ep=8,3"]);
    let o = trainsim(&args);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(d.join("sweep.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["status"], "ok");
    assert_eq!(rows[1]["status"], "infeasible");
    let reason = rows[1]["reason"].as_str().unwrap();
    assert!(reason.contains("ep"), "{reason}");
    let csv = std::fs::read_to_string(d.join("sweep.csv")).unwrap();
    assert!(csv.lines().nth(2).unwrap().contains("infeasible"), "{csv}");
}

#[test]
fn a_bad_axis_is_a_diagnostic_before_anything_runs() {
    for (axis, what) in [
        ("topology.scale_up.bandwith=1,2", "bandwith"),
        ("topology.scale_up.bandwidth=100,200", "unit"),
        ("workload.pricing.gpu_hour=$1..$4 x0.5", "range"),
    ] {
        let d = fresh_dir("sweep-bad");
        let mut args = vec!["sweep", "--out", d.to_str().unwrap(), "--axis", axis];
        args.extend_from_slice(&SMALL);
        let o = trainsim(&args);
        assert_eq!(o.code, 2, "{axis}: {}", o.stderr);
        assert!(o.stderr.contains(what), "{axis}: {}", o.stderr);
        assert!(!d.exists(), "{axis}: nothing written");
    }
}
