//! Export-scenario speed: points priced per second on one core for the test fixture (16 points,
//! fixed and re-planned, same-day counts and binding restorations included), and one DeepSeek-V3
//! point on 2,048 GPUs (the H100 with a 100 Gb/s NIC: the fixed layout, the bounded layout
//! search, the same-day counts).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::path::Path;
use trainsim::config::export::ExportSpec;
use trainsim::config::{parse_doc, Source};

mod common;
use common::read;
use trainsim::scenario::export;

fn bench(c: &mut Criterion) {
    let cal = trainsim::builtin::calibration();
    let pool = common::one_core();
    let deepseek = Source {
        name: "bench.yaml".into(),
        text: "name: bench\nworkload: workloads/deepseek-v3.yaml\ntemplate: topologies/h800-2048.yaml\nreference: H100\ncaps: { scale_out: [\"100 Gb/s per direction\"] }\n".into(),
        dir: Some(Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()),
    };
    let fixture = read(Path::new("tests/fixtures/export-small.yaml")).unwrap();
    for (name, src, samples) in [
        ("small_fixture", fixture, 10),
        ("deepseek_v3_nic_cap", deepseek, 10),
    ] {
        let spec: ExportSpec = parse_doc(&src, &[]).unwrap();
        let e = export::prepare(&spec, &src, None, &read).unwrap();
        let mut g = c.benchmark_group(format!("export_{name}"));
        g.sample_size(samples);
        g.throughput(Throughput::Elements(e.points.len() as u64));
        g.bench_function("points_1_core", |b| {
            b.iter(|| pool.install(|| export::run(&e, &cal, &|_, _| {}).points.len()))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
