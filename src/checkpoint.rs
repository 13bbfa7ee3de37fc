//! Checkpoints: the full state of a training run in one file, so that an interrupted run
//! resumes to the very same bits.
//!
//! `checkpoint.safetensors` holds two f32 tensors, `params` and `velocity` (the network's flat
//! parameter vector and the optimizer's first state vector, same layout: SGD's velocity or
//! Adam's first moment, [`Checkpoint::first_moment`]), a third, `second`, for Adam's
//! squared-gradient average ([`Checkpoint::second_moment`]), a fourth, `best`, with
//! `--keep-best`, and in its metadata under `"state"` a JSON
//! document with everything else: format and version, the run's configuration, the iteration,
//! the shuffler (RNG state, permutation, position), the metrics so far, the partial training
//! loss window, and the time spent. It is written atomically (temporary file, fsync, rename), so
//! a crash while writing leaves the previous checkpoint.
//!
//! The metadata's `"sha256"` is a checksum over the state and every tensor ([`checksum`]);
//! [`load`] refuses a checkpoint whose contents do not match it, with a message of its own,
//! so that a damaged or edited file is not resumed into another model (or reported as a
//! diverging run).

use crate::config::RunConfig;
use crate::data::Batches;
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::records::MetricsRow;
use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
pub const CHECKPOINT_FORMAT: &str = "mnist-mlp-checkpoint";
/// 2: with the `"sha256"` checksum.
pub const CHECKPOINT_VERSION: u32 = 2;

/// The shape of the data a run was trained on, to refuse resuming on other data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataShape {
    pub train_images: usize,
    pub test_images: usize,
    pub rows: usize,
    pub cols: usize,
}

/// Everything of a run in progress except the two big vectors.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    pub format: String,
    pub version: u32,
    pub config: RunConfig,
    pub data: DataShape,
    /// Iterations done.
    pub iteration: usize,
    pub batches: Batches,
    pub rows: Vec<MetricsRow>,
    /// Sum and count of training losses since the last metrics row.
    pub window_loss: f64,
    pub window_len: usize,
    pub train_seconds: f64,
    pub eval_seconds: f64,
}

pub struct Checkpoint {
    pub state: State,
    pub params: Vec<f32>,
    /// The optimizer's first state vector: SGD's and Nesterov's velocity v, Adam's and AdamW's
    /// first moment m. Tensor `velocity` in the file, whatever the rule.
    pub first_moment: Vec<f32>,
    /// Adam's and AdamW's second moment s; empty for the other update rules. Tensor `second` in
    /// the file.
    pub second_moment: Vec<f32>,
    /// With `--keep-best`: the parameters of the best evaluation so far; else empty.
    pub best: Vec<f32>,
}

/// The tensors a checkpoint may hold, in the order the checksum covers them. The names are the
/// file format's: `velocity` holds [`Checkpoint::first_moment`] and `second`
/// [`Checkpoint::second_moment`].
const TENSORS: [&str; 4] = ["params", "velocity", "second", "best"];

