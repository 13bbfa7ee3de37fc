//! The multilayer perceptron: a stack of [`Linear`] layers with a hidden activation, a linear
//! output layer and softmax + cross-entropy, as in §2.1 of the seed report.

use super::{Activation, Init, Linear, dropout, loss};
use crate::linalg::Real;
use crate::rng::Rng;

/// The network's parameters in one flat vector, `[W^1, b^1, W^2, b^2, …]`, each `W` (O, I)
/// row-major. Gradients and momentum velocities are vectors of the same length and layout.
#[derive(Clone, Debug)]
pub struct Mlp<T> {
    /// Layer widths, input first: `[784, 500, 250, 100, 10]`.
    pub sizes: Vec<usize>,
    pub activation: Activation,
    pub layers: Vec<Linear>,
    pub params: Vec<T>,
}

/// Buffers for one forward/backward pass over up to `capacity` samples, allocated once.
#[derive(Clone, Debug)]
pub struct Workspace<T> {
    pub capacity: usize,
    /// `acts[0]` = x (B, 784), the input the caller fills; `acts[l]` (B, `sizes[l]`) = a^{l+1}
    /// after forward — cached for backward. The last one holds the logits z^L after
    /// [`Mlp::forward`] and the probabilities ŷ after the loss.
    pub acts: Vec<Vec<T>>,
    /// (B, max width): the error flowing backward, `d_z` of the layer being processed.
    pub(crate) d_z: Vec<T>,
    /// (B, max width): `d_a` of the layer below, which becomes its `d_z` in place.
    pub(crate) d_a: Vec<T>,
    /// Dropout probability of each layer's input (index 0: the pixels; l: a^l); all 0 in a
    /// workspace made by [`Workspace::new`], which is what evaluation uses.
    pub drop_p: Vec<f64>,
    /// For each layer input with dropout: the mask m (B, `sizes[l]`), drawn by
    /// [`Workspace::draw_masks`] and cached for backward; empty otherwise.
    pub masks: Vec<Vec<T>>,
    /// For each layer input with dropout: `ã = a ⊙ m` (B, `sizes[l]`), what layer l reads;
    /// empty otherwise.
    pub dropped: Vec<Vec<T>>,
}

impl<T: Real> Workspace<T> {
    pub fn new(sizes: &[usize], capacity: usize) -> Self {
        Self::with_dropout(sizes, capacity, 0.0, 0.0)
    }

    /// A training workspace with inverted dropout of probability `input_p` on the pixels and
    /// `hidden_p` on every hidden layer's output.
    pub fn with_dropout(sizes: &[usize], capacity: usize, input_p: f64, hidden_p: f64) -> Self {
        let widest = sizes[1..].iter().copied().max().unwrap_or(0);
        let n_layers = sizes.len() - 1;
        let drop_p: Vec<f64> = (0..n_layers)
            .map(|l| if l == 0 { input_p } else { hidden_p })
            .collect();
        let buffer = |l: usize| {
            if drop_p[l] > 0.0 {
                vec![T::ZERO; capacity * sizes[l]]
            } else {
                Vec::new()
            }
        };
        Workspace {
            capacity,
            acts: sizes.iter().map(|&s| vec![T::ZERO; capacity * s]).collect(),
            d_z: vec![T::ZERO; capacity * widest],
            d_a: vec![T::ZERO; capacity * widest],
            masks: (0..n_layers).map(buffer).collect(),
            dropped: (0..n_layers).map(buffer).collect(),
            drop_p,
        }
    }

    /// Whether layer `l`'s input goes through dropout.
    pub fn drops(&self, l: usize) -> bool {
        self.drop_p.get(l).is_some_and(|&p| p > 0.0)
    }

    /// Draw the dropout masks of the first `batch` samples for the step with key `key` (see
    /// [`dropout::draw_row`]); a no-op without dropout.
    pub fn draw_masks(&mut self, key: u64, batch: usize) {
        for (l, mask) in self.masks.iter_mut().enumerate() {
            if self.drop_p[l] > 0.0 {
                let width = mask.len() / self.capacity;
                for (r, row) in mask[..batch * width].chunks_exact_mut(width).enumerate() {
                    dropout::draw_row(self.drop_p[l], key, l, r, row);
                }
            }
        }
    }

    /// What layer `l` reads, (B, `sizes[l]`): `ã^l` with dropout, else `a^l`.
    pub fn layer_input(&self, l: usize, batch: usize) -> &[T] {
        let buf = if self.drops(l) {
            &self.dropped[l]
        } else {
            &self.acts[l]
        };
        &buf[..batch * (buf.len() / self.capacity)]
    }

    /// The input buffer x, (B, I) for the first `batch` samples.
    pub fn input_mut(&mut self, batch: usize) -> &mut [T] {
        let i = self.acts[0].len() / self.capacity;
        &mut self.acts[0][..batch * i]
    }

    /// The output buffer: logits after forward, probabilities after the loss, (B, K).
    pub fn output(&self, batch: usize) -> &[T] {
        let last = self.acts.last().expect("network has layers");
        &last[..batch * (last.len() / self.capacity)]
    }
}

