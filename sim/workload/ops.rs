//! One micro-batch of one pipeline chunk, expanded into kernels and communication.
//!
//! A chunk is a run of consecutive blocks (plus the embedding on the first chunk and the output
//! head and MTP modules on the last). Each pass lists its kernels: forward, backward-for-input
//! (with any recomputation) and backward-for-weights, as DeepSeek-V3's trace separates them,
//! and the communication each pass issues.

use crate::domain::{Dtype, LossKernel, Precision, Recompute, Schedule};
use crate::hw::{AttentionShape, Calibration, GemmShape, KernelShape};
use crate::net::{CommOp, MoeRoute, Placement};
use crate::workload::layout::Layout;
use crate::workload::model::{Attention, LayerKind, Linear, Model, Part};

/// Which traffic class a communication belongs to, for the exposed-communication breakdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CommKind {
    Ep,
    Tp,
    Cp,
    Pp,
    Dp,
}

impl CommKind {
    /// Every kind, in the order of its index.
    pub const ALL: [CommKind; 5] = [
        CommKind::Ep,
        CommKind::Tp,
        CommKind::Cp,
        CommKind::Pp,
        CommKind::Dp,
    ];

    /// Its name in breakdowns and reports.
    pub fn name(self) -> &'static str {
        match self {
            CommKind::Ep => "ep",
            CommKind::Tp => "tp",
            CommKind::Cp => "cp",
            CommKind::Pp => "pp",
            CommKind::Dp => "dp",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Kernel {
    pub name: String,
    pub shape: KernelShape,
    /// SMs left to a communication kernel running beside this one (`network.userbuffers_sms`).
    pub sm_margin: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Comm {
    pub kind: CommKind,
    pub name: String,
    pub op: CommOp,
}

/// The work of one micro-batch through one chunk.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChunkWork {
    pub fwd: Vec<Kernel>,
    pub bwd: Vec<Kernel>,
    pub wgrad: Vec<Kernel>,
    pub comm_fwd: Vec<Comm>,
    pub comm_bwd: Vec<Comm>,
}

impl ChunkWork {
    pub fn extend(&mut self, o: ChunkWork) {
        self.fwd.extend(o.fwd);
        self.bwd.extend(o.bwd);
        self.wgrad.extend(o.wgrad);
        self.comm_fwd.extend(o.comm_fwd);
        self.comm_bwd.extend(o.comm_bwd);
    }
}

/// One step of a pass through a block: a run of kernels, or a communication.
#[derive(Debug, Clone, PartialEq)]
pub enum Seg {
    Compute(Vec<Kernel>),
    /// `parallel`: runs alongside the preceding compute segment (context-parallel ring) rather
    /// than after it; the next segment waits for both.
    Comm {
        comm: Comm,
        parallel: bool,
    },
}

/// The passes of one block (or of the embedding / head), each an ordered list of segments.
/// MoE blocks split as DeepSeek-V3 does: attention, dispatch, experts, combine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BlockWork {
    pub fwd: Vec<Seg>,
    pub bwd: Vec<Seg>,
    pub wgrad: Vec<Seg>,
}

impl BlockWork {
    /// All kernels and communications, pass by pass, for closed-form pricing.
    pub fn flatten(&self) -> ChunkWork {
        let mut w = ChunkWork::default();
        let split = |segs: &[Seg], ks: &mut Vec<Kernel>, cs: &mut Vec<Comm>| {
            for s in segs {
                match s {
                    Seg::Compute(k) => ks.extend(k.iter().cloned()),
                    Seg::Comm { comm, .. } => cs.push(comm.clone()),
                }
            }
        };
        split(&self.fwd, &mut w.fwd, &mut w.comm_fwd);
        split(&self.bwd, &mut w.bwd, &mut w.comm_bwd);
        let mut none = Vec::new();
        split(&self.wgrad, &mut w.wgrad, &mut none);
        w.comm_bwd.extend(none);
        w
    }
}

/// What a chunk holds besides its transformer blocks: the embedding, MTP modules (their
/// norms, projection and block), and output heads with their loss (the main one first, then
/// one per MTP depth: Megatron computes every depth's logits where the loss is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Extras {
    pub embedding: bool,
    pub mtp: u64,
    pub heads: u64,
}

/// Megatron's vocabulary-parallel cross entropy (megatron/core/tensor_parallel/cross_entropy.py,
/// `VocabParallelCrossEntropy` / `_VocabParallelCrossEntropy`), one eager PyTorch kernel per
/// step, bytes per BF16 logit of this rank's vocabulary shard. Forward: `.float()` (read 2,
/// write 4), `max` (read 4), in-place `-= logits_max` (4 + 4), in-place `exp` (4 + 4),
/// `sum` (read 4), in-place `div_` by the sum, the softmax saved for backward (4 + 4): 38 B.
/// The target-logit gather and the loss are per token. Backward: the target's `-= 1` is per
/// token; `mul_` by the loss gradient (4 + 4), then `.float()`'s backward casts the FP32
/// gradient to the head's BF16 (read 4, write 2): 14 B. 52 B per logit in all.
const CROSS_ENTROPY_FWD: [(&str, f64); 6] = [
    ("to_fp32", 6.0),
    ("max", 4.0),
    ("sub_max", 8.0),
    ("exp", 8.0),
    ("sum", 4.0),
    ("div_sum", 8.0),
];
const CROSS_ENTROPY_BWD: [(&str, f64); 2] = [("mul_grad", 8.0), ("grad_to_bf16", 6.0)];

/// A fused cross entropy (Liger's, Apex's `xentropy`, TE's): one forward kernel reads the BF16
/// logits for the online max and sum (2 B) and again to write the BF16 logit gradient
/// (2 + 2 B), so backward only scales that gradient by the loss gradient in place (2 + 2 B).
/// A loss's kernels: (name, bytes per logit).
type LossBytes = &'static [(&'static str, f64)];
const FUSED_CROSS_ENTROPY_FWD: [(&str, f64); 1] = [("fused_fwd", 6.0)];
const FUSED_CROSS_ENTROPY_BWD: [(&str, f64); 1] = [("scale_grad", 4.0)];

/// Splits off the kernels `{linear}.{pass}` of the linears split `tp_split` ways: (those, rest).
fn split(
    ks: Vec<Kernel>,
    lins: &[Linear],
    tp_split: Option<bool>,
    pass: &str,
) -> (Vec<Kernel>, Vec<Kernel>) {
    let names: Vec<String> = lins
        .iter()
        .filter(|l| l.tp_split == tp_split)
        .map(|l| format!("{}.{pass}", l.name))
        .collect();
    ks.into_iter().partition(|k| names.contains(&k.name))
}

/// Expands micro-batches into kernels for one model, layout and precision.
#[derive(Debug, Clone, Copy)]
pub struct Expander<'a> {
    /// The calibration's chosen shares: the SMs userbuffers take (`network.userbuffers_sms`),
    /// the bytes of an elementwise backward (`memory.elementwise_backward_ratio`).
    pub cal: &'a Calibration,
    pub model: &'a Model,
    pub layout: &'a Layout,
    pub precision: &'a Precision,
    pub recompute: Recompute,
    pub loss: LossKernel,
    pub gpus_per_node: u64,
}

impl Kernel {
    /// A memory-bound kernel moving `bytes`.
    pub fn memory(name: &str, bytes: f64) -> Kernel {
        Kernel {
            name: name.to_string(),
            shape: KernelShape::Memory { bytes },
            sm_margin: 0,
        }
    }
}

/// Communication the next compute waits for.
fn block(c: Comm) -> Seg {
    Seg::Comm {
        comm: c,
        parallel: false,
    }
}

/// Communication running beside the compute before it.
fn beside(c: Comm) -> Seg {
    Seg::Comm {
        comm: c,
        parallel: true,
    }
}

impl<'a> Expander<'a> {
    fn tokens(&self) -> u64 {
        self.layout.tokens_per_microbatch()
    }

    /// Tokens a GPU routes to experts: its sequence-parallel shard. The expert-parallel group
    /// spans the tensor-parallel ranks (expert tensor parallelism 1, as the placement and the
    /// expert parameters have it), so each rank dispatches its own 1/tp of the tokens to
    /// whole experts.
    fn moe_tokens(&self) -> u64 {
        self.tokens() / self.layout.tp
    }

    /// GEMM data type of a linear: routers and the head stay BF16 under FP8 training
    /// (DeepSeek-V3 §3.3.1).
    fn dtype(&self, l: &Linear) -> Dtype {
        match (l.part, self.precision.gemm) {
            (Part::Router | Part::Head, Dtype::Fp8) => Dtype::Bf16,
            (_, d) => d,
        }
    }

