//! Hardware: the GPU catalog, the calibration file, the kernel timing model, and export-control
//! rules with the chip metrics they read.

pub mod calibration;
pub mod catalog;
pub mod export;
pub mod kernel;

pub use calibration::Calibration;
pub use catalog::{Catalog, GpuSpec};
pub use kernel::{AttentionKernel, AttentionShape, GemmShape, KernelModel, KernelShape};
