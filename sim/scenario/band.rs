//! The uncertainty band around one run's estimate.
//!
//! Three things widen it, each priced as a run of its own:
//! - every calibration constant that lists `alternatives` (a value its source does not rule
//!   out), one run per alternative value;
//! - every `alternatives` entry of the workload document (a setting the papers do not state),
//!   one run per entry with its overrides;
//! - each kernel class's calibration residual (`residuals` in the calibration file), one run
//!   with every class faster by its residual and one with every class slower.
//!
//! Each run's difference from the central estimate is a term; the band's low corner adds every
//! term that lowers the estimate, the high corner every term that raises it (first order: the
//! terms are priced one at a time, so interactions between them are not in the band). The
//! alternatives run on the central run's engine, except that a `--full` run's terms are priced
//! in representative mode against a representative central run.

use crate::config::{Diagnostic, Override, Source};
use crate::hw::Calibration;
use crate::pipeline::{self, Engine};
use crate::report::summary::{BandRange, BandTerm, Bands, PhaseBand, Summary};
use rayon::prelude::*;
use serde_yaml::Value;

/// One alternative: its name and what it changes.
struct Alternative {
    name: String,
    cal: Calibration,
    sets: Vec<Override>,
}

/// Every calibration constant with `alternatives` in the calibration document `src`, each
/// alternative value as a calibration of its own: ("calibration PATH = VALUE", that
/// calibration). In file order.
pub fn calibration_alternatives(src: &Source) -> Result<Vec<(String, Calibration)>, Diagnostic> {
    let root: Value = serde_yaml::from_str(&src.text)
        .map_err(|e| Diagnostic::new(src.name.clone(), e.to_string(), "a calibration document"))?;
    let mut paths = Vec::new();
    collect(&root, &mut Vec::new(), &mut paths);
    let mut out = Vec::new();
    for path in paths {
        let node = lookup(&root, &path);
        let alts = node["alternatives"]
            .as_sequence()
            .cloned()
            .unwrap_or_default();
        for alt in alts {
            let mut v = root.clone();
            let c = lookup_mut(&mut v, &path);
            c["value"] = alt.clone();
            if let Value::Mapping(m) = c {
                m.remove("alternatives");
            }
            let name = format!(
                "calibration {} = {}",
                path.join("."),
                crate::config::scalar_text(&alt)
            );
            let text = serde_yaml::to_string(&v).expect("a YAML value prints");
            let cal = crate::builtin::parse_calibration(&Source::embedded(&src.name, &text))
                .map_err(|d| {
                    Diagnostic::new(
                        src.name.clone(),
                        format!("{name}: {}", d.found),
                        d.expected.clone(),
                    )
                    .at(format!("{}.alternatives", path.join(".")))
                })?;
            out.push((name, cal));
        }
    }
    Ok(out)
}

/// Paths of the mappings that hold both `value` and `alternatives`.
fn collect(v: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    if let Value::Mapping(m) = v {
        if m.contains_key("value") && m.contains_key("alternatives") {
            out.push(at.clone());
            return;
        }
        for (k, child) in m {
            if let Some(k) = k.as_str() {
                at.push(k.to_string());
                collect(child, at, out);
                at.pop();
            }
        }
    }
}

fn lookup<'a>(v: &'a Value, path: &[String]) -> &'a Value {
    path.iter().fold(v, |v, k| &v[k.as_str()])
}

fn lookup_mut<'a>(v: &'a mut Value, path: &[String]) -> &'a mut Value {
    path.iter().fold(v, |v, k| &mut v[k.as_str()])
}

/// The run a band is drawn around: its documents, overrides and engine.
pub struct Scenario<'a> {
    pub topology: &'a Source,
    pub workload: &'a Source,
    pub sets: &'a [Override],
    pub engine: Engine,
}

