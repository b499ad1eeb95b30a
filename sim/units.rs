//! Typed physical quantities, parsed from unit strings.
//!
//! Configuration files write every dimensioned value as a string with a unit (`"400 Gb/s"`,
//! `"80 GiB"`, `"3.7 us"`). A bare number where a unit is required is an error that lists the
//! accepted units, because the classic mistakes (`Gb` vs `GB`, `GB` vs `GiB`) are silent
//! otherwise. Inside the simulator time is an integer number of picoseconds ([`Time`]); rates
//! and sizes are `f64` in base SI units (bytes, bytes/s, FLOP/s, W, Hz, USD).

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;

/// Picoseconds per second.
pub const PS_PER_S: f64 = 1e12;

/// The discrete-event engine's horizon in seconds (`engine::HORIZON`, 2^63 ps, about 107
/// days): a step longer than this is refused by both engines alike.
pub const HORIZON_S: f64 = 9_223_372.036_854_776;

/// Error from parsing a quantity: what was found and what is accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("found {found}, expected {expected}")]
pub struct UnitError {
    pub found: String,
    pub expected: String,
}

/// A kind of quantity: its name, accepted unit strings and their factor to the base unit.
pub trait Quantity: Sized {
    const KIND: &'static str;
    const UNITS: &'static [(&'static str, f64)];
    const EXAMPLE: &'static str;
    /// Whether a bare number (no unit) is accepted, as for plain counts.
    const ALLOW_BARE: bool = false;
    /// The values trainsim accepts, in the base unit (inclusive), and how messages write them:
    /// far outside physical ranges the simulation would overflow or mean nothing.
    const RANGE: (f64, f64, &'static str);
    fn from_base(v: f64) -> Self;

    /// `v` (base units) inside [`Self::RANGE`], or what to say instead.
    fn in_range(v: f64, found: String) -> Result<Self, UnitError> {
        let (lo, hi, text) = Self::RANGE;
        if !v.is_finite() || v < lo || v > hi {
            return Err(UnitError {
                found,
                expected: format!(
                    "{} {} from {text}",
                    if Self::KIND.starts_with(['a', 'e', 'i', 'o', 'u']) {
                        "an"
                    } else {
                        "a"
                    },
                    Self::KIND
                ),
            });
        }
        Ok(Self::from_base(v))
    }

    fn expected() -> String {
        let names: Vec<&str> = Self::UNITS.iter().map(|(u, _)| *u).collect();
        format!(
            "a {} with a unit, e.g. \"{}\" (units: {})",
            Self::KIND,
            Self::EXAMPLE,
            names.join(", ")
        )
    }

    /// Parses `"<number> <unit>"`. Negative or non-finite values are rejected.
    fn parse(s: &str) -> Result<Self, UnitError> {
        let err = || UnitError {
            found: format!("\"{s}\""),
            expected: Self::expected(),
        };
        let (num, unit) = split_number(s).ok_or_else(err)?;
        let factor = Self::UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .map(|(_, f)| *f)
            .ok_or_else(err)?;
        if !num.is_finite() || num < 0.0 {
            return Err(UnitError {
                found: format!("\"{s}\""),
                expected: format!("a non-negative {}", Self::KIND),
            });
        }
        Self::in_range(num * factor, format!("\"{s}\""))
    }
}

/// Splits `"1.5 GB/s"` into `(1.5, "GB/s")`. The space is optional; `_` separators are allowed.
fn split_number(s: &str) -> Option<(f64, &str)> {
    let s = s.trim();
    let s = s.strip_prefix('$').map(|r| r.trim_start()).unwrap_or(s);
    let end = s
        .char_indices()
        .find(|&(i, c)| {
            !(c.is_ascii_digit()
                || c == '.'
                || c == '_'
                || ((c == 'e' || c == 'E')
                    && i > 0
                    && s[i + 1..].starts_with(|d: char| d.is_ascii_digit() || d == '-'))
                || ((c == '-' || c == '+') && (i == 0 || s[..i].ends_with(['e', 'E']))))
        })
        .map(|(i, _)| i)
        .unwrap_or(s.len());
    let num: f64 = s[..end].replace('_', "").parse().ok()?;
    Some((num, s[end..].trim()))
}

