//! The bottom layer: the scalar type the network is computed in ([`Real`]: f32 for training,
//! f64 for the finite-difference gradient check) and the general matrix product ([`gemm`],
//! through `matrixmultiply`) that the readable `nn` code is written with. Everything here works
//! on flat row-major slices whose shapes the caller passes explicitly. Nothing here knows about
//! networks, and nothing here imports from the rest of the crate.

use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

/// A floating-point scalar the network can be computed in (f32 or f64); as [`Lanes`], one lane.
pub trait Real:
    Copy
    + Debug
    + Default
    + PartialOrd
    + Send
    + Sync
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + Lanes<Scalar = Self>
{
    const ZERO: Self;
    const ONE: Self;
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn tanh(self) -> Self;
    fn sqrt(self) -> Self;
    fn is_finite(self) -> bool;

    /// `c = a·b + beta·c` for row-major storage given by explicit strides; see [`gemm`].
    ///
    /// # Safety
    /// The strides must describe views that lie inside the slices passed to [`gemm`].
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_strided(
        m: usize,
        k: usize,
        n: usize,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );
}

impl Real for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn exp(self) -> Self {
        f32::exp(self)
    }
    fn ln(self) -> Self {
        f32::ln(self)
    }
    fn tanh(self) -> Self {
        f32::tanh(self)
    }
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }
    unsafe fn gemm_strided(
        m: usize,
        k: usize,
        n: usize,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    ) {
        unsafe {
            matrixmultiply::sgemm(m, k, n, 1.0, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc);
        }
    }
}

impl Real for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn from_f64(x: f64) -> Self {
        x
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn exp(self) -> Self {
        f64::exp(self)
    }
    fn ln(self) -> Self {
        f64::ln(self)
    }
    fn tanh(self) -> Self {
        f64::tanh(self)
    }
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
    unsafe fn gemm_strided(
        m: usize,
        k: usize,
        n: usize,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    ) {
        unsafe {
            matrixmultiply::dgemm(m, k, n, 1.0, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc);
        }
    }
}

/// The arithmetic that the update rules ([`crate::optim::Update::rule`]) and the activation
/// derivatives ([`crate::nn::Activation::df_lanes`]) are written in, on one value (`f32`,
/// `f64`) or on a SIMD vector of them (the fast path's 256- and 512-bit registers, implemented
/// in `kernels`). Each of those equations is one generic function over `Lanes`, so the readable
/// scalar code and the vector kernels evaluate the same expression, operation for operation.
///
/// Where scalar and vector lanes round differently, the difference is in these primitives,
/// never in an equation:
/// - vector lanes fuse [`mul_add`](Lanes::mul_add), [`mul_sub`](Lanes::mul_sub) and
///   [`neg_mul_add`](Lanes::neg_mul_add) into one rounding (FMA); scalar lanes round the
///   product first, as the plain expression `a * b + c` does;
/// - [`scaled_square`](Lanes::scaled_square) (Adam's `(1 − β₂) g²`) is `c·(g·g)` on vectors
///   and `(c·g)·g` on scalars.
///
/// Both are kept so that every model stays bit-identical to the one the same kernel trained
/// before the rules were shared.
///
/// # Safety
/// A vector implementation needs its CPU features (AVX2 and FMA, or AVX-512F); its methods are
/// `unsafe` for that reason and are sound only where those features are present. Scalar lanes
/// need nothing.
#[allow(clippy::missing_safety_doc)] // the trait's own "# Safety" covers every method
pub trait Lanes: Copy {
    /// The type of one lane.
    type Scalar: Real;
    /// Every lane `x`.
    unsafe fn splat(x: Self::Scalar) -> Self;
    unsafe fn add(self, b: Self) -> Self;
    unsafe fn sub(self, b: Self) -> Self;
    unsafe fn mul(self, b: Self) -> Self;
    unsafe fn div(self, b: Self) -> Self;
    unsafe fn square_root(self) -> Self;
    /// `self·b + c`
    unsafe fn mul_add(self, b: Self, c: Self) -> Self;
    /// `self·b − c`
    unsafe fn mul_sub(self, b: Self, c: Self) -> Self;
    /// `c − self·b`
    unsafe fn neg_mul_add(self, b: Self, c: Self) -> Self;
    /// `c·g²` (`self` is c)
    unsafe fn scaled_square(self, g: Self) -> Self;
    /// 1 in the lanes where `self > 0`, 0 elsewhere (NaN included).
    unsafe fn positive_step(self) -> Self;
}

