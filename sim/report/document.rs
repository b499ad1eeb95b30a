//! The run report (`trainsim run --report`): one content model rendered twice, as a
//! self-contained HTML page (inline CSS and SVG, no script, no request to anything) and as
//! Markdown with the plots as SVG files beside it.
//!
//! Sections: headline (with published figures beside trainsim's for the unmodified default
//! run), step breakdown, one step on a timeline (DES), memory per GPU, phases, network,
//! assumptions (every `[inferred]` / `[assumed]` mark in the inputs and every calibration
//! constant with its source), and how to reproduce the run (input hashes, command, version).

use super::plots::{self, Lane};
use super::tables::breakdown_rows;
use super::trace::category;
use super::Summary;
use crate::hw::Calibration;
use crate::step::Timeline;
use crate::topo::Cluster;
use crate::workload::taskgraph::{Pass, STREAM_NAMES};
use crate::workload::Workload;
use sha2::{Digest, Sha256};
use std::fmt::Write;

/// An input document as the run read it.
#[derive(Debug, Clone)]
pub struct InputFile {
    /// A path, or `<embedded>/NAME`.
    pub name: String,
    pub text: String,
}

/// What the report is made from.
pub struct Input<'a> {
    pub summary: &'a Summary,
    pub timeline: Option<&'a Timeline>,
    pub cluster: &'a Cluster,
    pub workload: &'a Workload,
    pub calibration: &'a Calibration,
    /// The topology, the workload, and a calibration file if one was given.
    pub files: Vec<InputFile>,
    /// `--set` overrides as given.
    pub sets: Vec<String>,
    /// The command line, as typed.
    pub command: String,
    /// The embedded default scenario without overrides: published figures exist for it.
    pub published: bool,
    /// The trainsim build: version and git commit.
    pub version: String,
}

/// The report: HTML, Markdown, and the SVG plots the Markdown links to.
pub struct Rendered {
    pub html: String,
    pub markdown: String,
    /// (file name, SVG).
    pub plots: Vec<(String, String)>,
}

