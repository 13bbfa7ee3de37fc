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

/// Every option of a training run, declared once: each field's doc comment is its `--help`
/// text, its `#[arg]` attribute its flag and default (`Default` parses an empty command line),
/// and its serde name its key in `config.json`. Fields added after the first configurations
/// were written have a serde default, so that older files still load.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    // The seed report does not give its sizes; 500,250,100 is our choice.
    /// Hidden layer sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "500,250,100", value_parser = layer_size,
          action = clap::ArgAction::Set)]
    pub hidden: Vec<usize>,
    /// Hidden activation: sigmoid, relu or tanh.
    #[arg(long, default_value_t = Activation::Relu)]
    pub activation: Activation,
    /// Weight initialisation: uniform (PyTorch's default), xavier, he, normal:SIGMA.
    #[arg(long, default_value_t = Init::Uniform)]
    pub init: Init,
    /// Update rule: sgd (the seed's momentum SGD), nesterov, adam or adamw.
    #[arg(long, default_value_t = Method::Sgd)]
    #[serde(default = "default_optimizer")]
    pub optimizer: Method,
    /// Learning rate α.
    #[arg(long, default_value_t = 0.01, allow_negative_numbers = true)]
    pub lr: f64,
    // The seed report does not give its μ.
    /// Momentum μ, in [0, 1) (sgd and nesterov).
    #[arg(long, default_value_t = 0.9, allow_negative_numbers = true)]
    pub momentum: f64,
    /// Adam's β₁ (adam and adamw).
    #[arg(long, default_value_t = 0.9, allow_negative_numbers = true)]
    #[serde(default = "default_beta1")]
    pub beta1: f64,
    /// Adam's β₂ (adam and adamw).
    #[arg(long, default_value_t = 0.999, allow_negative_numbers = true)]
    #[serde(default = "default_beta2")]
    pub beta2: f64,
    /// Adam's ε (adam and adamw).
    #[arg(long, default_value_t = 1e-8, allow_negative_numbers = true)]
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// L2 regularisation λ (0 turns it off); for adamw, the decoupled weight decay.
    #[arg(long, default_value_t = 0.005, allow_negative_numbers = true)]
    pub l2: f64,
    /// How λ·w enters the batch gradient: per-sample (λ·w) or per-batch (λ·w/N).
    #[arg(long, default_value_t = L2Mode::PerSample)]
    pub l2_mode: L2Mode,
    /// How per-sample losses are combined: mean or sum.
    #[arg(long, default_value_t = Reduction::Mean)]
    pub loss_reduction: Reduction,
    /// Minibatch size N.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Training iterations (minibatch updates).
    #[arg(long, default_value_t = 8000)]
    pub iterations: usize,
    /// Learning-rate schedule: constant, cosine, onecycle, onecycle:PCT, or step:GAMMA:EVERY (the seed's
    /// is step:0.85:250).
    #[arg(long, default_value_t = Schedule::Constant)]
    pub schedule: Schedule,
    /// Linear learning-rate warm-up over the first N iterations, before the schedule.
    #[arg(long, value_name = "N", default_value_t = 0)]
    #[serde(default)]
    pub warmup: usize,
    /// Dropout probability of the hidden layers' outputs (inverted dropout; 0 = off).
    #[arg(long, value_name = "P", default_value_t = 0.0, allow_negative_numbers = true)]
    #[serde(default)]
    pub dropout: f64,
    /// Dropout probability of the input pixels (0 = off).
    #[arg(long, value_name = "P", default_value_t = 0.0, allow_negative_numbers = true)]
    #[serde(default)]
    pub input_dropout: f64,
    /// Max-norm constraint: rescale each unit's incoming weights to at most this L2 norm after
    /// every update (off unless given).
    #[arg(long, value_name = "C", allow_negative_numbers = true)]
    #[serde(default)]
    pub max_norm: Option<f64>,
    /// Hold out the last N training images for validation: the learning curves are measured on
    /// them, and the test set is evaluated once, at the end.
    #[arg(long, value_name = "N", default_value_t = 0)]
    #[serde(default)]
    pub validation: usize,
    /// With --validation: keep the parameters of the evaluation with the best validation
    /// accuracy, and test and save those instead of the last.
    #[arg(long)]
    #[serde(default)]
    pub keep_best: bool,
    /// Random distortion of each training image as it is drawn: none, or any of
    /// shift=PIXELS, rotate=DEGREES, scale=FRACTION, shear=DEGREES, elastic=ALPHA or ALPHA:SIGMA
    /// (Simard et al. 2003 used elastic=34:4), comma-separated.
    #[arg(long, value_name = "SPEC", default_value_t = Augment::default())]
    #[serde(default)]
    pub augment: Augment,
    /// Seed for initialisation and shuffling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Evaluate on the full test set every this many iterations.
    #[arg(long, default_value_t = 500)]
    pub eval_every: usize,
    /// Threads for the matrix products (default: all cores).
    #[arg(long, default_value_t = available_threads())]
    pub threads: usize,
    /// Step implementation: auto (fused AVX2 kernels where available, their products in
    /// 512-bit registers where AVX-512 is), avx2, avx512 (the same bits as avx2), or
    /// reference.
    #[arg(long, default_value_t = Kernels::Auto)]
    #[serde(default = "default_kernels")]
    pub kernels: Kernels,
    /// Data set: mnist or fashion-mnist. Chooses the cache (without --data-dir) and the class
    /// names the model records.
    #[arg(long, default_value_t = DatasetKind::Mnist)]
    #[serde(default)]
    pub dataset: DatasetKind,
    /// Directory holding the four IDX files (default: the cache of --dataset; no checksums).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// A hidden layer's size, as `--hidden` lists them.
