//! mnist-mlp: multilayer perceptrons for MNIST-style digit images, with backpropagation written
//! out by hand after the equations of the seed report (§2.1), trained by momentum SGD.
//!
//! Data flows one way: [`data`] reads IDX files → [`train`] draws batches and runs
//! [`nn::Mlp`] forward and backward, and [`optim::Sgd`] updates the parameters → [`model`]
//! writes `model.safetensors` and `config.json` → [`eval`] reads them back.

pub mod bench;
pub mod cli;
pub mod config;
pub mod data;
pub mod error;
pub mod eval;
pub mod fsutil;
pub mod kernels;
pub mod model;
pub mod nn;
pub mod optim;
pub mod rng;
pub mod study;
pub mod train;

pub use error::{Error, Result};

/// Serialise a type through its `Display` and deserialise it through its `FromStr`, so that
/// `config.json` holds the same text the command line takes (`"step:0.85:250"`).
#[macro_export]
macro_rules! serde_via_str {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