impl<T: Real> Mlp<T> {
    /// A network with all parameters zero; call [`Mlp::init`] to draw them.
    pub fn new(sizes: &[usize], activation: Activation) -> Self {
        assert!(sizes.len() >= 2, "a network needs an input and an output size");
        assert!(sizes.iter().all(|&s| s > 0), "layer sizes must be positive");
        let mut layers = Vec::with_capacity(sizes.len() - 1);
        let mut offset = 0;
        for pair in sizes.windows(2) {
            let (fan_in, fan_out) = (pair[0], pair[1]);
            let w = offset;
            let b = w + fan_in * fan_out;
            offset = b + fan_out;
            layers.push(Linear {
                fan_in,
                fan_out,
                w,
                b,
            });
        }
        Mlp {
            sizes: sizes.to_vec(),
            activation,
            layers,
            params: vec![T::ZERO; offset],
        }
    }

    pub fn init(&mut self, init: Init, rng: &mut Rng) {
        for layer in &self.layers {
            let (w, b) = self.params[layer.w..layer.b + layer.fan_out].split_at_mut(layer.b - layer.w);
            init.fill(rng, w, b, layer.fan_in, layer.fan_out);
        }
    }

    pub fn num_params(&self) -> usize {
        self.params.len()
    }

    pub fn classes(&self) -> usize {
        *self.sizes.last().expect("network has layers")
    }

    /// Forward pass over the first `batch` rows of `ws.acts[0]`:
    /// `z^{l+1} = W^l a^l + b^l`, `a^{l+1} = f(z^{l+1})` for hidden layers, and the output layer
    /// left linear, so `ws.acts[L]` holds the logits `z^L`. Every `a^l` stays cached in `ws`.
    /// With dropout, layer l reads `ã^l = a^l ⊙ m^l` instead (masks drawn beforehand by
    /// [`Workspace::draw_masks`]), and `ã^l` is cached too.
    pub fn forward(&self, ws: &mut Workspace<T>, batch: usize) {
        assert!(
            batch <= ws.capacity,
            "batch {batch} exceeds workspace capacity {}",
            ws.capacity
        );
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let n = batch * layer.fan_in;
            let drops = ws.drops(l);
            if drops {
                dropout::forward(&ws.acts[l][..n], &ws.masks[l][..n], &mut ws.dropped[l][..n]);
            }
            let (below, above) = ws.acts.split_at_mut(l + 1);
            let a = if drops {
                &ws.dropped[l][..n]
            } else {
                &below[l][..n]
            };
            let z = &mut above[0][..batch * layer.fan_out];
            layer.forward(&self.params, a, z, batch);
            if l < last {
                self.activation.forward(z);
            }
        }
    }

    /// Forward pass, then softmax + cross-entropy against `labels`; returns the loss summed over
    /// the batch. Afterwards the output buffer holds ŷ.
    pub fn forward_loss(&self, ws: &mut Workspace<T>, labels: &[u8]) -> f64 {
        let batch = labels.len();
        self.forward(ws, batch);
        let k = self.classes();
        let out = ws.acts.last_mut().expect("network has layers");
        loss::softmax_cross_entropy(&mut out[..batch * k], labels, k)
    }

    /// Backward pass after [`Mlp::forward_loss`]; writes `∂E/∂θ` into `grads` (same layout as
    /// `params`), where `E` is the loss summed over the batch times `scale` (`1/N` gives the
    /// batch mean, the seed's `(1/N) Σ`).
    ///
    /// - output: `δ^L = scale · (ŷ − y)`
    /// - each layer: `d_w = δᵀ a`, `d_b = Σ δ`, `d_a = δ W`
    /// - hidden: `δ^l = d_a ⊙ f'(z^l)`, with `f'` from the cached `a^l`
    /// - with dropout, `a` above is `ã`, and `d_a ⊙ m` comes before `⊙ f'`
    pub fn backward(&self, ws: &mut Workspace<T>, labels: &[u8], scale: T, grads: &mut [T]) {
        assert_eq!(grads.len(), self.params.len());
        let batch = labels.len();
        let k = self.classes();
        let y_hat = &ws.acts[self.layers.len()][..batch * k];
        loss::backward(y_hat, labels, k, scale, &mut ws.d_z[..batch * k]);
        for (l, layer) in self.layers.iter().enumerate().rev() {
            let n = batch * layer.fan_in;
            let drops = ws.drops(l);
            let input = if ws.drops(l) {
                &ws.dropped[l][..n]
            } else {
                &ws.acts[l][..n]
            };
            let d_z = &ws.d_z[..batch * layer.fan_out];
            if l == 0 {
                layer.backward(&self.params, input, d_z, grads, None, batch);
            } else {
                let d_a = &mut ws.d_a[..n];
                layer.backward(&self.params, input, d_z, grads, Some(&mut *d_a), batch);
                if drops {
                    dropout::backward(&ws.masks[l][..n], d_a);
                }
                self.activation.backward(&ws.acts[l][..n], d_a);
                std::mem::swap(&mut ws.d_z, &mut ws.d_a);
            }
        }
    }
}