fn layer_size(s: &str) -> std::result::Result<usize, String> {
    s.trim().parse().map_err(|_| {
        format!("'{s}' is not a layer size; expected a comma-separated list of sizes, e.g. 500,250,100")
    })
}

// The serde defaults of the fields added later: the same values as the flags'.
fn default_kernels() -> Kernels {
    TrainConfig::default().kernels
}
fn default_optimizer() -> Method {
    TrainConfig::default().optimizer
}
fn default_beta1() -> f64 {
    TrainConfig::default().beta1
}
fn default_beta2() -> f64 {
    TrainConfig::default().beta2
}
fn default_eps() -> f64 {
    TrainConfig::default().eps
}

/// The logical cores this process may use, up to [`MAX_THREADS`]: the default of every
/// thread-count flag.
pub fn available_threads() -> usize {
    logical_cores().min(MAX_THREADS)
}

fn logical_cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// The most threads any thread-count flag takes (`--threads`, `--workers`, `--jobs`): more
/// than the logical cores of the largest machines, and few enough that the OS starts them.
pub const MAX_THREADS: usize = 1024;

/// A thread count given by `flag`: an error naming it unless `n` is 1 to [`MAX_THREADS`].
pub fn check_threads(flag: &str, n: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::flag(flag, "must be at least 1"));
    }
    if n > MAX_THREADS {
        return Err(Error::flag(
            flag,
            format!(
                "{n} is more than {MAX_THREADS}; expected 1 to {MAX_THREADS} (this machine has {} \
                 logical cores)",
                logical_cores()
            ),
        ));
    }
    Ok(())
}

impl Default for TrainConfig {
    /// The flags' defaults: an empty command line.
    fn default() -> Self {
        use clap::{Args, FromArgMatches};
        let cmd = TrainConfig::augment_args(clap::Command::new("defaults").no_binary_name(true));
        let matches = cmd
            .try_get_matches_from(std::iter::empty::<&str>())
            .expect("every option has a default");
        TrainConfig::from_arg_matches(&matches).expect("the defaults are valid values")
    }
}

impl TrainConfig {
    /// Reject values no run can use, naming the flag.
    pub fn validate(&self) -> Result<()> {
        self.validate_network()?;
        self.validate_rule()?;
        self.validate_regularisation()?;
        self.validate_schedule()
    }

