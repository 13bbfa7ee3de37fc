//! A study split into shards that share only the output directory, and the locks that keep two
//! processes from writing the same run: from outside, on a small synthetic data set.

mod common;

use common::{mnist_mlp, read_json, stderr_of};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Four runs (two rates × two seeds) of 200 iterations on a 784-16-10 network.
const SPEC: &str = r#"
name = "shards"
seeds = [1, 2]
[base]
hidden = [16]
iterations = 200
eval_every = 50
batch_size = 32
[grid]
lr = [0.05, 0.1]
"#;
const NAMES: [&str; 4] = ["lr=0.05-s1", "lr=0.05-s2", "lr=0.1-s1", "lr=0.1-s2"];

struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    data: PathBuf,
    spec: PathBuf,
}

fn setup(spec: &str) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let data = root.join("data");
    common::write_dataset(&data, 400, 100, 5);
    let path = root.join("spec.toml");
    std::fs::write(&path, spec).unwrap();
    Setup {
        _tmp: tmp,
        root,
        data,
        spec: path,
    }
}

/// The binary, outside any scheduler (the tests may run inside one).
fn no_scheduler(mut cmd: assert_cmd::Command) -> assert_cmd::Command {
    for var in ["SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX", "PARALLEL_SEQ"] {
        cmd.env_remove(var);
    }
    cmd
}

/// `mnist-mlp study --spec SPEC --data-dir DATA --out OUT --quiet --jobs 2` plus `extra`, as a
/// process of its own (for running two at once and for killing one). Two jobs of one thread
/// each: a run's threads spin-wait for each other, which on a loaded 2-core machine is slower
/// than one thread by a factor of ten.
fn spawn_study(s: &Setup, out: &Path, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_mnist-mlp"))
        .args(["study", "--quiet", "--jobs", "2", "--spec"])
        .arg(&s.spec)
        .arg("--data-dir")
        .arg(&s.data)
        .arg("--out")
        .arg(out)
        .args(extra)
        .env("MNIST_MLP_DATA", "/nonexistent/mnist-mlp-test-cache")
        .env("MNIST_MLP_CACHE", "/nonexistent/mnist-mlp-test-cache")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn study(s: &Setup, out: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    no_scheduler(mnist_mlp())
        .args(["study", "--quiet", "--jobs", "2", "--spec"])
        .arg(&s.spec)
        .arg("--data-dir")
        .arg(&s.data)
        .arg("--out")
        .arg(out)
        .args(extra)
        .assert()
}

fn finish(child: Child) -> String {
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "a study process failed:\n{err}");
    err
}

/// `results.json` without the fields that record time, host and shard.
fn comparable_results(dir: &Path) -> serde_json::Value {
    let mut v = read_json(&dir.join("results.json"));
    for r in v.as_array_mut().unwrap() {
        let r = r.as_object_mut().unwrap();
        for key in ["train_seconds", "samples_per_second", "host", "shard"] {
            r.remove(key);
        }
    }
    v
}

fn model(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join("runs").join(name).join("model.safetensors")).unwrap()
}

