//! f32 micro-kernels for x86-64 with AVX2 and FMA, selected at run time.
//!
//! Three shapes of matrix product occur in a training step, and each gets a kernel suited to
//! the layout of its operands:
//! - forward, `z = a Wᵀ`: both operands are contiguous along the contraction → `dot_tile`
//!   keeps 4×3 vector accumulators and sums each horizontally at the end;
//! - input gradient, `d_a = d_z W`: a broadcast tile (`broadcast.rs`, shared with `avx512`)
//!   broadcasts `d_z` and streams rows of `W`;
//! - weight gradient, `d_w = d_zᵀ a` (contraction over the batch): a broadcast tile broadcasts
//!   `d_z` (copied transposed by the engine) and streams `a` (copied into column panels by
//!   [`pack_panels`]), and applies the update in its epilogue, so the gradient is never
//!   written to memory.
//!
//! Every output element is reduced in a fixed order that does not depend on the thread split,
//! so results are bit-identical for any number of threads.
//!
//! For the first layer, whose input is an image's pixels and mostly zeros, the forward and
//! weight-gradient kernels take a map of which blocks of 8 pixels hold a non-zero
//! ([`nonzero_blocks`]) and leave out the rest: products with 0 that would not change a bit.
//!
//! # Safety
//! Every function here requires a CPU with AVX2 and FMA ([`available`]), and pointers valid
//! for the shapes and leading dimensions it is given. Callers (`engine.rs`) derive both from
//! slices whose lengths they assert.
#![allow(
    clippy::too_many_arguments,
    clippy::missing_safety_doc,
    clippy::needless_range_loop
)]

pub use super::tiling::{
    Act, NN_MR, NN_NV, NZ_BLOCK, PANEL, PanelLayout, TN_MR, TN_NV, Update, nonzero_rows, nz_words,
};
use std::arch::x86_64::*;

pub fn available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

/// Runs `f` with denormals flushed to zero (MXCSR FTZ and DAZ) on this thread, then restores
/// the previous mode. Values below 1.2e-38 occur in training (velocities of dead units decay
/// geometrically through that range) and cost tens of cycles per operation when not flushed;
/// flushing them changes nothing a float32 result could show.
#[inline]
pub fn with_flushed_denormals<R>(f: impl FnOnce() -> R) -> R {
    #[allow(deprecated)]
    // SAFETY: reading and writing MXCSR only changes this thread's rounding/denormal mode.
    unsafe {
        let saved = _mm_getcsr();
        _mm_setcsr(saved | 0x8040);
        let r = f();
        _mm_setcsr(saved);
        r
    }
}

/// Lanes `0..n` set (1 ≤ n ≤ 8): `simd`'s 8-lane mask.
#[inline(always)]
pub(crate) unsafe fn mask(n: usize) -> __m256i {
    unsafe { <__m256 as super::simd::Vector>::first(n) }
}

#[inline(always)]
pub(crate) unsafe fn hsum(v: __m256) -> f32 {
    unsafe {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }
}

/// `e^x` for 8 lanes, Cephes-style: x = n ln2 + r, e^r by a degree-6 polynomial, 2^n through
/// the exponent bits. Relative error about 2e-7 over the clamped range [−87.3, 88.3]; NaN in,
/// NaN out, as `f32::exp`.
#[inline(always)]
pub unsafe fn exp8(x: __m256) -> __m256 {
    unsafe {
        // The clamp's constants go first: `max_ps`/`min_ps` return their second operand when
        // either is NaN, so a NaN x passes through (and makes r, hence the result, NaN)
        // instead of becoming a bound. For other x the order changes nothing.
        let x = _mm256_min_ps(_mm256_set1_ps(88.3), _mm256_max_ps(_mm256_set1_ps(-87.3), x));
        let n = _mm256_round_ps(
            _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)),
            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
        );
        // ln 2 split in a part exact in f32 and a correction, so r keeps its low bits.
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
        let mut p = _mm256_set1_ps(1.987_569_1e-4);
        for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        let r2 = _mm256_mul_ps(r, r);
        let p = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0)));
        let pow2n = _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)),
            23,
        ));
        _mm256_mul_ps(p, pow2n)
    }
}