    /// Per-rank (n, k) of a linear after tensor parallelism.
    fn local_nk(&self, l: &Linear) -> (u64, u64) {
        let tp = self.layout.tp;
        match l.tp_split {
            Some(true) => (l.n / tp, l.k),
            Some(false) => (l.n, l.k / tp),
            None => (l.n, l.k),
        }
    }

    fn cast_bytes(&self, elems: f64) -> f64 {
        if self.precision.gemm == Dtype::Fp8 {
            3.0 * elems
        } else {
            0.0
        }
    }

    /// Forward, dgrad and wgrad GEMMs of a linear.
    fn gemms(&self, l: &Linear, w: &mut ChunkWork, recompute_fwd: bool) {
        let t = self.tokens();
        let dtype = self.dtype(l);
        let (n, k) = self.local_nk(l);
        let (m, groups) = if l.part == Part::RoutedExperts {
            let moe = self.model.moe.expect("routed experts imply MoE");
            let local = moe.routed / self.layout.ep;
            let ep = self.layout.ep;
            let t = self.moe_tokens();
            let m = match self.layout.moe_dispatch.capacity {
                // Padded to capacity: from each of the group's GPUs, ⌈t·topk/E · factor⌉ rows.
                Some(c) if self.layout.moe_dispatch.pad_to_capacity => {
                    ep * ((t * moe.topk) as f64 / moe.routed as f64 * c.0).ceil() as u64
                }
                _ => (t * moe.topk * ep).div_ceil(moe.routed),
            };
            (m, local)
        } else if l.part == Part::Router {
            // The router scores the rank's own sequence-parallel shard.
            (self.moe_tokens(), 1)
        } else if l.name == "kv_b_proj" && self.layout.cp > 1 {
            // Context parallelism with MLA passes the compressed latent, so every rank
            // up-projects the latents of the whole sequence (and back-propagates through them).
            (t * self.layout.cp, 1)
        } else {
            (t, 1)
        };
        let g = |m, n, k, wgrad| {
            KernelShape::Gemm(GemmShape {
                m,
                n,
                k,
                groups,
                dtype,
                scaling: self.precision.fp8_scaling,
                wgrad,
            })
        };
        w.fwd.push(Kernel {
            name: format!("{}.fwd", l.name),
            shape: g(m, n, k, false),
            sm_margin: 0,
        });
        if recompute_fwd {
            w.bwd.push(Kernel {
                name: format!("{}.recompute", l.name),
                shape: g(m, n, k, false),
                sm_margin: 0,
            });
        }
        w.bwd.push(Kernel {
            name: format!("{}.dgrad", l.name),
            shape: g(m, k, n, false),
            sm_margin: 0,
        });
        w.wgrad.push(Kernel {
            name: format!("{}.wgrad", l.name),
            shape: g(n, k, m, true),
            sm_margin: 0,
        });
        if dtype == Dtype::Fp8 {
            // FP8 backward quantizes the output gradient per token for Dgrad, and per channel
            // with a transpose (plus a transpose of the cached FP8 input) for Wgrad.
            let rows = (m * groups) as f64;
            w.bwd.push(Kernel::memory(
                &format!("{}.grad_cast", l.name),
                3.0 * rows * n as f64,
            ));
            w.wgrad.push(Kernel::memory(
                &format!("{}.wgrad_cast_transpose", l.name),
                3.0 * rows * n as f64 + 2.0 * rows * k as f64,
            ));
        }
    }

    /// Memory-bound kernels: forward bytes, with backward moving `memory.elementwise_backward_ratio`
    /// times as many.
    fn elementwise(&self, name: &str, fwd_bytes: f64, w: &mut ChunkWork, recompute: bool) {
        if fwd_bytes <= 0.0 {
            return;
        }
        w.fwd
            .push(Kernel::memory(&format!("{name}.fwd"), fwd_bytes));
        if recompute {
            w.bwd
                .push(Kernel::memory(&format!("{name}.recompute"), fwd_bytes));
        }
        let ratio = self.cal.memory.elementwise_backward_ratio.value;
        w.bwd
            .push(Kernel::memory(&format!("{name}.bwd"), ratio * fwd_bytes));
    }

    /// A tensor-parallel collective of a block part (`attn` or `mlp`) over its full activation.
    fn tp_comm(&self, name: String, op: fn(f64, Placement) -> CommOp, chunk: bool) -> Comm {
        let t = self.tokens() as f64;
        let bytes = t * self.model.hidden as f64 * 2.0;
        let span = self.layout.tp_span(self.gpus_per_node);
        let op = if self.layout.tp_comm_overlap {
            // Userbuffers' ring exchange, not NCCL: the whole exchange beside its GEMM, or
            // (`chunk`) its one step the GEMM waits for (all-gather) or that is left to send
            // after it (reduce-scatter).
            CommOp::Ring {
                bytes: bytes / self.layout.tp as f64,
                steps: if chunk { 1 } else { self.layout.tp - 1 },
                span,
                nccl: false,
            }
        } else {
            op(bytes, span)
        };
        Comm {
            kind: CommKind::Tp,
            name,
            op,
        }
    }

    /// A part without sequence parallelism: its kernels, its side communication beside them,
    /// then (under tensor parallelism) the blocking all-reduce `allreduce` names.
    fn all_reduced(&self, ks: Vec<Kernel>, side: Vec<Comm>, allreduce: Option<String>) -> Vec<Seg> {
        let mut v = vec![Seg::Compute(ks)];
        v.extend(side.into_iter().map(beside));
        if let Some(name) = allreduce {
            v.push(block(self.tp_comm(
                name,
                |bytes, span| CommOp::AllReduce { bytes, span },
                false,
            )));
        }
        v
    }

    /// Forward segments of one part of a block (`tag` attn or mlp, linears `lins`, kernels `ks`)
    /// with its tensor-parallel collectives; `side` runs beside the part's non-GEMM compute
    /// (the context-parallel ring). `re`: the forward repeated by full recompute.
    ///
    /// Megatron without sequence parallelism all-reduces the part's output; with it, the
    /// column-parallel GEMM's input is all-gathered and the row-parallel GEMM's output
    /// reduce-scattered. Under `--tp-comm-overlap` TE userbuffers pipeline each with its GEMM:
    /// ring-exchange all-gather beside the column GEMM, pipelined reduce-scatter beside the
    /// row GEMM (which gives up `network.userbuffers_sms` SMs), each leaving one chunk exposed.
    fn part_fwd(
        &self,
        tag: &str,
        lins: &[Linear],
        ks: Vec<Kernel>,
        side: Vec<Comm>,
        re: bool,
    ) -> Vec<Seg> {
        let lay = self.layout;
        let sfx = if re { "recompute" } else { "fwd" };
        let nm = |base: &str| {
            if re {
                format!("tp.{tag}_{base}.recompute")
            } else {
                format!("tp.{tag}_{base}")
            }
        };
        let mut v = Vec::new();
        let tp = lins.iter().any(|l| l.tp_split.is_some()) && lay.tp > 1;
        let ag = |c| {
            self.tp_comm(
                nm("allgather"),
                |bytes, span| CommOp::AllGather { bytes, span },
                c,
            )
        };
        let rs = |c| {
            self.tp_comm(
                nm("reducescatter"),
                |bytes, span| CommOp::ReduceScatter { bytes, span },
                c,
            )
        };
        if !tp || !lay.sequence_parallel {
            v = self.all_reduced(ks, side, tp.then(|| nm("allreduce")));
        } else if !lay.tp_comm_overlap {
            v.push(block(ag(false)));
            v.push(Seg::Compute(ks));
            v.extend(side.into_iter().map(beside));
            v.push(block(rs(false)));
        } else {
            let (col, rest) = split(ks, lins, Some(true), sfx);
            let (mut row, rest) = split(rest, lins, Some(false), sfx);
            for k in &mut row {
                k.sm_margin = self.cal.network.userbuffers_sms.value;
            }
            v.push(Seg::Compute(col));
            v.push(beside(ag(false)));
            v.push(block(ag(true)));
            v.push(Seg::Compute(rest));
            v.extend(side.into_iter().map(beside));
            v.push(Seg::Compute(row));
            v.push(beside(rs(false)));
            v.push(block(rs(true)));
        }
        v
    }

