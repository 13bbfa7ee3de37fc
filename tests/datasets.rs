//! `--dataset`: each named data set's checksums, cache and sources, and its class names carried
//! from training into every output (predict, eval, serve, the study's report and sample figure),
//! with model files from before there was a choice still loading as MNIST. No network: the
//! sources are made to fail, or faked.

mod common;

use common::{mnist_mlp, read_json, stderr_of};
use mnist_mlp::data::sets::{TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS, sha256_hex};
use mnist_mlp::data::{Dataset, DatasetKind};
use std::path::{Path, PathBuf};

const FASHION: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// A synthetic data set and a small model trained on it with `--dataset fashion-mnist`, the
/// configuration of the accuracy gate in `tests/cli.rs`: (data dir, model dir).
fn fashion_model(tmp: &Path) -> (PathBuf, PathBuf) {
    let (data, model) = (tmp.join("data"), tmp.join("model"));
    common::write_dataset(&data, 1000, 100, 1);
    mnist_mlp()
        .args(["train", "--dataset", "fashion-mnist", "--hidden", "64,32"])
        .args(["--iterations", "300", "--batch-size", "32", "--lr", "0.05"])
        .args(["--eval-every", "100", "--threads", "1", "--seed", "3", "--quiet"])
        .arg("--data-dir")
        .arg(&data)
        .arg("--out")
        .arg(&model)
        .assert()
        .success();
    (data, model)
}

fn stdout(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stdout).into_owned()
}

#[test]
fn each_data_set_has_its_published_hashes_classes_and_cache() {
    let fashion = DatasetKind::FashionMnist;
    for (name, hash) in [
        (
            TRAIN_IMAGES,
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        ),
        (
            TRAIN_LABELS,
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        ),
        (
            TEST_IMAGES,
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        ),
        (
            TEST_LABELS,
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        ),
    ] {
        assert_eq!(fashion.expected_sha256(name), hash, "{name}");
    }
    assert_eq!(
        DatasetKind::Mnist.expected_sha256(TRAIN_IMAGES),
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
    );
    assert_eq!(fashion.class_names(), FASHION);
    assert_eq!(
        DatasetKind::Mnist.class_names(),
        ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
    );
    assert_eq!("fashion-mnist".parse::<DatasetKind>(), Ok(fashion));
    assert_eq!(
        "emnist".parse::<DatasetKind>(),
        Err("unknown data set 'emnist', expected mnist, fashion-mnist".to_string())
    );
    // Without MNIST_MLP_CACHE, both live side by side in the user's cache directory.
    let mnist_dir = DatasetKind::Mnist.cache_dir();
    if std::env::var_os("MNIST_MLP_DATA").is_none() && std::env::var_os("MNIST_MLP_CACHE").is_none() {
        assert_eq!(
            fashion.cache_dir(),
            mnist_dir.parent().unwrap().join("fashion-mnist")
        );
    }
}

#[test]
fn the_fashion_cache_is_checked_against_the_fashion_hashes_not_mnist() {
    let dir = tempfile::tempdir().unwrap();
    common::write_dataset(dir.path(), 30, 20, 1);
    let e = match Dataset::load(dir.path(), Some(DatasetKind::FashionMnist)) {
        Ok(_) => panic!("synthetic files passed the Fashion-MNIST checksums"),
        Err(e) => e.to_string(),
    };
    let actual = sha256_hex(&std::fs::read(dir.path().join(TRAIN_IMAGES)).unwrap());
    assert!(
        e.contains("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888") && e.contains(&actual),
        "{e}"
    );
    assert!(!e.contains("ba891046"), "the MNIST hash was checked: {e}");
    // Any directory works through --data-dir: no checksum at all.
    assert!(Dataset::load(dir.path(), None).is_ok());
}