#[inline(always)]
unsafe fn act8(act: Act, z: __m256) -> __m256 {
    unsafe {
        let one = _mm256_set1_ps(1.0);
        match act {
            Act::Identity => z,
            Act::Relu => _mm256_max_ps(z, _mm256_setzero_ps()),
            Act::Sigmoid => _mm256_div_ps(
                one,
                _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), z))),
            ),
            // tanh z = 2 σ(2z) − 1
            Act::Tanh => {
                let two = _mm256_set1_ps(2.0);
                let s = _mm256_div_ps(
                    one,
                    _mm256_add_ps(one, exp8(_mm256_mul_ps(_mm256_set1_ps(-2.0), z))),
                );
                _mm256_fmsub_ps(two, s, one)
            }
        }
    }
}

/// In place over `n` values of one row: `x = act(x + bias)`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn bias_act_row(x: *mut f32, bias: *const f32, n: usize, act: Act) {
    unsafe {
        let mut c = 0;
        while c + 8 <= n {
            let v = _mm256_add_ps(_mm256_loadu_ps(x.add(c)), _mm256_loadu_ps(bias.add(c)));
            _mm256_storeu_ps(x.add(c), act8(act, v));
            c += 8;
        }
        if c < n {
            let m = mask(n - c);
            let v = _mm256_add_ps(
                _mm256_maskload_ps(x.add(c), m),
                _mm256_maskload_ps(bias.add(c), m),
            );
            _mm256_maskstore_ps(x.add(c), m, act8(act, v));
        }
    }
}

/// One block of the forward tile: columns `p…p+8` (`MASKED`: only the lanes of `m`) of MR
/// rows of `a` times the same columns of NR rows of `w`, added into `acc`.
#[inline(always)]
unsafe fn dot_step<const MR: usize, const NR: usize, const MASKED: bool>(
    acc: &mut [[__m256; NR]; MR],
    a: *const f32,
    lda: usize,
    w: *const f32,
    ldw: usize,
    p: usize,
    m: __m256i,
) {
    unsafe {
        let mut wv = [_mm256_setzero_ps(); NR];
        for j in 0..NR {
            let q = w.add(j * ldw + p);
            wv[j] = if MASKED {
                _mm256_maskload_ps(q, m)
            } else {
                _mm256_loadu_ps(q)
            };
        }
        for i in 0..MR {
            let q = a.add(i * lda + p);
            let av = if MASKED {
                _mm256_maskload_ps(q, m)
            } else {
                _mm256_loadu_ps(q)
            };
            for j in 0..NR {
                acc[i][j] = _mm256_fmadd_ps(av, wv[j], acc[i][j]);
            }
        }
    }
}

/// Calls `$step!(p, masked)` for each block of [`NZ_BLOCK`] columns `p…` (of `k`), in
/// increasing order, that one of the tile's `$mr` rows holds a non-zero in: the rows' words of
/// the map `$nz` (`nz_words(k)` per row) or'ed together. Used where `SKIP`.
macro_rules! for_nonzero_blocks {
    ($nz:expr, $mr:expr, $k:expr, $step:ident) => {
        let words = $crate::kernels::avx2::nz_words($k);
        for t in 0..words {
            let mut bits = 0u64;
            for i in 0..$mr {
                bits |= *$nz.add(i * words + t);
            }
            while bits != 0 {
                let p = $crate::kernels::avx2::NZ_BLOCK * (64 * t + bits.trailing_zeros() as usize);
                bits &= bits - 1;
                $step!(p, p + $crate::kernels::avx2::NZ_BLOCK > $k);
            }
        }
    };
}
pub(crate) use for_nonzero_blocks;

