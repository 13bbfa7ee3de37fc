//! Finite-difference gradient checks in f64 for every piece of the backward pass: each
//! activation, the linear layer, softmax + cross-entropy, and whole networks. Prints one line per
//! check with its maximum relative error, and proves that the check can fail by breaking the
//! backward pass on purpose (dropping f′).
//!
//! This file is its own test harness (`harness = false` in Cargo.toml) so that its report is
//! printed on every run, not only when something fails.

use mnist_mlp::nn::gradcheck::{self, Report, TOLERANCE, check, check_mlp, mlp_gradient};
use mnist_mlp::nn::{Activation, Init, Linear, Mlp, Workspace, loss};
use mnist_mlp::rng::Rng;

const ACTIVATIONS: [Activation; 3] = [Activation::Sigmoid, Activation::Relu, Activation::Tanh];

fn random(rng: &mut Rng, n: usize, scale: f64) -> Vec<f64> {
    (0..n).map(|_| rng.uniform(-scale, scale)).collect()
}

/// Values kept away from ReLU's kink at 0, so a ±h step never crosses it.
fn away_from_zero(rng: &mut Rng, n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let v = rng.uniform(0.1, 2.0);
            if rng.next_f64() < 0.5 { -v } else { v }
        })
        .collect()
}

/// `E = Σ r ⊙ f(z)` has `∂E/∂z = r ⊙ f'(z)`: checks `Activation::backward`.
fn activation_check(act: Activation) -> Report {
    let mut rng = Rng::new(11, 0);
    let z = away_from_zero(&mut rng, 40);
    let r = random(&mut rng, 40, 1.0);
    let loss = |z: &[f64]| -> f64 {
        let mut a = z.to_vec();
        act.forward(&mut a);
        a.iter().zip(&r).map(|(a, r)| a * r).sum()
    };
    let mut a = z.clone();
    act.forward(&mut a);
    let mut d = r.clone();
    act.backward(&a, &mut d);
    check(&format!("activation {act}: d_z = d_a ⊙ f'(a)"), &z, loss, &d)
}

/// `E = Σ r ⊙ (a Wᵀ + b)`: checks `d_w`, `d_b` and `d_a` of `Linear::backward`.
fn linear_checks() -> Vec<Report> {
    let mut rng = Rng::new(12, 0);
    let (batch, i, o) = (4, 6, 5);
    let layer = Linear {
        fan_in: i,
        fan_out: o,
        w: 0,
        b: o * i,
    };
    let params = random(&mut rng, o * i + o, 1.0);
    let a = random(&mut rng, batch * i, 1.0);
    let r = random(&mut rng, batch * o, 1.0);
    let forward_loss = |params: &[f64], a: &[f64]| -> f64 {
        let mut z = vec![0.0; batch * o];
        layer.forward(params, a, &mut z, batch);
        z.iter().zip(&r).map(|(z, r)| z * r).sum()
    };
    let mut grads = vec![0.0; params.len()];
    let mut d_a = vec![0.0; batch * i];
    layer.backward(&params, &a, &r, &mut grads, Some(&mut d_a), batch);
    vec![
        check(
            "linear: d_w = d_zᵀ a, d_b = Σ d_z",
            &params,
            |p| forward_loss(p, &a),
            &grads,
        ),
        check("linear: d_a = d_z W", &a, |a| forward_loss(&params, a), &d_a),
    ]
}

/// Mean cross-entropy of softmax(z): checks `δ = (ŷ − y)/N`.
fn loss_check() -> Report {
    let mut rng = Rng::new(13, 0);
    let (batch, k) = (5, 10);
    let z = random(&mut rng, batch * k, 3.0);
    let labels: Vec<u8> = (0..batch).map(|n| (n * 3 % k) as u8).collect();
    let mean_loss = |z: &[f64]| -> f64 {
        let mut z = z.to_vec();
        loss::softmax_cross_entropy(&mut z, &labels, k) / batch as f64
    };
    let mut y_hat = z.clone();
    loss::softmax_cross_entropy(&mut y_hat, &labels, k);
    let mut d_z = vec![0.0; batch * k];
    loss::backward(&y_hat, &labels, k, 1.0 / batch as f64, &mut d_z);
    check("softmax + cross-entropy: d_z = (ŷ − y)/N", &z, mean_loss, &d_z)
}

struct Problem {
    mlp: Mlp<f64>,
    x: Vec<f64>,
    labels: Vec<u8>,
}

/// A small network 12 → 7 → 5 → 10 with inputs in [0, 1] like pixels.
fn problem(act: Activation, seed: u64) -> Problem {
    let mut rng = Rng::new(seed, 0);
    let mut mlp = Mlp::<f64>::new(&[12, 7, 5, 10], act);
    mlp.init(Init::Xavier, &mut rng);
    // Non-zero biases, so that the bias gradients are exercised at a generic point.
    for layer in mlp.layers.clone() {
        for b in &mut mlp.params[layer.b_range()] {
            *b = rng.uniform(-0.5, 0.5);
        }
    }
    let batch = 4;
    let x = (0..batch * 12).map(|_| rng.next_f64()).collect();
    let labels = (0..batch).map(|_| rng.below(10) as u8).collect();
    Problem { mlp, x, labels }
}

