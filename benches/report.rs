//! What the report room adds to the default run: the whole run (DES of the three distinct
//! layouts, costing) against the same run keeping its timeline, rendering `report.html` /
//! `report.md` with their plots, and serializing the default trace. Prints the sizes once.

use criterion::{criterion_group, criterion_main, Criterion};
use trainsim::config::Source;
use trainsim::pipeline::{self, Engine, DEFAULT_TOPOLOGY, DEFAULT_WORKLOAD};
use trainsim::report::document::{self, InputFile};
use trainsim::report::trace::{chrome_trace, Ranks};

fn bench(c: &mut Criterion) {
    let t = Source::embedded(DEFAULT_TOPOLOGY.0, DEFAULT_TOPOLOGY.1);
    let w = Source::embedded(DEFAULT_WORKLOAD.0, DEFAULT_WORKLOAD.1);
    let cal = trainsim::builtin::calibration();
    let engine = Engine::Des { full: false };
    let run = |keep: bool| {
        pipeline::run_detailed(&t, &w, &[], engine, &cal, keep, &mut |_, _| {})
            .expect("the default run")
    };
    let out = run(true);
    let timeline = out.timeline.as_ref().expect("a DES timeline");
    let render = || {
        document::render(&document::Input {
            summary: &out.summary,
            timeline: Some(timeline),
            cluster: &out.cluster,
            workload: &out.workload,
            calibration: &cal,
            files: vec![
                InputFile {
                    name: t.name.clone(),
                    text: t.text.clone(),
                },
                InputFile {
                    name: w.name.clone(),
                    text: w.text.clone(),
                },
            ],
            sets: Vec::new(),
            command: "trainsim run --report".into(),
            published: true,
            version: "bench".into(),
        })
    };
    let gpus = Ranks::Stages.select(timeline).expect("stages");
    let r = render();
    let trace = chrome_trace(timeline, &gpus, "bench", false);
    let kernels = chrome_trace(timeline, &gpus, "bench", true);
    eprintln!(
        "report.html {:.2} MB, report.md {:.1} kB, plots {:.2} MB; default trace {:.1} MB ({} tasks), with kernels {:.1} MB",
        r.html.len() as f64 / 1e6,
        r.markdown.len() as f64 / 1e3,
        r.plots.iter().map(|(_, s)| s.len()).sum::<usize>() as f64 / 1e6,
        trace.len() as f64 / 1e6,
        timeline.tasks.len(),
        kernels.len() as f64 / 1e6
    );
    let mut g = c.benchmark_group("report");
    g.sample_size(10);
    g.bench_function("default_run", |b| b.iter(|| run(false).summary.step_time_s));
    g.bench_function("default_run_keeping_timeline", |b| {
        b.iter(|| run(true).summary.step_time_s)
    });
    g.bench_function("render_report", |b| b.iter(|| render().html.len()));
    g.bench_function("default_trace", |b| {
        b.iter(|| chrome_trace(timeline, &gpus, "bench", false).len())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