    /// Backward segments of one part (input gradients; `wgrad` is the part's weight-gradient
    /// list, from which column-parallel GEMMs may move into the backward).
    ///
    /// With sequence parallelism Megatron all-gathers the row-parallel GEMM's output gradient,
    /// re-gathers the column-parallel GEMM's input for its weight gradient beside the Dgrad GEMM
    /// (`LinearWithGradAccumulationAndAsyncCommunication`, relying on
    /// CUDA_DEVICE_MAX_CONNECTIONS=1), and reduce-scatters the input gradient beside the Wgrad
    /// GEMM, which therefore runs inside the backward, unless the schedule defers weight
    /// gradients (ZB1P, DualPipe), where the reduce-scatter is exposed. Under
    /// `--tp-comm-overlap` the output-gradient all-gather is a ring exchange beside the
    /// row-parallel Dgrad, and the two bulk collectives take `network.userbuffers_sms` SMs from their GEMMs.
    fn part_bwd(
        &self,
        tag: &str,
        lins: &[Linear],
        ks: Vec<Kernel>,
        wgrad: &mut Vec<Kernel>,
        side: Vec<Comm>,
    ) -> Vec<Seg> {
        let lay = self.layout;
        let nm = |base: &str| format!("tp.{tag}_{base}");
        let ag = |name: &str, c| {
            self.tp_comm(nm(name), |bytes, span| CommOp::AllGather { bytes, span }, c)
        };
        let rs = || {
            self.tp_comm(
                nm("reducescatter"),
                |bytes, span| CommOp::ReduceScatter { bytes, span },
                false,
            )
        };
        let mut v = Vec::new();
        let tp = lins.iter().any(|l| l.tp_split.is_some()) && lay.tp > 1;
        if !tp || !lay.sequence_parallel {
            return self.all_reduced(ks, side, tp.then(|| nm("allreduce")));
        }
        let overlap = lay.tp_comm_overlap;
        let margin = if overlap {
            self.cal.network.userbuffers_sms.value
        } else {
            0
        };
        let (mut col_dgrad, rest) = split(ks, lins, Some(true), "dgrad");
        if overlap {
            let (row_dgrad, rest) = split(rest, lins, Some(false), "dgrad");
            v.push(Seg::Compute(row_dgrad));
            v.push(beside(ag("grad_allgather", false)));
            v.push(block(ag("grad_allgather", true)));
            v.push(Seg::Compute(rest));
        } else {
            v.push(block(ag("grad_allgather", false)));
            v.push(Seg::Compute(rest));
        }
        v.extend(side.into_iter().map(beside));
        for k in &mut col_dgrad {
            k.sm_margin = margin;
        }
        v.push(Seg::Compute(col_dgrad));
        v.push(beside(ag("input_allgather", false)));
        let deferred = matches!(
            lay.schedule,
            Schedule::Zb1p | Schedule::Dualpipe | Schedule::Dualpipev
        );
        if deferred {
            v.push(block(rs()));
        } else {
            let (mut col_wgrad, rest) = split(std::mem::take(wgrad), lins, Some(true), "wgrad");
            *wgrad = rest;
            for k in &mut col_wgrad {
                k.sm_margin = margin;
            }
            v.push(Seg::Compute(col_wgrad));
            v.push(beside(rs()));
        }
        v
    }

    /// Orders a block's attention and feed-forward work into segments: per part, the
    /// tensor-parallel layout of [`Self::part_fwd`] / [`Self::part_bwd`]; expert dispatch
    /// before the experts and combine after them; the context-parallel ring beside the
    /// attention; under full recompute, the repeated forward (with its collectives) first in
    /// the backward. `kind` is `None` for the embedding and head, which carry no block collectives.
    fn assemble(
        &self,
        mut attn: ChunkWork,
        mut ffn: ChunkWork,
        kind: Option<LayerKind>,
    ) -> BlockWork {
        let pick = |cs: &[Comm], name: &str| {
            cs.iter()
                .filter(|c| c.name == name)
                .cloned()
                .collect::<Vec<_>>()
        };
        let comm = block;
        let m = self.model;
        let (attn_l, ffn_l) = match kind {
            Some(k) => (m.attention_linears(), m.ffn_linears_of(k)),
            None => (Vec::new(), Vec::new()),
        };
        let all_f: Vec<Comm> = attn.comm_fwd.iter().chain(&ffn.comm_fwd).cloned().collect();
        let all_b: Vec<Comm> = attn.comm_bwd.iter().chain(&ffn.comm_bwd).cloned().collect();
        // Megatron's shared-expert overlap: the shared experts' first GEMM and activation on a
        // side stream beside the dispatch, their second beside the combine; in the backward
        // (autograd keeps each kernel's stream) the second's input gradient beside the combine's
        // and the first's beside the dispatch's. Each all-to-all then runs beside its piece.
        let overlap = self.layout.moe_dispatch.shared_expert_overlap
            && kind == Some(LayerKind::Moe)
            && self.layout.ep > 1;
        let shared = |ks: &mut Vec<Kernel>, first: bool| -> Vec<Kernel> {
            if !overlap {
                return Vec::new();
            }
            let piece = |n: &str| {
                !n.ends_with(".recompute")
                    && if first {
                        n.starts_with("shared.gate_up.") || n.starts_with("shared_swiglu.")
                    } else {
                        n.starts_with("shared.down.")
                    }
            };
            let (taken, rest) = std::mem::take(ks).into_iter().partition(|k| piece(&k.name));
            *ks = rest;
            taken
        };
        let (fc1_f, fc2_f) = (shared(&mut ffn.fwd, true), shared(&mut ffn.fwd, false));
        let (fc1_b, fc2_b) = (shared(&mut ffn.bwd, true), shared(&mut ffn.bwd, false));
        // An all-to-all on the critical path, or beside its shared-expert piece.
        let a2a = |piece: Vec<Kernel>, cs: Vec<Comm>| -> Vec<Seg> {
            if piece.is_empty() {
                return cs.into_iter().map(comm).collect();
            }
            std::iter::once(Seg::Compute(piece))
                .chain(cs.into_iter().map(beside))
                .collect()
        };
        // Forward: attention [∥ cp ring] with its tp collectives, dispatch, experts/mlp with
        // theirs, combine.
        let mut b = BlockWork {
            fwd: self.part_fwd("attn", &attn_l, attn.fwd, pick(&all_f, "cp.kv_ring"), false),
            ..Default::default()
        };
        b.fwd.extend(a2a(fc1_f, pick(&all_f, "moe.dispatch")));
        b.fwd
            .extend(self.part_fwd("mlp", &ffn_l, ffn.fwd, Vec::new(), false));
        b.fwd.extend(a2a(fc2_f, pick(&all_f, "moe.combine")));
        // Backward: the recomputed forward (full recompute's whole layer, or Megatron's `mlp` /
        // `moe` module's feed-forward part, an MoE layer's dispatch and combine included, as
        // its checkpoint re-runs them), combine⁻¹, experts/mlp, dispatch⁻¹, attention
        // [∥ cp ring], each part with its tp collectives.
        if self.recomputes_ffn(kind) {
            let full = self.recompute == Recompute::Full;
            let again = |cs: Vec<Comm>| -> Vec<Seg> {
                cs.into_iter()
                    .map(|c| {
                        comm(Comm {
                            name: format!("{}.recompute", c.name),
                            ..c
                        })
                    })
                    .collect()
            };
            if full {
                let (attn_re, attn_b) = attn
                    .bwd
                    .into_iter()
                    .partition(|k| k.name.ends_with(".recompute"));
                attn.bwd = attn_b;
                b.bwd = self.part_fwd("attn", &attn_l, attn_re, Vec::new(), true);
            }
            let (ffn_re, ffn_b) = ffn
                .bwd
                .into_iter()
                .partition(|k| k.name.ends_with(".recompute"));
            ffn.bwd = ffn_b;
            b.bwd.extend(again(pick(&all_f, "moe.dispatch")));
            b.bwd
                .extend(self.part_fwd("mlp", &ffn_l, ffn_re, Vec::new(), true));
            b.bwd.extend(again(pick(&all_f, "moe.combine")));
        }
        b.bwd.extend(a2a(fc2_b, pick(&all_b, "moe.combine.bwd")));
        b.bwd
            .extend(self.part_bwd("mlp", &ffn_l, ffn.bwd, &mut ffn.wgrad, Vec::new()));
        b.bwd.extend(a2a(fc1_b, pick(&all_b, "moe.dispatch.bwd")));
        b.bwd.extend(self.part_bwd(
            "attn",
            &attn_l,
            attn.bwd,
            &mut attn.wgrad,
            pick(&all_b, "cp.kv_dkv_ring"),
        ));
        b.wgrad.push(Seg::Compute(ffn.wgrad));
        b.wgrad.push(Seg::Compute(attn.wgrad));
        for segs in [&mut b.fwd, &mut b.bwd, &mut b.wgrad] {
            segs.retain(|s| !matches!(s, Seg::Compute(k) if k.is_empty()));
        }
        b
    }

    /// Dropout on a residual branch over `elems` elements, fused into Megatron's
    /// bias-dropout-add: forward adds the 1-byte mask it writes for backward (the add itself is
    /// the `residual` kernel); backward reads the gradient and the mask and writes the masked
    /// gradient (2 + 1 + 2 B). Full recompute regenerates the mask.
    fn hidden_dropout(&self, name: &str, elems: f64, w: &mut ChunkWork) {
        if self.model.hidden_dropout <= 0.0 {
            return;
        }
        w.fwd.push(Kernel::memory(&format!("{name}.fwd"), elems));
        if self.recompute == Recompute::Full {
            w.bwd
                .push(Kernel::memory(&format!("{name}.recompute"), elems));
        }
        w.bwd
            .push(Kernel::memory(&format!("{name}.bwd"), 5.0 * elems));
    }

