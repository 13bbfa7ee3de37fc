//! `mnist-mlp predict`, tested from outside: images the tests draw, test-set indices, bad
//! files, the preprocessed images, and the logits against an independent numpy forward pass.

mod common;

use common::{mnist_mlp, stderr_of};

use image::{GrayImage, Luma};
use std::path::{Path, PathBuf};

const TEST_IMAGES: usize = 20;

/// A synthetic data set and a tiny model trained on it, in `tmp`: (data dir, model dir).
fn trained_model(tmp: &Path) -> (PathBuf, PathBuf) {
    common::tiny_model(tmp, TEST_IMAGES)
}

/// A thick black vertical stroke on white paper, off-centre: a "1".
fn draw_stroke(path: &Path) {
    let mut img = GrayImage::from_pixel(60, 90, Luma([250]));
    for y in 10..80 {
        for x in 12..22 {
            img.put_pixel(x, y, Luma([10]));
        }
    }
    img.save(path).unwrap();
}

fn stdout_json(a: &assert_cmd::assert::Assert) -> serde_json::Value {
    serde_json::from_slice(&a.get_output().stdout).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn a_drawn_png_gets_three_sorted_classes_with_probabilities() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, model) = trained_model(tmp.path());
    let png = tmp.path().join("stroke.png");
    draw_stroke(&png);

    let a = mnist_mlp()
        .arg("predict")
        .arg("--model")
        .arg(&model)
        .arg(&png)
        .arg("--json")
        .assert()
        .success();
    let out = stdout_json(&a);
    let entries = out.as_array().unwrap();
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(e["input"], png.display().to_string());
    let top = e["top"].as_array().unwrap();
    assert_eq!(top.len(), 3);
    let p: Vec<f64> = top.iter().map(|t| t["probability"].as_f64().unwrap()).collect();
    assert!(p.windows(2).all(|w| w[0] >= w[1]), "not sorted: {p:?}");
    assert!(p.iter().all(|&v| (0.0..=1.0).contains(&v)));
    assert!(p.iter().sum::<f64>() <= 1.0 + 1e-6, "{p:?}");
    let all = floats(&e["probabilities"]);
    assert_eq!(all.len(), 10);
    assert!((all.iter().sum::<f64>() - 1.0).abs() < 1e-4);
    for t in top {
        let d = t["digit"].as_u64().unwrap() as usize;
        assert_eq!(all[d], t["probability"].as_f64().unwrap());
    }
    assert_eq!(floats(&e["logits"]).len(), 10);

    // The human-readable form: "<file>: d (p%), d (p%), d (p%)".
    let a = mnist_mlp()
        .arg("predict")
        .arg("--model")
        .arg(&model)
        .arg(&png)
        .args(["--top", "2"])
        .assert()
        .success();
    let text = String::from_utf8(a.get_output().stdout.clone()).unwrap();
    let line = text.lines().next().unwrap();
    assert!(line.starts_with(&format!("{}: ", png.display())), "{line}");
    assert_eq!(line.matches('%').count(), 2, "{line}");
}

#[test]
fn test_index_predicts_with_the_true_label_and_refuses_out_of_range() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, model) = trained_model(tmp.path());
    let a = mnist_mlp()
        .arg("predict")
        .arg("--model")
        .arg(&model)
        .args(["--test-index", "3", "--test-index", "7", "--json"])
        .assert()
        .success();
    let out = stdout_json(&a);
    let entries = out.as_array().unwrap();
    assert_eq!(entries.len(), 2);
    // The synthetic test set's image i has label i mod 10.
    assert_eq!(entries[0]["test_index"], 3);
    assert_eq!(entries[0]["label"], 3);
    assert_eq!(entries[1]["label"], 7);
    assert_eq!(entries[0]["top"].as_array().unwrap().len(), 3);

    let a = mnist_mlp()
        .arg("predict")
        .arg("--model")
        .arg(&model)
        .args(["--test-index", "3"])
        .assert()
        .success();
    let text = String::from_utf8(a.get_output().stdout.clone()).unwrap();
    assert!(text.starts_with("test image 3 (label 3): "), "{text}");

    let a = mnist_mlp()
        .arg("predict")
        .arg("--model")
        .arg(&model)
        .args(["--test-index", &TEST_IMAGES.to_string()])
        .assert()
        .failure();
    let err = stderr_of(&a);
    assert!(err.contains("--test-index"), "{err}");
    assert!(err.contains(&format!("0 to {}", TEST_IMAGES - 1)), "{err}");
}

