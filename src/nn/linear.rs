//! The fully connected layer, `z^{l+1} = W^l a^l + b^l`, forward and backward side by side.

use crate::linalg::{self, Op, Real};

/// Where one layer's parameters sit inside the network's flat parameter vector. Gradients and
/// velocities use the same offsets, so one index serves all three.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Linear {
    /// I
    pub fan_in: usize,
    /// O
    pub fan_out: usize,
    /// Offset of `W`, (O, I) row-major.
    pub w: usize,
    /// Offset of `b`, (O).
    pub b: usize,
}

impl Linear {
    pub fn w_range(&self) -> std::ops::Range<usize> {
        self.w..self.w + self.fan_out * self.fan_in
    }
    pub fn b_range(&self) -> std::ops::Range<usize> {
        self.b..self.b + self.fan_out
    }

    /// Forward, batch-major: `z = a Wᵀ + b`, i.e. `z_{n,i} = Σ_j w_{ij} a_{n,j} + b_i` for every
    /// sample n. Caches nothing: backward needs `a`, which the caller keeps.
    ///
    /// - `a`: (B, I) input activations
    /// - `z`: (B, O) output, overwritten
    pub fn forward<T: Real>(&self, params: &[T], a: &[T], z: &mut [T], batch: usize) {
        let (i, o) = (self.fan_in, self.fan_out);
        let w = &params[self.w_range()];
        let b = &params[self.b_range()];
        linalg::gemm(batch, i, o, a, Op::N, w, Op::T, T::ZERO, z);
        for row in z[..batch * o].chunks_exact_mut(o) {
            for (z, &b) in row.iter_mut().zip(b) {
                *z += b;
            }
        }
    }

    /// Backward, from `d_z = ∂E/∂z` (the seed's δ^{l+1}, one row per sample):
    /// - `d_w = d_zᵀ a`    (O, I): `∂E/∂w_{ij} = Σ_n δ_{n,i} a_{n,j}`
    /// - `d_b = Σ_n d_z`   (O)
    /// - `d_a = d_z W`     (B, I): `Σ_i δ_{n,i} w_{ij}`, the seed's `δ_j w_{ji}`; skipped when
    ///   `d_a` is `None` (the first layer, whose input is the image).
    ///
    /// Gradients are overwritten, not accumulated, so they never need zeroing.
    #[allow(clippy::too_many_arguments)]
    pub fn backward<T: Real>(
        &self,
        params: &[T],
        a: &[T],
        d_z: &[T],
        grads: &mut [T],
        d_a: Option<&mut [T]>,
        batch: usize,
    ) {
        let (i, o) = (self.fan_in, self.fan_out);
        let d_w = &mut grads[self.w..self.w + o * i];
        linalg::gemm(o, batch, i, d_z, Op::T, a, Op::N, T::ZERO, d_w);
        let d_b = &mut grads[self.b..self.b + o];
        d_b.fill(T::ZERO);
        for row in d_z[..batch * o].chunks_exact(o) {
            for (d_b, &d) in d_b.iter_mut().zip(row) {
                *d_b += d;
            }
        }
        if let Some(d_a) = d_a {
            let w = &params[self.w_range()];
            linalg::gemm(batch, o, i, d_z, Op::N, w, Op::N, T::ZERO, d_a);
        }
    }
}
