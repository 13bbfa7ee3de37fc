//! mnist-mlp: multilayer perceptrons for MNIST-style digit images, with backpropagation written
//! out by hand after the equations of the seed report (§2.1), trained by the report's momentum
//! SGD or by Nesterov, Adam or AdamW.
//!
//! Data flows one way: [`data`] reads IDX files → [`train`] draws batches and runs
//! [`nn::Mlp`] forward and backward, and [`optim::Optimizer`] updates the parameters → [`model`]
//! writes `model.safetensors` and `config.json` → [`eval`] reads them back.

pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod data;
pub mod error;
pub mod eval;
pub mod fsutil;
pub mod fuzz;
pub mod kernels;
pub mod model;
pub mod nn;
pub mod optim;
pub mod preprocess;
pub mod rng;
pub mod serve;
pub mod study;
pub mod train;

pub use error::{Error, Result};

/// `Display`, `FromStr` and serde for an enum of plain names, from one table:
/// `named_enum!(L2Mode, "L2 mode", { L2Mode::PerSample => "per-sample", … })`.
#[macro_export]
macro_rules! named_enum {
    ($t:ty, $what:literal, { $($variant:path => $name:literal),+ $(,)? }) => {
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(match self {
                    $($variant => $name,)+
                })
            }
        }
        impl std::str::FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($name => Ok($variant),)+
                    _ => Err(format!("unknown {} '{s}', expected {}", $what, [$($name),+].join(", "))),
                }
            }
        }
        $crate::serde_via_str!($t);
    };
}

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
