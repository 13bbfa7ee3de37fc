//! Where speed lives: the training step and forward pass as they run ([`Engine`]), on fused
//! SIMD kernels and a thread pool.
//!
//! `nn` and `optim` say *what* is computed, in the notation of the seed report; this module says
//! *how*, and is held to them by `tests/engine.rs`. It sits above them (it calls `nn::loss` and
//! evaluates `optim`'s update rules in its epilogues); they import nothing from here.

#[cfg(target_arch = "x86_64")]
pub mod avx2;
#[cfg(target_arch = "x86_64")]
pub mod avx512;
#[cfg(target_arch = "x86_64")]
mod broadcast;
pub mod engine;
pub mod pool;
#[cfg(target_arch = "x86_64")]
mod simd;
#[cfg(target_arch = "x86_64")]
mod tiling;

pub use engine::{Backend, Engine, Prepared, StepParams};

pub use crate::linalg::{Op, Real, gemm, set_threads};
