//! The training step of the seed network two ways, alternating in blocks of 16 timed steps in
//! one process, so that both see the same machine. Both give the same bits, so only their speed
//! differs:
//!
//! - by default, the 256-bit (`avx2`) against the 512-bit (`avx512`) kernels;
//! - with `AB=skip`, the first layer's products over every block of pixels against skipping
//!   the blocks of zeros (`Engine::skipping_zeros`), with the widest kernels this CPU has.
//!
//!     [AB=skip] [DATASET=fashion-mnist] cargo run --release --example kernel_ab [BATCH] [BLOCKS] [THREADS]
//!
//! The batches are MNIST's test images (or `DATASET`'s) when the cache has them (random pixels
//! otherwise, where there is nothing to skip). Prints the median ms per step of each over all
//! blocks, and over the fastest and slowest third of blocks (by the first one's time): on a
//! shared virtual machine the second is where a busy neighbour on the same core slows both.
use mnist_mlp::bench::SeedStep;
use mnist_mlp::data::DatasetKind;
use mnist_mlp::kernels::{Backend, Engine};
use mnist_mlp::nn::Activation;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let arg = |i: usize, default: usize| -> usize {
        std::env::args()
            .nth(i)
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let (batch, blocks, threads) = (arg(1, 64), arg(2, 200), arg(3, 2));
    let skip = std::env::var("AB").as_deref() == Ok("skip");
    // The two engines compared, made afresh for every block (an idle pool's spinning worker
    // would take a core), and their names.
    let (make, names): (Box<dyn Fn(usize) -> Engine>, [&str; 2]) = if skip {
        let backend = Backend::detect();
        (
            Box::new(move |k| Engine::new(threads, backend).skipping_zeros(k == 1)),
            ["every block", "zero blocks skipped"],
        )
    } else {
        if !Backend::Avx512.available() {
            eprintln!("this CPU has no AVX-512F/DQ: only the 256-bit kernels run here");
            return;
        }
        let backends = [Backend::Avx2, Backend::Avx512];
        (
            Box::new(move |k| Engine::new(threads, backends[k])),
            ["256-bit", "512-bit"],
        )
    };
    let dataset: DatasetKind = match std::env::var("DATASET") {
        Ok(name) => name.parse().expect("DATASET names a data set"),
        Err(_) => DatasetKind::Mnist,
    };
    let images = mnist_mlp::bench::cached_test_images_of(dataset);
    let mut seed = SeedStep::new(batch, Activation::Relu, images.as_deref());
    let input = if seed.on_images() {
        format!("{dataset} test images")
    } else {
        "random pixels".to_string()
    };
    // (first, second) ms per step of each block.
    let mut pairs = Vec::new();
    for _ in 0..blocks {
        let mut pair = [0.0; 2];
        for (k, time) in pair.iter_mut().enumerate() {
            let engine = make(k);
            let mut step = || seed.run(&engine);
            for _ in 0..4 {
                step();
            }
            let t = Instant::now();
            for _ in 0..16 {
                step();
            }
            *time = t.elapsed().as_secs_f64() * 1e3 / 16.0;
        }
        pairs.push(pair);
    }
    pairs.sort_by(|a, b| a[0].total_cmp(&b[0]));
    let third = (blocks / 3).max(1);
    let n = pairs.len();
    println!("seed network, batch {batch}, {threads} threads, {blocks} blocks of 16 steps each, on {input}");
    for (name, part) in [
        ("all blocks", &pairs[..]),
        ("fastest third", &pairs[..third]),
        ("slowest third", &pairs[n - third..]),
    ] {
        let (a, b) = (
            median(part.iter().map(|p| p[0]).collect()),
            median(part.iter().map(|p| p[1]).collect()),
        );
        let ratio = median(part.iter().map(|p| p[1] / p[0]).collect());
        println!(
            "{name:>14}: {} {a:.3} ms, {} {b:.3} ms, ratio {ratio:.3}",
            names[0], names[1]
        );
    }
}