pub(crate) enum Block {
    Para(String),
    Table {
        head: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    Plot {
        file: String,
        alt: String,
        svg: String,
    },
}

pub(crate) struct Section {
    pub title: String,
    pub blocks: Vec<Block>,
}

pub(crate) fn table(head: &[&str], rows: Vec<Vec<String>>) -> Block {
    Block::Table {
        head: head.iter().map(|s| s.to_string()).collect(),
        rows,
    }
}

/// The sha256 of a text, in hex.
pub fn sha256(text: &str) -> String {
    let d = Sha256::digest(text.as_bytes());
    d.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

pub(crate) fn thousands(v: f64) -> String {
    let n = v.round() as i64;
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn pct(e: f64) -> String {
    format!("{:+.1}%", e * 100.0)
}

/// DeepSeek-V3 technical report, Table 1 and §1: the default run's published figures.
const PUBLISHED: [(&str, f64, &str); 4] = [
    (
        "GPU-hours, pre-training",
        2_664_000.0,
        "DeepSeek-V3 TR Table 1: 2,664K H800 GPU-hours",
    ),
    (
        "GPU-hours, context extension",
        119_000.0,
        "DeepSeek-V3 TR Table 1: 119K H800 GPU-hours",
    ),
    (
        "GPU-hours in all",
        2_788_000.0,
        "DeepSeek-V3 TR Table 1: 2,788K H800 GPU-hours",
    ),
    (
        "cost at $2/GPU-hour (USD)",
        5_576_000.0,
        "DeepSeek-V3 TR Table 1: $5.576M",
    ),
];

fn headline(i: &Input) -> Section {
    let s = i.summary;
    let mut blocks = vec![Block::Para(format!(
        "{} on {} ({} × {}): {}. {} engine.",
        s.workload,
        s.topology,
        s.gpus,
        s.gpu,
        s.layout_line(),
        s.sim.engine
    ))];
    let rows = vec![
        vec!["step time".into(), format!("{:.2} s", s.step_time_s)],
        vec![
            "MFU (dense BF16 peak)".into(),
            format!("{:.1}%", s.mfu * 100.0),
        ],
        vec![
            "throughput".into(),
            format!(
                "{} tokens/s/GPU · {:.0} TFLOPS/GPU",
                thousands(s.tokens_per_gpu_s),
                s.tflops_per_gpu
            ),
        ],
        vec![
            "GPU-hours".into(),
            format!("{} GPU-h", thousands(s.gpu_hours)),
        ],
        vec![
            "cost".into(),
            format!(
                "${} at ${}/GPU-hour",
                thousands(s.cost_usd),
                s.price_per_gpu_hour_usd
            ),
        ],
        vec!["wall-clock".into(), format!("{:.1} days", s.days)],
        vec!["energy".into(), format!("{:.0} MWh", s.energy_mwh)],
        vec![
            "memory per GPU".into(),
            format!(
                "{:.1} of {:.1} GiB",
                s.memory_gib_per_gpu, s.memory_gib.capacity
            ),
        ],
    ];
    blocks.push(table(&["figure", "trainsim"], rows));
    if i.published {
        let pre: f64 = s
            .phases
            .iter()
            .filter(|p| p.name == "pre-training")
            .map(|p| p.gpu_hours)
            .sum();
        let ctx: f64 = s
            .phases
            .iter()
            .filter(|p| p.name.starts_with("context-extension"))
            .map(|p| p.gpu_hours)
            .sum();
        let ours = [pre, ctx, s.gpu_hours, s.cost_usd];
        let rows = PUBLISHED
            .iter()
            .zip(ours)
            .map(|(&(what, published, source), predicted)| {
                vec![
                    what.to_string(),
                    thousands(predicted),
                    thousands(published),
                    pct(predicted / published - 1.0),
                    source.to_string(),
                ]
            })
            .collect();
        blocks.push(Block::Para(
            "Published figures for this run beside trainsim's (nothing was fitted to them):".into(),
        ));
        blocks.push(table(
            &["figure", "trainsim", "published", "error", "source"],
            rows,
        ));
    }
    Section {
        title: "Headline".into(),
        blocks,
    }
}

fn breakdown(i: &Input) -> Section {
    let s = i.summary;
    let rows = breakdown_rows(s);
    let segs: Vec<(String, f64)> = rows
        .iter()
        .map(|(k, v)| (k.strip_prefix("exposed_").unwrap_or(k).to_string(), *v))
        .collect();
    let svg = plots::stacked_bars(
        "Where one step goes",
        "time per step (s)",
        &[("slowest rank".to_string(), segs)],
        Some((&format!("step {:.2} s", s.step_time_s), s.step_time_s)),
    );
    let table_rows = rows
        .iter()
        .map(|(k, v)| {
            vec![
                k.replace('_', " "),
                format!("{v:.3}"),
                format!("{:.1}%", 100.0 * v / s.step_time_s),
            ]
        })
        .collect();
    let mut blocks = vec![
        Block::Para(format!(
            "The slowest pipeline rank's {:.2} s step: compute {:.2} s, pipeline bubble {:.2} s, exposed communication {:.2} s, optimizer {:.3} s. Communication hidden behind compute is not counted.",
            s.step_time_s,
            s.breakdown_s.compute,
            s.breakdown_s.bubble,
            s.breakdown_s.exposed_comm,
            s.breakdown_s.optimizer
        )),
        Block::Plot {
            file: "breakdown.svg".into(),
            alt: "stacked bar of the step time by component".into(),
            svg,
        },
        table(&["component", "time per step (s)", "share"], table_rows),
    ];
    if !s.breakdown_s.stream_busy.is_empty() {
        blocks.push(table(
            &["stream", "busy per step (s)"],
            s.breakdown_s
                .stream_busy
                .iter()
                .map(|(k, v)| vec![k.clone(), format!("{v:.3}")])
                .collect(),
        ));
    }
    Section {
        title: "Step breakdown".into(),
        blocks,
    }
}

/// A task's kind on the timeline: its pass or communication kind, and for DualPipe the
/// direction its micro-batch travels (the second half of the micro-batches runs the other way).
fn timeline_kind(i: &Input, tt: &crate::step::TimedTask) -> String {
    let base = category(tt.task.pass);
    let dual = matches!(i.summary.layout.schedule, crate::domain::Schedule::Dualpipe);
    let reverse = dual
        && tt.task.label.mb != u16::MAX
        && (tt.task.label.mb as u64) >= i.summary.layout.micro_batches / 2;
    if reverse && matches!(tt.task.pass, Pass::Fwd | Pass::Bwd | Pass::Wgrad) {
        format!("{base} (reverse)")
    } else {
        base.to_string()
    }
}

fn timeline(i: &Input) -> Section {
    let Some(t) = i.timeline else {
        return Section {
            title: "One step on a timeline".into(),
            blocks: vec![Block::Para(
                "The analytic engine has no timeline; run with the discrete-event engine (`--engine des`, the default) to see one."
                    .into(),
            )],
        };
    };
    let reps = t.replicas.max(1);
    // One pass over the tasks: spans by (stage, stream) for each stage's first GPU.
    let stages = (t.gpus / reps) as usize;
    let mut spans: Vec<Vec<(f64, f64, String)>> = vec![Vec::new(); stages * STREAM_NAMES.len()];
    for tt in &t.tasks {
        let g = tt.task.gpu;
        if g % reps != 0 || tt.end_ps <= tt.start_ps {
            continue;
        }
        let slot = (g / reps) as usize * STREAM_NAMES.len() + tt.task.stream as usize;
        if let Some(v) = spans.get_mut(slot) {
            v.push((
                tt.start_ps as f64 / 1e12,
                tt.end_ps as f64 / 1e12,
                timeline_kind(i, tt),
            ));
        }
    }
    let lanes: Vec<Lane> = spans
        .into_iter()
        .enumerate()
        .filter(|(_, v)| !v.is_empty())
        .map(|(slot, spans)| Lane {
            name: format!(
                "stage {} · {}",
                slot / STREAM_NAMES.len(),
                STREAM_NAMES[slot % STREAM_NAMES.len()]
            ),
            spans,
        })
        .collect();
    let svg = plots::timeline(
        "One training step, every pipeline stage",
        &lanes,
        t.makespan_ps as f64 / 1e12,
    );
    let dual = matches!(i.summary.layout.schedule, crate::domain::Schedule::Dualpipe);
    let mut text = format!(
        "Each row is one stream of one pipeline stage's GPU (stage 0 at the top): compute, the second weight-gradient compute stream, expert/tensor communication, pipeline sends and data-parallel sync. Gaps on the compute rows are the bubble. {} tasks, {:.2} s.",
        t.tasks.len(),
        t.makespan_ps as f64 / 1e12
    );
    if dual {
        text.push_str(" DualPipe feeds micro-batches from both ends of the pipeline: \"(reverse)\" marks the half that enters at the last stage; the long stretches where forward and backward of the two directions alternate on one stage are the overlapped F&B pairs, with their all-to-all on the communication row beneath.");
    }
    Section {
        title: "One step on a timeline".into(),
        blocks: vec![
            Block::Para(text),
            Block::Plot {
                file: "timeline.svg".into(),
                alt: "Gantt chart of one step".into(),
                svg,
            },
        ],
    }
}

fn memory(i: &Input) -> Section {
    let m = &i.summary.memory_gib;
    let svg = plots::stacked_bars(
        "Peak memory per GPU",
        "memory per GPU (GiB)",
        &[(
            "fullest GPU".into(),
            vec![
                ("weights".into(), m.weights),
                ("grads".into(), m.grads),
                ("optimizer_state".into(), m.optimizer),
                ("activations".into(), m.activations),
            ],
        )],
        Some((&format!("HBM {:.1} GiB", m.capacity), m.capacity)),
    );
    let rows = [
        ("weights", m.weights),
        ("gradients", m.grads),
        ("optimizer state", m.optimizer),
        ("activations (peak in flight)", m.activations),
        ("total", i.summary.memory_gib_per_gpu),
        ("HBM capacity", m.capacity),
    ]
    .iter()
    .map(|(k, v)| vec![k.to_string(), format!("{v:.1}")])
    .collect();
    Section {
        title: "Memory per GPU".into(),
        blocks: vec![
            Block::Plot {
                file: "memory.svg".into(),
                alt: "stacked bar of peak memory per GPU against HBM".into(),
                svg,
            },
            table(&["part", "GiB"], rows),
        ],
    }
}

fn phases(i: &Input) -> Section {
    let s = i.summary;
    let svg = plots::bars(
        "Cost by phase",
        "cost (million USD)",
        "cost",
        &s.phases
            .iter()
            .map(|p| (p.name.clone(), p.cost_usd / 1e6))
            .collect::<Vec<_>>(),
    );
    let rows = s
        .phases
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                if p.simulated {
                    "simulated".into()
                } else {
                    "as reported".into()
                },
                if p.simulated {
                    format!("{:.3e}", p.tokens)
                } else {
                    "—".into()
                },
                if p.simulated {
                    thousands(p.steps)
                } else {
                    "—".into()
                },
                if p.simulated {
                    format!("{:.2}", p.step_time_s)
                } else {
                    "—".into()
                },
                thousands(p.gpus as f64),
                thousands(p.gpu_hours),
                thousands(p.cost_usd),
                format!("{:.1}", p.days),
            ]
        })
        .collect();
    Section {
        title: "Phases".into(),
        blocks: vec![
            table(
                &[
                    "phase",
                    "how",
                    "tokens",
                    "steps",
                    "step time (s)",
                    "GPUs",
                    "GPU-hours",
                    "cost (USD)",
                    "days",
                ],
                rows,
            ),
            Block::Plot {
                file: "phases.svg".into(),
                alt: "cost of each phase".into(),
                svg,
            },
        ],
    }
}

