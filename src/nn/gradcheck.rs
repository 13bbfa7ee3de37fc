//! Finite-difference gradient checking in f64: the evidence that every backward pass in this
//! crate is the derivative of its forward pass.
//!
//! Each analytic gradient entry `g` is compared with the central difference
//! `n = (E(θ + h) − E(θ − h)) / 2h`. The reported error is
//! `|g − n| / max(|g|, |n|, FLOOR)`: relative for ordinary entries, absolute (scaled by `FLOOR`)
//! for entries so close to zero that a relative error would only measure rounding noise.

use super::{Mlp, Workspace};

/// Central-difference step. In f64 the truncation error (∝ h²) and the rounding error
/// (∝ ε·|E|/h) are both about 1e-10 here.
pub const STEP: f64 = 1e-5;
/// Gradient entries smaller than this are compared absolutely; see the module comment.
pub const FLOOR: f64 = 1e-3;
/// The tolerance the tests hold every check to.
pub const TOLERANCE: f64 = 1e-6;

#[derive(Clone, Debug)]
pub struct Report {
    pub name: String,
    pub entries: usize,
    pub max_rel_error: f64,
    pub max_abs_error: f64,
    /// Index of the entry with the largest error.
    pub worst: usize,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.max_rel_error <= TOLERANCE
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<44} {:>5} entries  max rel err {:.2e}  max abs err {:.2e}  (worst #{})  {}",
            self.name,
            self.entries,
            self.max_rel_error,
            self.max_abs_error,
            self.worst,
            if self.passed() { "ok" } else { "FAIL" }
        )
    }
}

pub fn relative_error(analytic: f64, numeric: f64) -> f64 {
    (analytic - numeric).abs() / analytic.abs().max(numeric.abs()).max(FLOOR)
}

/// Compare `analytic = ∂E/∂θ` with central differences of `loss` around `theta`.
pub fn check(name: &str, theta: &[f64], mut loss: impl FnMut(&[f64]) -> f64, analytic: &[f64]) -> Report {
    assert_eq!(theta.len(), analytic.len());
    let mut t = theta.to_vec();
    let mut report = Report {
        name: name.to_string(),
        entries: theta.len(),
        max_rel_error: 0.0,
        max_abs_error: 0.0,
        worst: 0,
    };
    for i in 0..t.len() {
        let orig = t[i];
        t[i] = orig + STEP;
        let plus = loss(&t);
        t[i] = orig - STEP;
        let minus = loss(&t);
        t[i] = orig;
        let numeric = (plus - minus) / (2.0 * STEP);
        let rel = relative_error(analytic[i], numeric);
        // A NaN error counts as infinitely bad.
        let rel = if rel.is_nan() { f64::INFINITY } else { rel };
        if rel > report.max_rel_error {
            report.max_rel_error = rel;
            report.worst = i;
        }
        report.max_abs_error = report.max_abs_error.max((analytic[i] - numeric).abs());
    }
    report
}

/// The batch-mean loss of `mlp` with its parameters replaced by `params`.
pub fn mlp_mean_loss(mlp: &Mlp<f64>, params: &[f64], x: &[f64], labels: &[u8]) -> f64 {
    let mut net = mlp.clone();
    net.params.copy_from_slice(params);
    let mut ws = Workspace::new(&net.sizes, labels.len());
    ws.input_mut(labels.len()).copy_from_slice(x);
    net.forward_loss(&mut ws, labels) / labels.len() as f64
}

/// The analytic gradient of the batch-mean loss, by [`Mlp::backward`].
pub fn mlp_gradient(mlp: &Mlp<f64>, x: &[f64], labels: &[u8]) -> Vec<f64> {
    let n = labels.len();
    let mut ws = Workspace::new(&mlp.sizes, n);
    ws.input_mut(n).copy_from_slice(x);
    mlp.forward_loss(&mut ws, labels);
    let mut grads = vec![0.0; mlp.params.len()];
    mlp.backward(&mut ws, labels, 1.0 / n as f64, &mut grads);
    grads
}

/// Check `analytic` (any gradient of the whole network's batch-mean loss, e.g. from
/// [`mlp_gradient`]) against finite differences of [`mlp_mean_loss`].
pub fn check_mlp(name: &str, mlp: &Mlp<f64>, x: &[f64], labels: &[u8], analytic: &[f64]) -> Report {
    check(name, &mlp.params, |p| mlp_mean_loss(mlp, p, x, labels), analytic)
}