/// The band around `central` (the run `run` with `cal`, parsed from `cal_src`), with the
/// workload's `alternatives`.
pub fn compute(
    run: &Scenario,
    cal: &Calibration,
    cal_src: &Source,
    central: &Summary,
    workload_alternatives: &[(String, Vec<Override>)],
) -> Result<Bands, Diagnostic> {
    let Scenario {
        topology,
        workload,
        sets,
        engine,
    } = *run;
    let mut alts: Vec<Alternative> = calibration_alternatives(cal_src)?
        .into_iter()
        .map(|(name, cal)| Alternative {
            name,
            cal,
            sets: Vec::new(),
        })
        .collect();
    for (name, extra) in workload_alternatives {
        alts.push(Alternative {
            name: format!("workload: {name}"),
            cal: cal.clone(),
            sets: extra.clone(),
        });
    }
    for (name, sign) in [
        ("kernel classes faster by their calibration residuals", 1.0),
        ("kernel classes slower by their calibration residuals", -1.0),
    ] {
        alts.push(Alternative {
            name: name.to_string(),
            cal: cal.residual_scaled(sign),
            sets: Vec::new(),
        });
    }
    let term_engine = match engine {
        Engine::Des { full: true } => Engine::Des { full: false },
        e => e,
    };
    let reference = if term_engine == engine {
        central.clone()
    } else {
        pipeline::run(topology, workload, sets, term_engine, cal)?
    };
    let runs: Vec<Result<Summary, Diagnostic>> = alts
        .par_iter()
        .map(|a| {
            let mut s = sets.to_vec();
            s.extend(a.sets.iter().cloned());
            pipeline::run(topology, workload, &s, term_engine, &a.cal)
        })
        .collect();
    let mut terms = Vec::new();
    for (a, r) in alts.iter().zip(runs) {
        let s = r.map_err(|d| {
            Diagnostic::new(
                d.file.clone(),
                format!("the alternative '{}' does not run: {}", a.name, d.found),
                d.expected.clone(),
            )
        })?;
        terms.push(BandTerm {
            name: a.name.clone(),
            step_time_s: s.step_time_s - reference.step_time_s,
            gpu_hours: s.gpu_hours - reference.gpu_hours,
            cost_usd: s.cost_usd - reference.cost_usd,
            phase_gpu_hours: s
                .phases
                .iter()
                .zip(&reference.phases)
                .map(|(a, r)| a.gpu_hours - r.gpu_hours)
                .collect(),
        });
    }
    let range = |central: f64, d: &dyn Fn(&BandTerm) -> f64| {
        BandRange::around(central, terms.iter().map(d))
    };
    let phases = central
        .phases
        .iter()
        .enumerate()
        .map(|(i, p)| PhaseBand {
            name: p.name.clone(),
            gpu_hours: range(p.gpu_hours, &|t| {
                t.phase_gpu_hours.get(i).copied().unwrap_or(0.0)
            }),
        })
        .collect();
    Ok(Bands {
        step_time_s: range(central.step_time_s, &|t| t.step_time_s),
        gpu_hours: range(central.gpu_hours, &|t| t.gpu_hours),
        cost_usd: range(central.cost_usd, &|t| t.cost_usd),
        phases,
        terms_engine: term_engine.name(),
        terms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped calibration's alternatives: each changes exactly its own constant.
    #[test]
    fn each_calibration_alternative_changes_its_constant_only() {
        let cal = crate::builtin::calibration();
        let alts = calibration_alternatives(&crate::builtin::calibration_source()).unwrap();
        let names: Vec<&str> = alts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "calibration memory.elementwise = stream",
                "calibration streams.gaps = launch_gap",
                "calibration streams.launch_gap = 1.3 us",
            ]
        );
        use crate::hw::calibration::{ElementwisePricing, GapModel};
        // Each alternative differs from the shipped calibration in its own constant alone:
        // put that one back and the two are equal.
        let mut c = alts[0].1.clone();
        assert_eq!(c.memory.elementwise.value, ElementwisePricing::Stream);
        c.memory.elementwise = cal.memory.elementwise.clone();
        assert_eq!(c, cal);
        let mut c = alts[1].1.clone();
        assert_eq!(c.streams.gaps.value, GapModel::LaunchGap);
        c.streams.gaps = cal.streams.gaps.clone();
        assert_eq!(c, cal);
        let mut c = alts[2].1.clone();
        assert_eq!(c.streams.launch_gap.value.ps, 1_300_000);
        c.streams.launch_gap = cal.streams.launch_gap.clone();
        assert_eq!(c, cal);
    }
}