/// Calls `$step!(p, tail)` for each block of [`NZ_BLOCK`] columns `p…` (of `k`) a forward tile
/// reads, in increasing order: every block, or with `$skip` only those the map `$nz` marks
/// ([`for_nonzero_blocks`]). `tail` says whether the block runs past `k` (and must be masked).
macro_rules! for_blocks {
    ($skip:expr, $nz:expr, $mr:expr, $k:expr, $step:ident) => {
        if $skip {
            $crate::kernels::avx2::for_nonzero_blocks!($nz, $mr, $k, $step);
        } else {
            let block = $crate::kernels::avx2::NZ_BLOCK;
            let mut p = 0;
            while p + block <= $k {
                $step!(p, false);
                p += block;
            }
            if p < $k {
                $step!(p, true);
            }
        }
    };
}
pub(crate) use for_blocks;

/// One forward tile's operands: `out[r][c] = Σ_p a[r, p] · w[c, p]` for rows of `a` and `nr`
/// rows of `w`, both contiguous along p (length k), and with `skip` the tile's rows of the map
/// `nz` ([`nonzero_blocks`]).
#[derive(Clone, Copy)]
pub(crate) struct DotBlock {
    pub k: usize,
    pub a: *const f32,
    pub lda: usize,
    pub w: *const f32,
    pub ldw: usize,
    pub nr: usize,
    pub out: *mut f32,
    pub ldo: usize,
    pub nz: *const u64,
}

/// The forward tiles of one register width, for [`matmul_nt_tiles`].
pub(crate) trait DotTile {
    /// Rows of `w` per tile.
    const NR: usize;
    /// The tile of `mr` (1..=4) rows of `a` and `t.nr` (1..=NR) rows of `w`. With `skip`, only
    /// over the blocks of [`NZ_BLOCK`] columns that the map marks: the blocks left out would
    /// add only zeros, so the sums keep their bits.
    unsafe fn tile(mr: usize, skip: bool, t: &DotBlock);
}

/// Forward tile: `out[r][c] = Σ_p a[r, p] · w[c, p]` for MR rows of `a` and NR rows of `w`,
/// both contiguous along p (length k). With `SKIP`, only over the blocks of 8 columns that the
/// map `nz` (the MR rows' words of [`nonzero_blocks`]) marks: the blocks left out would add
/// only zeros, so the sums keep their bits.
#[inline(always)]
unsafe fn dot_tile<const MR: usize, const NR: usize, const SKIP: bool>(t: &DotBlock) {
    unsafe {
        let DotBlock {
            k,
            a,
            lda,
            w,
            ldw,
            out,
            ldo,
            nz,
            ..
        } = *t;
        let mut acc = [[_mm256_setzero_ps(); NR]; MR];
        let all = mask(8);
        macro_rules! step {
            ($p:expr, $tail:expr) => {
                if $tail {
                    dot_step::<MR, NR, true>(&mut acc, a, lda, w, ldw, $p, mask(k - $p))
                } else {
                    dot_step::<MR, NR, false>(&mut acc, a, lda, w, ldw, $p, all)
                }
            };
        }
        for_blocks!(SKIP, nz, MR, k, step);
        for i in 0..MR {
            for j in 0..NR {
                *out.add(i * ldo + j) = hsum(acc[i][j]);
            }
        }
    }
}

impl DotTile for __m256 {
    const NR: usize = 3;
    #[inline(always)]
    unsafe fn tile(mr: usize, skip: bool, t: &DotBlock) {
        unsafe {
            macro_rules! go {
                ($mr:literal, $nr:literal) => {
                    if skip {
                        dot_tile::<$mr, $nr, true>(t)
                    } else {
                        dot_tile::<$mr, $nr, false>(t)
                    }
                };
            }
            match (mr, t.nr) {
                (4, 3) => go!(4, 3),
                (4, 2) => go!(4, 2),
                (4, 1) => go!(4, 1),
                (3, 3) => go!(3, 3),
                (3, 2) => go!(3, 2),
                (3, 1) => go!(3, 1),
                (2, 3) => go!(2, 3),
                (2, 2) => go!(2, 2),
                (2, 1) => go!(2, 1),
                (1, 3) => go!(1, 3),
                (1, 2) => go!(1, 2),
                _ => go!(1, 1),
            }
        }
    }
}

