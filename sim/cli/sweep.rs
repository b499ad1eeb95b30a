//! `trainsim sweep`: a scenario at every point of a grid, and `trainsim sweep merge` for the
//! shards a job scheduler ran.

use super::{calibration, read_source, source};
use crate::config::{parse_doc, Diagnostic, Override, Source};
use crate::pipeline::{self, Engine};
use crate::report::{document, sweep as out};
use crate::scenario::sweep::{self, Axis, EngineSpec, Meta, SweepFile};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SweepArgs {
    #[command(subcommand)]
    pub merge: Option<SweepCommand>,
    /// A sweep file (workloads/sweeps/*.yaml); axes given with --axis add to its own.
    pub file: Option<PathBuf>,
    /// Topology YAML (default: the file's, or the embedded 2,048 × H800 cluster).
    #[arg(long)]
    pub topology: Option<PathBuf>,
    /// Workload YAML (default: the file's, or the embedded DeepSeek-V3 pre-training run).
    #[arg(long)]
    pub workload: Option<PathBuf>,
    /// An override at every point, as with `run --set`. Repeatable.
    #[arg(long = "set", value_name = "DOC.PATH=VALUE")]
    pub set: Vec<String>,
    /// An axis: PATH=VALUES, a list ("100 GB/s,200 GB/s") or a range with a step
    /// ("50 Gb/s..800 Gb/s x2", "$1..$4 +$0.5"). Repeatable.
    #[arg(long = "axis", value_name = "PATH=VALUES")]
    pub axis: Vec<String>,
    /// Pair the axes' values element-wise instead of taking their product.
    #[arg(long)]
    pub zip: bool,
    /// Engine at every point (default: the file's, or des).
    #[arg(long, value_enum)]
    pub engine: Option<super::run::EngineArg>,
    /// Output directory.
    #[arg(long, default_value = "results/sweep")]
    pub out: PathBuf,
    /// Threads (default: all cores). The output does not depend on it.
    #[arg(short = 'j', long = "jobs", value_name = "N", default_value_t = 0)]
    pub jobs: usize,
    /// Run only shard K of N (1-based). Read from SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT
    /// when not given.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,
    /// Keep the rows already in --out's sweep.jsonl and run only the missing points.
    #[arg(long)]
    pub resume: bool,
    /// A metric to plot (default: step_time, gpu_hours, dollars). Repeatable.
    #[arg(long, value_name = "METRIC")]
    pub plot: Vec<String>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(clap::Subcommand, Debug)]
pub enum SweepCommand {
    /// Join the outputs of a sweep's shards into what one unsharded run writes.
    Merge {
        /// The shards' output directories.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Output directory.
        #[arg(long, default_value = "results/sweep")]
        out: PathBuf,
    },
}

/// The shard from `--shard`, or from a Slurm array task's environment.
fn shard(a: &SweepArgs) -> Result<Option<(usize, usize)>, Diagnostic> {
    if let Some(s) = &a.shard {
        return sweep::parse_shard(s).map(Some);
    }
    let var = |k: &str| std::env::var(k).ok();
    match (var("SLURM_ARRAY_TASK_ID"), var("SLURM_ARRAY_TASK_COUNT")) {
        (Some(id), Some(n)) => {
            let min = var("SLURM_ARRAY_TASK_MIN").unwrap_or_else(|| "0".into());
            let bad = || {
                Diagnostic::new(
                    "SLURM_ARRAY_TASK_ID",
                    format!("task {id} of {n} (min {min})"),
                    "a Slurm array task id between SLURM_ARRAY_TASK_MIN and MIN + COUNT - 1",
                )
            };
            let (id, n, min): (usize, usize, usize) = (
                id.parse().map_err(|_| bad())?,
                n.parse().map_err(|_| bad())?,
                min.parse().map_err(|_| bad())?,
            );
            let k = id.checked_sub(min).ok_or_else(bad)? + 1;
            sweep::parse_shard(&format!("{k}/{n}")).map(Some)
        }
        _ => Ok(None),
    }
}

