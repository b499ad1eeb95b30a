//! `trainsim plan`: the ranked table, the report, the Pareto plot and the CSVs; the same bytes at
//! any thread count; a plan nothing can meet names the constraint; bad input is a diagnostic.

use crate::{fresh_dir, trainsim};
use std::collections::BTreeMap;
use std::path::Path;

const PLAN: &str = "tests/fixtures/plan-small.yaml";

fn plan(out: &Path, extra: &[&str]) -> crate::Out {
    let mut args = vec!["plan", PLAN, "--quiet", "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    trainsim(&args)
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().to_string(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

fn text(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap()
}

/// Days and dollars of every priced row within HBM, from plan.csv.
fn priced(dir: &Path) -> Vec<(f64, f64, String)> {
    let mut r = csv::Reader::from_path(dir.join("plan.csv")).unwrap();
    let head = r.headers().unwrap().clone();
    let col = |n: &str| head.iter().position(|h| h == n).unwrap();
    let (d, c, s) = (col("days"), col("dollars"), col("status"));
    r.records()
        .map(|x| {
            let x = x.unwrap();
            (
                x[d].parse().unwrap(),
                x[c].parse().unwrap(),
                x[s].to_string(),
            )
        })
        .collect()
}

#[test]
fn plan_prints_a_ranked_table_and_writes_the_report_the_front_and_the_csvs() {
    let out = fresh_dir("plan-small");
    let o = plan(&out, &[]);
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("rank  cluster"), "{}", o.stdout);
    assert!(o.stdout.contains("Recommendation: "), "{}", o.stdout);
    let names: Vec<String> = files(&out).into_keys().collect();
    for f in [
        "plan.html",
        "plan.md",
        "plan.csv",
        "ranked.csv",
        "search.csv",
        "pareto.svg",
    ] {
        assert!(names.contains(&f.to_string()), "{f} missing: {names:?}");
    }
    // plan.csv has every priced configuration: as many rows as search.csv's "priced" column says.
    let rows = priced(&out);
    let mut s = csv::Reader::from_path(out.join("search.csv")).unwrap();
    let head = s.headers().unwrap().clone();
    let at = head.iter().position(|h| h == "priced").unwrap();
    let said: usize = s
        .records()
        .map(|r| r.unwrap()[at].replace(',', "").parse::<usize>().unwrap())
        .sum();
    assert_eq!(rows.len(), said);
    assert!(said > 100, "{said}");
    // The front in the report is exactly the non-dominated rows within HBM (an oracle over the
    // CSV: no other row is at most as long and at most as dear, and strictly better in one).
    let within: Vec<(f64, f64)> = rows
        .iter()
        .filter(|r| r.2 != "over HBM")
        .map(|r| (r.0, r.1))
        .collect();
    let front: Vec<&(f64, f64)> = within
        .iter()
        .filter(|a| {
            !within
                .iter()
                .any(|b| b.0 <= a.0 && b.1 <= a.1 && (b.0 < a.0 || b.1 < a.1))
        })
        .collect();
    let mut distinct: Vec<(u64, u64)> = front
        .iter()
        .map(|p| (p.0.to_bits(), p.1.to_bits()))
        .collect();
    distinct.sort_unstable();
    distinct.dedup();
    let md = text(&out, "plan.md");
    let section = md.split("## Pareto front").nth(1).unwrap();
    let table_rows = section
        .split("## ")
        .next()
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("| H"))
        .count();
    assert_eq!(table_rows, distinct.len(), "{section}");
    // The plot names its axes with units, has a legend, and marks the pick.
    let svg = text(&out, "pareto.svg");
    for s in [
        "wall-clock for the whole run (days)",
        "cost of the whole run (million USD)",
        "Pareto front (analytic)",
        "chosen (DES)",
    ] {
        assert!(svg.contains(s), "{s} not in the SVG");
    }
    // The report is self-contained, says why others lost, how the pick moves, and how to
    // reproduce it.
    let html = text(&out, "plan.html");
    assert!(!html.contains("src=\"http") && !html.contains("<script"));
    for s in [
        "why it lost",
        "every price ×0.75",
        "kernel efficiency ×1.1",
        "Search record",
        "sha256",
        "tests/fixtures/small-moe.yaml",
        "context-extension-16k",
    ] {
        assert!(html.contains(s), "{s} not in plan.html");
    }
}

#[test]
fn plan_output_is_byte_identical_at_any_thread_count() {
    let (a, b) = (fresh_dir("plan-j1"), fresh_dir("plan-j2"));
    assert_eq!(plan(&a, &["-j", "1"]).code, 0);
    assert_eq!(plan(&b, &["-j", "2"]).code, 0);
    let (fa, fb) = (files(&a), files(&b));
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
    for (k, v) in &fa {
        // The command line differs by its -j and --out; everything else is the same bytes.
        let norm = |x: &[u8], dir: &Path, j: &str| {
            String::from_utf8_lossy(x)
                .replace(dir.to_str().unwrap(), "OUT")
                .replace(&format!("-j {j}"), "-j N")
        };
        assert!(
            norm(v, &a, "1") == norm(&fb[k], &b, "2"),
            "{k} differs between -j 1 and -j 2"
        );
    }
}

#[test]
fn a_plan_nothing_meets_names_the_constraint_and_what_to_relax() {
    let out = fresh_dir("plan-infeasible");
    let o = plan(&out, &["--deadline", "0.1 d"]);
    assert_eq!(o.code, 1, "{}{}", o.stdout, o.stderr);
    assert!(
        o.stdout.contains("No configuration meets the constraints."),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("the deadline of 0.1 days removed"),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("relax the deadline to"), "{}", o.stdout);
    // The report says the same, and every priced row is over the deadline (or over HBM).
    assert!(text(&out, "plan.md").contains("the deadline of 0.1 days removed"));
    assert!(priced(&out)
        .iter()
        .all(|r| r.2 == "over deadline" || r.2 == "over HBM"));
    // A budget below the cheapest names the budget and the figure to raise it to.
    let o = plan(&fresh_dir("plan-broke"), &["--budget", "$10"]);
    assert_eq!(o.code, 1);
    assert!(
        o.stdout.contains("the budget of $10 removed"),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("raise the budget to"), "{}", o.stdout);
}

#[test]
fn bad_plan_input_is_a_diagnostic() {
    let out = fresh_dir("plan-bad");
    let o = plan(&out, &["--chip", "H800"]);
    assert_eq!(o.code, 2);
    assert!(
        o.stderr.contains("--chip") && o.stderr.contains("--gpus"),
        "{}",
        o.stderr
    );
    let o = plan(&out, &["--chip", "Z9000", "--gpus", "8..16"]);
    assert_eq!(o.code, 2);
    assert!(
        o.stderr.contains("Z9000") && o.stderr.contains("H800"),
        "{}",
        o.stderr
    );
    let o = plan(&out, &["--deadline", "60 parsecs"]);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("--deadline"), "{}", o.stderr);
    let o = plan(&out, &["--chip", "H800", "--gpus", "64..8"]);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("--gpus"), "{}", o.stderr);
    assert!(!out.exists(), "nothing is written on bad input");
}

