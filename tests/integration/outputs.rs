//! The report room's outputs: the Perfetto trace against the event format and the breakdown,
//! the CSV tables, the HTML and Markdown report (in a real browser where one is installed),
//! and all-or-nothing writes.

use crate::{fresh_dir, trainsim};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// DeepSeek-V3's layer design cut to 4 layers of 64 experts on two H800 nodes: PP2 × EP8,
/// DualPipe.
pub const SMALL: [&str; 16] = [
    "--topology",
    "topologies/h800-16.yaml",
    "--set",
    "workload.model.num_hidden_layers=4",
    "--set",
    "workload.model.first_k_dense_replace=1",
    "--set",
    "workload.training.global_batch=64",
    "--set",
    "workload.parallelism.pp=2",
    "--set",
    "workload.parallelism.ep=8",
    "--set",
    "workload.model.n_routed_experts=64",
    "--set",
    "workload.training.phases=[{name: pre-training, tokens: 20B}, {name: post-training, reported_gpu_hours: 10}]",
];

/// Runs the small case with `extra` flags into a fresh directory; returns it and summary.json.
fn run_small(name: &str, extra: &[&str]) -> (PathBuf, Value) {
    let out = fresh_dir(name);
    let trace = out.join("trace.json");
    let mut args = vec![
        "run",
        "--out",
        out.to_str().unwrap(),
        "--trace",
        trace.to_str().unwrap(),
    ];
    args.extend_from_slice(&SMALL);
    args.extend_from_slice(extra);
    let o = trainsim(&args);
    assert_eq!(o.code, 0, "stderr:\n{}", o.stderr);
    assert!(
        !o.stdout.contains('\u{1b}'),
        "no progress bar escape codes on stdout"
    );
    let summary = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap())
        .expect("summary.json parses");
    (out, summary)
}

/// Total length of the union of intervals.
fn union(mut spans: Vec<(f64, f64)>) -> f64 {
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut total = 0.0;
    let mut cur: Option<(f64, f64)> = None;
    for (a, b) in spans {
        match cur {
            Some((ca, cb)) if a <= cb => cur = Some((ca, cb.max(b))),
            Some((ca, cb)) => {
                total += cb - ca;
                cur = Some((a, b));
            }
            None => cur = Some((a, b)),
        }
    }
    total + cur.map_or(0.0, |(a, b)| b - a)
}

fn num(v: &Value, k: &str) -> f64 {
    v[k].as_f64()
        .unwrap_or_else(|| panic!("{k} is a number in {v}"))
}

