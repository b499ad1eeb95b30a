//! The report's tables as CSV (`--csv`): `breakdown.csv`, `phases.csv` and `stages.csv`, with
//! units in the headers. Written with the `csv` crate; the rows are the same ones the HTML and
//! Markdown reports show.

use super::Summary;

/// The step breakdown as (component, seconds per step), in the order the stacked bar draws it:
/// forward, backward, weight gradients, bubble, exposed communication by kind, optimizer.
pub fn breakdown_rows(s: &Summary) -> Vec<(String, f64)> {
    let b = &s.breakdown_s;
    let mut rows = vec![
        ("forward".to_string(), b.forward),
        ("backward".to_string(), b.backward),
        ("weight_grad".to_string(), b.weight_grad),
        ("bubble".to_string(), b.bubble),
    ];
    for (k, v) in &b.exposed_comm_by_kind {
        rows.push((format!("exposed_{k}"), *v));
    }
    rows.push(("optimizer".to_string(), b.optimizer));
    rows
}

/// A terminal table: the header, then the rows, each column padded to its widest cell, two
/// spaces between columns, every line ending in a newline.
pub(crate) fn aligned(head: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..head.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count())
                .chain([head[c].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| -> String {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
            + "\n"
    };
    let mut t = line(&head.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    for r in rows {
        t += &line(r);
    }
    t
}

/// A CSV table: the header, then the rows.
pub(crate) fn table_csv(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(head).expect("CSV");
    for r in rows {
        w.write_record(r).expect("CSV");
    }
    finish(w)
}

pub(crate) fn finish(w: csv::Writer<Vec<u8>>) -> String {
    String::from_utf8(w.into_inner().expect("writing to memory cannot fail"))
        .expect("CSV of UTF-8 fields is UTF-8")
}

fn num(v: f64) -> String {
    format!("{v}")
}

/// `breakdown.csv`: one row per component of the step.
pub fn breakdown_csv(s: &Summary) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["component", "time_per_step (s)", "share_of_step (%)"])
        .expect("in memory");
    for (k, v) in breakdown_rows(s) {
        w.write_record([k, num(v), num(100.0 * v / s.step_time_s)])
            .expect("in memory");
    }
    w.write_record(["step".to_string(), num(s.step_time_s), num(100.0)])
        .expect("in memory");
    finish(w)
}

/// `phases.csv`: one row per phase of the run.
pub fn phases_csv(s: &Summary) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "phase",
        "simulated",
        "tokens",
        "steps",
        "step_time (s)",
        "gpus",
        "gpu_hours (GPU-h)",
        "cost (USD)",
        "days (d)",
        "effective_gpu_hours (GPU-h)",
        "effective_cost (USD)",
        "effective_days (d)",
        "ettr (fraction)",
    ])
    .expect("in memory");
    for p in &s.phases {
        w.write_record([
            p.name.clone(),
            p.simulated.to_string(),
            num(p.tokens),
            num(p.steps),
            num(p.step_time_s),
            p.gpus.to_string(),
            num(p.gpu_hours),
            num(p.cost_usd),
            num(p.days),
            num(p.effective_gpu_hours),
            num(p.effective_cost_usd),
            num(p.effective_days),
            num(p.ettr),
        ])
        .expect("in memory");
    }
    finish(w)
}

/// `stages.csv`: one row per pipeline chunk, its per-micro-batch times and communication.
pub fn stages_csv(s: &Summary) -> String {
    let kinds: Vec<String> = {
        let mut k: Vec<String> = s
            .stages
            .iter()
            .flat_map(|c| c.comm.keys().cloned())
            .collect();
        k.sort();
        k.dedup();
        k
    };
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut head = vec![
        "chunk".to_string(),
        "first_block".into(),
        "end_block".into(),
        "extras".into(),
        "forward_per_micro_batch (s)".into(),
        "backward_per_micro_batch (s)".into(),
        "weight_grad_per_micro_batch (s)".into(),
        "attention_per_micro_batch (s)".into(),
    ];
    head.extend(
        kinds
            .iter()
            .map(|k| format!("comm_{k}_per_micro_batch (s)")),
    );
    head.push("kernels_per_micro_batch".into());
    w.write_record(&head).expect("in memory");
    for (i, c) in s.stages.iter().enumerate() {
        let mut row = vec![
            i.to_string(),
            c.blocks.0.to_string(),
            c.blocks.1.to_string(),
            c.extras.clone(),
            num(c.fwd),
            num(c.bwd),
            num(c.wgrad),
            num(c.attention),
        ];
        row.extend(
            kinds
                .iter()
                .map(|k| num(c.comm.get(k).copied().unwrap_or(0.0))),
        );
        row.push(c.kernels.to_string());
        w.write_record(&row).expect("in memory");
    }
    finish(w)
}