fn wait_for(what: &str, child: &mut Child, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the process ended ({status}) before {what}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn list_prints_every_run_with_its_position_name_options_and_the_count() {
    let s = setup(SPEC);
    let a = mnist_mlp()
        .args(["study", "--list", "--spec"])
        .arg(&s.spec)
        .assert()
        .success();
    let text = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    for (i, name) in NAMES.iter().enumerate() {
        assert!(
            lines[i].starts_with(&format!("{i} {name} ")),
            "line {i}: {}",
            lines[i]
        );
        assert!(lines[i].contains("hidden=[16]") && lines[i].contains("iterations=200"));
    }
    assert!(
        lines[2].contains("lr=0.1 ") && lines[2].contains("seed=1"),
        "{}",
        lines[2]
    );
    assert_eq!(lines[4], "4 runs");
}

#[test]
fn two_shards_at_once_then_report_from_give_the_same_runs_and_models_as_one_process() {
    let s = setup(SPEC);
    let (one, two) = (s.root.join("one"), s.root.join("two"));
    study(&s, &one, &[]).success();

    let a = spawn_study(&s, &two, &["--shard", "0/2"]);
    let b = spawn_study(&s, &two, &["--shard", "1/2"]);
    let (ea, eb) = (finish(a), finish(b));
    assert!(
        !two.join("results.json").exists(),
        "a shard leaves the results to report --from"
    );
    let _ = (ea, eb);
    let r = mnist_mlp()
        .args(["report", "--from"])
        .arg(&two)
        .assert()
        .success();
    assert!(
        stderr_of(&r).contains("4 of 4 runs finished"),
        "{}",
        stderr_of(&r)
    );

    for name in NAMES {
        assert!(model(&one, name) == model(&two, name), "{name}: models differ");
    }
    assert_eq!(comparable_results(&one), comparable_results(&two));
    let results = read_json(&two.join("results.json"));
    let shards: Vec<&str> = results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["shard"].as_str().unwrap())
        .collect();
    assert_eq!(shards, ["0/2", "1/2", "0/2", "1/2"]);
    assert!(one.join("report.html").is_file() && two.join("report.html").is_file());
    let study = read_json(&two.join("study.json"));
    assert_eq!(study["shards"].as_array().unwrap().len(), 2);

    let st = mnist_mlp()
        .args(["study", "--status"])
        .arg(&two)
        .assert()
        .success();
    let text = String::from_utf8_lossy(&st.get_output().stdout).into_owned();
    assert!(text.contains("4 runs: 4 finished, 0 running"), "{text}");
}

#[test]
fn report_from_an_unfinished_study_lists_what_is_missing_and_only_fills_one_run() {
    let s = setup(SPEC);
    let out = s.root.join("study");
    study(&s, &out, &["--shard", "1/2"]).success();

    let st = mnist_mlp()
        .args(["study", "--status"])
        .arg(&out)
        .assert()
        .success();
    let text = String::from_utf8_lossy(&st.get_output().stdout).into_owned();
    assert!(
        text.contains("2 finished, 0 running, 0 interrupted, 0 failed, 2 not started"),
        "{text}"
    );
    assert!(
        text.contains("missing      lr=0.05-s1") && text.contains("missing      lr=0.1-s1"),
        "{text}"
    );

    let r = mnist_mlp()
        .args(["report", "--from"])
        .arg(&out)
        .assert()
        .success();
    let err = stderr_of(&r);
    assert!(err.contains("2 of 4 runs finished; 0 failed, 2 missing"), "{err}");
    assert!(err.contains("missing  lr=0.05-s1"), "{err}");
    let names: Vec<String> = read_json(&out.join("results.json"))
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["lr=0.05-s2", "lr=0.1-s2"]);
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("Not finished") && md.contains("lr=0.1-s1"), "{md}");

    let a = study(&s, &out, &["--only", "lr=0.1-s1", "--shard", "0/2"]).success();
    let _ = a;
    assert!(out.join("runs/lr=0.1-s1/model.safetensors").is_file());
    assert!(
        !out.join("runs/lr=0.05-s1").exists(),
        "--only trains that run alone"
    );
    let a = study(&s, &out, &["--only", "lr=0.1-s1"]).success();
    let _ = a;
    let st = mnist_mlp()
        .args(["study", "--status"])
        .arg(&out)
        .assert()
        .success();
    let text = String::from_utf8_lossy(&st.get_output().stdout).into_owned();
    assert!(text.contains("3 finished"), "{text}");
}

