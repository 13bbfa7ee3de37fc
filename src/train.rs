//! The training loop: draw a batch (distorted, with `--augment`), forward, loss, backward,
//! update; evaluate on the test set (or the validation split) every `eval_every` iterations;
//! write the run's files.

use crate::checkpoint::{Checkpoint, DataShape, State};
use crate::config::{ModelSpec, RunConfig, TrainConfig};
use crate::data::augment::Augmenter;
use crate::data::{Batches, Dataset, Split};
use crate::error::{Error, Result};
use crate::eval::{Evaluation, evaluate};
use crate::fsutil::write_atomic;
use crate::kernels::{Engine, StepParams};
use crate::layerstats::{self, LayerRow, Probe};
use crate::model;
use crate::nn::{Mlp, Workspace};
use crate::preprocess::{PIXELS, SIDE};
use crate::records::{self, MetricsRow, Summary};
use crate::rng::{Rng, stream};
use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Images per forward pass when evaluating.
pub const EVAL_CHUNK: usize = 1000;

/// A batch-mean cross-entropy above this many nats stops a run as diverged, as a non-finite one
/// does. The true class then has a probability below e^-10000, far under the smallest f32
/// (about e^-104), so the loss no longer measures anything; and whether the sums that follow
/// overflow to ±inf and NaN, or stay finite at 1e36, depends on the order in which a kernel adds.
/// Without this bound the reference and the fast kernels could end the same run differently.
pub const DIVERGED_LOSS: f64 = 1e4;

/// How a run reports progress on stderr.
#[derive(Clone, Debug)]
pub enum Progress {
    /// A live bar (when stderr is a terminal); the caller may hand in a bar of its own (the
    /// study shows one per running run).
    Bar(indicatif::ProgressBar),
    /// One line per evaluation (logs, CI, pipes).
    Lines,
    Quiet,
}

impl Progress {
    /// A bar when stderr is a terminal, else lines.
    pub fn auto(total: usize) -> Self {
        if std::io::stderr().is_terminal() {
            Progress::Bar(new_bar(total, ""))
        } else {
            Progress::Lines
        }
    }
}

/// A progress bar in the project's style: position, rate, ETA, and a message.
pub fn new_bar(total: usize, prefix: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix:<22} {bar:28.cyan/blue} {pos:>5}/{len} it  {rate:>9}  ETA {eta:>3}  {msg}",
        )
        .expect("valid template")
        .with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0} it/s", state.per_sec());
            },
        )
        .progress_chars("█▉▊▋▌▍▎▏ "),
    );
    bar.set_prefix(prefix.to_string());
    bar
}

/// All state of a run in progress.
pub struct Trainer<'a> {
    pub cfg: TrainConfig,
    pub data: &'a Dataset,
    /// The images trained on: all of `data.train`, or its first part with `--validation`.
    pub train: std::borrow::Cow<'a, Split>,
    /// The held-out validation images (the last `cfg.validation` of `data.train`), if any.
    pub validation: Option<Split>,
    pub mlp: Mlp<f32>,
    /// ∂E/∂θ of the last batch, same layout as `mlp.params`.
    pub grads: Vec<f32>,
    /// The optimizer's first state vector, same layout as `mlp.params`: the velocity v of SGD
    /// and Nesterov (`v ← μv − αg`), Adam's and AdamW's first-moment estimate m.
    pub first_moment: Vec<f32>,
    /// Adam's and AdamW's second-moment estimate s (of the squared gradient), same layout;
    /// empty for SGD and Nesterov.
    pub second_moment: Vec<f32>,
    /// One augmenter (with its scratch buffers) per engine thread; empty without augmentation.
    augmenters: Vec<std::sync::Mutex<Augmenter>>,
    ws: Workspace<f32>,
    eval_ws: Workspace<f32>,
    pub engine: Engine,
    pub batches: Batches,
    labels: Vec<u8>,
    /// Iterations done.
    pub iteration: usize,
}

