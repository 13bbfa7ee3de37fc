//! The matrix-product kernels of `avx2` again, with 512-bit registers, for CPUs with AVX-512F
//! and DQ: the three of a training step (the forward product, the input gradient with `⊙ f'`,
//! and the weight gradient with its update) and the evaluation's first-layer product that skips
//! zero pixels. Each output element is reduced by exactly
//! the operations `avx2` uses, in the same order, so the results are bit-identical to
//! `avx2`'s (`tests/engine.rs` checks this); what changes is how much work one instruction
//! does. (The broadcast kernels vectorise across independent outputs, so a 16-lane vector
//! holds what two 8-lane ones did; the forward kernel keeps avx2's 8-lane partial sums, two
//! accumulators to a zmm register.)
//!
//! On the machine this project is measured on (AMD Zen 4, whose 512-bit units are two 256-bit
//! halves) this adds no arithmetic throughput: a register-only FMA loop runs at the same
//! GFLOP/s either way. It halves the instructions issued per FLOP, which is what counts when
//! the core is shared with another busy hardware thread, as cloud VMs' cores often are:
//! there a 6×2-vector broadcast tile ran 24% faster with zmm than with ymm registers, and the
//! seed network's step 9–14% faster; on a quiet core nothing changes (README, "Speed";
//! `examples/kernel_ab.rs` measures it). The evaluation gains in both: 9–11% on a quiet core.
//!
//! # Safety
//! As for `avx2`, and the CPU must also have AVX-512F and AVX-512DQ ([`available`]).
#![allow(
    clippy::too_many_arguments,
    clippy::missing_safety_doc,
    clippy::needless_range_loop
)]
use super::avx2::{Act, PANEL, PanelLayout, Update, prefetch_rows};
use crate::optim::Method;
use std::arch::x86_64::*;
use std::ops::Range;

/// Calls the local macro `$go!(MR, NV, MASKED)` with the compile-time tile shape matching the
/// run-time `mr` (1..=6 rows), `nv` (1..=2 vectors of 16) and `masked` (last vector partial).
macro_rules! for_tile_shape {
    ($go:ident, $mr:expr, $nv:expr, $masked:expr) => {
        match $mr {
            6 => for_tile_shape!(@nv $go, 6, $nv, $masked),
            5 => for_tile_shape!(@nv $go, 5, $nv, $masked),
            4 => for_tile_shape!(@nv $go, 4, $nv, $masked),
            3 => for_tile_shape!(@nv $go, 3, $nv, $masked),
            2 => for_tile_shape!(@nv $go, 2, $nv, $masked),
            _ => for_tile_shape!(@nv $go, 1, $nv, $masked),
        }
    };
    (@nv $go:ident, $mr:literal, $nv:expr, $masked:expr) => {
        match ($nv, $masked) {
            (2, false) => $go!($mr, 2, false),
            (2, true) => $go!($mr, 2, true),
            (1, false) => $go!($mr, 1, false),
            _ => $go!($mr, 1, true),
        }
    };
}

/// A run of `width` (≤ 32) columns as the tiles see it: how many 16-wide vectors, whether the
/// last is partial, and the lane mask of the last.
#[inline(always)]
fn lanes(width: usize) -> (usize, bool, __mmask16) {
    let masked = !width.is_multiple_of(16);
    let last = if masked {
        ((1u32 << (width % 16)) - 1) as u16
    } else {
        u16::MAX
    };
    (width.div_ceil(16), masked, last)
}

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

/// One step of the broadcast tiles, avx2's `broadcast_step` with zmm vectors: load NV vectors,
/// vector j from `row + j·stride` (the last masked when `MASKED`), broadcast `x[i·x_row]` for
/// each of MR rows, and accumulate the products into `acc`.
#[inline(always)]
unsafe fn broadcast_step<const MR: usize, const NV: usize, const MASKED: bool>(
    acc: &mut [[__m512; NV]; MR],
    x: *const f32,
    x_row: usize,
    row: *const f32,
    stride: usize,
    last: __mmask16,
) {
    unsafe {
        let mut rv = [_mm512_setzero_ps(); NV];
        for j in 0..NV {
            let p = row.add(j * stride);
            rv[j] = if MASKED && j == NV - 1 {
                _mm512_maskz_loadu_ps(last, p)
            } else {
                _mm512_loadu_ps(p)
            };
        }
        for i in 0..MR {
            let xv = _mm512_set1_ps(*x.add(i * x_row));
            for j in 0..NV {
                acc[i][j] = _mm512_fmadd_ps(xv, rv[j], acc[i][j]);
            }
        }
    }
}