    /// Bias gradients of `lins`: each a reduction reading the BF16 output gradient once
    /// (Megatron's `grad_output.sum(dim=0)`). The forward bias adds are free: fused into the
    /// GEMM epilogue (column-parallel), bias-GELU, or bias-dropout-add (row-parallel). A
    /// row-parallel output has 1/tp of the tokens under sequence parallelism.
    fn bias_grads(&self, name: &str, on: bool, lins: &[Linear], w: &mut ChunkWork) {
        if !on {
            return;
        }
        let t = self.tokens() as f64;
        let ts = if self.layout.sequence_parallel {
            t / self.layout.tp as f64
        } else {
            t
        };
        let bytes: f64 = lins
            .iter()
            .filter(|l| !matches!(l.part, Part::Router | Part::RoutedExperts))
            .map(|l| {
                let (n, _) = self.local_nk(l);
                let rows = if l.tp_split == Some(false) { ts } else { t };
                2.0 * n as f64 * rows
            })
            .sum();
        w.bwd.push(Kernel::memory(name, bytes));
    }

    /// Whether the backward re-runs a block's whole feed-forward part (full recompute, or
    /// Megatron's `mlp` module on a dense block and `moe` on an MoE block).
    fn recomputes_ffn(&self, kind: Option<LayerKind>) -> bool {
        let r = self.recompute;
        match kind {
            None => false,
            Some(LayerKind::Moe) if self.model.moe.is_some() => {
                r == Recompute::Full || r.recomputes_moe()
            }
            Some(_) => r == Recompute::Full || r.recomputes_mlp(),
        }
    }

    /// One transformer block.
    pub fn block(&self, kind: LayerKind) -> BlockWork {
        let mut w = ChunkWork::default();
        let m = self.model;
        let lay = self.layout;
        let t = self.tokens() as f64;
        let h = m.hidden as f64;
        let tp = lay.tp as f64;
        let full = self.recompute == Recompute::Full;
        let norms = self.recompute.recomputes_norms();
        let upp = self.recompute.recomputes_up_proj();
        let act = self.recompute.recomputes_act();
        let heads = m.attention.heads() / lay.tp;
        let (dqk, dv) = m.attention.core_dims();
        // Sequence parallelism: norms, residuals (and dropout) see 1/tp of the tokens.
        let ts = if lay.sequence_parallel { t / tp } else { t };

        // Attention.
        self.elementwise("attn_norm", 4.0 * h * ts, &mut w, norms);
        self.elementwise("attn_cast", self.cast_bytes(h * ts), &mut w, full);
        for l in m.attention_linears() {
            let up_proj = matches!(l.name, "q_b_proj" | "kv_b_proj");
            self.gemms(&l, &mut w, full || (upp && up_proj));
        }
        match m.attention {
            Attention::Mla {
                q_lora, kv_lora, ..
            } => {
                let r = (q_lora.unwrap_or(0) + kv_lora) as f64;
                self.elementwise(
                    "mla_latent_norm_cast",
                    4.0 * r * t + self.cast_bytes(r * t),
                    &mut w,
                    upp,
                );
                // RoPE on the rotary part of q and k and the concat with their no-PE parts:
                // each BF16 element of q and of k read once and written once (2 + 2 B, twice).
                self.elementwise(
                    "rope_concat_qk",
                    8.0 * heads as f64 * dqk as f64 * t,
                    &mut w,
                    upp,
                );
            }
            Attention::Gqa {
                kv_heads, head_dim, ..
            } => {
                if m.rotary {
                    let e = (heads as f64 + kv_heads as f64 / tp) * head_dim as f64;
                    self.elementwise("rope", 4.0 * e * t, &mut w, full);
                }
            }
        }
        let seq = lay.seq_len;
        let core = |backward| {
            if lay.cp == 1 {
                KernelShape::Attention(AttentionShape {
                    backward,
                    batch: lay.micro_batch,
                    heads,
                    seq_q: seq,
                    seq_kv: seq,
                    d_qk: dqk,
                    d_v: dv,
                    causal: true,
                    dropout: self.model.attention_dropout > 0.0,
                })
            } else {
                // Load-balanced context parallelism: each rank does 1/cp of the causal work.
                KernelShape::Attention(AttentionShape {
                    backward,
                    batch: lay.micro_batch,
                    heads,
                    seq_q: seq / lay.cp,
                    seq_kv: seq / 2,
                    d_qk: dqk,
                    d_v: dv,
                    causal: false,
                    dropout: self.model.attention_dropout > 0.0,
                })
            }
        };
        w.fwd.push(Kernel {
            name: "attention.core.fwd".into(),
            shape: core(false),
            sm_margin: 0,
        });
        if self.recompute.recomputes_core_attention() {
            w.bwd.push(Kernel {
                name: "attention.core.recompute".into(),
                shape: core(false),
                sm_margin: 0,
            });
        }
        w.bwd.push(Kernel {
            name: "attention.core.bwd".into(),
            shape: core(true),
            sm_margin: 0,
        });
        // Flash-attention backward pre/post-processing: dO·O row sums and the FP32 dQ accumulator.
        w.bwd.push(Kernel::memory(
            "attention.core.bwd_pre_post",
            t * heads as f64 * (dv as f64 * 4.0 + dqk as f64 * 8.0),
        ));
        self.elementwise(
            "attn_out_cast",
            self.cast_bytes(heads as f64 * dv as f64 * t),
            &mut w,
            full,
        );
        // The layer's two residual adds (after attention and after the MLP), priced as one
        // kernel: each reads two BF16 tensors and writes one (6 B per element).
        self.elementwise("residual", 2.0 * 6.0 * h * ts, &mut w, full);
        self.hidden_dropout("attn_dropout", h * ts, &mut w);
        self.bias_grads(
            "attn_bias_grad",
            m.attention_bias,
            &m.attention_linears(),
            &mut w,
        );
        self.elementwise("ffn_norm", 4.0 * h * ts, &mut w, norms);
        self.elementwise("ffn_cast", self.cast_bytes(h * ts), &mut w, full);

        let attn = std::mem::take(&mut w);
        // What the backward re-runs of the feed-forward part: all of it, or (Megatron's
        // `shared_experts`) the shared experts.
        let ffn_re = self.recomputes_ffn(Some(kind));
        let shared_re = ffn_re || self.recompute.recomputes_shared_experts();
        let (full, act) = (ffn_re, act || ffn_re);
        self.hidden_dropout("mlp_dropout", h * ts, &mut w);
        self.bias_grads("mlp_bias_grad", m.mlp_bias, &m.ffn_linears_of(kind), &mut w);
        let gate = if m.gated_ffn { 6.0 } else { 4.0 };
        match (kind, m.moe) {
            (LayerKind::Moe, Some(moe)) => {
                // Rows each expert computes and each GPU sends, against dropless balanced
                // routing (the capacity where inputs are padded to it).
                let pad = lay.moe_dispatch.padded_load();
                let k = moe.topk as f64 * pad;
                let f = moe.expert_ffn as f64;
                // The rank's own tokens (its sequence-parallel shard), to whole experts.
                let tm = self.moe_tokens() as f64;
                // Router scores over the FP32 logits: the gate function reads and writes each
                // (4 + 4 B), the top-k selection reads it again (4 B).
                self.elementwise("router_topk", 12.0 * moe.routed as f64 * tm, &mut w, full);
                self.elementwise("moe_permute", k * h * tm * 4.0, &mut w, full);
                self.elementwise(
                    "experts_swiglu",
                    gate * f * k * tm + self.cast_bytes(f * k * tm),
                    &mut w,
                    act,
                );
                self.elementwise(
                    "moe_unpermute_reduce",
                    (2.0 * k + 2.0) * h * tm,
                    &mut w,
                    full,
                );
                if moe.shared > 0 {
                    let fs = (moe.shared * moe.shared_ffn) as f64 / tp;
                    self.elementwise(
                        "shared_swiglu",
                        gate * fs * t + self.cast_bytes(fs * t),
                        &mut w,
                        act || shared_re,
                    );
                }
                for l in m.ffn_linears_of(kind) {
                    let re = if l.part == Part::SharedExperts {
                        shared_re
                    } else {
                        full
                    };
                    self.gemms(&l, &mut w, re);
                }
                if lay.ep > 1 {
                    let route = MoeRoute {
                        routed: moe.routed,
                        topk: moe.topk,
                        groups: moe.groups,
                        topk_groups: moe.topk_groups,
                        sms: lay.comm_sms,
                        dispatcher: lay.moe_dispatch.dispatcher,
                    };
                    let span = lay.ep_span(self.gpus_per_node);
                    let tokens = self.moe_tokens();
                    let fp8_scales = |d: Dtype| {
                        if d == Dtype::Fp8 {
                            h / 128.0 * 4.0
                        } else {
                            0.0
                        }
                    };
                    let disp = (h * self.precision.dispatch.bytes()
                        + fp8_scales(self.precision.dispatch))
                        * pad;
                    let comb = h * 2.0 * pad;
                    let d = |bytes_per_token| CommOp::MoeDispatch {
                        tokens,
                        bytes_per_token,
                        span,
                        route,
                    };
                    let c = |bytes_per_token| CommOp::MoeCombine {
                        tokens,
                        bytes_per_token,
                        span,
                        route,
                    };
                    let ep = |name: &str, op| Comm {
                        kind: CommKind::Ep,
                        name: name.into(),
                        op,
                    };
                    w.comm_fwd.push(ep("moe.dispatch", d(disp)));
                    w.comm_fwd.push(ep("moe.combine", c(comb)));
                    // Backward of combine is a dispatch of output gradients; of dispatch, a combine.
                    w.comm_bwd.push(ep("moe.combine.bwd", d(disp)));
                    w.comm_bwd.push(ep("moe.dispatch.bwd", c(comb)));
                }
            }
            _ => {
                let f = m.dense_ffn as f64 / tp;
                self.elementwise(
                    "mlp_act",
                    gate * f * t + self.cast_bytes(f * t),
                    &mut w,
                    act,
                );
                for l in m.ffn_linears_of(kind) {
                    self.gemms(&l, &mut w, full);
                }
            }
        }
        if lay.cp > 1 {
            let span = lay.cp_span(self.gpus_per_node);
            // K and V of this rank's tokens (MLA passes the compressed latent and rope key, and
            // pays for it with kv_b up-projections over the whole sequence: see `gemms`).
            let kv_per_token = match m.attention {
                Attention::Mla {
                    kv_lora, qk_rope, ..
                } => (kv_lora + qk_rope) as f64 * 2.0,
                Attention::Gqa {
                    kv_heads, head_dim, ..
                } => 2.0 * (kv_heads as f64 / tp).max(1.0) * head_dim as f64 * 2.0,
            };
            let ring = |factor: f64| CommOp::Ring {
                bytes: factor * t * kv_per_token,
                steps: lay.cp - 1,
                span,
                nccl: true,
            };
            w.comm_fwd.push(Comm {
                kind: CommKind::Cp,
                name: "cp.kv_ring".into(),
                op: ring(1.0),
            });
            w.comm_bwd.push(Comm {
                kind: CommKind::Cp,
                name: "cp.kv_dkv_ring".into(),
                op: ring(2.0),
            });
        }
        let ffn = w;
        self.assemble(attn, ffn, Some(kind))
    }

