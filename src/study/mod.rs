//! Studies: many training runs from one specification, run concurrently, recorded as files,
//! and a report drawn from those records alone (`report::write`), so it can be redrawn without
//! training.
//!
//! Records in a study directory:
//! - `study.json`: the specification, every resolved run, the machine, the wall time;
//! - `runs/<name>/`: each run's `config.json`, `metrics.csv`, `summary.json`, `model.safetensors`
//!   and `result.json` (its entry of `results.json`); see [`shard`] for how runs get there;
//! - `results.json`: one entry per run with its final figures and the seed's number, if any;
//! - `samples.json` (seed study): 20 test digits with each network's top-3 predictions;
//! - `shards/` (a study run in shards): what each shard process did, where and when.

pub mod plot;
pub mod preset;
pub mod report;
pub mod seed;
pub mod shard;
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
    /// From the first shard's start to the last one's end, for a study run in shards.
    pub wall_seconds: f64,
    /// The shard processes that ran the study, if it ran in shards (gathered by
    /// `report --from`); the fields above then describe the first one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<shard::ShardRecord>,
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
    /// The machine that trained the run, and the shard (`K/N`) it belonged to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
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
    /// Only the runs of this shard (`--shard`); the report is then left to `report --from`.
    pub shard: Option<shard::Shard>,
    /// Only this run (`--only`).
    pub only: Option<String>,
}

/// A study's runs checkpoint this often, so that a killed shard loses at most this many
/// iterations of each run it was training; not at every evaluation, which the seed study does
/// every 100 iterations, because each checkpoint is written and synced (4.4 MB for the seed's
/// network).
pub const CHECKPOINT_EVERY: usize = 500;

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

/// What became of one run a process set out to train.
enum Done {
    Trained(RunResult),
    /// Another process finished it first.
    FinishedElsewhere,
    /// Another live process is training it: the refusal's message.
    Busy(String),
}

/// Run every run of `spec` (or of one shard of it) that is not finished yet, each into
/// `DIR/runs/NAME/`; without a shard, then write the records and the report.
pub fn run(spec: &StudySpec, kind: &str, opts: &StudyOptions, origin: &str) -> Result<()> {
    let started = Instant::now();
    let started_unix = shard::unix_now();
    let mut plans = spec.resolve(origin)?;
    if plans.is_empty() {
        return Err(Error::flag("--spec", "the study has no runs"));
    }
    let mine = select(&plans, opts)?;
    let part_only = opts.shard.is_some() || opts.only.is_some();
    let jobs = opts.jobs.clamp(1, mine.len().max(1));
    let threads = threads_per_run(jobs);
    for p in &mut plans {
        p.config.threads = threads;
        if opts.data_dir.is_some() {
            p.config.data_dir = opts.data_dir.clone();
        }
    }
    check_one_data_set(&plans, origin)?;
    crate::fsutil::check_output_dir("--out", &opts.out, "the study")?;
    let runs_dir = opts.out.join("runs");
    std::fs::create_dir_all(&runs_dir).map_err(|e| Error::io(&runs_dir, e))?;
    let mut record = StudyRecord {
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
        wall_seconds: 0.0,
        shards: Vec::new(),
    };
    claim(&opts.out, &record)?;

    // Runs found finished are never trained again.
    let (skipped, todo) = partition_finished(&opts.out, &plans, &mine)?;
    if !opts.quiet {
        announce(spec, opts, &record, mine.len(), skipped.len(), todo.len());
    }
    let data = if todo.is_empty() {
        None
    } else {
        Some(Dataset::open(
            plans[0].config.data_dir.as_deref(),
            plans[0].config.dataset,
            true,
        )?)
    };
    let outcomes = match &data {
        Some(data) => train_all(&plans, &todo, data, jobs, opts),
        None => Vec::new(),
    };
    let mut tally = Tally {
        skipped,
        ..Tally::default()
    };
    for (t, outcome) in outcomes.into_iter().enumerate() {
        tally.add(&plans[todo[t]].name, outcome);
    }

    if part_only {
        let wall_seconds = started.elapsed().as_secs_f64();
        record_shard(opts, &record, started_unix, wall_seconds, &tally)?;
    } else if tally.busy.is_empty() {
        record.wall_seconds = started.elapsed().as_secs_f64();
        write_json_atomic(&opts.out.join(STUDY_FILE), &record)?;
        assemble_and_report(&opts.out, &opts.ablation, data.as_ref(), true)?;
        if !opts.quiet {
            eprintln!(
                "study '{}' done in {:.1} s: {} and report.html in {}",
                spec.name,
                started.elapsed().as_secs_f64(),
                RESULTS_FILE,
                opts.out.display()
            );
        }
    }
    tally.into_result(&opts.out)
}

