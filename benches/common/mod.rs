//! What the benchmarks share: reading a shipped file as the CLI would.

use std::path::Path;
use trainsim::config::{Diagnostic, Source};

/// A file of the repository (relative paths from its root), with its directory for the paths
/// inside it.
pub fn read(p: &Path) -> Result<Source, Diagnostic> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = if p.is_relative() {
        root.join(p)
    } else {
        p.to_path_buf()
    };
    Ok(Source {
        name: p.display().to_string(),
        text: std::fs::read_to_string(&path).expect("a shipped file"),
        dir: path.parent().map(Path::to_path_buf),
    })
}

/// A pool of one thread: every benchmark's figures are per core.
pub fn one_core() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
}
