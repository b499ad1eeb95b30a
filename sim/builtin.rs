//! The documents compiled into the binary: the GPU catalog (`topologies/gpus.yaml`) and the
//! calibration (`topologies/calibration.yaml`), and the parsers that turn such documents into
//! `hw` types. `hw` itself knows no file format; this is where its data meets YAML.

use crate::config::{parse_doc, Diagnostic, Source};
use crate::hw::{Calibration, Catalog};

/// The catalog as shipped.
pub const GPUS_YAML: &str = include_str!("../topologies/gpus.yaml");

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
        parse_calibration(&Source::embedded(
            "topologies/calibration.yaml",
            CALIBRATION_YAML,
        ))
        .expect("embedded calibration is valid (checked by tests)")
    })
}

/// A calibration document (`validate --calibration FILE`).
pub fn parse_calibration(src: &Source) -> Result<Calibration, Diagnostic> {
    parse_doc(src, &[])
}