/// The study's first line: its runs, this shard's share, how many are finished already and how
/// many are to train, how, and where.
fn announce(
    spec: &StudySpec,
    opts: &StudyOptions,
    record: &StudyRecord,
    mine: usize,
    skipped: usize,
    todo: usize,
) {
    let part = match (&opts.shard, &opts.only) {
        (Some(s), _) => format!("shard {} ({}) takes {mine}; ", s.label(), s.source),
        (None, Some(_)) => "--only takes 1; ".into(),
        (None, None) => String::new(),
    };
    eprintln!(
        "study '{}': {} runs; {part}{skipped} finished already, {todo} to train, {} at a time with {} thread(s) each, into {}",
        spec.name,
        record.plans.len(),
        record.jobs,
        record.threads_per_run,
        opts.out.display()
    );
}

/// The runs of `mine` finished before (their names) and those left to train (positions).
fn partition_finished(out: &Path, plans: &[RunPlan], mine: &[usize]) -> Result<(Vec<String>, Vec<usize>)> {
    let mut skipped = Vec::new();
    let mut todo = Vec::new();
    for &i in mine {
        match shard::finished(out, &plans[i].name)? {
            Some(r) => {
                check_same_run(out, &r, &plans[i])?;
                skipped.push(plans[i].name.clone());
            }
            None => todo.push(i),
        }
    }
    Ok((skipped, todo))
}

/// A shard's (or `--only`'s) record of what it trained, and the line that says so.
fn record_shard(
    opts: &StudyOptions,
    record: &StudyRecord,
    started_unix: f64,
    wall_seconds: f64,
    tally: &Tally,
) -> Result<()> {
    let s = shard::ShardRecord {
        shard: match (&opts.shard, &opts.only) {
            (Some(s), _) => s.label(),
            (None, Some(n)) => format!("only {n}"),
            (None, None) => unreachable!("part_only"),
        },
        source: opts
            .shard
            .as_ref()
            .map(|s| s.source.clone())
            .unwrap_or_else(|| "--only".into()),
        host: crate::fsutil::hostname(),
        pid: std::process::id(),
        command: record.command.clone(),
        machine: record.machine.clone(),
        jobs: record.jobs,
        threads_per_run: record.threads_per_run,
        started_unix,
        wall_seconds,
        trained: tally.trained.clone(),
        skipped: tally.skipped.clone(),
    };
    shard::write_shard_record(&opts.out, &s)?;
    if !opts.quiet {
        eprintln!(
            "{} done in {:.1} s: {} trained, {} finished already, {} busy, {} failed. When every shard is done: mnist-mlp report --from {}",
            s.shard,
            s.wall_seconds,
            tally.trained.len(),
            tally.skipped.len(),
            tally.busy.len(),
            tally.failed.len(),
            opts.out.display()
        );
    }
    Ok(())
}

/// The positions of the runs this process trains: its shard's, or the one `--only` names.
fn select(plans: &[RunPlan], opts: &StudyOptions) -> Result<Vec<usize>> {
    let mine: Vec<usize> = (0..plans.len())
        .filter(|&i| opts.shard.as_ref().is_none_or(|s| s.takes(i)))
        .filter(|&i| opts.only.as_ref().is_none_or(|n| plans[i].name == *n))
        .collect();
    if let Some(name) = &opts.only
        && mine.is_empty()
    {
        let hint = if opts.shard.is_some() {
            " in this shard"
        } else {
            ""
        };
        return Err(Error::flag(
            "--only",
            format!(
                "the study has no run named '{name}'{hint}; `mnist-mlp study --spec FILE --list` lists them"
            ),
        ));
    }
    Ok(mine)
}

