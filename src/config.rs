//! Configuration: one struct with every training option, its defaults in one place, its
//! validation, and the `config.json` that is saved beside every model and read back by `eval`.
//!
//! Configuration flows one way: command line → [`TrainConfig`] → validated → printed at start
//! → saved as `config.json` → reloaded by `eval`.

use crate::data::DatasetKind;
use crate::data::augment::Augment;
use crate::error::{Error, Result};
use crate::nn::{Activation, Init};
use crate::optim::{L2Mode, Method, Optimizer, Schedule};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// How the per-sample losses of a batch are combined before differentiating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    /// `E = (1/N) Σ_n E_n`: the seed's `(1/N) Σ` in every update. The default.
    Mean,
    /// `E = Σ_n E_n`: N times larger steps for the data term (the L2 term is unchanged).
    Sum,
}

crate::named_enum!(Reduction, "loss reduction", {
    Reduction::Mean => "mean",
    Reduction::Sum => "sum",
});

/// Which implementation of the step runs (see `kernels::engine`). The math is the same; the
/// rounding, and so the exact bits of a model, differ between them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernels {
    /// The fused kernels where the CPU has AVX2 and FMA (with 512-bit registers where it also
    /// has AVX-512), else the reference code.
    Auto,
    Avx2,
    /// `Avx2`'s kernels, the matrix products in 512-bit registers: the same bits.
    Avx512,
    Reference,
}

impl Kernels {
    pub fn resolve(self) -> Result<crate::kernels::Backend> {
        use crate::kernels::Backend;
        match self {
            Kernels::Auto => Ok(Backend::detect()),
            Kernels::Reference => Ok(Backend::Reference),
            Kernels::Avx2 if Backend::Avx2.available() => Ok(Backend::Avx2),
            Kernels::Avx2 => Err(Error::flag(
                "--kernels",
                "avx2 needs an x86-64 CPU with AVX2 and FMA; use auto or reference",
            )),
            Kernels::Avx512 if Backend::Avx512.available() => Ok(Backend::Avx512),
            Kernels::Avx512 => Err(Error::flag(
                "--kernels",
                "avx512 needs an x86-64 CPU with AVX2, FMA, AVX-512F and AVX-512DQ; use auto, avx2 or reference",
            )),
        }
    }
}

crate::named_enum!(Kernels, "kernels", {
    Kernels::Auto => "auto",
    Kernels::Avx2 => "avx2",
    Kernels::Avx512 => "avx512",
    Kernels::Reference => "reference",
});

/// Every option of a training run. `Default` holds the project's defaults, the seed's
/// hyper-parameters where the seed gives them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Hidden layer widths (the seed's figure is lost; 500-250-100 is our choice).
    pub hidden: Vec<usize>,
    pub activation: Activation,
    pub init: Init,
    /// The update rule: the seed's momentum SGD, Nesterov, Adam or AdamW.
    #[serde(default = "default_optimizer")]
    pub optimizer: Method,
    /// α
    pub lr: f64,
    /// μ, for sgd and nesterov (the seed does not give it).
    pub momentum: f64,
    /// Adam's β₁, β₂ and ε.
    #[serde(default = "default_beta1")]
    pub beta1: f64,
    #[serde(default = "default_beta2")]
    pub beta2: f64,
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// λ
    pub l2: f64,
    pub l2_mode: L2Mode,
    pub loss_reduction: Reduction,
    /// N
    pub batch_size: usize,
    pub iterations: usize,
    pub schedule: Schedule,
    /// Iterations of linear warm-up from α/warmup to α before the schedule starts.
    #[serde(default)]
    pub warmup: usize,
    /// Dropout probability of every hidden layer's output (inverted dropout; 0 = off).
    #[serde(default)]
    pub dropout: f64,
    /// Dropout probability of the input pixels (0 = off).
    #[serde(default)]
    pub input_dropout: f64,
    /// Max-norm constraint: after every update, each unit's incoming weight vector (a row of
    /// W) is scaled back to this L2 norm if it is longer. `None` = off.
    #[serde(default)]
    pub max_norm: Option<f64>,
    /// Hold out this many of the training images (the last ones) as a validation set: the
    /// learning curves are then measured on it, and the test set is used once, at the end.
    #[serde(default)]
    pub validation: usize,
    /// With a validation split: keep the parameters of the evaluation with the best validation
    /// accuracy (the first, on ties) instead of the last, and test and save those.
    #[serde(default)]
    pub keep_best: bool,
    /// Random distortion of every training image as it is drawn (`none` = off).
    #[serde(default)]
    pub augment: Augment,
    pub seed: u64,
    /// Evaluate on the full test set every this many iterations (and at the end).
    pub eval_every: usize,
    /// Threads for the matrix products. Results are bit-identical for the same seed and the
    /// same thread count.
    pub threads: usize,
    /// Which implementation of the step runs.
    #[serde(default = "default_kernels")]
    pub kernels: Kernels,
    /// Which data set: its cache (without `data_dir`) and its class names. Absent from
    /// configurations written before there was a choice, which were all MNIST.
    #[serde(default)]
    pub dataset: DatasetKind,
    /// Where the four IDX files are; `None` = the cache of `dataset`.
    pub data_dir: Option<PathBuf>,
}