fn network(i: &Input) -> Section {
    let c = i.cluster;
    let mut blocks = vec![Block::Para(format!(
        "{} nodes of {} GPUs; NVLink {:.0} GB/s per GPU per direction; {} NICs per node at {:.0} GB/s each, {} plane(s) of {} leaves and {} spines{}.",
        c.nodes,
        c.gpus_per_node,
        c.scale_up.bytes_per_s / 1e9,
        c.nics_per_node,
        c.nic.bytes_per_s / 1e9,
        c.planes,
        c.leaves_per_plane,
        c.spines_per_plane,
        if c.pods > 1 {
            format!(
                " in {} pods of {} nodes under {} core groups",
                c.pods,
                c.pod_nodes(),
                c.cores_per_plane
            )
        } else {
            String::new()
        }
    ))];
    if let Some(t) = i.timeline {
        // Per communication kind on the breakdown's GPU: bytes it contributed, busy time, and
        // the link classes it crosses.
        let g = t.bottleneck_gpu;
        let mut rows: Vec<Vec<String>> = Vec::new();
        for (k, kind) in crate::workload::ops::CommKind::ALL.iter().enumerate() {
            let tasks: Vec<_> = t
                .tasks
                .iter()
                .filter(|tt| tt.task.gpu == g && tt.task.pass == Pass::Comm(*kind))
                .collect();
            if tasks.is_empty() {
                continue;
            }
            let bytes: f64 = tasks
                .iter()
                .filter_map(|tt| t.details.get(tt.task.label.detail as usize))
                .map(|d| d.bytes)
                .sum();
            let busy: f64 = tasks
                .iter()
                .map(|tt| (tt.end_ps - tt.start_ps) as f64 / 1e12)
                .sum();
            let classes = if t.nic[k] {
                if *kind == crate::workload::ops::CommKind::Ep {
                    "NIC (PCIe → NIC → leaf → spine), then NVLink"
                } else {
                    "NIC (PCIe → NIC → leaf → spine)"
                }
            } else {
                "NVLink"
            };
            rows.push(vec![
                category(Pass::Comm(*kind)).to_string(),
                classes.into(),
                tasks.len().to_string(),
                format!("{:.2}", bytes / 1e9),
                format!("{busy:.3}"),
            ]);
        }
        blocks.push(Block::Para(format!(
            "Traffic of GPU {g} (the breakdown's) in one step, by kind: the buffer bytes each transfer moves, and the time its transfers ran (hidden or not)."
        )));
        blocks.push(table(
            &[
                "kind",
                "link classes",
                "transfers",
                "buffer (GB per step)",
                "busy (s per step)",
            ],
            rows,
        ));
        // The links those transfers load, one instance of each operation as the flow-level
        // network carries it on its group's GPUs.
        let step = t.makespan_ps as f64 / 1e12;
        let mut per_link: std::collections::BTreeMap<u32, f64> = Default::default();
        for tt in t.tasks.iter().filter(|tt| tt.task.gpu == g) {
            if let Some(d) = t.details.get(tt.task.label.detail as usize) {
                for &(l, b) in &d.links {
                    *per_link.entry(l).or_default() += b;
                }
            }
        }
        let busy = |l: &u32, b: f64| b / t.links[l].bytes_per_s;
        let mut classes: Vec<(&str, usize, f64, f64)> = Vec::new();
        for class in ["NVLink", "PCIe", "NIC–leaf", "leaf–spine", "spine–core"] {
            let of: Vec<(&u32, &f64)> = per_link
                .iter()
                .filter(|(l, _)| t.links[*l].class == class)
                .collect();
            if of.is_empty() {
                continue;
            }
            let bytes: f64 = of.iter().map(|(_, b)| **b).sum();
            let top = of.iter().map(|(l, b)| busy(l, **b)).fold(0.0, f64::max);
            classes.push((class, of.len(), bytes, top));
        }
        if !classes.is_empty() {
            blocks.push(Block::Para(format!(
                "The links those transfers load in one step, each operation placed on its group's GPUs as the flow-level network simulates it (wire bytes, protocol efficiency included; busy time at line rate). GPU {g}'s groups stand for every group of the layout."
            )));
            blocks.push(table(
                &[
                    "link class",
                    "links used",
                    "GB per step",
                    "busiest link (s at line rate)",
                    "busiest link's share of the step",
                ],
                classes
                    .iter()
                    .map(|(c, n, b, top)| {
                        vec![
                            c.to_string(),
                            n.to_string(),
                            format!("{:.1}", b / 1e9),
                            format!("{top:.3}"),
                            format!("{:.1}%", 100.0 * top / step),
                        ]
                    })
                    .collect(),
            ));
            let mut ranked: Vec<(&u32, &f64)> = per_link.iter().collect();
            ranked.sort_by(|a, b| {
                busy(b.0, *b.1)
                    .total_cmp(&busy(a.0, *a.1))
                    .then(a.0.cmp(b.0))
            });
            blocks.push(table(
                &[
                    "busiest links",
                    "class",
                    "GB per step",
                    "s at line rate",
                    "share of step",
                ],
                ranked
                    .iter()
                    .take(10)
                    .map(|(l, b)| {
                        let info = &t.links[*l];
                        vec![
                            info.name.clone(),
                            info.class.to_string(),
                            format!("{:.1}", **b / 1e9),
                            format!("{:.3}", busy(l, **b)),
                            format!("{:.1}%", 100.0 * busy(l, **b) / step),
                        ]
                    })
                    .collect(),
            ));
        }
        blocks.push(Block::Para("Each operation is simulated on the topology with its sibling groups and cached; these loads add up what the step's operations put on each link, whenever they ran. In the step they share one network: concurrent transfers contend for every link they have in common.".into()));
    }
    Section {
        title: "Network".into(),
        blocks,
    }
}

