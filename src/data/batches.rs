//! Seeded minibatches: a fresh shuffle of the training set every epoch.

use crate::rng::Rng;

/// Draws batches of `batch` distinct sample indices. Each epoch is a new permutation; the
/// `n mod batch` samples left at an epoch's end are skipped (so every step sees exactly `batch`
/// samples) and a new epoch begins. The iteration count runs on across epochs.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Batches {
    rng: Rng,
    order: Vec<u32>,
    pos: usize,
    pub epoch: usize,
}

impl Batches {
    pub fn new(n: usize, seed: u64) -> Self {
        assert!(n > 0);
        let mut b = Batches {
            rng: Rng::new(seed, crate::rng::stream::SHUFFLE),
            order: (0..n as u32).collect(),
            pos: 0,
            epoch: 0,
        };
        b.rng.shuffle(&mut b.order);
        b
    }

    /// The next batch's indices. Panics if `batch` exceeds the data set (config validation
    /// rejects that before training starts).
    pub fn next_batch(&mut self, batch: usize) -> &[u32] {
        assert!(batch <= self.order.len(), "batch larger than the data set");
        if self.pos + batch > self.order.len() {
            self.rng.shuffle(&mut self.order);
            self.pos = 0;
            self.epoch += 1;
        }
        let start = self.pos;
        self.pos += batch;
        &self.order[start..self.pos]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_epoch_visits_every_sample_once_then_reshuffles() {
        let mut b = Batches::new(10, 42);
        let mut first: Vec<u32> = Vec::new();
        for _ in 0..3 {
            first.extend_from_slice(b.next_batch(3));
        }
        let mut sorted = first.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 9, "9 distinct samples in the first epoch");
        assert_eq!(b.epoch, 0);
        let next = b.next_batch(3).to_vec();
        assert_eq!(b.epoch, 1);
        assert_ne!(next, first[..3].to_vec());
    }

    #[test]
    fn same_seed_same_batches() {
        let mut a = Batches::new(100, 1);
        let mut b = Batches::new(100, 1);
        for _ in 0..50 {
            assert_eq!(a.next_batch(7), b.next_batch(7));
        }
    }
}
