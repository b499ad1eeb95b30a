//! Speed of the analytic engine: one full DeepSeek-V3 scenario (cluster graph of 2,048 GPUs,
//! every phase costed) and the estimate of one step alone.

use criterion::{criterion_group, criterion_main, Criterion};
use trainsim::config::Source;
use trainsim::pipeline::{self, Engine, DEFAULT_TOPOLOGY, DEFAULT_WORKLOAD};

fn bench(c: &mut Criterion) {
    let t = Source::embedded(DEFAULT_TOPOLOGY.0, DEFAULT_TOPOLOGY.1);
    let w = Source::embedded(DEFAULT_WORKLOAD.0, DEFAULT_WORKLOAD.1);
    c.bench_function("deepseek_v3_run_analytic", |b| {
        b.iter(|| {
            pipeline::run(
                &t,
                &w,
                &[],
                Engine::Analytic,
                &trainsim::builtin::calibration(),
            )
            .unwrap()
            .step_time_s
        })
    });
    let (cluster, wl) = pipeline::load(&t, &w, &[]).unwrap();
    let cal = trainsim::builtin::calibration();
    c.bench_function("deepseek_v3_step_estimate", |b| {
        b.iter(|| trainsim::step::analytic::estimate(&wl, &wl.layout, &cluster, &cal).step_time_s)
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
