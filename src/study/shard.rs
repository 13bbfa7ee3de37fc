//! A study split over processes that share nothing but its output directory: which runs a
//! shard takes, where a run lives while it trains and once it is finished, and how the records
//! of finished runs are assembled into the study's `results.json`.
//!
//! A run's life in `DIR/runs/`:
//! - `.NAME.lock`: held (flock) by the process training it; the kernel releases it when that
//!   process dies, so a killed shard never blocks the run;
//! - `.NAME.partial/`: the run while it trains, with its checkpoint; a later process resumes
//!   from it. A run that failed (not diverged) keeps its `result.json` here and is retried;
//! - `NAME/`: the finished run (trained or diverged), renamed from `.NAME.partial/` in one
//!   step once its `result.json` is written, so a reader sees all of it or none. A finished
//!   run is never trained again.

use super::{RESULTS_FILE, RunResult, STUDY_FILE, StudyRecord, read_json};
use crate::config::TrainConfig;
use crate::error::{Error, Result};
use crate::fsutil::{Lock, write_json_atomic};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A finished run's record, beside its model; `results.json` is these in the study's order.
pub const RUN_RESULT_FILE: &str = "result.json";
/// Records of each shard process, for the report's account of where the study ran.
pub const SHARDS_DIR: &str = "shards";

/// The runs of a study that one process takes: those at positions `i` with `i mod count == index`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
    /// Where `index` and `count` came from (`--shard 1/4`, `SLURM_ARRAY_TASK_ID=1 ...`).
    pub source: String,
}

impl Shard {
    /// `K/N`, `auto` or `auto/N`; `auto` reads the scheduler's environment through `env`.
    pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Shard> {
        let bad = |msg: String| Error::flag("--shard", msg);
        let (k, n) = match text.split_once('/') {
            Some((k, n)) => (k.trim(), Some(n.trim())),
            None => (text.trim(), None),
        };
        let count = match n {
            None => None,
            Some(n) => match n.parse::<usize>() {
                Ok(c) if c >= 1 => Some(c),
                _ => {
                    return Err(bad(format!(
                        "'{text}': the number of shards N in K/N must be a whole number ≥ 1"
                    )));
                }
            },
        };
        if k == "auto" {
            return Self::from_env(count, env);
        }
        let index = k.parse::<usize>().map_err(|_| {
            bad(format!(
                "'{text}' is neither K/N (shard K of N, K from 0, e.g. 0/4) nor auto or auto/N"
            ))
        })?;
        let Some(count) = count else {
            return Err(bad(format!(
                "'{text}': give the number of shards too, as K/N (e.g. {index}/4)"
            )));
        };
        if index >= count {
            return Err(bad(format!(
                "'{text}': K must be below N (shards are numbered 0 to {})",
                count - 1
            )));
        }
        Ok(Shard {
            index,
            count,
            source: format!("--shard {index}/{count}"),
        })
    }

    /// K and N from a Slurm job array, a Kubernetes Indexed Job or GNU parallel, in that order.
    fn from_env(count: Option<usize>, env: impl Fn(&str) -> Option<String>) -> Result<Shard> {
        let e = SchedulerEnv { count, get: &env };
        if let Some(shard) = e.slurm()? {
            return Ok(shard);
        }
        if let Some(shard) = e.kubernetes()? {
            return Ok(shard);
        }
        if let Some(shard) = e.parallel()? {
            return Ok(shard);
        }
        Err(bad_auto(
            "found no scheduler's shard number: none of SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX or PARALLEL_SEQ \
             is set; give the shard as --shard K/N"
                .into(),
        ))
    }

    pub fn takes(&self, position: usize) -> bool {
        position % self.count == self.index
    }

    pub fn label(&self) -> String {
        format!("{}/{}", self.index, self.count)
    }
}

/// `DIR/runs/NAME`: a finished run.
pub fn run_dir(out: &Path, name: &str) -> PathBuf {
    out.join("runs").join(name)
}