/// SHA-256 (hex) over the state's JSON text and each tensor's name, length and bytes (an
/// absent tensor counts as empty), each part prefixed by its length, so that no two different
/// contents hash alike by moving bytes between parts.
pub fn checksum(state_json: &str, tensors: [&[u8]; 4]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut part = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    part(state_json.as_bytes());
    for (name, bytes) in TENSORS.iter().zip(tensors) {
        part(name.as_bytes());
        part(bytes);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn save(
    dir: &Path,
    state: &State,
    params: &[f32],
    first_moment: &[f32],
    second_moment: &[f32],
    best: &[f32],
) -> Result<()> {
    let (p, v, s, b) = (
        f32_bytes(params),
        f32_bytes(first_moment),
        f32_bytes(second_moment),
        f32_bytes(best),
    );
    let mut views = vec![
        (
            "params",
            TensorView::new(Dtype::F32, vec![params.len()], &p).expect("shape matches"),
        ),
        (
            "velocity",
            TensorView::new(Dtype::F32, vec![first_moment.len()], &v).expect("shape matches"),
        ),
    ];
    for (name, values, bytes) in [("second", second_moment, &s), ("best", best, &b)] {
        if !values.is_empty() {
            views.push((
                name,
                TensorView::new(Dtype::F32, vec![values.len()], bytes).expect("shape matches"),
            ));
        }
    }
    let json = serde_json::to_string(state).expect("the state serialises");
    let sum = checksum(&json, [&p, &v, &s, &b]);
    let meta = HashMap::from([("state".to_string(), json), ("sha256".to_string(), sum)]);
    let bytes = safetensors::serialize(views, Some(meta)).expect("in-memory serialisation cannot fail");
    write_atomic(&dir.join(CHECKPOINT_FILE), &bytes)
}

pub fn load(dir: &Path) -> Result<Checkpoint> {
    let path = dir.join(CHECKPOINT_FILE);
    let bad = |msg: String| Error::model(&path, msg);
    if !path.is_file() {
        return Err(bad(format!(
            "no checkpoint: {} has no {CHECKPOINT_FILE} (a finished run removes it; a run started with --checkpoint-every 0 never writes one)",
            dir.display()
        )));
    }
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let (state, json, stored) = read_state(&path, &bytes)?;
    let tensors = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(format!("not a valid checkpoint (safetensors): {e}")))?;
    let read = |name: &str| read_f32(&path, &tensors, name);
    let (params, first_moment) = (read("params")?, read("velocity")?);
    let optional = |name: &str| -> Result<Vec<f32>> {
        if tensors.names().contains(&name) {
            read(name)
        } else {
            Ok(Vec::new())
        }
    };
    let (second_moment, best) = (optional("second")?, optional("best")?);
    let actual = checksum(
        &json,
        [&params, &first_moment, &second_moment, &best]
            .map(|t| f32_bytes(t))
            .each_ref()
            .map(|b| &b[..]),
    );
    if stored.as_ref() != Some(&actual) {
        return Err(Error::model(
            &path,
            format!(
                "the checkpoint is damaged: its contents do not match its checksum (stored {}, computed {actual}); it cannot be resumed. Start the run afresh, or resume from a copy of the checkpoint",
                stored.as_deref().unwrap_or("none")
            ),
        ));
    }
    let sizes = &state.config.model.layer_sizes;
    let expected: usize = sizes.windows(2).map(|w| w[0] * w[1] + w[1]).sum();
    if params.len() != expected
        || first_moment.len() != expected
        || !(second_moment.is_empty() || second_moment.len() == expected)
    {
        return Err(bad(format!(
            "holds {} parameters and {} velocities; layer sizes {sizes:?} need {expected}",
            params.len(),
            first_moment.len()
        )));
    }
    Ok(Checkpoint {
        state,
        params,
        first_moment,
        second_moment,
        best,
    })
}

/// The training state in a checkpoint file's metadata, checked to be of this format and
/// version; with its JSON text and the checksum stored beside it.
fn read_state(path: &Path, bytes: &[u8]) -> Result<(State, String, Option<String>)> {
    let bad = |msg: String| Error::model(path, msg);
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| bad(format!("not a valid checkpoint (safetensors): {e}")))?;
    let json = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("state"))
        .ok_or_else(|| {
            bad("has no training state; is it a checkpoint written by `mnist-mlp train`?".into())
        })?;
    let state: State =
        serde_json::from_str(json).map_err(|e| bad(format!("training state is unreadable: {e}")))?;
    if state.format != CHECKPOINT_FORMAT || state.version != CHECKPOINT_VERSION {
        return Err(bad(format!(
            "is {} version {}; this mnist-mlp reads {CHECKPOINT_FORMAT} version {CHECKPOINT_VERSION}",
            state.format, state.version
        )));
    }
    let stored = meta.metadata().as_ref().and_then(|m| m.get("sha256")).cloned();
    Ok((state, json.clone(), stored))
}

/// The f32 tensor `name` of a checkpoint.
fn read_f32(path: &Path, tensors: &safetensors::SafeTensors, name: &str) -> Result<Vec<f32>> {
    let t = tensors
        .tensor(name)
        .map_err(|_| Error::model(path, format!("missing tensor '{name}'")))?;
    if t.dtype() != Dtype::F32 {
        return Err(Error::model(
            path,
            format!("tensor '{name}' is {:?}, expected F32", t.dtype()),
        ));
    }
    Ok(t.data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}
