//! Small synthetic IDX data sets that the tests write themselves.
#![allow(dead_code)]

use mnist_mlp::data::idx::{encode_images, encode_labels};
use mnist_mlp::rng::Rng;
use std::path::Path;

pub const SIDE: usize = 28;

/// A 28×28 image of class `c`: a bright 5×5 square at a position that depends on the class,
/// jittered by a pixel, over faint noise. Ten classes, trivially separable by an MLP.
pub fn pattern(c: usize, rng: &mut Rng) -> Vec<u8> {
    let mut img: Vec<u8> = (0..SIDE * SIDE).map(|_| rng.below(40) as u8).collect();
    let top = 3 + (c / 5) * 13 + rng.below(3) as usize;
    let left = 1 + (c % 5) * 5 + rng.below(2) as usize;
    for r in top..top + 5 {
        for col in left..(left + 5).min(SIDE) {
            img[r * SIDE + col] = 200 + rng.below(56) as u8;
        }
    }
    img
}

pub fn make_split(n: usize, rng: &mut Rng) -> (Vec<u8>, Vec<u8>) {
    let mut pixels = Vec::with_capacity(n * SIDE * SIDE);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let c = i % 10;
        pixels.extend(pattern(c, rng));
        labels.push(c as u8);
    }
    (pixels, labels)
}

/// Write the four IDX files of a synthetic data set (`train` and `test` images) into `dir`.
pub fn write_dataset(dir: &Path, train: usize, test: usize, seed: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = Rng::new(seed, 99);
    let (tp, tl) = make_split(train, &mut rng);
    let (vp, vl) = make_split(test, &mut rng);
    std::fs::write(
        dir.join("train-images-idx3-ubyte"),
        encode_images(train, SIDE, SIDE, &tp),
    )
    .unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte"), encode_labels(&tl)).unwrap();
    std::fs::write(
        dir.join("t10k-images-idx3-ubyte"),
        encode_images(test, SIDE, SIDE, &vp),
    )
    .unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), encode_labels(&vl)).unwrap();
}

/// A synthetic data set (200 training, `test` test images) and a tiny model (784-32-10, 50
/// iterations) trained on it by the binary, in `tmp`: (data dir, model dir).
pub fn tiny_model(tmp: &Path, test: usize) -> (std::path::PathBuf, std::path::PathBuf) {
    tiny_model_with(tmp, test, &[])
}

/// [`tiny_model`] with `extra` flags for `train`.
pub fn tiny_model_with(tmp: &Path, test: usize, extra: &[&str]) -> (std::path::PathBuf, std::path::PathBuf) {
    let (data, model) = (tmp.join("data"), tmp.join("model"));
    write_dataset(&data, 200, test, 1);
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_mnist-mlp"))
        .args([
            "train",
            "--hidden",
            "32",
            "--iterations",
            "50",
            "--batch-size",
            "16",
            "--eval-every",
            "50",
        ])
        .args(["--threads", "1", "--seed", "1", "--quiet", "--data-dir"])
        .arg(&data)
        .arg("--out")
        .arg(&model)
        .args(extra)
        .env("MNIST_MLP_DATA", "/nonexistent/mnist-mlp-test-cache")
        .env("MNIST_MLP_CACHE", "/nonexistent/mnist-mlp-test-cache")
        .status()
        .unwrap();
    assert!(status.success(), "training the tiny model failed");
    (data, model)
}

/// The binary, kept away from the user's real caches (MNIST's and every other data set's).
pub fn mnist_mlp() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("mnist-mlp").unwrap();
    cmd.env("MNIST_MLP_DATA", "/nonexistent/mnist-mlp-test-cache");
    cmd.env("MNIST_MLP_CACHE", "/nonexistent/mnist-mlp-test-cache");
    cmd
}