/// One data set is loaded and shared by every run, so every run must ask for the same one.
fn check_one_data_set(plans: &[RunPlan], origin: &str) -> Result<()> {
    let first = &plans[0];
    let Some(other) = plans
        .iter()
        .find(|p| (p.config.dataset, &p.config.data_dir) != (first.config.dataset, &first.config.data_dir))
    else {
        return Ok(());
    };
    let describe = |p: &RunPlan| match &p.config.data_dir {
        Some(d) => format!("{} in {}", p.config.dataset, d.display()),
        None => p.config.dataset.to_string(),
    };
    Err(Error::flag(
        &format!("study spec {origin}"),
        format!(
            "every run of a study uses one data set, but run '{}' uses {} and run '{}' uses {}; \
             set `dataset` and `data_dir` in [base] only",
            first.name,
            describe(first),
            other.name,
            describe(other)
        ),
    ))
}

/// Train the runs at positions `todo`, `jobs` at a time, with a progress bar per run and one
/// for all on a terminal; the outcome of each, in the order of `todo`.
fn train_all(
    plans: &[RunPlan],
    todo: &[usize],
    data: &Dataset,
    jobs: usize,
    opts: &StudyOptions,
) -> Vec<Result<Done>> {
    let shard_label = opts.shard.as_ref().map(|s| s.label());
    let terminal = !opts.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let multi = indicatif::MultiProgress::new();
    let total_iterations: usize = todo.iter().map(|&i| plans[i].config.iterations).sum();
    let overall = terminal.then(|| {
        let bar = multi.add(train::new_bar(total_iterations, "all runs"));
        bar.set_message(format!("0/{} runs done", todo.len()));
        bar
    });

    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let outcomes: Mutex<Vec<Option<Result<Done>>>> = Mutex::new((0..todo.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(todo.len()) {
            scope.spawn(|| {
                loop {
                    let t = next.fetch_add(1, Ordering::SeqCst);
                    let Some(&i) = todo.get(t) else { break };
                    let plan = &plans[i];
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
                    let outcome = train_one(
                        &opts.out,
                        plan,
                        data,
                        shard_label.as_deref(),
                        progress,
                        opts.quiet,
                    );
                    if let Some(b) = bar {
                        b.finish_and_clear();
                        multi.remove(&b);
                    }
                    let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                    if let Some(o) = &overall {
                        o.inc(plan.config.iterations as u64);
                        o.set_message(format!("{n}/{} runs done", todo.len()));
                    }
                    if !opts.quiet {
                        let line = outcome_line(plan, &outcome);
                        match &overall {
                            Some(o) => o.println(line),
                            None => eprintln!("[{n}/{}] {line}", todo.len()),
                        }
                    }
                    outcomes.lock().expect("no worker panics")[t] = Some(outcome);
                }
            });
        }
    });
    if let Some(o) = &overall {
        o.finish_and_clear();
    }
    outcomes
        .into_inner()
        .expect("no worker panics")
        .into_iter()
        .map(|o| o.expect("every run has an outcome"))
        .collect()
}

/// The line printed when a run ends.
fn outcome_line(plan: &RunPlan, outcome: &Result<Done>) -> String {
    match outcome {
        Ok(Done::Trained(r)) => describe_result(r),
        Ok(Done::FinishedElsewhere) => {
            format!("{:<28} finished by another process meanwhile", plan.name)
        }
        Ok(Done::Busy(msg)) => format!("{:<28} skipped: {msg}", plan.name),
        Err(e) => format!("{:<28} failed: {e}", plan.name),
    }
}

/// What became of the runs this process took on.
#[derive(Default)]
struct Tally {
    trained: Vec<String>,
    /// Finished before, or by another process meanwhile.
    skipped: Vec<String>,
    /// Held by another live process: why, one line each.
    busy: Vec<String>,
    failed: Vec<String>,
}

impl Tally {
    fn add(&mut self, name: &str, outcome: Result<Done>) {
        match outcome {
            Ok(Done::Trained(r)) => {
                if r.status == "failed" {
                    self.failed.push(format!(
                        "run '{}' failed: {}",
                        r.name,
                        r.message.clone().unwrap_or_default()
                    ));
                } else {
                    self.trained.push(name.to_string());
                }
            }
            Ok(Done::FinishedElsewhere) => self.skipped.push(name.to_string()),
            Ok(Done::Busy(msg)) => self.busy.push(msg),
            Err(e) => self.failed.push(format!("run '{name}' failed: {e}")),
        }
    }