impl<'a> Trainer<'a> {
    pub fn new(cfg: &TrainConfig, data: &'a Dataset) -> Result<Self> {
        cfg.validate()?;
        let (train, validation) = if cfg.validation == 0 {
            (std::borrow::Cow::Borrowed(&data.train), None)
        } else {
            if cfg.validation >= data.train.len() {
                return Err(Error::flag(
                    "--validation",
                    format!(
                        "{} would leave none of the {} training images to train on",
                        cfg.validation,
                        data.train.len()
                    ),
                ));
            }
            let mut train = data.train.clone();
            let held = train.split_off(cfg.validation);
            (std::borrow::Cow::Owned(train), Some(held))
        };
        if cfg.batch_size > train.len() {
            return Err(Error::flag(
                "--batch-size",
                if cfg.validation > 0 {
                    format!(
                        "{} exceeds the {} training images left after holding out {} for --validation",
                        cfg.batch_size,
                        train.len(),
                        cfg.validation
                    )
                } else {
                    format!("{} exceeds the {} training images", cfg.batch_size, train.len())
                },
            ));
        }
        let sizes = cfg.layer_sizes(data.input_size(), crate::data::sets::CLASS_COUNT);
        let mut mlp = Mlp::new(&sizes, cfg.activation);
        mlp.init(cfg.init, &mut Rng::new(cfg.seed, stream::INIT));
        let n = mlp.num_params();
        let engine = Engine::new(cfg.threads, cfg.kernels.resolve()?);
        let adam = cfg.optimizer.has_second_moment();
        let (rows, cols) = (data.train.images.rows, data.train.images.cols);
        if !cfg.augment.is_identity() && (rows, cols) != (SIDE, SIDE) {
            return Err(Error::flag(
                "--augment",
                format!("needs {SIDE}×{SIDE} images; this data set's are {rows}×{cols}"),
            ));
        }
        let augmenters = if cfg.augment.is_identity() {
            Vec::new()
        } else {
            (0..engine.threads())
                .map(|_| std::sync::Mutex::new(Augmenter::new(&cfg.augment)))
                .collect()
        };
        Ok(Trainer {
            engine,
            cfg: cfg.clone(),
            data,
            grads: vec![0.0; n],
            first_moment: vec![0.0; n],
            second_moment: vec![0.0; if adam { n } else { 0 }],
            augmenters,
            ws: Workspace::with_dropout(&sizes, cfg.batch_size, cfg.input_dropout, cfg.dropout),
            eval_ws: Workspace::new(&sizes, EVAL_CHUNK.min(data.test.len())),
            batches: Batches::new(train.len(), cfg.seed),
            train,
            validation,
            labels: Vec::with_capacity(cfg.batch_size),
            mlp,
            iteration: 0,
        })
    }

    pub fn model_spec(&self) -> ModelSpec {
        ModelSpec {
            layer_sizes: self.mlp.sizes.clone(),
            activation: self.cfg.activation,
            image_rows: self.data.train.images.rows,
            image_cols: self.data.train.images.cols,
            classes: self.cfg.dataset.class_names(),
        }
    }

    pub fn lr(&self) -> f64 {
        self.cfg.lr_at(self.iteration)
    }

    /// One iteration; returns the batch-mean training loss. A non-finite loss, or one above
    /// [`DIVERGED_LOSS`], is an error (the run has diverged); the parameters are then no
    /// longer usable.
    pub fn step(&mut self) -> Result<f64> {
        let b = self.cfg.batch_size;
        let lr = self.lr();
        let idx = self.batches.next_batch(b);
        let x = self.ws.input_mut(b);
        if self.augmenters.is_empty() {
            let (train, ppi) = (&self.train, self.train.images.pixels_per_image());
            self.engine
                .fill_rows(x, ppi, |_, j, row| train.image_to_unit(idx[j] as usize, row));
        } else {
            augment_batch(
                &self.engine,
                &self.augmenters,
                &self.train,
                idx,
                self.cfg.seed,
                self.iteration,
                x,
            );
        }
        self.train.gather_labels(idx, &mut self.labels);
        let key = crate::nn::dropout::step_key(self.cfg.seed, self.iteration);
        self.engine.draw_masks(&mut self.ws, key, b);
        let p = StepParams {
            lr,
            t: self.iteration + 1,
            opt: self.cfg.optimizer(),
            loss_scale: self.cfg.loss_scale(b),
            max_norm: self.cfg.max_norm,
        };
        let loss = self.engine.train_step(
            &mut self.mlp,
            &mut self.first_moment,
            &mut self.second_moment,
            &mut self.grads,
            &mut self.ws,
            &self.labels,
            p,
        ) / b as f64;
        if !loss.is_finite() || loss > DIVERGED_LOSS {
            let what = if loss.is_finite() {
                format!(
                    "the batch-mean loss reached {loss:.3e}, above the {DIVERGED_LOSS:e} at which a run is stopped"
                )
            } else {
                format!("the loss became {loss}")
            };
            return Err(Error::Diverged {
                iteration: self.iteration + 1,
                lr,
                what,
                last_finite: None,
                checkpoint: None,
            });
        }
        self.iteration += 1;
        Ok(loss)
    }

