//! Reports: what a run leaves for people and programs to read: `summary.json` and the human
//! summary ([`summary`]), the HTML and Markdown report ([`document`]) with its SVG plots
//! ([`plots`]), the Perfetto trace ([`trace`]) and the CSV tables ([`tables`]).
//!
//! This room and `cli` are the only ones that touch files. Every file is written to a temporary
//! name and renamed, so a crash never leaves half a file.

pub mod document;
pub mod export;
pub mod plan;
pub mod plots;
pub mod summary;
pub mod sweep;
pub mod tables;
pub mod trace;

pub use summary::Summary;

use std::path::Path;

/// Writes `name` under `dir` atomically (temporary file, then rename).
pub fn write_atomic(dir: &Path, name: &str, contents: &str) -> std::io::Result<()> {
    write_all(&[(dir.join(name), contents.as_bytes().to_vec())])
}

/// Writes every `(path, contents)` or none: each goes to a temporary name beside its target
/// first, and only when all are written are they renamed into place. On an error the
/// temporaries are removed and no target is touched.
pub fn write_all(files: &[(std::path::PathBuf, Vec<u8>)]) -> std::io::Result<()> {
    let tmp = |p: &Path| {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        p.with_file_name(format!(".{name}.tmp"))
    };
    let mut written = Vec::new();
    let result = (|| {
        for (p, data) in files {
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let t = tmp(p);
            std::fs::write(&t, data)?;
            written.push(t);
        }
        Ok(())
    })();
    if let Err(e) = result {
        for t in &written {
            let _ = std::fs::remove_file(t);
        }
        return Err(e);
    }
    for (p, _) in files {
        std::fs::rename(tmp(p), p)?;
    }
    Ok(())
}