    /// An error naming the busy runs, else the first failure, else Ok.
    fn into_result(self, out: &Path) -> Result<()> {
        if !self.busy.is_empty() {
            return Err(Error::flag(
                "study",
                format!(
                    "{} run(s) left alone because another process is training them (see `mnist-mlp study --status {}`):\n{}",
                    self.busy.len(),
                    out.display(),
                    self.busy.join("\n")
                ),
            ));
        }
        if let Some(first) = self.failed.first() {
            return Err(Error::flag("study", first.clone()));
        }
        Ok(())
    }
}

/// Write `study.json` into a new study directory, or check that the one there describes the
/// same runs (a shard, a resubmitted shard, or a rerun after a crash).
fn claim(out: &Path, record: &StudyRecord) -> Result<()> {
    let _guard = crate::fsutil::Lock::wait(&out.join(".study.lock"), "the study's record")?;
    let path = out.join(STUDY_FILE);
    if !path.is_file() {
        return write_json_atomic(&path, record);
    }
    let existing: StudyRecord = read_json(&path)?;
    let refuse = |what: String| {
        Err(Error::flag(
            "--out",
            format!(
                "{} already holds study '{}' and {what}; give another --out, or remove the directory to start over",
                out.display(),
                existing.spec.name
            ),
        ))
    };
    if existing.spec.name != record.spec.name {
        return refuse(format!("this is study '{}'", record.spec.name));
    }
    if existing.plans.len() != record.plans.len() {
        return refuse(format!(
            "its {} runs are not this spec's {}",
            existing.plans.len(),
            record.plans.len()
        ));
    }
    for (i, (a, b)) in existing.plans.iter().zip(&record.plans).enumerate() {
        if a.name != b.name {
            return refuse(format!("its run {i} is '{}', here '{}'", a.name, b.name));
        }
        if !shard::same_run(&a.config, &b.config) || a.reported_accuracy != b.reported_accuracy {
            return refuse(format!(
                "its run '{}' has other options than here (the same flags and spec must be given to every shard)",
                a.name
            ));
        }
    }
    Ok(())
}

fn check_same_run(out: &Path, r: &RunResult, plan: &RunPlan) -> Result<()> {
    if shard::same_run(&r.config, &plan.config) {
        return Ok(());
    }
    Err(Error::flag(
        "--out",
        format!(
            "{} holds a finished run '{}' trained with other options than this study's; give another --out",
            shard::run_dir(out, &plan.name).display(),
            plan.name
        ),
    ))
}

/// Take a run's lock, riding over a moment's probe by `study --status`.
fn lock_run(out: &Path, name: &str) -> Result<crate::fsutil::Lock> {
    let path = shard::lock_path(out, name);
    let what = format!("run '{name}' of {}", out.display());
    let mut tries = 0;
    loop {
        match crate::fsutil::Lock::try_acquire(&path, &what) {
            Err(Error::Locked { .. }) if tries < 5 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            other => return other,
        }
    }
}