    /// The first parameter or optimizer state that is not finite, described, or None. A
    /// finite loss does not prove the parameters finite: ReLU maps a NaN pre-activation to 0,
    /// and the first layer's products skip zero pixels together with the weights they would
    /// have met, so a NaN weight can sit in a network whose loss stays finite. One pass over
    /// the vectors, as cheap as copying them: the trainer does it before every evaluation and
    /// every checkpoint.
    pub fn non_finite(&self) -> Option<String> {
        let vectors = [
            ("parameter", &self.mlp.params),
            ("velocity (or Adam's m) of parameter", &self.first_moment),
            ("Adam's s of parameter", &self.second_moment),
        ];
        for (name, v) in vectors {
            if let Some(j) = v.iter().position(|x| !x.is_finite()) {
                return Some(format!("{name} {} became {}", self.describe_parameter(j), v[j]));
            }
        }
        None
    }

    /// Parameter `j` of the flat vector as a user finds it in the model file.
    fn describe_parameter(&self, j: usize) -> String {
        for (l, layer) in self.mlp.layers.iter().enumerate() {
            if layer.w_range().contains(&j) {
                let k = j - layer.w;
                return format!("layers.{l}.weight[{}, {}]", k / layer.fan_in, k % layer.fan_in);
            }
            if layer.b_range().contains(&j) {
                return format!("layers.{l}.bias[{}]", j - layer.b);
            }
        }
        format!("#{j}")
    }

    /// Continue from a checkpoint's state.
    pub fn restore(&mut self, ck: Checkpoint) -> Result<()> {
        assert_eq!(ck.params.len(), self.mlp.params.len());
        assert_eq!(ck.first_moment.len(), self.first_moment.len());
        if ck.second_moment.len() != self.second_moment.len() {
            return Err(Error::flag(
                "--resume",
                format!(
                    "the checkpoint holds {} second-moment values; {} needs {}",
                    ck.second_moment.len(),
                    self.cfg.optimizer,
                    self.second_moment.len()
                ),
            ));
        }
        self.mlp.params = ck.params;
        self.first_moment = ck.first_moment;
        self.second_moment = ck.second_moment;
        self.batches = ck.state.batches;
        self.iteration = ck.state.iteration;
        Ok(())
    }

    /// A probe for `layers.csv` on the first [`layerstats::PROBE_BATCH`] training images.
    pub fn probe(&self) -> Probe {
        let n = self.train.len().min(layerstats::PROBE_BATCH);
        let ppi = self.train.images.pixels_per_image();
        let mut x = vec![0.0f32; n * ppi];
        for (i, row) in x.chunks_mut(ppi).enumerate() {
            self.train.image_to_unit(i, row);
        }
        Probe::new(&self.mlp, &x, &self.train.labels[..n])
    }

    /// Evaluate on the set that draws the learning curves: the validation set if there is
    /// one, else the test set.
    pub fn evaluate(&mut self) -> Evaluation {
        let set = self.validation.as_ref().unwrap_or(&self.data.test);
        evaluate(&self.engine, &self.mlp, &mut self.eval_ws, set)
    }

    /// Evaluate on the test set.
    pub fn evaluate_test(&mut self) -> Evaluation {
        evaluate(&self.engine, &self.mlp, &mut self.eval_ws, &self.data.test)
    }

    pub fn epochs(&self) -> f64 {
        (self.iteration * self.cfg.batch_size) as f64 / self.train.len() as f64
    }
}

/// Fill `x` (B, 784) with randomly distorted copies of images `idx`, spread over the engine's
/// threads. Sample j of iteration t draws from its own RNG, seeded by (seed, t·B + j), so the
/// result does not depend on the thread count and a resumed run needs no augmentation state.
fn augment_batch(
    engine: &Engine,
    augmenters: &[std::sync::Mutex<Augmenter>],
    train: &Split,
    idx: &[u32],
    seed: u64,
    iteration: usize,
    x: &mut [f32],
) {
    let b = idx.len();
    engine.fill_rows(x, PIXELS, |t, j, out| {
        let mut augmenter = augmenters[t].lock().expect("not poisoned");
        let draw = (iteration * b + j) as u64;
        let mut rng = Rng::new(seed ^ draw.wrapping_mul(0x9E37_79B9_7F4A_7C15), stream::AUGMENT);
        augmenter.apply(train.images.image(idx[j] as usize), &mut rng, out);
    });
}