fn network_check(act: Activation) -> Report {
    let p = problem(act, 14);
    let grads = mlp_gradient(&p.mlp, &p.x, &p.labels);
    check_mlp(
        &format!("network 12-7-5-10 {act}: every W and b"),
        &p.mlp,
        &p.x,
        &p.labels,
        &grads,
    )
}

/// Dropout on the input (p = 0.2) and on both hidden layers (p = 0.5), with one fixed draw of
/// the masks: the loss is then a smooth function of the parameters, and `Mlp::backward` must
/// be its gradient, `⊙ m` included.
fn dropout_check(act: Activation) -> Report {
    let p = problem(act, 16);
    let n = p.labels.len();
    let mut ws = Workspace::with_dropout(&p.mlp.sizes, n, 0.2, 0.5);
    ws.draw_masks(17, n);
    ws.input_mut(n).copy_from_slice(&p.x);
    let dropped = ws.masks.iter().flatten().filter(|&&m| m == 0.0).count();
    assert!(
        dropped > 0,
        "the masks must drop something for the check to mean anything"
    );
    let loss = |params: &[f64]| {
        let mut net = p.mlp.clone();
        net.params.copy_from_slice(params);
        net.forward_loss(&mut ws.clone(), &p.labels) / n as f64
    };
    let mut w = ws.clone();
    p.mlp.forward_loss(&mut w, &p.labels);
    let mut grads = vec![0.0; p.mlp.params.len()];
    p.mlp.backward(&mut w, &p.labels, 1.0 / n as f64, &mut grads);
    check(
        &format!("network {act}, dropout 0.2 in / 0.5 hidden"),
        &p.mlp.params,
        loss,
        &grads,
    )
}

/// The backward pass written out again from the public layer pieces, with the activation's
/// derivative f′ deliberately left out. The check must catch it.
fn backward_without_df(p: &Problem) -> Vec<f64> {
    let (mlp, n) = (&p.mlp, p.labels.len());
    let mut acts: Vec<Vec<f64>> = vec![p.x.clone()];
    for (l, layer) in mlp.layers.iter().enumerate() {
        let mut z = vec![0.0; n * layer.fan_out];
        layer.forward(&mlp.params, &acts[l], &mut z, n);
        if l + 1 < mlp.layers.len() {
            mlp.activation.forward(&mut z);
        }
        acts.push(z);
    }
    let k = mlp.classes();
    let mut y_hat = acts.pop().expect("output");
    loss::softmax_cross_entropy(&mut y_hat, &p.labels, k);
    let mut d_z = vec![0.0; n * k];
    loss::backward(&y_hat, &p.labels, k, 1.0 / n as f64, &mut d_z);
    let mut grads = vec![0.0; mlp.params.len()];
    for (l, layer) in mlp.layers.iter().enumerate().rev() {
        let mut d_a = vec![0.0; n * layer.fan_in];
        let want_d_a = if l > 0 { Some(&mut d_a[..]) } else { None };
        layer.backward(&mlp.params, &acts[l], &d_z, &mut grads, want_d_a, n);
        // Deliberately missing: mlp.activation.backward(&acts[l], &mut d_a);
        d_z = d_a;
    }
    grads
}

fn main() {
    println!(
        "finite-difference gradient check, f64, central step h = {}, tolerance {TOLERANCE:e}",
        gradcheck::STEP
    );
    let mut reports: Vec<Report> = Vec::new();
    reports.extend(ACTIVATIONS.map(activation_check));
    reports.extend(linear_checks());
    reports.push(loss_check());
    reports.extend(ACTIVATIONS.map(network_check));
    reports.extend(ACTIVATIONS.map(dropout_check));
    // A whole network with the seed's 784-pixel input, a few hidden units, one sample per class.
    {
        let mut rng = Rng::new(15, 0);
        let mut mlp = Mlp::<f64>::new(&[784, 6, 5, 4, 10], Activation::Sigmoid);
        mlp.init(Init::Uniform, &mut rng);
        let x: Vec<f64> = (0..10 * 784).map(|_| rng.next_f64()).collect();
        let labels: Vec<u8> = (0..10).collect();
        let grads = mlp_gradient(&mlp, &x, &labels);
        reports.push(check_mlp(
            "network 784-6-5-4-10 sigmoid, seed's depth",
            &mlp,
            &x,
            &labels,
            &grads,
        ));
    }

    let mut failed = 0;
    for r in &reports {
        println!("{r}");
        if !r.passed() {
            failed += 1;
        }
    }

    // The check must be able to fail: the same network with f′ dropped from backward.
    println!("\nsabotage: the backward pass with f' left out must be rejected");
    let mut sabotage_caught = 0;
    for act in ACTIVATIONS {
        let p = problem(act, 14);
        let broken = backward_without_df(&p);
        let r = check_mlp(
            &format!("network {act}, backward without f'"),
            &p.mlp,
            &p.x,
            &p.labels,
            &broken,
        );
        println!("{r}   <- expected FAIL");
        if r.passed() {
            println!("  ERROR: the gradient check did not notice the missing derivative");
        } else {
            sabotage_caught += 1;
        }
    }
    let total = reports.len() + ACTIVATIONS.len();
    let passed = reports.len() - failed + sabotage_caught;
    println!("\n{passed} passed, {} failed", total - passed);
    if passed != total {
        std::process::exit(1);
    }
}
