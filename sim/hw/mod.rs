//! Hardware: the GPU catalog, the calibration file and the kernel timing model.

pub mod calibration;
pub mod catalog;
pub mod kernel;

pub use calibration::Calibration;
pub use catalog::{Catalog, GpuSpec};
pub use kernel::{AttentionKernel, AttentionShape, GemmShape, KernelModel, KernelShape};