#[test]
fn a_model_trained_with_dataset_fashion_mnist_names_its_classes_in_predict_and_eval() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, model) = fashion_model(tmp.path());
    let config = read_json(&model.join("config.json"));
    assert_eq!(config["train"]["dataset"], "fashion-mnist");
    assert_eq!(config["model"]["classes"], serde_json::json!(FASHION));

    // The synthetic test set's labels are i % 10: image 0 is class 0, image 9 class 9.
    let a = mnist_mlp()
        .args(["predict", "--test-index", "0", "--test-index", "9", "--model"])
        .arg(&model)
        .assert()
        .success();
    let out = stdout(&a);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("test image 0 (label T-shirt/top): T-shirt/top ("),
        "{out}"
    );
    assert!(
        lines[1].starts_with("test image 9 (label Ankle boot): Ankle boot ("),
        "{out}"
    );
    // Three named classes per line, each with its probability.
    assert_eq!(lines[0].matches("%)").count(), 3, "{out}");

    let a = mnist_mlp()
        .args(["predict", "--json", "--test-index", "9", "--model"])
        .arg(&model)
        .assert()
        .success();
    let json: serde_json::Value = serde_json::from_str(&stdout(&a)).unwrap();
    assert_eq!(json[0]["label"], 9);
    assert_eq!(json[0]["label_name"], "Ankle boot");
    assert_eq!(json[0]["top"][0]["digit"], 9);
    assert_eq!(json[0]["top"][0]["name"], "Ankle boot");

    let a = mnist_mlp()
        .args(["eval", "--threads", "1", "--model"])
        .arg(&model)
        .assert()
        .success();
    let out = stdout(&a);
    let row = out
        .lines()
        .find(|l| l.starts_with("9 Ankle boot"))
        .unwrap_or_else(|| panic!("no row named 9 Ankle boot:\n{out}"));
    assert!(row.trim_end().ends_with('%'), "{row}");
    let a = mnist_mlp()
        .args(["eval", "--json", "--threads", "1", "--model"])
        .arg(&model)
        .assert()
        .success();
    let json: serde_json::Value = serde_json::from_str(&stdout(&a)).unwrap();
    assert_eq!(json["classes"], serde_json::json!(FASHION));
    assert_eq!(json["confusion"].as_array().unwrap().len(), 10);
}

#[test]
fn a_config_json_from_before_data_sets_loads_as_mnist_with_digit_classes() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, model) = common::tiny_model(tmp.path(), 20);
    // Remove what older versions did not write.
    let path = model.join("config.json");
    let mut config = read_json(&path);
    config["train"]
        .as_object_mut()
        .unwrap()
        .remove("dataset")
        .unwrap();
    config["model"]
        .as_object_mut()
        .unwrap()
        .remove("classes")
        .unwrap();
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();

    let loaded = mnist_mlp::model::load(&model).unwrap();
    assert_eq!(loaded.config.train.dataset, DatasetKind::Mnist);
    assert_eq!(loaded.config.model.classes, DatasetKind::Mnist.class_names());
    let a = mnist_mlp()
        .args(["predict", "--test-index", "3", "--model"])
        .arg(&model)
        .assert()
        .success();
    let out = stdout(&a);
    // Digits print exactly as they always have: `3 (97.1%)`, label `(label 3)`.
    assert!(out.starts_with("test image 3 (label 3): "), "{out}");
    let first = out.split(": ").nth(1).unwrap();
    assert!(
        first.chars().next().unwrap().is_ascii_digit() && first.chars().nth(1) == Some(' '),
        "{out}"
    );
}

#[test]
fn a_config_json_with_the_wrong_number_of_class_names_is_refused_naming_both_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, model) = common::tiny_model(tmp.path(), 20);
    let path = model.join("config.json");
    let mut config = read_json(&path);
    config["model"]["classes"] = serde_json::json!(["cat", "dog"]);
    std::fs::write(&path, serde_json::to_string(&config).unwrap()).unwrap();
    let a = mnist_mlp()
        .args(["predict", "--test-index", "0", "--model"])
        .arg(&model)
        .assert()
        .failure();
    let err = stderr_of(&a);
    assert!(
        err.contains("config.json") && err.contains("2 classes") && err.contains("10 outputs"),
        "{err}"
    );
}

/// Fetching Fashion-MNIST into a fresh directory with `PATH` = `bin` and a mirror that refuses
/// connections, so that only what `bin` holds can answer.
fn fetch_fashion_with_path(bin: &Path, into: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    mnist_mlp()
        .args([
            "fetch",
            "--dataset",
            "fashion-mnist",
            "--mirror",
            "http://127.0.0.1:1/",
        ])
        .args(extra)
        .arg("--data-dir")
        .arg(into)
        .env("PATH", bin)
        .assert()
        .failure()
}

#[test]
fn fetch_without_apt_get_lists_each_source_tried_and_how_to_place_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (bin, into) = (tmp.path().join("empty-bin"), tmp.path().join("cache"));
    std::fs::create_dir(&bin).unwrap();
    let err = stderr_of(&fetch_fashion_with_path(&bin, &into, &[]));
    assert!(err.contains("could not fetch Fashion-MNIST"), "{err}");
    assert!(err.contains("  - http://127.0.0.1:1/: "), "{err}");
    assert!(
        err.contains("  - apt-get download dataset-fashion-mnist: apt-get is not on PATH"),
        "{err}"
    );
    assert!(
        err.contains("by hand") && err.contains("mnist-mlp fetch --dataset fashion-mnist"),
        "{err}"
    );
    assert!(!err.contains("npm"), "Fashion-MNIST has no npm source: {err}");
    assert!(
        std::fs::read_dir(&into).unwrap().next().is_none(),
        "fetch left files behind"
    );

    let err = stderr_of(&fetch_fashion_with_path(&bin, &into, &["--no-apt"]));
    assert!(err.contains("  - apt-get: skipped (--no-apt)"), "{err}");
}

