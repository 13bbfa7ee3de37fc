//! The broadcast kernels, written once for both register widths ([`Vector`]: 8 lanes with
//! AVX2, 16 with AVX-512): a tile keeps MR rows × NV vectors of accumulators, and each step
//! broadcasts one scalar per row and multiplies it into NV vectors read from one row of the
//! streamed operand. Two products of a training step and one of the evaluation have this
//! shape:
//! - input gradient, `d_a = (d_z W) ⊙ f'(z)` ([`matmul_nn_dact`]);
//! - weight gradient with the update fused, `d_w = d_zᵀ a`, then `optim::Update::rule`
//!   ([`weight_grad_update`]);
//! - the first layer's forward product over only the non-zero pixels
//!   ([`matmul_sparse_rows`]).
//!
//! `avx2` and `avx512` instantiate each with their register type inside a function compiled
//! for their CPU features (`#[target_feature]`); everything here is `#[inline(always)]` so
//! that it is compiled there, with those features. Each output element is reduced by the same
//! operations in the same order at either width (a 16-lane vector holds what two 8-lane ones
//! did), so both give the same bits (`tests/engine.rs`).
//!
//! # Safety
//! As for `avx2`: the CPU features of `V`, and pointers valid for the shapes and leading
//! dimensions given.
#![allow(
    clippy::too_many_arguments,
    clippy::missing_safety_doc,
    clippy::needless_range_loop
)]

use super::simd::Vector;
use super::tiling::{Act, L2_BUDGET, NN_MR, PANEL, PanelLayout, TN_MR, Update, nonzero_rows, prefetch_rows};
use crate::nn::Activation;
use std::ops::Range;

/// Vectors per tile row: a tile is `NV · V::WIDTH` columns wide.
const NV: usize = 2;

/// Calls the local macro `$go!(MR, NV, MASKED)` with the compile-time tile shape matching the
/// run-time `mr` (1..=6 rows), `nv` (1..=2 vectors) and `masked` (last vector partial).
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

/// A run of `width` (≤ NV · WIDTH) columns as the tiles see it: how many vectors, whether the
/// last is partial, and the lane mask of the last.
#[inline(always)]
unsafe fn lanes<V: Vector>(width: usize) -> (usize, bool, V::Mask) {
    let masked = !width.is_multiple_of(V::WIDTH);
    let n = if masked { width % V::WIDTH } else { V::WIDTH };
    (width.div_ceil(V::WIDTH), masked, unsafe { V::first(n) })
}

/// Where vector j of a tile row starts, for an operand stored in panels of [`PANEL`] columns
/// that lie `panel` floats apart (`panel = PANEL` for plain contiguous rows).
#[inline(always)]
fn vector_offset<V: Vector>(j: usize, panel: usize) -> usize {
    (V::WIDTH * j / PANEL) * panel + (V::WIDTH * j) % PANEL
}

/// Loads one vector, only the lanes of `m` when `partial`.
#[inline(always)]
unsafe fn load<V: Vector>(p: *const f32, partial: bool, m: V::Mask) -> V {
    unsafe { if partial { V::load_masked(p, m) } else { V::load(p) } }
}

/// Stores one vector, only the lanes of `m` when `partial`.
#[inline(always)]
unsafe fn store<V: Vector>(p: *mut f32, x: V, partial: bool, m: V::Mask) {
    unsafe {
        if partial {
            V::store_masked(p, m, x)
        } else {
            V::store(p, x)
        }
    }
}

/// One step of every broadcast tile: load NV vectors of `row` (vector j at
/// [`vector_offset`]`(j, panel)`, the last masked when `MASKED`), broadcast `x[i·x_row]` for
/// each of MR rows, and accumulate the products into `acc`.
#[inline(always)]
unsafe fn broadcast_step<V: Vector, const MR: usize, const NV: usize, const MASKED: bool>(
    acc: &mut [[V; NV]; MR],
    x: *const f32,
    x_row: usize,
    row: *const f32,
    panel: usize,
    last: V::Mask,
) {
    unsafe {
        let mut rv = [V::zero(); NV];
        for j in 0..NV {
            let partial = MASKED && j == NV - 1;
            rv[j] = load(row.add(vector_offset::<V>(j, panel)), partial, last);
        }
        for i in 0..MR {
            let xv = V::broadcast(x.add(i * x_row));
            for j in 0..NV {
                acc[i][j] = xv.mul_add(rv[j], acc[i][j]);
            }
        }
    }
}