#[test]
fn a_shard_killed_mid_run_resumes_it_and_does_not_redo_its_finished_runs() {
    // Shard 0/2 takes runs 0 and 2: a short one, and a long one killed midway once the short
    // one is finished.
    let spec = r#"
name = "killed"
[base]
hidden = [16]
batch_size = 32
eval_every = 100
[[runs]]
name = "short"
iterations = 200
[[runs]]
name = "other"
iterations = 200
[[runs]]
name = "long"
iterations = 4000
[[runs]]
name = "fourth"
iterations = 200
"#;
    let s = setup(spec);
    let out = s.root.join("study");
    let mut child = spawn_study(&s, &out, &["--shard", "0/2"]);
    let metrics = out.join("runs/.long.partial/metrics.csv");
    // Checkpoints are every 500 iterations: wait for the evaluation at 600, past the first.
    wait_for(
        "the short run is finished and the long one is past iteration 500",
        &mut child,
        || {
            out.join("runs/short/result.json").is_file()
                && std::fs::read_to_string(&metrics).is_ok_and(|t| t.lines().count() >= 7)
        },
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let short_model = out.join("runs/short/model.safetensors");
    let short_written = std::fs::metadata(&short_model).unwrap().modified().unwrap();
    assert!(
        !out.join("runs/long").exists(),
        "a killed run must not look finished"
    );

    let st = mnist_mlp()
        .args(["study", "--status"])
        .arg(&out)
        .assert()
        .success();
    let text = String::from_utf8_lossy(&st.get_output().stdout).into_owned();
    assert!(
        text.contains("interrupted  long  (resumes from its checkpoint)"),
        "{text}"
    );
    assert!(text.contains("1 finished, 0 running, 1 interrupted"), "{text}");

    let resumed = mnist_mlp()
        .args(["study", "--jobs", "2", "--spec"])
        .arg(&s.spec)
        .arg("--data-dir")
        .arg(&s.data)
        .arg("--out")
        .arg(&out)
        .args(["--shard", "0/2"])
        .assert()
        .success();
    let err = stderr_of(&resumed);
    assert!(err.contains("1 finished already, 1 to train"), "{err}");
    let at: usize = err
        .split("long: resuming at iteration ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the long run did not resume: {err}"));
    assert!(
        at >= 500,
        "resumed at iteration {at}, not from a checkpoint midway"
    );
    let again = mnist_mlp()
        .args(["study", "--jobs", "2", "--spec"])
        .arg(&s.spec)
        .arg("--data-dir")
        .arg(&s.data)
        .arg("--out")
        .arg(&out)
        .args(["--shard", "0/2"])
        .assert()
        .success();
    assert!(
        stderr_of(&again).contains("2 finished already, 0 to train"),
        "{}",
        stderr_of(&again)
    );
    assert_eq!(
        std::fs::metadata(&short_model).unwrap().modified().unwrap(),
        short_written,
        "the finished run was trained again"
    );
    // Which process did what, from the shard records: the restart trained only the long run.
    let mut records: Vec<serde_json::Value> = std::fs::read_dir(out.join("shards"))
        .unwrap()
        .map(|e| read_json(&e.unwrap().path()))
        .collect();
    records.sort_by(|a, b| {
        a["started_unix"]
            .as_f64()
            .partial_cmp(&b["started_unix"].as_f64())
            .unwrap()
    });
    assert_eq!(records.len(), 2, "the killed process wrote no record");
    assert_eq!(records[0]["trained"], serde_json::json!(["long"]));
    assert_eq!(records[0]["skipped"], serde_json::json!(["short"]));

    // The resumed run is the run trained without interruption, bit for bit.
    let reference = s.root.join("reference");
    study(&s, &reference, &["--only", "long"]).success();
    assert!(
        model(&out, "long") == model(&reference, "long"),
        "the resumed run differs"
    );
    let m = |d: &Path| std::fs::read(d.join("runs/long/metrics.csv")).unwrap();
    assert_eq!(m(&out), m(&reference));
}

#[test]
fn a_run_locked_by_a_live_process_is_refused_shown_as_running_and_trained_once_released() {
    let s = setup(SPEC);
    let out = s.root.join("study");
    std::fs::create_dir_all(out.join("runs")).unwrap();
    let lock = mnist_mlp::fsutil::Lock::try_acquire(&out.join("runs/.lr=0.1-s1.lock"), "test").unwrap();
    let a = study(&s, &out, &["--only", "lr=0.1-s1"]).failure();
    let err = stderr_of(&a);
    assert!(
        err.contains("run 'lr=0.1-s1'")
            && err.contains("is being written by another process")
            && err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out.join("runs/lr=0.1-s1").exists());
    let st = mnist_mlp()
        .args(["study", "--status"])
        .arg(&out)
        .assert()
        .success();
    let text = String::from_utf8_lossy(&st.get_output().stdout).into_owned();
    assert!(
        text.contains(&format!("running      lr=0.1-s1  (pid {}", std::process::id()))
            && text.contains("0 finished, 1 running"),
        "{text}"
    );
    drop(lock);
    study(&s, &out, &["--only", "lr=0.1-s1"]).success();
    assert!(out.join("runs/lr=0.1-s1/model.safetensors").is_file());
}

