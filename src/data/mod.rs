//! Data: the IDX file format, the four files of an MNIST-style data set, the data sets we know
//! by name (where they live, their checksums, how to fetch them, their class names), seeded
//! minibatches, and random distortions of training images.

pub mod augment;
pub mod batches;
pub mod fetch;
pub mod idx;
pub mod mnist;
pub mod sets;

pub use batches::Batches;
pub use idx::Images;
pub use mnist::{Dataset, Split};
pub use sets::DatasetKind;