/// What a run does besides training: checkpoints, resuming, stopping early.
#[derive(Default)]
pub struct RunOptions {
    /// Write a checkpoint every this many iterations (and keep the last one).
    pub checkpoint_every: Option<usize>,
    /// Continue from this checkpoint instead of starting afresh.
    pub resume: Option<Checkpoint>,
    /// Stop as if interrupted once this many iterations are done (tests use it).
    pub stop_after: Option<usize>,
}

/// Per-layer statistics of the run, written at every evaluation ([`layerstats`]).
pub const LAYERS_FILE: &str = "layers.csv";

/// What a run's directory is for, as errors about `--out` say.
pub const RUN_DIR: &str = "the run (a new or an empty one)";

/// The files of a run directory that belong to its run (`eval --mistakes` draws its pictures
/// there by default): what `train --overwrite` removes before it starts.
pub const RUN_FILES: [&str; 8] = [
    model::MODEL_FILE,
    model::CONFIG_FILE,
    crate::records::METRICS_FILE,
    crate::records::SUMMARY_FILE,
    LAYERS_FILE,
    crate::checkpoint::CHECKPOINT_FILE,
    "mistakes.png",
    "mistakes.svg",
];

/// Whether a new run may start in the directory `out` (`train` has refused an `out` that is a
/// file, with [`crate::fsutil::check_output_dir`]): refused when it holds a finished run's
/// model or an interrupted run that `--resume` can continue (unless `overwrite`). A
/// directory with only a `config.json` (a run stopped before its first checkpoint) has nothing
/// to lose and is reused. Checked while holding the directory's lock, so that a run another
/// process is writing is reported as such.
pub fn check_new_run_dir(out: &Path, overwrite: bool) -> Result<()> {
    if overwrite {
        return Ok(());
    }
    if out.join(model::MODEL_FILE).exists() {
        return Err(Error::flag(
            "--out",
            format!(
                "{} already holds a trained model ({}); choose another --out, or add --overwrite \
                 to replace that run",
                out.display(),
                model::MODEL_FILE
            ),
        ));
    }
    if out.join(crate::checkpoint::CHECKPOINT_FILE).exists() {
        return Err(Error::flag(
            "--out",
            format!(
                "{} holds an interrupted run ({}): `mnist-mlp train --resume {}` continues it; \
                 add --overwrite to start afresh",
                out.display(),
                crate::checkpoint::CHECKPOINT_FILE,
                out.display()
            ),
        ));
    }
    Ok(())
}

/// Remove the [`RUN_FILES`] of the run in `out`, so that a new run never leaves a file of the
/// old one beside its own.
pub fn clear_run_dir(out: &Path) -> Result<()> {
    for name in RUN_FILES {
        let path = out.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&path, e)),
        }
    }
    Ok(())
}

/// Set by the Ctrl-C handler; the training loop checks it after every step.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Train with `cfg` on `data`, writing `config.json`, `metrics.csv`, `model.safetensors` and
/// `summary.json` into `out`.
pub fn run(cfg: &TrainConfig, data: &Dataset, out: &Path, progress: Progress) -> Result<Summary> {
    run_with(cfg, data, out, progress, RunOptions::default())
}

fn data_shape(data: &Dataset) -> DataShape {
    DataShape {
        train_images: data.train.len(),
        test_images: data.test.len(),
        rows: data.train.images.rows,
        cols: data.train.images.cols,
    }
}

/// The row with the highest held-out accuracy, the first on ties.
fn best_row(rows: &[MetricsRow]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, r) in rows.iter().enumerate() {
        if best.is_none_or(|b| r.eval_accuracy > rows[b].eval_accuracy) {
            best = Some(i);
        }
    }
    best
}

/// [`run`] with checkpoints, resuming and early stopping.
pub fn run_with(
    cfg: &TrainConfig,
    data: &Dataset,
    out: &Path,
    progress: Progress,
    opts: RunOptions,
) -> Result<Summary> {
    let mut run = Run::start(cfg, data, out, progress, &opts)?;
    if let Some(ck) = opts.resume {
        run.resume(ck)?;
    }
    run.train()?;
    run.finish()
}