    /// Embedding, output head and MTP modules, as one block-like unit of compute.
    pub fn extras(&self, e: Extras) -> BlockWork {
        let w = self.extras_work(e);
        let mut b = self.assemble(
            ChunkWork::default(),
            ChunkWork {
                comm_fwd: vec![],
                comm_bwd: vec![],
                ..w.clone()
            },
            None,
        );
        // MTP blocks carry their own expert traffic: keep it, after the compute.
        b.fwd.extend(w.comm_fwd.into_iter().map(block));
        b.bwd.extend(w.comm_bwd.into_iter().map(block));
        b
    }

    fn extras_work(&self, e: Extras) -> ChunkWork {
        let mut w = ChunkWork::default();
        let m = self.model;
        let t = self.tokens() as f64;
        let h = m.hidden as f64;
        let (tp, sp) = (self.layout.tp > 1, self.layout.sequence_parallel);
        let ar = |name: &str| {
            self.tp_comm(
                name.into(),
                |bytes, span| CommOp::AllReduce { bytes, span },
                false,
            )
        };
        if e.embedding {
            w.fwd.push(Kernel::memory("embedding.gather", 4.0 * h * t));
            if m.hidden_dropout > 0.0 {
                // Embedding dropout (unfused): read, write and mask out; backward likewise.
                let ts = if sp { t / self.layout.tp as f64 } else { t };
                w.fwd
                    .push(Kernel::memory("embedding.dropout.fwd", 5.0 * h * ts));
                w.bwd
                    .push(Kernel::memory("embedding.dropout.bwd", 5.0 * h * ts));
            }
            // Each token's BF16 output gradient read (2 B) and added into its FP32 weight-gradient
            // row (read 4 + write 4 B).
            w.wgrad
                .push(Kernel::memory("embedding.wgrad_scatter_add", 10.0 * h * t));
            // The vocabulary-parallel embedding sums its partial lookups: all-reduce, or
            // reduce-scatter into the sequence-parallel region.
            if tp {
                w.comm_fwd.push(if sp {
                    self.tp_comm(
                        "tp.embedding_reducescatter".into(),
                        |bytes, span| CommOp::ReduceScatter { bytes, span },
                        false,
                    )
                } else {
                    ar("tp.embedding_allreduce")
                });
            }
        }
        let head = |w: &mut ChunkWork, name: &str| {
            // The column-parallel head gathers its sequence-parallel input and reduce-scatters
            // its input gradient, or all-reduces that gradient without sequence parallelism;
            // the vocabulary-parallel loss all-reduces three per-token scalars (max logit,
            // target logit, sum of exponentials; Megatron `_VocabParallelCrossEntropy`).
            if tp {
                if sp {
                    w.comm_fwd.push(self.tp_comm(
                        format!("tp.{name}_allgather"),
                        |bytes, span| CommOp::AllGather { bytes, span },
                        false,
                    ));
                    w.comm_bwd.push(self.tp_comm(
                        format!("tp.{name}_reducescatter"),
                        |bytes, span| CommOp::ReduceScatter { bytes, span },
                        false,
                    ));
                } else {
                    w.comm_bwd.push(ar(&format!("tp.{name}_allreduce")));
                }
                for _ in 0..3 {
                    w.comm_fwd.push(Comm {
                        kind: CommKind::Tp,
                        name: format!("tp.{name}.cross_entropy_allreduce"),
                        op: CommOp::AllReduce {
                            bytes: 4.0 * t,
                            span: self.layout.tp_span(self.gpus_per_node),
                        },
                    });
                }
            }
            self.elementwise(&format!("{name}.final_norm"), 4.0 * h * t, w, false);
            self.gemms(&m.head_linear(), w, false);
            let logits = (m.vocab / self.layout.tp) as f64 * t;
            let (fwd, bwd): (LossBytes, LossBytes) = match self.loss {
                LossKernel::Unfused => (&CROSS_ENTROPY_FWD, &CROSS_ENTROPY_BWD),
                LossKernel::Fused => (&FUSED_CROSS_ENTROPY_FWD, &FUSED_CROSS_ENTROPY_BWD),
            };
            for &(op, per_logit) in fwd {
                w.fwd.push(Kernel::memory(
                    &format!("{name}.cross_entropy.{op}"),
                    per_logit * logits,
                ));
            }
            for &(op, per_logit) in bwd {
                w.bwd.push(Kernel::memory(
                    &format!("{name}.cross_entropy.{op}"),
                    per_logit * logits,
                ));
            }
        };
        for _ in 0..e.mtp {
            // The MTP module's two RMSNorms (the previous depth's hidden state and the shifted
            // embedding: BF16 read + write, 4 B each) and their concat (read + write of both
            // halves, 4 B): 12 B per hidden element.
            self.elementwise("mtp.norms_concat", 12.0 * h * t, &mut w, false);
            self.gemms(&m.mtp_projection(), &mut w, false);
            w.extend(self.block(m.mtp_layer_kind()).flatten());
        }
        for i in 0..e.heads {
            head(&mut w, if i == 0 { "lm_head" } else { "mtp.head" });
        }
        w
    }

