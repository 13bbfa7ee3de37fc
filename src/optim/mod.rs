//! The update rule and the learning-rate schedules.

pub mod schedule;
pub mod sgd;

pub use schedule::Schedule;
pub use sgd::{L2Mode, Sgd};
