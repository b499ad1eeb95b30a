//! US export-control rules on advanced computing ICs as data (`topologies/export-rules.yaml`),
//! the metrics they read from a chip (TPP, performance density, chip I/O, DRAM bandwidth), each
//! chip's status under each rule, and hypothetical chips derived from a catalog chip by capping
//! what a rule measures.
//!
//! Evaluation is three-valued: a metric the catalog cannot give (performance density without a
//! die area) is unknown, and a test on it is unknown unless the rest of the rule decides.

use super::catalog::{GpuSpec, Sourced};
use crate::domain::Dtype;
use crate::units::{Bandwidth, Direction, FlopRate, LinkBandwidth, Quantity};
use serde::{Deserialize, Serialize};

/// The rules document.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExportRules {
    pub rules: Vec<Rule>,
}

/// One rule: its outcomes in order, the first that holds giving the status.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub id: String,
    pub name: String,
    /// Effective date, ISO 8601.
    pub effective: String,
    /// Federal Register citation (or what stands in for one).
    pub citation: String,
    #[serde(default)]
    pub note: Option<String>,
    /// A rule this one refines: it speaks only of chips that rule controls.
    #[serde(default)]
    pub requires: Option<String>,
    /// Chips the rule names rather than measures.
    #[serde(default)]
    pub named: Option<Named>,
    pub outcomes: Vec<Outcome>,
    /// The status where no outcome holds.
    pub otherwise: String,
    /// Whether that status needs a licence.
    #[serde(default)]
    pub otherwise_controlled: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Named {
    pub chips: Vec<String>,
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    pub status: String,
    pub controlled: bool,
    pub when: Criterion,
}

/// A condition on a chip's metrics.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum Criterion {
    All { all: Vec<Criterion> },
    Any { any: Vec<Criterion> },
    Test(Test),
}

/// `metric ≥ at_least` and/or `metric < below`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Test {
    pub metric: Metric,
    #[serde(default)]
    pub at_least: Option<Threshold>,
    #[serde(default)]
    pub below: Option<Threshold>,
}

/// A threshold: a plain number (TPP, PD) or a bandwidth unit string.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Threshold {
    Number(f64),
    Text(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Tpp,
    Pd,
    IoBandwidth,
    HbmBandwidth,
}

impl Metric {
    fn is_bandwidth(self) -> bool {
        matches!(self, Metric::IoBandwidth | Metric::HbmBandwidth)
    }
}

impl Threshold {
    /// The threshold in the metric's unit (bandwidths in bytes per second); an error names what
    /// was expected.
    pub fn value(&self, m: Metric) -> Result<f64, String> {
        match (self, m.is_bandwidth()) {
            (Threshold::Number(v), false) => Ok(*v),
            (Threshold::Text(t), true) => Bandwidth::parse(t)
                .map(|b| b.bytes_per_s)
                .map_err(|e| format!("{}: expected {}", e.found, e.expected)),
            (t, true) => Err(format!("{t:?}: expected a bandwidth such as \"600 GB/s\"")),
            (t, false) => Err(format!("{t:?}: expected a number")),
        }
    }
}

impl ExportRules {
    /// Every threshold has the form its metric needs, and every `requires` names an earlier rule.
    pub fn check(&self) -> Result<(), String> {
        fn walk(c: &Criterion, id: &str) -> Result<(), String> {
            match c {
                Criterion::All { all: v } | Criterion::Any { any: v } => {
                    v.iter().try_for_each(|c| walk(c, id))
                }
                Criterion::Test(t) => {
                    if t.at_least.is_none() && t.below.is_none() {
                        return Err(format!("rule {id}: a test on {:?} with no bound", t.metric));
                    }
                    for b in t.at_least.iter().chain(&t.below) {
                        b.value(t.metric).map_err(|e| format!("rule {id}: {e}"))?;
                    }
                    Ok(())
                }
            }
        }
        for (i, r) in self.rules.iter().enumerate() {
            r.outcomes.iter().try_for_each(|o| walk(&o.when, &r.id))?;
            if let Some(req) = &r.requires {
                if !self.rules[..i].iter().any(|x| &x.id == req) {
                    return Err(format!("rule {}: requires the unknown rule {req}", r.id));
                }
            }
        }
        Ok(())
    }

