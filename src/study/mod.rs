//! Studies: many training runs from one specification, run concurrently, recorded as files,
//! and a report drawn from those records alone (`report::write`), so it can be redrawn without
//! training.
//!
//! Records in a study directory:
//! - `study.json`: the specification, every resolved run, the machine, the wall time;
//! - `runs/<name>/`: each run's `config.json`, `metrics.csv`, `summary.json`, `model.safetensors`;
//! - `results.json`: one entry per run with its final figures and the seed's number, if any;
//! - `samples.json` (seed study): 20 test digits with each network's top-3 predictions.

pub mod plot;
pub mod preset;
pub mod report;
pub mod seed;
pub mod spec;

use crate::config::{TrainConfig, available_threads};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::fsutil::write_json_atomic;
use crate::train::{self, Progress};
use serde::{Deserialize, Serialize};
use spec::{RunPlan, StudySpec};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

pub const STUDY_FILE: &str = "study.json";
pub const RESULTS_FILE: &str = "results.json";

/// The machine a study ran on, for the report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Machine {
    pub cpu: String,
    pub logical_cores: usize,
    pub os: String,
}

impl Machine {
    pub fn detect() -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|s| s.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        Machine {
            cpu,
            logical_cores: available_threads(),
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
        }
    }
}

/// `study.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StudyRecord {
    pub format: String,
    pub version: u32,
    pub tool_version: String,
    /// `"seed"` for the built-in study of the report, `"custom"` for a `--spec`.
    pub kind: String,
    /// The command line that ran the study.
    pub command: String,
    pub spec: StudySpec,
    pub plans: Vec<RunPlan>,
    pub machine: Machine,
    /// Runs trained at the same time, and matrix-product threads per run.
    pub jobs: usize,
    pub threads_per_run: usize,
    pub wall_seconds: f64,
}

/// One entry of `results.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunResult {
    pub name: String,
    pub group: String,
    pub activation: String,
    pub lr: f64,
    pub schedule: String,
    pub init: String,
    pub seed: u64,
    /// `"ok"`, `"diverged"` or `"failed"`.
    pub status: String,
    pub message: Option<String>,
    pub test_accuracy: Option<f64>,
    pub test_loss: Option<f64>,
    pub train_seconds: Option<f64>,
    pub samples_per_second: Option<f64>,
    /// What the seed report gives for this run, as a fraction.
    pub reported_accuracy: Option<f64>,
    pub config: TrainConfig,
}

/// How to run a study.
#[derive(Clone, Debug)]
pub struct StudyOptions {
    pub out: PathBuf,
    /// Runs trained at the same time.
    pub jobs: usize,
    pub data_dir: Option<PathBuf>,
    pub quiet: bool,
    /// Finished ablation studies whose tables the report includes.
    pub ablation: Vec<PathBuf>,
}

pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Dataset {
        dir: path.to_path_buf(),
        msg: format!("is not a valid study record: {e}"),
    })
}

/// Threads per run for `jobs` concurrent runs on this machine.
pub fn threads_per_run(jobs: usize) -> usize {
    (available_threads() / jobs.max(1)).max(1)
}

