//! trainsim: a cycle-approximate simulator of GPU training clusters.
//!
//! Data flows one way: config → validated specs → (task graph →) engine → result → cost → report.
//! See ARCHITECTURE.md for the map.

pub mod config;
pub mod hw;
pub mod units;
