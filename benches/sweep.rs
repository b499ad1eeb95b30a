//! Sweep throughput: points per second on one core, for the analytic engine and the DES, on the
//! shipped `workloads/sweeps/export-nvlink.yaml` (DeepSeek-V3 on 2,048 H800, seven NVLink caps).
//! Excludes process start-up; includes everything a point does (documents, cluster, workload,
//! every phase's layouts, cost).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use trainsim::config::{parse_doc, Source};
use trainsim::pipeline::{Engine, DEFAULT_TOPOLOGY, DEFAULT_WORKLOAD};
use trainsim::scenario::sweep::{self, SweepFile};

fn bench(c: &mut Criterion) {
    let text = include_str!("../workloads/sweeps/export-nvlink.yaml");
    let src = Source::embedded("workloads/sweeps/export-nvlink.yaml", text);
    let file: SweepFile = parse_doc(&src, &[]).expect("the shipped sweep parses");
    let axes = sweep::file_axes(&file, &src.name).expect("its axes");
    let points = sweep::points(&axes, false).expect("its points");
    let t = Source::embedded(DEFAULT_TOPOLOGY.0, DEFAULT_TOPOLOGY.1);
    let w = Source::embedded(DEFAULT_WORKLOAD.0, DEFAULT_WORKLOAD.1);
    let cal = trainsim::builtin::calibration();
    let mut g = c.benchmark_group("sweep_export_nvlink");
    g.sample_size(10);
    g.throughput(Throughput::Elements(points.len() as u64));
    for (name, engine) in [
        ("analytic_points_1_core", Engine::Analytic),
        ("des_points_1_core", Engine::Des { full: false }),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let rows = sweep::run(&points, &axes, &t, &w, &[], engine, &cal, 1, &|| {});
                assert!(rows.iter().all(|r| r.status == "ok"));
                rows.len()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
