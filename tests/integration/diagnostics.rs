//! Bad input: every case exits with code 2, writes nothing, and says file, path, found, expected.
//! The messages are snapshot-tested (tests/integration/snapshots).

use crate::{fresh_dir, trainsim};

fn bad(name: &str, args: &[&str]) -> String {
    let out = fresh_dir(&format!("bad-{name}"));
    let out_s = out.to_str().unwrap();
    let mut all = if args.first() == Some(&"collective") {
        vec![]
    } else {
        vec!["run", "--out", out_s]
    };
    all.extend_from_slice(args);
    let o = trainsim(&all);
    assert_eq!(
        o.code, 2,
        "{name}: exit code {} with stderr:\n{}",
        o.code, o.stderr
    );
    assert!(
        o.stdout.is_empty(),
        "{name}: printed to stdout: {}",
        o.stdout
    );
    assert!(
        !out.join("summary.json").exists(),
        "{name}: wrote a summary despite the error"
    );
    assert!(
        !o.stderr.contains("panicked"),
        "{name}: panicked:\n{}",
        o.stderr
    );
    // Drop the progress line so snapshots hold the diagnostic alone.
    o.stderr
        .lines()
        .filter(|l| !l.starts_with("trainsim: "))
        .collect::<Vec<_>>()
        .join("\n")
}

macro_rules! case {
    ($name:ident, [$($arg:expr),* $(,)?]) => {
        #[test]
        fn $name() {
            insta::assert_snapshot!(bad(stringify!($name), &[$($arg),*]));
        }
    };
}

case!(malformed_yaml, ["--topology", "tests/bad/malformed.yaml"]);
case!(unknown_key, ["--topology", "tests/bad/unknown-key.yaml"]);
case!(
    bare_number_where_a_unit_is_needed,
    ["--topology", "tests/bad/bare-number.yaml"]
);
case!(
    wrong_unit,
    ["--set", "topology.scale_up.bandwidth=400 GB bidirectional"]
);
case!(
    bandwidth_without_direction,
    ["--set", "topology.scale_out.nic_bandwidth=400 Gb/s"]
);
case!(unknown_chip, ["--set", "topology.gpu=H900"]);
case!(
    layout_does_not_multiply_to_gpus,
    ["--set", "workload.parallelism.dp=100"]
);
case!(
    ep_does_not_divide_experts,
    ["--set", "workload.parallelism.ep=48"]
);
case!(
    ep_does_not_divide_stage_gpus,
    ["--set", "workload.parallelism.ep=256"]
);
case!(
    batch_not_divisible_into_micro_batches,
    ["--set", "workload.training.global_batch=15000"]
);
case!(unknown_set_path, ["--set", "workload.parallelism.epp=32"]);
case!(set_without_document, ["--set", "parallelism.ep=32"]);
case!(fp8_on_a_chip_without_fp8, ["--set", "topology.gpu=A100"]);
case!(
    unknown_fp8_scaling,
    [
        "--set",
        "workload.training.precision.fp8_scaling=per_tensor"
    ]
);
case!(
    fp8_master_copy,
    ["--set", "workload.training.precision.master=fp8"]
);
case!(
    dualpipe_needs_an_even_micro_batch_count,
    ["--set", "workload.training.global_batch=15488"]
);
case!(
    unknown_schedule,
    ["--set", "workload.parallelism.schedule=2f2b"]
);
case!(
    missing_hf_config,
    [
        "--topology",
        "topologies/h800-16.yaml",
        "--workload",
        "tests/bad/missing-hf-config.yaml"
    ]
);
case!(
    missing_file,
    ["--workload", "workloads/no-such-workload.yaml"]
);
case!(
    radix_too_small_for_the_cluster,
    ["--set", "topology.scale_out.fabric.switch_radix=16"]
);
case!(memory_exceeds_hbm, ["--set", "workload.parallelism.ep=8"]);
case!(
    routing_alpha_must_be_positive,
    [
        "--set",
        "workload.routing.distribution=dirichlet",
        "--set",
        "workload.routing.alpha=0"
    ]
);
case!(
    collective_with_more_ranks_than_gpus,
    [
        "collective",
        "--topology",
        "topologies/h800-16.yaml",
        "--op",
        "all-reduce",
        "--ranks",
        "64"
    ]
);
case!(
    collective_size_without_a_size_unit,
    ["collective", "--op", "all-gather", "--size", "1 GB/s"]
);
case!(
    collective_sweep_backwards,
    ["collective", "--op", "all-gather", "--sizes", "8GiB..1KiB"]
);
