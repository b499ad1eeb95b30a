//! The documents compiled into the binary: the GPU catalog (`topologies/gpus.yaml`), the
//! calibration (`topologies/calibration.yaml`) and the export-control rules
//! (`topologies/export-rules.yaml`), and the parsers that turn such documents into
//! `hw` types. `hw` itself knows no file format; this is where its data meets YAML.

use crate::config::topology::TopologySpec;
use crate::config::{parse_doc, Diagnostic, Source};
use crate::hw::export::ExportRules;
use crate::hw::{Calibration, Catalog};

/// The catalog as shipped.
pub const GPUS_YAML: &str = include_str!("../topologies/gpus.yaml");

/// The export-control rules as shipped.
pub const EXPORT_RULES_YAML: &str = include_str!("../topologies/export-rules.yaml");

/// The calibration as shipped.
pub const CALIBRATION_YAML: &str = include_str!("../topologies/calibration.yaml");

/// The embedded catalog, parsed once per process. It is checked by tests, so failure here is a
/// build defect.
pub fn catalog() -> Catalog {
    static PARSED: std::sync::OnceLock<Catalog> = std::sync::OnceLock::new();
    PARSED
        .get_or_init(|| {
            parse_catalog(&Source::embedded("topologies/gpus.yaml", GPUS_YAML))
                .expect("embedded GPU catalog is valid (checked by tests)")
        })
        .clone()
}

/// The embedded export-control rules, parsed and checked once per process (checked by tests,
/// so failure here is a build defect).
pub fn export_rules() -> ExportRules {
    static PARSED: std::sync::OnceLock<ExportRules> = std::sync::OnceLock::new();
    PARSED
        .get_or_init(|| {
            let src = Source::embedded("topologies/export-rules.yaml", EXPORT_RULES_YAML);
            let r: ExportRules = parse_doc(&src, &[]).expect("embedded export rules parse");
            r.check().expect("embedded export rules are consistent");
            r
        })
        .clone()
}

/// The catalog a topology builds on: the embedded one and the topology's own `chips`. A chip
/// there may not reuse a catalog name or alias; a malformed one is located at `chips`.
pub fn catalog_for(spec: &TopologySpec, file: &str) -> Result<Catalog, Diagnostic> {
    let mut cat = catalog();
    let Some(chips) = &spec.chips else {
        return Ok(cat);
    };
    let mut doc = serde_yaml::Mapping::new();
    doc.insert("gpus".into(), chips.clone());
    let extra: Catalog = serde_yaml::from_value(serde_yaml::Value::Mapping(doc)).map_err(|e| {
        Diagnostic::new(
            file,
            format!("a chip that does not read ({e})"),
            "chips in the catalog's format: NAME: { description, architecture, sms, clock, peak, \
             hbm_capacity, hbm_bandwidth, scale_up, nic, tdp } (as `trainsim chips --derive` \
             writes them)",
        )
        .at("chips")
    })?;
    for (name, g) in extra.gpus {
        if let Some((known, _)) = std::iter::once(&name)
            .chain(&g.aliases)
            .find_map(|n| cat.get(n))
        {
            return Err(Diagnostic::new(
                file,
                format!("the chip `{name}`, a name the catalog gives {known}"),
                "a name of its own",
            )
            .at(format!("chips.{name}")));
        }
        cat.gpus.insert(name, g);
    }
    Ok(cat)
}

/// A GPU catalog document.
pub fn parse_catalog(src: &Source) -> Result<Catalog, Diagnostic> {
    parse_doc(src, &[])
}

/// The embedded calibration, parsed once per process. It is checked by tests, so failure here
/// is a build defect.
pub fn calibration() -> Calibration {
    calibration_ref().clone()
}

/// The embedded calibration, borrowed.
pub fn calibration_ref() -> &'static Calibration {
    static PARSED: std::sync::OnceLock<Calibration> = std::sync::OnceLock::new();
    PARSED.get_or_init(|| {
        parse_calibration(&calibration_source())
            .expect("embedded calibration is valid (checked by tests)")
    })
}

/// The embedded calibration document.
pub fn calibration_source() -> Source {
    Source::embedded("topologies/calibration.yaml", CALIBRATION_YAML)
}

