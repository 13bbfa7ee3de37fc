//! Hidden-layer nonlinearities `a = f(z)`, each with its derivative written through the cached
//! output `a`, so backward needs nothing but what forward already kept.

use crate::linalg::Real;

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
        match self {
            Activation::Sigmoid => a * (T::ONE - a),
            Activation::Relu => {
                if a > T::ZERO {
                    T::ONE
                } else {
                    T::ZERO
                }
            }
            Activation::Tanh => T::ONE - a * a,
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