#[test]
fn the_trace_follows_the_event_format_and_matches_the_breakdown() {
    let (out, summary) = run_small("trace", &["--trace-kernels"]);
    let trace: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("trace.json")).unwrap())
            .expect("the trace is JSON");
    let events = trace["traceEvents"].as_array().expect("traceEvents");
    assert!(events.len() > 1000, "{} events", events.len());
    let mut flows: BTreeMap<u64, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    let mut names = BTreeMap::new();
    for e in events {
        for k in ["ph", "ts", "pid", "tid"] {
            assert!(e.get(k).is_some(), "event without {k}: {e}");
        }
        let ph = e["ph"].as_str().expect("ph is a string");
        assert!(
            ["X", "M", "s", "f", "C"].contains(&ph),
            "unexpected phase {ph}"
        );
        assert!(num(e, "ts") >= 0.0, "{e}");
        match ph {
            "X" => {
                assert!(num(e, "dur") >= 0.0, "negative duration: {e}");
                assert!(e["name"].is_string(), "{e}");
            }
            "s" | "f" => {
                let id = e["id"].as_u64().expect("flow id");
                let f = flows.entry(id).or_default();
                if ph == "s" { &mut f.0 } else { &mut f.1 }.push(num(e, "ts"));
            }
            "M" if e["name"] == "process_name" => {
                names.insert(e["pid"].as_u64().unwrap(), e["args"]["name"].clone());
            }
            _ => {}
        }
    }
    assert!(!flows.is_empty(), "pipeline sends have flows");
    for (id, (s, f)) in &flows {
        assert_eq!((s.len(), f.len()), (1, 1), "flow {id} pairs up");
        assert!(s[0] <= f[0], "flow {id} ends before it starts");
    }
    assert_eq!(names.len(), 2, "one process per stage: {names:?}");
    assert_eq!(names[&1], "GPU 1 · stage 1");
    // Each stream's busy time in the trace (task events only: kernels nest inside them).
    let gpu = trace["otherData"]["bottleneck_gpu"]
        .as_u64()
        .expect("bottleneck");
    let mut by_tid: BTreeMap<u64, Vec<(f64, f64)>> = BTreeMap::new();
    let mut kernels = 0;
    for e in events.iter().filter(|e| e["ph"] == "X" && e["pid"] == gpu) {
        if e.get("args").is_none() {
            kernels += 1; // a kernel inside its task
            continue;
        }
        let (ts, dur) = (num(e, "ts") * 1e-6, num(e, "dur") * 1e-6);
        by_tid
            .entry(e["tid"].as_u64().unwrap())
            .or_default()
            .push((ts, ts + dur));
    }
    assert!(kernels > 100, "--trace-kernels nests kernels: {kernels}");
    let b = &summary["breakdown_s"];
    let streams = ["compute", "wgrad", "comm", "pipeline", "data_parallel"];
    for (tid, spans) in &by_tid {
        let name = streams[*tid as usize];
        let want = num(&b["stream_busy"], name);
        let got = union(spans.clone());
        assert!(
            (got - want).abs() <= 1e-3 * want,
            "{name}: trace {got} s, breakdown {want} s"
        );
    }
    // Independent of the per-stream figures: the compute streams' union is the breakdown's
    // compute plus the optimizer, and everything's union is the step less its bubble.
    let compute: Vec<(f64, f64)> = [0, 1]
        .iter()
        .flat_map(|t| by_tid.get(t).cloned().unwrap_or_default())
        .collect();
    let want = num(b, "compute") + num(b, "optimizer");
    let got = union(compute);
    assert!(
        (got - want).abs() <= 1e-3 * want,
        "compute: {got} vs {want}"
    );
    let all: Vec<(f64, f64)> = by_tid.values().flatten().copied().collect();
    let want = num(&summary, "step_time_s") - num(b, "bubble");
    let got = union(all);
    assert!((got - want).abs() <= 1e-3 * want, "busy: {got} vs {want}");
    // Counter tracks for the NIC and NVLink.
    let counters: Vec<&str> = events
        .iter()
        .filter(|e| e["ph"] == "C")
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(counters.contains(&"NIC load") && counters.contains(&"NVLink load"));
}

#[test]
fn trace_ranks_choose_the_gpus_and_reject_what_is_not_there() {
    let (out, _) = run_small("trace-ranks", &["--trace-ranks", "1"]);
    let trace: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("trace.json")).unwrap()).unwrap();
    let pids: std::collections::BTreeSet<u64> = trace["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(pids.into_iter().collect::<Vec<_>>(), vec![1]);
    let bad = fresh_dir("trace-ranks-bad");
    let mut args = vec!["run", "--out", bad.to_str().unwrap(), "--trace", "x.json"];
    args.extend_from_slice(&SMALL);
    args.extend_from_slice(&["--trace-ranks", "7"]);
    let o = trainsim(&args);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stderr.contains("--trace-ranks"), "{}", o.stderr);
    assert!(!bad.exists(), "nothing written on error");
}

fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(path).expect("CSV opens");
    let head = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|x| x.unwrap().iter().map(String::from).collect())
        .collect();
    (head, rows)
}

#[test]
fn csv_tables_carry_units_and_add_up() {
    let (out, summary) = run_small("csv", &["--csv"]);
    let (head, rows) = read_csv(&out.join("breakdown.csv"));
    assert_eq!(head[1], "time_per_step (s)");
    let (parts, step): (Vec<_>, Vec<_>) = rows.iter().partition(|r| r[0] != "step");
    let sum: f64 = parts.iter().map(|r| r[1].parse::<f64>().unwrap()).sum();
    let step_s: f64 = step[0][1].parse().unwrap();
    assert!((step_s - num(&summary, "step_time_s")).abs() < 1e-9);
    // Compute, bubble, exposed communication and the optimizer are the whole step.
    assert!((sum - step_s).abs() < 1e-3 * step_s, "{sum} vs {step_s}");
    let (head, rows) = read_csv(&out.join("phases.csv"));
    assert!(
        head.contains(&"gpu_hours (GPU-h)".to_string()) && head.contains(&"cost (USD)".to_string())
    );
    let col = |name: &str| head.iter().position(|h| h == name).expect(name);
    let hours: f64 = rows
        .iter()
        .map(|r| r[col("gpu_hours (GPU-h)")].parse::<f64>().unwrap())
        .sum();
    assert!((hours - num(&summary, "gpu_hours")).abs() < 1e-6 * hours);
    // Each simulated phase's GPU-hours are its GPUs over its days.
    for r in &rows {
        let (gpus, days): (f64, f64) = (
            r[col("gpus")].parse().unwrap(),
            r[col("days (d)")].parse().unwrap(),
        );
        let h: f64 = r[col("gpu_hours (GPU-h)")].parse().unwrap();
        assert!((gpus * days * 24.0 - h).abs() <= 1e-6 * h, "{r:?}");
    }
    let (head, rows) = read_csv(&out.join("stages.csv"));
    assert!(
        head.iter().all(|h| !h.ends_with("_s")),
        "units in brackets: {head:?}"
    );
    assert_eq!(rows.len(), summary["stages"].as_array().unwrap().len());
}