/// Whether a comment carries a mark (not one quoted, as a legend explaining the marks does).
fn marked(comment: &str) -> bool {
    ["[inferred]", "[assumed]"]
        .iter()
        .any(|m| comment.contains(m) && !comment.contains(&format!("\"{m}\"")))
}

/// Every `[inferred]` / `[assumed]` mark in a YAML document: (line, key path, comment).
pub fn marked_assumptions(text: &str) -> Vec<(usize, String, String)> {
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut out: Vec<(usize, String, String)> = Vec::new();
    // A marked comment on its own line waits for the key below it; in the comments that open
    // the document, before any key, it speaks of the whole document.
    let mut pending: Option<(usize, String, bool)> = None;
    let mut open: Option<usize> = None;
    // Items seen so far of each list: (its indent, the path it hangs from, count).
    let mut lists: Vec<(usize, String, usize)> = Vec::new();
    let mut seen_key = false;
    let joined = |stack: &[(usize, String)]| {
        stack
            .iter()
            .map(|(_, k)| k.as_str())
            .collect::<Vec<_>>()
            .join(".")
    };
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let mut indent = line.len() - trimmed.len();
        if trimmed.starts_with('#') {
            let comment = trimmed.trim_start_matches('#').trim().to_string();
            if marked(&comment) {
                pending = Some((n + 1, comment, !seen_key));
                open = None;
            } else if let Some((_, c, _)) = pending.as_mut() {
                c.push(' ');
                c.push_str(&comment);
            } else if let Some(i) = open {
                out[i].2.push(' ');
                out[i].2.push_str(&comment);
            }
            continue;
        }
        open = None;
        let (mut code, comment) = match trimmed.find(" #") {
            Some(p) => (&trimmed[..p], Some(trimmed[p + 2..].trim())),
            None => (trimmed, None),
        };
        if let Some(item) = code.strip_prefix("- ") {
            // A list item: its index joins the path, and its keys sit two columns further in.
            while stack.last().is_some_and(|(i, _)| *i >= indent) {
                stack.pop();
            }
            let parent = joined(&stack);
            let idx = match lists
                .iter_mut()
                .find(|(i, p, _)| *i == indent && *p == parent)
            {
                Some(l) => {
                    l.2 += 1;
                    l.2
                }
                None => {
                    lists.push((indent, parent, 0));
                    0
                }
            };
            stack.push((indent, idx.to_string()));
            indent += 2;
            code = item;
        }
        let key = code
            .split_once(':')
            .map(|(k, _)| k.trim().to_string())
            .filter(|k| !k.is_empty() && !k.contains(' ') && !k.starts_with('{'));
        if let Some(k) = &key {
            while stack.last().is_some_and(|(i, _)| *i >= indent) {
                stack.pop();
            }
            stack.push((indent, k.clone()));
            seen_key = true;
        }
        let path = joined(&stack);
        if let Some((line_no, c, document)) = pending.take() {
            out.push((
                line_no,
                if document {
                    String::new()
                } else {
                    path.clone()
                },
                c,
            ));
        }
        if let Some(c) = comment.filter(|c| marked(c)) {
            out.push((n + 1, path, c.to_string()));
            open = Some(out.len() - 1);
        }
    }
    out
}

