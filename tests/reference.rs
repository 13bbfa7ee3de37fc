//! Our backward pass and update rule against an independent numpy implementation
//! (`scripts/reference/make_fixture.py`, output committed as `tests/fixtures/reference.json`):
//! loss and every gradient of a small network, then a five-step momentum-SGD trajectory, in f64
//! and through the f32 training path. Each comparison prints its maximum difference.

mod common;

use common::{NonFinite, diff_and_scale, max_abs_diff};
use mnist_mlp::nn::gradcheck::mlp_gradient;
use mnist_mlp::nn::{Activation, Mlp, Workspace};
use mnist_mlp::optim::{L2Mode, Optimizer};
use serde_json::Value;

/// f64 against f64: only rounding differences in summation order remain.
const TOL_F64: f64 = 1e-12;
/// The f32 path against f64 numbers, over a few steps.
const TOL_F32: f64 = 1e-6;

fn fixture() -> Value {
    let text = include_str!("fixtures/reference.json");
    serde_json::from_str(text).expect("valid fixture")
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn labels(v: &Value) -> Vec<u8> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u8)
        .collect()
}

fn sizes(f: &Value) -> Vec<usize> {
    f["sizes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect()
}

fn sgd(f: &Value) -> (Optimizer, f64) {
    let s = &f["sgd"];
    assert_eq!(s["l2_mode"], "per-sample");
    let sgd = Optimizer::sgd(
        s["momentum"].as_f64().unwrap(),
        s["l2"].as_f64().unwrap(),
        L2Mode::PerSample,
    );
    (sgd, s["lr"].as_f64().unwrap())
}

/// Run the fixture's trajectory in scalar type T; returns (losses, final params as f64).
fn trajectory<T: mnist_mlp::kernels::Real>(f: &Value, case: &Value) -> (Vec<f64>, Vec<f64>) {
    let act: Activation = case["activation"].as_str().unwrap().parse().unwrap();
    let sizes = sizes(f);
    let mut mlp = Mlp::<T>::new(&sizes, act);
    for (p, v) in mlp.params.iter_mut().zip(floats(&case["params"])) {
        *p = T::from_f64(v);
    }
    let (sgd, lr) = sgd(f);
    let mut grads = vec![T::ZERO; mlp.params.len()];
    let mut velocity = vec![T::ZERO; mlp.params.len()];
    let mut losses = Vec::new();
    for batch in case["trajectory"]["batches"].as_array().unwrap() {
        let x = floats(&batch["x"]);
        let y = labels(&batch["labels"]);
        let mut ws = Workspace::new(&sizes, y.len());
        for (d, &v) in ws.input_mut(y.len()).iter_mut().zip(&x) {
            *d = T::from_f64(v);
        }
        losses.push(mlp.forward_loss(&mut ws, &y) / y.len() as f64);
        mlp.backward(&mut ws, &y, T::from_f64(1.0 / y.len() as f64), &mut grads);
        sgd.step(
            lr,
            1,
            y.len(),
            &mlp.layers,
            &mut mlp.params,
            &grads,
            &mut velocity,
            &mut [],
        );
    }
    (losses, mlp.params.iter().map(|v| v.to_f64()).collect())
}

#[test]
fn gradients_match_the_numpy_reference() {
    let f = fixture();
    for case in f["cases"].as_array().unwrap() {
        let act: Activation = case["activation"].as_str().unwrap().parse().unwrap();
        let mut mlp = Mlp::<f64>::new(&sizes(&f), act);
        mlp.params.copy_from_slice(&floats(&case["params"]));
        let x = floats(&case["x"]);
        let y = labels(&case["labels"]);
        let mut ws = Workspace::new(&mlp.sizes, y.len());
        ws.input_mut(y.len()).copy_from_slice(&x);
        let loss = mlp.forward_loss(&mut ws, &y) / y.len() as f64;
        let d_loss = max_abs_diff(
            &format!("{act}: loss"),
            &[loss],
            &[case["loss"].as_f64().unwrap()],
        );
        let d_grads = max_abs_diff(
            &format!("{act}: gradients"),
            &mlp_gradient(&mlp, &x, &y),
            &floats(&case["grads"]),
        );
        println!("{act}: loss diff {d_loss:.2e}, max gradient diff {d_grads:.2e} (tolerance {TOL_F64:e})");
        assert!(
            d_loss <= TOL_F64 && d_grads <= TOL_F64,
            "{act}: differs from numpy"
        );
    }
}

#[test]
fn a_five_step_momentum_trajectory_matches_the_numpy_reference_in_f64_and_f32() {
    let f = fixture();
    for case in f["cases"].as_array().unwrap() {
        let act = case["activation"].as_str().unwrap();
        let want_losses = floats(&case["trajectory"]["losses"]);
        let want_params = floats(&case["trajectory"]["final_params"]);

        let (losses, params) = trajectory::<f64>(&f, case);
        let dl = max_abs_diff(&format!("{act} f64: losses"), &losses, &want_losses);
        let dp = max_abs_diff(&format!("{act} f64: parameters"), &params, &want_params);
        println!(
            "{act} f64: max loss diff {dl:.2e}, max final-parameter diff {dp:.2e} (tolerance {TOL_F64:e})"
        );
        assert!(
            dl <= TOL_F64 && dp <= TOL_F64,
            "{act} f64 trajectory differs from numpy"
        );

        let (losses, params) = trajectory::<f32>(&f, case);
        let dl = max_abs_diff(&format!("{act} f32: losses"), &losses, &want_losses);
        let dp = max_abs_diff(&format!("{act} f32: parameters"), &params, &want_params);
        println!(
            "{act} f32: max loss diff {dl:.2e}, max final-parameter diff {dp:.2e} (tolerance {TOL_F32:e})"
        );
        assert!(
            dl <= TOL_F32 && dp <= TOL_F32,
            "{act} f32 trajectory differs from numpy"
        );
    }
}

#[test]
fn the_engine_the_trainer_uses_follows_the_same_trajectory() {
    use mnist_mlp::kernels::{Backend, Engine, StepParams};
    let f = fixture();
    let engine = Engine::new(2, Backend::detect());
    for case in f["cases"].as_array().unwrap() {
        let act: Activation = case["activation"].as_str().unwrap().parse().unwrap();
        let sizes = sizes(&f);
        let mut mlp = Mlp::<f32>::new(&sizes, act);
        for (p, v) in mlp.params.iter_mut().zip(floats(&case["params"])) {
            *p = v as f32;
        }
        let (sgd, lr) = sgd(&f);
        let mut velocity = vec![0f32; mlp.params.len()];
        let mut grads = vec![0f32; mlp.params.len()];
        let mut losses = Vec::new();
        for batch in case["trajectory"]["batches"].as_array().unwrap() {
            let y = labels(&batch["labels"]);
            let mut ws = Workspace::new(&sizes, y.len());
            for (d, v) in ws.input_mut(y.len()).iter_mut().zip(floats(&batch["x"])) {
                *d = v as f32;
            }
            let p = StepParams {
                lr,
                t: 1,
                opt: sgd,
                loss_scale: 1.0 / y.len() as f64,
                max_norm: None,
            };
            let loss = engine.train_step(&mut mlp, &mut velocity, &mut [], &mut grads, &mut ws, &y, p);
            losses.push(loss / y.len() as f64);
        }
        let params: Vec<f64> = mlp.params.iter().map(|&v| v as f64).collect();
        let want_losses = floats(&case["trajectory"]["losses"]);
        let dl = max_abs_diff(&format!("{act} engine: losses"), &losses, &want_losses);
        let want_params = floats(&case["trajectory"]["final_params"]);
        let dp = max_abs_diff(&format!("{act} engine: parameters"), &params, &want_params);
        println!(
            "{act} engine ({}): max loss diff {dl:.2e}, max final-parameter diff {dp:.2e}",
            engine.backend().name()
        );
        assert!(
            dl <= TOL_F32 && dp <= TOL_F32,
            "{act}: the engine's trajectory differs from numpy"
        );
    }
}

/// The comparison every tolerance check goes through fails on a NaN, which `f64::max` would
/// have dropped (a fold of `(x − y).abs()` with `f64::max` returned 0 here).
#[test]
#[should_panic(expected = "element 1 is NaN against 0.5 (a non-finite value)")]
fn the_comparison_fails_on_a_nan_that_a_max_fold_would_drop() {
    max_abs_diff("parameters", &[1.0, f64::NAN, 3.0], &[1.0, 0.5, 3.0]);
}

#[test]
#[should_panic(expected = "element 0 is NaN against NaN")]
fn the_comparison_fails_on_nan_on_both_sides_by_default() {
    max_abs_diff("losses", &[f32::NAN], &[f32::NAN]);
}

#[test]
#[should_panic(expected = "element 2 is inf against inf")]
fn the_comparison_fails_on_an_infinity() {
    common::max_rel_diff(
        "logits",
        &[0.0f32, 1.0, f32::INFINITY],
        &[0.0, 1.0, f32::INFINITY],
    );
}

/// Where a test means a non-finite value to come out where the reference has it, the same bit
/// pattern on both sides agrees, and any other non-finite pair still fails.
#[test]
fn the_comparison_accepts_the_same_non_finite_bits_only_when_asked() {
    let rule = NonFinite::AgreesWhenSameBits;
    let (d, scale) = diff_and_scale(
        "x",
        &[f32::NAN, 2.0, f32::NEG_INFINITY],
        &[f32::NAN, 2.5, f32::NEG_INFINITY],
        rule,
    );
    assert_eq!((d, scale), (0.5, 2.5));
    let other_nan = f32::from_bits(f32::NAN.to_bits() | 1);
    let r = std::panic::catch_unwind(|| diff_and_scale("x", &[f32::NAN], &[other_nan], rule));
    assert!(r.is_err(), "two different NaN payloads agreed");
    let r = std::panic::catch_unwind(|| diff_and_scale("x", &[f32::INFINITY], &[1.0], rule));
    assert!(r.is_err(), "an infinity agreed with 1");
}
