//! The update rules, pinned by numbers worked out by hand (the arithmetic is in the comments)
//! or, for Nesterov, Adam and AdamW, computed by PyTorch (the script is in the comment above
//! those tests).
//!
//! One weight w and one bias b, raw batch-mean gradients ∂E/∂w = 0.2 and ∂E/∂b = 0.1 at every
//! step, μ = 0.9, λ = 0.1, α = 0.1, batch N = 4. The seed's rule:
//! g = ∂E/∂w + λ'w,  v ← μv − αg,  w ← w + v  (biases: no λ).

use mnist_mlp::nn::Linear;
use mnist_mlp::optim::{L2Mode, Method, Optimizer, Schedule};

const EPS: f64 = 1e-12;

fn run(mode: L2Mode, schedule: Schedule, steps: usize) -> Vec<(f64, f64)> {
    run_rule(Optimizer::sgd(0.9, 0.1, mode), schedule, steps)
}

fn run_rule(opt: Optimizer, schedule: Schedule, steps: usize) -> Vec<(f64, f64)> {
    let layer = Linear {
        fan_in: 1,
        fan_out: 1,
        w: 0,
        b: 1,
    };
    let mut params = vec![1.0f64, 0.5];
    let grads = vec![0.2f64, 0.1];
    let mut velocity = vec![0.0f64; 2];
    let mut second = vec![0.0f64; if opt.method.has_second_moment() { 2 } else { 0 }];
    (0..steps)
        .map(|t| {
            let lr = schedule.lr_at(0.1, t, steps);
            opt.step(
                lr,
                t + 1,
                4,
                std::slice::from_ref(&layer),
                &mut params,
                &grads,
                &mut velocity,
                &mut second,
            );
            (params[0], params[1])
        })
        .collect()
}

fn rule(method: Method) -> Optimizer {
    Optimizer {
        method,
        ..Optimizer::sgd(0.9, 0.1, L2Mode::PerSample)
    }
}

// The expected values below come from PyTorch 2.15 in float64, bias in a parameter group
// without weight decay:
//
//   w = torch.tensor([1.0], requires_grad=True); b = torch.tensor([0.5], requires_grad=True)
//   opt = make([{"params": [w]}, {"params": [b], "weight_decay": 0.0}])
//   for _ in range(3):
//       w.grad = torch.tensor([0.2]); b.grad = torch.tensor([0.1]); opt.step()
//
// with make = SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1),
// Adam(lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1) and AdamW(same).
// PyTorch's Nesterov (buf = μ buf + g; w −= α (g + μ buf)) is ours with v = −α buf.

#[test]
fn nesterov_matches_pytorch() {
    // By hand, step 1: g = 0.3, v = −0.03, w = 1 + 0.9·(−0.03) − 0.03 = 0.943.
    let want = [(0.943, 0.481), (0.862783, 0.4539), (0.762681823, 0.41951)];
    assert_close(&run_rule(rule(Method::Nesterov), Schedule::Constant, 3), &want);
}

#[test]
fn adam_matches_pytorch() {
    let want = [
        (0.9000000033333332, 0.400000009999999),
        (0.8001027137942831, 0.3000000199999987),
        (0.7003815330852098, 0.20000002999999772),
    ];
    assert_close(&run_rule(rule(Method::Adam), Schedule::Constant, 3), &want);
}

#[test]
fn adamw_matches_pytorch() {
    // Step 1: w = 1 − 0.1·0.1·1 − 0.1·0.2/(0.2 + 1e-8) = 0.89000000499…
    let want = [
        (0.8900000049999998, 0.400000009999999),
        (0.7811000099500002, 0.3000000199999987),
        (0.6732890148505, 0.20000002999999772),
    ];
    assert_close(&run_rule(rule(Method::AdamW), Schedule::Constant, 3), &want);
}

fn assert_close(got: &[(f64, f64)], want: &[(f64, f64)]) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g.0 - w.0).abs() < EPS && (g.1 - w.1).abs() < EPS,
            "step {}: got (w, b) = {g:?}, expected {w:?}",
            i + 1
        );
    }
}

#[test]
fn per_sample_l2_adds_lambda_w_to_the_mean_gradient() {
    // step 1: g = 0.2 + 0.1·1 = 0.3,          v = −0.03,                    w = 0.97
    //         bias: v = −0.01,                                              b = 0.49
    // step 2: g = 0.2 + 0.1·0.97 = 0.297,     v = 0.9·−0.03 − 0.0297 = −0.0567,   w = 0.9133
    //         bias: v = −0.009 − 0.01 = −0.019,                             b = 0.471
    // step 3: g = 0.2 + 0.09133 = 0.29133,    v = −0.05103 − 0.029133 = −0.080163, w = 0.833137
    //         bias: v = −0.0171 − 0.01 = −0.0271,                           b = 0.4439
    let got = run(L2Mode::PerSample, Schedule::Constant, 3);
    assert_close(&got, &[(0.97, 0.49), (0.9133, 0.471), (0.833137, 0.4439)]);
}

#[test]
fn per_batch_l2_divides_lambda_by_the_batch_size() {
    // λ' = λ/N = 0.025
    // step 1: g = 0.2 + 0.025·1 = 0.225,            v = −0.0225,                     w = 0.9775
    // step 2: g = 0.2 + 0.025·0.9775 = 0.2244375,   v = −0.02025 − 0.02244375 = −0.04269375,
    //                                                                               w = 0.93480625
    // biases carry no L2, so they move as in the per-sample case.
    let got = run(L2Mode::PerBatch, Schedule::Constant, 2);
    assert_close(&got, &[(0.9775, 0.49), (0.93480625, 0.471)]);
}

#[test]
fn a_step_schedule_changes_alpha_between_updates() {
    // step:0.5:1 halves α after every update: α = 0.1, 0.05, 0.025.
    // step 1: as before,                        v = −0.03,                        w = 0.97
    // step 2: g = 0.297, v = −0.027 − 0.05·0.297 = −0.04185,                     w = 0.92815
    //         bias: v = −0.009 − 0.005 = −0.014,                                 b = 0.476
    // step 3: g = 0.2 + 0.092815 = 0.292815,
    //         v = 0.9·−0.04185 − 0.025·0.292815 = −0.037665 − 0.007320375 = −0.044985375,
    //                                                                            w = 0.883164625
    //         bias: v = −0.0126 − 0.0025 = −0.0151,                              b = 0.4609
    let schedule: Schedule = "step:0.5:1".parse().unwrap();
    let got = run(L2Mode::PerSample, schedule, 3);
    assert_close(&got, &[(0.97, 0.49), (0.92815, 0.476), (0.883164625, 0.4609)]);
}

#[test]
fn zero_momentum_is_plain_gradient_descent() {
    let layer = Linear {
        fan_in: 2,
        fan_out: 1,
        w: 0,
        b: 2,
    };
    let sgd = Optimizer::sgd(0.0, 0.0, L2Mode::PerSample);
    let mut params = vec![1.0f64, -1.0, 0.0];
    let mut velocity = vec![0.0f64; 3];
    sgd.step(
        0.5,
        1,
        1,
        std::slice::from_ref(&layer),
        &mut params,
        &[0.2, 0.4, -0.6],
        &mut velocity,
        &mut [],
    );
    assert_close(&[(params[0], params[1])], &[(0.9, -1.2)]);
    assert!((params[2] - 0.3).abs() < EPS);
}
