//! Checkpoints and resuming: a run stopped part-way (by a flag or by a real SIGINT) and resumed
//! ends with the same bytes as the run that was never stopped; contradicting configurations are
//! refused; a diverging run stops at once and keeps a loadable checkpoint.

mod common;

use common::mnist_mlp;

use std::io::{BufRead, BufReader};
use std::path::Path;

const FLAGS: [&str; 10] = [
    "--hidden",
    "48,24",
    "--batch-size",
    "32",
    "--lr",
    "0.05",
    "--seed",
    "9",
    "--threads",
    "2",
];

fn train(data: &Path, out: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    mnist_mlp()
        .arg("train")
        .args(FLAGS)
        .arg("--data-dir")
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(extra)
        .assert()
}

fn bytes(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

#[test]
fn a_run_stopped_part_way_and_resumed_ends_byte_identical() {
    stop_resume_and_compare(&[]);
}

/// Adam's second moment, the dropout masks and image distortions (keyed by the step), the
/// warm-up and schedule position, the validation split and the best parameters so far
/// (`--keep-best`) must all survive a checkpoint.
#[test]
fn adam_with_dropout_max_norm_and_validation_resumes_byte_identical() {
    stop_resume_and_compare(&[
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
        "--warmup",
        "50",
        "--schedule",
        "onecycle",
        "--validation",
        "100",
        "--augment",
        "shift=2,rotate=10,elastic=34:4",
        "--keep-best",
    ]);
}

fn stop_resume_and_compare(options: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::write_dataset(&data, 500, 100, 3);
    let (full, cut) = (tmp.path().join("full"), tmp.path().join("cut"));
    let run = [
        &["--iterations", "400", "--eval-every", "100", "--quiet"],
        options,
    ]
    .concat();
    train(&data, &full, &run).success();
    // Checkpoints every 70 iterations, stop after 150: the state includes a half-full window of
    // training losses, which the resumed run must continue exactly.
    let a = train(
        &data,
        &cut,
        &[&run[..], &["--checkpoint-every", "70", "--stop-after", "150"]].concat(),
    );
    let a = a.code(130);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(err.contains("Resume with: mnist-mlp train --resume"), "{err}");
    assert!(cut.join("checkpoint.safetensors").is_file());
    assert!(!cut.join("model.safetensors").exists());

    // Resume with another thread count: results do not depend on it.
    mnist_mlp()
        .args(["train", "--quiet", "--threads", "1", "--resume"])
        .arg(&cut)
        .assert()
        .success();
    assert!(
        bytes(&full.join("model.safetensors")) == bytes(&cut.join("model.safetensors")),
        "models differ"
    );
    assert_eq!(
        std::fs::read_to_string(full.join("metrics.csv")).unwrap(),
        std::fs::read_to_string(cut.join("metrics.csv")).unwrap()
    );
    // The per-layer statistics too: a row per hidden layer and evaluation, the same bytes.
    let layers = std::fs::read_to_string(full.join("layers.csv")).unwrap();
    assert_eq!(layers.lines().count(), 1 + 4 * 2, "{layers}");
    assert_eq!(layers, std::fs::read_to_string(cut.join("layers.csv")).unwrap());
    assert!(
        !cut.join("checkpoint.safetensors").exists(),
        "a finished run leaves no checkpoint"
    );
}

#[test]
fn ctrl_c_checkpoints_and_the_resumed_run_matches_the_uninterrupted_one() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::write_dataset(&data, 500, 100, 4);
    let (full, cut) = (tmp.path().join("full"), tmp.path().join("cut"));
    let run = [
        "--hidden",
        "16",
        "--iterations",
        "150000",
        "--eval-every",
        "2000",
        "--batch-size",
        "8",
    ];
    mnist_mlp()
        .args(["train", "--quiet", "--threads", "1"])
        .args(run)
        .arg("--data-dir")
        .arg(&data)
        .arg("--out")
        .arg(&full)
        .assert()
        .success();

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mnist-mlp"))
        .args(["train", "--threads", "1"])
        .args(run)
        .arg("--data-dir")
        .arg(&data)
        .arg("--out")
        .arg(&cut)
        .env("MNIST_MLP_DATA", "/nonexistent")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Progress lines (stderr is a pipe) start with "[": interrupt after the first one.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 && !line.starts_with('[') {
        line.clear();
    }
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "stderr: {rest}");
    assert!(
        rest.contains("interrupted after iteration") && rest.contains("--resume"),
        "{rest}"
    );

    mnist_mlp()
        .args(["train", "--quiet", "--resume"])
        .arg(&cut)
        .assert()
        .success();
    assert!(
        bytes(&full.join("model.safetensors")) == bytes(&cut.join("model.safetensors")),
        "models differ"
    );
}

