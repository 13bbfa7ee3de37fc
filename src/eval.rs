//! Evaluation and prediction: one forward pass, shared by `train`'s curves, `eval`, and every
//! command that classifies images.

use crate::data::Split;
use crate::kernels::{Engine, Prepared};
use crate::nn::{Mlp, Workspace, loss};

/// Test-set figures of one model.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Evaluation {
    pub count: usize,
    /// Mean cross-entropy.
    pub loss: f64,
    /// Fraction correct, 0–1.
    pub accuracy: f64,
    /// `confusion[true][predicted]`, counts.
    pub confusion: Vec<Vec<u64>>,
}

impl Evaluation {
    /// Per-class accuracy (recall): correct / images of that class.
    pub fn per_class_accuracy(&self) -> Vec<f64> {
        self.confusion
            .iter()
            .enumerate()
            .map(|(c, row)| {
                let total: u64 = row.iter().sum();
                if total == 0 {
                    f64::NAN
                } else {
                    row[c] as f64 / total as f64
                }
            })
            .collect()
    }

    /// The confusion matrix and per-class accuracy as a text table. Rows are labelled with the
    /// class index and, where the classes have names other than their digits, the name;
    /// columns keep the index, so that the table stays narrow.
    pub fn confusion_table(&self, classes: &[String]) -> String {
        let k = self.confusion.len();
        assert_eq!(classes.len(), k, "one name per class");
        let named = !crate::data::sets::are_digits(classes);
        let row_label = |c: usize| {
            if named {
                format!("{c} {}", classes[c])
            } else {
                c.to_string()
            }
        };
        let width = (0..k)
            .map(|c| row_label(c).chars().count())
            .max()
            .unwrap_or(0)
            .max(9);
        // Digits right-aligned, as the table always was; names read better left-aligned.
        let pad = |t: &str| {
            if named {
                format!("{t:<width$}")
            } else {
                format!("{t:>width$}")
            }
        };
        let mut s = pad("true\\pred");
        for c in 0..k {
            s += &format!("{c:>6}");
        }
        s += "   accuracy\n";
        for (c, (row, acc)) in self.confusion.iter().zip(self.per_class_accuracy()).enumerate() {
            s += &pad(&row_label(c));
            for v in row {
                s += &format!("{v:>6}");
            }
            s += &format!("   {:>7.2}%\n", 100.0 * acc);
        }
        s
    }
}

/// Index of the largest value (first on ties).
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// The `k` most probable classes of one probability row, most probable first.
pub fn top_k(probabilities: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut idx: Vec<usize> = (0..probabilities.len()).collect();
    idx.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]).then(a.cmp(&b)));
    idx.into_iter().take(k).map(|i| (i, probabilities[i])).collect()
}

/// What the network says about `n` images: both (n, K), row-major.
#[derive(Clone, Debug)]
pub struct Scores {
    /// z^L, the raw scores before softmax.
    pub logits: Vec<f32>,
    /// ŷ = softmax(z^L).
    pub probabilities: Vec<f32>,
}

/// Class probabilities ŷ (n, K) for `n` images given as f32 pixels in 0–1, (n, I), with the
/// model prepared for them as [`evaluate`] prepares it.
pub fn predict(engine: &Engine, mlp: &Mlp<f32>, ws: &mut Workspace<f32>, x: &[f32]) -> Vec<f32> {
    predict_scores(engine, mlp, engine.prepare(mlp).as_ref(), ws, x).probabilities
}