/// `DIR/runs/.NAME.partial`: a run in training, or one that failed.
pub fn partial_dir(out: &Path, name: &str) -> PathBuf {
    out.join("runs").join(format!(".{name}.partial"))
}

/// `DIR/runs/.NAME.lock`.
pub fn lock_path(out: &Path, name: &str) -> PathBuf {
    out.join("runs").join(format!(".{name}.lock"))
}

fn read_study(out: &Path, flag: &str) -> Result<StudyRecord> {
    let path = out.join(STUDY_FILE);
    if !path.is_file() {
        return Err(Error::flag(
            flag,
            format!(
                "{} has no {STUDY_FILE}: not a study directory (one that `mnist-mlp study --out` writes)",
                out.display()
            ),
        ));
    }
    read_json(&path)
}

/// Where a study's run stands, as read from its directory.
#[derive(Debug)]
pub enum RunState {
    /// Trained (or diverged) and renamed into place.
    Finished(Box<RunResult>),
    /// A process holds its lock: who, and the last row of its `metrics.csv`, if any.
    Running {
        holder: String,
        last_row: Option<String>,
    },
    /// Failed with an error (not divergence); a later process retries it.
    Failed(Box<RunResult>),
    /// Started and stopped (its process was killed): resumes from the checkpoint, if it has one.
    Interrupted {
        checkpoint: bool,
        last_row: Option<String>,
    },
    Missing,
}

fn last_metrics_row(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(crate::records::METRICS_FILE)).ok()?;
    let mut lines = text.lines();
    let header = lines.next()?;
    let last = lines.last()?;
    Some(
        header
            .split(',')
            .zip(last.split(','))
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// The finished run's record, if `DIR/runs/NAME/result.json` is there.
pub fn finished(out: &Path, name: &str) -> Result<Option<RunResult>> {
    let path = run_dir(out, name).join(RUN_RESULT_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    read_json(&path).map(Some)
}

/// Where run `name` stands. Probing the lock takes it for a moment, which is harmless: a
/// process that finds it taken treats the run as running, as it briefly is.
pub fn state(out: &Path, name: &str) -> Result<RunState> {
    if let Some(r) = finished(out, name)? {
        return Ok(RunState::Finished(Box::new(r)));
    }
    let partial = partial_dir(out, name);
    let lock = lock_path(out, name);
    if lock.exists() {
        match Lock::try_acquire(&lock, name) {
            Err(Error::Locked { holder, .. }) => {
                return Ok(RunState::Running {
                    holder,
                    last_row: last_metrics_row(&partial),
                });
            }
            Err(e) => return Err(e),
            Ok(_released_at_once) => {}
        }
        // Finished between the first look and the lock.
        if let Some(r) = finished(out, name)? {
            return Ok(RunState::Finished(Box::new(r)));
        }
    }
    if !partial.is_dir() {
        return Ok(RunState::Missing);
    }
    let failed = partial.join(RUN_RESULT_FILE);
    if failed.is_file() {
        return Ok(RunState::Failed(Box::new(read_json(&failed)?)));
    }
    Ok(RunState::Interrupted {
        checkpoint: partial.join(crate::checkpoint::CHECKPOINT_FILE).is_file(),
        last_row: last_metrics_row(&partial),
    })
}

/// A run's configuration as it decides the results: without the thread count (results do not
/// depend on it) and the data directory (the same files may be mounted elsewhere on each host).
fn comparable(c: &TrainConfig) -> serde_json::Value {
    let mut c = c.clone();
    c.threads = 1;
    c.data_dir = None;
    serde_json::to_value(c).expect("config serialises")
}

/// Whether two configurations train the same run.
pub fn same_run(a: &TrainConfig, b: &TrainConfig) -> bool {
    comparable(a) == comparable(b)
}

/// What one shard process did, in `DIR/shards/`; `report --from` gathers these into
/// `study.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShardRecord {
    /// `K/N`, or `only NAME`.
    pub shard: String,
    /// Where K and N came from.
    pub source: String,
    pub host: String,
    pub pid: u32,
    pub command: String,
    pub machine: super::Machine,
    pub jobs: usize,
    pub threads_per_run: usize,
    /// Seconds since the Unix epoch.
    pub started_unix: f64,
    pub wall_seconds: f64,
    /// Runs this process trained (or resumed) to the end.
    pub trained: Vec<String>,
    /// Runs it found finished already.
    pub skipped: Vec<String>,
}

pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

pub fn write_shard_record(out: &Path, r: &ShardRecord) -> Result<()> {
    let name = format!("{}.{}.{}.json", r.shard.replace(['/', ' '], "-"), r.host, r.pid);
    write_json_atomic(&out.join(SHARDS_DIR).join(name), r)
}

fn shard_records(out: &Path) -> Result<Vec<ShardRecord>> {
    let dir = out.join(SHARDS_DIR);
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect(),
        Err(_) => return Ok(Vec::new()),
    };
    paths.sort();
    let mut records: Vec<ShardRecord> = paths.iter().map(|p| read_json(p)).collect::<Result<_>>()?;
    records.sort_by(|a, b| a.started_unix.total_cmp(&b.started_unix));
    Ok(records)
}