/// f'(z) from the cached output a = f(z): `nn::Activation::df_lanes`, and 1 for the identity.
#[inline(always)]
unsafe fn dact<V: Vector>(act: Act, a: V) -> V {
    unsafe {
        match act {
            Act::Identity => V::splat(1.0),
            Act::Sigmoid => Activation::Sigmoid.df_lanes(a),
            Act::Relu => Activation::Relu.df_lanes(a),
            Act::Tanh => Activation::Tanh.df_lanes(a),
        }
    }
}

/// Input-gradient tile: `acc[r][j] = Σ_p d[r, p] · w[p, c + j·WIDTH…]` for MR rows, NV
/// vectors (the last one masked when `MASKED`), then `out = acc ⊙ f'(a)`.
#[inline(always)]
unsafe fn nn_tile<V: Vector, const MR: usize, const NV: usize, const MASKED: bool>(
    k: usize,
    d: *const f32,
    ldd: usize,
    w: *const f32,
    ldw: usize,
    a: *const f32,
    out: *mut f32,
    ldo: usize,
    act: Act,
    last: V::Mask,
) {
    unsafe {
        // The epilogue's rows of a and out.
        prefetch_rows::<MR>(&[a, out], ldo, V::WIDTH * NV);
        let mut acc = [[V::zero(); NV]; MR];
        for p in 0..k {
            broadcast_step::<V, MR, NV, MASKED>(&mut acc, d.add(p), ldd, w.add(p * ldw), PANEL, last);
        }
        for i in 0..MR {
            for j in 0..NV {
                let partial = MASKED && j == NV - 1;
                let (ap, op) = (a.add(i * ldo + V::WIDTH * j), out.add(i * ldo + V::WIDTH * j));
                let da = dact(act, load::<V>(ap, partial, last));
                store(op, acc[i][j].mul(da), partial, last);
            }
        }
    }
}

