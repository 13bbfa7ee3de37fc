//! The model loader on arbitrary config.json text and safetensors bytes: it may refuse, never
//! panic, and never allocate for a network the file does not hold.
//! Input layout: 2 bytes little-endian length n, then n bytes of config text, then the model file.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mnist_mlp::model::{from_parts, parse_config};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let n = u16::from_le_bytes([data[0], data[1]]) as usize;
    let rest = &data[2..];
    let (text, bytes) = rest.split_at(n.min(rest.len()));
    let Ok(text) = std::str::from_utf8(text) else { return };
    if let Ok(config) = parse_config(text, Path::new("config.json")) {
        let _ = from_parts(config, bytes, Path::new("model.safetensors"));
    }
});
