//! `trainsim chips`: every catalog chip's export-control metrics and its status under each rule;
//! `--derive` a hypothetical chip with caps, and write it as a catalog entry.

use crate::config::{Diagnostic, Source};
use crate::hw::catalog::Sourced;
use crate::hw::export::{derive, Caps, ExportRules, Metrics, Status};
use crate::hw::GpuSpec;
use crate::units::{Bandwidth, Quantity};
use serde::Serialize;
use serde_yaml::{Mapping, Value};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ChipsArgs {
    /// Print JSON instead of the tables.
    #[arg(long)]
    pub json: bool,
    /// A catalog chip to derive a hypothetical chip from (with --cap).
    #[arg(long)]
    pub derive: Option<String>,
    /// A cap on the derived chip: scale_up=400GB/s (bidirectional), nic=100Gb/s (per
    /// direction), tpp=4800, hbm=2TB/s. Repeatable.
    #[arg(long, value_name = "WHAT=VALUE")]
    pub cap: Vec<String>,
    /// Name of the derived chip (default: the chip's name and its caps).
    #[arg(long)]
    pub name: Option<String>,
    /// Write the derived chip as a catalog entry (the `topologies/gpus.yaml` format) to FILE;
    /// with --topology, a copy of that topology running the derived chip.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A topology to carry the derived chip (its `chips` section, `gpu` set to it, and any
    /// scale-up or NIC bandwidth it states lowered to the caps): written to --out, ready for
    /// run, sweep and plan.
    #[arg(long)]
    pub topology: Option<PathBuf>,
    /// Write the chips against the rules' thresholds as SVG scatters into DIR: TPP against
    /// performance density (the 2023 rule's tiers shaded) and TPP against DRAM bandwidth (the
    /// 2026 case-by-case region shaded).
    #[arg(long, value_name = "DIR")]
    pub plot: Option<PathBuf>,
}

/// One chip's row.
#[derive(Debug, Serialize)]
struct Row {
    chip: String,
    metrics: Metrics,
    statuses: Vec<Status>,
}

pub(super) fn chips(a: &ChipsArgs) -> Result<(), Diagnostic> {
    let rules = crate::builtin::export_rules();
    let cat = crate::builtin::catalog();
    let rows: Vec<Row> = match &a.derive {
        None => {
            if !a.cap.is_empty() || a.name.is_some() || a.out.is_some() {
                return Err(Diagnostic::new(
                    "--cap",
                    "--cap, --name or --out without --derive",
                    "--derive CHIP with them (e.g. --derive H100 --cap scale_up=400GB/s)",
                ));
            }
            cat.gpus
                .iter()
                .map(|(name, g)| row(&rules, name, g))
                .collect()
        }
        Some(base) => {
            let (name, chip) = cat.get(base).ok_or_else(|| {
                Diagnostic::new(
                    "--derive",
                    base.clone(),
                    format!("a catalog chip: {}", cat.names().join(", ")),
                )
            })?;
            let caps = parse_caps(&a.cap)?;
            let derived_name = a.name.clone().unwrap_or_else(|| format!("{name}-capped"));
            let desc = format!("{name} with {}", a.cap.join(", "));
            let d = derive(chip, caps, &desc);
            if a.topology.is_some() && a.out.is_none() {
                return Err(Diagnostic::new(
                    "--topology",
                    "--topology without --out",
                    "--out FILE for the topology to write",
                ));
            }
            if let Some(path) = &a.out {
                let entry = chip_value(&d);
                let yaml = match &a.topology {
                    None => {
                        let mut gpus = Mapping::new();
                        gpus.insert(derived_name.clone().into(), entry);
                        let mut doc = Mapping::new();
                        doc.insert("gpus".into(), Value::Mapping(gpus));
                        let yaml = format!(
                            "# A hypothetical chip derived by `trainsim chips --derive` (catalog \
                             format).\n{}",
                            serde_yaml::to_string(&doc).expect("a catalog entry serialises")
                        );
                        // The entry must read back as a catalog.
                        crate::builtin::parse_catalog(&Source::embedded("derived", &yaml))
                            .expect("a derived chip is a valid catalog entry");
                        yaml
                    }
                    Some(t) => topology_with(&super::read_source(t)?, &derived_name, entry, &d)?,
                };
                let dir = path.parent().unwrap_or(std::path::Path::new("."));
                let file = path
                    .file_name()
                    .ok_or_else(|| {
                        Diagnostic::new(
                            "--out",
                            path.display().to_string(),
                            "a file path such as my-chip.yaml",
                        )
                    })?
                    .to_string_lossy()
                    .into_owned();
                super::write_files(dir, vec![(file, yaml)])?;
            }
            vec![row(&rules, name, chip), row(&rules, &derived_name, &d)]
        }
    };
    if let Some(dir) = &a.plot {
        let chips: Vec<_> = rows.iter().map(|r| (r.chip.clone(), r.metrics)).collect();
        super::write_files(dir, crate::report::export::chip_scatters(&rules, &chips))?;
    }
    if a.json {
        super::emit(&format!(
            "{}\n",
            serde_json::to_string_pretty(&rows).expect("rows serialise")
        ))?;
    } else {
        super::emit(&table(&rules, &rows))?;
    }
    Ok(())
}

