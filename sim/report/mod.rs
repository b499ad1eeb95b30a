//! Reports: what a run leaves for people and programs to read. Today `summary.json` and the
//! human summary ([`summary`]); HTML and Markdown reports, SVG plots, traces and CSV belong here.
//!
//! This room and `cli` are the only ones that touch files. Every file is written to a temporary
//! name and renamed, so a crash never leaves half a file.

pub mod summary;

pub use summary::Summary;

use std::path::Path;

/// Writes `name` under `dir` atomically (temporary file, then rename).
pub fn write_atomic(dir: &Path, name: &str, contents: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, dir.join(name))
}
