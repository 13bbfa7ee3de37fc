//! The two register widths the kernels run on, behind one interface: 8 `f32` lanes of a 256-bit
//! register (AVX2 and FMA) and 16 of a 512-bit one (AVX-512F and DQ). The arithmetic the
//! equations are written in is [`Lanes`] (the crate's bottom layer, shared with the scalar
//! code); [`Vector`] adds what only the kernels need: loads and stores, whole or masked, and
//! broadcasts. This file holds the intrinsics of both widths and nothing else; the tiles built
//! on them are written once, in `broadcast.rs`.
//!
//! # Safety
//! Every method needs the CPU features of its width ([`super::avx2::available`],
//! [`super::avx512::available`]) and, for loads and stores, pointers valid for the lanes it
//! touches (a masked one touches only the lanes of its mask).
#![allow(clippy::missing_safety_doc)]

use crate::linalg::Lanes;
use std::arch::x86_64::*;

/// A register of `f32` lanes as the broadcast tiles use it.
pub trait Vector: Lanes<Scalar = f32> {
    /// Lanes per register.
    const WIDTH: usize;
    /// Which lanes a masked load or store touches.
    type Mask: Copy;
    unsafe fn zero() -> Self;
    /// Every lane `*p`.
    unsafe fn broadcast(p: *const f32) -> Self;
    unsafe fn load(p: *const f32) -> Self;
    unsafe fn store(p: *mut f32, v: Self);
    /// Lanes `0..n` (1 ≤ n ≤ WIDTH).
    unsafe fn first(n: usize) -> Self::Mask;
    /// The mask's lanes from `p`, 0 in the others.
    unsafe fn load_masked(p: *const f32, m: Self::Mask) -> Self;
    /// The mask's lanes to `p`; the others are left as they are.
    unsafe fn store_masked(p: *mut f32, m: Self::Mask, v: Self);
}

/// The `Lanes` methods of one register type, from its intrinsics; `$step` is `positive_step`'s
/// body.
macro_rules! vector_lanes {
    ($v:ty, $set1:ident, $add:ident, $sub:ident, $mul:ident, $div:ident, $sqrt:ident,
     $fmadd:ident, $fmsub:ident, $fnmadd:ident, |$a:ident| $step:expr) => {
        impl Lanes for $v {
            type Scalar = f32;
            #[inline(always)]
            unsafe fn splat(x: f32) -> Self {
                unsafe { $set1(x) }
            }
            #[inline(always)]
            unsafe fn add(self, b: Self) -> Self {
                unsafe { $add(self, b) }
            }
            #[inline(always)]
            unsafe fn sub(self, b: Self) -> Self {
                unsafe { $sub(self, b) }
            }
            #[inline(always)]
            unsafe fn mul(self, b: Self) -> Self {
                unsafe { $mul(self, b) }
            }
            #[inline(always)]
            unsafe fn div(self, b: Self) -> Self {
                unsafe { $div(self, b) }
            }
            #[inline(always)]
            unsafe fn square_root(self) -> Self {
                unsafe { $sqrt(self) }
            }
            #[inline(always)]
            unsafe fn mul_add(self, b: Self, c: Self) -> Self {
                unsafe { $fmadd(self, b, c) }
            }
            #[inline(always)]
            unsafe fn mul_sub(self, b: Self, c: Self) -> Self {
                unsafe { $fmsub(self, b, c) }
            }
            #[inline(always)]
            unsafe fn neg_mul_add(self, b: Self, c: Self) -> Self {
                unsafe { $fnmadd(self, b, c) }
            }
            #[inline(always)]
            unsafe fn scaled_square(self, g: Self) -> Self {
                unsafe { $mul(self, $mul(g, g)) }
            }
            #[inline(always)]
            unsafe fn positive_step(self) -> Self {
                let $a = self;
                unsafe { $step }
            }
        }
    };
}

vector_lanes!(
    __m256,
    _mm256_set1_ps,
    _mm256_add_ps,
    _mm256_sub_ps,
    _mm256_mul_ps,
    _mm256_div_ps,
    _mm256_sqrt_ps,
    _mm256_fmadd_ps,
    _mm256_fmsub_ps,
    _mm256_fnmadd_ps,
    |a| _mm256_and_ps(
        _mm256_cmp_ps(a, _mm256_setzero_ps(), _CMP_GT_OQ),
        _mm256_set1_ps(1.0)
    )
);

vector_lanes!(
    __m512,
    _mm512_set1_ps,
    _mm512_add_ps,
    _mm512_sub_ps,
    _mm512_mul_ps,
    _mm512_div_ps,
    _mm512_sqrt_ps,
    _mm512_fmadd_ps,
    _mm512_fmsub_ps,
    _mm512_fnmadd_ps,
    |a| _mm512_maskz_mov_ps(
        _mm512_cmp_ps_mask::<_CMP_GT_OQ>(a, _mm512_setzero_ps()),
        _mm512_set1_ps(1.0)
    )
);

impl Vector for __m256 {
    const WIDTH: usize = 8;
    type Mask = __m256i;
    #[inline(always)]
    unsafe fn zero() -> Self {
        unsafe { _mm256_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn broadcast(p: *const f32) -> Self {
        unsafe { _mm256_broadcast_ss(&*p) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        unsafe { _mm256_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: Self) {
        unsafe { _mm256_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn first(n: usize) -> __m256i {
        unsafe {
            _mm256_cmpgt_epi32(
                _mm256_set1_epi32(n as i32),
                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
            )
        }
    }
    #[inline(always)]
    unsafe fn load_masked(p: *const f32, m: __m256i) -> Self {
        unsafe { _mm256_maskload_ps(p, m) }
    }
    #[inline(always)]
    unsafe fn store_masked(p: *mut f32, m: __m256i, v: Self) {
        unsafe { _mm256_maskstore_ps(p, m, v) }
    }
}

impl Vector for __m512 {
    const WIDTH: usize = 16;
    type Mask = __mmask16;
    #[inline(always)]
    unsafe fn zero() -> Self {
        unsafe { _mm512_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn broadcast(p: *const f32) -> Self {
        unsafe { _mm512_set1_ps(*p) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: Self) {
        unsafe { _mm512_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn first(n: usize) -> __mmask16 {
        ((1u32 << n) - 1) as u16
    }
    #[inline(always)]
    unsafe fn load_masked(p: *const f32, m: __mmask16) -> Self {
        unsafe { _mm512_maskz_loadu_ps(m, p) }
    }
    #[inline(always)]
    unsafe fn store_masked(p: *mut f32, m: __mmask16, v: Self) {
        unsafe { _mm512_mask_storeu_ps(p, m, v) }
    }
}
