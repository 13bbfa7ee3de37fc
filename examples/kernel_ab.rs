//! The training step of the seed network with the 256-bit (`avx2`) and the 512-bit (`avx512`)
//! kernels, alternating in blocks of 16 timed steps in one process, so that both see the same
//! machine; the two give the same bits, so only their speed differs.
//!
//!     cargo run --release --example kernel_ab [BATCH] [BLOCKS] [THREADS]
//!
//! Prints the median ms per step of each over all blocks, and over the fastest and slowest
//! third of blocks (by the 256-bit time): on a shared virtual machine the second is where a
//! busy neighbour on the same core slows both.
use mnist_mlp::bench::SeedStep;
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
    if !Backend::Avx512.available() {
        eprintln!("this CPU has no AVX-512F/DQ: only the 256-bit kernels run here");
        return;
    }
    let mut seed = SeedStep::new(batch, Activation::Relu);
    // (256-bit, 512-bit) ms per step of each block.
    let mut pairs = Vec::new();
    for _ in 0..blocks {
        let mut pair = [0.0; 2];
        for (k, backend) in [Backend::Avx2, Backend::Avx512].into_iter().enumerate() {
            // A fresh engine per block: an idle pool's spinning worker would take a core.
            let engine = Engine::new(threads, backend);
            let mut step = || seed.run(&engine);
            for _ in 0..4 {
                step();
            }
            let t = Instant::now();
            for _ in 0..16 {
                step();
            }
            pair[k] = t.elapsed().as_secs_f64() * 1e3 / 16.0;
        }
        pairs.push(pair);
    }
    pairs.sort_by(|a, b| a[0].total_cmp(&b[0]));
    let third = (blocks / 3).max(1);
    let n = pairs.len();
    println!("seed network, batch {batch}, {threads} threads, {blocks} blocks of 16 steps each");
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
        println!("{name:>14}: 256-bit {a:.3} ms, 512-bit {b:.3} ms, 512/256 {ratio:.3}");
    }
}
