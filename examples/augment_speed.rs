//! Time of `Augmenter::apply` per image on one core, for the affine part alone, the elastic
//! part alone, and both: MNIST's training images if they are in the cache, else synthetic ones.
//! The time is the thread's CPU time, not wall time, so that other processes on a shared
//! machine do not inflate it (they still share its caches).
//!
//!   cargo run --release --example augment_speed [IMAGES] [CONFIG]
use mnist_mlp::data::augment::{Augment, Augmenter};
use mnist_mlp::data::mnist;
use mnist_mlp::rng::Rng;

/// CPU time of this thread, in seconds.
fn thread_cpu_seconds() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to write.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime");
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(60_000);
    let cache = mnist_mlp::data::DatasetKind::Mnist.cache_dir();
    let (source, images) = match mnist::Dataset::load(&cache, None) {
        Ok(d) => ("MNIST training images", d.train.images.pixels),
        Err(_) => {
            // A bar of ink in varying places, enough to keep the branch predictor honest.
            let mut rng = Rng::new(0, 0);
            let px: Vec<u8> = (0..1000 * 784)
                .map(|i| {
                    if (i % 28 + rng.below(5) as usize) % 9 < 3 {
                        255
                    } else {
                        0
                    }
                })
                .collect();
            ("synthetic images (no MNIST cache)", px)
        }
    };
    let n_images = images.len() / 784;
    println!("{count} images drawn from {n_images} {source}, one core, CPU time, best of 3:");
    let mut out = vec![0.0f32; 784];
    let configs = match std::env::args().nth(2) {
        Some(one) => vec![one],
        None => [
            "none",
            "shift=2,rotate=15,scale=0.1,shear=10",
            "elastic=34:4",
            "shift=2,rotate=15,scale=0.1,shear=10,elastic=34:4",
        ]
        .map(String::from)
        .to_vec(),
    };
    for text in &configs {
        let cfg: Augment = text.parse().unwrap();
        let mut aug = Augmenter::new(&cfg);
        let mut rng = Rng::new(1, 0);
        let mut best = f64::INFINITY;
        let mut checksum = 0.0f64;
        for _ in 0..3 {
            let start = thread_cpu_seconds();
            for i in 0..count {
                let k = i % n_images;
                aug.apply(&images[k * 784..(k + 1) * 784], &mut rng, &mut out);
                checksum += out[i % 784] as f64;
            }
            best = best.min(thread_cpu_seconds() - start);
        }
        println!(
            "  {:>50}: {:.2} µs/image (checksum {checksum:.1})",
            text,
            best / count as f64 * 1e6
        );
    }
}
