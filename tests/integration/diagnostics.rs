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

// Robustness: each of these once panicked, hung, aborted, lied or wrote a null summary.
const SMALL: [&str; 4] = [
    "--topology",
    "topologies/h800-16.yaml",
    "--workload",
    "workloads/dense/mcore-h100-1.7b.yaml",
];
case!(
    global_batch_of_zero,
    [
        SMALL[0],
        SMALL[1],
        SMALL[2],
        SMALL[3],
        "--engine",
        "analytic",
        "--set",
        "workload.training.global_batch=0"
    ]
);
case!(
    sequence_of_zero_tokens,
    [
        SMALL[0],
        SMALL[1],
        SMALL[2],
        SMALL[3],
        "--set",
        "workload.training.seq_len=0"
    ]
);
case!(
    nic_of_one_bit_per_second,
    [
        "--set",
        "topology.scale_out.nic_bandwidth=1 b/s per direction"
    ]
);
case!(
    nvlink_of_1e300_gb_per_second,
    [
        "--set",
        "topology.scale_up.bandwidth=1e300 GB/s bidirectional"
    ]
);
case!(
    bandwidth_of_1e_minus_300,
    [
        "--set",
        "topology.scale_up.bandwidth=1e-300 GB/s bidirectional"
    ]
);
case!(
    latency_of_1e7_seconds,
    ["--set", "topology.scale_up.latency=1e7 s"]
);
case!(
    a_step_past_the_horizon,
    [
        "--set",
        "topology.scale_out.nic_bandwidth=1 Mb/s per direction",
        "--set",
        "topology.scale_up.bandwidth=1 Mb/s per direction"
    ]
);
case!(pue_below_one, ["--set", "workload.pricing.pue=-1"]);
case!(pue_not_a_number, ["--set", "workload.pricing.pue=.nan"]);
case!(
    price_past_the_range,
    ["--set", "workload.pricing.gpu_hour=$1e30"]
);
case!(
    layers_past_the_limit,
    [
        "--set",
        "workload.model.num_hidden_layers=1000000000000000000"
    ]
);
case!(
    ten_thousand_layers_fail_the_memory_floor_before_any_task,
    ["--set", "workload.model.num_hidden_layers=10000"]
);
case!(
    communication_sms_leave_compute_none,
    [
        "--workload",
        "workloads/dense/dgxc-h100-gpt3-175b.yaml",
        "--topology",
        "topologies/h100-64.yaml",
        "--set",
        "workload.parallelism.comm_sms=120"
    ]
);
case!(
    too_many_micro_batches_for_the_des,
    [
        SMALL[0],
        SMALL[1],
        SMALL[2],
        SMALL[3],
        "--set",
        "workload.training.global_batch=100000000"
    ]
);
case!(
    routing_alpha_below_the_limit,
    [
        "--set",
        "workload.routing.distribution=dirichlet",
        "--set",
        "workload.routing.alpha=1e-30"
    ]
);
case!(
    lists_nested_past_the_limit,
    ["--topology", "tests/bad/deep-nesting.yaml"]
);
case!(an_alias_bomb, ["--topology", "tests/bad/alias-bomb.yaml"]);
case!(
    bytes_that_are_not_utf8,
    ["--topology", "tests/bad/invalid-utf8.yaml"]
);
case!(
    a_key_given_twice,
    ["--topology", "tests/bad/duplicate-key.yaml"]
);
case!(an_endless_input, ["--topology", "/dev/zero"]);
case!(
    nccl_channels_of_zero,
    ["--calibration", "tests/bad/calibration-no-channels.yaml"]
);
case!(a_type_in_words, ["--set", "workload.parallelism.pp=x"]);
case!(
    a_mapping_where_a_number_is,
    ["--set", "workload.parallelism=7"]
);
case!(
    a_bad_set_value_is_blamed_on_the_set,
    ["--set", "workload.parallelism.ep=48"]
);
case!(
    collective_topk_of_zero,
    ["collective", "--op", "moe-dispatch", "--topk", "0"]
);
case!(
    collective_topk_past_the_experts,
    ["collective", "--op", "moe-dispatch", "--topk", "300"]
);
case!(
    collective_no_experts,
    ["collective", "--op", "moe-dispatch", "--experts", "0"]
);
case!(
    collective_topk_groups_past_the_groups,
    ["collective", "--op", "moe-dispatch", "--topk-groups", "9"]
);
case!(
    collective_nvls_without_in_switch_reduction,
    [
        "collective",
        "--op",
        "all-reduce",
        "--algo",
        "nvls",
        "--topology",
        "topologies/a100-64.yaml"
    ]
);
case!(
    collective_size_past_the_range,
    ["collective", "--op", "all-reduce", "--size", "100000PB"]
);