/// What [`assemble`] found.
#[derive(Debug, Default)]
pub struct Assembly {
    /// The study's runs in order, and how many of them are finished.
    pub total: usize,
    pub finished: usize,
    /// Names of runs that failed (they are in `results.json` with status `failed`).
    pub failed: Vec<String>,
    /// Names of runs with no record yet (running, interrupted or never started).
    pub missing: Vec<String>,
    /// Whether the directory holds per-run records at all (a study written by an older version,
    /// or the committed records of `studies/results/`, do not, and are left as they are).
    pub assembled: bool,
}

/// Write `DIR/results.json` from the records of the finished and failed runs, in the study's
/// order, and gather the shard records into `study.json`. Missing runs are left out of
/// `results.json`; the report lists them from `study.json`'s plans.
pub fn assemble(out: &Path) -> Result<Assembly> {
    let mut study = read_study(out, "report --from")?;
    let mut a = Assembly {
        total: study.plans.len(),
        ..Assembly::default()
    };
    let mut results = Vec::new();
    for plan in &study.plans {
        match state(out, &plan.name)? {
            RunState::Finished(r) => {
                if !same_run(&r.config, &plan.config) {
                    return Err(Error::flag(
                        "report --from",
                        format!(
                            "{} was trained with another configuration than study.json's run '{}'",
                            run_dir(out, &plan.name).display(),
                            plan.name
                        ),
                    ));
                }
                a.finished += 1;
                results.push(*r);
            }
            RunState::Failed(r) => {
                a.failed.push(plan.name.clone());
                results.push(*r);
            }
            _ => a.missing.push(plan.name.clone()),
        }
    }
    if a.finished + a.failed.len() == 0 && out.join(RESULTS_FILE).is_file() {
        // No per-run records: keep the results.json the study wrote.
        return Ok(a);
    }
    a.assembled = true;
    write_json_atomic(&out.join(RESULTS_FILE), &results)?;
    let shards = shard_records(out)?;
    if !shards.is_empty() {
        let start = shards
            .iter()
            .map(|s| s.started_unix)
            .fold(f64::INFINITY, f64::min);
        let end = shards
            .iter()
            .map(|s| s.started_unix + s.wall_seconds)
            .fold(f64::NEG_INFINITY, f64::max);
        study.wall_seconds = end - start;
        study.shards = shards;
        write_json_atomic(&out.join(STUDY_FILE), &study)?;
    }
    Ok(a)
}

