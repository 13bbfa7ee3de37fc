//! Runs training steps of the seed network for profiling: `perf record` this.
use mnist_mlp::bench::{SIZES, time_step};
use mnist_mlp::kernels::{Backend, Engine};
use mnist_mlp::nn::Activation;
fn main() {
    let threads: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let engine = Engine::new(threads, Backend::detect());
    let images = mnist_mlp::bench::cached_test_images();
    for _ in 0..5 {
        let s = time_step(&engine, 64, Activation::Relu, images.as_deref());
        println!("{:?} {:.3} ms", SIZES, s * 1e3);
    }
}