    /// The hidden layers' sizes.
    fn validate_network(&self) -> Result<()> {
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
        Ok(())
    }

    /// The update rule's constants: α, μ, λ, β₁, β₂, ε.
    fn validate_rule(&self) -> Result<()> {
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
        Ok(())
    }

    /// Dropout probabilities and the max-norm bound.
    fn validate_regularisation(&self) -> Result<()> {
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
        Ok(())
    }

    /// The run's course: warm-up, augmentation, best-of selection, batch, iterations,
    /// evaluations and threads.
    fn validate_schedule(&self) -> Result<()> {
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
        check_threads("--threads", self.threads)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Args, FromArgMatches};

    fn parse(args: &[&str]) -> std::result::Result<TrainConfig, clap::Error> {
        let cmd =
            TrainConfig::augment_args(clap::Command::new("t").no_binary_name(true)).args_override_self(true);
        TrainConfig::from_arg_matches(&cmd.try_get_matches_from(args)?)
    }

    #[test]
    fn the_defaults_are_the_seed_reports_where_it_gives_them() {
        let d = TrainConfig::default();
        assert_eq!(d.hidden, [500, 250, 100]);
        assert_eq!(
            (d.activation, d.init, d.optimizer),
            (Activation::Relu, Init::Uniform, Method::Sgd)
        );
        assert_eq!((d.lr, d.momentum, d.l2), (0.01, 0.9, 0.005));
        assert_eq!((d.beta1, d.beta2, d.eps), (0.9, 0.999, 1e-8));
        assert_eq!(
            (d.batch_size, d.iterations, d.eval_every, d.seed),
            (64, 8000, 500, 0)
        );
        assert_eq!(
            (d.l2_mode, d.loss_reduction),
            (L2Mode::PerSample, Reduction::Mean)
        );
        assert_eq!(
            (d.schedule, d.warmup, d.validation, d.keep_best),
            (Schedule::Constant, 0, 0, false)
        );
        assert_eq!((d.dropout, d.input_dropout, d.max_norm), (0.0, 0.0, None));
        assert_eq!(
            (d.augment.clone(), d.kernels, d.dataset),
            (Augment::default(), Kernels::Auto, DatasetKind::Mnist)
        );
        assert_eq!((d.threads, d.data_dir.clone()), (available_threads(), None));
        d.validate().unwrap();
    }

    #[test]
    fn a_config_json_without_the_later_fields_loads_with_the_flags_defaults() {
        let mut json = serde_json::to_value(TrainConfig {
            lr: 0.5,
            ..TrainConfig::default()
        })
        .unwrap();
        let obj = json.as_object_mut().unwrap();
        for later in [
            "optimizer",
            "beta1",
            "beta2",
            "eps",
            "warmup",
            "dropout",
            "input_dropout",
            "max_norm",
            "validation",
            "keep_best",
            "augment",
            "kernels",
            "dataset",
        ] {
            obj.remove(later).unwrap();
        }
        let loaded: TrainConfig = serde_json::from_value(json).unwrap();
        assert_eq!(
            loaded,
            TrainConfig {
                lr: 0.5,
                ..TrainConfig::default()
            }
        );
        // The fields every configuration has had are required.
        let mut json = serde_json::to_value(TrainConfig::default()).unwrap();
        json.as_object_mut().unwrap().remove("lr").unwrap();
        let e = serde_json::from_value::<TrainConfig>(json)
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing field `lr`"), "{e}");
    }

    #[test]
    fn hidden_takes_one_comma_separated_list_and_the_last_one_given() {
        assert_eq!(parse(&["--hidden", "7, 3"]).unwrap().hidden, [7, 3]);
        assert_eq!(
            parse(&["--hidden", "5", "--hidden", "7,3"]).unwrap().hidden,
            [7, 3]
        );
        let e = parse(&["--hidden", "500,x"]).unwrap_err().to_string();
        assert!(
            e.contains("'x' is not a layer size") && e.contains("500,250,100"),
            "{e}"
        );
    }
}
