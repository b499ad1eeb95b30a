//! Speed of the goodput model on DeepSeek-V3's 2,048 GPUs: the closed form of one phase, and a
//! Monte Carlo of the whole run (every simulated phase) at 1,000 trials.

use criterion::{criterion_group, criterion_main, Criterion};
use trainsim::config::Source;
use trainsim::cost::goodput::{self, Inputs, Params};
use trainsim::pipeline::{self, DEFAULT_TOPOLOGY, DEFAULT_WORKLOAD};

fn bench(c: &mut Criterion) {
    let t = Source::embedded(DEFAULT_TOPOLOGY.0, DEFAULT_TOPOLOGY.1);
    let w = Source::embedded(DEFAULT_WORKLOAD.0, DEFAULT_WORKLOAD.1);
    let (cluster, wl) = pipeline::load(&t, &w, &[]).unwrap();
    let inp = Inputs::new(&wl, u64::from(cluster.gpus_per_node));
    let ideal = 54.7 * 86400.0;
    c.bench_function("goodput_closed_form_phase", |b| {
        b.iter(|| goodput::expected(&inp, "pre-training", ideal, Params::new(&inp, 2048)).wall_s)
    });
    let phases = [
        (ideal, Params::new(&inp, 2048)),
        (0.5 * 86400.0, Params::new(&inp, 2048)),
        (1.3 * 86400.0, Params::new(&inp, 2048)),
    ];
    let mut g = c.benchmark_group("goodput_monte_carlo");
    g.sample_size(10);
    g.bench_function("deepseek_v3_1000_trials", |b| {
        b.iter(|| {
            goodput::monte_carlo(&inp.spec, &phases, 5000.0, 2.0, 7, 1000)
                .days
                .p50
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