/// avx2's `tn_tile` with NV zmm vectors of 16 columns: `d_w[o, c] = Σ_b d[b, o] · a[b, c]`,
/// then the update of `w`, `v` (and `s` for Adam). Vector j of the tile reads `a` from the
/// panel `j·a_panel` floats on, so packed panels of 16 columns work as they are. With `SKIP`,
/// over only the samples in `list`, as avx2's.
#[inline(always)]
unsafe fn tn_tile<const MR: usize, const NV: usize, const MASKED: bool, const SKIP: bool>(
    batch: usize,
    list: &[u32],
    d: *const f32,
    d_step: usize,
    d_row: usize,
    a: *const f32,
    a_panel: usize,
    lda: usize,
    w: *mut f32,
    v: *mut f32,
    s: *mut f32,
    ldw: usize,
    up: &Update,
    last: __mmask16,
) {
    unsafe {
        // The epilogue's rows, requested now (as in avx2).
        let adam = up.method.has_second_moment();
        prefetch_rows::<MR>(&[w, v, if adam { s } else { w }], ldw, 16 * NV);
        let mut acc = [[_mm512_setzero_ps(); NV]; MR];
        macro_rules! sample {
            ($b:expr) => {
                let (x, row) = (d.add($b * d_step), a.add($b * lda));
                broadcast_step::<MR, NV, MASKED>(&mut acc, x, d_row, row, a_panel, last);
            };
        }
        if SKIP {
            for &b in list {
                sample!(b as usize);
            }
        } else {
            for b in 0..batch {
                sample!(b);
            }
        }
        let set = _mm512_set1_ps;
        let (alpha, mu, lambda) = (set(up.lr), set(up.momentum), set(up.l2));
        for i in 0..MR {
            for j in 0..NV {
                let off = i * ldw + 16 * j;
                let partial = MASKED && j == NV - 1;
                macro_rules! load {
                    ($p:expr) => {
                        if partial {
                            _mm512_maskz_loadu_ps(last, $p)
                        } else {
                            _mm512_loadu_ps($p)
                        }
                    };
                }
                macro_rules! store {
                    ($p:expr, $x:expr) => {
                        if partial {
                            _mm512_mask_storeu_ps($p, last, $x)
                        } else {
                            _mm512_storeu_ps($p, $x)
                        }
                    };
                }
                // The same expressions as avx2's tn_tile, lane for lane.
                let (wv, vv) = (load!(w.add(off)), load!(v.add(off)));
                let g = _mm512_fmadd_ps(lambda, wv, acc[i][j]);
                let (vn, wn) = match up.method {
                    Method::Sgd => {
                        let vn = _mm512_fmsub_ps(mu, vv, _mm512_mul_ps(alpha, g));
                        (vn, _mm512_add_ps(wv, vn))
                    }
                    Method::Nesterov => {
                        let ag = _mm512_mul_ps(alpha, g);
                        let vn = _mm512_fmsub_ps(mu, vv, ag);
                        (vn, _mm512_add_ps(wv, _mm512_fmsub_ps(mu, vn, ag)))
                    }
                    Method::Adam | Method::AdamW => {
                        let sv = load!(s.add(off));
                        let (b1, b2) = (set(up.beta1), set(up.beta2));
                        let mn = _mm512_fmadd_ps(b1, vv, _mm512_mul_ps(set(1.0 - up.beta1), g));
                        let sn =
                            _mm512_fmadd_ps(b2, sv, _mm512_mul_ps(set(1.0 - up.beta2), _mm512_mul_ps(g, g)));
                        store!(s.add(off), sn);
                        let denom = _mm512_add_ps(_mm512_sqrt_ps(_mm512_mul_ps(sn, set(up.c2))), set(up.eps));
                        let step = _mm512_div_ps(_mm512_mul_ps(alpha, _mm512_mul_ps(mn, set(up.c1))), denom);
                        let decayed = _mm512_fnmadd_ps(set(up.decay), wv, wv);
                        (mn, _mm512_sub_ps(decayed, step))
                    }
                };
                store!(v.add(off), vn);
                store!(w.add(off), wn);
            }
        }
    }
}

