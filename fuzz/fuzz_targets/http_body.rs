//! The body parser of `POST /api/predict` on arbitrary bytes and content types: a 4xx
//! rejection or 784 values in 0..1, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mnist_mlp::config::{ModelSpec, RunConfig, TrainConfig};
use mnist_mlp::model::Loaded;
use mnist_mlp::nn::{Activation, Mlp};
use mnist_mlp::serve::Service;
use std::sync::OnceLock;

fn service() -> &'static Service {
    static S: OnceLock<Service> = OnceLock::new();
    S.get_or_init(|| {
        let sizes = [784, 4, 10];
        let spec = ModelSpec { layer_sizes: sizes.to_vec(), activation: Activation::Relu, image_rows: 28, image_cols: 28 };
        Service {
            loaded: Loaded { config: RunConfig::new(spec, TrainConfig::default()), mlp: Mlp::new(&sizes, Activation::Relu) },
            summary: None,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let content_type = ["application/json", "image/png", "image/jpeg", "text/plain", "", "application/json; charset=utf-8"]
        [selector as usize % 6];
    match service().parse_input(content_type, body) {
        Ok(x) => {
            assert_eq!(x.len(), 784);
            assert!(x.iter().all(|v| (0.0..=1.0).contains(v)));
        }
        Err(r) => assert!((400..500).contains(&r.status)),
    }
});
