//! Evaluates a saved model on the cached MNIST test set many times, as `train` draws its
//! curves, and prints the best and median time: for timing changes to the forward pass side
//! by side, and for `perf record`.
//!
//!   cargo run --release --example eval_profile -- MODEL_DIR [THREADS] [REPEATS]
//!
//! `KERNELS=avx2|avx512` picks the kernels (default: the fastest this CPU has).
//! `CHUNK=N` sets the images per forward pass (default: `train`'s). `SPARSITY=1` first prints,
//! for each layer, the non-zero inputs per image and the union over blocks of 1, 2, 4 and 6
//! images (the first layer's sparse product works per block of six).
use mnist_mlp::data::Dataset;
use mnist_mlp::data::sets::DatasetKind;
use mnist_mlp::eval::evaluate;
use mnist_mlp::kernels::{Backend, Engine};
use mnist_mlp::nn::{Mlp, Workspace};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: eval_profile MODEL_DIR [THREADS] [REPEATS]";
    let dir = std::path::Path::new(args.get(1).expect(usage));
    let threads: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2);
    let repeats: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(30).max(1);
    let loaded = mnist_mlp::model::load(dir).expect("a model directory");
    let data = Dataset::open(None, DatasetKind::Mnist, false).expect("the MNIST cache");
    let backend = match std::env::var("KERNELS").as_deref() {
        Ok("avx2") => Backend::Avx2,
        Ok("avx512") => Backend::Avx512,
        _ => Backend::detect(),
    };
    let engine = Engine::new(threads, backend);
    let chunk = std::env::var("CHUNK")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(mnist_mlp::train::EVAL_CHUNK);
    let mut ws = Workspace::new(&loaded.mlp.sizes, chunk);
    if std::env::var_os("SPARSITY").is_some() {
        sparsity(&engine, &loaded.mlp, &data.test);
    }
    let mut times = Vec::new();
    let mut accuracy = 0.0;
    for _ in 0..repeats {
        let t = Instant::now();
        accuracy = evaluate(&engine, &loaded.mlp, &mut ws, &data.test).accuracy;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "accuracy {:.2}%  best {:.1} ms  median {:.1} ms over {repeats} evaluations, {threads} threads",
        100.0 * accuracy,
        times[0],
        times[repeats / 2]
    );
}

/// Non-zero inputs of each layer over the first 1000 test images.
fn sparsity(engine: &Engine, mlp: &Mlp<f32>, test: &mnist_mlp::data::Split) {
    let n = 1000.min(test.len());
    let mut ws = Workspace::new(&mlp.sizes, n);
    let idx: Vec<u32> = (0..n as u32).collect();
    let mut labels = Vec::new();
    test.gather(&idx, ws.input_mut(n), &mut labels);
    engine.forward(mlp, &mut ws, n);
    for l in 0..mlp.sizes.len() - 1 {
        let w = mlp.sizes[l];
        let a = &ws.acts[l][..n * w];
        let per_row = a.iter().filter(|&&v| v != 0.0).count() as f64 / n as f64;
        let unions: Vec<String> = [1, 2, 4, 6]
            .iter()
            .map(|&mr| {
                let total: usize = a
                    .chunks(mr * w)
                    .map(|block| (0..w).filter(|&c| block.chunks(w).any(|r| r[c] != 0.0)).count())
                    .sum();
                format!("{mr}: {:.1}", total as f64 / n.div_ceil(mr) as f64)
            })
            .collect();
        println!(
            "layer {} input width {w}: non-zero per image {per_row:.1}; union per block of {}",
            l + 1,
            unions.join(", ")
        );
    }
}
