//! What the kernels of both register widths share, below them: the tile and panel shapes,
//! the cache budget, the activation codes, the update's constants, the size of the zero-block
//! map and its per-panel row lists, and prefetching. `avx2`, `avx512` and `broadcast` build on
//! this file; it imports none of them.
//!
//! # Safety
//! As for `avx2`: the CPU features the caller's tiles need, and pointers valid for the shapes
//! and leading dimensions given.
#![allow(clippy::too_many_arguments, clippy::missing_safety_doc)]

use std::arch::x86_64::*;

/// Hidden activations, as codes the kernels switch on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    Identity,
    Sigmoid,
    Relu,
    Tanh,
}

/// Columns per bit of the map `avx2::nonzero_blocks` makes: one 8-lane vector.
pub const NZ_BLOCK: usize = 8;

/// Words of the map `avx2::nonzero_blocks` makes, per row of `k` columns.
#[inline(always)]
pub fn nz_words(k: usize) -> usize {
    k.div_ceil(NZ_BLOCK).div_ceil(64)
}

/// For each group of `step` columns (`step` a multiple of [`NZ_BLOCK`] that divides 512) of a
/// (m × k) matrix with the map `nz` by `avx2::nonzero_blocks`: the rows in which the group holds a
/// non-zero. Group g's list is `idx[starts[g]..starts[g + 1]]`, rows in increasing order.
pub fn nonzero_rows(
    nz: &[u64],
    m: usize,
    k: usize,
    step: usize,
    idx: &mut Vec<u32>,
    starts: &mut Vec<usize>,
) {
    let (words, n) = (nz_words(k), step / NZ_BLOCK);
    assert!(step.is_multiple_of(NZ_BLOCK) && n < 64 && 64 % n == 0 && nz.len() >= m * words);
    let group = (1u64 << n) - 1;
    idx.clear();
    starts.clear();
    starts.push(0);
    for g in 0..k.div_ceil(step) {
        let q = g * n;
        for b in 0..m {
            if (nz[b * words + q / 64] >> (q % 64)) & group != 0 {
                idx.push(b as u32);
            }
        }
        starts.push(idx.len());
    }
}

/// Request into L1 the first and the last float of a run of `width` floats in each of MR rows
/// (`ld` apart) from each of `bases`: the rows a tile's epilogue reads or writes, asked for
/// before the tile forms its sums so that they arrive meanwhile (a tile covers one short run
/// of each row, which the hardware prefetcher does not anticipate).
#[inline(always)]
pub(crate) unsafe fn prefetch_rows<const MR: usize>(bases: &[*const f32], ld: usize, width: usize) {
    unsafe {
        for i in 0..MR {
            for p in bases {
                let row = p.add(i * ld);
                _mm_prefetch::<_MM_HINT_T0>(row as *const i8);
                _mm_prefetch::<_MM_HINT_T0>(row.add(width - 1) as *const i8);
            }
        }
    }
}

/// Bytes of an operand block we aim to keep in a core's L2 (1 MB on the machines we measured;
/// a quarter leaves room for the other operands).
pub(crate) const L2_BUDGET: usize = 256 << 10;

/// Tile shapes of the broadcast kernels: rows × vectors of 8 columns.
pub const NN_MR: usize = 6;
pub const NN_NV: usize = 2;
pub const TN_MR: usize = 6;
pub const TN_NV: usize = 2;

/// The update the weight-gradient kernel applies in its epilogue: `optim::Update::rule` for
/// weights, on 8 or 16 lanes at a time (see `optim::Method` for the formulas).
pub type Update = crate::optim::Update<f32>;

/// Columns per panel of the weight-gradient kernel, the width of its tiles (and of the
/// broadcast kernels', which the engine relies on when it packs in the `d_a` region).
pub const PANEL: usize = 8 * TN_NV;
const _: () = assert!(PANEL == 8 * NN_NV);

/// How the weight-gradient kernel finds element (b, c) of `a`: at
/// `a[(c / PANEL)·panel + b·ld + c % PANEL]`.
#[derive(Clone, Copy, Debug)]
pub struct PanelLayout {
    pub ld: usize,
    pub panel: usize,
}

impl PanelLayout {
    /// `a` as stored, (B, I).
    pub fn rows(i_dim: usize) -> PanelLayout {
        PanelLayout {
            ld: i_dim,
            panel: PANEL,
        }
    }

    /// `a` packed by `avx2::pack_panels` for a batch of `batch`: each panel of [`PANEL`] columns
    /// is a contiguous (B, PANEL) block.
    pub fn packed(batch: usize) -> PanelLayout {
        PanelLayout {
            ld: PANEL,
            panel: PANEL * batch,
        }
    }
}