/// avx2's `weight_grad_update` (same arguments, same results), in tiles of 6 rows × 32
/// columns.
#[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
pub unsafe fn weight_grad_update(
    batch: usize,
    i_dim: usize,
    d: *const f32,
    d_step: usize,
    d_row: usize,
    a: *const f32,
    layout: PanelLayout,
    w: *mut f32,
    v: *mut f32,
    s: *mut f32,
    rows: std::ops::Range<usize>,
    up: &Update,
    nz: Option<&[u64]>,
) {
    unsafe {
        const MR: usize = 6;
        const STEP: usize = 32;
        let block = ((super::avx2::L2_BUDGET / (4 * batch.max(1))) / STEP * STEP).max(STEP);
        let step = if nz.is_some() { 16 } else { STEP };
        let (mut idx, mut starts) = (Vec::new(), Vec::new());
        if let Some(nz) = nz {
            super::avx2::nonzero_rows(nz, batch, i_dim, step, &mut idx, &mut starts);
        }
        let mut c0 = 0;
        while c0 < i_dim {
            let c_end = (c0 + block).min(i_dim);
            let mut r = rows.start;
            while r < rows.end {
                let mr = (rows.end - r).min(MR);
                let mut c = c0;
                while c < c_end {
                    let width = (c_end - c).min(step);
                    let (nv, masked, last) = lanes(width);
                    let off = r * i_dim + c;
                    let ap = a.add((c / PANEL) * layout.panel);
                    let (dp, wp, vp) = (d.add(r * d_row), w.add(off), v.add(off));
                    let sp = if s.is_null() { s } else { s.add(off) };
                    // Tiles start at multiples of STEP: tile columns c… read list c / STEP.
                    let list = match nz {
                        Some(_) => &idx[starts[c / step]..starts[c / step + 1]],
                        None => &[][..],
                    };
                    macro_rules! go {
                        ($mr:literal, $nv:literal, $masked:literal) => {
                            if nz.is_some() {
                                go!(@ $mr, $nv, $masked, true)
                            } else {
                                go!(@ $mr, $nv, $masked, false)
                            }
                        };
                        (@ $mr:literal, $nv:literal, $masked:literal, $skip:literal) => {
                            tn_tile::<$mr, $nv, $masked, $skip>(
                                batch,
                                list,
                                dp,
                                d_step,
                                d_row,
                                ap,
                                layout.panel,
                                layout.ld,
                                wp,
                                vp,
                                sp,
                                i_dim,
                                up,
                                last,
                            )
                        };
                    }
                    for_tile_shape!(go, mr, nv, masked);
                    c += width;
                }
                r += mr;
            }
            c0 = c_end;
        }
    }
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
unsafe fn dot_tile<const MR: usize, const NP: usize, const SKIP: bool>(
    k: usize,
    a: *const f32,
    lda: usize,
    w: *const f32,
    ldw: usize,
    nr: usize,
    out: *mut f32,
    ldo: usize,
    nz: *const u64,
) {
    unsafe {
        use super::avx2::{hsum, mask};
        // Row of w for half h of pair j (a missing last row repeats the one before).
        let wrow = |j: usize, h: usize| w.add((2 * j + h).min(nr - 1) * ldw);
        let mut acc = [[_mm512_setzero_ps(); NP]; MR];
        let all = mask(8);
        if SKIP {
            macro_rules! step {
                ($p:expr, $tail:expr) => {
                    if $tail {
                        dot_step::<MR, NP, true>(&mut acc, a, lda, wrow, $p, mask(k - $p))
                    } else {
                        dot_step::<MR, NP, false>(&mut acc, a, lda, wrow, $p, all)
                    }
                };
            }
            super::avx2::for_nonzero_blocks!(nz, MR, k, step);
        } else {
            let mut p = 0;
            while p + 8 <= k {
                dot_step::<MR, NP, false>(&mut acc, a, lda, wrow, p, all);
                p += 8;
            }
            if p < k {
                dot_step::<MR, NP, true>(&mut acc, a, lda, wrow, p, mask(k - p));
            }
        }
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

/// avx2's `matmul_nt` (same arguments, same results), in tiles of 4 rows × 6 columns.
#[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
pub unsafe fn matmul_nt(
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
        // Four rows of `a` and six of `w` (12 zmm accumulators, each two of avx2's): 4×3 KB
        // plus 6×3 KB at the seed's 784 inputs, which stays in L1. Eight rows of `w` (16
        // accumulators) overflowed it and ran 1.6 times slower.
        const MR: usize = 4;
        const NR: usize = 6;
        const ROW_BLOCK: usize = 64;
        let words = super::avx2::nz_words(k);
        if let Some(nz) = nz {
            assert!(nz.len() >= m * words);
        }
        let mut r0 = 0;
        while r0 < m {
            let m_end = (r0 + ROW_BLOCK).min(m);
            let mut c = cols.start;
            while c < cols.end {
                let nr = (cols.end - c).min(NR);
                let wp = w.add(c * ldw);
                let mut r = r0;
                while r < m_end {
                    let mr = (m_end - r).min(MR);
                    let ap = a.add(r * lda);
                    let op = out.add(r * ldo + c);
                    // The tile's rows of the map (unread without one).
                    let np = nz.map_or(std::ptr::null(), |nz| nz[r * words..].as_ptr());
                    macro_rules! go {
                        ($mr:literal, $np:literal) => {
                            if nz.is_some() {
                                dot_tile::<$mr, $np, true>(k, ap, lda, wp, ldw, nr, op, ldo, np)
                            } else {
                                dot_tile::<$mr, $np, false>(k, ap, lda, wp, ldw, nr, op, ldo, np)
                            }
                        };
                    }
                    macro_rules! np {
                        ($mr:literal) => {
                            match nr.div_ceil(2) {
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
                    r += mr;
                }
                c += nr;
            }
            r0 = m_end;
        }
    }
}

/// f'(z) from the cached output a = f(z), as avx2's `dact8`.
#[inline(always)]
unsafe fn dact16(act: Act, a: __m512) -> __m512 {
    unsafe {
        let one = _mm512_set1_ps(1.0);
        match act {
            Act::Identity => one,
            Act::Relu => _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(a, _mm512_setzero_ps()), one),
            Act::Sigmoid => _mm512_mul_ps(a, _mm512_sub_ps(one, a)),
            Act::Tanh => _mm512_fnmadd_ps(a, a, one),
        }
    }
}

/// avx2's `nn_tile` with NV zmm vectors of 16 columns: `acc[r][j] = Σ_p d[r, p] · w[p, c…]`,
/// then `out = acc ⊙ f'(a)`.
#[inline(always)]
unsafe fn nn_tile<const MR: usize, const NV: usize, const MASKED: bool>(
    k: usize,
    d: *const f32,
    ldd: usize,
    w: *const f32,
    ldw: usize,
    a: *const f32,
    out: *mut f32,
    ldo: usize,
    act: Act,
    last: __mmask16,
) {
    unsafe {
        prefetch_rows::<MR>(&[a, out], ldo, 16 * NV);
        let mut acc = [[_mm512_setzero_ps(); NV]; MR];
        for p in 0..k {
            broadcast_step::<MR, NV, MASKED>(&mut acc, d.add(p), ldd, w.add(p * ldw), 16, last);
        }
        for i in 0..MR {
            for j in 0..NV {
                let (ap, op) = (a.add(i * ldo + 16 * j), out.add(i * ldo + 16 * j));
                if MASKED && j == NV - 1 {
                    let v = _mm512_mul_ps(acc[i][j], dact16(act, _mm512_maskz_loadu_ps(last, ap)));
                    _mm512_mask_storeu_ps(op, last, v);
                } else {
                    _mm512_storeu_ps(op, _mm512_mul_ps(acc[i][j], dact16(act, _mm512_loadu_ps(ap))));
                }
            }
        }
    }
}

/// avx2's `matmul_nn_dact` (same arguments, same results), in tiles of 6 rows × 32 columns.
#[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
pub unsafe fn matmul_nn_dact(
    m: usize,
    k: usize,
    d: *const f32,
    ldd: usize,
    w: *const f32,
    ldw: usize,
    a: *const f32,
    out: *mut f32,
    ldo: usize,
    cols: std::ops::Range<usize>,
    act: Act,
) {
    unsafe {
        const MR: usize = 6;
        const STEP: usize = 32;
        let block = (super::avx2::L2_BUDGET / (4 * k.max(1))).max(MR) / MR * MR;
        let mut r0 = 0;
        while r0 < m {
            let r_end = (r0 + block).min(m);
            let mut c = cols.start;
            while c < cols.end {
                let width = (cols.end - c).min(STEP);
                let (nv, masked, last) = lanes(width);
                let mut r = r0;
                while r < r_end {
                    let mr = (r_end - r).min(MR);
                    let (dp, wp, ap, op) =
                        (d.add(r * ldd), w.add(c), a.add(r * ldo + c), out.add(r * ldo + c));
                    macro_rules! go {
                        ($mr:literal, $nv:literal, $masked:literal) => {
                            nn_tile::<$mr, $nv, $masked>(k, dp, ldd, wp, ldw, ap, op, ldo, act, last)
                        };
                    }
                    for_tile_shape!(go, mr, nv, masked);
                    r += mr;
                }
                c += width;
            }
            r0 = r_end;
        }
    }
}

/// avx2's `sparse_tile` over NV panels of Wᵀ at once (panel j at `wt + j·panel`): `acc[i][j]
/// = Σ_{p ∈ list} x[i, p] · wt_j[p, …]`, then stored into `out`.
#[inline(always)]
unsafe fn sparse_tile<const MR: usize, const NV: usize, const MASKED: bool>(
    list: &[u16],
    x: *const f32,
    ldx: usize,
    wt: *const f32,
    panel: usize,
    out: *mut f32,
    ldo: usize,
    last: __mmask16,
) {
    unsafe {
        prefetch_rows::<MR>(&[out], ldo, 16 * NV);
        let mut acc = [[_mm512_setzero_ps(); NV]; MR];
        for &p in list {
            let p = p as usize;
            broadcast_step::<MR, NV, MASKED>(&mut acc, x.add(p), ldx, wt.add(p * PANEL), panel, last);
        }
        for i in 0..MR {
            for j in 0..NV {
                let op = out.add(i * ldo + 16 * j);
                if MASKED && j == NV - 1 {
                    _mm512_mask_storeu_ps(op, last, acc[i][j]);
                } else {
                    _mm512_storeu_ps(op, acc[i][j]);
                }
            }
        }
    }
}

/// avx2's `matmul_sparse_rows` (same arguments, same results), two panels of Wᵀ at a time.
#[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
pub unsafe fn matmul_sparse_rows(
    m: usize,
    i_dim: usize,
    x: *const f32,
    ldx: usize,
    wt: *const f32,
    o: usize,
    out: *mut f32,
    ldo: usize,
    idx: &[u16],
    starts: &[usize],
) {
    unsafe {
        const MR: usize = super::avx2::NN_MR;
        let panel = i_dim * PANEL;
        let mut c = 0;
        while c < o {
            let width = (o - c).min(2 * PANEL);
            let (nv, masked, last) = lanes(width);
            let wp = wt.add((c / PANEL) * panel);
            for (b, r) in (0..m).step_by(MR).enumerate() {
                let mr = (m - r).min(MR);
                let list = &idx[starts[b]..starts[b + 1]];
                let (xp, op) = (x.add(r * ldx), out.add(r * ldo + c));
                macro_rules! go {
                    ($mr:literal, $nv:literal, $masked:literal) => {
                        sparse_tile::<$mr, $nv, $masked>(list, xp, ldx, wp, panel, op, ldo, last)
                    };
                }
                for_tile_shape!(go, mr, nv, masked);
            }
            c += width;
        }
    }
}
