//! Per-layer statistics of a network while it learns, recorded in `layers.csv` at every
//! evaluation: what the learning curves do not show, such as gradients that vanish in a deep
//! sigmoid network or ReLU units that die.
//!
//! At each evaluation one fixed batch (the first [`PROBE_BATCH`] training images) goes through
//! the readable [`Mlp`] forward and backward pass, so the figures come from the report's
//! equations themselves and do not depend on the fast path or the thread count. For each hidden
//! layer h = 1, 2, … (the weights `W` feeding it, and its output `a^h`):
//!
//! | column | meaning |
//! |---|---|
//! | `iteration` | the evaluation's iteration, as in `metrics.csv` |
//! | `layer` | h, from 1 (the first hidden layer) |
//! | `weight_norm` | ‖W‖, the Frobenius norm of the weights feeding layer h |
//! | `grad_norm` | ‖∂E/∂W‖ of the batch-mean cross-entropy on the probe batch (no L2 term) |
//! | `update_ratio` | ‖ΔW‖ / ‖W‖ of the last step before the evaluation |
//! | `mean_activation` | the mean of `a^h` over the batch and the units |
//! | `saturated` | sigmoid and tanh: the fraction of outputs within 0.02 of a bound; ReLU: the fraction of units that are 0 on every image of the batch (dead) |
//! | `mean_abs_df` | the mean of \|f′(z^h)\| over the batch and the units |

use crate::error::{Error, Result};
use crate::nn::{Activation, Mlp, Workspace};
use std::path::Path;

/// Images in the probe batch: one default batch. Its forward and backward pass through the
/// readable code take about 3 ms for the seed network on one core, under 1% of the training
/// time between two evaluations at the default interval.
pub const PROBE_BATCH: usize = 64;

/// Outputs within this distance of a sigmoid's or tanh's bounds count as saturated.
pub const SATURATION_MARGIN: f64 = 0.02;

pub const LAYERS_HEADER: &str =
    "iteration,layer,weight_norm,grad_norm,update_ratio,mean_activation,saturated,mean_abs_df";

/// One hidden layer at one evaluation; see the module's table.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerRow {
    pub iteration: usize,
    pub layer: usize,
    pub weight_norm: f64,
    pub grad_norm: f64,
    pub update_ratio: f64,
    pub mean_activation: f64,
    pub saturated: f64,
    pub mean_abs_df: f64,
}

/// The fixed probe batch and the buffers to measure a network on it.
pub struct Probe {
    labels: Vec<u8>,
    ws: Workspace<f32>,
    grads: Vec<f32>,
    /// The parameters before the last step, for `update_ratio`.
    before: Vec<f32>,
}

impl Probe {
    /// A probe of `mlp`'s shape on the images `x` (row-major, `mlp.sizes[0]` values each, at
    /// most [`PROBE_BATCH`] of them) with their `labels`.
    pub fn new(mlp: &Mlp<f32>, x: &[f32], labels: &[u8]) -> Probe {
        let batch = labels.len();
        assert!(batch > 0 && batch <= PROBE_BATCH);
        assert_eq!(x.len(), batch * mlp.sizes[0], "probe images and labels disagree");
        let mut ws = Workspace::new(&mlp.sizes, batch);
        ws.input_mut(batch).copy_from_slice(x);
        Probe {
            labels: labels.to_vec(),
            ws,
            grads: vec![0.0; mlp.params.len()],
            before: Vec::new(),
        }
    }

    /// Remember the parameters before a step, whose update the next [`Probe::measure`] reports.
    pub fn remember(&mut self, params: &[f32]) {
        self.before.clear();
        self.before.extend_from_slice(params);
    }

