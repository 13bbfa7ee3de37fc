//! Softmax and cross-entropy, fused at the output: `ŷ = softmax(z)`, `E = −Σ_k y_k ln ŷ_k`,
//! and the backward pass is the seed's `δ^L = ŷ − y`.

use crate::linalg::Real;

/// Softmax of one row in place; returns `ln Σ_k e^{z_k}` for the loss.
///
/// The row maximum is subtracted before exponentiating so that no `e^{z}` overflows; softmax
/// is unchanged by a constant shift.
fn softmax_row<T: Real>(z: &mut [T]) -> f64 {
    let max = z.iter().copied().fold(z[0], |m, v| if v > m { v } else { m });
    let mut sum = T::ZERO;
    for v in z.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = T::ONE / sum;
    for v in z.iter_mut() {
        *v *= inv;
    }
    max.to_f64() + sum.to_f64().ln()
}

/// In place: logits `z` (B, K) become probabilities `ŷ` (B, K).
pub fn softmax<T: Real>(z: &mut [T], k: usize) {
    for row in z.chunks_exact_mut(k) {
        softmax_row(row);
    }
}

/// In place: logits `z` (B, K) become probabilities `ŷ`; returns the **sum** over the batch of
/// `−ln ŷ_{y}`. The loss is computed as `ln Σ e^{z} − z_y` from the logits, which stays finite
/// even when `ŷ_y` underflows to 0.
pub fn softmax_cross_entropy<T: Real>(z: &mut [T], labels: &[u8], k: usize) -> f64 {
    assert_eq!(z.len(), labels.len() * k);
    let mut total = 0.0;
    for (row, &y) in z.chunks_exact_mut(k).zip(labels) {
        let z_y = row[y as usize].to_f64();
        total += softmax_row(row) - z_y;
    }
    total
}

/// Backward: `d_z = scale · (ŷ − y)` with y one-hot; `scale` is `1/N` for a loss averaged over
/// the batch (the seed's `(1/N) Σ`) and `1` for a summed loss.
pub fn backward<T: Real>(y_hat: &[T], labels: &[u8], k: usize, scale: T, d_z: &mut [T]) {
    assert_eq!(y_hat.len(), labels.len() * k);
    for ((d_row, p_row), &y) in d_z.chunks_exact_mut(k).zip(y_hat.chunks_exact(k)).zip(labels) {
        for (c, (d, &p)) in d_row.iter_mut().zip(p_row).enumerate() {
            let target = if c == y as usize { T::ONE } else { T::ZERO };
            *d = scale * (p - target);
        }
    }
}