/// `report.html` is one self-contained file: inline SVG and CSS, no script, nothing fetched.
pub(crate) fn check_self_contained(html: &str) {
    let lower = html.to_ascii_lowercase();
    for bad in ["<script", "<link", "<img", "<iframe", "@import", "src="] {
        assert!(!lower.contains(bad), "report.html contains {bad}");
    }
    for (i, _) in lower.match_indices("url(") {
        assert!(
            lower[i + 4..].starts_with('#'),
            "report.html fetches {}",
            &lower[i..i + 40]
        );
    }
    for scheme in ["http://", "https://"] {
        assert!(
            only_svg_namespaces(&lower, scheme),
            "report.html names a remote {scheme} resource"
        );
    }
}

/// SVG namespace declarations are identifiers, not requests.
fn only_svg_namespaces(html: &str, scheme: &str) -> bool {
    html.match_indices(scheme).all(|(i, _)| {
        html[i..].starts_with("http://www.w3.org/2000/svg")
            || html[i..].starts_with("http://www.w3.org/1999/xlink")
    })
}

#[test]
fn the_report_is_self_contained_and_says_what_ran() {
    let (out, summary) = run_small("report", &["--report"]);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    check_self_contained(&html);
    let step = format!("{:.2} s", num(&summary, "step_time_s"));
    assert!(html.contains(&step), "step time {step} in the report");
    for section in [
        "Headline",
        "Step breakdown",
        "One step on a timeline",
        "Memory per GPU",
        "Phases",
        "Goodput: failures, checkpoints, restarts, stragglers",
        "Network",
        "Assumptions",
        "Reproduce",
    ] {
        assert!(
            html.contains(&format!(">{section}</h2>")),
            "section {section}"
        );
    }
    assert_eq!(html.matches("<svg").count(), 5, "five plots inline");
    assert!(
        html.contains("[inferred]"),
        "the inputs' assumptions are listed"
    );
    // Reproduce: the topology file's sha256 and the command.
    let topo = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies/h800-16.yaml"))
        .unwrap();
    use sha2::Digest;
    let hash = sha2::Sha256::digest(&topo)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    assert!(html.contains(&hash), "input hash {hash}");
    assert!(html.contains("--report"), "the command line");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    for svg in ["breakdown.svg", "timeline.svg", "memory.svg", "phases.svg"] {
        assert!(md.contains(&format!("]({svg})")), "report.md links {svg}");
        let text = std::fs::read_to_string(out.join(svg)).unwrap();
        assert!(text.contains("<svg"), "{svg} is an SVG");
    }
    assert!(md.contains(&step));
    // Two nodes: the pipeline sends and gradient syncs load the NICs.
    assert!(
        md.contains("| NIC–leaf |"),
        "the network section names the link classes"
    );
    assert!(!md.contains("<table"), "Markdown tables, not HTML");
}

#[test]
fn a_failed_write_leaves_no_output_behind() {
    let out = fresh_dir("atomic");
    std::fs::create_dir_all(&out).unwrap();
    // The trace's folder is a file: writing it fails after the summary and report are staged.
    let blocker = out.join("not-a-dir");
    std::fs::write(&blocker, "x").unwrap();
    let trace = blocker.join("trace.json");
    let mut args = vec![
        "run",
        "--out",
        out.to_str().unwrap(),
        "--report",
        "--csv",
        "--trace",
        trace.to_str().unwrap(),
    ];
    args.extend_from_slice(&SMALL);
    let o = trainsim(&args);
    assert_eq!(o.code, 2, "{}", o.stderr);
    let left: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(left, vec!["not-a-dir".to_string()], "left behind: {left:?}");
}

