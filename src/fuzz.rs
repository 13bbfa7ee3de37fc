//! What each fuzz target (`fuzz/fuzz_targets/`) runs on its input, here in the library so that
//! it is compiled with every build and cannot rot, and so that `tests/fuzz_corpus.rs` replays
//! each target's committed corpus (`fuzz/seeds/<target>/`) through the very same function.
//! Each takes arbitrary bytes and may refuse them, but must never panic.

use crate::config::{ModelSpec, RunConfig, TrainConfig};
use crate::data::idx::{decompress_if_gz, parse_images, parse_labels};
use crate::data::sets::digit_names;
use crate::model::{Loaded, from_parts, parse_config};
use crate::nn::{Activation, Mlp};
use crate::preprocess::{decode_image, preprocess};
use crate::serve::Service;
use std::path::Path;
use std::sync::OnceLock;

/// The fuzz targets, by name, as `fuzz/Cargo.toml` names their binaries.
pub const TARGETS: [(&str, fn(&[u8])); 4] = [
    ("idx", idx),
    ("model", model),
    ("image", image),
    ("http_body", http_body),
];

/// The IDX reader on arbitrary bytes, raw or claimed gzip (the first byte's low bit).
pub fn idx(data: &[u8]) {
    let name = if data.first().is_some_and(|b| b & 1 == 1) {
        "f.gz"
    } else {
        "f"
    };
    if let Ok(bytes) = decompress_if_gz(Path::new(name), data.to_vec()) {
        let _ = parse_images(&bytes, Path::new(name));
        let _ = parse_labels(&bytes, Path::new(name), 10);
    }
}

/// The model loader on arbitrary config.json text and safetensors bytes; it must also never
/// allocate for a network the file does not hold. Input: 2 bytes little-endian length n, then
/// n bytes of config text, then the model file.
pub fn model(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let n = u16::from_le_bytes([data[0], data[1]]) as usize;
    let rest = &data[2..];
    let (text, bytes) = rest.split_at(n.min(rest.len()));
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    if let Ok(config) = parse_config(text, Path::new("config.json")) {
        let _ = from_parts(config, bytes, Path::new("model.safetensors"));
    }
}

/// Image decoding and MNIST-style preprocessing: refuse, or 784 values in 0..1.
pub fn image(data: &[u8]) {
    if let Ok(img) = decode_image(data, "fuzz")
        && let Ok(x) = preprocess(&img)
    {
        assert_eq!(x.len(), 784);
        assert!(x.iter().all(|v| (0.0..=1.0).contains(v)), "pixel out of range");
    }
}

/// The body parser of `POST /api/predict` on arbitrary bytes under the content type the first
/// byte selects: a 4xx rejection or 784 values in 0..1.
pub fn http_body(data: &[u8]) {
    static SERVICE: OnceLock<Service> = OnceLock::new();
    let service = SERVICE.get_or_init(|| {
        let sizes = [784, 4, 10];
        let spec = ModelSpec {
            layer_sizes: sizes.to_vec(),
            activation: Activation::Relu,
            image_rows: 28,
            image_cols: 28,
            classes: digit_names(10),
        };
        Service::new(
            Loaded {
                config: RunConfig::new(spec, TrainConfig::default()),
                mlp: Mlp::new(&sizes, Activation::Relu),
            },
            None,
        )
    });
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let content_type = [
        "application/json",
        "image/png",
        "image/jpeg",
        "text/plain",
        "",
        "application/json; charset=utf-8",
    ][selector as usize % 6];
    match service.parse_input(content_type, body) {
        Ok(x) => {
            assert_eq!(x.len(), 784);
            assert!(x.iter().all(|v| (0.0..=1.0).contains(v)));
        }
        Err(r) => assert!((400..500).contains(&r.status)),
    }
}
