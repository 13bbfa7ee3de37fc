//! The one error type of the library: everything that can go wrong with input and output.
//!
//! The math core (`nn`, `optim`, `kernels`) cannot fail: a shape mismatch there is a bug and
//! panics with `assert!`. Files, flags, data sets and model directories can be wrong, and each
//! variant's message names the file or flag and says what was expected.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cause is part of the message and deliberately not a `#[source]`: the binary prints
    /// the whole chain, which would otherwise say it twice.
    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },

    #[error("{path}: {msg}")]
    Idx { path: PathBuf, msg: String },

    #[error("{path}: SHA-256 of the decompressed file is {actual}, expected {expected}")]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },

    #[error("data set in {dir}: {msg}")]
    Dataset { dir: PathBuf, msg: String },

    #[error("{flag}: {msg}")]
    InvalidFlag { flag: String, msg: String },

    #[error("could not fetch {what}; tried:\n{tried}\n{hint}")]
    Fetch {
        what: String,
        tried: String,
        hint: String,
    },

    /// `what` says what went wrong: "the loss became NaN", a loss above
    /// [`crate::train::DIVERGED_LOSS`], or a parameter.
    #[error(
        "training diverged at iteration {iteration}: {what} with learning rate {} \
         (last good loss: {}); try a lower --lr{}",
        if *lr != 0.0 && !(1e-4..1e6).contains(&lr.abs()) { format!("{lr:e}") } else { format!("{lr}") },
        last_finite.map(|l| format!("{l:.4}")).unwrap_or_else(|| "none".into()),
        checkpoint.as_ref().map(|c| format!("; {c}")).unwrap_or_default()
    )]
    Diverged {
        iteration: usize,
        lr: f64,
        what: String,
        last_finite: Option<f64>,
        checkpoint: Option<String>,
    },

    #[error(
        "interrupted after iteration {iteration}; a checkpoint is in {dir}. Resume with: mnist-mlp train --resume {dir}"
    )]
    Interrupted { iteration: usize, dir: PathBuf },

    /// Another live process holds the lock of work this one would do.
    #[error(
        "{what} is being written by another process ({holder}); refusing to write it too. \
         The lock {path} is released the moment that process ends, even if it is killed"
    )]
    Locked {
        what: String,
        path: PathBuf,
        holder: String,
    },

    /// A run record (`metrics.csv`, `summary.json`) that cannot be read: the file, the line
    /// (1-based), what is wrong there and what was expected.
    #[error("{path}, line {line}: {msg}")]
    Record { path: PathBuf, line: usize, msg: String },

    #[error("model in {path}: {msg}")]
    Model { path: PathBuf, msg: String },

    /// An image that cannot be decoded; `input` is a file name or what else the bytes came from.
    #[error("{input}: {msg}")]
    Image { input: String, msg: String },

    /// A decoded image in which preprocessing finds nothing to classify. The caller knows the
    /// image's name and adds it (the CLI does, as context).
    #[error("no digit found: {0}")]
    NoDigit(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            cause,
        }
    }

    pub fn flag(flag: &str, msg: impl Into<String>) -> Self {
        Error::InvalidFlag {
            flag: flag.to_string(),
            msg: msg.into(),
        }
    }

    pub fn model(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Model {
            path: path.into(),
            msg: msg.into(),
        }
    }
}