#[test]
fn resuming_with_a_contradicting_configuration_or_other_data_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::write_dataset(&data, 300, 50, 5);
    let cut = tmp.path().join("cut");
    train(
        &data,
        &cut,
        &["--iterations", "200", "--stop-after", "50", "--quiet"],
    )
    .code(130);

    for (flag, value) in [("--hidden", "100"), ("--lr", "0.5"), ("--activation", "sigmoid")] {
        let a = mnist_mlp()
            .args(["train", "--quiet", flag, value, "--resume"])
            .arg(&cut)
            .assert()
            .failure();
        let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
        assert!(
            err.contains(flag) && err.contains("contradicts the checkpoint"),
            "{flag}: {err}"
        );
    }
    let other = tmp.path().join("other");
    common::write_dataset(&other, 200, 50, 6);
    let a = mnist_mlp()
        .args(["train", "--quiet", "--data-dir"])
        .arg(&other)
        .arg("--resume")
        .arg(&cut)
        .assert()
        .failure();
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(err.contains("--data-dir") && err.contains("contradicts"), "{err}");

    let done = tmp.path().join("done");
    train(&data, &done, &["--iterations", "20", "--quiet"]).success();
    let a = mnist_mlp()
        .args(["train", "--resume"])
        .arg(&done)
        .assert()
        .failure();
    assert!(String::from_utf8_lossy(&a.get_output().stderr).contains("no checkpoint"));
}

#[test]
fn a_diverging_run_stops_with_the_iteration_and_rate_and_keeps_a_loadable_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::write_dataset(&data, 300, 50, 7);
    let out = tmp.path().join("div");
    let a = mnist_mlp()
        .args([
            "train",
            "--hidden",
            "48,24",
            "--lr",
            "50",
            "--iterations",
            "500",
            "--checkpoint-every",
            "1",
        ])
        .args(["--quiet", "--data-dir"])
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .assert()
        .failure();
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(
        err.contains("diverged at iteration") && err.contains("learning rate 50"),
        "{err}"
    );
    assert!(
        err.contains("last finite loss") && err.contains("lower --lr") && err.contains("last checkpoint"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let ck = mnist_mlp::checkpoint::load(&out).expect("the last good checkpoint loads");
    assert!(
        ck.params.iter().all(|v| v.is_finite()),
        "the kept checkpoint holds finite parameters"
    );
}

/// A NaN in one first-layer weight leaves the loss finite (ReLU maps the NaN pre-activation to
/// 0, and the first layer's products skip it wherever it meets a zero pixel), so the trainer
/// checks the parameters themselves before every evaluation and checkpoint: the run stops
/// with the same message as a non-finite loss, naming the parameter, at the next evaluation,
/// and writes no model.
#[test]
fn a_nan_parameter_stops_the_run_though_the_loss_stays_finite() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::write_dataset(&data, 300, 50, 7);
    let out = tmp.path().join("nan");
    let run = ["--iterations", "300", "--eval-every", "100", "--quiet"];
    let stop = ["--checkpoint-every", "50", "--stop-after", "100"];
    train(&data, &out, &[&run[..], &stop].concat()).code(130);
    let mut ck = mnist_mlp::checkpoint::load(&out).unwrap();
    ck.params[3] = f32::NAN;
    let (p, v, s, b) = (&ck.params, &ck.velocity, &ck.second, &ck.best);
    mnist_mlp::checkpoint::save(&out, &ck.state, p, v, s, b).unwrap();
    let a = mnist_mlp()
        .args(["train", "--quiet", "--resume"])
        .arg(&out)
        .assert()
        .failure();
    let err = common::stderr_of(&a);
    assert!(
        err.contains("training diverged at iteration 200: parameter layers.0.weight[0, 3] became NaN"),
        "{err}"
    );
    assert!(err.contains("try a lower --lr"), "{err}");
    assert!(!out.join("model.safetensors").exists(), "a model was written");
    assert!(!out.join("summary.json").exists(), "a summary was written");
}
