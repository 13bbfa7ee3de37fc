//! The IDX reader on arbitrary bytes, raw or claimed gzip: it may refuse, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mnist_mlp::data::idx::{decompress_if_gz, parse_images, parse_labels};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let name = if data.first().is_some_and(|b| b & 1 == 1) { "f.gz" } else { "f" };
    if let Ok(bytes) = decompress_if_gz(Path::new(name), data.to_vec()) {
        let _ = parse_images(&bytes, Path::new(name));
        let _ = parse_labels(&bytes, Path::new(name), 10);
    }
});
