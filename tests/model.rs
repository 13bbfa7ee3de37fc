//! Model directories: a saved model loads back to the same numbers, and every kind of broken
//! model directory is refused with a message naming the file and the problem.

mod common;

use common::read_json;
use mnist_mlp::config::{ModelSpec, RunConfig, TrainConfig};
use mnist_mlp::model::{self, CONFIG_FILE, MODEL_FILE};
use mnist_mlp::nn::{Activation, Init, Mlp};
use mnist_mlp::rng::Rng;
use std::path::Path;

fn small_model() -> (RunConfig, Mlp<f32>) {
    let sizes = [784, 16, 10];
    let mut mlp = Mlp::<f32>::new(&sizes, Activation::Relu);
    mlp.init(Init::Uniform, &mut Rng::new(1, 1));
    let spec = ModelSpec {
        layer_sizes: sizes.to_vec(),
        activation: Activation::Relu,
        image_rows: 28,
        image_cols: 28,
        classes: mnist_mlp::data::sets::digit_names(10),
    };
    let train = TrainConfig {
        hidden: vec![16],
        ..TrainConfig::default()
    };
    (RunConfig::new(spec, train), mlp)
}

fn saved(dir: &Path) -> Mlp<f32> {
    let (cfg, mlp) = small_model();
    model::save(dir, &cfg, &mlp).unwrap();
    mlp
}

fn load_err(dir: &Path) -> String {
    match model::load(dir) {
        Ok(_) => panic!("a broken model directory loaded"),
        Err(e) => format!("{:#}", anyhow::Error::from(e)),
    }
}

#[test]
fn a_saved_model_loads_back_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let mlp = saved(dir.path());
    let loaded = model::load(dir.path()).unwrap();
    assert_eq!(loaded.mlp.sizes, mlp.sizes);
    assert!(
        loaded.mlp.params == mlp.params,
        "parameters changed in the round trip"
    );
    assert_eq!(loaded.config.model.activation, Activation::Relu);
}

#[test]
fn the_safetensors_file_uses_pytorch_names_and_shapes() {
    let dir = tempfile::tempdir().unwrap();
    saved(dir.path());
    let bytes = std::fs::read(dir.path().join(MODEL_FILE)).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names = st.names();
    names.sort();
    assert_eq!(
        names,
        [
            "layers.0.bias",
            "layers.0.weight",
            "layers.1.bias",
            "layers.1.weight"
        ]
    );
    assert_eq!(st.tensor("layers.0.weight").unwrap().shape(), &[16, 784]);
    assert_eq!(st.tensor("layers.1.bias").unwrap().shape(), &[10]);
}

#[test]
fn a_missing_config_is_named() {
    let dir = tempfile::tempdir().unwrap();
    saved(dir.path());
    std::fs::remove_file(dir.path().join(CONFIG_FILE)).unwrap();
    assert!(load_err(dir.path()).contains("config.json"));
}

#[test]
fn a_truncated_safetensors_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    saved(dir.path());
    let p = dir.path().join(MODEL_FILE);
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(dir.path());
    assert!(
        e.contains("model.safetensors") && e.contains("not a valid safetensors file"),
        "{e}"
    );
}

#[test]
fn a_config_that_contradicts_the_tensors_is_refused_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    saved(dir.path());
    let p = dir.path().join(CONFIG_FILE);
    let text = std::fs::read_to_string(&p).unwrap().replacen("16,", "32,", 1);
    let mut cfg: serde_json::Value = serde_json::from_str(&text).unwrap();
    cfg["model"]["layer_sizes"] = serde_json::json!([784, 32, 10]);
    std::fs::write(&p, cfg.to_string()).unwrap();
    let e = load_err(dir.path());
    assert!(
        e.contains("layers.0.weight") && e.contains("[16, 784]") && e.contains("[32, 784]"),
        "{e}"
    );
}

#[test]
fn a_tensor_of_the_wrong_dtype_or_name_is_refused() {
    use safetensors::tensor::{Dtype, TensorView};
    let dir = tempfile::tempdir().unwrap();
    saved(dir.path());
    let p = dir.path().join(MODEL_FILE);
    let w = vec![0u8; 16 * 784 * 8];
    let b = vec![0u8; 16 * 8];
    let views = vec![
        (
            "layers.0.weight",
            TensorView::new(Dtype::F64, vec![16, 784], &w).unwrap(),
        ),
        (
            "layers.0.bias",
            TensorView::new(Dtype::F64, vec![16], &b).unwrap(),
        ),
    ];
    std::fs::write(&p, safetensors::serialize(views, None).unwrap()).unwrap();
    let e = load_err(dir.path());
    assert!(e.contains("F64") && e.contains("expected F32"), "{e}");

    let extra = vec![0u8; 4];
    let views = vec![(
        "classifier.weight",
        TensorView::new(Dtype::F32, vec![1], &extra).unwrap(),
    )];
    std::fs::write(&p, safetensors::serialize(views, None).unwrap()).unwrap();
    let e = load_err(dir.path());
    assert!(e.contains("unexpected tensor 'classifier.weight'"), "{e}");
}

#[test]
fn a_config_of_another_format_or_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    saved(dir.path());
    let p = dir.path().join(CONFIG_FILE);
    let mut cfg = read_json(&p);
    cfg["version"] = serde_json::json!(99);
    std::fs::write(&p, cfg.to_string()).unwrap();
    assert!(load_err(dir.path()).contains("version 99"));
    std::fs::write(&p, "{ not json").unwrap();
    assert!(load_err(dir.path()).contains("not a valid mnist-mlp config.json"));
}

#[test]
fn a_config_promising_a_huge_network_is_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    saved(dir.path());
    let p = dir.path().join(CONFIG_FILE);
    let mut cfg = read_json(&p);
    cfg["model"]["layer_sizes"] = serde_json::json!([784, 4_000_000_000u64, 10]);
    std::fs::write(&p, cfg.to_string()).unwrap();
    let e = load_err(dir.path());
    assert!(e.contains("more parameters than a model file may hold"), "{e}");
    // Within the cap but far larger than the file: refused by the tensor check, not an allocation.
    cfg["model"]["layer_sizes"] = serde_json::json!([784, 100_000, 10]);
    std::fs::write(&p, cfg.to_string()).unwrap();
    let e = load_err(dir.path());
    assert!(
        e.contains("layers.0.weight") && e.contains("[100000, 784]"),
        "{e}"
    );
}
