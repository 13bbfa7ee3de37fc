//! Inverted dropout (Srivastava et al. 2014): during training each unit of a layer's output is
//! kept with probability 1 − p and scaled by 1/(1 − p), so that the expected input of the next
//! layer is unchanged and evaluation uses the network as it is, with no rescaling.
//!
//! - forward: `ã = a ⊙ m`, with `m_j = 1/(1 − p)` with probability 1 − p, else 0
//! - backward: `d_a = d_ã ⊙ m`
//!
//! The mask `m` is what forward caches for backward. Each row of a mask (one sample, one layer)
//! is drawn from its own RNG, seeded by a per-step key, the layer and the row
//! ([`draw_row`]), one 32-bit uniform number per unit: rows can be drawn on any thread in any
//! order, so a run is reproducible, independent of the thread count, and resumable without
//! saving any dropout state.

use crate::linalg::Real;
use crate::rng::Rng;

/// Fill `mask` with independent draws: `1/(1 − p)` with probability `1 − p`, else 0.
pub fn draw_mask<T: Real>(p: f64, rng: &mut Rng, mask: &mut [T]) {
    assert!((0.0..1.0).contains(&p), "dropout probability {p} outside [0, 1)");
    let keep = T::from_f64(1.0 / (1.0 - p));
    // u < p·2³² ⇔ dropped, for u uniform on the 32-bit integers.
    let threshold = (p * 4_294_967_296.0) as u64;
    let mut pairs = mask.chunks_exact_mut(2);
    for pair in &mut pairs {
        let r = rng.next_u64();
        pair[0] = if (r & 0xFFFF_FFFF) < threshold {
            T::ZERO
        } else {
            keep
        };
        pair[1] = if (r >> 32) < threshold { T::ZERO } else { keep };
    }
    if let [last] = pairs.into_remainder() {
        *last = if (rng.next_u64() & 0xFFFF_FFFF) < threshold {
            T::ZERO
        } else {
            keep
        };
    }
}

/// Draw row `row` of layer input `layer`'s mask for the step whose key is `key`.
pub fn draw_row<T: Real>(p: f64, key: u64, layer: usize, row: usize, mask: &mut [T]) {
    let id = ((layer as u64) << 32) | row as u64;
    let mut rng = Rng::new(
        key ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        crate::rng::stream::DROPOUT,
    );
    draw_mask(p, &mut rng, mask);
}

/// The key of step `iteration` of a run seeded with `seed`.
pub fn step_key(seed: u64, iteration: usize) -> u64 {
    Rng::new(
        seed ^ (iteration as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93),
        crate::rng::stream::DROPOUT,
    )
    .next_u64()
}

/// `ã = a ⊙ m`.
pub fn forward<T: Real>(a: &[T], mask: &[T], dropped: &mut [T]) {
    assert_eq!(a.len(), mask.len());
    assert_eq!(a.len(), dropped.len());
    for ((d, &a), &m) in dropped.iter_mut().zip(a).zip(mask) {
        *d = a * m;
    }
}

/// In place: `d_ã` becomes `d_a = d_ã ⊙ m`.
pub fn backward<T: Real>(mask: &[T], d: &mut [T]) {
    assert_eq!(mask.len(), d.len());
    for (d, &m) in d.iter_mut().zip(mask) {
        *d *= m;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_the_expected_fraction_scaled_by_one_over_keep() {
        let mut rng = Rng::new(9, crate::rng::stream::DROPOUT);
        let mut m = vec![0.0f32; 100_001];
        draw_mask(0.3, &mut rng, &mut m);
        let kept = m.iter().filter(|&&v| v != 0.0).count() as f64 / m.len() as f64;
        assert!((kept - 0.7).abs() < 0.005, "kept {kept}");
        assert!(m.iter().all(|&v| v == 0.0 || v == (1.0 / 0.7f64) as f32));
        let mut none = vec![0.0f32; 1000];
        draw_mask(0.0, &mut rng, &mut none);
        assert!(none.iter().all(|&v| v == 1.0));
    }

    #[test]
    fn forward_and_backward_multiply_by_the_same_mask() {
        let (a, m) = ([1.0f64, 2.0, 3.0], [2.0, 0.0, 2.0]);
        let mut out = [0.0; 3];
        forward(&a, &m, &mut out);
        assert_eq!(out, [2.0, 0.0, 6.0]);
        let mut d = [0.5, 0.5, -1.0];
        backward(&m, &mut d);
        assert_eq!(d, [1.0, 0.0, -2.0]);
    }
}