fn default_kernels() -> Kernels {
    Kernels::Auto
}
fn default_optimizer() -> Method {
    Method::Sgd
}
fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.999
}
fn default_eps() -> f64 {
    1e-8
}

pub fn available_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            hidden: vec![500, 250, 100],
            activation: Activation::Relu,
            init: Init::Uniform,
            optimizer: default_optimizer(),
            lr: 0.01,
            momentum: 0.9,
            beta1: default_beta1(),
            beta2: default_beta2(),
            eps: default_eps(),
            l2: 0.005,
            l2_mode: L2Mode::PerSample,
            loss_reduction: Reduction::Mean,
            batch_size: 64,
            iterations: 8000,
            schedule: Schedule::Constant,
            warmup: 0,
            dropout: 0.0,
            input_dropout: 0.0,
            max_norm: None,
            validation: 0,
            keep_best: false,
            augment: Augment::default(),
            seed: 0,
            eval_every: 500,
            threads: available_threads(),
            kernels: Kernels::Auto,
            dataset: DatasetKind::Mnist,
            data_dir: None,
        }
    }
}

impl TrainConfig {
    /// Reject values no run can use, naming the flag.
    pub fn validate(&self) -> Result<()> {
        if self.hidden.is_empty() {
            return Err(Error::flag(
                "--hidden",
                "needs at least one hidden layer size, e.g. 500,250,100",
            ));
        }
        if let Some(i) = self.hidden.iter().position(|&h| h == 0) {
            return Err(Error::flag(
                "--hidden",
                format!("layer {} has size 0; sizes must be positive", i + 1),
            ));
        }
        if self.hidden.iter().any(|&h| h > 1 << 16) {
            return Err(Error::flag("--hidden", "sizes above 65536 are not supported"));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(Error::flag(
                "--lr",
                format!("must be a positive number, got {}", self.lr),
            ));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(Error::flag(
                "--momentum",
                format!("must be in [0, 1), got {}", self.momentum),
            ));
        }
        if !(self.l2 >= 0.0 && self.l2.is_finite()) {
            return Err(Error::flag(
                "--l2",
                format!("must be zero or positive, got {}", self.l2),
            ));
        }
        for (flag, beta) in [("--beta1", self.beta1), ("--beta2", self.beta2)] {
            if !(0.0..1.0).contains(&beta) {
                return Err(Error::flag(flag, format!("must be in [0, 1), got {beta}")));
            }
        }
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            return Err(Error::flag(
                "--eps",
                format!("must be a positive number, got {}", self.eps),
            ));
        }
        for (flag, p) in [
            ("--dropout", self.dropout),
            ("--input-dropout", self.input_dropout),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(Error::flag(
                    flag,
                    format!("is a probability of dropping and must be in [0, 1), got {p}"),
                ));
            }
        }
        if let Some(c) = self.max_norm.filter(|c| !(*c > 0.0 && c.is_finite())) {
            return Err(Error::flag(
                "--max-norm",
                format!("must be a positive number, got {c}"),
            ));
        }
        if self.warmup > 0 && self.warmup >= self.iterations {
            return Err(Error::flag(
                "--warmup",
                format!(
                    "{} warm-up iterations leave none of the {} iterations for the schedule",
                    self.warmup, self.iterations
                ),
            ));
        }
        self.augment.validate()?;
        if self.keep_best && self.validation == 0 {
            return Err(Error::flag(
                "--keep-best",
                "selects on the validation set, so it needs --validation N",
            ));
        }
        if self.batch_size == 0 {
            return Err(Error::flag("--batch-size", "must be at least 1"));
        }
        if self.iterations == 0 {
            return Err(Error::flag("--iterations", "must be at least 1"));
        }
        if self.eval_every == 0 {
            return Err(Error::flag("--eval-every", "must be at least 1"));
        }
        if self.threads == 0 {
            return Err(Error::flag("--threads", "must be at least 1"));
        }
        Ok(())
    }

    /// `[input, hidden…, classes]`
    pub fn layer_sizes(&self, input: usize, classes: usize) -> Vec<usize> {
        let mut sizes = vec![input];
        sizes.extend(&self.hidden);
        sizes.push(classes);
        sizes
    }

    pub fn optimizer(&self) -> Optimizer {
        Optimizer {
            method: self.optimizer,
            momentum: self.momentum,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            l2: self.l2,
            l2_mode: self.l2_mode,
        }
    }

    /// α for the update that takes iteration `t` (0-based) to `t + 1`: the warm-up ramp, then
    /// the schedule over the remaining iterations.
    pub fn lr_at(&self, t: usize) -> f64 {
        crate::optim::schedule::with_warmup(self.schedule, self.lr, self.warmup, t, self.iterations)
    }

    /// The factor that turns the summed batch gradient into the one the update uses.
    pub fn loss_scale(&self, batch: usize) -> f64 {
        match self.loss_reduction {
            Reduction::Mean => 1.0 / batch as f64,
            Reduction::Sum => 1.0,
        }
    }

    /// Human-readable, one option per line, printed at the start of a run.
    pub fn describe(&self) -> String {
        let hidden: Vec<String> = self.hidden.iter().map(|h| h.to_string()).collect();
        let data = match (&self.data_dir, self.dataset) {
            (Some(d), DatasetKind::Mnist) => d.display().to_string(),
            (Some(d), kind) => format!("{} (class names of {kind})", d.display()),
            (None, kind) => format!("{} cache ({})", kind.title(), kind.cache_dir().display()),
        };
        let mut lines: Vec<(&str, String)> = vec![
            ("hidden", hidden.join(",")),
            ("activation", self.activation.to_string()),
            ("init", self.init.to_string()),
            ("optimizer", self.optimizer.to_string()),
            ("lr", self.lr.to_string()),
        ];
        if self.optimizer.has_second_moment() {
            lines.push((
                "betas, eps",
                format!("{}, {}, {}", self.beta1, self.beta2, self.eps),
            ));
        } else {
            lines.push(("momentum", self.momentum.to_string()));
        }
        let decay = if self.optimizer == Method::AdamW {
            "decoupled decay"
        } else {
            "l2"
        };
        lines.extend([
            (decay, format!("{} ({})", self.l2, self.l2_mode)),
            ("loss", format!("{} over the batch", self.loss_reduction)),
            ("batch size", self.batch_size.to_string()),
            ("iterations", self.iterations.to_string()),
            ("schedule", self.schedule.to_string()),
        ]);
        if self.warmup > 0 {
            lines.push(("warm-up", format!("{} iterations", self.warmup)));
        }
        if self.dropout > 0.0 || self.input_dropout > 0.0 {
            lines.push((
                "dropout",
                format!("{} hidden, {} input", self.dropout, self.input_dropout),
            ));
        }
        if let Some(c) = self.max_norm {
            lines.push(("max-norm", c.to_string()));
        }
        if !self.augment.is_identity() {
            lines.push(("augment", self.augment.to_string()));
        }
        if self.validation > 0 {
            let keep = if self.keep_best {
                "; the best evaluation's parameters are kept"
            } else {
                ""
            };
            lines.push((
                "validation",
                format!("last {} training images{keep}", self.validation),
            ));
        }
        lines.extend([
            ("seed", self.seed.to_string()),
            ("eval every", self.eval_every.to_string()),
            ("threads", self.threads.to_string()),
            ("kernels", self.kernels.to_string()),
            ("data", data),
        ]);
        lines
            .iter()
            .map(|(k, v)| format!("  {k:<12} {v}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The architecture a model file holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// `[input, hidden…, classes]`
    pub layer_sizes: Vec<usize>,
    pub activation: Activation,
    pub image_rows: usize,
    pub image_cols: usize,
    /// The name of each output, in order (`"0"`…`"9"` for MNIST, `"T-shirt/top"`… for
    /// Fashion-MNIST). Models saved before this field existed read as digits (see
    /// `model::parse_config`).
    #[serde(default)]
    pub classes: Vec<String>,
}

pub const CONFIG_FORMAT: &str = "mnist-mlp";
pub const CONFIG_VERSION: u32 = 1;

/// The contents of `config.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// Always `"mnist-mlp"`.
    pub format: String,
    /// Version of this file's layout.
    pub version: u32,
    /// The version of mnist-mlp that wrote it.
    pub tool_version: String,
    pub model: ModelSpec,
    pub train: TrainConfig,
}

impl RunConfig {
    pub fn new(model: ModelSpec, train: TrainConfig) -> Self {
        RunConfig {
            format: CONFIG_FORMAT.to_string(),
            version: CONFIG_VERSION,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            model,
            train,
        }
    }
}
