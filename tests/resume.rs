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
        err.contains("last good loss") && err.contains("lower --lr") && err.contains("last checkpoint"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let ck = mnist_mlp::checkpoint::load(&out).expect("the last good checkpoint loads");
    assert!(
        ck.params.iter().all(|v| v.is_finite()),
        "the kept checkpoint holds finite parameters"
    );
}

/// A loss that explodes without ever becoming NaN stops the run on every kernel. With
/// `--lr 1e36` the sigmoid network's loss passes 1e36 at once; whether a sum later overflows to
/// ±inf and then NaN depends on the order in which each kernel adds, so a NaN test alone let the
/// fast kernels finish with a loss of 1e36 and exit 0 while the reference stopped.
#[test]
fn an_exploding_loss_stops_the_run_on_every_kernel_at_the_same_iteration() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::write_dataset(&data, 300, 50, 7);
    let mut messages = Vec::new();
    for kernels in ["reference", "auto"] {
        let out = tmp.path().join(kernels);
        let a = mnist_mlp()
            .args([
                "train",
                "--activation",
                "sigmoid",
                "--hidden",
                "200,10",
                "--optimizer",
                "adam",
                "--lr",
                "1e36",
                "--l2",
                "0",
                "--iterations",
                "300",
                "--kernels",
                kernels,
                "--quiet",
                "--data-dir",
            ])
            .arg(&data)
            .arg("--out")
            .arg(&out)
            .assert()
            .failure();
        let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
        assert!(
            err.contains("diverged at iteration"),
            "--kernels {kernels}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            !out.join("model.safetensors").exists(),
            "--kernels {kernels} wrote a model of a diverged run"
        );
        let at = err.split("diverged at iteration ").nth(1).unwrap();
        messages.push(at.split(':').next().unwrap().to_string());
    }
    assert_eq!(
        messages[0], messages[1],
        "reference and fast kernels stop at different iterations"
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
    let (p, v, s, b) = (&ck.params, &ck.first_moment, &ck.second_moment, &ck.best);
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

/// The bytes of a checkpoint written by a run of 300 iterations stopped at 100, in `tmp`:
/// (data dir, run dir).
fn stopped_run(tmp: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let data = tmp.join("data");
    common::write_dataset(&data, 300, 50, 7);
    let out = tmp.join("run");
    let flags = [
        "--iterations",
        "300",
        "--eval-every",
        "100",
        "--quiet",
        "--stop-after",
        "100",
    ];
    train(&data, &out, &flags).code(130);
    (data, out)
}

/// A checkpoint edited or damaged after it was written is refused on resume, with its own
/// message, before anything trains: an edited iteration number in the state (which was
/// accepted and resumed to another model) and one flipped bit in the tensor data (which was
/// reported as divergence, "try a lower --lr").
#[test]
fn a_damaged_or_edited_checkpoint_is_refused_by_its_checksum() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, out) = stopped_run(tmp.path());
    let path = out.join("checkpoint.safetensors");
    let original = bytes(&path);
    let find = |needle: &[u8]| original.windows(needle.len()).position(|w| w == needle).unwrap();
    // The state is JSON text inside the header's JSON, its quotes escaped.
    let at = find(br#"iteration\":100"#) + br#"iteration\":10"#.len();
    let mut edited = original.clone();
    edited[at] = b'1';
    let mut flipped = original.clone();
    let last = flipped.len() - 5;
    flipped[last] ^= 0x40;
    for (what, damaged) in [("edited iteration", edited), ("flipped bit", flipped)] {
        std::fs::write(&path, &damaged).unwrap();
        let a = mnist_mlp()
            .args(["train", "--quiet", "--resume"])
            .arg(&out)
            .assert()
            .failure();
        let err = common::stderr_of(&a);
        assert!(
            err.contains("checkpoint is damaged") && err.contains("checksum"),
            "{what}: {err}"
        );
        assert!(!err.contains("diverged"), "{what}: {err}");
        assert!(bytes(&path) == damaged, "{what}: the checkpoint was changed");
    }
    // The undamaged file still resumes.
    std::fs::write(&path, &original).unwrap();
    mnist_mlp()
        .args(["train", "--quiet", "--resume"])
        .arg(&out)
        .assert()
        .success();
}

/// A run killed with SIGKILL at arbitrary points (before its first checkpoint, during a
/// checkpoint's write, between checkpoints), resumed each time from whatever it left, ends
/// with the bytes of the run that was never interrupted, and leaves no temporary file.
#[test]
fn a_run_killed_with_sigkill_at_random_points_resumes_to_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::write_dataset(&data, 300, 50, 8);
    // Long enough (20,000 small steps, a second or two) for the kills to land mid-run.
    let run = [
        "--iterations",
        "20000",
        "--eval-every",
        "5000",
        "--checkpoint-every",
        "50",
        "--quiet",
    ];
    let full = tmp.path().join("full");
    train(&data, &full, &run).success();
    let cut = tmp.path().join("cut");
    let command = || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mnist-mlp"));
        cmd.env("MNIST_MLP_DATA", "/nonexistent/mnist-mlp-test-cache");
        if cut.join("checkpoint.safetensors").exists() {
            cmd.args(["train", "--quiet", "--checkpoint-every", "50", "--resume"])
                .arg(&cut);
        } else {
            cmd.arg("train")
                .args(FLAGS)
                .args(run)
                .arg("--data-dir")
                .arg(&data)
                .arg("--out")
                .arg(&cut);
        }
        cmd
    };
    let mut rng = mnist_mlp::rng::Rng::new(15, 0);
    let mut kills = 0;
    for _ in 0..8 {
        let mut child = command().spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(10 + rng.below(200)));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
    }
    let status = command().status().unwrap();
    assert!(status.success(), "the last resume failed");
    // On a fast machine a resumed run may finish before the next kill: at least one landed.
    println!("{kills} kills");
    assert!(kills >= 1, "no kill landed");
    assert!(
        bytes(&full.join("model.safetensors")) == bytes(&cut.join("model.safetensors")),
        "after {kills} kills, the model differs"
    );
    let left: Vec<_> = std::fs::read_dir(&cut)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// A temporary file that a killed process left mid-write is removed by the next run of its