/// `out[r, c] = Σ_p a[r, p] · w[c, p]` for rows `0..m` and columns `cols` (rows of `w`), in
/// tiles `D` of 4 rows of `a` × `D::NR` rows of `w`. With `nz`, the map of `a`'s rows by
/// [`nonzero_blocks`], blocks of zeros are skipped (same bits).
#[inline(always)]
pub(crate) unsafe fn matmul_nt_tiles<D: DotTile>(
    m: usize,
    k: usize,
    a: *const f32,
    lda: usize,
    w: *const f32,
    ldw: usize,
    cols: std::ops::Range<usize>,
    out: *mut f32,
    ldo: usize,
    nz: Option<&[u64]>,
) {
    unsafe {
        const MR: usize = 4;
        // Rows in blocks of ROW_BLOCK, so that the block of `a` stays in L2 while every column
        // tile passes over it (an evaluation batch of 1000 images would not).
        const ROW_BLOCK: usize = 64;
        let words = nz_words(k);
        if let Some(nz) = nz {
            assert!(nz.len() >= m * words);
        }
        let mut r0 = 0;
        while r0 < m {
            let m_end = (r0 + ROW_BLOCK).min(m);
            let mut c = cols.start;
            while c < cols.end {
                let nr = (cols.end - c).min(D::NR);
                let wp = w.add(c * ldw);
                let mut r = r0;
                while r < m_end {
                    let mr = (m_end - r).min(MR);
                    let (ap, op) = (a.add(r * lda), out.add(r * ldo + c));
                    // The tile's rows of the map (unread without one).
                    let np = nz.map_or(std::ptr::null(), |nz| nz[r * words..].as_ptr());
                    let t = DotBlock {
                        k,
                        a: ap,
                        lda,
                        w: wp,
                        ldw,
                        nr,
                        out: op,
                        ldo,
                        nz: np,
                    };
                    D::tile(mr, nz.is_some(), &t);
                    r += mr;
                }
                c += nr;
            }
            r0 = m_end;
        }
    }
}

// `matmul_nt`, `matmul_nn_dact`, `weight_grad_update` and `matmul_sparse_rows` on 8 lanes.
super::broadcast::entry_points!(__m256, "avx2,fma", matmul_nt_tiles::<__m256>);

/// The map of which blocks of [`NZ_BLOCK`] columns of each row of `x` (m × k, leading dimension
/// `ldx`) hold a value other than zero (NaN counts as one): row r has `nz_words(k)` words from
/// `out[r·nz_words(k)]`, and bit q of its word t stands for the columns `8(64t + q)…`.
///
/// The forward and weight-gradient kernels take it for the first layer, whose input (an
/// image's pixels) is mostly zeros, and skip the blocks it leaves unmarked. Every sum they form
/// starts at +0, and a skipped product is ±0, which would leave the sum as it was: so skipping
/// changes no bit of any result (with finite weights; 0·∞ would have been NaN).
#[target_feature(enable = "avx2")]
pub unsafe fn nonzero_blocks(m: usize, k: usize, x: *const f32, ldx: usize, out: &mut Vec<u64>) {
    unsafe {
        let words = nz_words(k);
        out.clear();
        out.resize(m * words, 0);
        let zero = _mm256_setzero_ps();
        for r in 0..m {
            let (row, bits) = (x.add(r * ldx), &mut out[r * words..(r + 1) * words]);
            let mut q = 0;
            while NZ_BLOCK * (q + 1) <= k {
                let v = _mm256_loadu_ps(row.add(NZ_BLOCK * q));
                if _mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_NEQ_UQ)) != 0 {
                    bits[q / 64] |= 1 << (q % 64);
                }
                q += 1;
            }
            if (NZ_BLOCK * q..k).any(|c| *row.add(c) != 0.0 || (*row.add(c)).is_nan()) {
                bits[q / 64] |= 1 << (q % 64);
            }
        }
    }
}