    /// A chip's status under every rule, in the document's order.
    pub fn classify(&self, name: &str, chip: &GpuSpec) -> Vec<Status> {
        let m = Metrics::of(chip);
        let mut out: Vec<Status> = Vec::new();
        for r in &self.rules {
            let status = if let Some(req) = &r.requires {
                let under = out.iter().find(|s| &s.rule == req).expect("checked");
                match under.controlled {
                    Some(false) => Some((
                        format!("not covered (not controlled under {req})"),
                        Some(false),
                    )),
                    None => Some((format!("unknown (unknown under {req})"), None)),
                    Some(true) => None,
                }
            } else {
                None
            };
            let named = r.named.as_ref().filter(|n| {
                n.chips.iter().any(|c| {
                    c.eq_ignore_ascii_case(name)
                        || chip.aliases.iter().any(|a| a.eq_ignore_ascii_case(c))
                })
            });
            let (status, controlled) = status.unwrap_or_else(|| {
                if let Some(n) = named {
                    return (n.status.clone(), Some(true));
                }
                for o in &r.outcomes {
                    match o.when.holds(&m) {
                        Some(true) => return (o.status.clone(), Some(o.controlled)),
                        Some(false) => continue,
                        None => return (format!("unknown ({} needs a die area)", o.status), None),
                    }
                }
                (r.otherwise.clone(), Some(r.otherwise_controlled))
            });
            out.push(Status {
                rule: r.id.clone(),
                status,
                controlled,
            });
        }
        out
    }
}

/// A chip's status under one rule; `controlled` is `None` where the catalog cannot decide.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    pub rule: String,
    pub status: String,
    pub controlled: Option<bool>,
}

impl Criterion {
    fn holds(&self, m: &Metrics) -> Option<bool> {
        match self {
            Criterion::All { all } => decide(all.iter().map(|c| c.holds(m)), false),
            Criterion::Any { any } => decide(any.iter().map(|c| c.holds(m)), true),
            Criterion::Test(t) => {
                let x = m.get(t.metric)?;
                let lo = t
                    .at_least
                    .as_ref()
                    .map(|b| b.value(t.metric).expect("checked"));
                let hi = t
                    .below
                    .as_ref()
                    .map(|b| b.value(t.metric).expect("checked"));
                Some(lo.is_none_or(|l| x >= l) && hi.is_none_or(|h| x < h))
            }
        }
    }
}

/// A box `[x_lo, x_hi, y_lo, y_hi]` in two metrics' units (bounds may be infinite).
pub type Box2 = [f64; 4];

impl Criterion {
    /// Where the criterion holds in the plane of metrics `x` and `y`, as a union of boxes;
    /// `None` if it reads another metric.
    pub fn boxes(&self, x: Metric, y: Metric) -> Option<Vec<Box2>> {
        let all = [
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
        ];
        match self {
            Criterion::Any { any } => {
                let mut v = Vec::new();
                for c in any {
                    v.extend(c.boxes(x, y)?);
                }
                Some(v)
            }
            Criterion::All { all: cs } => {
                let mut v = vec![all];
                for c in cs {
                    let b = c.boxes(x, y)?;
                    v = v
                        .iter()
                        .flat_map(|a| b.iter().map(move |b| meet(a, b)))
                        .filter(|r| r[0] < r[1] && r[2] < r[3])
                        .collect();
                }
                Some(v)
            }
            Criterion::Test(t) => {
                let lo = t
                    .at_least
                    .as_ref()
                    .map_or(f64::NEG_INFINITY, |b| b.value(t.metric).expect("checked"));
                let hi = t
                    .below
                    .as_ref()
                    .map_or(f64::INFINITY, |b| b.value(t.metric).expect("checked"));
                let mut r = all;
                if t.metric == x {
                    (r[0], r[1]) = (lo, hi);
                } else if t.metric == y {
                    (r[2], r[3]) = (lo, hi);
                } else {
                    return None;
                }
                Some(vec![r])
            }
        }
    }
}