/// A run in progress: the trainer, and the records, timing and output it keeps besides.
struct Run<'a> {
    t: Trainer<'a>,
    /// The run directory.
    out: &'a Path,
    /// What `config.json` holds; the checkpoints and the model file carry it too.
    run_config: RunConfig,
    progress: Progress,
    /// As in [`RunOptions`].
    checkpoint_every: Option<usize>,
    stop_after: Option<usize>,
    /// The metrics rows so far, one per evaluation.
    rows: Vec<MetricsRow>,
    train_time: Duration,
    eval_time: Duration,
    /// Sum and count of the training losses since the last metrics row.
    window_loss: f64,
    window_len: usize,
    /// With `--keep-best`: the parameters of the evaluation `best_row(&rows)`.
    best: Option<Vec<f32>>,
    /// Measures the rows of `layers.csv` on a fixed batch of training images, at every
    /// evaluation.
    probe: Probe,
    layer_rows: Vec<LayerRow>,
    /// The iteration of the last checkpoint written and the last training loss, which a
    /// diverged run's error names.
    last_checkpoint: Option<usize>,
    last_loss: Option<f64>,
}

impl<'a> Run<'a> {
    /// A new run of `cfg` on `data` in `out`: the directory created (and cleared of what a
    /// killed run left half-written), `config.json` written, the progress bar's length set.
    fn start(
        cfg: &TrainConfig,
        data: &'a Dataset,
        out: &'a Path,
        progress: Progress,
        opts: &RunOptions,
    ) -> Result<Self> {
        let t = Trainer::new(cfg, data)?;
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        crate::fsutil::remove_stale_partials(out)?;
        let run_config = RunConfig::new(t.model_spec(), cfg.clone());
        model::save_config(out, &run_config)?;
        if let Progress::Bar(bar) = &progress {
            bar.set_length(cfg.iterations as u64);
        }
        let probe = t.probe();
        Ok(Run {
            t,
            out,
            run_config,
            progress,
            checkpoint_every: opts.checkpoint_every,
            stop_after: opts.stop_after,
            rows: Vec::new(),
            train_time: Duration::ZERO,
            eval_time: Duration::ZERO,
            window_loss: 0.0,
            window_len: 0,
            best: None,
            probe,
            layer_rows: Vec::new(),
            last_checkpoint: None,
            last_loss: None,
        })
    }

    /// Continue from checkpoint `ck`: the trainer's state, the records and timing so far, the
    /// kept parameters (with `--keep-best`), and the rows of `layers.csv` up to it.
    fn resume(&mut self, mut ck: Checkpoint) -> Result<()> {
        let shape = data_shape(self.t.data);
        if ck.state.data != shape {
            return Err(Error::flag(
                "--resume",
                format!(
                    "the checkpoint was trained on {} training and {} test images of {}×{}; this data set has {} and {} of {}×{}",
                    ck.state.data.train_images,
                    ck.state.data.test_images,
                    ck.state.data.rows,
                    ck.state.data.cols,
                    shape.train_images,
                    shape.test_images,
                    shape.rows,
                    shape.cols
                ),
            ));
        }
        self.rows = std::mem::take(&mut ck.state.rows);
        // The rows of layers.csv up to the checkpoint (a run from before layers.csv has none).
        let layers_csv = self.out.join(LAYERS_FILE);
        if layers_csv.exists() {
            self.layer_rows = layerstats::read(&layers_csv)?;
            self.layer_rows.retain(|r| r.iteration <= ck.state.iteration);
        }
        self.window_loss = ck.state.window_loss;
        self.window_len = ck.state.window_len;
        self.train_time = Duration::from_secs_f64(ck.state.train_seconds);
        self.eval_time = Duration::from_secs_f64(ck.state.eval_seconds);
        if self.t.cfg.keep_best && !ck.best.is_empty() {
            self.best = Some(std::mem::take(&mut ck.best));
        }
        self.t.restore(ck)
    }

    /// Train to the last iteration: step, evaluate when due, checkpoint when due. Stopped by
    /// Ctrl-C or `--stop-after`, it checkpoints and returns [`Error::Interrupted`].
    fn train(&mut self) -> Result<()> {
        // A checkpoint of the starting point, so that even a run that diverges in its first
        // steps leaves one to go back to.
        if self.checkpoint_every.is_some() && self.t.iteration == 0 {
            self.checkpoint()?;
        }
        // A resumed run's bar starts where the run stopped, its rate and ETA counted from there.
        if let Some(bar) = self.bar() {
            bar.set_position(self.t.iteration as u64);
            bar.reset_eta();
        }
        while self.t.iteration < self.total() {
            let lr = self.t.lr();
            self.step()?;
            if self.evaluates_at(self.t.iteration) {
                self.record_evaluation(lr)?;
            }
            self.checkpoint_or_stop()?;
        }
        Ok(())
    }