/// What a finished command wrote on stderr.
pub fn stderr_of(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

/// A JSON file the binary wrote.
pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A float the comparison helpers take: f32 or f64.
pub trait Float: Copy + std::fmt::Debug {
    fn to_f64(self) -> f64;
    /// The bit pattern, so that two non-finite values can be told apart (NaN payloads, ±inf).
    fn bits(self) -> u64;
}

impl Float for f32 {
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn bits(self) -> u64 {
        self.to_bits() as u64
    }
}

impl Float for f64 {
    fn to_f64(self) -> f64 {
        self
    }
    fn bits(self) -> u64 {
        self.to_bits()
    }
}

/// Whether a comparison accepts non-finite values at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonFinite {
    /// Any NaN or ±inf on either side fails the comparison: the default, since `f64::max` and
    /// `<` comparisons silently drop NaN.
    Fails,
    /// A pair with the same non-finite bit pattern on both sides agrees (for tests whose point
    /// is that a NaN or an infinity comes out where the reference has it); any other pair with
    /// a non-finite side still fails.
    AgreesWhenSameBits,
}

/// The largest |aᵢ − bᵢ| and the largest |aᵢ|, |bᵢ| over the finite pairs. Panics, naming
/// `what` and the element, on a length mismatch and on any non-finite value that `rule` does
/// not accept. The one comparison every tolerance check of the suite goes through.
pub fn diff_and_scale<T: Float>(what: &str, a: &[T], b: &[T], rule: NonFinite) -> (f64, f64) {
    assert_eq!(a.len(), b.len(), "{what}: {} values against {}", a.len(), b.len());
    let (mut diff, mut scale) = (0.0f64, 0.0f64);
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        let (xf, yf) = (x.to_f64(), y.to_f64());
        if !xf.is_finite() || !yf.is_finite() {
            let same = rule == NonFinite::AgreesWhenSameBits && x.bits() == y.bits();
            assert!(
                same,
                "{what}: element {i} is {x:?} against {y:?} (a non-finite value)"
            );
            continue;
        }
        // Both finite, so neither `max` can drop a NaN here.
        diff = diff.max((xf - yf).abs());
        scale = scale.max(xf.abs()).max(yf.abs());
    }
    (diff, scale)
}

/// The largest |aᵢ − bᵢ|; panics on any non-finite value or a length mismatch.
pub fn max_abs_diff<T: Float>(what: &str, a: &[T], b: &[T]) -> f64 {
    diff_and_scale(what, a, b, NonFinite::Fails).0
}

/// The largest |aᵢ − bᵢ| relative to the largest magnitude on either side (at least 1e-3, so
/// that vectors of near-zeros are compared absolutely); panics on any non-finite value or a
/// length mismatch.
pub fn max_rel_diff<T: Float>(what: &str, a: &[T], b: &[T]) -> f64 {
    let (diff, scale) = diff_and_scale(what, a, b, NonFinite::Fails);
    diff / scale.max(1e-3)
}

/// Assert that `a` and `b` agree to `tol` relative to their scale ([`max_rel_diff`]), printing
/// the difference; returns it.
pub fn assert_close<T: Float>(what: &str, a: &[T], b: &[T], tol: f64) -> f64 {
    let d = max_rel_diff(what, a, b);
    println!("{what}: max relative difference {d:.2e} (tolerance {tol:.0e})");
    assert!(d <= tol, "{what}: differ by {d:e} relative, more than {tol:e}");
    d
}

/// Whether the tests run under CI (`CI=true`, which `.ci/run` sets).
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A check this machine cannot run: print "skipped: why" (so that a passing test never hides
/// it), and fail instead under CI when the CI machine must be able to run it
/// (`required_in_ci`: AVX2, two cores, Python with numpy; not AVX-512, which CI machines need
/// not have).
pub fn skip(why: &str, required_in_ci: bool) {
    assert!(
        !(required_in_ci && under_ci()),
        "skipped under CI=true, where this check must run: {why}"
    );
    eprintln!("skipped: {why}");
}