/// The part of `boxes` outside every box of `minus`, as disjoint boxes (a union drawn box by
/// box then shades each point once).
pub fn difference(boxes: &[Box2], minus: &[Box2]) -> Vec<Box2> {
    let mut out: Vec<Box2> = Vec::new();
    for b in boxes {
        // Each box less what is already covered: earlier ones of its own union and `minus`.
        let mut pieces = vec![*b];
        for m in minus.iter().chain(out.clone().iter()) {
            pieces = pieces.iter().flat_map(|p| cut(p, m)).collect();
        }
        out.extend(pieces);
    }
    out
}

/// `a` less `m`: up to four boxes (left, right, then below and above within the overlap's x).
fn cut(a: &Box2, m: &Box2) -> Vec<Box2> {
    let i = meet(a, m);
    if !(i[0] < i[1] && i[2] < i[3]) {
        return vec![*a];
    }
    [
        [a[0], i[0], a[2], a[3]],
        [i[1], a[1], a[2], a[3]],
        [i[0], i[1], a[2], i[2]],
        [i[0], i[1], i[3], a[3]],
    ]
    .into_iter()
    .filter(|r| r[0] < r[1] && r[2] < r[3])
    .collect()
}

fn meet(a: &Box2, b: &Box2) -> Box2 {
    [
        a[0].max(b[0]),
        a[1].min(b[1]),
        a[2].max(b[2]),
        a[3].min(b[3]),
    ]
}

/// Three-valued AND (`decisive` false) or OR (true): one `decisive` value decides, else all
/// known values give the other, else unknown.
fn decide(v: impl Iterator<Item = Option<bool>>, decisive: bool) -> Option<bool> {
    let mut unknown = false;
    for x in v {
        match x {
            Some(b) if b == decisive => return Some(decisive),
            Some(_) => {}
            None => unknown = true,
        }
    }
    (!unknown).then_some(!decisive)
}

/// What the rules read from a chip.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Metrics {
    /// 2 × MacTOPS × bit length, dense, the highest over the chip's tensor data types.
    pub tpp: f64,
    /// TPP per mm² of logic die; `None` without a die area.
    pub pd: Option<f64>,
    /// Aggregate bidirectional chip I/O, bytes per second.
    pub io_bandwidth: f64,
    /// DRAM bandwidth, bytes per second.
    pub hbm_bandwidth: f64,
}

/// Bit length of each tensor data type the TPP formula multiplies by.
const BITS: [(Dtype, f64); 2] = [(Dtype::Fp8, 8.0), (Dtype::Bf16, 16.0)];

impl Metrics {
    pub fn of(chip: &GpuSpec) -> Metrics {
        let tpp = BITS
            .iter()
            .filter_map(|&(d, bits)| chip.peak(d).map(|p| p.flops / 1e12 * bits))
            .fold(0.0, f64::max);
        let io = chip
            .io_bandwidth
            .as_ref()
            .map_or(chip.scale_up.value, |s| s.value);
        Metrics {
            tpp,
            pd: chip.die_area.as_ref().map(|a| tpp / (a.value.m2 * 1e6)),
            io_bandwidth: bidirectional(io),
            hbm_bandwidth: chip.hbm_bandwidth.value.bytes_per_s,
        }
    }

    fn get(&self, m: Metric) -> Option<f64> {
        match m {
            Metric::Tpp => Some(self.tpp),
            Metric::Pd => self.pd,
            Metric::IoBandwidth => Some(self.io_bandwidth),
            Metric::HbmBandwidth => Some(self.hbm_bandwidth),
        }
    }
}