    /// The iterations the run is to train.
    fn total(&self) -> usize {
        self.t.cfg.iterations
    }

    /// Whether the run evaluates once `iteration` iterations are done: every `eval_every`, and
    /// at the end.
    fn evaluates_at(&self, iteration: usize) -> bool {
        iteration.is_multiple_of(self.t.cfg.eval_every) || iteration == self.total()
    }

    /// One training step, timed, its loss added to the window of the next metrics row. Before
    /// a step that an evaluation follows, the probe remembers the parameters, to measure the
    /// update.
    fn step(&mut self) -> Result<()> {
        if self.evaluates_at(self.t.iteration + 1) {
            self.probe.remember(&self.t.mlp.params);
        }
        let started = Instant::now();
        let loss = match self.t.step() {
            Ok(loss) => loss,
            Err(Error::Diverged {
                iteration, lr, what, ..
            }) => {
                return Err(self.diverged(iteration, lr, what));
            }
            Err(e) => return Err(e),
        };
        self.train_time += started.elapsed();
        self.last_loss = Some(loss);
        self.window_loss += loss;
        self.window_len += 1;
        if let Some(bar) = self.bar().filter(|_| self.t.iteration % 16 == 0) {
            bar.set_position(self.t.iteration as u64);
        }
        Ok(())
    }

    /// Evaluate, and record it: a metrics row (trained at learning rate `lr`) shown and
    /// written to `metrics.csv`, the parameters kept if they are the best so far (with
    /// `--keep-best`), the probe's rows written to `layers.csv`.
    fn record_evaluation(&mut self, lr: f64) -> Result<()> {
        self.check_finite()?;
        let started = Instant::now();
        let ev = self.t.evaluate();
        self.eval_time += started.elapsed();
        let row = MetricsRow {
            iteration: self.t.iteration,
            lr,
            train_loss: self.window_loss / self.window_len as f64,
            eval_loss: ev.loss,
            eval_accuracy: ev.accuracy,
        };
        self.window_loss = 0.0;
        self.window_len = 0;
        self.show(&row);
        self.rows.push(row);
        self.keep_if_best();
        // layers.csv before metrics.csv: `watch` reads them in the other order, so it never
        // sees an evaluation in metrics.csv whose layer rows are not written yet.
        self.record_layers()?;
        records::write_metrics(self.out, &self.rows, self.t.cfg.validation > 0)
    }

    /// An evaluation's row on the bar, or as a line on stderr.
    fn show(&self, row: &MetricsRow) {
        let set = if self.t.cfg.validation > 0 { "val" } else { "test" };
        let msg = format!(
            "train loss {:.4}  {set} loss {:.4}  {set} acc {:.2}%",
            row.train_loss,
            row.eval_loss,
            100.0 * row.eval_accuracy
        );
        match &self.progress {
            Progress::Bar(bar) => {
                bar.set_position(self.t.iteration as u64);
                bar.set_message(msg);
            }
            Progress::Lines => {
                let rate = self.t.iteration as f64 / self.train_time.as_secs_f64().max(1e-9);
                eprintln!("[{:>6}/{}] {msg}  {rate:.0} it/s", self.t.iteration, self.total());
            }
            Progress::Quiet => {}
        }
    }

    /// With `--keep-best`: keep the parameters if the last metrics row is the best.
    fn keep_if_best(&mut self) {
        if self.t.cfg.keep_best && best_row(&self.rows) == Some(self.rows.len() - 1) {
            match &mut self.best {
                Some(b) => b.copy_from_slice(&self.t.mlp.params),
                None => self.best = Some(self.t.mlp.params.clone()),
            }
        }
    }

    /// The probe's rows of this iteration, added to `layers.csv`; timed as evaluation.
    fn record_layers(&mut self) -> Result<()> {
        let started = Instant::now();
        let rows = self.probe.measure(&self.t.mlp, self.t.iteration);
        self.layer_rows.extend(rows);
        let csv = layerstats::to_csv(&self.layer_rows);
        write_atomic(&self.out.join(LAYERS_FILE), csv.as_bytes())?;
        self.eval_time += started.elapsed();
        Ok(())
    }