macro_rules! quantity {
    ($(#[$m:meta])* $name:ident, $field:ident, $kind:expr, $example:expr, $range:expr, [$($u:expr => $f:expr),+ $(,)?]) => {
        quantity!($(#[$m])* $name, $field, $kind, $example, false, $range, [$($u => $f),+]);
    };
    ($(#[$m:meta])* $name:ident, $field:ident, $kind:expr, $example:expr, $bare:expr, $range:expr, [$($u:expr => $f:expr),+ $(,)?]) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default, serde::Serialize)]
        pub struct $name {
            pub $field: f64,
        }
        impl Quantity for $name {
            const KIND: &'static str = $kind;
            const EXAMPLE: &'static str = $example;
            const UNITS: &'static [(&'static str, f64)] = &[$(($u, $f)),+];
            const ALLOW_BARE: bool = $bare;
            const RANGE: (f64, f64, &'static str) = $range;
            fn from_base(v: f64) -> Self {
                Self { $field: v }
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(QuantityVisitor::<$name>(std::marker::PhantomData))
            }
        }
        impl std::str::FromStr for $name {
            type Err = UnitError;
            fn from_str(s: &str) -> Result<Self, UnitError> {
                <Self as Quantity>::parse(s)
            }
        }
    };
}

struct QuantityVisitor<Q>(std::marker::PhantomData<Q>);

impl<Q: Quantity> QuantityVisitor<Q> {
    fn bare<E: de::Error>(v: f64) -> Result<Q, E> {
        if Q::ALLOW_BARE && v >= 0.0 {
            return Q::in_range(v, format!("{v}")).map_err(E::custom);
        }
        Err(E::custom(UnitError {
            found: format!("the bare number {v}"),
            expected: Q::expected(),
        }))
    }
}

impl<'de, Q: Quantity> Visitor<'de> for QuantityVisitor<Q> {
    type Value = Q;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&Q::expected())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Q, E> {
        Q::parse(v).map_err(E::custom)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Q, E> {
        Self::bare(v as f64)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Q, E> {
        Self::bare(v as f64)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Q, E> {
        Self::bare(v)
    }
}

quantity!(
    /// A data rate in bytes per second. Bits (`Gb/s`) and bytes (`GB/s`) are both accepted.
    Bandwidth, bytes_per_s, "bandwidth", "400 Gb/s", (125e3, 1e15, "1 Mb/s to 1 PB/s"), [
    "b/s" => 0.125, "kb/s" => 125.0, "Mb/s" => 125e3, "Gb/s" => 125e6, "Tb/s" => 125e9,
    "bps" => 0.125, "Kbps" => 125.0, "Mbps" => 125e3, "Gbps" => 125e6, "Tbps" => 125e9,
    "B/s" => 1.0, "kB/s" => 1e3, "MB/s" => 1e6, "GB/s" => 1e9, "TB/s" => 1e12,
    "KiB/s" => 1024.0, "MiB/s" => 1048576.0, "GiB/s" => 1073741824.0, "TiB/s" => 1099511627776.0,
]);

quantity!(
    /// A size in bytes. Decimal (`GB`) and binary (`GiB`) prefixes are distinct.
    ByteSize, bytes, "size", "80 GiB", (0.0, 1e18, "0 B to 1,000 PB"), [
    "B" => 1.0, "kB" => 1e3, "MB" => 1e6, "GB" => 1e9, "TB" => 1e12, "PB" => 1e15,
    "KiB" => 1024.0, "MiB" => 1048576.0, "GiB" => 1073741824.0, "TiB" => 1099511627776.0,
]);

quantity!(
    /// A compute rate in FLOP/s.
    FlopRate, flops, "compute rate", "989 TFLOPS", (1e9, 1e18, "1 GFLOPS to 1,000 PFLOPS"), [
    "FLOPS" => 1.0, "GFLOPS" => 1e9, "TFLOPS" => 1e12, "PFLOPS" => 1e15,
    "FLOP/s" => 1.0, "GFLOP/s" => 1e9, "TFLOP/s" => 1e12, "PFLOP/s" => 1e15,
]);

quantity!(
    /// An area in square metres: a die's `"814 mm^2"` (also `mm2`, `mm²`, `cm^2`).
    Area, m2, "area", "814 mm^2", (0.0, 1e-2, "0 to 10,000 mm^2"), [
    "mm^2" => 1e-6, "mm2" => 1e-6, "mm²" => 1e-6, "cm^2" => 1e-4, "cm2" => 1e-4, "cm²" => 1e-4,
]);

quantity!(
    /// Electrical power in watts.
    Power, watts, "power", "700 W", (0.0, 1e6, "0 W to 1 MW"), ["W" => 1.0, "kW" => 1e3, "MW" => 1e6]);

quantity!(
    /// A clock frequency in hertz.
    Frequency, hz, "frequency", "1830 MHz", (1e6, 1e11, "1 MHz to 100 GHz"), ["Hz" => 1.0, "kHz" => 1e3, "MHz" => 1e6, "GHz" => 1e9]);

quantity!(
    /// An amount of money in US dollars: `"$2"`, `"2 USD"`, `"$1.5M"`.
    Money, usd, "amount of money", "$2", (0.0, 1e15, "$0 to $1e15"), ["" => 1.0, "USD" => 1.0, "k" => 1e3, "M" => 1e6, "kUSD" => 1e3, "MUSD" => 1e6]);

quantity!(
    /// A wall-clock span in seconds (a deadline): `"60 d"`, `"8 weeks"`, `"36 h"`.
    Duration, secs, "duration", "60 d", (0.0, 3.2e10, "0 s to 1,000 years"), [
    "s" => 1.0, "min" => 60.0, "h" => 3600.0, "d" => 86400.0, "day" => 86400.0, "days" => 86400.0,
    "week" => 604800.0, "weeks" => 604800.0,
]);

quantity!(
    /// A count with an optional SI suffix: `"14.8T"` tokens, `"469B"`, `"62914560"`.
    Count, value, "count", "14.8T", true, (0.0, 1e18, "0 to 1e18"), ["" => 1.0, "K" => 1e3, "M" => 1e6, "B" => 1e9, "T" => 1e12]);

impl Count {
    /// The count rounded to an integer.
    pub fn get(&self) -> u64 {
        self.value.round() as u64
    }
}

/// A duration in integer picoseconds: the engine's time base. It serialises as the unit string
/// it parses from, in the largest unit that keeps it exact ("2 us", "2100 ns", "7 ps").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time {
    pub ps: u64,
}

impl serde::Serialize for Time {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = if self.ps % 1_000_000 == 0 {
            format!("{} us", self.ps / 1_000_000)
        } else if self.ps % 1_000 == 0 {
            format!("{} ns", self.ps / 1_000)
        } else {
            format!("{} ps", self.ps)
        };
        s.serialize_str(&text)
    }
}

impl Time {
    pub const ZERO: Time = Time { ps: 0 };
    pub fn from_ps(ps: u64) -> Self {
        Time { ps }
    }
    /// Rounds up, so that a non-zero duration never collapses to zero.
    pub fn from_secs_f64(s: f64) -> Self {
        assert!(s.is_finite() && s >= 0.0, "negative or non-finite time {s}");
        Time {
            ps: (s * PS_PER_S).ceil() as u64,
        }
    }
    pub fn as_secs_f64(&self) -> f64 {
        self.ps as f64 / PS_PER_S
    }
}

impl Quantity for Time {
    const KIND: &'static str = "time";
    const EXAMPLE: &'static str = "3.7 us";
    const RANGE: (f64, f64, &'static str) = (0.0, 10.0, "0 s to 10 s");
    const UNITS: &'static [(&'static str, f64)] = &[
        ("ps", 1e-12),
        ("ns", 1e-9),
        ("us", 1e-6),
        ("µs", 1e-6),
        ("μs", 1e-6),
        ("ms", 1e-3),
        ("s", 1.0),
    ];
    fn from_base(v: f64) -> Self {
        Time {
            ps: (v * PS_PER_S).round() as u64,
        }
    }
}

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(QuantityVisitor::<Time>(std::marker::PhantomData))
    }
}

