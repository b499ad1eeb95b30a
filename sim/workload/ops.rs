//! One micro-batch of one pipeline chunk, expanded into kernels and communication.
//!
//! A chunk is a run of consecutive blocks (plus the embedding on the first chunk and the output
//! head and MTP modules on the last). Each pass lists its kernels: forward, backward-for-input
//! (with any recomputation) and backward-for-weights, as DeepSeek-V3's trace separates them,
//! and the communication each pass issues.

use crate::config::workload::{Dtype, PrecisionSpec, Recompute};
use crate::hw::KernelShape;
use crate::net::{CommOp, MoeRoute};
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

#[derive(Debug, Clone, PartialEq)]
pub struct Kernel {
    pub name: String,
    pub shape: KernelShape,
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

/// What a chunk holds besides its blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Extras {
    pub embedding: bool,
    pub head: bool,
    pub mtp_depth: u64,
}

/// Orders a block's attention and feed-forward work into segments. Communication issued while
/// building (`comm_fwd`/`comm_bwd`) attaches by kind: expert dispatch before the experts and
/// combine after them, tensor-parallel all-reduces after each part, the context-parallel ring
/// beside the attention.
fn assemble(attn: ChunkWork, ffn: ChunkWork) -> BlockWork {
    let pick = |cs: &[Comm], name: &str| {
        cs.iter()
            .filter(|c| c.name == name)
            .cloned()
            .collect::<Vec<_>>()
    };
    let comm = |c: Comm, parallel| Seg::Comm { comm: c, parallel };
    let mut b = BlockWork::default();
    let all_f: Vec<Comm> = attn.comm_fwd.iter().chain(&ffn.comm_fwd).cloned().collect();
    let all_b: Vec<Comm> = attn.comm_bwd.iter().chain(&ffn.comm_bwd).cloned().collect();
    // Forward: [cp ring ∥] attention, tp, dispatch, experts/mlp, combine, tp.
    b.fwd.push(Seg::Compute(attn.fwd));
    b.fwd.extend(
        pick(&all_f, "cp.kv_ring")
            .into_iter()
            .map(|c| comm(c, true)),
    );
    b.fwd.extend(
        pick(&all_f, "tp.attn_allreduce")
            .into_iter()
            .map(|c| comm(c, false)),
    );
    b.fwd.extend(
        pick(&all_f, "moe.dispatch")
            .into_iter()
            .map(|c| comm(c, false)),
    );
    b.fwd.push(Seg::Compute(ffn.fwd));
    b.fwd.extend(
        pick(&all_f, "moe.combine")
            .into_iter()
            .map(|c| comm(c, false)),
    );
    b.fwd.extend(
        pick(&all_f, "tp.mlp_allreduce")
            .into_iter()
            .map(|c| comm(c, false)),
    );
    // Backward: combine⁻¹, experts/mlp, tp, dispatch⁻¹, attention [∥ cp ring], tp.
    b.bwd.extend(
        pick(&all_b, "moe.combine.bwd")
            .into_iter()
            .map(|c| comm(c, false)),
    );
    b.bwd.push(Seg::Compute(ffn.bwd));
    b.bwd.extend(
        pick(&all_b, "tp.mlp_allreduce")
            .into_iter()
            .map(|c| comm(c, false)),
    );
    b.bwd.extend(
        pick(&all_b, "moe.dispatch.bwd")
            .into_iter()
            .map(|c| comm(c, false)),
    );
    b.bwd.push(Seg::Compute(attn.bwd));
    b.bwd.extend(
        pick(&all_b, "cp.kv_dkv_ring")
            .into_iter()
            .map(|c| comm(c, true)),
    );
    b.bwd.extend(
        pick(&all_b, "tp.attn_allreduce")
            .into_iter()
            .map(|c| comm(c, false)),
    );
    b.wgrad.push(Seg::Compute(ffn.wgrad));
    b.wgrad.push(Seg::Compute(attn.wgrad));
    b.fwd
        .retain(|s| !matches!(s, Seg::Compute(k) if k.is_empty()));
    b.bwd
        .retain(|s| !matches!(s, Seg::Compute(k) if k.is_empty()));
    b.wgrad
        .retain(|s| !matches!(s, Seg::Compute(k) if k.is_empty()));
    b
}

/// Expands micro-batches into kernels for one model, layout and precision.
#[derive(Debug, Clone, Copy)]
pub struct Expander<'a> {
    pub model: &'a Model,
    pub layout: &'a Layout,
    pub precision: &'a PrecisionSpec,
    pub recompute: Recompute,
    pub gpus_per_node: u64,
}

fn mem(name: &str, bytes: f64) -> Kernel {
    Kernel {
        name: name.to_string(),
        shape: KernelShape::Memory { bytes },
    }
}