#[test]
fn the_trace_needs_the_discrete_event_engine() {
    let out = fresh_dir("trace-analytic");
    let mut args = vec![
        "run",
        "--engine",
        "analytic",
        "--out",
        out.to_str().unwrap(),
        "--trace",
        "t.json",
    ];
    args.extend_from_slice(&SMALL);
    let o = trainsim(&args);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("--trace"), "{}", o.stderr);
}

/// URLs a page asked the network stack for: Chromium's net log marks the browser's own
/// background requests (update checks, network time) as initiated by "not an origin"; a page's
/// requests carry the page's origin.
fn page_requests(netlog: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(netlog).expect("chromium wrote its net log");
    // Chromium may stop before closing the JSON; the events are what matters.
    let v: Value = serde_json::from_str(&text)
        .or_else(|_| serde_json::from_str(&format!("{}]}}", text.trim_end().trim_end_matches(','))))
        .expect("the net log parses");
    let mut urls = Vec::new();
    for e in v["events"].as_array().into_iter().flatten() {
        let p = &e["params"];
        if let (Some(url), Some(init)) = (p["url"].as_str(), p["initiator"].as_str()) {
            if init != "not an origin" && !url.starts_with("file:") && !url.starts_with("data:") {
                urls.push(url.to_string());
            }
        }
    }
    urls.sort();
    urls.dedup();
    urls
}

fn browser() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome", "chrome"]
        .iter()
        .flat_map(|b| std::env::split_paths(&path).map(move |d| d.join(b)))
        .find(|p| p.is_file())
}

/// Opens `report.html` in headless Chromium: it loads without a console error or a network
/// request, its screenshot is not blank, and its text holds the step time and GPU-hours.
#[test]
fn the_report_loads_in_a_real_browser() {
    let Some(chrome) = browser() else {
        assert!(
            std::env::var("TRAINSIM_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "TRAINSIM_REQUIRE_BROWSER=1 but no chromium on PATH (apt-get install chromium)"
        );
        eprintln!("skipping the browser test: no chromium on PATH");
        return;
    };
    let (out, summary) = run_small("browser", &["--report"]);
    let page = format!("file://{}", out.join("report.html").display());
    let netlog = out.join("netlog.json");
    let profile = out.join("profile");
    let run = |page: &str, extra: &[String]| {
        let mut cmd = std::process::Command::new(&chrome);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,900",
            &format!("--user-data-dir={}", profile.display()),
        ])
        .args(extra)
        .arg(page);
        let o = cmd.output().expect("chromium runs");
        assert!(
            o.status.success(),
            "chromium failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        (
            String::from_utf8_lossy(&o.stdout).to_string(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    let (dom, log) = run(
        &page,
        &[
            "--dump-dom".into(),
            format!("--log-net-log={}", netlog.display()),
        ],
    );
    for line in log.lines() {
        assert!(
            !line.contains(":CONSOLE") && !line.contains("Uncaught"),
            "console message: {line}"
        );
    }
    let step = format!("{:.2} s", num(&summary, "step_time_s"));
    assert!(dom.contains(&step), "DOM has the step time {step}");
    let hours = num(&summary, "gpu_hours").round() as u64;
    let grouped = hours
        .to_string()
        .as_bytes()
        .rchunks(3)
        .rev()
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(",");
    assert!(dom.contains(&grouped), "DOM has the GPU-hours {grouped}");
    let fetched = page_requests(&netlog);
    assert!(fetched.is_empty(), "the report requested {fetched:?}");
    // The check sees a request when there is one: the same page with a loopback image.
    let probe = out.join("probe.html");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    std::fs::write(
        &probe,
        html.replace("<body>", "<body><img src=\"http://127.0.0.1:9/probe.png\">"),
    )
    .unwrap();
    let probe_log = out.join("probe-netlog.json");
    run(
        &format!("file://{}", probe.display()),
        &[
            "--dump-dom".into(),
            format!("--log-net-log={}", probe_log.display()),
        ],
    );
    let seen = page_requests(&probe_log);
    assert!(
        seen.iter().any(|u| u.contains("127.0.0.1:9/probe.png")),
        "the request check misses a page's request: {seen:?}"
    );
    let shot = out.join("shot.png");
    run(&page, &[format!("--screenshot={}", shot.display())]);
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = &buf[..info.buffer_size()];
    let first = &px[..4.min(px.len())];
    let differing = px
        .chunks(info.color_type.samples())
        .filter(|p| p[..3] != first[..3])
        .count();
    let total = (info.width * info.height) as usize;
    assert!(
        differing * 50 > total,
        "screenshot is blank: {differing} of {total} pixels differ from the first"
    );
}