fn bidirectional(l: LinkBandwidth) -> f64 {
    match l.direction {
        Direction::Bidirectional => l.stated.bytes_per_s,
        Direction::PerDirection => 2.0 * l.stated.bytes_per_s,
    }
}

/// Caps a hypothetical chip must stay within (`None`: the chip's own figure).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Caps {
    /// Scale-up (NVLink) bandwidth, bidirectional bytes per second.
    pub scale_up: Option<f64>,
    /// Scale-out NIC bandwidth per GPU, bytes per second per direction.
    pub nic: Option<f64>,
    /// Total processing performance.
    pub tpp: Option<f64>,
    /// DRAM bandwidth, bytes per second.
    pub hbm: Option<f64>,
}

/// `chip` with every capped figure at most its cap: a TPP cap scales every precision's peak by
/// the same factor (so each stays within the cap by the TPP arithmetic), a bandwidth cap lowers
/// that bandwidth alone (a scale-up cap lowers the chip's I/O by as much). A cap above the
/// chip's own figure changes nothing. Each changed figure's source says so.
pub fn derive(chip: &GpuSpec, caps: Caps, description: &str) -> GpuSpec {
    let mut c = chip.clone();
    c.description = description.to_string();
    // A capped figure is derived here, whatever its source was.
    fn note<T>(s: &mut Sourced<T>, what: String) {
        s.source = format!("derived: {what}; was: {}", s.source);
        s.secondary = true;
    }
    if let Some(cap) = caps.tpp {
        let tpp = Metrics::of(chip).tpp;
        if cap < tpp {
            let f = cap / tpp;
            let scale = |p: &mut Sourced<FlopRate>| {
                p.value.flops *= f;
                note(p, format!("capped at TPP {cap} (x{f:.4})"));
            };
            if let Some(p) = c.peak.fp8.as_mut() {
                scale(p);
            }
            scale(&mut c.peak.bf16);
            scale(&mut c.peak.tf32);
        }
    }
    if let Some(cap) = caps.scale_up {
        let own = bidirectional(chip.scale_up.value);
        if cap < own {
            c.scale_up.value = LinkBandwidth {
                stated: Bandwidth { bytes_per_s: cap },
                direction: Direction::Bidirectional,
            };
            note(
                &mut c.scale_up,
                format!("capped at {} GB/s bidirectional", cap / 1e9),
            );
            if let Some(io) = c.io_bandwidth.as_mut() {
                let v = bidirectional(io.value) - (own - cap);
                io.value = LinkBandwidth {
                    stated: Bandwidth { bytes_per_s: v },
                    direction: Direction::Bidirectional,
                };
                note(io, "the scale-up cap taken off".into());
            }
        }
    }
    if let Some(cap) = caps.nic {
        if cap < chip.nic.value.per_direction().bytes_per_s {
            c.nic.value = LinkBandwidth {
                stated: Bandwidth { bytes_per_s: cap },
                direction: Direction::PerDirection,
            };
            note(
                &mut c.nic,
                format!("capped at {} Gb/s per direction", cap * 8.0 / 1e9),
            );
        }
    }
    if let Some(cap) = caps.hbm {
        if cap < chip.hbm_bandwidth.value.bytes_per_s {
            c.hbm_bandwidth.value.bytes_per_s = cap;
            note(
                &mut c.hbm_bandwidth,
                format!("capped at {} GB/s", cap / 1e9),
            );
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every catalog chip's status under each rule is the published classification
    /// (hardware.md D3): the 2022 I/O criterion let the A800 and H800 through, the 2023 rule
    /// controls both, the H20 falls under no 3A090 tier (TPP 2,368, PD 2.9) but is named by the
    /// 2025 letter, and the 2026 case-by-case line takes the Hoppers but not Blackwell.
    #[test]
    fn catalog_chips_fall_where_published() {
        let rules = crate::builtin::export_rules();
        let cat = crate::builtin::catalog();
        let status = |chip: &str, rule: &str| -> String {
            let (name, spec) = cat.get(chip).expect("a catalog chip");
            rules
                .classify(name, spec)
                .into_iter()
                .find(|s| s.rule == rule)
                .expect("a rule")
                .status
        };
        let table = [
            // chip, 2022, 2023, 2025 letter, 2026
            (
                "A100",
                "3A090",
                "3A090.a",
                "no published threshold",
                "case-by-case review",
            ),
            (
                "A800",
                "not controlled",
                "3A090.a",
                "no published threshold",
                "case-by-case review",
            ),
            (
                "H100",
                "3A090",
                "3A090.a",
                "no published threshold",
                "case-by-case review",
            ),
            (
                "H800",
                "not controlled",
                "3A090.a",
                "no published threshold",
                "case-by-case review",
            ),
            (
                "H20",
                "not controlled",
                "not controlled",
                "licence required (named)",
                "not covered (not controlled under 3A090-2023)",
            ),
            (
                "H200",
                "3A090",
                "3A090.a",
                "no published threshold",
                "case-by-case review",
            ),
            (
                "B200",
                "3A090",
                "3A090.a",
                "no published threshold",
                "presumption of denial",
            ),
            (
                "GB200",
                "3A090",
                "3A090.a",
                "no published threshold",
                "presumption of denial",
            ),
        ];
        for (chip, y22, y23, letter, y26) in table {
            assert_eq!(status(chip, "3A090-2022"), y22, "{chip}");
            assert_eq!(status(chip, "3A090-2023"), y23, "{chip}");
            assert_eq!(status(chip, "h20-letter-2025"), letter, "{chip}");
            assert_eq!(status(chip, "case-by-case-2026"), y26, "{chip}");
            assert!(status(chip, "3A090.c-2024").starts_with("not applicable"));
        }
        // TPP by the rule's arithmetic: BIS's worked example is 300 TFLOPS at 16 bits = 4,800.
        let h20 = Metrics::of(cat.get("H20").unwrap().1);
        assert_eq!(h20.tpp, 148.0 * 16.0);
        assert!((h20.pd.unwrap() - 2368.0 / 814.0).abs() < 1e-9);
        assert_eq!(Metrics::of(cat.get("A100").unwrap().1).tpp, 4992.0);
    }

    /// A hypothetical chip: a TPP cap lowers every precision by one factor to the cap, a
    /// bandwidth cap lowers only what it names, a cap above the chip's own figure changes
    /// nothing; the capped chip's status follows (H100 at TPP 2,000 and 1 TB/s: below every
    /// 3A090 tier by TPP, PD 2.46).
    #[test]
    fn caps_lower_what_they_name() {
        let cat = crate::builtin::catalog();
        let h100 = cat.get("H100").unwrap().1;
        assert_eq!(derive(h100, Caps::default(), &h100.description), *h100);
        let above = Caps {
            scale_up: Some(2e12),
            nic: Some(1e12),
            tpp: Some(1e6),
            hbm: Some(1e13),
        };
        assert_eq!(derive(h100, above, &h100.description), *h100);
        let c = derive(
            h100,
            Caps {
                tpp: Some(2000.0),
                hbm: Some(1e12),
                ..Caps::default()
            },
            "capped",
        );
        let m = Metrics::of(&c);
        assert!((m.tpp - 2000.0).abs() < 1e-9);
        let ratio = |d| c.peak(d).unwrap().flops / h100.peak(d).unwrap().flops;
        assert!((ratio(Dtype::Fp8) - ratio(Dtype::Bf16)).abs() < 1e-12);
        assert_eq!(c.hbm_bandwidth.value.bytes_per_s, 1e12);
        assert_eq!(
            (c.scale_up.value, c.nic.value),
            (h100.scale_up.value, h100.nic.value)
        );
        let nv = derive(
            h100,
            Caps {
                scale_up: Some(400e9),
                ..Caps::default()
            },
            "nvlink",
        );
        assert_eq!(nv.scale_up.value.per_direction().bytes_per_s, 200e9);
        assert_eq!(Metrics::of(&nv).io_bandwidth, 528e9);
        assert_eq!(Metrics::of(&nv).tpp, Metrics::of(h100).tpp);
        let rules = crate::builtin::export_rules();
        let s = rules.classify("capped", &c);
        assert_eq!(s[1].status, "not controlled");
        assert_eq!(rules.classify("nvlink", &nv)[0].status, "not controlled");
        // Without a die area the density is unknown: a B200 capped to TPP 2,000 may or may not
        // reach 3A090.a's density tier, and the rule refining it says so.
        let b200 = cat.get("B200").unwrap().1;
        let low = derive(
            b200,
            Caps {
                tpp: Some(2000.0),
                ..Caps::default()
            },
            "low",
        );
        let s = rules.classify("low", &low);
        assert_eq!(s[1].controlled, None);
        assert!(s[1].status.starts_with("unknown"), "{}", s[1].status);
        assert_eq!(s[4].controlled, None);
        assert_eq!(decide([Some(true), None].into_iter(), true), Some(true));
        assert_eq!(decide([Some(true), None].into_iter(), false), None);
        assert_eq!(decide([Some(false), None].into_iter(), false), Some(false));
        assert_eq!(decide(std::iter::empty(), false), Some(true));
    }

    /// A rule's outcome as boxes in the TPP–PD plane: 3A090.a of 2023 is TPP ≥ 4,800, or
    /// TPP ≥ 1,600 with PD ≥ 5.92; the 2022 rule reads chip I/O and has none there.
    #[test]
    fn outcomes_are_boxes_in_the_plane() {
        let rules = crate::builtin::export_rules();
        let inf = f64::INFINITY;
        let a = rules.rules[1].outcomes[0]
            .when
            .boxes(Metric::Tpp, Metric::Pd)
            .unwrap();
        assert_eq!(a, vec![[4800.0, inf, -inf, inf], [1600.0, inf, 5.92, inf]]);
        assert!(rules.rules[0].outcomes[0]
            .when
            .boxes(Metric::Tpp, Metric::Pd)
            .is_none());
        let b = rules.rules[1].outcomes[1]
            .when
            .boxes(Metric::Tpp, Metric::Pd)
            .unwrap();
        assert_eq!(
            b,
            vec![[2400.0, 4800.0, 1.6, 5.92], [1600.0, inf, 3.2, 5.92]]
        );
        // What .b adds where .a does not already hold, as disjoint boxes: their areas (over a
        // finite window) add up to the union's.
        let clip = |v: Vec<Box2>| -> Vec<Box2> {
            v.into_iter()
                .map(|r| [r[0], r[1].min(2e4), r[2].max(0.0), r[3].min(30.0)])
                .collect()
        };
        let area = |v: &[Box2]| v.iter().map(|r| (r[1] - r[0]) * (r[3] - r[2])).sum::<f64>();
        let (a, b) = (clip(a), clip(b));
        let only_b = difference(&b, &a);
        let want = (4800.0 - 2400.0) * (5.92 - 1.6) + (2400.0 - 1600.0) * (5.92 - 3.2);
        assert!((area(&only_b) - want).abs() < 1e-9, "{only_b:?}");
        let overlaps = |x: &Box2, y: &Box2| {
            let m = meet(x, y);
            m[0] < m[1] && m[2] < m[3]
        };
        for (i, p) in only_b.iter().enumerate() {
            assert!(
                a.iter().chain(&only_b[..i]).all(|q| !overlaps(p, q)),
                "{only_b:?}"
            );
        }
        let whole = difference(&a, &[]);
        assert!(
            (area(&whole) - (2e4 - 4800.0) * 30.0 - (4800.0 - 1600.0) * (30.0 - 5.92)).abs() < 1e-6
        );
    }
}
