//! Speed of the flow-level network: the max-min solver on DeepSeek-V3's EP64 dispatch
//! (2,048-GPU multi-plane fat-tree), and one all-to-all over 512 ranks on a single
//! congestion-aware switch (the case ASTRA-sim's analytical backend takes 437 s and 13.2 GB for).

use criterion::{criterion_group, criterion_main, Criterion};
use trainsim::config::{parse_doc, Source};
use trainsim::net::collective::{Algorithm, Collectives, Op};
use trainsim::net::MoeRoute;
use trainsim::pipeline::DEFAULT_TOPOLOGY;

const SWITCH_512: &str = r#"
name: switch-512
gpu: H100
nodes: 1
gpus_per_node: 512
scale_up: { kind: nvswitch, bandwidth: "900 GB/s bidirectional", latency: "1 us" }
pcie: { bandwidth: "64 GB/s per direction", latency: "1 us" }
scale_out:
  nics_per_node: 0
  fabric: { kind: fat_tree, layers: 2, planes: 1, switch_radix: 64, hop_latency: "0.5 us" }
"#;

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|k| k / 1024.0)
        .unwrap_or(f64::NAN)
}

fn bench(c: &mut Criterion) {
    let cal = trainsim::builtin::calibration();
    let cat = trainsim::builtin::catalog();
    let t = Source::embedded(DEFAULT_TOPOLOGY.0, DEFAULT_TOPOLOGY.1);
    let h800 = trainsim::topo::build(&parse_doc(&t, &[]).unwrap(), &cat, "h800").unwrap();
    let s512 = trainsim::topo::build(
        &parse_doc(&Source::embedded("switch-512", SWITCH_512), &[]).unwrap(),
        &cat,
        "switch",
    )
    .unwrap();
    let route = MoeRoute {
        routed: 256,
        topk: 8,
        groups: 8,
        topk_groups: 4,
        sms: 0,
        dispatcher: trainsim::domain::MoeDispatcher::Deepep,
    };
    let ep64: Vec<u32> = (0..64).collect();
    let ranks512: Vec<u32> = (0..512).collect();
    let co = Collectives::new(&h800, &cal);
    let started = std::time::Instant::now();
    let m = co.moe(&ep64, 4096.0, 7392.0, route, true);
    let w = started.elapsed().as_secs_f64();
    eprintln!(
        "EP64 dispatch: {} events in {w:.3} s ({:.2} M events/s), peak RSS {:.0} MiB",
        m.events,
        m.events as f64 / w / 1e6,
        peak_rss_mib()
    );
    let co512 = Collectives::new(&s512, &cal);
    let started = std::time::Instant::now();
    let m = co512.collective(Op::AllToAll, &ranks512, 1e9, Algorithm::Auto);
    let w = started.elapsed().as_secs_f64();
    eprintln!(
        "512-rank all-to-all: {} flows, {} events in {w:.3} s, peak RSS {:.0} MiB",
        512 * 511,
        m.events,
        peak_rss_mib()
    );
    let mut g = c.benchmark_group("net");
    g.sample_size(10);
    g.bench_function("maxmin_ep64_dispatch_h800_2048", |b| {
        b.iter(|| co.moe(&ep64, 4096.0, 7392.0, route, true).time_s)
    });
    g.bench_function("all_to_all_512_ranks_single_switch", |b| {
        b.iter(|| {
            co512
                .collective(Op::AllToAll, &ranks512, 1e9, Algorithm::Auto)
                .time_s
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