/// `mnist-mlp train` on the synthetic data into `out`, with `iterations`.
fn train(s: &Setup, out: &Path, iterations: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mnist-mlp"));
    c.args([
        "train",
        "--quiet",
        "--threads",
        "1",
        "--hidden",
        "16",
        "--eval-every",
        "100",
        "--iterations",
        iterations,
    ])
    .arg("--data-dir")
    .arg(&s.data)
    .arg("--out")
    .arg(out)
    .env("MNIST_MLP_DATA", "/nonexistent/mnist-mlp-test-cache")
    .env("MNIST_MLP_CACHE", "/nonexistent/mnist-mlp-test-cache")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    c
}

#[test]
fn a_second_train_into_a_busy_directory_is_refused_and_a_killed_one_does_not_hold_it() {
    let s = setup(SPEC);
    let out = s.root.join("model");
    let mut first = train(&s, &out, "100000000").spawn().unwrap();
    let lock = out.join(".mnist-mlp.lock");
    wait_for("the first train writes its first checkpoint", &mut first, || {
        out.join("checkpoint.safetensors").is_file()
    });
    let second = train(&s, &out, "50").output().unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "the second writer was let in");
    assert!(
        err.contains(&format!("the run directory {}", out.display()))
            && err.contains("is being written by another process")
            && err.contains(&format!("pid {}", first.id())),
        "{err}"
    );
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first writer must keep running"
    );

    first.kill().unwrap(); // SIGKILL: no chance to clean up
    first.wait().unwrap();
    assert!(lock.is_file(), "a killed process leaves its lock file behind");
    // The dead run's checkpoint is still there: starting afresh over it takes --overwrite.
    let third = train(&s, &out, "50").arg("--overwrite").output().unwrap();
    assert!(
        third.status.success(),
        "a dead holder blocked the directory: {}",
        String::from_utf8_lossy(&third.stderr)
    );
    assert!(out.join("model.safetensors").is_file());
    assert!(!lock.exists(), "a clean exit removes its lock file");
}

#[test]
fn shard_flags_and_a_different_study_in_the_same_directory_are_refused_with_the_reason() {
    let s = setup(SPEC);
    let out = s.root.join("study");
    for (flags, want) in [
        (vec!["--shard", "2/2"], "K must be below N"),
        (vec!["--shard", "auto"], "none of SLURM_ARRAY_TASK_ID"),
        (vec!["--only", "nosuch"], "no run named 'nosuch'"),
    ] {
        let a = study(&s, &out, &flags).failure();
        let err = stderr_of(&a);
        assert!(
            err.contains(want) && !err.contains("panicked"),
            "{flags:?}: {err}"
        );
    }
    let a = no_scheduler(mnist_mlp())
        .args([
            "study",
            "--quiet",
            "--shard",
            "auto/2",
            "--only",
            "lr=0.1-s2",
            "--spec",
        ])
        .arg(&s.spec)
        .arg("--data-dir")
        .arg(&s.data)
        .arg("--out")
        .arg(&out)
        .env("PARALLEL_SEQ", "2")
        .assert()
        .success();
    let _ = a;
    let rec = read_json(&out.join("runs/lr=0.1-s2/result.json"));
    assert_eq!(rec["shard"], "1/2");

    // The same directory with another iteration count is another study.
    let a = study(&s, &out, &["--iterations", "100"]).failure();
    let err = stderr_of(&a);
    assert!(
        err.contains("already holds study 'shards'") && err.contains("other options"),
        "{err}"
    );
}

#[test]
fn the_committed_list_of_the_hidden_size_ablation_is_what_list_prints() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let a = mnist_mlp()
        .current_dir(root)
        .args(["study", "--list", "--spec", "studies/ablation-hidden.toml"])
        .assert()
        .success();
    let listed = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
    let committed = std::fs::read_to_string(root.join("studies/ablation-hidden.list")).unwrap();
    assert_eq!(
        listed, committed,
        "regenerate studies/ablation-hidden.list with --list"
    );
    assert!(listed.ends_with("\n42 runs\n"), "7 cells × 6 hidden sizes");
}
