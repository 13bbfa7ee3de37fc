//! SGD with momentum and L2 regularisation, exactly as written in §2.1 of the seed report.

use crate::kernels::Real;
use crate::nn::Linear;

/// How the L2 term `λ w` enters the batch gradient. The seed writes the per-sample gradient as
/// `δ a + λ w` and then averages over the batch, which gives `λ w` whatever N is (`PerSample`,
/// our default). It can also be read as `λ w` added once to the summed batch gradient before the
/// division by N, i.e. an effective `λ/N` (`PerBatch`). The report does not settle it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L2Mode {
    PerSample,
    PerBatch,
}

/// Momentum SGD, the seed's form (not PyTorch's `v = μv + g; w −= αv`):
///
/// ```text
/// g = (1/N) Σ_batch ∂E/∂w + λ' w        λ' = λ (PerSample) or λ/N (PerBatch); 0 for biases
/// v ← μ v − α g
/// w ← w + v
/// ```
///
/// `grads` must already hold the batch-mean data gradient `(1/N) Σ ∂E/∂w` (what
/// [`crate::nn::Mlp::backward`] writes with `scale = 1/N`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    /// μ
    pub momentum: f64,
    /// λ
    pub l2: f64,
    pub l2_mode: L2Mode,
}

impl Sgd {
    /// The λ' actually applied for a batch of `batch` samples.
    pub fn effective_l2(&self, batch: usize) -> f64 {
        match self.l2_mode {
            L2Mode::PerSample => self.l2,
            L2Mode::PerBatch => self.l2 / batch as f64,
        }
    }

    /// One update of every parameter with learning rate `lr` (α). `params`, `grads` and
    /// `velocity` share the flat layout described by `layers`: weights get the L2 term, biases
    /// do not.
    pub fn step<T: Real>(
        &self,
        lr: f64,
        batch: usize,
        layers: &[Linear],
        params: &mut [T],
        grads: &[T],
        velocity: &mut [T],
    ) {
        assert_eq!(params.len(), grads.len());
        assert_eq!(params.len(), velocity.len());
        let mu = T::from_f64(self.momentum);
        let alpha = T::from_f64(lr);
        let lambda = T::from_f64(self.effective_l2(batch));
        for layer in layers {
            for (range, decay) in [(layer.w_range(), lambda), (layer.b_range(), T::ZERO)] {
                let (w, g, v) = (
                    &mut params[range.clone()],
                    &grads[range.clone()],
                    &mut velocity[range],
                );
                for ((w, &g), v) in w.iter_mut().zip(g).zip(v) {
                    let g = g + decay * *w;
                    *v = mu * *v - alpha * g;
                    *w += *v;
                }
            }
        }
    }
}

crate::named_enum!(L2Mode, "L2 mode", {
    L2Mode::PerSample => "per-sample",
    L2Mode::PerBatch => "per-batch",
});