    /// Pipeline send of activations (forward) and their gradients (backward), between stages on
    /// different nodes or on one.
    pub fn p2p(&self, cross_node: bool) -> (Comm, Comm) {
        let bytes = self.tokens() as f64 * self.model.hidden as f64 * 2.0 / self.layout.tp as f64;
        let c = |name: &str| Comm {
            kind: CommKind::Pp,
            name: name.into(),
            op: CommOp::P2p { bytes, cross_node },
        };
        (c("pp.send_activations"), c("pp.send_grads"))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{Override, Source};
    use crate::net::AlphaBeta;
    use crate::pipeline::load;
    use crate::topo::Cluster;
    use crate::workload::Workload;

    /// A GPT-3-style block (GELU MLP, MHA) at TP8 on two H800 nodes, with `sets` on top.
    pub(crate) fn gpt(sets: &[&str]) -> (Cluster, Workload) {
        try_gpt(sets).unwrap()
    }

    pub(crate) fn try_gpt(sets: &[&str]) -> Result<(Cluster, Workload), crate::config::Diagnostic> {
        const W: &str = "
name: gpt-test
model: {name: gpt, hidden_size: 4096, num_hidden_layers: 4, num_attention_heads: 32,
        intermediate_size: 16384, vocab_size: 51200, hidden_act: gelu, tie_word_embeddings: true}
training:
  precision: {gemm: bf16}
  seq_len: 2048
  global_batch: 16
  recompute: none
  phases: [{name: p, steps: 1}]
parallelism: {tp: 8, pp: 1, schedule: 1f1b}
pricing: {gpu_hour: \"$2\"}
";
        let t = Source::embedded(
            "topologies/h800-16.yaml",
            include_str!("../../topologies/h800-16.yaml"),
        );
        let w = Source::embedded("gpt-test.yaml", W);
        let sets: Vec<Override> = sets.iter().map(|s| Override::parse(s).unwrap()).collect();
        load(&t, &w, &sets)
    }

    fn expander(w: &Workload) -> Expander<'_> {
        Expander {
            cal: crate::builtin::calibration_ref(),
            model: &w.model,
            layout: &w.layout,
            precision: &w.precision,
            recompute: w.recompute,
            loss: w.loss,
            gpus_per_node: 8,
        }
    }

    fn tp_comms(segs: &[Seg]) -> Vec<&Comm> {
        segs.iter()
            .filter_map(|s| match s {
                Seg::Comm { comm, .. } if comm.kind == CommKind::Tp => Some(comm),
                _ => None,
            })
            .collect()
    }

    /// Seconds of the block's tensor-parallel traffic in one pass, priced alone.
    fn tp_secs(c: &Cluster, segs: &[Seg]) -> f64 {
        let cal = crate::builtin::calibration();
        let ab = AlphaBeta::new(c, &cal);
        tp_comms(segs).iter().map(|c| ab.time(&c.op)).sum()
    }

    /// Megatron's full recompute repeats the forward, its two tensor-parallel all-reduces
    /// included: the backward then carries four, against two without recompute.
    #[test]
    fn full_recompute_repeats_the_forward_all_reduces() {
        let (c, w) = gpt(&[]);
        let b = expander(&w).block(LayerKind::Dense);
        assert_eq!(tp_comms(&b.fwd).len(), 2);
        assert_eq!(tp_comms(&b.bwd).len(), 2);
        let (c2, w2) = gpt(&["workload.training.recompute=full"]);
        let r = expander(&w2).block(LayerKind::Dense);
        assert_eq!(tp_comms(&r.bwd).len(), 4);
        let (f, bw) = (tp_secs(&c, &b.fwd), tp_secs(&c2, &r.bwd));
        assert!((bw / f - 2.0).abs() < 1e-9, "fwd {f} bwd {bw}");
    }

    /// Rotary embeddings are a kernel of their own on q and k (each BF16 element read and
    /// written: 4 B, at 1/tp of the heads); learned absolute positions and ALiBi run none.
    #[test]
    fn only_rotary_positions_run_a_rope_kernel() {
        let names = |sets: &[&str]| {
            let (_, w) = gpt(sets);
            let b = expander(&w).block(LayerKind::Dense);
            b.fwd
                .iter()
                .chain(&b.bwd)
                .flat_map(|s| match s {
                    Seg::Compute(ks) => ks.iter().map(|k| k.name.clone()).collect(),
                    _ => Vec::new(),
                })
                .filter(|n| n.starts_with("rope"))
                .count()
        };
        assert_eq!(names(&[]), 2, "forward and backward");
        for p in ["learned_absolute", "alibi", "none"] {
            let set = format!("workload.model.position_embedding_type={p}");
            assert_eq!(names(&[set.as_str()]), 0, "{p}");
        }
        let (_, w) = gpt(&[]);
        let b = expander(&w).block(LayerKind::Dense);
        let t = 2048.0;
        let e = (32.0 + 32.0) / 8.0 * 128.0;
        assert_eq!(mem_bytes(kernel(&b.fwd, "rope.fwd")), 4.0 * e * t);
        assert!(try_gpt(&["workload.model.position_embedding_type=xpos"]).is_err());
    }

    fn kernel<'b>(segs: &'b [Seg], name: &str) -> &'b Kernel {
        segs.iter()
            .flat_map(|s| match s {
                Seg::Compute(ks) => ks.iter().collect::<Vec<_>>(),
                _ => Vec::new(),
            })
            .find(|k| k.name == name)
            .unwrap_or_else(|| panic!("no kernel {name}"))
    }

    fn mem_bytes(k: &Kernel) -> f64 {
        match k.shape {
            KernelShape::Memory { bytes } => bytes,
            _ => panic!("{} is not a memory kernel", k.name),
        }
    }

    /// Sequence parallelism turns each all-reduce into an all-gather and a reduce-scatter of the
    /// same bytes (equal time under the ring model), adds the backward's re-gather of each
    /// column-parallel input (beside its Dgrad), and runs norms and residuals on 1/tp of the tokens.
    #[test]
    fn sequence_parallel_splits_all_reduces_and_shards_norms() {
        let (c, w) = gpt(&[]);
        let ar = expander(&w).block(LayerKind::Dense);
        let (_, w2) = gpt(&["workload.parallelism.sequence_parallel=true"]);
        let sp = expander(&w2).block(LayerKind::Dense);
        assert_eq!(tp_comms(&sp.fwd).len(), 4);
        // Backward: output-gradient gather, input re-gather and input-gradient scatter per part.
        assert_eq!(tp_comms(&sp.bwd).len(), 6);
        let (f_ar, f_sp) = (tp_secs(&c, &ar.fwd), tp_secs(&c, &sp.fwd));
        assert!((f_sp / f_ar - 1.0).abs() < 1e-9, "{f_sp} vs {f_ar}");
        let (b_ar, b_sp) = (tp_secs(&c, &ar.bwd), tp_secs(&c, &sp.bwd));
        assert!((b_sp / b_ar - 1.5).abs() < 1e-9, "{b_sp} vs {b_ar}");
        for k in ["attn_norm.fwd", "ffn_norm.fwd", "residual.fwd"] {
            let r = mem_bytes(kernel(&ar.fwd, k)) / mem_bytes(kernel(&sp.fwd, k));
            assert!((r - 8.0).abs() < 1e-9, "{k}: {r}");
        }
        // Megatron's order: the column-parallel Wgrad runs in the backward, beside the scatter.
        assert!(sp.wgrad.iter().all(|s| match s {
            Seg::Compute(ks) => ks.iter().all(|k| k.name != "q_proj.wgrad"),
            _ => true,
        }));
        let _ = kernel(&sp.bwd, "mlp.gate_up.wgrad");
    }

    /// Under `tp_comm_overlap` each collective runs beside its GEMM: the closed-form exposed
    /// time of a forward part is Σ max(0, comm − GEMM) + one ring chunk per collective, with the
    /// reduce-scatter's GEMM on `network.userbuffers_sms` fewer SMs.
    #[test]
    fn tp_comm_overlap_exposes_only_the_excess_and_one_chunk() {
        let sets = [
            "workload.parallelism.sequence_parallel=true",
            "workload.parallelism.tp_comm_overlap=true",
        ];
        let (c, w) = gpt(&sets);
        let ex = expander(&w);
        let b = ex.block(LayerKind::Dense);
        let cal = crate::builtin::calibration();
        let km = crate::hw::KernelModel::new(&c.gpu, &cal);
        let ab = AlphaBeta::new(&c, &cal);
        let sms = c.gpu.sms.value;
        let secs = |name: &str, margin: u32| {
            km.busy(&kernel(&b.fwd, name).shape, sms - margin)
                .as_secs_f64()
        };
        let t = 2048.0 * 4096.0 * 2.0;
        let span = w.layout.tp_span(8);
        let ub = |steps: u64| CommOp::Ring {
            bytes: t / 8.0,
            steps,
            span,
            nccl: false,
        };
        let (ag, rs, chunk) = (ab.time(&ub(7)), ab.time(&ub(7)), ab.time(&ub(1)));
        let expect = (ag - secs("q_proj.fwd", 0) - secs("kv_proj.fwd", 0)).max(0.0)
            + (rs
                - secs(
                    "o_proj.fwd",
                    crate::builtin::calibration_ref()
                        .network
                        .userbuffers_sms
                        .value,
                ))
            .max(0.0)
            + (ag - secs("mlp.gate_up.fwd", 0)).max(0.0)
            + (rs
                - secs(
                    "mlp.down.fwd",
                    crate::builtin::calibration_ref()
                        .network
                        .userbuffers_sms
                        .value,
                ))
            .max(0.0)
            + 4.0 * chunk;
        // The engine's view: all TP time in the pass, less what runs beside compute.
        let mut exposed = 0.0;
        let mut beside = 0.0;
        for s in &b.fwd {
            match s {
                Seg::Compute(ks) => {
                    beside = ks
                        .iter()
                        .map(|k| km.busy(&k.shape, sms - k.sm_margin).as_secs_f64())
                        .sum()
                }
                Seg::Comm { comm, parallel } => {
                    let x = ab.time(&comm.op);
                    exposed += if *parallel { (x - beside).max(0.0) } else { x };
                }
            }
        }
        assert!(
            (exposed / expect - 1.0).abs() < 1e-9,
            "{exposed} vs {expect}"
        );
        assert!(exposed < tp_secs(&c, &b.fwd), "overlap hides something");
        assert_eq!(
            kernel(&b.fwd, "o_proj.fwd").sm_margin,
            crate::builtin::calibration_ref()
                .network
                .userbuffers_sms
                .value
        );
        assert_eq!(kernel(&b.fwd, "q_proj.fwd").sm_margin, 0);
    }

    /// `tp_comm_overlap` needs sequence parallelism (Megatron asserts the same).
    #[test]
    fn tp_comm_overlap_requires_sequence_parallel() {
        let e = try_gpt(&["workload.parallelism.tp_comm_overlap=true"]).unwrap_err();
        assert!(format!("{e:?}").contains("sequence_parallel"), "{e:?}");
    }

    /// Overlapped parameter gathers belong to a sharded optimizer (ZeRO-1/2): asked for with
    /// ZeRO-0 or ZeRO-3 they are an error, not silently ignored.
    #[test]
    fn overlap_param_gather_requires_zero_1_or_2() {
        for zero in ["0", "3"] {
            let e = try_gpt(&[
                "workload.parallelism.overlap_param_gather=true",
                &format!("workload.parallelism.zero={zero}"),
            ])
            .unwrap_err();
            let msg = format!("{e:?}");
            assert!(
                msg.contains("overlap_param_gather") && msg.contains("zero: 1 or 2"),
                "{msg}"
            );
        }
        for zero in ["1", "2"] {
            assert!(try_gpt(&[
                "workload.parallelism.overlap_param_gather=true",
                &format!("workload.parallelism.zero={zero}"),
            ])
            .is_ok());
        }
    }

    /// The output head's loss kernels move 52 B per logit (38 forward, 14 backward), as
    /// Megatron's FP32 vocabulary-parallel cross entropy reads and writes them.
    #[test]
    fn cross_entropy_moves_fifty_two_bytes_per_logit() {
        let (_, w) = gpt(&[]);
        let b = expander(&w).extras(Extras {
            heads: 1,
            ..Default::default()
        });
        let logits = 51200.0 / 8.0 * 2048.0;
        let sum = |segs: &[Seg]| -> f64 {
            segs.iter()
                .flat_map(|s| match s {
                    Seg::Compute(ks) => ks.clone(),
                    _ => Vec::new(),
                })
                .filter(|k| k.name.contains("cross_entropy"))
                .map(|k| mem_bytes(&k))
                .sum()
        };
        assert_eq!(sum(&b.fwd) / logits, 38.0);
        assert_eq!(sum(&b.bwd) / logits, 14.0);
    }

    /// Biases cost their gradient reductions (one read of each biased output gradient);
    /// hidden dropout costs a 1-byte mask per residual-branch element forward and a
    /// 5-byte masked-gradient pass backward, and keeps the masks as activations.
    #[test]
    fn biases_and_dropout_add_their_kernels_and_masks() {
        let on = [
            "workload.model.attention_bias=true",
            "workload.model.mlp_bias=true",
            "workload.model.hidden_dropout=0.1",
            "workload.model.attention_dropout=0.1",
        ];
        let (_, w) = gpt(&on);
        let b = expander(&w).block(LayerKind::Dense);
        let (t, h, tp) = (2048.0, 4096.0, 8.0);
        assert_eq!(mem_bytes(kernel(&b.fwd, "attn_dropout.fwd")), h * t);
        assert_eq!(mem_bytes(kernel(&b.bwd, "mlp_dropout.bwd")), 5.0 * h * t);
        // q, k, v (column-parallel, 3h/tp) and o (row-parallel, h); up (4h/tp) and down (h).
        assert_eq!(
            mem_bytes(kernel(&b.bwd, "attn_bias_grad")),
            2.0 * t * (3.0 * h / tp + h)
        );
        assert_eq!(
            mem_bytes(kernel(&b.bwd, "mlp_bias_grad")),
            2.0 * t * (4.0 * h / tp + h)
        );
        let (_, plain) = gpt(&[]);
        let m = &w.model;
        assert_eq!(
            m.block_vector_params(LayerKind::Dense)
                - plain.model.block_vector_params(LayerKind::Dense),
            (3 + 1 + 4 + 1) * 4096
        );
        let act = |m: &crate::workload::model::Model, sp| {
            m.activation_bytes_per_token(LayerKind::Dense, Recompute::None, Dtype::Bf16, 8, sp)
        };
        assert_eq!(act(m, false) - act(&plain.model, false), 2.0 * h);
        assert_eq!(act(m, true) - act(&plain.model, true), 2.0 * h / tp);
        assert!(try_gpt(&["workload.model.hidden_dropout=1.0"]).is_err());
    }

    /// DeepSeek-V3 cut to four layers on two H800 nodes (pp 2, ep 8), with `sets` on top.
    pub(crate) fn moe(sets: &[&str]) -> Result<(Cluster, Workload), crate::config::Diagnostic> {
        let t = Source::embedded(
            "topologies/h800-16.yaml",
            include_str!("../../topologies/h800-16.yaml"),
        );
        let w = Source::embedded(
            crate::pipeline::DEFAULT_WORKLOAD.0,
            crate::pipeline::DEFAULT_WORKLOAD.1,
        );
        let mut all: Vec<Override> = [
            "workload.model.num_hidden_layers=4",
            "workload.model.first_k_dense_replace=1",
            "workload.training.global_batch=64",
            "workload.parallelism.pp=2",
            "workload.parallelism.ep=8",
            "workload.training.phases=[{name: p, tokens: 1B}]",
        ]
        .iter()
        .map(|s| Override::parse(s).unwrap())
        .collect();
        all.extend(sets.iter().map(|s| Override::parse(s).unwrap()));
        load(&t, &w, &all)
    }

    fn gemm(segs: &[Seg], name: &str) -> crate::hw::GemmShape {
        match kernel(segs, name).shape {
            KernelShape::Gemm(g) => g,
            _ => panic!("{name} is not a GEMM"),
        }
    }

    /// The MoE all-to-alls a pass runs, with whether each runs beside compute.
    fn a2as(segs: &[Seg]) -> Vec<(&CommOp, bool)> {
        segs.iter()
            .filter_map(|s| match s {
                Seg::Comm { comm, parallel } if comm.kind == CommKind::Ep => {
                    Some((&comm.op, *parallel))
                }
                _ => None,
            })
            .collect()
    }

    /// The expert-parallel group spans the tensor-parallel ranks (expert tensor parallelism
    /// 1): under TP 2 each rank routes its own half of the micro-batch's tokens to whole
    /// experts, so it dispatches half the tokens and its expert GEMMs have half the rows and the
    /// full width; the router scores the same half. Megatron-Core requires sequence
    /// parallelism for that, and so does trainsim.
    #[test]
    fn expert_tensor_parallelism_is_one() {
        let (_, w1) = moe(&[]).unwrap();
        let (_, w2) = moe(&[
            "workload.parallelism.tp=2",
            "workload.parallelism.sequence_parallel=true",
        ])
        .unwrap();
        let (b1, b2) = (
            expander(&w1).block(LayerKind::Moe),
            expander(&w2).block(LayerKind::Moe),
        );
        let tokens = |b: &BlockWork| match a2as(&b.fwd)[0].0 {
            CommOp::MoeDispatch { tokens, .. } => *tokens,
            op => panic!("{op:?}"),
        };
        assert_eq!(tokens(&b1), 4096);
        assert_eq!(tokens(&b2), 2048);
        let (g1, g2) = (
            gemm(&b1.fwd, "experts.gate_up.fwd"),
            gemm(&b2.fwd, "experts.gate_up.fwd"),
        );
        assert_eq!((g1.n, g1.k), (2 * 2048, 7168));
        assert_eq!((g2.n, g2.k), (g1.n, g1.k));
        assert_eq!(g1.m, 4096 * 8 * 8 / 256);
        assert_eq!(g2.m, g1.m / 2);
        assert_eq!(gemm(&b2.fwd, "router.fwd").m, 2048);
        let e = moe(&["workload.parallelism.tp=2"]).unwrap_err();
        assert_eq!(
            e.path.as_deref(),
            Some("parallelism.sequence_parallel"),
            "{e:?}"
        );
    }

    /// Token dropping padded to capacity (Megatron's all-to-all dispatcher with
    /// `moe_pad_expert_input_to_capacity`): every expert computes ⌈t·k/E·c⌉ rows from each GPU
    /// of its group and every GPU sends that many copies, so a capacity of 1.5 costs 1.5× the
    /// balanced rows and bytes (t·k/E = 128 here); dropping alone changes neither. Settings
    /// Megatron refuses are located diagnostics.
    #[test]
    fn padding_to_capacity_computes_and_sends_the_capacity() {
        let block = |sets: &[&str]| {
            let mut all = vec!["workload.parallelism.moe_dispatcher=alltoall"];
            all.extend(sets);
            let (_, w) = moe(&all).unwrap();
            expander(&w).block(LayerKind::Moe)
        };
        let bytes = |b: &BlockWork| a2as(&b.fwd).iter().map(|(op, _)| op.bytes()).sum::<f64>();
        let free = block(&[]);
        let cap = "workload.parallelism.moe_expert_capacity_factor=1.5";
        let dropped = block(&[cap]);
        let padded = block(&[
            cap,
            "workload.parallelism.moe_pad_expert_input_to_capacity=true",
        ]);
        let rows = |b: &BlockWork| gemm(&b.fwd, "experts.down.fwd").m;
        assert_eq!(rows(&free), 8 * 128);
        assert_eq!(rows(&dropped), rows(&free));
        assert_eq!(rows(&padded), 8 * 192);
        assert_eq!(bytes(&dropped), bytes(&free));
        assert!((bytes(&padded) / bytes(&free) - 1.5).abs() < 1e-12);
        for (sets, key) in [
            (vec![cap], "moe_expert_capacity_factor"),
            (
                vec![
                    "workload.parallelism.moe_dispatcher=alltoall",
                    "workload.parallelism.moe_expert_capacity_factor=0",
                ],
                "moe_expert_capacity_factor",
            ),
            (
                vec![
                    "workload.parallelism.moe_dispatcher=alltoall",
                    "workload.parallelism.moe_pad_expert_input_to_capacity=true",
                ],
                "moe_pad_expert_input_to_capacity",
            ),
        ] {
            let e = moe(&sets).unwrap_err();
            let want = format!("parallelism.{key}");
            assert_eq!(e.path.as_deref(), Some(want.as_str()), "{sets:?}: {e:?}");
        }
    }

    /// Megatron's shared-expert overlap: the shared experts' first GEMM and activation form
    /// the compute the dispatch runs beside, their second the compute the combine runs beside,
    /// and in the backward the reverse; the block keeps every kernel it had. Without it the
    /// all-to-alls wait for nothing and nothing waits beside them. DeepEP's dispatcher and the
    /// schedules that pair passes refuse it.
    #[test]
    fn shared_experts_run_beside_the_all_to_alls() {
        let alltoall = "workload.parallelism.moe_dispatcher=alltoall";
        let one = "workload.parallelism.schedule=1f1b";
        let (_, plain) = moe(&[alltoall, one]).unwrap();
        let (_, over) = moe(&[
            alltoall,
            one,
            "workload.parallelism.moe_shared_expert_overlap=true",
        ])
        .unwrap();
        let (p, o) = (
            expander(&plain).block(LayerKind::Moe),
            expander(&over).block(LayerKind::Moe),
        );
        assert!(a2as(&p.fwd)
            .iter()
            .chain(&a2as(&p.bwd))
            .all(|(_, beside)| !beside));
        assert!(a2as(&o.fwd)
            .iter()
            .chain(&a2as(&o.bwd))
            .all(|(_, beside)| *beside));
        // The compute right before each all-to-all, by kernel names.
        let before = |segs: &[Seg], comm: &str| -> Vec<String> {
            let i = segs
                .iter()
                .position(|s| matches!(s, Seg::Comm { comm: c, .. } if c.name == comm))
                .unwrap_or_else(|| panic!("no {comm}"));
            match &segs[i - 1] {
                Seg::Compute(ks) => ks.iter().map(|k| k.name.clone()).collect(),
                s => panic!("{s:?}"),
            }
        };
        // Each piece holds its GEMM and only that GEMM's kernels (activation, casts).
        let piece = |segs: &[Seg], comm: &str, gemm: &str, first: bool| {
            let ks = before(segs, comm);
            assert!(ks.iter().any(|k| k == gemm), "{comm}: {ks:?}");
            assert!(
                ks.iter().all(|k| if first {
                    k.starts_with("shared.gate_up.") || k.starts_with("shared_swiglu.")
                } else {
                    k.starts_with("shared.down.")
                }),
                "{comm}: {ks:?}"
            );
        };
        piece(&o.fwd, "moe.dispatch", "shared.gate_up.fwd", true);
        piece(&o.fwd, "moe.combine", "shared.down.fwd", false);
        piece(&o.bwd, "moe.combine.bwd", "shared.down.dgrad", false);
        piece(&o.bwd, "moe.dispatch.bwd", "shared.gate_up.dgrad", true);
        let names = |b: &BlockWork| {
            let mut v: Vec<String> = b
                .fwd
                .iter()
                .chain(&b.bwd)
                .chain(&b.wgrad)
                .flat_map(|s| match s {
                    Seg::Compute(ks) => ks.iter().map(|k| k.name.clone()).collect(),
                    _ => Vec::new(),
                })
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(&p), names(&o));
        for sets in [
            vec![one, "workload.parallelism.moe_shared_expert_overlap=true"],
            vec![
                alltoall,
                "workload.parallelism.moe_shared_expert_overlap=true",
            ],
        ] {
            let e = moe(&sets).unwrap_err();
            assert_eq!(
                e.path.as_deref(),
                Some("parallelism.moe_shared_expert_overlap"),
                "{sets:?}: {e:?}"
            );
        }
    }

    /// Megatron's whole-part recompute modules re-run the part's forward in backward, as its
    /// checkpoint does: `moe` every kernel of an MoE block's feed-forward part and its dispatch
    /// and combine (before their backward), `mlp` a dense block's MLP, `shared_experts` the
    /// shared experts alone; full recompute re-runs the all-to-alls too. Nothing else is
    /// recomputed.
    #[test]
    fn whole_part_recompute_reruns_the_part() {
        let names = |segs: &[Seg]| -> Vec<String> {
            segs.iter()
                .flat_map(|s| match s {
                    Seg::Compute(ks) => ks.iter().map(|k| k.name.clone()).collect(),
                    _ => Vec::new(),
                })
                .collect()
        };
        let comms = |segs: &[Seg]| -> Vec<String> {
            segs.iter()
                .filter_map(|s| match s {
                    Seg::Comm { comm, .. } if comm.kind == CommKind::Ep => Some(comm.name.clone()),
                    _ => None,
                })
                .collect()
        };
        let block = |list: &str, kind| {
            let (_, w) = moe(&[&format!("workload.training.recompute_modules={list}")]).unwrap();
            expander(&w).block(kind)
        };
        // The forward kernels a recompute repeats, by the part they belong to.
        let ffn = |n: &str| {
            ["router", "experts", "moe_", "shared", "mlp"]
                .iter()
                .any(|p| n.starts_with(p))
        };
        let recomputed = |b: &BlockWork| -> Vec<String> {
            let mut v: Vec<String> = names(&b.bwd)
                .into_iter()
                .filter_map(|n| n.strip_suffix(".recompute").map(String::from))
                .collect();
            v.sort();
            v
        };
        let forward = |b: &BlockWork, keep: &dyn Fn(&str) -> bool| -> Vec<String> {
            let mut v: Vec<String> = names(&b.fwd)
                .into_iter()
                .filter(|n| keep(n))
                .filter_map(|n| n.strip_suffix(".fwd").map(String::from))
                .collect();
            v.sort();
            v
        };
        let m = block("[moe]", LayerKind::Moe);
        assert_eq!(recomputed(&m), forward(&m, &ffn));
        assert_eq!(
            comms(&m.bwd),
            [
                "moe.dispatch.recompute",
                "moe.combine.recompute",
                "moe.combine.bwd",
                "moe.dispatch.bwd"
            ]
        );
        let s = block("[shared_experts]", LayerKind::Moe);
        assert_eq!(recomputed(&s), forward(&s, &|n| n.starts_with("shared")));
        assert_eq!(comms(&s.bwd), ["moe.combine.bwd", "moe.dispatch.bwd"]);
        let d = block("[mlp]", LayerKind::Dense);
        assert_eq!(recomputed(&d), forward(&d, &|n| n.starts_with("mlp")));
        assert!(recomputed(&block("[mlp]", LayerKind::Moe)).is_empty());
        let (_, w) = moe(&["workload.training.recompute=full"]).unwrap();
        let f = expander(&w).block(LayerKind::Moe);
        assert_eq!(
            comms(&f.bwd)[..2],
            ["moe.dispatch.recompute", "moe.combine.recompute"]
        );
    }
}