/// The share of the blocks of `m` rows of `k` columns that the map `nz` marks.
pub fn nz_share(nz: &[u64], m: usize, k: usize) -> f64 {
    let marked: u32 = nz[..m * nz_words(k)].iter().map(|w| w.count_ones()).sum();
    marked as f64 / (m * k.div_ceil(NZ_BLOCK)).max(1) as f64
}

/// Copy columns `cols` (from and to multiples of [`PANEL`], or to `i_dim`) of `a` (B, I) into
/// `out` in the layout [`PanelLayout::packed`]; a last, narrower panel is padded with zeros.
/// The weight-gradient kernel then reads each panel as one contiguous stream instead of one
/// cache line every I floats, which the hardware prefetcher follows poorly.
#[target_feature(enable = "avx2")]
pub unsafe fn pack_panels(
    batch: usize,
    i_dim: usize,
    a: *const f32,
    cols: std::ops::Range<usize>,
    out: *mut f32,
) {
    unsafe {
        assert!(cols.start.is_multiple_of(PANEL) && cols.end <= i_dim);
        let mut c = cols.start;
        while c < cols.end {
            let width = (cols.end - c).min(PANEL);
            let dst = out.add((c / PANEL) * PANEL * batch);
            for b in 0..batch {
                let (src, row) = (a.add(b * i_dim + c), dst.add(b * PANEL));
                if width == PANEL {
                    _mm256_storeu_ps(row, _mm256_loadu_ps(src));
                    _mm256_storeu_ps(row.add(8), _mm256_loadu_ps(src.add(8)));
                } else {
                    for j in 0..PANEL {
                        *row.add(j) = if j < width { *src.add(j) } else { 0.0 };
                    }
                }
            }
            c += width;
        }
    }
}

/// Floating-point operations of `iters` rounds of 12 independent 8-wide FMAs held in registers:
/// the compute ceiling of one core, with no memory traffic. Returns a value derived from the
/// accumulators so the loop cannot be optimised away.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn fma_loop(iters: usize) -> f32 {
    unsafe {
        let mut acc = [_mm256_set1_ps(0.0); 12];
        let x = _mm256_set1_ps(0.999_999);
        let y = _mm256_set1_ps(1e-7);
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm256_fmadd_ps(*a, x, y);
            }
        }
        let mut s = _mm256_setzero_ps();
        for a in acc {
            s = _mm256_add_ps(s, a);
        }
        hsum(s)
    }
}

/// FLOPs done by [`fma_loop`]`(iters)`.
pub fn fma_loop_flops(iters: usize) -> f64 {
    iters as f64 * 12.0 * 8.0 * 2.0
}

/// For each block of `mr` consecutive rows of `x` (m × k, leading dimension `ldx`): the columns
/// p at which any row of the block is non-zero, in increasing order. Block b's list is
/// `idx[starts[b]..starts[b + 1]]`.
#[target_feature(enable = "avx2")]
pub unsafe fn nonzero_columns(
    m: usize,
    k: usize,
    x: *const f32,
    ldx: usize,
    mr: usize,
    idx: &mut Vec<u16>,
    starts: &mut Vec<usize>,
) {
    unsafe {
        assert!(k <= u16::MAX as usize + 1);
        idx.clear();
        starts.clear();
        starts.push(0);
        let zero = _mm256_setzero_ps();
        let mut r0 = 0;
        while r0 < m {
            let rows = (m - r0).min(mr);
            let mut p = 0;
            while p + 8 <= k {
                let mut any = 0i32;
                for i in 0..rows {
                    let v = _mm256_loadu_ps(x.add((r0 + i) * ldx + p));
                    any |= _mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_NEQ_UQ));
                }
                while any != 0 {
                    idx.push((p + any.trailing_zeros() as usize) as u16);
                    any &= any - 1;
                }
                p += 8;
            }
            for q in p..k {
                if (0..rows).any(|i| *x.add((r0 + i) * ldx + q) != 0.0) {
                    idx.push(q as u16);
                }
            }
            starts.push(idx.len());
            r0 += rows;
        }
    }
}
