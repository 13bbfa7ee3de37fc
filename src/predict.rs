//! Classifying images with a trained model: the forward pass, the probabilities and the most
//! probable classes by name, as `mnist-mlp predict` prints them and `serve` answers them.

use crate::eval::{predict_scores, top_k};
use crate::kernels::{Engine, Prepared};
use crate::model::Loaded;
use crate::nn::Workspace;
use serde::Serialize;

/// One of a prediction's most probable classes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RankedClass {
    /// The class index: a digit for MNIST, a kind of clothing for Fashion-MNIST. Serialised as
    /// `digit`, its name in the HTTP API and in `predict --json` since MNIST, which the drawing
    /// page and users' scripts read.
    #[serde(rename = "digit")]
    pub class: usize,
    /// The model's name for the class (`config.json`'s `classes`).
    pub name: String,
    pub probability: f32,
}

/// What the model says about one image.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// The `k` most probable classes, most probable first (lower index first on ties).
    pub top: Vec<RankedClass>,
    /// ŷ = softmax(z^L), one per class.
    pub probabilities: Vec<f32>,
    /// z^L, the raw scores before softmax.
    pub logits: Vec<f32>,
}

/// Classify the images in `x` (row-major, `loaded.mlp.sizes[0]` values in 0–1 each), in chunks
/// of `ws`'s capacity; each with its `k` most probable classes (`k` at most the class count).
/// `prepared`: [`Engine::prepare`] of the model, for the numbers `eval` gives.
pub fn classify(
    engine: &Engine,
    loaded: &Loaded,
    prepared: Option<&Prepared>,
    ws: &mut Workspace<f32>,
    x: &[f32],
    k: usize,
) -> Vec<Prediction> {
    let classes = loaded.mlp.classes();
    let names = &loaded.config.model.classes;
    let scores = predict_scores(engine, &loaded.mlp, prepared, ws, x);
    scores
        .probabilities
        .chunks_exact(classes)
        .zip(scores.logits.chunks_exact(classes))
        .map(|(probabilities, logits)| Prediction {
            top: top_k(probabilities, k.min(classes))
                .into_iter()
                .map(|(class, probability)| RankedClass {
                    class,
                    name: names.get(class).cloned().unwrap_or_else(|| class.to_string()),
                    probability,
                })
                .collect(),
            probabilities: probabilities.to_vec(),
            logits: logits.to_vec(),
        })
        .collect()
}