impl<'a> Expander<'a> {
    fn tokens(&self) -> u64 {
        self.layout.tokens_per_microbatch()
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
            ((t * moe.topk * self.layout.ep).div_ceil(moe.routed), local)
        } else {
            (t, 1)
        };
        let g = |m, n, k, wgrad| KernelShape::Gemm {
            m,
            n,
            k,
            groups,
            dtype,
            wgrad,
        };
        w.fwd.push(Kernel {
            name: format!("{}.fwd", l.name),
            shape: g(m, n, k, false),
        });
        if recompute_fwd {
            w.bwd.push(Kernel {
                name: format!("{}.recompute", l.name),
                shape: g(m, n, k, false),
            });
        }
        w.bwd.push(Kernel {
            name: format!("{}.dgrad", l.name),
            shape: g(m, k, n, false),
        });
        w.wgrad.push(Kernel {
            name: format!("{}.wgrad", l.name),
            shape: g(n, k, m, true),
        });
        if dtype == Dtype::Fp8 {
            // FP8 backward quantizes the output gradient per token for Dgrad, and per channel
            // with a transpose (plus a transpose of the cached FP8 input) for Wgrad.
            let rows = (m * groups) as f64;
            w.bwd
                .push(mem(&format!("{}.grad_cast", l.name), 3.0 * rows * n as f64));
            w.wgrad.push(mem(
                &format!("{}.wgrad_cast_transpose", l.name),
                3.0 * rows * n as f64 + 2.0 * rows * k as f64,
            ));
        }
    }

    /// Memory-bound kernels: forward bytes, with backward reading and writing twice as much.
    fn elementwise(&self, name: &str, fwd_bytes: f64, w: &mut ChunkWork, recompute: bool) {
        if fwd_bytes <= 0.0 {
            return;
        }
        w.fwd.push(mem(&format!("{name}.fwd"), fwd_bytes));
        if recompute {
            w.bwd.push(mem(&format!("{name}.recompute"), fwd_bytes));
        }
        w.bwd.push(mem(&format!("{name}.bwd"), 2.0 * fwd_bytes));
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
        let sel = self.recompute != Recompute::None;
        let heads = m.attention.heads() / lay.tp;
        let (dqk, dv) = m.attention.core_dims();

        // Attention.
        self.elementwise("attn_norm", 4.0 * h * t, &mut w, sel);
        self.elementwise("attn_cast", self.cast_bytes(h * t), &mut w, full);
        for l in m.attention_linears() {
            let up_proj = matches!(l.name, "q_b_proj" | "kv_b_proj");
            self.gemms(&l, &mut w, full || (sel && up_proj));
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
                    sel,
                );
                self.elementwise(
                    "rope_concat_qk",
                    8.0 * heads as f64 * dqk as f64 * t,
                    &mut w,
                    sel,
                );
            }
            Attention::Gqa {
                kv_heads, head_dim, ..
            } => {
                let e = (heads as f64 + kv_heads as f64 / tp) * head_dim as f64;
                self.elementwise("rope", 4.0 * e * t, &mut w, full);
            }
        }
        let seq = lay.seq_len;
        let core = |backward| {
            if lay.cp == 1 {
                KernelShape::Attention {
                    backward,
                    batch: lay.micro_batch,
                    heads,
                    seq_q: seq,
                    seq_kv: seq,
                    d_qk: dqk,
                    d_v: dv,
                    causal: true,
                }
            } else {
                // Load-balanced context parallelism: each rank does 1/cp of the causal work.
                KernelShape::Attention {
                    backward,
                    batch: lay.micro_batch,
                    heads,
                    seq_q: seq / lay.cp,
                    seq_kv: seq / 2,
                    d_qk: dqk,
                    d_v: dv,
                    causal: false,
                }
            }
        };
        w.fwd.push(Kernel {
            name: "attention.core.fwd".into(),
            shape: core(false),
        });
        if full {
            w.bwd.push(Kernel {
                name: "attention.core.recompute".into(),
                shape: core(false),
            });
        }
        w.bwd.push(Kernel {
            name: "attention.core.bwd".into(),
            shape: core(true),
        });
        // Flash-attention backward pre/post-processing: dO·O row sums and the FP32 dQ accumulator.
        w.bwd.push(mem(
            "attention.core.bwd_pre_post",
            t * heads as f64 * (dv as f64 * 4.0 + dqk as f64 * 8.0),
        ));
        self.elementwise(
            "attn_out_cast",
            self.cast_bytes(heads as f64 * dv as f64 * t),
            &mut w,
            full,
        );
        self.elementwise("residual", 2.0 * 6.0 * h * t, &mut w, full);
        self.elementwise("ffn_norm", 4.0 * h * t, &mut w, sel);
        self.elementwise("ffn_cast", self.cast_bytes(h * t), &mut w, full);

        let attn = std::mem::take(&mut w);
        let gate = if m.gated_ffn { 6.0 } else { 4.0 };
        match (kind, m.moe) {
            (LayerKind::Moe, Some(moe)) => {
                let k = moe.topk as f64;
                let f = moe.expert_ffn as f64;
                self.elementwise("router_topk", 12.0 * moe.routed as f64 * t, &mut w, full);
                self.elementwise("moe_permute", k * h * t * 4.0, &mut w, full);
                self.elementwise(
                    "experts_swiglu",
                    gate * f * k * t + self.cast_bytes(f * k * t),
                    &mut w,
                    sel,
                );
                self.elementwise(
                    "moe_unpermute_reduce",
                    (2.0 * k + 2.0) * h * t,
                    &mut w,
                    full,
                );
                if moe.shared > 0 {
                    let fs = (moe.shared * moe.shared_ffn) as f64 / tp;
                    self.elementwise(
                        "shared_swiglu",
                        gate * fs * t + self.cast_bytes(fs * t),
                        &mut w,
                        sel,
                    );
                }
                for l in m.ffn_linears_of(kind) {
                    self.gemms(&l, &mut w, full);
                }
                if lay.ep > 1 {
                    let route = MoeRoute {
                        routed: moe.routed,
                        topk: moe.topk,
                        groups: moe.groups,
                        topk_groups: moe.topk_groups,
                    };
                    let span = lay.ep_span(self.gpus_per_node);
                    let tokens = self.tokens();
                    let fp8_scales = |d: Dtype| {
                        if d == Dtype::Fp8 {
                            h / 128.0 * 4.0
                        } else {
                            0.0
                        }
                    };
                    let disp =
                        h * self.precision.dispatch.bytes() + fp8_scales(self.precision.dispatch);
                    let comb = h * 2.0;
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
                    sel,
                );
                for l in m.ffn_linears_of(kind) {
                    self.gemms(&l, &mut w, full);
                }
            }
        }
        if lay.tp > 1 {
            let span = lay.tp_span(self.gpus_per_node);
            let bytes = t * h * 2.0;
            for pass in [&mut w.comm_fwd, &mut w.comm_bwd] {
                for name in ["tp.attn_allreduce", "tp.mlp_allreduce"] {
                    pass.push(Comm {
                        kind: CommKind::Tp,
                        name: name.into(),
                        op: CommOp::AllReduce { bytes, span },
                    });
                }
            }
        }
        if lay.cp > 1 {
            let span = lay.cp_span(self.gpus_per_node);
            // K and V of this rank's tokens (MLA passes the compressed latent and rope key).
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
        assemble(attn, ffn)
    }

    /// Embedding, output head and MTP modules, as one block-like unit of compute.
    pub fn extras(&self, e: Extras) -> BlockWork {
        let w = self.extras_work(e);
        let mut b = assemble(
            ChunkWork::default(),
            ChunkWork {
                comm_fwd: vec![],
                comm_bwd: vec![],
                ..w.clone()
            },
        );
        // MTP blocks carry their own expert traffic: keep it, after the compute.
        b.fwd.extend(w.comm_fwd.into_iter().map(|c| Seg::Comm {
            comm: c,
            parallel: false,
        }));
        b.bwd.extend(w.comm_bwd.into_iter().map(|c| Seg::Comm {
            comm: c,
            parallel: false,
        }));
        b
    }

    fn extras_work(&self, e: Extras) -> ChunkWork {
        let mut w = ChunkWork::default();
        let m = self.model;
        let t = self.tokens() as f64;
        let h = m.hidden as f64;
        if e.embedding {
            w.fwd.push(mem("embedding.gather", 4.0 * h * t));
            w.wgrad
                .push(mem("embedding.wgrad_scatter_add", 10.0 * h * t));
        }
        let head = |w: &mut ChunkWork, name: &str| {
            self.elementwise(&format!("{name}.final_norm"), 4.0 * h * t, w, false);
            self.gemms(&m.head_linear(), w, false);
            let v = (m.vocab / self.layout.tp) as f64;
            w.fwd
                .push(mem(&format!("{name}.cross_entropy"), 8.0 * v * t));
            w.bwd
                .push(mem(&format!("{name}.cross_entropy.bwd"), 6.0 * v * t));
        };
        if e.head {
            head(&mut w, "lm_head");
        }
        for _ in 0..e.mtp_depth {
            self.elementwise("mtp.norms_concat", 12.0 * h * t, &mut w, false);
            self.gemms(&m.mtp_projection(), &mut w, false);
            w.extend(self.block(m.mtp_layer_kind()).flatten());
            head(&mut w, "mtp.head");
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