/// Logits and probabilities for `n` images given as f32 pixels in 0–1, (n, I), in chunks of
/// the workspace size: the forward pass behind [`predict`] and every command that classifies.
/// With `prepared` ([`Engine::prepare`] of `mlp`) the first layer skips zero pixels, and the
/// numbers are those of [`evaluate`].
pub fn predict_scores(
    engine: &Engine,
    mlp: &Mlp<f32>,
    prepared: Option<&Prepared>,
    ws: &mut Workspace<f32>,
    x: &[f32],
) -> Scores {
    let input = mlp.sizes[0];
    let k = mlp.classes();
    assert_eq!(x.len() % input, 0);
    let n_total = x.len() / input;
    let mut logits = Vec::with_capacity(n_total * k);
    let mut probabilities = Vec::with_capacity(n_total * k);
    for chunk in x.chunks(ws.capacity * input) {
        let n = chunk.len() / input;
        ws.input_mut(n).copy_from_slice(chunk);
        engine.forward_prepared(mlp, ws, n, prepared);
        let out = &mut ws.acts.last_mut().expect("layers")[..n * k];
        logits.extend_from_slice(out);
        loss::softmax(out, k);
        probabilities.extend_from_slice(out);
    }
    Scores {
        logits,
        probabilities,
    }
}

/// Loss, accuracy and confusion matrix over a whole split, in chunks of the workspace size.
/// The first layer skips zero pixels ([`Engine::prepare`]).
pub fn evaluate(engine: &Engine, mlp: &Mlp<f32>, ws: &mut Workspace<f32>, split: &Split) -> Evaluation {
    let k = mlp.classes();
    let mut confusion = vec![vec![0u64; k]; k];
    let mut loss_sum = 0.0;
    let prepared = engine.prepare(mlp);
    let ppi = split.images.pixels_per_image();
    for start in (0..split.len()).step_by(ws.capacity.max(1)) {
        let n = (split.len() - start).min(ws.capacity);
        let labels = &split.labels[start..start + n];
        engine.fill_rows(ws.input_mut(n), ppi, |_, j, row| {
            split.image_to_unit(start + j, row)
        });
        engine.forward_prepared(mlp, ws, n, prepared.as_ref());
        let logits = &mut ws.acts.last_mut().expect("layers")[..n * k];
        loss_sum += loss::softmax_cross_entropy(logits, labels, k);
        for (row, &y) in ws.output(n).chunks_exact(k).zip(labels) {
            confusion[y as usize][argmax(row)] += 1;
        }
    }
    let correct: u64 = (0..k).map(|c| confusion[c][c]).sum();
    Evaluation {
        count: split.len(),
        loss: loss_sum / split.len() as f64,
        accuracy: correct as f64 / split.len() as f64,
        confusion,
    }
}

/// One confidently wrong prediction on a split.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Mistake {
    /// The image's index in the split (its test index).
    pub index: usize,
    pub label: usize,
    /// The most probable classes, most probable first: (class, probability); the first is
    /// the wrong prediction.
    pub top: Vec<TopClass>,
}

/// A class and its probability.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TopClass {
    pub class: usize,
    pub probability: f32,
}

/// The `n` most confident wrong predictions on `split`: highest probability of the wrongly
/// predicted class first (lower index first on ties), each with its top `k` classes.
pub fn mistakes(
    engine: &Engine,
    mlp: &Mlp<f32>,
    ws: &mut Workspace<f32>,
    split: &Split,
    n: usize,
    k: usize,
) -> Vec<Mistake> {
    let classes = mlp.classes();
    let ppi = split.images.pixels_per_image();
    let mut wrong = Vec::new();
    let mut x = vec![0.0f32; ws.capacity.max(1) * ppi];
    let prepared = engine.prepare(mlp);
    for start in (0..split.len()).step_by(ws.capacity.max(1)) {
        let m = (split.len() - start).min(ws.capacity);
        for j in 0..m {
            split.image_to_unit(start + j, &mut x[j * ppi..(j + 1) * ppi]);
        }
        let p = predict_scores(engine, mlp, prepared.as_ref(), ws, &x[..m * ppi]).probabilities;
        for (j, row) in p.chunks_exact(classes).enumerate() {
            let label = split.labels[start + j] as usize;
            let top = argmax(row);
            if top != label {
                wrong.push((row[top], start + j, row.to_vec()));
            }
        }
    }
    wrong.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    wrong
        .into_iter()
        .take(n)
        .map(|(_, index, row)| Mistake {
            index,
            label: split.labels[index] as usize,
            top: top_k(&row, k.min(classes))
                .into_iter()
                .map(|(class, probability)| TopClass { class, probability })
                .collect(),
        })
        .collect()
}