/// Reads a directory's `sweep-meta.json` and `sweep.jsonl`.
fn read_rows(dir: &Path) -> Result<(Meta, Vec<out::Row>), Diagnostic> {
    let read = |name: &str| {
        let p = dir.join(name);
        std::fs::read_to_string(&p).map_err(|e| {
            Diagnostic::new(
                p.display().to_string(),
                format!("a file that cannot be read ({e})"),
                "the output of `trainsim sweep` (sweep-meta.json and sweep.jsonl)",
            )
        })
    };
    let meta: Meta = serde_json::from_str(&read("sweep-meta.json")?).map_err(|e| {
        Diagnostic::new(
            dir.join("sweep-meta.json").display().to_string(),
            format!("{e}"),
            "the sweep-meta.json that `trainsim sweep` writes",
        )
    })?;
    let rows = out::parse_jsonl(&read("sweep.jsonl")?).map_err(|e| {
        Diagnostic::new(
            dir.join("sweep.jsonl").display().to_string(),
            e,
            "one row per line, as `trainsim sweep` writes it",
        )
    })?;
    Ok((meta, rows))
}

fn merge(dirs: &[PathBuf], to: &Path) -> Result<(), Diagnostic> {
    let mut meta: Option<Meta> = None;
    let mut rows: Vec<out::Row> = Vec::new();
    for d in dirs {
        let (m, r) = read_rows(d)?;
        match &meta {
            Some(first) if *first != m => {
                return Err(Diagnostic::new(
                    d.join("sweep-meta.json").display().to_string(),
                    "the meta of another sweep",
                    format!(
                        "shards of one sweep (the same axes, inputs and engine as {})",
                        dirs[0].display()
                    ),
                ))
            }
            Some(_) => {}
            None => meta = Some(m),
        }
        rows.extend(r);
    }
    let meta = meta.expect("at least one directory (clap requires it)");
    rows.sort_by_key(|r| r.point);
    rows.dedup_by(|a, b| a == b);
    if let Some(w) = rows.windows(2).find(|w| w[0].point == w[1].point) {
        return Err(Diagnostic::new(
            "sweep merge",
            format!("two different rows for point {}", w[0].point),
            "shards that ran each point once",
        ));
    }
    let missing: Vec<usize> = (0..meta.points)
        .filter(|i| rows.binary_search_by_key(i, |r| r.point).is_err())
        .collect();
    if !missing.is_empty() {
        return Err(Diagnostic::new(
            "sweep merge",
            format!(
                "{} of {} points missing (first: {:?})",
                missing.len(),
                meta.points,
                &missing[..missing.len().min(8)]
            ),
            "the output directories of every shard",
        ));
    }
    super::write_files(to, out::files(&meta, &rows))
}

