//! Data: the IDX file format, the MNIST files (where they live, their checksums, how to fetch
//! them), seeded minibatches, and random distortions of training images.

pub mod augment;
pub mod batches;
pub mod fetch;
pub mod idx;
pub mod mnist;

pub use batches::Batches;
pub use idx::Images;
pub use mnist::{Dataset, Split};