#[test]
fn bad_image_files_fail_naming_the_file_without_panicking() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, model) = trained_model(tmp.path());
    let good = tmp.path().join("good.png");
    draw_stroke(&good);
    let bytes = std::fs::read(&good).unwrap();

    let text = tmp.path().join("notes.png");
    std::fs::write(&text, "this is not an image\n").unwrap();
    let empty = tmp.path().join("empty.png");
    std::fs::write(&empty, b"").unwrap();
    let truncated = tmp.path().join("truncated.png");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let blank = tmp.path().join("blank.png");
    GrayImage::from_pixel(30, 30, Luma([255])).save(&blank).unwrap();
    let missing = tmp.path().join("missing.png");

    for (file, expect) in [
        (&text, "not an image"),
        (&empty, "empty"),
        (&truncated, "PNG"),
        (&blank, "no digit found"),
        (&missing, "No such file"),
    ] {
        let a = mnist_mlp()
            .arg("predict")
            .arg("--model")
            .arg(&model)
            .arg(&good)
            .arg(file)
            .assert()
            .failure();
        let err = stderr_of(&a);
        assert!(err.contains(&file.display().to_string()), "{err}");
        assert!(err.contains(expect), "expected '{expect}' in: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            a.get_output().stdout.is_empty(),
            "nothing is printed when an input is bad"
        );
    }
}

#[test]
fn save_preprocessed_writes_the_28x28_images_the_network_saw() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, model) = trained_model(tmp.path());
    let png = tmp.path().join("stroke.png");
    draw_stroke(&png);
    let dir = tmp.path().join("seen");
    let a = mnist_mlp()
        .arg("predict")
        .arg("--model")
        .arg(&model)
        .arg(&png)
        .args(["--test-index", "0", "--json", "--save-preprocessed"])
        .arg(&dir)
        .assert()
        .success();
    let out = stdout_json(&a);
    for (name, entry) in ["stroke-preprocessed.png", "test-0.png"]
        .iter()
        .zip(out.as_array().unwrap())
    {
        let path = dir.join(name);
        assert_eq!(entry["preprocessed"], path.display().to_string());
        let img = image::open(&path).unwrap().to_luma8();
        assert_eq!(img.dimensions(), (28, 28), "{name}");
    }
    // A test image is saved exactly as stored (IDX: 16 header bytes, then image 0).
    let idx = std::fs::read(data.join("t10k-images-idx3-ubyte")).unwrap();
    let saved = image::open(dir.join("test-0.png")).unwrap().to_luma8();
    assert_eq!(saved.as_raw().as_slice(), &idx[16..16 + 784]);
    // The stroke: white on black, a tall thin digit 20 pixels high, centred.
    let img = image::open(dir.join("stroke-preprocessed.png"))
        .unwrap()
        .to_luma8();
    assert_eq!(img.get_pixel(0, 0)[0], 0);
    assert!(img.pixels().any(|p| p[0] == 255));
    let rows: Vec<u32> = (0..28)
        .filter(|&y| (0..28).any(|x| img.get_pixel(x, y)[0] > 0))
        .collect();
    assert_eq!(rows.len(), 20);
    assert!(
        (4..=5).contains(&rows[0]),
        "rows {rows:?}: centre of mass 9.5 goes to 14"
    );
}

