//! Image decoding and MNIST-style preprocessing on arbitrary bytes: refuse or produce 784
//! values in 0..1, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mnist_mlp::preprocess::{decode_image, preprocess};

fuzz_target!(|data: &[u8]| {
    if let Ok(img) = decode_image(data, "fuzz") {
        if let Ok(x) = preprocess(&img) {
            assert_eq!(x.len(), 784);
            assert!(x.iter().all(|v| (0.0..=1.0).contains(v)), "pixel out of range");
        }
    }
});
