//! Layout-search speed: analytic configurations priced per second on one core, for DeepSeek-V3
//! on 2,048 H800 (a narrowed space: selective recompute, ZeRO-1, micro-batch 1, so that one
//! iteration takes a second or two; the full search prices the same way) and for the plan test
//! fixture. Counts every layout the analytic engine priced, side phases excluded; includes the
//! enumeration, the validator, the memory floor and the cost of every phase.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::path::Path;
use trainsim::config::plan::PlanSpec;
use trainsim::config::{parse_doc, Source};

mod common;
use common::read;
use trainsim::scenario::plan;

fn bench(c: &mut Criterion) {
    let cal = trainsim::builtin::calibration();
    let pool = common::one_core();
    let deepseek = "name: bench\nworkload: workloads/deepseek-v3.yaml\ncandidates:\n  - chip: H800\n    gpus: 2048\n    template: topologies/h800-2048.yaml\nsearch: { recompute: [selective], zero: [1], micro_batch: [1] }\n";
    let root = Source {
        name: "bench.yaml".into(),
        text: deepseek.into(),
        dir: Some(Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()),
    };
    let fixture = read(Path::new("tests/fixtures/plan-small.yaml")).unwrap();
    for (name, src) in [("deepseek_v3_h800_2048", root), ("small_fixture", fixture)] {
        let spec: PlanSpec = parse_doc(&src, &[]).unwrap();
        let p = plan::prepare(&spec, &src, None, &read).unwrap();
        let n = pool.install(|| plan::price_analytic(&p, &cal, &|_| {}).priced.len());
        let mut g = c.benchmark_group(format!("plan_{name}"));
        g.sample_size(10);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function("analytic_configurations_1_core", |b| {
            b.iter(|| pool.install(|| plan::price_analytic(&p, &cal, &|_| {}).priced.len()))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