/// Whether a quoted link bandwidth counts one direction or both together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    PerDirection,
    Bidirectional,
}

/// A link bandwidth whose direction convention is explicit: `"200 GB/s per direction"` or
/// `"400 GB/s bidirectional"`. Links in the simulator are directed, so the model uses
/// [`LinkBandwidth::per_direction`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LinkBandwidth {
    pub stated: Bandwidth,
    pub direction: Direction,
}

impl LinkBandwidth {
    pub fn per_direction(&self) -> Bandwidth {
        match self.direction {
            Direction::PerDirection => self.stated,
            Direction::Bidirectional => Bandwidth {
                bytes_per_s: self.stated.bytes_per_s / 2.0,
            },
        }
    }
    pub fn expected() -> String {
        format!(
            "a link bandwidth that says its direction, e.g. \"200 GB/s per direction\" or \"400 GB/s bidirectional\" (units: {})",
            Bandwidth::UNITS.iter().map(|(u, _)| *u).collect::<Vec<_>>().join(", ")
        )
    }
    pub fn parse(s: &str) -> Result<Self, UnitError> {
        let t = s.trim();
        let (body, direction) = if let Some(b) = t.strip_suffix("per direction") {
            (b, Direction::PerDirection)
        } else if let Some(b) = t.strip_suffix("bidirectional") {
            (b, Direction::Bidirectional)
        } else {
            return Err(UnitError {
                found: format!("\"{s}\""),
                expected: Self::expected(),
            });
        };
        let stated = Bandwidth::parse(body).map_err(|e| UnitError {
            found: format!("\"{s}\""),
            // A number and unit that parse but lie outside the range say so.
            expected: if e.expected.starts_with("a bandwidth from") {
                e.expected
            } else {
                Self::expected()
            },
        })?;
        Ok(LinkBandwidth { stated, direction })
    }
}

impl std::str::FromStr for LinkBandwidth {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, UnitError> {
        LinkBandwidth::parse(s)
    }
}

