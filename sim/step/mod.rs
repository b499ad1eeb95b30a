//! One training step: the stage model both engines consume, the result they both return, and
//! the two engines side by side.
//!
//! - [`staging`]: the step cut into pipeline chunks, each block's kernels and communication
//!   priced, parameters, static memory, gradient sync and the optimizer ([`Staging`]).
//! - [`result`]: what an engine says of a step ([`StepResult`]: time, breakdown, memory).
//! - [`analytic`]: the closed-form estimate, fast enough for sweeps.
//! - [`des`]: the discrete-event simulation of the whole step as tasks on GPU streams.
//!
//! The engines never use each other; both stand on `staging` and `result`.

pub mod analytic;
pub mod des;
pub mod result;
pub mod staging;

pub use result::{Breakdown, ChunkCost, LinkInfo, Memory, StepResult, TimedTask, Timeline};
pub use staging::{memory_floor, partition, Blocks, Staging};