/// Run every run of `spec`, write the records, then the report.
pub fn run(spec: &StudySpec, kind: &str, opts: &StudyOptions, origin: &str) -> Result<()> {
    let started = Instant::now();
    let mut plans = spec.resolve(origin)?;
    if plans.is_empty() {
        return Err(Error::flag("--spec", "the study has no runs"));
    }
    let jobs = opts.jobs.clamp(1, plans.len());
    let threads = threads_per_run(jobs);
    for p in &mut plans {
        p.config.threads = threads;
        if opts.data_dir.is_some() {
            p.config.data_dir = opts.data_dir.clone();
        }
    }
    // One data set is loaded and shared by every run, so every run must ask for the same one.
    let first = &plans[0];
    if let Some(other) = plans
        .iter()
        .find(|p| (p.config.dataset, &p.config.data_dir) != (first.config.dataset, &first.config.data_dir))
    {
        let describe = |p: &RunPlan| match &p.config.data_dir {
            Some(d) => format!("{} in {}", p.config.dataset, d.display()),
            None => p.config.dataset.to_string(),
        };
        return Err(Error::flag(
            &format!("study spec {origin}"),
            format!(
                "every run of a study uses one data set, but run '{}' uses {} and run '{}' uses {}; \
                 set `dataset` and `data_dir` in [base] only",
                first.name,
                describe(first),
                other.name,
                describe(other)
            ),
        ));
    }
    let data = Dataset::open(first.config.data_dir.as_deref(), first.config.dataset, true)?;
    let runs_dir = opts.out.join("runs");
    std::fs::create_dir_all(&runs_dir).map_err(|e| Error::io(&runs_dir, e))?;
    if !opts.quiet {
        eprintln!(
            "study '{}': {} runs, {jobs} at a time with {threads} thread(s) each, into {}",
            spec.name,
            plans.len(),
            opts.out.display()
        );
    }

    let terminal = !opts.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let multi = indicatif::MultiProgress::new();
    let total_iterations: usize = plans.iter().map(|p| p.config.iterations).sum();
    let overall = terminal.then(|| {
        let bar = multi.add(train::new_bar(total_iterations, "all runs"));
        bar.set_message(format!("0/{} runs done", plans.len()));
        bar
    });

    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<RunResult>>> = Mutex::new(vec![None; plans.len()]);
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(plan) = plans.get(i) else { break };
                    let progress = if terminal {
                        Progress::Bar(multi.insert_before(
                            overall.as_ref().expect("terminal has an overall bar"),
                            train::new_bar(plan.config.iterations, &plan.name),
                        ))
                    } else {
                        Progress::Quiet
                    };
                    let bar = match &progress {
                        Progress::Bar(b) => Some(b.clone()),
                        _ => None,
                    };
                    let outcome = train::run(&plan.config, &data, &runs_dir.join(&plan.name), progress);
                    if let Some(b) = bar {
                        b.finish_and_clear();
                        multi.remove(&b);
                    }
                    let result = to_result(plan, outcome);
                    let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                    if let Some(o) = &overall {
                        o.inc(plan.config.iterations as u64);
                        o.set_message(format!("{n}/{} runs done", plans.len()));
                    }
                    if !opts.quiet {
                        let line = describe_result(&result);
                        match &overall {
                            Some(o) => o.println(line),
                            None => eprintln!("[{n}/{}] {line}", plans.len()),
                        }
                    }
                    results.lock().expect("no worker panics")[i] = Some(result);
                }
            });
        }
    });
    if let Some(o) = &overall {
        o.finish_and_clear();
    }
    let results: Vec<RunResult> = results
        .into_inner()
        .expect("no worker panics")
        .into_iter()
        .map(|r| r.expect("every run has a result"))
        .collect();
    write_json_atomic(&opts.out.join(RESULTS_FILE), &results)?;

    if kind == "seed" {
        seed::write_samples(&opts.out, &results, &data)?;
    }
    let record = StudyRecord {
        format: "mnist-mlp-study".into(),
        version: 1,
        tool_version: env!("CARGO_PKG_VERSION").into(),
        kind: kind.into(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        spec: spec.clone(),
        plans: plans.clone(),
        machine: Machine::detect(),
        jobs,
        threads_per_run: threads,
        wall_seconds: started.elapsed().as_secs_f64(),
    };
    write_json_atomic(&opts.out.join(STUDY_FILE), &record)?;
    report::write(&opts.out, &opts.ablation)?;
    if !opts.quiet {
        eprintln!(
            "study '{}' done in {:.1} s: {} and report.html in {}",
            spec.name,
            started.elapsed().as_secs_f64(),
            RESULTS_FILE,
            opts.out.display()
        );
    }
    if let Some(failed) = results.iter().find(|r| r.status == "failed") {
        return Err(Error::flag(
            "study",
            format!(
                "run '{}' failed: {}",
                failed.name,
                failed.message.clone().unwrap_or_default()
            ),
        ));
    }
    Ok(())
}

fn to_result(plan: &RunPlan, outcome: Result<train::Summary>) -> RunResult {
    let c = &plan.config;
    let mut r = RunResult {
        name: plan.name.clone(),
        group: plan.group.clone(),
        activation: c.activation.to_string(),
        lr: c.lr,
        schedule: c.schedule.to_string(),
        init: c.init.to_string(),
        seed: c.seed,
        status: "ok".into(),
        message: None,
        test_accuracy: None,
        test_loss: None,
        train_seconds: None,
        samples_per_second: None,
        reported_accuracy: plan.reported_accuracy,
        config: c.clone(),
    };
    match outcome {
        Ok(s) => {
            r.test_accuracy = Some(s.test_accuracy);
            r.test_loss = Some(s.test_loss);
            r.train_seconds = Some(s.train_seconds);
            r.samples_per_second = Some(s.samples_per_second);
        }
        Err(e @ Error::Diverged { .. }) => {
            r.status = "diverged".into();
            r.message = Some(e.to_string());
        }
        Err(e) => {
            r.status = "failed".into();
            r.message = Some(e.to_string());
        }
    }
    r
}

fn describe_result(r: &RunResult) -> String {
    match (r.status.as_str(), r.test_accuracy) {
        ("ok", Some(acc)) => format!(
            "{:<28} test accuracy {:6.2}%  ({:.1} s){}",
            r.name,
            100.0 * acc,
            r.train_seconds.unwrap_or(0.0),
            r.reported_accuracy
                .map(|s| format!("  seed report: {:.2}%", 100.0 * s))
                .unwrap_or_default()
        ),
        (status, _) => format!(
            "{:<28} {status}: {}",
            r.name,
            r.message.clone().unwrap_or_default()
        ),
    }
}