/// Train one run into `DIR/runs/.NAME.partial/` (resuming its checkpoint if one is there) under
/// the run's lock, then rename it to `DIR/runs/NAME/`.
fn train_one(
    out: &Path,
    plan: &RunPlan,
    data: &Dataset,
    shard_label: Option<&str>,
    progress: Progress,
    quiet: bool,
) -> Result<Done> {
    let _lock = match lock_run(out, &plan.name) {
        Ok(lock) => lock,
        Err(e @ Error::Locked { .. }) => return Ok(Done::Busy(e.to_string())),
        Err(e) => return Err(e),
    };
    if shard::finished(out, &plan.name)?.is_some() {
        return Ok(Done::FinishedElsewhere);
    }
    let partial = shard::partial_dir(out, &plan.name);
    let mut resume = None;
    if partial.join(crate::checkpoint::CHECKPOINT_FILE).is_file() {
        match crate::checkpoint::load(&partial) {
            Ok(ck) if shard::same_run(&ck.state.config.train, &plan.config) => {
                if !quiet {
                    eprintln!("{}: resuming at iteration {}", plan.name, ck.state.iteration);
                }
                resume = Some(ck);
            }
            Ok(_) => eprintln!(
                "{}: the checkpoint in {} is of another configuration; starting over",
                plan.name,
                partial.display()
            ),
            Err(e) => eprintln!("{}: cannot resume ({e}); starting over", plan.name),
        }
    }
    if resume.is_none() && partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(|e| Error::io(&partial, e))?;
    }
    let opts = train::RunOptions {
        checkpoint_every: Some(CHECKPOINT_EVERY),
        resume,
        stop_after: None,
    };
    let outcome = train::run_with(&plan.config, data, &partial, progress, opts);
    let mut result = to_result(plan, outcome);
    result.host = Some(crate::fsutil::hostname());
    result.shard = shard_label.map(String::from);
    if result.status == "failed" {
        // Kept in the partial directory: listed as failed, and retried by the next process.
        std::fs::create_dir_all(&partial).map_err(|e| Error::io(&partial, e))?;
        write_json_atomic(&partial.join(shard::RUN_RESULT_FILE), &result)?;
        return Ok(Done::Trained(result));
    }
    // A diverged run is finished too (it would diverge again); its checkpoint is of no use.
    let ck = partial.join(crate::checkpoint::CHECKPOINT_FILE);
    if ck.exists() {
        std::fs::remove_file(&ck).map_err(|e| Error::io(&ck, e))?;
    }
    write_json_atomic(&partial.join(shard::RUN_RESULT_FILE), &result)?;
    let target = shard::run_dir(out, &plan.name);
    if target.exists() {
        // A run directory without a record: written by an older version, never finished.
        std::fs::remove_dir_all(&target).map_err(|e| Error::io(&target, e))?;
    }
    std::fs::rename(&partial, &target).map_err(|e| Error::io(&target, e))?;
    Ok(Done::Trained(result))
}

/// Assemble `results.json` from the finished runs ([`shard::assemble`]), the seed study's
/// sample predictions (recomputed if `refresh_samples`, else only if absent), and the report.
pub fn assemble_and_report(
    out: &Path,
    ablation: &[PathBuf],
    data: Option<&Dataset>,
    refresh_samples: bool,
) -> Result<shard::Assembly> {
    let a = shard::assemble(out)?;
    let study: StudyRecord = read_json(&out.join(STUDY_FILE))?;
    // Without `refresh_samples`, drawn only if absent or drawn before both networks were done.
    let samples_path = out.join(seed::SAMPLES_FILE);
    let stale = || read_json::<seed::Samples>(&samples_path).is_ok_and(|s| s.networks.len() < 2);
    if a.assembled && study.kind == "seed" && (refresh_samples || !samples_path.is_file() || stale()) {
        let results: Vec<RunResult> = read_json(&out.join(RESULTS_FILE))?;
        let opened;
        let data = match data {
            Some(d) => Some(d),
            None => {
                let c = &study.plans[0].config;
                match Dataset::open(c.data_dir.as_deref(), c.dataset, true) {
                    Ok(d) => {
                        opened = d;
                        Some(&opened)
                    }
                    Err(e) => {
                        eprintln!("no sample predictions in the report: {e}");
                        None
                    }
                }
            }
        };
        if let Some(data) = data {
            seed::write_samples(out, &results, data)?;
        }
    }
    report::write(out, ablation)?;
    Ok(a)
}

fn to_result(plan: &RunPlan, outcome: Result<crate::records::Summary>) -> RunResult {
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
        host: None,
        shard: None,
    };
    match outcome {
        Ok(s) => {
            r.test_accuracy = Some(s.test_accuracy);
            r.test_loss = Some(s.test_loss);
            r.train_seconds = Some(s.train_seconds);
            r.samples_per_second = Some(s.samples_per_second);
        }
        Err(mut e @ Error::Diverged { .. }) => {
            // The study removes a diverged run's checkpoint, so the message must not point to it.
            if let Error::Diverged { checkpoint, .. } = &mut e {
                *checkpoint = None;
            }
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