    /// After a step short of the last: a checkpoint when one is due or the run is to stop
    /// (Ctrl-C, `--stop-after`), and then, if it is, [`Error::Interrupted`].
    fn checkpoint_or_stop(&mut self) -> Result<()> {
        let iteration = self.t.iteration;
        let interrupted = INTERRUPTED.load(Ordering::Relaxed) || self.stop_after == Some(iteration);
        if iteration >= self.total() {
            return Ok(());
        }
        let due = self.checkpoint_every.is_some_and(|n| iteration.is_multiple_of(n));
        if due || interrupted {
            self.checkpoint()?;
        }
        if interrupted {
            if let Some(bar) = self.bar() {
                bar.abandon();
            }
            return Err(Error::Interrupted {
                iteration,
                dir: self.out.to_path_buf(),
            });
        }
        Ok(())
    }

    /// Write the model file (with `--keep-best`, of the best evaluation's parameters) and
    /// `summary.json`, warn if the run is at chance level, and remove the checkpoint: a
    /// complete run's would only invite resuming it.
    fn finish(mut self) -> Result<Summary> {
        if let Some(bar) = self.bar() {
            bar.set_position(self.total() as u64);
        }
        let last = self.rows.last().expect("the final iteration always evaluates");
        let final_lr = last.lr;
        let losses = (self.rows[0].train_loss, last.train_loss);
        let kept = self.restore_best();
        model::save(self.out, &self.run_config, &self.t.mlp)?;
        let summary = self.summary(kept, final_lr);
        records::write_summary(self.out, &summary)?;
        let lr = self.run_config.train.lr;
        if let Some(warning) = chance_warning(summary.test_accuracy, self.t.mlp.classes(), losses, lr) {
            eprintln!("{warning}");
        }
        let ck = self.out.join(crate::checkpoint::CHECKPOINT_FILE);
        if ck.exists() {
            std::fs::remove_file(&ck).map_err(|e| Error::io(&ck, e))?;
        }
        Ok(summary)
    }

    /// With `--keep-best`: the kept parameters in place of the last, and the index of their
    /// metrics row.
    fn restore_best(&mut self) -> Option<usize> {
        let params = self.best.take()?;
        self.t.mlp.params = params;
        Some(best_row(&self.rows).expect("a kept model has its row"))
    }