    /// The rows of every hidden layer of `mlp` at `iteration`.
    pub fn measure(&mut self, mlp: &Mlp<f32>, iteration: usize) -> Vec<LayerRow> {
        let batch = self.labels.len();
        // The input rows stay as they were written: forward reads acts[0] and never writes it.
        mlp.forward_loss(&mut self.ws, &self.labels);
        mlp.backward(&mut self.ws, &self.labels, 1.0 / batch as f32, &mut self.grads);
        let hidden = mlp.layers.len() - 1;
        (0..hidden)
            .map(|l| {
                let layer = &mlp.layers[l];
                let w = &mlp.params[layer.w_range()];
                let weight_norm = norm(w.iter().map(|&v| v as f64));
                let grad_norm = norm(self.grads[layer.w_range()].iter().map(|&v| v as f64));
                let update_ratio = if self.before.len() == mlp.params.len() {
                    let before = &self.before[layer.w_range()];
                    norm(w.iter().zip(before).map(|(&a, &b)| a as f64 - b as f64)) / weight_norm
                } else {
                    f64::NAN
                };
                let width = layer.fan_out;
                let a = &self.ws.acts[l + 1][..batch * width];
                let n = a.len() as f64;
                let mean_activation = a.iter().map(|&v| v as f64).sum::<f64>() / n;
                let saturated = saturation(mlp.activation, a, width);
                let mean_abs_df = a.iter().map(|&v| mlp.activation.df(v as f64).abs()).sum::<f64>() / n;
                LayerRow {
                    iteration,
                    layer: l + 1,
                    weight_norm,
                    grad_norm,
                    update_ratio,
                    mean_activation,
                    saturated,
                    mean_abs_df,
                }
            })
            .collect()
    }
}

fn norm(values: impl Iterator<Item = f64>) -> f64 {
    values.map(|v| v * v).sum::<f64>().sqrt()
}

/// See the module's table: a fraction of outputs (sigmoid, tanh) or of units (ReLU).
fn saturation(activation: Activation, a: &[f32], width: usize) -> f64 {
    match activation {
        Activation::Sigmoid | Activation::Tanh => {
            let low = if activation == Activation::Sigmoid {
                0.0
            } else {
                -1.0
            };
            let near = |v: f32| {
                let v = v as f64;
                v - low <= SATURATION_MARGIN || 1.0 - v <= SATURATION_MARGIN
            };
            a.iter().filter(|&&v| near(v)).count() as f64 / a.len() as f64
        }
        Activation::Relu => {
            let dead = (0..width)
                .filter(|&j| a.iter().skip(j).step_by(width).all(|&v| v == 0.0))
                .count();
            dead as f64 / width as f64
        }
    }
}

/// `layers.csv`: the header and one line per row.
pub fn to_csv(rows: &[LayerRow]) -> String {
    let mut s = String::from(LAYERS_HEADER);
    s.push('\n');
    for r in rows {
        s.push_str(&format!(
            "{},{},{},{},{},{},{},{}\n",
            r.iteration,
            r.layer,
            r.weight_norm,
            r.grad_norm,
            r.update_ratio,
            r.mean_activation,
            r.saturated,
            r.mean_abs_df
        ));
    }
    s
}

/// Read `layers.csv` back (what `to_csv` wrote).
pub fn read(path: &Path) -> Result<Vec<LayerRow>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse(&text).map_err(|msg| Error::io(path, std::io::Error::new(std::io::ErrorKind::InvalidData, msg)))
}

