//! Hidden-layer nonlinearities `a = f(z)`, each with its derivative written through the cached
//! output `a`, so backward needs nothing but what forward already kept.

use crate::linalg::{Lanes, Real};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `f(z) = 1 / (1 + e^{−z})`, `f'(z) = a (1 − a)`.
    Sigmoid,
    /// `f(z) = max(0, z)`, `f'(z) = 1 if a > 0 else 0`. At z = 0 we take f'(0) = 0, as PyTorch
    /// does; it only matters on a set of measure zero.
    Relu,
    /// `f(z) = tanh z`, `f'(z) = 1 − a²`.
    Tanh,
}

impl Activation {
    pub fn f<T: Real>(self, z: T) -> T {
        match self {
            // For very negative z, e^{−z} overflows to +inf and the result is exactly 0: fine.
            Activation::Sigmoid => T::ONE / (T::ONE + (-z).exp()),
            Activation::Relu => {
                if z > T::ZERO {
                    z
                } else {
                    T::ZERO
                }
            }
            Activation::Tanh => z.tanh(),
        }
    }

    /// `f'(z)`, computed from the cached output `a = f(z)`.
    pub fn df<T: Real>(self, a: T) -> T {
        // SAFETY: scalar lanes need no CPU feature.
        unsafe { self.df_lanes(a) }
    }

    /// [`df`](Self::df) on lanes of any width: the one definition of each derivative, which
    /// the fast path's input-gradient kernels also evaluate, 8 or 16 lanes at a time.
    ///
    /// # Safety
    /// The CPU must have the features of `L` ([`Lanes`]).
    #[inline(always)]
    pub unsafe fn df_lanes<L: Lanes>(self, a: L) -> L {
        unsafe {
            let one = L::splat(L::Scalar::ONE);
            match self {
                // a (1 − a)
                Activation::Sigmoid => a.mul(one.sub(a)),
                // 1 if a > 0 else 0
                Activation::Relu => a.positive_step(),
                // 1 − a²
                Activation::Tanh => a.neg_mul_add(a, one),
            }
        }
    }

    /// In place: `z` becomes `a = f(z)`. Backward reads this `a`, so it must stay untouched
    /// until then.
    pub fn forward<T: Real>(self, z: &mut [T]) {
        for v in z {
            *v = self.f(*v);
        }
    }

    /// In place: `d_a` becomes `d_z = d_a ⊙ f'(z)` (the seed's `(δ w) f'(z)` factor).
    pub fn backward<T: Real>(self, a: &[T], d_a: &mut [T]) {
        assert_eq!(a.len(), d_a.len());
        for (d, &a) in d_a.iter_mut().zip(a) {
            *d *= self.df(a);
        }
    }
}

crate::named_enum!(Activation, "activation", {
    Activation::Sigmoid => "sigmoid",
    Activation::Relu => "relu",
    Activation::Tanh => "tanh",
});