    /// The summary of the model evaluated in metrics row `kept` (the last row if None); with a
    /// validation set, the test set is evaluated here, once.
    fn summary(&mut self, kept: Option<usize>, final_lr: f64) -> Summary {
        let row = self.rows[kept.unwrap_or(self.rows.len() - 1)].clone();
        let (test, validation) = if self.t.validation.is_some() {
            let started = Instant::now();
            let ev = self.t.evaluate_test();
            self.eval_time += started.elapsed();
            ((ev.accuracy, ev.loss), Some((row.eval_accuracy, row.eval_loss)))
        } else {
            ((row.eval_accuracy, row.eval_loss), None)
        };
        let (total, cfg) = (self.total(), &self.t.cfg);
        let train_seconds = self.train_time.as_secs_f64();
        Summary {
            test_accuracy: test.0,
            test_loss: test.1,
            validation_accuracy: validation.map(|v| v.0),
            validation_loss: validation.map(|v| v.1),
            selected_iteration: kept.map(|_| row.iteration),
            iterations: total,
            epochs: self.t.epochs(),
            train_seconds,
            eval_seconds: self.eval_time.as_secs_f64(),
            samples_per_second: (total * cfg.batch_size) as f64 / train_seconds.max(1e-9),
            final_lr,
            threads: cfg.threads,
            kernels: self.t.engine.backend().name().to_string(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    /// The live bar, if progress is shown on one.
    fn bar(&self) -> Option<&indicatif::ProgressBar> {
        match &self.progress {
            Progress::Bar(bar) => Some(bar),
            _ => None,
        }
    }

    /// [`Error::Diverged`], naming the last training loss and the last checkpoint.
    fn diverged(&self, iteration: usize, lr: f64, what: String) -> Error {
        Error::Diverged {
            iteration,
            lr,
            what,
            last_finite: self.last_loss,
            checkpoint: self.last_checkpoint.map(|i| {
                format!(
                    "the last checkpoint (iteration {i}) is kept in {}",
                    self.out.display()
                )
            }),
        }
    }

    /// A non-finite parameter or optimizer state ([`Trainer::non_finite`]) ends the run as a
    /// non-finite loss does, before it can reach an evaluation, a checkpoint or the model file.
    fn check_finite(&self) -> Result<()> {
        match self.t.non_finite() {
            Some(what) => {
                let lr = self.t.cfg.lr_at(self.t.iteration.saturating_sub(1));
                Err(self.diverged(self.t.iteration, lr, what))
            }
            None => Ok(()),
        }
    }

    /// Write `checkpoint.safetensors`: the trainer's state and the run's records so far, once
    /// the parameters are known to be finite.
    fn checkpoint(&mut self) -> Result<()> {
        self.check_finite()?;
        let state = State {
            format: crate::checkpoint::CHECKPOINT_FORMAT.into(),
            version: crate::checkpoint::CHECKPOINT_VERSION,
            config: self.run_config.clone(),
            data: data_shape(self.t.data),
            iteration: self.t.iteration,
            batches: self.t.batches.clone(),
            rows: self.rows.clone(),
            window_loss: self.window_loss,
            window_len: self.window_len,
            train_seconds: self.train_time.as_secs_f64(),
            eval_seconds: self.eval_time.as_secs_f64(),
        };
        let t = &self.t;
        let best = self.best.as_deref().unwrap_or(&[]);
        crate::checkpoint::save(
            self.out,
            &state,
            &t.mlp.params,
            &t.first_moment,
            &t.second_moment,
            best,
        )?;
        self.last_checkpoint = Some(self.t.iteration);
        Ok(())
    }
}

/// A warning for a run that ended no better than guessing: a test accuracy below 1.5 times
/// chance (1/K). Such a run exits successfully, as its model is what was asked for, but its
/// numbers should not be mistaken for a result. The advice follows the mean training loss of
/// the first and last rows (`losses`) against ln K, the loss of a uniform guess: a loss that
/// ends above it took steps too large (`lr` lower); one that ends at or below it took too few
/// or too small ones.
pub fn chance_warning(accuracy: f64, classes: usize, losses: (f64, f64), lr: f64) -> Option<String> {
    let chance = 1.0 / classes as f64;
    if accuracy >= 1.5 * chance {
        return None;
    }
    let guess = (classes as f64).ln();
    let (first, last) = losses;
    let lr = if (1e-4..1e4).contains(&lr) {
        format!("{lr}")
    } else {
        format!("{lr:e}")
    };
    let advice = if last > guess + 0.05 {
        format!(
            "its training loss ended at {last:.3}, above the {guess:.3} of a uniform guess: the \
             steps are too large; try a lower --lr (now {lr})"
        )
    } else {
        format!(
            "its training loss went from {first:.3} to {last:.3} (a uniform guess scores \
             {guess:.3}): try more --iterations or a higher --lr (now {lr})"
        )
    };
    Some(format!(
        "warning: the network did not learn: its test accuracy {:.2}% is at chance level for \
         {classes} classes ({:.0}%); {advice}, or another --activation or --init",
        100.0 * accuracy,
        100.0 * chance
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_at_chance_accuracy_is_warned_about_and_a_learning_one_is_not() {
        let still = (2.306, 2.305);
        assert!(
            chance_warning(0.1009, 10, still, 0.01)
                .unwrap()
                .contains("did not learn")
        );
        assert!(chance_warning(0.149, 10, still, 0.01).is_some());
        assert!(chance_warning(0.151, 10, still, 0.01).is_none());
        assert!(chance_warning(0.97, 10, still, 0.01).is_none());
        // A loss that stays at a uniform guess's asks for more or larger steps; one above it,
        // for smaller ones.
        let small = chance_warning(0.1, 10, still, 1e-30).unwrap();
        assert!(
            small.contains("higher --lr (now 1e-30)") && small.contains("more --iterations"),
            "{small}"
        );
        let large = chance_warning(0.1, 10, (2.6, 2.45), 3.0).unwrap();
        assert!(
            large.contains("lower --lr (now 3)") && large.contains("2.450"),
            "{large}"
        );
    }

    #[test]
    fn the_best_row_is_the_first_with_the_highest_accuracy() {
        let row = |eval_accuracy| MetricsRow {
            iteration: 0,
            lr: 0.1,
            train_loss: 1.0,
            eval_loss: 1.0,
            eval_accuracy,
        };
        let rows: Vec<MetricsRow> = [0.5, 0.7, 0.7, 0.6].into_iter().map(row).collect();
        assert_eq!(best_row(&rows), Some(1));
        assert_eq!(best_row(&[]), None);
    }
}
