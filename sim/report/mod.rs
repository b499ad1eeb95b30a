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

/// Writes every `(path, contents)` or none: each goes to a temporary file of its own beside
/// its target (a name unique to this process and call, so that two runs into one folder never
/// share one), is flushed to disk, and only when all are written are they renamed into place
/// and the folder synced. On any error every temporary still there is removed (a write that
/// failed part-way included), and no target is touched unless the error came while renaming.
pub fn write_all(files: &[(std::path::PathBuf, Vec<u8>)]) -> std::io::Result<()> {
    use std::io::Write;
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let pid = std::process::id();
    let tmp = |i: usize, p: &Path| {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        p.with_file_name(format!(".{name}.{pid}-{call}-{i}.tmp"))
    };
    let mut pending: Vec<std::path::PathBuf> = Vec::new();
    let cleanup = |pending: &[std::path::PathBuf]| {
        for t in pending {
            let _ = std::fs::remove_file(t);
        }
    };
    for (i, (p, data)) in files.iter().enumerate() {
        let r = (|| {
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let t = tmp(i, p);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&t)?;
            pending.push(t);
            f.write_all(data)?;
            f.sync_all()
        })();
        if let Err(e) = r {
            cleanup(&pending);
            return Err(e);
        }
    }
    for (i, (p, _)) in files.iter().enumerate() {
        if let Err(e) = std::fs::rename(tmp(i, p), p) {
            cleanup(&pending[i..]);
            return Err(e);
        }
    }
    let mut dirs: Vec<&Path> = files
        .iter()
        .filter_map(|(p, _)| p.parent())
        .filter(|d| !d.as_os_str().is_empty())
        .collect();
    dirs.dedup();
    for d in dirs {
        // Best effort: some file systems cannot sync a directory.
        let _ = std::fs::File::open(d).and_then(|f| f.sync_all());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.ends_with(".tmp"))
            .collect()
    }

    /// A rename that fails (the target is a directory) leaves no temporary behind, and the
    /// files before it in the batch were not left half-written; a good batch leaves only its
    /// targets.
    #[test]
    fn failed_writes_leave_no_temporaries() {
        let dir = std::env::temp_dir().join(format!("trainsim-atomic-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("blocked")).unwrap();
        std::fs::write(dir.join("blocked").join("x"), "x").unwrap();
        let r = write_all(&[
            (dir.join("a.txt"), b"a".to_vec()),
            (dir.join("blocked"), b"b".to_vec()),
        ]);
        assert!(r.is_err());
        assert_eq!(leftovers(&dir), Vec::<String>::new());
        // Two batches to one folder, one after the other, do not share a temporary.
        write_all(&[(dir.join("c.txt"), b"1".to_vec())]).unwrap();
        write_all(&[(dir.join("c.txt"), b"2".to_vec())]).unwrap();
        assert_eq!(std::fs::read(dir.join("c.txt")).unwrap(), b"2");
        assert_eq!(leftovers(&dir), Vec::<String>::new());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
