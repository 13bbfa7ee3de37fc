//! The update rules: the seed's momentum SGD (§2.1), Nesterov momentum, Adam and AdamW.
//!
//! Every rule is written once, in [`Update::rule`], generic over the lanes it runs on
//! ([`Lanes`]): [`Optimizer::step`] runs it one element at a time over the flat parameter
//! vector ([`Update::apply`]), and the fused kernels of the fast path (`kernels`) evaluate the
//! same function on 8 or 16 lanes at a time in their epilogue. `tests/optimizer.rs` pins each
//! rule with numbers worked out by hand.

use crate::linalg::{Lanes, Real};
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

crate::named_enum!(L2Mode, "L2 mode", {
    L2Mode::PerSample => "per-sample",
    L2Mode::PerBatch => "per-batch",
});

/// The update rule. In every formula `g = ∂E/∂w + λ' w` is the batch-mean data gradient plus
/// the L2 term (λ' from [`L2Mode`]; no L2 on biases), α the learning rate, t the number of the
/// update (1 for the first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// The seed's momentum SGD (not PyTorch's `v = μv + g; w −= αv`):
    /// `v ← μ v − α g`, `w ← w + v`.
    Sgd,
    /// Nesterov's accelerated gradient in the same form (Sutskever et al. 2013, with the
    /// look-ahead folded into the stored weights): `v ← μ v − α g`, `w ← w + μ v − α g`.
    Nesterov,
    /// Adam (Kingma & Ba 2015): `m ← β₁ m + (1 − β₁) g`, `s ← β₂ s + (1 − β₂) g²`,
    /// `w ← w − α m̂ / (√ŝ + ε)` with `m̂ = m / (1 − β₁ᵗ)`, `ŝ = s / (1 − β₂ᵗ)`.
    /// L2 enters through `g`, as in PyTorch's `Adam(weight_decay=λ)`.
    Adam,
    /// AdamW (Loshchilov & Hutter 2019): Adam on the data gradient alone, with the weight
    /// decay applied to the weight directly: `w ← w − α λ w − α m̂ / (√ŝ + ε)` (PyTorch's
    /// `AdamW(weight_decay=λ)`; λ' from [`L2Mode`] as for the others).
    AdamW,
}

crate::named_enum!(Method, "optimizer", {
    Method::Sgd => "sgd",
    Method::Nesterov => "nesterov",
    Method::Adam => "adam",
    Method::AdamW => "adamw",
});

impl Method {
    /// Adam and AdamW keep a second state vector (the squared-gradient average `s`).
    pub fn has_second_moment(self) -> bool {
        matches!(self, Method::Adam | Method::AdamW)
    }
}

/// An update rule with its hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Optimizer {
    pub method: Method,
    /// μ (SGD and Nesterov).
    pub momentum: f64,
    /// β₁, β₂, ε (Adam and AdamW).
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// λ
    pub l2: f64,
    pub l2_mode: L2Mode,
}

impl Optimizer {
    /// The seed's momentum SGD.
    pub fn sgd(momentum: f64, l2: f64, l2_mode: L2Mode) -> Self {
        Optimizer {
            method: Method::Sgd,
            momentum,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            l2,
            l2_mode,
        }
    }

    /// The λ' actually applied for a batch of `batch` samples.
    pub fn effective_l2(&self, batch: usize) -> f64 {
        match self.l2_mode {
            L2Mode::PerSample => self.l2,
            L2Mode::PerBatch => self.l2 / batch as f64,
        }
    }

    /// The constants of update number `t` (1-based) with learning rate `lr`, for a batch of
    /// `batch` samples.
    pub fn update<T: Real>(&self, lr: f64, t: usize, batch: usize) -> Update<T> {
        let l2 = self.effective_l2(batch);
        let t = t.max(1) as i32;
        let adam = self.method.has_second_moment();
        Update {
            method: self.method,
            lr: T::from_f64(lr),
            momentum: T::from_f64(self.momentum),
            l2: T::from_f64(if self.method == Method::AdamW { 0.0 } else { l2 }),
            decay: T::from_f64(if self.method == Method::AdamW {
                lr * l2
            } else {
                0.0
            }),
            beta1: T::from_f64(self.beta1),
            beta2: T::from_f64(self.beta2),
            eps: T::from_f64(self.eps),
            c1: T::from_f64(if adam {
                1.0 / (1.0 - self.beta1.powi(t))
            } else {
                1.0
            }),
            c2: T::from_f64(if adam {
                1.0 / (1.0 - self.beta2.powi(t))
            } else {
                1.0
            }),
        }
    }