fn row(rules: &ExportRules, name: &str, g: &GpuSpec) -> Row {
    Row {
        chip: name.to_string(),
        metrics: Metrics::of(g),
        statuses: rules.classify(name, g),
    }
}

fn parse_caps(caps: &[String]) -> Result<Caps, Diagnostic> {
    let mut c = Caps::default();
    for s in caps {
        let bad = |expected: &str| Diagnostic::new("--cap", s.clone(), expected);
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| bad("WHAT=VALUE, e.g. scale_up=400GB/s"))?;
        let bw = || {
            Bandwidth::parse(v)
                .map(|b| b.bytes_per_s)
                .map_err(|e| bad(&format!("a bandwidth after `{k}=`: {}", e.expected)))
        };
        match k.trim() {
            "scale_up" => c.scale_up = Some(bw()?),
            "nic" => c.nic = Some(bw()?),
            "hbm" => c.hbm = Some(bw()?),
            "tpp" => {
                c.tpp = Some(
                    v.trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|x| x.is_finite() && *x > 0.0)
                        .ok_or_else(|| bad("a positive TPP after `tpp=`, e.g. tpp=4800"))?,
                )
            }
            _ => return Err(bad("one of scale_up, nic, tpp, hbm before `=`")),
        }
    }
    Ok(c)
}

/// The metrics table, then each chip's status under each rule.
fn table(rules: &ExportRules, rows: &[Row]) -> String {
    let w = rows.iter().map(|r| r.chip.len()).max().unwrap_or(4).max(4);
    let mut s = format!(
        "{:<w$} {:>8} {:>6} {:>10} {:>10}\n",
        "chip", "TPP", "PD", "I/O (GB/s)", "HBM (TB/s)"
    );
    for r in rows {
        let m = &r.metrics;
        s += &format!(
            "{:<w$} {:>8.0} {:>6} {:>10.0} {:>10.2}\n",
            r.chip,
            m.tpp,
            m.pd.map_or("?".to_string(), |p| format!("{p:.2}")),
            m.io_bandwidth / 1e9,
            m.hbm_bandwidth / 1e12
        );
    }
    for (i, rule) in rules.rules.iter().enumerate() {
        s += &format!(
            "\n{} · {} · effective {} · {}\n",
            rule.id, rule.name, rule.effective, rule.citation
        );
        for r in rows {
            s += &format!("  {:<w$} {}\n", r.chip, r.statuses[i].status);
        }
    }
    s
}

