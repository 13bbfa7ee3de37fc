//! The max-norm constraint (Srivastava et al. 2014, §5.1): after every update, each unit's
//! incoming weight vector `w_o` (a row of `W`, (O, I)) is projected back onto the ball of
//! radius c: `w_o ← w_o · c / ‖w_o‖₂` when `‖w_o‖₂ > c`. Biases are not constrained.

use crate::linalg::Real;
use crate::nn::Linear;

/// The constraint on every layer's weights in the flat parameter vector.
pub fn apply<T: Real>(layers: &[Linear], params: &mut [T], c: T) {
    for layer in layers {
        rows(&mut params[layer.w_range()], layer.fan_in, c);
    }
}

/// The constraint on whole rows of length `fan_in` in `w`.
pub fn rows<T: Real>(w: &mut [T], fan_in: usize, c: T) {
    for row in w.chunks_exact_mut(fan_in) {
        let norm = sum_of_squares(row).sqrt();
        if norm > c {
            let scale = c / norm;
            for v in row {
                *v *= scale;
            }
        }
    }
}

/// `Σ x²` in eight interleaved partial sums (so the compiler can vectorise it), combined in a
/// fixed order: the same bits on every machine and thread count.
fn sum_of_squares<T: Real>(x: &[T]) -> T {
    let mut acc = [T::ZERO; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v * v;
        }
    }
    let mut total = T::ZERO;
    for a in acc {
        total += a;
    }
    for &v in chunks.remainder() {
        total += v * v;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_rows_are_scaled_to_the_bound_and_short_ones_left_alone() {
        // Row 0: (3, 4), norm 5 → scaled to norm 2: (1.2, 1.6). Row 1: (0.6, 0.8), norm 1: kept.
        let mut w = vec![3.0f64, 4.0, 0.6, 0.8];
        rows(&mut w, 2, 2.0);
        assert!((w[0] - 1.2).abs() < 1e-15 && (w[1] - 1.6).abs() < 1e-15, "{w:?}");
        assert_eq!(&w[2..], &[0.6, 0.8]);
    }

    #[test]
    fn biases_are_not_constrained() {
        let layer = Linear {
            fan_in: 9,
            fan_out: 1,
            w: 0,
            b: 9,
        };
        let mut p = vec![1.0f64; 10];
        p[9] = 100.0;
        apply(std::slice::from_ref(&layer), &mut p, 1.0);
        let norm: f64 = p[..9].iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-15);
        assert_eq!(p[9], 100.0);
    }
}