/// directory.
#[test]
fn a_partial_file_left_by_a_killed_write_is_removed_on_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, out) = stopped_run(tmp.path());
    let stale = out.join(".mnist-mlp-Xy12ab.partial");
    std::fs::write(&stale, b"half a checkpoint").unwrap();
    mnist_mlp()
        .args(["train", "--quiet", "--resume"])
        .arg(&out)
        .assert()
        .success();
    assert!(!stale.exists(), "the stale temporary file is still there");
}

/// After a refused write of `file` in the run directory `out`: the error (`err`) names the file
/// and says `why`, names no temporary file and is no panic; no `.partial` file and no model
/// are left; and the checkpoint still holds the bytes `before`.
fn assert_write_refused(out: &Path, file: &str, err: &str, why: &str, before: &[u8]) {
    let target = out.join(file);
    assert!(
        err.contains(&target.display().to_string()) && err.contains(why),
        "{file}: {err}"
    );
    assert!(
        !err.contains(".partial") && !err.contains("panicked"),
        "{file}: {err}"
    );
    assert!(
        bytes(&out.join("checkpoint.safetensors")) == before,
        "{file}: the previous checkpoint changed"
    );
    let names: Vec<String> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.ends_with(".partial")),
        "{file}: {names:?}"
    );
    assert!(
        !names.iter().any(|n| n == "model.safetensors"),
        "{file}: {names:?}"
    );
}

/// Where no disk can be filled (no root for a tmpfs), a file-size limit on the process stands
/// in for it: writing the checkpoint and then the model fails with "File too large", and the
/// same holds as for a full disk: the error names the file, the exit is non-zero, no temporary
/// file is left, and the previous checkpoint is intact and resumable.
#[test]
fn a_file_size_limit_names_the_file_and_keeps_the_previous_checkpoint() {
    use std::os::unix::process::CommandExt;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::write_dataset(&data, 300, 50, 7);
    let out = tmp.path().join("run");
    let flags = [
        "--iterations",
        "300",
        "--eval-every",
        "100",
        "--quiet",
        "--stop-after",
        "100",
    ];
    train(&data, &out, &flags).code(130);
    let ck = out.join("checkpoint.safetensors");
    let before = bytes(&ck);
    for (file, every) in [("checkpoint.safetensors", "100"), ("model.safetensors", "0")] {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("mnist-mlp"));
        cmd.args(["train", "--quiet", "--checkpoint-every", every, "--resume"])
            .arg(&out)
            .env("MNIST_MLP_DATA", "/nonexistent/mnist-mlp-test-cache")
            .env("MNIST_MLP_CACHE", "/nonexistent/mnist-mlp-test-cache");
        // SAFETY: only async-signal-safe calls between fork and exec. 100 KB holds the
        // records, not a checkpoint (420 KB) or the model (210 KB); SIGXFSZ is ignored so that
        // the write fails with EFBIG instead of killing the process.
        unsafe {
            cmd.pre_exec(|| {
                let limit = libc::rlimit {
                    rlim_cur: 100 * 1024,
                    rlim_max: 100 * 1024,
                };
                libc::setrlimit(libc::RLIMIT_FSIZE, &limit);
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                Ok(())
            });
        }
        let a = assert_cmd::Command::from_std(cmd).assert().failure();
        assert_write_refused(&out, file, &common::stderr_of(&a), "File too large", &before);
    }
    mnist_mlp::checkpoint::load(&out).expect("the previous checkpoint still loads");
}

/// A tmpfs of 2 MB mounted for the test (root only; elsewhere the test says it is skipped),
/// unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &Path) -> Option<SmallDisk> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallDisk(dir.to_path_buf()))
    }

    /// Fill the disk, then free `free` bytes.
    fn fill_leaving(&self, free: u64) {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![7u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let len = std::fs::metadata(&path).unwrap().len();
        f.set_len(len.saturating_sub(free)).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// With the disk full, writing a checkpoint and then the model fails with an error that names
/// that file (not its temporary file), a non-zero exit, no temporary file left, and the
/// previous checkpoint intact and resumable.
#[test]
fn a_full_disk_names_the_file_and_keeps_the_previous_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(disk) = SmallDisk::mount(&tmp.path().join("disk")) else {
        common::skip("cannot mount a tmpfs (needs root) to fill a disk", false);
        return;
    };
    let data = tmp.path().join("data");
    common::write_dataset(&data, 300, 50, 7);
    let out = disk.0.join("run");
    let flags = [
        "--iterations",
        "300",
        "--eval-every",
        "100",
        "--quiet",
        "--stop-after",
        "100",
    ];
    train(&data, &out, &flags).code(130);
    let ck = out.join("checkpoint.safetensors");
    let before = bytes(&ck);
    // Room for the metrics, not for a checkpoint (420 KB) or the model (210 KB).
    disk.fill_leaving(64 * 1024);
    for (file, every) in [("checkpoint.safetensors", "100"), ("model.safetensors", "0")] {
        let a = mnist_mlp()
            .args(["train", "--quiet", "--checkpoint-every", every, "--resume"])
            .arg(&out)
            .assert()
            .failure();
        assert_write_refused(&out, file, &common::stderr_of(&a), "No space left", &before);
    }
    mnist_mlp::checkpoint::load(&out).expect("the previous checkpoint still loads");
}