/// Write an executable shell script.
#[cfg(unix)]
fn script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The apt source end to end, with stand-ins for `apt-get` and `dpkg-deb` that record how they
/// were called and unpack a package whose files are not Fashion-MNIST: the files are found
/// where Debian puts them, decompressed, checked against the Fashion-MNIST hashes, refused
/// naming both hashes, and nothing is written.
#[cfg(unix)]
#[test]
fn fetch_from_apt_unpacks_the_deb_and_checks_the_decompressed_files_against_fashion_hashes() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let (bin, into) = (tmp.path().join("bin"), tmp.path().join("cache"));
    std::fs::create_dir(&bin).unwrap();
    let payload = tmp.path().join("payload.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(b"not Fashion-MNIST").unwrap();
    std::fs::write(&payload, enc.finish().unwrap()).unwrap();
    let log = tmp.path().join("calls.log");
    let real_path = std::env::var("PATH").unwrap_or_default();
    script(
        &bin.join("apt-get"),
        &format!(
            "echo \"apt-get $*\" >> '{log}'\n[ \"$1\" = download ] || exit 2\necho fake > \"$2_1.0_all.deb\"\n",
            log = log.display()
        ),
    );
    script(
        &bin.join("dpkg-deb"),
        &format!(
            "PATH='{real_path}'\necho \"dpkg-deb $1 $(basename \"$2\")\" >> '{log}'\n\
             d=\"$3/usr/share/datasets/fashion-mnist\"\nmkdir -p \"$d\"\n\
             for f in {TRAIN_IMAGES} {TRAIN_LABELS} {TEST_IMAGES} {TEST_LABELS}; do cp '{payload}' \"$d/$f.gz\"; done\n",
            log = log.display(),
            payload = payload.display()
        ),
    );
    let a = fetch_fashion_with_path(&bin, &into, &[]);
    let err = stderr_of(&a);
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        calls,
        "apt-get download dataset-fashion-mnist\n\
         dpkg-deb -x dataset-fashion-mnist_1.0_all.deb\n",
        "{err}"
    );
    assert!(err.contains("apt-get download dataset-fashion-mnist: "), "{err}");
    assert!(
        err.contains("dataset-fashion-mnist:usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"),
        "{err}"
    );
    assert!(
        err.contains("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888")
            && err.contains(&sha256_hex(b"not Fashion-MNIST")),
        "{err}"
    );
    assert!(
        std::fs::read_dir(&into).unwrap().next().is_none(),
        "a wrong file was written"
    );
}

#[test]
fn a_fashion_study_names_the_data_set_and_its_classes_in_the_report_and_sample_figure() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("data"), tmp.path().join("study"));
    common::write_dataset(&data, 400, 100, 7);
    mnist_mlp()
        .args([
            "study",
            "--dataset",
            "fashion-mnist",
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
    let results = read_json(&out.join("results.json"));
    for r in results.as_array().unwrap() {
        assert_eq!(r["config"]["dataset"], "fashion-mnist", "{r}");
    }
    let samples = read_json(&out.join("samples.json"));
    assert_eq!(samples["classes"], serde_json::json!(FASHION));
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains(
            "Data set: **Fashion-MNIST** (`--dataset fashion-mnist`), classes 0–9: T-shirt/top, Trouser,"
        ),
        "{report}"
    );
    assert!(
        report.contains("The seed report's numbers are for MNIST"),
        "{report}"
    );
    // The figure's text, as the SVG holds it: every sample's true class by name.
    let svg = std::fs::read_to_string(out.join("fig5-samples.svg")).unwrap();
    let labels = samples["labels"].as_array().unwrap();
    for l in labels {
        let name = FASHION[l.as_u64().unwrap() as usize];
        assert!(
            svg.contains(&format!("true {name}")),
            "no 'true {name}' in the figure"
        );
    }
    assert!(!svg.contains("true 0<"), "a digit label in the figure");
}

#[test]
fn a_study_mixing_data_sets_is_refused_naming_both_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("mixed.toml");
    std::fs::write(
        &spec,
        "name = \"mixed\"\n[base]\niterations = 10\n[grid]\ndataset = [\"mnist\", \"fashion-mnist\"]\n",
    )
    .unwrap();
    let a = mnist_mlp()
        .args(["study", "--quiet", "--spec"])
        .arg(&spec)
        .arg("--out")
        .arg(tmp.path().join("out"))
        .assert()
        .failure();
    let err = stderr_of(&a);
    assert!(
        err.contains("one data set") && err.contains("mnist") && err.contains("fashion-mnist"),
        "{err}"
    );
}
