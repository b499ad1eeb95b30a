//! The one integration-test binary: runs the `trainsim` executable as a user would.

mod architecture;
mod chips;
mod collective;
mod diagnostics;
mod export;
mod fuzz;
mod goodput;
mod network;
mod outputs;
mod plan;
mod readme;
mod run;
mod sweep;
mod validate;

use std::path::PathBuf;
use std::process::Command;

/// Output of one `trainsim` invocation.
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn trainsim(args: &[&str]) -> Out {
    let o = Command::new(env!("CARGO_BIN_EXE_trainsim"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("trainsim runs");
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// A fresh, empty output directory for one test.
pub fn fresh_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}
