//! trainsim: a cycle-approximate simulator of GPU training clusters.
//!
//! Data flows one way: config → validated specs → (task graph →) engine → result → cost → report.
//! See ARCHITECTURE.md for the map.

pub mod builtin;
pub mod cli;
pub mod config;
pub mod cost;
pub mod domain;
pub mod engine;
pub mod exec;
pub mod hw;
pub mod net;
pub mod pipeline;
pub mod report;
pub mod scenario;
pub mod step;
pub mod topo;
pub mod units;
pub mod workload;
