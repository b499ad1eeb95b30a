//! Speed of the discrete-event engine: one DeepSeek-V3 step on 2,048 H800 (one replica per
//! pipeline stage stands for the symmetric EP/DP groups; `des::scenario_tests` checks it against
//! the full simulation). Prints events, events/s and peak resident memory once.
//!
//! `des_scale`: the same model weak-scaled (batch with the GPUs) to 8,192, 32,768 and 163,840
//! GPUs, contention on, one replica per stage; and `--full` on 2,048 GPUs. Set
//! `TRAINSIM_BENCH_SCALE=0` to skip the group (it takes minutes).

use criterion::{criterion_group, criterion_main, Criterion};
use trainsim::config::Source;
use trainsim::pipeline::{self, DEFAULT_TOPOLOGY, DEFAULT_WORKLOAD};

fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn bench(c: &mut Criterion) {
    let t = Source::embedded(DEFAULT_TOPOLOGY.0, DEFAULT_TOPOLOGY.1);
    let w = Source::embedded(DEFAULT_WORKLOAD.0, DEFAULT_WORKLOAD.1);
    let (cluster, wl) = pipeline::load(&t, &w, &[]).unwrap();
    let cal = trainsim::builtin::calibration();
    let started = std::time::Instant::now();
    let e = trainsim::step::des::estimate(&wl, &wl.layout, &cluster, &cal, false);
    let wall = started.elapsed().as_secs_f64();
    eprintln!(
        "des step: {:.3} s simulated, {} events in {:.3} s wall = {:.2} M events/s, peak RSS {:.0} MiB",
        e.step_time_s,
        e.events,
        wall,
        e.events as f64 / wall / 1e6,
        peak_rss_mib().unwrap_or(f64::NAN)
    );
    let mut g = c.benchmark_group("des");
    g.sample_size(20);
    g.bench_function("deepseek_v3_step_2048_gpus", |b| {
        b.iter(|| trainsim::step::des::estimate(&wl, &wl.layout, &cluster, &cal, false).step_time_s)
    });
    g.finish();
    if std::env::var("TRAINSIM_BENCH_SCALE").as_deref() == Ok("0") {
        return;
    }
    let mut g = c.benchmark_group("des_scale");
    g.sample_size(10);
    for nodes in [1024u32, 4096, 20480] {
        let sets: Vec<trainsim::config::Override> = [
            format!("topology.nodes={nodes}"),
            "topology.scale_out.fabric.switch_radix=256".into(),
            format!(
                "workload.training.global_batch={}",
                15360 * nodes as u64 / 256
            ),
            "workload.training.phases=[{name: p, tokens: 1T}]".into(),
        ]
        .iter()
        .map(|s| trainsim::config::Override::parse(s).unwrap())
        .collect();
        let (cluster, wl) = pipeline::load(&t, &w, &sets).unwrap();
        g.bench_function(format!("deepseek_v3_step_{}_gpus", nodes * 8), |b| {
            b.iter(|| {
                trainsim::step::des::estimate(&wl, &wl.layout, &cluster, &cal, false).step_time_s
            })
        });
    }
    g.bench_function("deepseek_v3_step_2048_gpus_full", |b| {
        b.iter(|| trainsim::step::des::estimate(&wl, &wl.layout, &cluster, &cal, true).step_time_s)
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