fn parse(text: &str) -> std::result::Result<Vec<LayerRow>, String> {
    let mut lines = text.lines();
    match lines.next() {
        Some(h) if h == LAYERS_HEADER => {}
        other => return Err(format!("header is {other:?}, expected \"{LAYERS_HEADER}\"")),
    }
    lines
        .enumerate()
        .map(|(i, line)| {
            let f: Vec<&str> = line.split(',').collect();
            let bad = || format!("line {}: '{line}' is not {} comma-separated numbers", i + 2, 8);
            if f.len() != 8 {
                return Err(bad());
            }
            let int = |s: &str| s.parse::<usize>().map_err(|_| bad());
            let num = |s: &str| s.parse::<f64>().map_err(|_| bad());
            Ok(LayerRow {
                iteration: int(f[0])?,
                layer: int(f[1])?,
                weight_norm: num(f[2])?,
                grad_norm: num(f[3])?,
                update_ratio: num(f[4])?,
                mean_activation: num(f[5])?,
                saturated: num(f[6])?,
                mean_abs_df: num(f[7])?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::Init;
    use crate::rng::Rng;

    fn network(activation: Activation) -> Mlp<f32> {
        let mut mlp = Mlp::new(&[6, 4, 3, 2], activation);
        mlp.init(Init::Xavier, &mut Rng::new(7, 0));
        mlp
    }

    fn probe_data() -> (Vec<f32>, Vec<u8>) {
        let x: Vec<f32> = (0..5 * 6).map(|i| ((i * 7) % 11) as f32 / 10.0).collect();
        (x, vec![0, 1, 1, 0, 1])
    }

    #[test]
    fn every_column_matches_a_direct_computation() {
        for activation in [Activation::Sigmoid, Activation::Relu, Activation::Tanh] {
            let mlp = network(activation);
            let (x, labels) = probe_data();
            let mut probe = Probe::new(&mlp, &x, &labels);
            let mut moved = mlp.clone();
            probe.remember(&mlp.params);
            for (i, p) in moved.params.iter_mut().enumerate() {
                *p += 0.001 * (i % 3) as f32;
            }
            let rows = probe.measure(&moved, 40);
            assert_eq!(rows.len(), 2);

            // The same figures, by hand, in f64 from the definitions.
            let mut ws = Workspace::new(&moved.sizes, 5);
            ws.input_mut(5).copy_from_slice(&x);
            moved.forward_loss(&mut ws, &labels);
            let mut grads = vec![0.0f32; moved.params.len()];
            moved.backward(&mut ws, &labels, 0.2, &mut grads);
            for (l, row) in rows.iter().enumerate() {
                let layer = &moved.layers[l];
                let w = &moved.params[layer.w_range()];
                let sq = |v: &[f32]| v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
                let delta: Vec<f32> = w
                    .iter()
                    .zip(&mlp.params[layer.w_range()])
                    .map(|(a, b)| a - b)
                    .collect();
                let a = &ws.acts[l + 1][..5 * layer.fan_out];
                assert_eq!((row.iteration, row.layer), (40, l + 1));
                assert!((row.weight_norm - sq(w)).abs() < 1e-12);
                assert!((row.grad_norm - sq(&grads[layer.w_range()])).abs() < 1e-12);
                assert!((row.update_ratio - sq(&delta) / sq(w)).abs() < 1e-6);
                let mean = a.iter().map(|&v| v as f64).sum::<f64>() / a.len() as f64;
                assert!((row.mean_activation - mean).abs() < 1e-12);
                let df = a.iter().map(|&v| activation.df(v as f64).abs()).sum::<f64>() / a.len() as f64;
                assert!((row.mean_abs_df - df).abs() < 1e-12);
                assert!((0.0..=1.0).contains(&row.saturated));
            }
        }
    }

    #[test]
    fn saturation_counts_outputs_near_the_bounds_and_dead_relu_units() {
        // Sigmoid: 0.01 and 0.99 are within 0.02 of a bound, 0.5 and 0.97 are not.
        assert_eq!(saturation(Activation::Sigmoid, &[0.01, 0.5, 0.99, 0.97], 2), 0.5);
        // Tanh: −0.99 is near −1.
        assert_eq!(saturation(Activation::Tanh, &[-0.99, 0.0, 0.5, 0.985], 2), 0.5);
        // ReLU, 3 units × 2 images: unit 1 is 0 on both images, unit 0 only on one.
        assert_eq!(
            saturation(Activation::Relu, &[0.0, 0.0, 1.0, 2.0, 0.0, 0.0], 3),
            1.0 / 3.0
        );
    }

    #[test]
    fn the_csv_reads_back_to_the_same_rows() {
        let mlp = network(Activation::Relu);
        let (x, labels) = probe_data();
        let mut probe = Probe::new(&mlp, &x, &labels);
        let mut rows = probe.measure(&mlp, 0);
        probe.remember(&mlp.params);
        rows.extend(probe.measure(&mlp, 10));
        assert!(
            rows[0].update_ratio.is_nan(),
            "no step before the first evaluation"
        );
        let back = parse(&to_csv(&rows)).unwrap();
        assert_eq!(to_csv(&back), to_csv(&rows));
        assert!(parse("iteration,layer\n").is_err());
        let err = parse(&format!("{LAYERS_HEADER}\n1,2,x,4,5,6,7,8\n")).unwrap_err();
        assert!(err.contains("line 2"), "{err}");
    }
}
