//! Scenarios: drivers that run many simulations from above and compare or tabulate them.
//!
//! - [`band`]: the uncertainty band around one run: alternatives and calibration residuals.
//! - [`validate`]: the published reference cases against trainsim's predictions.
//! - [`collective`]: one collective (or MoE dispatch/combine) measured on a simulated cluster,
//!   as nccl-tests or DeepEP's test would measure it.
//! - [`sweep`]: one scenario at every point of a grid of overrides, in parallel and in shards.
//! - [`plan`]: the layout and cluster-size search behind a capacity plan.
//!
//! - [`export`]: a run priced on chips and on capped chips, fixed and re-planned: what an export
//!   cap costs once the trainer adapts.
//!
//! Scenarios do no
//! I/O: the CLI hands them documents and a way to read the files they name.

pub mod band;
pub mod collective;
pub mod export;
pub mod plan;
pub mod sweep;
pub mod validate;