    /// Update number `t` (1-based) of every parameter with learning rate `lr` (α). `params`,
    /// `grads`, `first_moment` (the velocity v of SGD and Nesterov, Adam's m) and
    /// `second_moment` (Adam's s; empty for SGD and Nesterov) share the flat layout described by `layers`: weights get the L2 term, biases
    /// do not. `grads` must already hold the batch-mean data gradient `(1/N) Σ ∂E/∂w` (what
    /// [`crate::nn::Mlp::backward`] writes with `scale = 1/N`).
    #[allow(clippy::too_many_arguments)]
    pub fn step<T: Real>(
        &self,
        lr: f64,
        t: usize,
        batch: usize,
        layers: &[Linear],
        params: &mut [T],
        grads: &[T],
        first_moment: &mut [T],
        second_moment: &mut [T],
    ) {
        assert_eq!(params.len(), grads.len());
        assert_eq!(params.len(), first_moment.len());
        let adam = self.method.has_second_moment();
        assert_eq!(second_moment.len(), if adam { params.len() } else { 0 });
        let up = self.update::<T>(lr, t, batch);
        let mut unused = T::ZERO;
        for layer in layers {
            for (range, weights) in [(layer.w_range(), true), (layer.b_range(), false)] {
                for i in range {
                    let s = if adam { &mut second_moment[i] } else { &mut unused };
                    up.apply(&mut params[i], grads[i], &mut first_moment[i], s, weights);
                }
            }
        }
    }
}

/// The constants of one update, ready for [`Update::apply`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Update<T> {
    pub method: Method,
    /// α
    pub lr: T,
    /// μ
    pub momentum: T,
    /// λ' added to the gradient (0 for AdamW).
    pub l2: T,
    /// α λ' taken off the weight directly (AdamW only, else 0).
    pub decay: T,
    pub beta1: T,
    pub beta2: T,
    pub eps: T,
    /// Adam's bias corrections `1 / (1 − β₁ᵗ)` and `1 / (1 − β₂ᵗ)`.
    pub c1: T,
    pub c2: T,
}

impl<T: Real> Update<T> {
    /// One parameter `w` with batch-mean data gradient `d_w` and its state `v` (m for Adam) and
    /// `s`; `weight` is false for biases, which get no L2 and no decay.
    #[inline(always)]
    pub fn apply(&self, w: &mut T, d_w: T, v: &mut T, s: &mut T, weight: bool) {
        // SAFETY: scalar lanes need no CPU feature.
        let [nw, nv, ns] = unsafe { self.rule(*w, d_w, *v, *s, weight) };
        (*w, *v, *s) = (nw, nv, ns);
    }

    /// The rule itself, for a parameter `w` (one value, or a vector of them in the fast path's
    /// fused kernels), its batch-mean data gradient `d_w` and its state `v` and `s`: returns
    /// the new `[w, v, s]` (`s` unchanged, and unused, for SGD and Nesterov). `weight` is false
    /// for biases, which get no L2 and no decay.
    ///
    /// # Safety
    /// The CPU must have the features of `L` ([`Lanes`]).
    #[inline(always)]
    pub unsafe fn rule<L: Lanes<Scalar = T>>(&self, w: L, d_w: L, v: L, s: L, weight: bool) -> [L; 3] {
        unsafe {
            let (l2, decay) = if weight {
                (L::splat(self.l2), L::splat(self.decay))
            } else {
                (L::splat(T::ZERO), L::splat(T::ZERO))
            };
            let (alpha, mu) = (L::splat(self.lr), L::splat(self.momentum));
            // g = ∂E/∂w + λ' w
            let g = l2.mul_add(w, d_w);
            match self.method {
                Method::Sgd => {
                    // v ← μ v − α g, w ← w + v
                    let v = mu.mul_sub(v, alpha.mul(g));
                    [w.add(v), v, s]
                }
                Method::Nesterov => {
                    // v ← μ v − α g, w ← w + μ v − α g
                    let ag = alpha.mul(g);
                    let v = mu.mul_sub(v, ag);
                    [w.add(mu.mul_sub(v, ag)), v, s]
                }
                Method::Adam | Method::AdamW => {
                    // m ← β₁ m + (1 − β₁) g, s ← β₂ s + (1 − β₂) g²
                    let m = L::splat(self.beta1).mul_add(v, L::splat(T::ONE - self.beta1).mul(g));
                    let s = L::splat(self.beta2).mul_add(s, L::splat(T::ONE - self.beta2).scaled_square(g));
                    // w ← w − α λ' w − α m̂ / (√ŝ + ε)  (the decay term is 0 for Adam)
                    let denom = s.mul(L::splat(self.c2)).square_root().add(L::splat(self.eps));
                    let step = alpha.mul(m.mul(L::splat(self.c1))).div(denom);
                    [decay.neg_mul_add(w, w).sub(step), m, s]
                }
            }
        }
    }
}