/// A calibration document (`validate --calibration FILE`), with every value in its range.
pub fn parse_calibration(src: &Source) -> Result<Calibration, Diagnostic> {
    let cal: Calibration = parse_doc(src, &[])?;
    let v = serde_json::to_value(&cal).expect("a calibration serialises");
    let mut bad = None;
    check_ranges(&v, &mut Vec::new(), &mut bad);
    match bad {
        None => Ok(cal),
        Some((path, found, expected)) => Err(Diagnostic::new(&src.name, found, expected)
            .at(path)
            .locate_in(&src.text)),
    }
}

/// The first value outside its range, as (path, found, expected): efficiencies and rates in
/// (0, 1], the idle share and the residuals in [0, 1), the backward ratio in (0, 10], times at
/// most a second, every number finite.
fn check_ranges(
    v: &serde_json::Value,
    at: &mut Vec<String>,
    bad: &mut Option<(String, String, &'static str)>,
) {
    use serde_json::Value;
    if bad.is_some() {
        return;
    }
    let Value::Object(m) = v else { return };
    if let Some(value) = m.get("value") {
        let path = at.join(".");
        let key = at.last().map(String::as_str).unwrap_or("");
        let parent = at.first().map(String::as_str).unwrap_or("");
        let mut values = vec![value];
        if let Some(Value::Array(alts)) = m.get("alternatives") {
            values.extend(alts.iter());
        }
        for (i, x) in values.into_iter().enumerate() {
            let here = if i == 0 {
                path.clone()
            } else {
                format!("{path}.alternatives.{}", i - 1)
            };
            let out = |e: &'static str| Some((here.clone(), x.to_string(), e));
            let verdict = match x {
                Value::Number(n) => {
                    let f = n.as_f64().unwrap_or(f64::NAN);
                    if !f.is_finite() {
                        out("a finite number")
                    } else if (key.contains("efficiency") || key.starts_with("flash2_rate"))
                        && !(f > 0.0 && f <= 1.0)
                    {
                        out("a share in (0, 1]")
                    } else if (parent == "residuals" || key == "compute_idle_fraction")
                        && !(0.0..1.0).contains(&f)
                    {
                        out("a fraction in [0, 1)")
                    } else if key == "elementwise_backward_ratio" && !(f > 0.0 && f <= 10.0) {
                        out("a ratio in (0, 10]")
                    } else {
                        None
                    }
                }
                Value::String(_) => match serde_json::from_value::<crate::units::Time>(x.clone()) {
                    Ok(time) if time.ps > 1_000_000_000_000 => out("a time of at most 1 s"),
                    _ => None,
                },
                // JSON has no NaN or infinity: a non-finite number serialises as null.
                Value::Null => out("a finite number"),
                _ => None,
            };
            if verdict.is_some() {
                *bad = verdict;
                return;
            }
        }
        return;
    }
    for (k, child) in m {
        at.push(k.clone());
        check_ranges(child, at, bad);
        at.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A calibration value outside its range is a located diagnostic, alternatives included;
    /// the shipped file passes.
    #[test]
    fn calibration_values_outside_their_ranges_are_errors() {
        let base = CALIBRATION_YAML;
        assert!(parse_calibration(&Source::embedded("c.yaml", base)).is_ok());
        for (from, to, at, expected) in [
            (
                "    value: 0.87\n",
                "    value: 1.5\n",
                "memory.hbm_efficiency",
                "(0, 1]",
            ),
            (
                "    value: 2.0\n",
                "    value: 2.0\n    alternatives: [-1.5]\n",
                "memory.elementwise_backward_ratio.alternatives.0",
                "(0, 10]",
            ),
            (
                "    value: \"2.1 us\"\n",
                "    value: \"2 s\"\n",
                "streams.launch_gap",
                "1 s",
            ),
            (
                "  gemm: { value: 0.002,",
                "  gemm: { value: 1.0,",
                "residuals.gemm",
                "[0, 1)",
            ),
            (
                "    value: 0.87\n",
                "    value: .nan\n",
                "memory.hbm_efficiency",
                "finite",
            ),
        ] {
            assert!(base.contains(from), "{from}");
            let text = base.replacen(from, to, 1);
            let d = parse_calibration(&Source::embedded("c.yaml", &text)).unwrap_err();
            let msg = d.to_string();
            assert!(msg.contains(at) && msg.contains(expected), "{msg}");
        }
    }
}