/// `study --status`: one line per run that is not finished, and the counts.
pub fn status(out: &Path) -> Result<String> {
    let study = read_study(out, "--status")?;
    let (mut finished, mut running, mut failed, mut interrupted, mut missing) = (0, 0, 0, 0, 0);
    let mut lines = Vec::new();
    for plan in &study.plans {
        match state(out, &plan.name)? {
            RunState::Finished(_) => finished += 1,
            RunState::Running { holder, last_row } => {
                running += 1;
                lines.push(format!(
                    "running      {}  ({holder})  {}",
                    plan.name,
                    last_row.unwrap_or_else(|| "no metrics row yet".into())
                ));
            }
            RunState::Failed(r) => {
                failed += 1;
                lines.push(format!(
                    "failed       {}  {}",
                    plan.name,
                    r.message.clone().unwrap_or_default()
                ));
            }
            RunState::Interrupted { checkpoint, last_row } => {
                interrupted += 1;
                lines.push(format!(
                    "interrupted  {}  ({}){}",
                    plan.name,
                    if checkpoint {
                        "resumes from its checkpoint"
                    } else {
                        "no checkpoint: starts over"
                    },
                    last_row.map(|r| format!("  {r}")).unwrap_or_default()
                ));
            }
            RunState::Missing => {
                missing += 1;
                lines.push(format!("missing      {}", plan.name));
            }
        }
    }
    if finished + running + failed + interrupted == 0 && out.join(RESULTS_FILE).is_file() {
        lines.push(format!(
            "(no run has a record of its own: {} was written by an earlier version, or holds records only; its {RESULTS_FILE} is what it has)",
            out.display()
        ));
    }
    lines.push(format!(
        "study '{}' in {}: {} runs: {finished} finished, {running} running, {interrupted} interrupted, {failed} failed, {missing} not started",
        study.spec.name,
        out.display(),
        study.plans.len()
    ));
    Ok(lines.join("\n") + "\n")
}

/// An error of `--shard auto`.
fn bad_auto(msg: String) -> Error {
    Error::flag("--shard auto", msg)
}

/// The environment `--shard auto` reads, and the N given as `--shard auto/N` if any.
struct SchedulerEnv<'a> {
    count: Option<usize>,
    get: &'a dyn Fn(&str) -> Option<String>,
}

