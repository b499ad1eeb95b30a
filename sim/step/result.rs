//! The result of one simulated step, whichever engine produced it.

use crate::workload::taskgraph::{SegDetail, Task};
use serde::Serialize;
use std::collections::BTreeMap;

/// Seconds of one pass through one chunk for one micro-batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChunkCost {
    /// Blocks `[first, last)`.
    pub blocks: (u64, u64),
    pub extras: String,
    pub fwd: f64,
    pub bwd: f64,
    pub wgrad: f64,
    /// Attention-core time (fwd + bwd), which context-parallel exchange can hide behind.
    pub attention: f64,
    /// Communication by kind (fwd + bwd).
    pub comm: BTreeMap<String, f64>,
    /// Of that, what runs beside a compute segment and fits in it (tensor-parallel
    /// userbuffers overlap), by kind; context-parallel hiding is priced from `attention`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub hidden: BTreeMap<String, f64>,
    pub kernels: usize,
    /// Of `comm`, the forward pass's (DualPipe hides it behind the paired backward's compute,
    /// and the backward's behind the paired forward's).
    #[serde(skip)]
    pub comm_fwd: f64,
}

impl ChunkCost {
    pub fn compute(&self) -> f64 {
        self.fwd + self.bwd + self.wgrad
    }
    pub fn comm_total(&self) -> f64 {
        self.comm.values().sum()
    }
    pub fn add(&mut self, o: &ChunkCost) {
        self.fwd += o.fwd;
        self.bwd += o.bwd;
        self.wgrad += o.wgrad;
        self.attention += o.attention;
        self.kernels += o.kernels;
        self.comm_fwd += o.comm_fwd;
        // Look keys up before cloning them: most adds find the kind already there.
        for (into, from) in [(&mut self.comm, &o.comm), (&mut self.hidden, &o.hidden)] {
            for (k, v) in from {
                match into.get_mut(k) {
                    Some(x) => *x += v,
                    None => {
                        into.insert(k.clone(), 0.0 + v);
                    }
                }
            }
        }
    }
}

/// Where the step time goes, in seconds per step on the slowest pipeline rank.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Breakdown {
    pub compute: f64,
    pub forward: f64,
    pub backward: f64,
    pub weight_grad: f64,
    pub exposed_comm: f64,
    pub exposed_comm_by_kind: BTreeMap<String, f64>,
    pub bubble: f64,
    pub optimizer: f64,
    /// Busy time of each stream (the union of its tasks), by stream name: the discrete-event
    /// engine's timeline only.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub stream_busy: BTreeMap<String, f64>,
}

/// Peak memory per GPU, bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Memory {
    pub params: f64,
    pub weights: f64,
    pub grads: f64,
    pub optimizer: f64,
    pub activations: f64,
    pub total: f64,
    pub capacity: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
/// What either engine says of one step: its time, where the time went, peak memory.
pub struct StepResult {
    pub step_time_s: f64,
    pub breakdown: Breakdown,
    pub memory: Memory,
    /// Shared with the staging that priced them (a layout search prices many layouts on one).
    pub chunks: std::sync::Arc<Vec<ChunkCost>>,
    pub bottleneck_rank: u64,
    pub kernels_per_step: u64,
    /// Events the discrete-event engine processed (0 for the analytic engine).
    pub events: u64,
    /// The step passed the discrete-event engine's horizon (about 107 days of simulated time):
    /// its figures mean nothing, and a run refuses it.
    #[serde(skip)]
    pub beyond_horizon: bool,
}

/// One task of a simulated step, with when it ran.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimedTask {
    pub task: Task,
    pub start_ps: u64,
    pub end_ps: u64,
}

/// The discrete-event engine's timeline of one step: every task with its times, what each
/// segment is, and the pipeline sends with their receivers. For traces and reports.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    pub gpus: u32,
    /// Simulated GPUs per pipeline stage (GPU `g` is stage `g / replicas`).
    pub replicas: u32,
    /// The GPU the breakdown describes.
    pub bottleneck_gpu: u32,
    pub makespan_ps: u64,
    pub tasks: Vec<TimedTask>,
    /// (send task, the task on another GPU that waits for it), indices into `tasks`.
    pub flows: Vec<(u32, u32)>,
    /// Indexed by a task's `label.detail`.
    pub details: Vec<SegDetail>,
    /// Which communication kinds (indexed by `CommKind`) cross nodes through the GPU's NIC.
    pub nic: [bool; 5],
    /// One GPU's NIC and NVLink bandwidth, per direction.
    pub nic_bytes_per_s: f64,
    pub nvlink_bytes_per_s: f64,
    /// The links the details' transfers load, by link id.
    pub links: BTreeMap<u32, LinkInfo>,
}

/// One directed link of the cluster, for reports.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkInfo {
    /// NVLink, PCIe, NIC–leaf or leaf–spine.
    pub class: &'static str,
    /// "GPU 0 → NVSwitch 0", "leaf 0.1 → spine 0.3", ...
    pub name: String,
    pub bytes_per_s: f64,
}