pub(super) fn sweep(a: &SweepArgs) -> Result<(), Diagnostic> {
    if let Some(SweepCommand::Merge { dirs, out }) = &a.merge {
        return merge(dirs, out);
    }
    let cal = calibration(&None)?;
    let file: Option<(Source, SweepFile)> = match &a.file {
        Some(p) => {
            let src = read_source(p)?;
            let f: SweepFile = parse_doc(&src, &[])?;
            Some((src, f))
        }
        None => None,
    };
    let path = |cli: &Option<PathBuf>, key: fn(&SweepFile) -> &Option<String>| {
        cli.clone().or_else(|| {
            file.as_ref()
                .and_then(|(_, f)| key(f).clone())
                .map(PathBuf::from)
        })
    };
    let topo = source(
        &path(&a.topology, |f| &f.topology),
        pipeline::DEFAULT_TOPOLOGY,
    )?;
    let work = source(
        &path(&a.workload, |f| &f.workload),
        pipeline::DEFAULT_WORKLOAD,
    )?;
    let mut base_text: Vec<String> = file
        .as_ref()
        .map(|(_, f)| f.set.clone())
        .unwrap_or_default();
    base_text.extend(a.set.iter().cloned());
    let base = base_text
        .iter()
        .map(|s| Override::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let mut axes: Vec<Axis> = match &file {
        Some((src, f)) => sweep::file_axes(f, &src.name).map_err(|d| d.locate_in(&src.text))?,
        None => Vec::new(),
    };
    for x in &a.axis {
        axes.push(sweep::inline_axis(x)?);
    }
    let zip = a.zip || file.as_ref().is_some_and(|(_, f)| f.zip);
    let points = sweep::points(&axes, zip)?;
    sweep::check(&axes, &topo, &work, &base)?;
    let engine = match (a.engine, file.as_ref().and_then(|(_, f)| f.engine)) {
        (Some(super::run::EngineArg::Analytic), _) | (None, Some(EngineSpec::Analytic)) => {
            Engine::Analytic
        }
        _ => Engine::Des { full: false },
    };
    let mut plot: Vec<String> = file
        .as_ref()
        .map(|(_, f)| f.plot.clone())
        .unwrap_or_default();
    plot.extend(a.plot.iter().cloned());
    if plot.is_empty() {
        plot = out::DEFAULT_PLOTS.iter().map(|s| s.to_string()).collect();
    }
    if let Some(bad) = plot.iter().find(|p| out::metric(p).is_none()) {
        return Err(Diagnostic::new(
            "--plot",
            format!("\"{bad}\""),
            format!(
                "one of {}",
                out::METRICS
                    .iter()
                    .map(|m| m.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let title = file
        .as_ref()
        .and_then(|(_, f)| f.description.clone())
        .unwrap_or_else(|| {
            format!(
                "Sweep of {} ({} on {})",
                axes.iter()
                    .map(|x| x.name.as_str())
                    .collect::<Vec<_>>()
                    .join(" × "),
                work.name,
                topo.name
            )
        });
    let mut assumptions = Vec::new();
    for s in [&topo, &work] {
        for (line, key, note) in document::marked_assumptions(&s.text) {
            assumptions.push((format!("{}:{line}", s.name), key, note));
        }
    }
    let meta = Meta {
        title,
        engine: engine.name().to_string(),
        axes: axes.iter().map(|x| x.name.clone()).collect(),
        units: axes.iter().map(sweep::unit).collect(),
        labels: axes
            .iter()
            .map(|x| x.values.iter().map(|v| v.label.clone()).collect())
            .collect(),
        numbers: axes
            .iter()
            .map(|x| x.values.iter().map(|v| v.number).collect())
            .collect(),
        zip,
        points: points.len(),
        plot,
        inputs: [&topo, &work]
            .iter()
            .map(|s| (s.name.clone(), document::sha256(&s.text)))
            .collect(),
        set: base_text,
        assumptions,
    };
    let shard = shard(a)?;
    let mut selected: Vec<_> = points
        .into_iter()
        .filter(|p| shard.is_none_or(|s| sweep::in_shard(p.index, s)))
        .collect();
    let mut kept: Vec<out::Row> = Vec::new();
    if a.resume && a.out.join("sweep.jsonl").exists() {
        let (m, rows) = read_rows(&a.out)?;
        if m != meta {
            return Err(Diagnostic::new(
                a.out.join("sweep-meta.json").display().to_string(),
                "the output of another sweep",
                "--resume into the directory of the same sweep (same axes, inputs and engine)",
            ));
        }
        kept = rows
            .into_iter()
            .filter(|r| selected.iter().any(|p| p.index == r.point))
            .collect();
        selected.retain(|p| !kept.iter().any(|r| r.point == p.index));
    }
    eprintln!(
        "trainsim sweep: {} points{} ({} to run, {} kept), {} engine",
        meta.points,
        shard.map_or(String::new(), |(k, n)| format!(", shard {k}/{n}")),
        selected.len(),
        kept.len(),
        meta.engine
    );
    let bar = super::progress(a.quiet, "points");
    bar.set_length(selected.len() as u64);
    let mut rows = sweep::run(
        &selected,
        &axes,
        &topo,
        &work,
        &base,
        engine,
        &cal,
        a.jobs,
        &|| bar.inc(1),
    );
    bar.finish_and_clear();
    rows.extend(kept);
    rows.sort_by_key(|r| r.point);
    let bad = rows.iter().filter(|r| r.status != "ok").count();
    if bad > 0 {
        eprintln!("trainsim sweep: {bad} point(s) could not run; see status and reason");
    }
    super::write_files(&a.out, out::files(&meta, &rows))
}