impl<'de> Deserialize<'de> for LinkBandwidth {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LinkBandwidth;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(&LinkBandwidth::expected())
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LinkBandwidth, E> {
                LinkBandwidth::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<LinkBandwidth, E> {
                Err(E::custom(UnitError {
                    found: format!("the bare number {v}"),
                    expected: LinkBandwidth::expected(),
                }))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<LinkBandwidth, E> {
                self.visit_u64(v as u64)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<LinkBandwidth, E> {
                self.visit_u64(v as u64)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A time serialises as a unit string that parses back to the same picoseconds.
    #[test]
    fn time_round_trips_through_its_unit_string() {
        for ps in [0u64, 7, 2_100_000, 13_000_000, 1_500, 123_456_789] {
            let t = Time::from_ps(ps);
            let v = serde_yaml::to_value(t).unwrap();
            let back: Time = serde_yaml::from_value(v.clone()).unwrap();
            assert_eq!(back, t, "{v:?}");
        }
        assert_eq!(
            serde_yaml::to_value(Time::from_ps(2_100_000)).unwrap(),
            serde_yaml::Value::String("2100 ns".into())
        );
    }

    #[test]
    fn bits_and_bytes_differ_by_eight() {
        let gb: Bandwidth = "400 Gb/s".parse().unwrap();
        let gbyte: Bandwidth = "50 GB/s".parse().unwrap();
        assert_eq!(gb.bytes_per_s, gbyte.bytes_per_s);
        assert_eq!(gbyte.bytes_per_s, 50e9);
    }

    #[test]
    fn binary_and_decimal_sizes() {
        assert_eq!(
            ByteSize::parse("80 GiB").unwrap().bytes,
            80.0 * 1073741824.0
        );
        assert_eq!(ByteSize::parse("80 GB").unwrap().bytes, 80e9);
        assert_eq!(ByteSize::parse("1.5KiB").unwrap().bytes, 1536.0);
    }

    #[test]
    fn the_horizon_is_the_engines() {
        assert_eq!(HORIZON_S * PS_PER_S, crate::engine::HORIZON as f64);
    }

    #[test]
    fn times_are_integer_picoseconds() {
        assert_eq!(Time::parse("3.7 us").unwrap().ps, 3_700_000);
        assert_eq!(Time::parse("1 µs").unwrap().ps, 1_000_000);
        assert_eq!(Time::parse("250 ns").unwrap().ps, 250_000);
        assert_eq!(Time::parse("2 s").unwrap().ps, 2_000_000_000_000);
        assert_eq!(Time::from_secs_f64(1e-13).ps, 1, "rounds up, never to zero");
    }

    #[test]
    fn other_quantities() {
        assert_eq!(FlopRate::parse("989 TFLOPS").unwrap().flops, 989e12);
        assert_eq!(Power::parse("1.2 kW").unwrap().watts, 1200.0);
        assert_eq!(Frequency::parse("1830 MHz").unwrap().hz, 1.83e9);
        assert_eq!(Money::parse("$2").unwrap().usd, 2.0);
        assert_eq!(Money::parse("5.576 MUSD").unwrap().usd, 5.576e6);
        assert_eq!(Count::parse("14.8T").unwrap().get(), 14_800_000_000_000);
        assert_eq!(Count::parse("62914560").unwrap().get(), 62_914_560);
        assert_eq!(Count::parse("1e3").unwrap().get(), 1000);
    }

    #[test]
    fn wrong_units_list_the_accepted_ones() {
        let e = Bandwidth::parse("400 GB").unwrap_err();
        assert!(
            e.expected.contains("Gb/s") && e.expected.contains("GB/s"),
            "{e}"
        );
        assert!(Time::parse("3 hours").is_err());
        assert!(ByteSize::parse("-1 GB").is_err());
        assert!(ByteSize::parse("GB").is_err());
    }

    #[test]
    fn link_bandwidth_needs_a_direction() {
        let bi = LinkBandwidth::parse("400 GB/s bidirectional").unwrap();
        assert_eq!(bi.per_direction().bytes_per_s, 200e9);
        let pd = LinkBandwidth::parse("400 Gb/s per direction").unwrap();
        assert_eq!(pd.per_direction().bytes_per_s, 50e9);
        let e = LinkBandwidth::parse("400 GB/s").unwrap_err();
        assert!(e.expected.contains("per direction"), "{e}");
    }

    #[test]
    fn bare_numbers_are_rejected_in_yaml() {
        let e = serde_yaml::from_str::<Bandwidth>("400").unwrap_err();
        assert!(e.to_string().contains("bare number 400"), "{e}");
        let ok: Bandwidth = serde_yaml::from_str("\"400 Gb/s\"").unwrap();
        assert_eq!(ok.bytes_per_s, 50e9);
        let n: Count = serde_yaml::from_str("1000").unwrap();
        assert_eq!(n.get(), 1000);
    }
}
