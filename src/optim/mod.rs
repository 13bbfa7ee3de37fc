//! The update rules and the learning-rate schedules.

pub mod max_norm;
pub mod optimizer;
pub mod schedule;

pub use optimizer::{L2Mode, Method, Optimizer, Update};
pub use schedule::Schedule;