/// A chip in the catalog's format, every figure a unit string with its source.
fn chip_value(g: &GpuSpec) -> Value {
    fn sourced(v: Value, s: &Sourced<impl Sized>) -> Value {
        let mut m = Mapping::new();
        m.insert("value".into(), v);
        m.insert("source".into(), s.source.clone().into());
        m.insert("secondary".into(), s.secondary.into());
        Value::Mapping(m)
    }
    let tflops = |f: f64| Value::from(format!("{} TFLOPS", f / 1e12));
    let link = |l: crate::units::LinkBandwidth| Value::from(link_text(l));
    let mut peak = Mapping::new();
    if let Some(p) = &g.peak.fp8 {
        peak.insert("fp8".into(), sourced(tflops(p.value.flops), p));
    }
    peak.insert(
        "bf16".into(),
        sourced(tflops(g.peak.bf16.value.flops), &g.peak.bf16),
    );
    peak.insert(
        "tf32".into(),
        sourced(tflops(g.peak.tf32.value.flops), &g.peak.tf32),
    );
    let mut m = Mapping::new();
    m.insert("description".into(), g.description.clone().into());
    m.insert(
        "architecture".into(),
        serde_yaml::to_value(g.architecture).expect("an architecture serialises"),
    );
    m.insert("sms".into(), sourced(g.sms.value.into(), &g.sms));
    m.insert(
        "clock".into(),
        sourced(format!("{} MHz", g.clock.value.hz / 1e6).into(), &g.clock),
    );
    m.insert("peak".into(), Value::Mapping(peak));
    m.insert(
        "hbm_capacity".into(),
        sourced(
            format!("{} GB", g.hbm_capacity.value.bytes / 1e9).into(),
            &g.hbm_capacity,
        ),
    );
    m.insert(
        "hbm_bandwidth".into(),
        sourced(
            format!("{} GB/s", g.hbm_bandwidth.value.bytes_per_s / 1e9).into(),
            &g.hbm_bandwidth,
        ),
    );
    m.insert(
        "scale_up".into(),
        sourced(link(g.scale_up.value), &g.scale_up),
    );
    m.insert("nic".into(), sourced(link(g.nic.value), &g.nic));
    m.insert(
        "tdp".into(),
        sourced(format!("{} W", g.tdp.value.watts).into(), &g.tdp),
    );
    if let Some(a) = &g.die_area {
        m.insert(
            "die_area".into(),
            sourced(format!("{} mm^2", a.value.m2 * 1e6).into(), a),
        );
    }
    if let Some(io) = &g.io_bandwidth {
        m.insert("io_bandwidth".into(), sourced(link(io.value), io));
    }
    Value::Mapping(m)
}

/// `template` running chip `name` (`entry`, as `chip` has it): the chip in its `chips`, `gpu`
/// set to it, a scale-up or NIC bandwidth the template states lowered to the chip's. The
/// result must read back as a topology whose catalog holds the chip.
fn topology_with(
    template: &Source,
    name: &str,
    entry: Value,
    chip: &GpuSpec,
) -> Result<String, Diagnostic> {
    let bad = |e: String| Diagnostic::new(&template.name, e, "a topology document");
    let mut doc: Value = serde_yaml::from_str(&template.text).map_err(|e| bad(e.to_string()))?;
    let m = doc
        .as_mapping_mut()
        .ok_or_else(|| bad("not a mapping".into()))?;
    m.insert("gpu".into(), name.into());
    let mut chips = Mapping::new();
    chips.insert(name.into(), entry);
    m.insert("chips".into(), Value::Mapping(chips));
    let lower = |m: &mut Mapping, section: &str, key: &str, to: crate::units::LinkBandwidth| {
        if let Some(Value::Mapping(sec)) = m.get_mut(section) {
            if let Some(v) = sec.get(key).and_then(Value::as_str) {
                let stated = crate::units::LinkBandwidth::parse(v).ok();
                let per = |l: crate::units::LinkBandwidth| l.per_direction().bytes_per_s;
                if stated.is_some_and(|s| per(s) > per(to)) {
                    sec.insert(key.into(), link_text(to).into());
                }
            }
        }
    };
    lower(m, "scale_up", "bandwidth", chip.scale_up.value);
    lower(m, "scale_out", "nic_bandwidth", chip.nic.value);
    let text = format!(
        "# {} running {name}, derived by `trainsim chips --derive` from {}.\n{}",
        template.name,
        chip.description,
        serde_yaml::to_string(&doc).expect("a topology serialises")
    );
    let src = Source::embedded("derived topology", &text);
    let spec: crate::config::topology::TopologySpec =
        crate::config::parse_doc(&src, &[]).expect("the written topology parses");
    crate::builtin::catalog_for(&spec, &src.name).expect("its chip reads");
    Ok(text)
}

fn link_text(l: crate::units::LinkBandwidth) -> String {
    match l.direction {
        crate::units::Direction::Bidirectional => {
            format!("{} GB/s bidirectional", l.stated.bytes_per_s / 1e9)
        }
        crate::units::Direction::PerDirection => {
            format!("{} GB/s per direction", l.stated.bytes_per_s / 1e9)
        }
    }
}