/// Every calibration constant: (path, value, source).
fn constants(cal: &Calibration) -> Vec<(String, String, String)> {
    fn walk(v: &serde_json::Value, path: &str, out: &mut Vec<(String, String, String)>) {
        if let serde_json::Value::Object(m) = v {
            if let (Some(val), Some(serde_json::Value::String(src))) =
                (m.get("value"), m.get("source"))
            {
                let shown = match val {
                    serde_json::Value::String(s) => s.clone(),
                    // A size or a bandwidth serialises as its base-unit number.
                    serde_json::Value::Object(q) if q.len() == 1 => match q.iter().next() {
                        Some((k, n)) if k == "bytes" => format!("{n} B"),
                        Some((k, n)) if k == "bytes_per_s" => format!("{n} B/s"),
                        _ => val.to_string(),
                    },
                    other => other.to_string(),
                };
                out.push((path.to_string(), shown, src.clone()));
                return;
            }
            for (k, sub) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk(sub, &p, out);
            }
        }
    }
    let v = serde_json::to_value(cal).expect("calibration serializes");
    let mut out = Vec::new();
    walk(&v, "", &mut out);
    out
}

fn assumptions(i: &Input) -> Section {
    let mut rows = Vec::new();
    for f in &i.files {
        for (line, path, comment) in marked_assumptions(&f.text) {
            rows.push(vec![
                format!("{}:{line}", f.name),
                if path.is_empty() {
                    "(document)".into()
                } else {
                    path
                },
                comment,
            ]);
        }
    }
    let mut blocks = vec![Block::Para(format!(
        "{} settings the inputs mark `[inferred]` or `[assumed]` (not stated by the run's publishers):",
        rows.len()
    ))];
    blocks.push(table(&["where", "key", "note"], rows));
    if !i.sets.is_empty() {
        blocks.push(Block::Para(format!(
            "Overrides on the command line: {}.",
            i.sets
                .iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let consts = constants(i.calibration);
    blocks.push(Block::Para(format!(
        "The {} calibration constants of `topologies/calibration.yaml` (or the `--calibration` file), each from a microbenchmark:",
        consts.len()
    )));
    blocks.push(table(
        &["constant", "value", "source"],
        consts.into_iter().map(|(p, v, s)| vec![p, v, s]).collect(),
    ));
    Section {
        title: "Assumptions".into(),
        blocks,
    }
}

fn reproduce(i: &Input) -> Section {
    let rows = i
        .files
        .iter()
        .map(|f| vec![f.name.clone(), sha256(&f.text)])
        .collect();
    Section {
        title: "Reproduce".into(),
        blocks: vec![
            Block::Para(format!(
                "Command: `{}`. Built from {}. The same inputs give the same numbers at any thread count; expert-load draws come from seed {} ({} routing).",
                i.command, i.version, i.summary.routing.seed, i.summary.routing.distribution
            )),
            table(&["input", "sha256"], rows),
        ],
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Markdown `code` spans become HTML `<code>`.
fn inline_html(s: &str) -> String {
    let mut out = String::new();
    for (n, part) in s.split('`').enumerate() {
        if n % 2 == 1 {
            let _ = write!(out, "<code>{}</code>", esc(part));
        } else {
            out.push_str(&esc(part));
        }
    }
    out
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

pub(crate) const CSS: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}table{border-collapse:collapse;margin:.8em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}th{background:#f3f3f3}td:nth-child(n+2){font-variant-numeric:tabular-nums}code{background:#f3f3f3;padding:0 .2em;border-radius:3px;font-size:.92em}figure{margin:1em 0}svg{max-width:100%;height:auto}nav a{margin-right:.8em}@media print{nav{display:none}h2{break-after:avoid}figure,table{break-inside:avoid}}";

/// Renders the report.
/// The estimate's uncertainty band, when the run priced one: each range, then each term.
fn band(i: &Input) -> Option<Section> {
    let b = i.summary.bands.as_ref()?;
    let range = |what: String,
                 r: &crate::report::summary::BandRange,
                 scale: f64,
                 fmt: &dyn Fn(f64) -> String| {
        vec![
            what,
            fmt(r.low / scale),
            fmt(r.central / scale),
            fmt(r.high / scale),
        ]
    };
    let two = |x: f64| format!("{x:.2}");
    let three = |x: f64| format!("{x:.3}");
    let mut rows = vec![
        range("step time (s)".into(), &b.step_time_s, 1.0, &two),
        range(
            "GPU-hours, all phases (M)".into(),
            &b.gpu_hours,
            1e6,
            &three,
        ),
    ];
    for p in &b.phases {
        rows.push(range(
            format!("GPU-hours, {} (M)", p.name),
            &p.gpu_hours,
            1e6,
            &three,
        ));
    }
    rows.push(range("cost (million USD)".into(), &b.cost_usd, 1e6, &three));
    let terms = b
        .terms
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                format!("{:+.2}", t.step_time_s),
                format!("{:+.3}", t.gpu_hours / 1e6),
            ]
        })
        .collect();
    Some(Section {
        title: "Uncertainty band".into(),
        blocks: vec![
            Block::Para(format!(
                "Each term is one alternative the inputs do not rule out (a calibration constant's or the workload's `alternatives`, or every kernel class moved by its calibration residual), priced as a run of its own on the {} engine. The low and high ends add the terms on each side to the central estimate: first order, the terms one at a time.",
                b.terms_engine
            )),
            table(&["quantity", "low", "central", "high"], rows),
            table(&["term", "step time (s)", "GPU-hours (M)"], terms),
        ],
    })
}

/// Failures, checkpoints, restarts and stragglers: ideal against effective, where the
/// difference goes, the assumptions that drive it, and a Monte Carlo's percentiles.
fn goodput(i: &Input) -> Option<Section> {
    let g = i.summary.goodput.as_ref()?;
    let bars = g
        .phases
        .iter()
        .map(|p| {
            let h = |s: f64| s * p.gpus as f64 / 3600.0 / 1e3;
            (
                p.name.clone(),
                vec![
                    ("training".to_string(), h(p.ideal_s)),
                    ("stragglers".to_string(), h(p.straggler_s)),
                    ("checkpoints".to_string(), h(p.checkpoint_stall_s)),
                    ("lost work".to_string(), h(p.lost_s)),
                    ("restarts".to_string(), h(p.restart_s)),
                ],
            )
        })
        .collect::<Vec<_>>();
    let svg = plots::stacked_bars(
        "Where each phase's GPU-hours go",
        "GPU-hours (thousand GPU-h)",
        &bars,
        None,
    );
    let rows = i
        .summary
        .phases
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                thousands(p.gpu_hours),
                thousands(p.effective_gpu_hours),
                thousands(p.effective_cost_usd),
                format!("{:.1}", p.days),
                format!("{:.1}", p.effective_days),
                format!("{:.1}%", p.ettr * 100.0),
            ]
        })
        .collect();
    let pct = |h: f64| format!("{:.2}%", 100.0 * h / g.ideal_gpu_hours.max(1e-9));
    let whereto = vec![
        vec![
            "lost work (since the last checkpoint)".into(),
            thousands(g.lost_gpu_hours),
            pct(g.lost_gpu_hours),
        ],
        vec![
            "restarts".into(),
            thousands(g.restart_gpu_hours),
            pct(g.restart_gpu_hours),
        ],
        vec![
            "checkpoint stalls".into(),
            thousands(g.checkpoint_gpu_hours),
            pct(g.checkpoint_gpu_hours),
        ],
        vec![
            "stragglers".into(),
            thousands(g.straggler_gpu_hours),
            pct(g.straggler_gpu_hours),
        ],
    ];
    let drivers = g
        .drivers
        .iter()
        .map(|d| {
            vec![
                d.what.clone(),
                format!("{:+}", thousands(d.effective_gpu_hours_delta)),
                format!(
                    "{:+.2}%",
                    100.0 * d.effective_gpu_hours_delta / g.ideal_gpu_hours.max(1e-9)
                ),
            ]
        })
        .collect();
    let causes = g
        .by_cause
        .iter()
        .map(|c| {
            vec![
                c.cause.name().to_string(),
                format!("{:.1}", c.interruptions),
            ]
        })
        .collect();
    let mut blocks = vec![
        Block::Para(format!(
            "Ideal {} GPU-hours become {} effective (${}, {:.1} days): ETTR {:.1}%, {:.0} interruptions ({:.0} planned), one every {:.1} h in the longest phase. A {:.2} TB checkpoint every {:.1} min ({} rule; Young's √(2CM) gives {:.1} min) stalls training {:.1} s ({}); a restart takes {:.1} min. The model: interruptions arrive in wall-clock time at the causes' rates per GPU-hour times the phase's GPUs; an unplanned one loses the work since the last written checkpoint and restarts; planned maintenance drains with a checkpoint first; stragglers stretch every step by the chance that one node is slow.",
            thousands(g.ideal_gpu_hours),
            thousands(g.effective_gpu_hours),
            thousands(g.effective_cost_usd),
            g.effective_days,
            g.ettr * 100.0,
            g.interruptions,
            g.planned_interruptions,
            g.mtbi_h,
            g.checkpoint_bytes / 1e12,
            g.checkpoint_interval_s / 60.0,
            g.interval_rule,
            g.young_interval_s / 60.0,
            g.checkpoint_stall_s,
            g.checkpoint_mode,
            g.restart_s / 60.0,
        )),
        table(
            &[
                "phase",
                "ideal GPU-hours",
                "effective GPU-hours",
                "effective cost (USD)",
                "ideal days",
                "effective days",
                "ETTR",
            ],
            rows,
        ),
        table(&["where the difference goes", "GPU-hours", "of ideal"], whereto),
        Block::Plot {
            file: "goodput.svg".into(),
            alt: "each phase's GPU-hours: training, stragglers, checkpoints, lost work, restarts".into(),
            svg,
        },
        table(&["assumption doubled", "effective GPU-hours", "of ideal"], drivers),
        table(&["cause", "expected interruptions"], causes),
        table(
            &["reliability default (where the workload does not set it)", "source"],
            crate::config::reliability::DEFAULT_SOURCES
                .iter()
                .map(|(k, v)| vec![format!("reliability.{k}"), v.to_string()])
                .collect(),
        ),
    ];
    if let Some(m) = &g.monte_carlo {
        let r = |what: &str, p: &crate::cost::goodput::Percentiles, f: &dyn Fn(f64) -> String| {
            vec![what.to_string(), f(p.p10), f(p.p50), f(p.p90), f(p.mean)]
        };
        blocks.push(Block::Para(format!(
            "Monte Carlo: {} trials from seed {}, {} gaps between interruptions. Reproduce with `--reliability monte-carlo --seed {} --trials {}`.",
            m.trials,
            m.seed,
            match m.distribution {
                crate::config::reliability::FailureDistribution::Exponential => "exponential".to_string(),
                crate::config::reliability::FailureDistribution::Weibull =>
                    format!("Weibull (shape {})", m.weibull_shape.unwrap_or(1.0)),
            },
            m.seed,
            m.trials
        )));
        blocks.push(table(
            &["figure", "P10", "P50", "P90", "mean"],
            vec![
                r("days", &m.days, &|v| format!("{v:.2}")),
                r("GPU-hours", &m.gpu_hours, &|v| thousands(v)),
                r("cost (USD)", &m.cost_usd, &|v| thousands(v)),
                r("ETTR", &m.ettr, &|v| format!("{:.2}%", v * 100.0)),
                r("interruptions", &m.interruptions, &|v| format!("{v:.0}")),
            ],
        ));
    }
    Some(Section {
        title: "Goodput: failures, checkpoints, restarts, stragglers".into(),
        blocks,
    })
}

pub fn render(i: &Input) -> Rendered {
    let mut sections = vec![headline(i), breakdown(i), timeline(i), memory(i), phases(i)];
    sections.extend(goodput(i));
    sections.extend(band(i));
    sections.extend([network(i), assumptions(i), reproduce(i)]);
    let title = format!(
        "trainsim report: {} on {}",
        i.summary.workload, i.summary.topology
    );
    render_doc(&title, &i.version, &i.command, &sections)
}

/// Renders `sections` as the HTML page and the Markdown document (with the plots' files).
pub(crate) fn render_doc(
    title: &str,
    version: &str,
    command: &str,
    sections: &[Section],
) -> Rendered {
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<h1>{}</h1>\n<p>{} · {}</p>\n<nav>",
        esc(title),
        esc(title),
        esc(version),
        inline_html(&format!("`{command}`"))
    );
    let anchor = |t: &str| t.to_ascii_lowercase().replace(' ', "-");
    for s in sections {
        let _ = write!(
            html,
            "<a href=\"#{}\">{}</a>",
            anchor(&s.title),
            esc(&s.title)
        );
    }
    html.push_str("</nav>\n");
    let mut md = format!("# {title}\n\n{version} · `{}`\n\n", md_cell(command));
    let mut plots = Vec::new();
    for s in sections {
        let _ = writeln!(
            html,
            "<section id=\"{}\">\n<h2>{}</h2>",
            anchor(&s.title),
            esc(&s.title)
        );
        let _ = writeln!(md, "## {}\n", s.title);
        for b in &s.blocks {
            match b {
                Block::Para(p) => {
                    let _ = writeln!(html, "<p>{}</p>", inline_html(p));
                    let _ = writeln!(md, "{p}\n");
                }
                Block::Table { head, rows } => {
                    html.push_str("<table>\n<thead><tr>");
                    for h in head {
                        let _ = write!(html, "<th>{}</th>", inline_html(h));
                    }
                    html.push_str("</tr></thead>\n<tbody>\n");
                    for r in rows {
                        html.push_str("<tr>");
                        for c in r {
                            let _ = write!(html, "<td>{}</td>", inline_html(c));
                        }
                        html.push_str("</tr>\n");
                    }
                    html.push_str("</tbody>\n</table>\n");
                    let _ = writeln!(
                        md,
                        "| {} |\n|{}|",
                        head.iter()
                            .map(|h| md_cell(h))
                            .collect::<Vec<_>>()
                            .join(" | "),
                        head.iter().map(|_| "---").collect::<Vec<_>>().join("|")
                    );
                    for r in rows {
                        let _ = writeln!(
                            md,
                            "| {} |",
                            r.iter().map(|c| md_cell(c)).collect::<Vec<_>>().join(" | ")
                        );
                    }
                    md.push('\n');
                }
                Block::Plot { file, alt, svg } => {
                    let body = svg.find("<svg").map_or(svg.as_str(), |p| &svg[p..]);
                    let _ = writeln!(
                        html,
                        "<figure role=\"img\" aria-label=\"{}\">\n{}\n</figure>",
                        esc(alt),
                        body
                    );
                    let _ = writeln!(md, "![{alt}]({file})\n");
                    plots.push((file.clone(), svg.clone()));
                }
            }
        }
        html.push_str("</section>\n");
    }
    html.push_str("</body>\n</html>\n");
    Rendered {
        html,
        markdown: md,
        plots,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Marks trail a key or stand on their own line above it; continuation lines join them.
    #[test]
    fn assumptions_are_found_with_their_key_paths() {
        let yaml = "# \"[inferred]\" marks what the papers do not state.\n# [inferred] the loss kernel is not published:\n# priced as memory-bound.\nname: x\ntraining:\n  precision:\n    gemm: fp8\n    grad_comm: fp32        # [inferred] no compression\n  phases:\n    # [assumed] layout of the phase\n    - name: ctx\n      tp: 1\nparallelism:\n  dp: auto   # 2048 / 16 = 128 [inferred]\n";
        let got = marked_assumptions(yaml);
        assert_eq!(
            got,
            vec![
                (
                    2,
                    String::new(),
                    "[inferred] the loss kernel is not published: priced as memory-bound."
                        .to_string()
                ),
                (
                    8,
                    "training.precision.grad_comm".to_string(),
                    "[inferred] no compression".to_string()
                ),
                (
                    10,
                    "training.phases.0.name".to_string(),
                    "[assumed] layout of the phase".to_string()
                ),
                (
                    14,
                    "parallelism.dp".to_string(),
                    "2048 / 16 = 128 [inferred]".to_string()
                ),
            ]
        );
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(2_788_000.4), "2,788,000");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(-1234.0), "-1,234");
    }

    #[test]
    fn every_calibration_constant_is_listed_with_its_source() {
        let cal = crate::builtin::calibration();
        let c = constants(&cal);
        assert!(c.len() > 20, "{}", c.len());
        assert!(c
            .iter()
            .any(|(p, _, s)| p == "gemm.mma_efficiency_fp8" && s.len() > 10));
        assert!(c.iter().all(|(_, _, s)| !s.is_empty()));
    }
}
