//! The matrix-product kernels of `avx2` again, with 512-bit registers, for CPUs with AVX-512F
//! and DQ: the three of a training step (the forward product, the input gradient with `⊙ f'`,
//! and the weight gradient with its update) and the evaluation's first-layer product that skips
//! zero pixels. Each output element is reduced by exactly the operations `avx2` uses, in the
//! same order, so the results are bit-identical to `avx2`'s (`tests/engine.rs` checks this);
//! what changes is how much work one instruction does.
//!
//! The three broadcast kernels are `broadcast.rs`'s, instantiated with 16-lane registers (a
//! 16-lane vector holds what two 8-lane ones did). What is this file's own is the forward
//! tile, which keeps avx2's 8-lane partial sums, two accumulators to a zmm register, and
//! [`Products`], the table through which the engine calls one width or the other.
//! `docs/performance.md` says when the wider registers pay (`examples/kernel_ab.rs` measures
//! it).
//!
//! # Safety
//! As for `avx2`, and the CPU must also have AVX-512F and AVX-512DQ ([`available`]).
#![allow(
    clippy::too_many_arguments,
    clippy::missing_safety_doc,
    clippy::needless_range_loop
)]
use super::avx2::{DotBlock, DotTile, for_blocks, hsum, mask};
use super::tiling::{Act, PanelLayout, Update};
use std::arch::x86_64::*;
use std::ops::Range;

/// The matrix-product kernels of one width: avx2's, or this module's in their place (the
/// same arguments and the same results).
#[derive(Clone, Copy)]
// Each field's type is a kernel's signature, spelled out once here.
#[allow(clippy::type_complexity)]
pub struct Products {
    pub matmul_nt: unsafe fn(
        usize,
        usize,
        *const f32,
        usize,
        *const f32,
        usize,
        Range<usize>,
        *mut f32,
        usize,
        Option<&[u64]>,
    ),
    pub matmul_nn_dact: unsafe fn(
        usize,
        usize,
        *const f32,
        usize,
        *const f32,
        usize,
        *const f32,
        *mut f32,
        usize,
        Range<usize>,
        Act,
    ),
    pub weight_grad_update: unsafe fn(
        usize,
        usize,
        *const f32,
        usize,
        usize,
        *const f32,
        PanelLayout,
        *mut f32,
        *mut f32,
        *mut f32,
        Range<usize>,
        &Update,
        Option<&[u64]>,
    ),
    pub matmul_sparse_rows:
        unsafe fn(usize, usize, *const f32, usize, *const f32, usize, *mut f32, usize, &[u16], &[usize]),
}

impl Products {
    /// This module's kernels if `wide` (the CPU must have them: [`available`]), else avx2's.
    pub fn new(wide: bool) -> Products {
        use super::avx2;
        if wide {
            Products {
                matmul_nt,
                matmul_nn_dact,
                weight_grad_update,
                matmul_sparse_rows,
            }
        } else {
            Products {
                matmul_nt: avx2::matmul_nt,
                matmul_nn_dact: avx2::matmul_nn_dact,
                weight_grad_update: avx2::weight_grad_update,
                matmul_sparse_rows: avx2::matmul_sparse_rows,
            }
        }
    }
}

pub fn available() -> bool {
    is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512dq") && super::avx2::available()
}

/// One block of the forward tile: columns `p…p+8` (`MASKED`: only the lanes of `m`) of MR
/// rows of `a` and of the tile's rows of `w` (`wrow(j, h)`: half h of pair j).
#[inline(always)]
unsafe fn dot_step<const MR: usize, const NP: usize, const MASKED: bool>(
    acc: &mut [[__m512; NP]; MR],
    a: *const f32,
    lda: usize,
    wrow: impl Fn(usize, usize) -> *const f32,
    p: usize,
    m: __m256i,
) {
    unsafe {
        macro_rules! load {
            ($q:expr) => {
                if MASKED {
                    _mm256_maskload_ps($q, m)
                } else {
                    _mm256_loadu_ps($q)
                }
            };
        }
        let mut wv = [_mm512_setzero_ps(); NP];
        for j in 0..NP {
            let (lo, hi) = (load!(wrow(j, 0).add(p)), load!(wrow(j, 1).add(p)));
            wv[j] = _mm512_insertf32x8::<1>(_mm512_castps256_ps512(lo), hi);
        }
        for i in 0..MR {
            let av = _mm512_broadcast_f32x8(load!(a.add(i * lda + p)));
            for j in 0..NP {
                acc[i][j] = _mm512_fmadd_ps(av, wv[j], acc[i][j]);
            }
        }
    }
}

/// Forward tile, `out[r][c] = Σ_p a[r, p] · w[c, p]` for MR rows of `a` and `2·NP` rows of
/// `w` (the last `nr` valid), each zmm holding two 8-lane accumulators that each reduce
/// exactly as avx2's `dot_tile` does: so the same bits. With `SKIP`, over only the blocks the
/// map `nz` marks, as avx2's.
#[inline(always)]
unsafe fn dot_tile<const MR: usize, const NP: usize, const SKIP: bool>(t: &DotBlock) {
    unsafe {
        let DotBlock {
            k,
            a,
            lda,
            w,
            ldw,
            nr,
            out,
            ldo,
            nz,
        } = *t;
        // Row of w for half h of pair j (a missing last row repeats the one before).
        let wrow = |j: usize, h: usize| w.add((2 * j + h).min(nr - 1) * ldw);
        let mut acc = [[_mm512_setzero_ps(); NP]; MR];
        let all = mask(8);
        macro_rules! step {
            ($p:expr, $tail:expr) => {
                if $tail {
                    dot_step::<MR, NP, true>(&mut acc, a, lda, wrow, $p, mask(k - $p))
                } else {
                    dot_step::<MR, NP, false>(&mut acc, a, lda, wrow, $p, all)
                }
            };
        }
        for_blocks!(SKIP, nz, MR, k, step);
        for i in 0..MR {
            for j in 0..NP {
                let v = acc[i][j];
                *out.add(i * ldo + 2 * j) = hsum(_mm512_castps512_ps256(v));
                if 2 * j + 1 < nr {
                    *out.add(i * ldo + 2 * j + 1) = hsum(_mm512_extractf32x8_ps::<1>(v));
                }
            }
        }
    }
}

// Tiles of four rows of `a` and six of `w` (12 zmm accumulators, each two of avx2's): 4×3 KB
// plus 6×3 KB at the seed's 784 inputs, which stays in L1 (eight rows of `w` would not).
impl DotTile for __m512 {
    const NR: usize = 6;
    #[inline(always)]
    unsafe fn tile(mr: usize, skip: bool, t: &DotBlock) {
        unsafe {
            macro_rules! go {
                ($mr:literal, $np:literal) => {
                    if skip {
                        dot_tile::<$mr, $np, true>(t)
                    } else {
                        dot_tile::<$mr, $np, false>(t)
                    }
                };
            }
            macro_rules! np {
                ($mr:literal) => {
                    match t.nr.div_ceil(2) {
                        3 => go!($mr, 3),
                        2 => go!($mr, 2),
                        _ => go!($mr, 1),
                    }
                };
            }
            match mr {
                4 => np!(4),
                3 => np!(3),
                2 => np!(2),
                _ => np!(1),
            }
        }
    }
}

// avx2's `matmul_nt`, `matmul_nn_dact`, `weight_grad_update` and `matmul_sparse_rows` (same
// arguments, same results) on 16 lanes.
super::broadcast::entry_points!(
    __m512,
    "avx512f,avx512dq,avx2,fma",
    super::avx2::matmul_nt_tiles::<__m512>
);