/// `out[r, c] = (Σ_p d[r, p] · w[p, c]) · f'(a[r, c])` for rows `0..m`, columns `cols`.
/// `a` and `out` share the leading dimension `ldo`.
#[inline(always)]
pub unsafe fn matmul_nn_dact<V: Vector>(
    m: usize,
    k: usize,
    d: *const f32,
    ldd: usize,
    w: *const f32,
    ldw: usize,
    a: *const f32,
    out: *mut f32,
    ldo: usize,
    cols: Range<usize>,
    act: Act,
) {
    unsafe {
        const MR: usize = NN_MR;
        // Rows in blocks whose rows of `d` fit in L2 together, so a large batch does not
        // stream all of `d` again for every column panel.
        let block = (L2_BUDGET / (4 * k.max(1))).max(MR) / MR * MR;
        let mut r0 = 0;
        while r0 < m {
            let r_end = (r0 + block).min(m);
            let mut c = cols.start;
            while c < cols.end {
                let width = (cols.end - c).min(NV * V::WIDTH);
                let (nv, masked, last) = lanes::<V>(width);
                let mut r = r0;
                while r < r_end {
                    let mr = (r_end - r).min(MR);
                    let (dp, wp, ap, op) =
                        (d.add(r * ldd), w.add(c), a.add(r * ldo + c), out.add(r * ldo + c));
                    macro_rules! go {
                        ($mr:literal, $nv:literal, $masked:literal) => {
                            nn_tile::<V, $mr, $nv, $masked>(k, dp, ldd, wp, ldw, ap, op, ldo, act, last)
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

/// Weight-gradient tile with the update fused: for MR rows `o` of W and NV vectors of columns,
/// `d_w[o, c] = Σ_b d[b, o] · a[b, c]` (d[b, o] at `d[b·d_step + o·d_row]`; vector j of `a`'s
/// row b at `a + b·lda +` [`vector_offset`]`(j, a_panel)`), then `optim::Update::rule` on `w`
/// and its state `v` (and `s` for Adam; unused otherwise). With `SKIP`, the sums run over only
/// the samples in `list` (those whose `a` is not zero in these columns: same bits).
#[inline(always)]
unsafe fn tn_tile<V: Vector, const MR: usize, const NV: usize, const MASKED: bool, const SKIP: bool>(
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
    last: V::Mask,
) {
    unsafe {
        // The epilogue's rows of W and its state, requested now so that they arrive while the
        // sums are formed: at large batches a tile covers a short run of each row, too short
        // for the hardware prefetcher to follow.
        let adam = up.method.has_second_moment();
        prefetch_rows::<MR>(&[w, v, if adam { s } else { w }], ldw, V::WIDTH * NV);
        // acc[i][j] = Σ_b d[b, i] · a[b, j…]
        let mut acc = [[V::zero(); NV]; MR];
        macro_rules! sample {
            ($b:expr) => {
                let (x, row) = (d.add($b * d_step), a.add($b * lda));
                broadcast_step::<V, MR, NV, MASKED>(&mut acc, x, d_row, row, a_panel, last);
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
        for i in 0..MR {
            for j in 0..NV {
                let off = i * ldw + V::WIDTH * j;
                let partial = MASKED && j == NV - 1;
                let (wv, vv) = (
                    load::<V>(w.add(off), partial, last),
                    load::<V>(v.add(off), partial, last),
                );
                // Two branches, so that the compiler keeps SGD's and Nesterov's epilogues free
                // of `s` (which may be null for them).
                if adam {
                    let sv = load::<V>(s.add(off), partial, last);
                    let [wn, vn, sn] = up.rule(wv, acc[i][j], vv, sv, true);
                    store(s.add(off), sn, partial, last);
                    store(v.add(off), vn, partial, last);
                    store(w.add(off), wn, partial, last);
                } else {
                    let [wn, vn, _] = up.rule(wv, acc[i][j], vv, V::zero(), true);
                    store(v.add(off), vn, partial, last);
                    store(w.add(off), wn, partial, last);
                }
            }
        }
    }
}

/// For rows `rows` of W (O, I): `d_w = d_zᵀ a` over `batch` samples, then the update of those
/// rows of `w` and `v` (leading dimension `i_dim`). `d` is d_z, its element (b, o) at
/// `d[b·d_step + o·d_row]`: `(O, 1)` as stored (B, O), or `(1, B)` packed as (O, B), which
/// large batches read faster (six contiguous streams instead of a stride of O floats). `a` is
/// (B, I) as stored or packed in panels, as `layout` says. The sums are the same, in the same
/// order, whatever the layouts. With `nz`, the map of `a`'s rows by `avx2::nonzero_blocks`,
/// each tile sums over only the samples whose `a` is not zero in its columns (same bits).
#[inline(always)]
pub unsafe fn weight_grad_update<V: Vector>(
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
    rows: Range<usize>,
    up: &Update,
    nz: Option<&[u64]>,
) {
    unsafe {
        const MR: usize = TN_MR;
        // Columns in blocks whose panel of `a` (batch × block) fits in L2; within a block, rows
        // outer and columns inner, so each tile row of W and v is swept from start to end, a
        // pattern the hardware prefetcher follows. (Columns outer over the whole width made the
        // update's loads of W and v miss the cache; rows outer over the whole width streams all
        // of `a` once per row tile, which only fits L2 for small batches.) At batch 64 the block
        // is the whole width.
        let wide = NV * V::WIDTH;
        let block = ((L2_BUDGET / (4 * batch.max(1))) / wide * wide).max(wide);
        // Skipping zeros works on panels: the non-zero lists are per panel.
        let step = if nz.is_some() { PANEL } else { wide };
        // Tiles start at multiples of `step`: tile columns c… read list c / step.
        let (mut idx, mut starts) = (Vec::new(), Vec::new());
        if let Some(nz) = nz {
            nonzero_rows(nz, batch, i_dim, step, &mut idx, &mut starts);
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
                    let (nv, masked, last) = lanes::<V>(width);
                    let off = r * i_dim + c;
                    let ap = a.add((c / PANEL) * layout.panel);
                    let (dp, wp, vp) = (d.add(r * d_row), w.add(off), v.add(off));
                    // Only Adam reads and writes `s`; for the others it may be null.
                    let sp = if s.is_null() { s } else { s.add(off) };
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
                            tn_tile::<V, $mr, $nv, $masked, $skip>(
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

/// Product tile over a list of rows of Wᵀ in panels (`wt`, rows [`PANEL`] floats apart, panels
/// `panel` floats apart): `acc[i][j] = Σ_{p ∈ list} x[i, p] · wt[p, j…]`, then stored into
/// `out` (MR rows, NV vectors, the last masked when `MASKED`).
#[inline(always)]
unsafe fn sparse_tile<V: Vector, const MR: usize, const NV: usize, const MASKED: bool>(
    list: &[u16],
    x: *const f32,
    ldx: usize,
    wt: *const f32,
    panel: usize,
    out: *mut f32,
    ldo: usize,
    last: V::Mask,
) {
    unsafe {
        // The rows of `out` this tile stores, requested while the sums are formed.
        prefetch_rows::<MR>(&[out], ldo, V::WIDTH * NV);
        // The same step as the dense broadcast kernels, over the listed rows of Wᵀ only.
        let mut acc = [[V::zero(); NV]; MR];
        for &p in list {
            let p = p as usize;
            broadcast_step::<V, MR, NV, MASKED>(&mut acc, x.add(p), ldx, wt.add(p * PANEL), panel, last);
        }
        for i in 0..MR {
            for j in 0..NV {
                store(
                    out.add(i * ldo + V::WIDTH * j),
                    acc[i][j],
                    MASKED && j == NV - 1,
                    last,
                );
            }
        }
    }
}

/// `out[r, c] = Σ_p x[r, p] · wt[p, c]` for rows `0..m` (of `i_dim` values) and all `o`
/// columns, skipping the columns p of `x` that are zero in a whole block of [`NN_MR`] rows
/// (the lists of `avx2::nonzero_columns` with `mr = NN_MR`). For inputs that are mostly exact
/// zeros, as MNIST's pixels are (81%), this skips most of the first layer's work. `wt` is Wᵀ,
/// (I, O), in panels of [`PANEL`] columns, each a contiguous (I, PANEL) block (the last padded
/// with zeros), so that the listed rows of a panel lie close together.
#[inline(always)]
pub unsafe fn matmul_sparse_rows<V: Vector>(
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
        const MR: usize = NN_MR;
        let panel = i_dim * PANEL;
        let mut c = 0;
        // Column panels outer: a panel of Wᵀ (I × PANEL floats) stays in cache for every row.
        while c < o {
            let width = (o - c).min(NV * V::WIDTH);
            let (nv, masked, last) = lanes::<V>(width);
            let wp = wt.add((c / PANEL) * panel);
            for (b, r) in (0..m).step_by(MR).enumerate() {
                let mr = (m - r).min(MR);
                let list = &idx[starts[b]..starts[b + 1]];
                let (xp, op) = (x.add(r * ldx), out.add(r * ldo + c));
                macro_rules! go {
                    ($mr:literal, $nv:literal, $masked:literal) => {
                        sparse_tile::<V, $mr, $nv, $masked>(list, xp, ldx, wp, panel, op, ldo, last)
                    };
                }
                for_tile_shape!(go, mr, nv, masked);
            }
            c += width;
        }
    }
}

/// The four matrix-product kernels of one register width `$v`, each compiled for `$features`
/// (a `#[target_feature]` function into which the generic code above is inlined); `$forward`
/// is the forward product's driver for that width (`avx2::matmul_nt_tiles`). `avx2` and
/// `avx512` each call this once.
macro_rules! entry_points {
    ($v:ty, $features:literal, $forward:expr) => {
        /// `out[r, c] = Σ_p a[r, p] · w[c, p]` for rows `0..m` and columns `cols` (rows of
        /// `w`). With `nz`, the map of `a`'s rows by `avx2::nonzero_blocks`, blocks of zeros
        /// are skipped (same bits).
        #[target_feature(enable = $features)]
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
            unsafe { $forward(m, k, a, lda, w, ldw, cols, out, ldo, nz) }
        }

        /// `out[r, c] = (Σ_p d[r, p] · w[p, c]) · f'(a[r, c])` for rows `0..m`, columns
        /// `cols`; `a` and `out` share the leading dimension `ldo` (`broadcast::matmul_nn_dact`).
        #[target_feature(enable = $features)]
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
            act: $crate::kernels::tiling::Act,
        ) {
            unsafe {
                $crate::kernels::broadcast::matmul_nn_dact::<$v>(m, k, d, ldd, w, ldw, a, out, ldo, cols, act)
            }
        }

        /// For rows `rows` of W (O, I): `d_w = d_zᵀ a` over `batch` samples, then the update of
        /// those rows of `w` and `v` (`broadcast::weight_grad_update` says how `d`, `a` and
        /// `nz` are read).
        #[target_feature(enable = $features)]
        pub unsafe fn weight_grad_update(
            batch: usize,
            i_dim: usize,
            d: *const f32,
            d_step: usize,
            d_row: usize,
            a: *const f32,
            layout: $crate::kernels::tiling::PanelLayout,
            w: *mut f32,
            v: *mut f32,
            s: *mut f32,
            rows: std::ops::Range<usize>,
            up: &$crate::kernels::tiling::Update,
            nz: Option<&[u64]>,
        ) {
            unsafe {
                $crate::kernels::broadcast::weight_grad_update::<$v>(
                    batch, i_dim, d, d_step, d_row, a, layout, w, v, s, rows, up, nz,
                )
            }
        }

        /// `out[r, c] = Σ_p x[r, p] · wt[p, c]` for rows `0..m` and all `o` columns, over only
        /// the columns of `x` that `avx2::nonzero_columns` lists
        /// (`broadcast::matmul_sparse_rows`).
        #[target_feature(enable = $features)]
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
                $crate::kernels::broadcast::matmul_sparse_rows::<$v>(
                    m, i_dim, x, ldx, wt, o, out, ldo, idx, starts,
                )
            }
        }
    };
}
pub(crate) use entry_points;