/// Our logits against `scripts/predict_numpy.py`, which reads the same files with numpy and the
/// `safetensors` package and runs the forward pass itself, with the Python that
/// `MNIST_MLP_PYTHON` names (`.ci/run` makes a virtual environment with both packages), else
/// `python3`. Skipped without those packages, except under CI, where it fails.
#[test]
fn logits_agree_with_an_independent_numpy_forward_pass() {
    let python = std::env::var("MNIST_MLP_PYTHON").unwrap_or_else(|_| "python3".into());
    let available = std::process::Command::new(&python)
        .args(["-c", "import numpy, safetensors"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        common::skip(
            &format!("{python} with numpy and safetensors is not available"),
            true,
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (data, model) = trained_model(tmp.path());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/predict_numpy.py");
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg("--model")
        .arg(&model)
        .arg("--idx")
        .arg(data.join("t10k-images-idx3-ubyte"))
        .args(["--indices", "0,1,2,3,4"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let theirs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let theirs = theirs["logits"].as_array().unwrap();

    let mut cmd = mnist_mlp();
    cmd.arg("predict").arg("--model").arg(&model).arg("--json");
    for i in 0..5 {
        cmd.args(["--test-index", &i.to_string()]);
    }
    let ours = stdout_json(&cmd.assert().success());
    let ours = ours.as_array().unwrap();
    assert_eq!((ours.len(), theirs.len()), (5, 5));

    let mut max_diff = 0.0f64;
    for (i, (o, t)) in ours.iter().zip(theirs).enumerate() {
        let (o, t) = (floats(&o["logits"]), floats(t));
        assert_eq!((o.len(), t.len()), (10, 10));
        max_diff = max_diff.max(common::max_abs_diff(&format!("image {i}: logits"), &o, &t));
    }
    println!("numpy vs mnist-mlp: max |logit difference| = {max_diff:.3e} over 5 images");
    assert!(max_diff <= 1e-4, "logits differ by {max_diff}");
}

/// `eval --mistakes N` on a copy of the test set whose first five labels are made wrong (each
/// moved on by one class): those five images are the model's confident mistakes, listed most
/// confident first with their top 3, in the JSON, in the table and in a picture.
#[test]
fn eval_mistakes_lists_and_draws_the_most_confident_wrong_predictions() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, model) = trained_model(tmp.path());
    let relabelled = tmp.path().join("relabelled");
    std::fs::create_dir_all(&relabelled).unwrap();
    for f in [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
    ] {
        std::fs::copy(data.join(f), relabelled.join(f)).unwrap();
    }
    let mut labels = std::fs::read(data.join("t10k-labels-idx1-ubyte")).unwrap();
    let true_labels: Vec<u8> = labels[8..].to_vec();
    for l in &mut labels[8..13] {
        *l = (*l + 1) % 10;
    }
    std::fs::write(relabelled.join("t10k-labels-idx1-ubyte"), &labels).unwrap();
    let figures = tmp.path().join("figures");

    let a = mnist_mlp()
        .args(["eval", "--json", "--mistakes", "16", "--model"])
        .arg(&model)
        .arg("--data-dir")
        .arg(&relabelled)
        .arg("--out")
        .arg(&figures)
        .assert()
        .success();
    let out = stdout_json(&a);
    let m = out["mistakes"].as_array().expect("a mistakes array");
    let mut indices: Vec<u64> = m.iter().map(|x| x["index"].as_u64().unwrap()).collect();
    let p: Vec<f64> = m
        .iter()
        .map(|x| x["top"][0]["probability"].as_f64().unwrap())
        .collect();
    assert!(
        p.windows(2).all(|w| w[0] >= w[1]),
        "not most confident first: {p:?}"
    );
    for x in m {
        let i = x["index"].as_u64().unwrap() as usize;
        let top = x["top"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        assert_eq!(x["label"].as_u64().unwrap() as usize, usize::from(labels[8 + i]));
        assert_ne!(
            top[0]["class"], x["label"],
            "a mistake's top class is not its label"
        );
        if i < 5 {
            assert_eq!(
                top[0]["class"].as_u64().unwrap() as usize,
                usize::from(true_labels[i])
            );
        }
    }
    indices.sort();
    assert_eq!(
        &indices[..5],
        &[0, 1, 2, 3, 4],
        "the relabelled images are all mistakes: {m:?}"
    );
    assert_eq!(out["count"], 20);
    let png = figures.join("mistakes.png");
    assert_eq!(out["mistakes_figure"], png.display().to_string());
    let img = image::open(&png).unwrap();
    assert!(img.width() > 100 && img.height() > 100);
    assert!(figures.join("mistakes.svg").is_file());

    // The table form names the file and lists each mistake's index, label and top 3.
    let a = mnist_mlp()
        .args(["eval", "--mistakes", "2", "--model"])
        .arg(&model)
        .arg("--data-dir")
        .arg(&relabelled)
        .arg("--out")
        .arg(&figures)
        .assert()
        .success();
    let text = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
    assert!(text.contains("The 2 most confident mistakes (drawn in"), "{text}");
    assert!(text.contains("mistakes.png"), "{text}");
    let rows: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains("top 3"))
        .skip(1)
        .collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(rows.iter().all(|r| r.matches('%').count() == 3), "{text}");

    let a = mnist_mlp()
        .args(["eval", "--mistakes", "0", "--model"])
        .arg(&model)
        .assert()
        .failure();
    assert!(stderr_of(&a).contains("--mistakes"), "{}", stderr_of(&a));
}
