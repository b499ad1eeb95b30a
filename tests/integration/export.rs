//! `trainsim export`: the brief, the curves, the scatters and the tables; what a cap does to
//! the answers (nothing above the chip's own figure, only the work that uses the resource
//! below it); re-planning never dearer; the same bytes at any thread count; bad input is a
//! diagnostic.

use crate::{fresh_dir, trainsim};
use serde_json::Value;
use std::path::Path;

const SCENARIO: &str = "tests/fixtures/export-small.yaml";

fn export(out: &Path, extra: &[&str]) -> crate::Out {
    let mut args = vec![
        "export",
        SCENARIO,
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    trainsim(&args)
}

fn outcome(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("export.json")).unwrap()).unwrap()
}

fn point<'a>(o: &'a Value, label: &str) -> &'a Value {
    o["points"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["label"] == label)
        .unwrap_or_else(|| panic!("a point {label}"))
}

fn figures<'a>(p: &'a Value, strategy: &str) -> &'a Value {
    &p[strategy]["figures"]
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}"))
}

fn exposed(v: &Value) -> f64 {
    v["exposed_s"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .sum()
}

#[test]
fn the_scenario_writes_the_brief_curves_scatters_and_tables() {
    let dir = fresh_dir("export-brief");
    let o = export(&dir, &[]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    for f in [
        "export.html",
        "export.md",
        "export.csv",
        "thresholds.csv",
        "export.json",
        "export-scale_up.svg",
        "export-scale_out.svg",
        "export-tpp.svg",
        "export-hbm.svg",
        "chips-tpp-pd.svg",
        "chips-tpp-hbm.svg",
    ] {
        assert!(dir.join(f).is_file(), "{f} written");
    }
    let html = std::fs::read_to_string(dir.join("export.html")).unwrap();
    let md = std::fs::read_to_string(dir.join("export.md")).unwrap();
    for section in [
        "Summary",
        "Chips",
        "Cost against each cap",
        "Every point",
        "Chips against the rules",
        "Rules",
        "Assumptions",
        "Reproduce",
    ] {
        assert!(md.contains(&format!("## {section}\n")), "md has {section}");
        assert!(
            html.contains(&format!("<h2>{section}</h2>")),
            "html has {section}"
        );
    }
    // Every rule is cited; every input is hashed.
    for citation in ["87 FR 62186", "88 FR 73458", "89 FR 96790", "91 FR 1684"] {
        assert!(md.contains(citation), "the brief cites {citation}");
    }
    let scenario = std::fs::read_to_string(SCENARIO).unwrap();
    use sha2::Digest;
    let sha = format!("{:x}", sha2::Sha256::digest(scenario.as_bytes()));
    assert!(md.contains(&sha), "the brief hashes the scenario file");
    // The page is self-contained; plots are inline in it and linked from the Markdown.
    crate::outputs::check_self_contained(&html);
    assert!(html.matches("<svg").count() >= 6);
    assert!(md.contains("(export-scale_up.svg)"));
    // The curves' axes say what they are.
    let svg = std::fs::read_to_string(dir.join("export-scale_out.svg")).unwrap();
    assert!(svg.contains("Gb/s per direction, log scale"), "x axis unit");
    assert!(
        svg.contains("GPU-hours as a multiple of H100-SXM"),
        "y axis"
    );
    assert!(
        svg.contains("fixed layout") && svg.contains("re-planned layout"),
        "legend"
    );
    // The CSV has a row per point, and the terminal table names them too.
    let mut r = csv::Reader::from_path(dir.join("export.csv")).unwrap();
    let rows = r.records().count();
    let json = outcome(&dir);
    assert_eq!(rows, json["points"].as_array().unwrap().len());
    assert!(o.stdout.contains("H100-SXM (reference)"));
    assert!(o.stdout.contains("TPP 4800"));
    // A chip without FP8 says how it ran.
    let a100 = point(&json, "A100-SXM-80GB");
    assert!(
        a100["note"]
            .as_str()
            .unwrap()
            .contains("BF16 instead of FP8"),
        "{}",
        a100["note"]
    );
}

/// A cap at or above the reference's own figure is the reference; below it, a cap moves the
/// time of the work that uses the resource: a bandwidth cap the exposed communication (compute
/// within 1%), a compute or memory cap the compute. Re-planning is never dearer than the fixed
/// layout, and the reference is ×1 by both strategies.
#[test]
fn caps_move_only_what_they_cap() {
    let dir = fresh_dir("export-caps");
    let o = export(&dir, &[]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let json = outcome(&dir);
    let reference = point(&json, "H100-SXM (reference)");
    for s in ["fixed", "replanned"] {
        let m = &reference[s]["multiple"];
        assert_eq!(f(m, "gpu_hours"), 1.0);
        assert_eq!(f(m, "days"), 1.0);
        for own in [
            "900 GB/s bidirectional",
            "400 Gb/s per direction",
            "900 GB/s bidirectional × 400 Gb/s per direction",
        ] {
            assert_eq!(
                figures(point(&json, own), s),
                figures(reference, s),
                "{own} ({s}) is the reference"
            );
        }
    }
    let r = figures(reference, "fixed");
    for (cap, what) in [
        ("50 GB/s bidirectional", "bandwidth"),
        ("25 Gb/s per direction", "bandwidth"),
        ("TPP 4800", "compute"),
        ("1 TB/s", "compute"),
    ] {
        let p = figures(point(&json, cap), "fixed");
        let dc = f(p, "compute_s") / f(r, "compute_s") - 1.0;
        let de = exposed(p) - exposed(r);
        match what {
            "bandwidth" => {
                assert!(dc.abs() < 0.01, "{cap}: compute moved {dc}");
                assert!(de > 0.05 * f(r, "step_s"), "{cap}: exposed +{de} s");
            }
            _ => {
                assert!(dc > 0.2, "{cap}: compute +{dc}");
                assert!(
                    de.abs() < 0.2 * (f(p, "compute_s") - f(r, "compute_s")),
                    "{cap}: exposed moved {de} s"
                );
            }
        }
    }
    for p in json["points"].as_array().unwrap() {
        let (fx, rp) = (figures(p, "fixed"), figures(p, "replanned"));
        if fx.is_object() && rp.is_object() && p["fixed"]["status"] == "feasible" {
            assert!(
                f(rp, "dollars") <= f(fx, "dollars"),
                "{}: re-planned dearer",
                p["label"]
            );
        }
    }
    // The resource that binds: the capped one, or none for the reference.
    assert!(reference["binding"]["resource"].is_null());
    for (cap, resource) in [
        ("50 GB/s bidirectional", "scale-up (NVLink)"),
        ("TPP 4800", "compute (TPP)"),
        ("1 TB/s", "HBM bandwidth"),
        ("A100-SXM-80GB", "compute (TPP)"),
    ] {
        assert_eq!(point(&json, cap)["binding"]["resource"], resource, "{cap}");
    }
    // Where several resources fall short, each restoration was priced.
    let both = point(&json, "400 GB/s bidirectional × 25 Gb/s per direction");
    let detail = both["binding"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("scale-up (NVLink) −") && detail.contains("scale-out (NIC) −"),
        "{detail}"
    );
    // Thresholds: three levels per axis and strategy.
    assert_eq!(json["thresholds"].as_array().unwrap().len(), 4 * 2 * 3);
}

#[test]
fn the_same_scenario_gives_the_same_bytes_at_any_thread_count() {
    let (a, b) = (fresh_dir("export-j1"), fresh_dir("export-j2"));
    assert_eq!(export(&a, &["-j", "1"]).code, 0);
    assert_eq!(export(&b, &["-j", "2"]).code, 0);
    for f in [
        "export.json",
        "export.csv",
        "thresholds.csv",
        "export-tpp.svg",
        "chips-tpp-pd.svg",
    ] {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f} differs between -j 1 and -j 2"
        );
    }
}

#[test]
fn bad_scenarios_are_diagnostics() {
    let dir = fresh_dir("export-bad");
    std::fs::create_dir_all(&dir).unwrap();
    let good = std::fs::read_to_string(SCENARIO).unwrap();
    let here = std::env::current_dir().unwrap().join("tests/fixtures");
    for (what, from, to, says) in [
        (
            "a bandwidth without its direction",
            "\"50 GB/s bidirectional\"]",
            "\"50 GB/s\"]",
            "caps.scale_up",
        ),
        ("an unknown chip", "[H800,", "[H900,", "chips.0"),
        (
            "a crossing of one axis",
            "  - [scale_up, scale_out]",
            "  - [scale_up]",
            "cross.0",
        ),
        ("a zero TPP", "tpp: [4800]", "tpp: [0]", "caps.tpp.0"),
    ] {
        let text = good
            .replace(from, to)
            .replace(
                "small-moe.yaml",
                &here.join("small-moe.yaml").display().to_string(),
            )
            .replace(
                "../../topologies/h800-16.yaml",
                &here
                    .join("../../topologies/h800-16.yaml")
                    .display()
                    .to_string(),
            );
        assert_ne!(text, good, "{what}: the replacement applies");
        let file = dir.join("bad.yaml");
        std::fs::write(&file, text).unwrap();
        let o = trainsim(&[
            "export",
            file.to_str().unwrap(),
            "--quiet",
            "--out",
            dir.join("out").to_str().unwrap(),
        ]);
        assert_eq!(o.code, 2, "{what}: {}", o.stderr);
        assert!(o.stderr.contains(says), "{what}: {}", o.stderr);
        assert!(
            o.stderr.contains("bad.yaml"),
            "{what} names the file: {}",
            o.stderr
        );
        assert!(!dir.join("out").exists(), "{what}: nothing written");
    }
}