macro_rules! scalar_lanes {
    ($t:ty) => {
        impl Lanes for $t {
            type Scalar = $t;
            #[inline(always)]
            unsafe fn splat(x: $t) -> $t {
                x
            }
            #[inline(always)]
            unsafe fn add(self, b: $t) -> $t {
                self + b
            }
            #[inline(always)]
            unsafe fn sub(self, b: $t) -> $t {
                self - b
            }
            #[inline(always)]
            unsafe fn mul(self, b: $t) -> $t {
                self * b
            }
            #[inline(always)]
            unsafe fn div(self, b: $t) -> $t {
                self / b
            }
            #[inline(always)]
            unsafe fn square_root(self) -> $t {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            unsafe fn mul_add(self, b: $t, c: $t) -> $t {
                self * b + c
            }
            #[inline(always)]
            unsafe fn mul_sub(self, b: $t, c: $t) -> $t {
                self * b - c
            }
            #[inline(always)]
            unsafe fn neg_mul_add(self, b: $t, c: $t) -> $t {
                c - self * b
            }
            #[inline(always)]
            unsafe fn scaled_square(self, g: $t) -> $t {
                self * g * g
            }
            #[inline(always)]
            unsafe fn positive_step(self) -> $t {
                if self > 0.0 { 1.0 } else { 0.0 }
            }
        }
    };
}
scalar_lanes!(f32);
scalar_lanes!(f64);

/// Whether a stored matrix is used as it is or transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// The stored row-major (rows, cols) matrix as it is.
    N,
    /// The stored row-major matrix read transposed: no copy, only swapped strides.
    T,
}

/// `c (m, n) = op(a) (m, k) · op(b) (k, n) + beta · c`, all stored row-major and contiguous.
///
/// With `Op::T` the stored matrix has the transposed shape ((k, m) for `a`, (n, k) for `b`)
/// and is read through swapped strides, so no transpose is ever materialised.
#[allow(clippy::too_many_arguments)]
pub fn gemm<T: Real>(
    m: usize,
    k: usize,
    n: usize,
    a: &[T],
    op_a: Op,
    b: &[T],
    op_b: Op,
    beta: T,
    c: &mut [T],
) {
    assert!(
        a.len() >= m * k,
        "gemm: a has {} elements, needs {}",
        a.len(),
        m * k
    );
    assert!(
        b.len() >= k * n,
        "gemm: b has {} elements, needs {}",
        b.len(),
        k * n
    );
    assert!(
        c.len() >= m * n,
        "gemm: c has {} elements, needs {}",
        c.len(),
        m * n
    );
    if m == 0 || n == 0 {
        return;
    }
    let (rsa, csa) = match op_a {
        Op::N => (k as isize, 1),
        Op::T => (1, m as isize),
    };
    let (rsb, csb) = match op_b {
        Op::N => (n as isize, 1),
        Op::T => (1, k as isize),
    };
    // SAFETY: the asserts above guarantee that every (row, col) reached through these strides
    // lies inside the slices, and `c` is borrowed mutably so it aliases nothing.
    unsafe {
        T::gemm_strided(
            m,
            k,
            n,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// Tell the matrix-product backend how many threads to use. Must be called before the first
/// product of the process (the backend reads it once); later calls have no effect.
pub fn set_threads(threads: usize) {
    // SAFETY: called from `main` before any other thread of ours exists.
    unsafe { std::env::set_var("MATMUL_NUM_THREADS", threads.to_string()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, k: usize, n: usize, a: &[f64], ta: Op, b: &[f64], tb: Op) -> Vec<f64> {
        let at = |i: usize, p: usize| {
            if ta == Op::N { a[i * k + p] } else { a[p * m + i] }
        };
        let bt = |p: usize, j: usize| {
            if tb == Op::N { b[p * n + j] } else { b[j * k + p] }
        };
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| at(i, p) * bt(p, j)).sum();
            }
        }
        c
    }

    #[test]
    fn gemm_matches_the_definition_for_every_transpose() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f64> = (0..m * k).map(|x| (x as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..k * n).map(|x| (x as f64 * 0.11).cos()).collect();
        for ta in [Op::N, Op::T] {
            for tb in [Op::N, Op::T] {
                let mut c = vec![1.0; m * n];
                gemm(m, k, n, &a, ta, &b, tb, 0.0, &mut c);
                let want = naive(m, k, n, &a, ta, &b, tb);
                for (x, y) in c.iter().zip(&want) {
                    assert!((x - y).abs() < 1e-12, "{ta:?}{tb:?}: {x} vs {y}");
                }
            }
        }
    }
}
