//! Fuzz target: `mnist_mlp::fuzz::image` (see its documentation) on libFuzzer's inputs.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mnist_mlp::fuzz::image(data));
