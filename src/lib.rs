//! mnist-mlp: multilayer perceptrons for MNIST-style digit images, with backpropagation written
//! out by hand after the equations of the seed report (§2.1), trained by the report's momentum
//! SGD or by Nesterov, Adam or AdamW.
//!
//! Data flows one way: [`data`] reads IDX files → [`train`] draws batches and runs
//! [`nn::Mlp`] forward and backward, and [`optim::Optimizer`] updates the parameters → [`model`]
//! writes `model.safetensors` and `config.json` (and [`records`] the run's `metrics.csv` and
//! `summary.json`) → [`eval`] reads them back.
//!
//! Train a small network on images held in memory, evaluate it, save it, and read it back:
//!
//! ```
//! use mnist_mlp::config::TrainConfig;
//! use mnist_mlp::data::{idx::Images, mnist::{Dataset, Split}};
//! use mnist_mlp::train::{self, Progress};
//!
//! // Ten classes of 28×28 images: class c is a bright bar in row band c.
//! let split = |n: usize| {
//!     let mut pixels = vec![0u8; n * 784];
//!     let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
//!     for (i, &c) in labels.iter().enumerate() {
//!         let row = 2 + 2 * c as usize + i % 2;
//!         pixels[i * 784 + row * 28 + 4..i * 784 + row * 28 + 24].fill(255);
//!     }
//!     Split { images: Images { count: n, rows: 28, cols: 28, pixels }, labels }
//! };
//! let data = Dataset { dir: "in memory".into(), train: split(500), test: split(100) };
//!
//! let cfg = TrainConfig { hidden: vec![32], iterations: 200, eval_every: 100, threads: 1,
//!                         ..TrainConfig::default() };
//! let out = tempfile::tempdir()?;
//! let summary = train::run(&cfg, &data, out.path(), Progress::Quiet)?;
//! assert!(summary.test_accuracy > 0.9, "{}", summary.test_accuracy);
//!
//! // The run directory is a model: config.json and model.safetensors.
//! let model = mnist_mlp::model::load(out.path())?;
//! assert_eq!(model.mlp.sizes, vec![784, 32, 10]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

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
pub mod layerstats;
pub mod linalg;
pub mod model;
pub mod nn;
pub mod optim;
pub mod predict;
pub mod preprocess;
pub mod records;
pub mod rng;
pub mod serve;
pub mod study;
pub mod train;
pub mod watch;

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