#[test]
fn top_k_zero_ranks_by_the_analytic_engine_alone() {
    let out = fresh_dir("plan-analytic");
    let o = plan(&out, &["--top-k", "0"]);
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    assert!(o.stdout.contains(" 0 re-ranked by the DES"), "{}", o.stdout);
    assert!(o.stdout.contains("per step (analytic)"), "{}", o.stdout);
    // No DES column is filled, and the table is in the analytic engine's order of dollars.
    let mut r = csv::Reader::from_path(out.join("ranked.csv")).unwrap();
    let head = r.headers().unwrap().clone();
    let des = head.iter().position(|h| h == "step (s), DES").unwrap();
    let dollars = head.iter().position(|h| h == "dollars").unwrap();
    let status = head.iter().position(|h| h == "status").unwrap();
    let rows: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
    assert!(rows.iter().all(|x| &x[des] == "—"));
    let money = |s: &str| -> f64 {
        let t = s.trim_start_matches('$').replace(',', "");
        match t.strip_suffix('M') {
            Some(m) => m.parse::<f64>().unwrap() * 1e6,
            None => t.parse().unwrap(),
        }
    };
    let feasible: Vec<f64> = rows
        .iter()
        .filter(|x| &x[status] == "feasible")
        .map(|x| money(&x[dollars]))
        .collect();
    assert!(feasible.len() >= 2);
    assert!(
        feasible.windows(2).all(|w| w[0] <= w[1] + 0.5),
        "{feasible:?}"
    );
}