impl SchedulerEnv<'_> {
    /// The whole number in `var`, if set.
    fn num(&self, var: &str) -> Result<Option<usize>> {
        match (self.get)(var) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<usize>()
                .map(Some)
                .map_err(|_| bad_auto(format!("{var}={v:?} is not a whole number"))),
        }
    }

    /// Shard `index` of `n`, as `source` gives them, checked against `--shard auto/N`.
    fn shard(&self, index: usize, n: usize, source: String) -> Result<Shard> {
        if let Some(given) = self.count
            && given != n
        {
            return Err(bad_auto(format!(
                "{source} says {n} shards, but --shard auto/{given} says {given}"
            )));
        }
        if index >= n {
            return Err(bad_auto(format!(
                "{source}: shard {index} is not below the number of shards, {n}"
            )));
        }
        Ok(Shard {
            index,
            count: n,
            source,
        })
    }

    /// A Slurm job array's task, counted from SLURM_ARRAY_TASK_MIN.
    fn slurm(&self) -> Result<Option<Shard>> {
        let Some(id) = self.num("SLURM_ARRAY_TASK_ID")? else {
            return Ok(None);
        };
        let min = self.num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let n = match (self.num("SLURM_ARRAY_TASK_COUNT")?, self.count) {
            (Some(n), _) | (None, Some(n)) => n,
            (None, None) => {
                return Err(bad_auto(
                    "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not; give N as --shard auto/N"
                        .into(),
                ));
            }
        };
        let index = id.checked_sub(min).ok_or_else(|| {
            bad_auto(format!(
                "SLURM_ARRAY_TASK_ID={id} is below SLURM_ARRAY_TASK_MIN={min}"
            ))
        })?;
        let source = format!(
            "Slurm job array: SLURM_ARRAY_TASK_ID={id} - SLURM_ARRAY_TASK_MIN={min}, SLURM_ARRAY_TASK_COUNT={n}"
        );
        self.shard(index, n, source).map(Some)
    }

    /// N from `--shard auto/N`, for a scheduler that does not say it; else the error `missing`.
    fn given_count(&self, missing: &str) -> Result<usize> {
        self.count.ok_or_else(|| bad_auto(missing.into()))
    }

    /// A Kubernetes Indexed Job's completion index; N from `--shard auto/N`.
    fn kubernetes(&self) -> Result<Option<Shard>> {
        let Some(index) = self.num("JOB_COMPLETION_INDEX")? else {
            return Ok(None);
        };
        let n = self.given_count(
            "JOB_COMPLETION_INDEX (a Kubernetes Indexed Job) is set, but the number of shards is not: \
             give it as --shard auto/N, N = the Job's completions",
        )?;
        let source = format!("Kubernetes Indexed Job: JOB_COMPLETION_INDEX={index}, N={n} from --shard");
        self.shard(index, n, source).map(Some)
    }

    /// GNU parallel's job number, counted from 1; N from `--shard auto/N`.
    fn parallel(&self) -> Result<Option<Shard>> {
        let Some(seq) = self.num("PARALLEL_SEQ")? else {
            return Ok(None);
        };
        let n = self.given_count(
            "PARALLEL_SEQ (GNU parallel) is set, but the number of shards is not: give it as --shard auto/N",
        )?;
        let index = seq
            .checked_sub(1)
            .ok_or_else(|| bad_auto("PARALLEL_SEQ=0; GNU parallel counts its jobs from 1".into()))?;
        let source = format!("GNU parallel: PARALLEL_SEQ={seq} (shard {index}), N={n} from --shard");
        self.shard(index, n, source).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn an_explicit_shard_takes_every_nth_run() {
        let s = Shard::parse("1/3", env(&[])).unwrap();
        assert_eq!((s.index, s.count), (1, 3));
        let taken: Vec<usize> = (0..8).filter(|&i| s.takes(i)).collect();
        assert_eq!(taken, [1, 4, 7]);
        for (bad, want) in [
            ("3/3", "K must be below N"),
            ("1", "give the number of shards"),
            ("a/2", "neither K/N"),
            ("0/0", "≥ 1"),
            ("auto", "none of SLURM_ARRAY_TASK_ID"),
        ] {
            let msg = Shard::parse(bad, env(&[])).unwrap_err().to_string();
            assert!(msg.contains(want), "{bad}: {msg}");
        }
    }

    #[test]
    fn auto_reads_slurm_then_kubernetes_then_gnu_parallel_and_says_which() {
        let s = Shard::parse(
            "auto",
            env(&[
                ("SLURM_ARRAY_TASK_ID", "5"),
                ("SLURM_ARRAY_TASK_MIN", "4"),
                ("SLURM_ARRAY_TASK_COUNT", "3"),
                ("PARALLEL_SEQ", "2"),
            ]),
        )
        .unwrap();
        assert_eq!((s.index, s.count), (1, 3));
        assert!(s.source.starts_with("Slurm job array"), "{}", s.source);

        let s = Shard::parse("auto/4", env(&[("JOB_COMPLETION_INDEX", "3")])).unwrap();
        assert_eq!((s.index, s.count), (3, 4));
        assert!(s.source.contains("Kubernetes"), "{}", s.source);

        let s = Shard::parse("auto/2", env(&[("PARALLEL_SEQ", "2")])).unwrap();
        assert_eq!((s.index, s.count), (1, 2));
        assert!(s.source.contains("GNU parallel"), "{}", s.source);

        for (text, vars, want) in [
            ("auto", vec![("JOB_COMPLETION_INDEX", "0")], "auto/N"),
            ("auto", vec![("PARALLEL_SEQ", "1")], "auto/N"),
            ("auto/2", vec![("PARALLEL_SEQ", "3")], "not below"),
            (
                "auto/2",
                vec![("SLURM_ARRAY_TASK_ID", "0"), ("SLURM_ARRAY_TASK_COUNT", "3")],
                "says 3 shards",
            ),
            ("auto", vec![("SLURM_ARRAY_TASK_ID", "x")], "not a whole number"),
        ] {
            let msg = Shard::parse(text, env(&vars)).unwrap_err().to_string();
            assert!(msg.contains(want), "{text} {vars:?}: {msg}");
        }
    }
}
