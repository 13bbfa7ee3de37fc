//! Model directories: `model.safetensors` (weights any tool can read) and `config.json` (the
//! architecture and the training options), written atomically and read back with every check.
//!
//! Tensor names and shapes follow PyTorch's `nn.Linear`: `layers.{i}.weight` is `[out, in]`
//! f32, `layers.{i}.bias` is `[out]` f32, i = 0 for the layer next to the input.

use crate::config::{CONFIG_FORMAT, CONFIG_VERSION, RunConfig};
use crate::error::{Error, Result};
use crate::fsutil::{write_atomic, write_json_atomic};
use crate::nn::Mlp;
use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;
use std::path::Path;

pub const CONFIG_FILE: &str = "config.json";
pub const MODEL_FILE: &str = "model.safetensors";

/// Cap on the model file we are willing to read (the default network is 2.2 MB).
const MAX_MODEL_BYTES: u64 = 1 << 31;

fn weight_name(i: usize) -> String {
    format!("layers.{i}.weight")
}
fn bias_name(i: usize) -> String {
    format!("layers.{i}.bias")
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The safetensors bytes of `mlp`, with `{"format": "mnist-mlp-1"}` metadata. One key only: the
/// crate stores metadata from a `HashMap`, whose order would vary between processes and make
/// two identical models differ in their bytes.
pub fn to_safetensors(mlp: &Mlp<f32>) -> Vec<u8> {
    let mut buffers = Vec::new();
    for (i, layer) in mlp.layers.iter().enumerate() {
        buffers.push((
            weight_name(i),
            vec![layer.fan_out, layer.fan_in],
            f32_bytes(&mlp.params[layer.w_range()]),
        ));
        buffers.push((
            bias_name(i),
            vec![layer.fan_out],
            f32_bytes(&mlp.params[layer.b_range()]),
        ));
    }
    let views: Vec<(String, TensorView)> = buffers
        .iter()
        .map(|(name, shape, bytes)| {
            let view =
                TensorView::new(Dtype::F32, shape.clone(), bytes).expect("shape matches the byte count");
            (name.clone(), view)
        })
        .collect();
    let metadata = HashMap::from([("format".to_string(), format!("{CONFIG_FORMAT}-{CONFIG_VERSION}"))]);
    safetensors::serialize(views, Some(metadata)).expect("in-memory serialisation cannot fail")
}

pub fn save(dir: &Path, config: &RunConfig, mlp: &Mlp<f32>) -> Result<()> {
    save_config(dir, config)?;
    write_atomic(&dir.join(MODEL_FILE), &to_safetensors(mlp))
}

pub fn save_config(dir: &Path, config: &RunConfig) -> Result<()> {
    write_json_atomic(&dir.join(CONFIG_FILE), config)
}

pub fn load_config(dir: &Path) -> Result<RunConfig> {
    let path = dir.join(CONFIG_FILE);
    if !dir.is_dir() {
        return Err(Error::model(
            dir,
            "is not a directory; expected a model directory written by `mnist-mlp train`",
        ));
    }
    if !path.exists() {
        return Err(Error::model(dir, no_config(dir)));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    parse_config(&text, &path)
}

/// What to say of a directory without `config.json`: what a model directory holds, and the
/// model directories in it or one level further down, if any (a study's directory holds one
/// per run, under `runs/`). It looks at no more than 1000 directories at either level.
fn no_config(dir: &Path) -> String {
    let subdirs = |d: &Path| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(d)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .take(1000)
            .collect()
    };
    let mut inside: Vec<String> = Vec::new();
    for sub in subdirs(dir) {
        let found = if sub.join(CONFIG_FILE).is_file() {
            vec![sub]
        } else {
            subdirs(&sub)
                .into_iter()
                .filter(|p| p.join(CONFIG_FILE).is_file())
                .collect()
        };
        for p in found {
            let rel = p.strip_prefix(dir).unwrap_or(&p);
            inside.push(rel.to_string_lossy().into_owned());
        }
    }
    inside.sort();
    let expected = format!(
        "has no {CONFIG_FILE}; expected a model directory written by `mnist-mlp train` \
         ({CONFIG_FILE} and {MODEL_FILE})"
    );
    match inside.len() {
        0 => expected,
        n => {
            let shown = inside.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
            let more = if n > 3 {
                format!(", … ({n} in all)")
            } else {
                String::new()
            };
            format!("{expected}. The model directories in it: {shown}{more}")
        }
    }
}

/// Parameters of a network with these layer sizes, or `None` if the count overflows.
pub fn param_count(sizes: &[usize]) -> Option<usize> {
    sizes.windows(2).try_fold(0usize, |acc, w| {
        w[0].checked_mul(w[1])?.checked_add(w[1])?.checked_add(acc)
    })
}

/// Parse and check the text of a `config.json`; `path` names it in errors. A configuration
/// written before models recorded their class names gets digits, which is what they were.
pub fn parse_config(text: &str, path: &Path) -> Result<RunConfig> {
    let path = path.to_path_buf();
    let mut config: RunConfig = serde_json::from_str(text)
        .map_err(|e| Error::model(&path, format!("not a valid mnist-mlp config.json: {e}")))?;
    if config.format != CONFIG_FORMAT {
        return Err(Error::model(
            &path,
            format!("format is '{}', expected '{CONFIG_FORMAT}'", config.format),
        ));
    }
    if config.version != CONFIG_VERSION {
        return Err(Error::model(
            &path,
            format!(
                "version {} is not supported; this mnist-mlp reads version {CONFIG_VERSION}",
                config.version
            ),
        ));
    }
    let sizes = &config.model.layer_sizes;
    if sizes.len() < 2 || sizes.contains(&0) {
        return Err(Error::model(
            &path,
            format!("layer_sizes {sizes:?}: expected at least two positive sizes"),
        ));
    }
    let params = param_count(sizes).filter(|&n| n <= MAX_MODEL_BYTES as usize / 4);
    if params.is_none() {
        return Err(Error::model(
            &path,
            format!(
                "layer_sizes {sizes:?} need more parameters than a model file may hold ({MAX_MODEL_BYTES} bytes)"
            ),
        ));
    }
    if config.model.image_rows.checked_mul(config.model.image_cols) != Some(sizes[0]) {
        return Err(Error::model(
            &path,
            format!(
                "input size {} does not match image_rows × image_cols = {}×{}",
                sizes[0], config.model.image_rows, config.model.image_cols
            ),
        ));
    }
    let outputs = sizes[sizes.len() - 1];
    let classes = &mut config.model.classes;
    if classes.is_empty() {
        *classes = crate::data::sets::digit_names(outputs);
    } else if classes.len() != outputs {
        return Err(Error::model(
            &path,
            format!(
                "classes names {} classes but the network has {outputs} outputs; give one name per output",
                classes.len()
            ),
        ));
    }
    Ok(config)
}

/// A model read back from disk.
pub struct Loaded {
    pub config: RunConfig,
    pub mlp: Mlp<f32>,
}

/// Read `config.json` and `model.safetensors` from `dir` and check that they agree.
pub fn load(dir: &Path) -> Result<Loaded> {
    let config = load_config(dir)?;
    let path = dir.join(MODEL_FILE);
    if !path.exists() {
        return Err(Error::model(
            dir,
            format!(
                "has {CONFIG_FILE} but no {MODEL_FILE}: a run writes its model when it has \
                 finished (`mnist-mlp train --resume {}` finishes an interrupted one)",
                dir.display()
            ),
        ));
    }
    let len = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?.len();
    if len > MAX_MODEL_BYTES {
        return Err(Error::model(
            &path,
            format!("is {len} bytes; refusing files over {MAX_MODEL_BYTES}"),
        ));
    }
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    from_parts(config, &bytes, &path)
}

/// A model from its checked configuration and the bytes of its safetensors file; `path` names
/// the file in errors.
pub fn from_parts(config: RunConfig, bytes: &[u8], path: &Path) -> Result<Loaded> {
    let path = path.to_path_buf();
    let tensors = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| Error::model(&path, format!("not a valid safetensors file: {e}")))?;
    let sizes = &config.model.layer_sizes;
    let n_layers = sizes.len() - 1;
    let expected: Vec<(String, Vec<usize>)> = sizes
        .windows(2)
        .enumerate()
        .flat_map(|(i, w)| [(weight_name(i), vec![w[1], w[0]]), (bias_name(i), vec![w[1]])])
        .collect();
    for name in tensors.names() {
        if !expected.iter().any(|(e, _)| e == name) {
            return Err(Error::model(
                &path,
                format!("unexpected tensor '{name}'; config.json describes {n_layers} layers"),
            ));
        }
    }
    // Check every tensor against config.json before allocating anything, so a config that
    // promises a huge network cannot make us allocate for it.
    for (name, shape) in &expected {
        let t = tensors
            .tensor(name)
            .map_err(|_| Error::model(&path, format!("missing tensor '{name}' (shape {shape:?}, f32)")))?;
        if t.dtype() != Dtype::F32 {
            return Err(Error::model(
                &path,
                format!("tensor '{name}' is {:?}, expected F32", t.dtype()),
            ));
        }
        if t.shape() != shape.as_slice() {
            return Err(Error::model(
                &path,
                format!(
                    "tensor '{name}' has shape {:?}, config.json expects {shape:?}",
                    t.shape()
                ),
            ));
        }
    }
    let mut mlp = Mlp::<f32>::new(sizes, config.model.activation);
    for (i, layer) in mlp.layers.clone().iter().enumerate() {
        for (name, range) in [(weight_name(i), layer.w_range()), (bias_name(i), layer.b_range())] {
            let t = tensors.tensor(&name).expect("checked above");
            for (dst, src) in mlp.params[range].iter_mut().zip(t.data().chunks_exact(4)) {
                *dst = f32::from_le_bytes([src[0], src[1], src[2], src[3]]);
            }
        }
    }
    if let Some(i) = mlp.params.iter().position(|v| !v.is_finite()) {
        return Err(Error::model(
            &path,
            format!("parameter #{i} is not finite ({})", mlp.params[i]),
        ));
    }
    Ok(Loaded { config, mlp })
}
