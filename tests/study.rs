//! `study` and `report` from outside, on a small synthetic data set: the seed study's files, a
//! custom spec, and a report redrawn from the records alone.

mod common;

use common::{mnist_mlp, read_json};

use std::collections::BTreeMap;
use std::path::Path;

/// Every report file of a study directory, with its bytes.
fn report_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("fig") || name.starts_with("report.")
        })
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_seed_study_writes_every_record_figure_and_report_and_report_redraws_them_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("data"), tmp.path().join("study"));
    common::write_dataset(&data, 400, 100, 7);
    mnist_mlp()
        .args(["study", "--iterations", "40", "--quiet", "--data-dir"])
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();

    let results = read_json(&out.join("results.json"));
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), 8, "3 sigmoid + 3 ReLU + 2 scheduled runs");
    for r in results {
        for key in [
            "name",
            "activation",
            "lr",
            "schedule",
            "seed",
            "test_accuracy",
            "test_loss",
            "train_seconds",
        ] {
            assert!(!r[key].is_null(), "{key} missing in {r}");
        }
        let run = out.join("runs").join(r["name"].as_str().unwrap());
        for f in ["config.json", "metrics.csv", "summary.json", "model.safetensors"] {
            assert!(run.join(f).is_file(), "{} lacks {f}", run.display());
        }
    }
    let sigmoid = results.iter().find(|r| r["name"] == "sigmoid-lr0.01").unwrap();
    assert_eq!(sigmoid["reported_accuracy"], 0.9489);

    let figures = [
        "fig1-sigmoid-curves",
        "fig1-relu-curves",
        "fig2-lr-sigmoid",
        "fig2-lr-relu",
        "fig3-schedule-sigmoid",
        "fig3-schedule-relu",
        "fig4-relu-vs-sigmoid",
        "fig5-samples",
        "fig6-mistakes",
        "fig7-gradients",
        "fig8-saturation",
        "fig9-features",
    ];
    for f in figures {
        let png = std::fs::read(out.join(format!("{f}.png"))).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{f}.png is not a PNG");
        let svg = std::fs::read_to_string(out.join(format!("{f}.svg"))).unwrap();
        assert!(svg.contains("<svg"), "{f}.svg is not an SVG");
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    for needle in [
        "94.89%",
        "97.79%",
        "90.60%",
        "claims, checked",
        "ReLU gets 19/20",
        "fig5-samples.png",
        "fig6-mistakes.png",
    ] {
        assert!(md.contains(needle), "report.md lacks {needle:?}");
    }
    // The figures' sentences quote the records: the gradient ratio of the first evaluation,
    // computed here from layers.csv, is the one Figure 7 and the table state.
    let first_ratio = |run: &str| {
        let rows = mnist_mlp::layerstats::read(&out.join("runs").join(run).join("layers.csv")).unwrap();
        let first = rows[0].iteration;
        let at = |h: usize| {
            rows.iter()
                .find(|r| r.iteration == first && r.layer == h)
                .unwrap()
                .grad_norm
        };
        let depth = rows.iter().map(|r| r.layer).max().unwrap();
        assert_eq!(depth, 3, "the seed network has three hidden layers");
        at(depth) / at(1)
    };
    let times = |r: f64| {
        if r >= 1.0 {
            format!("{r:.1}× less")
        } else {
            format!("{:.1}× more", 1.0 / r)
        }
    };
    let (sigmoid, relu) = (first_ratio("sigmoid-lr0.01"), first_ratio("relu-lr0.01"));
    let sentence = format!(
        "first layer gets {} gradient than its layer 3, the ReLU network's {}.",
        times(sigmoid),
        times(relu)
    );
    assert!(md.contains(&sentence), "report.md lacks {sentence:?}");
    let evidence = format!("at the first evaluation (α = 1e-2, 1e-3, 1e-4): sigmoid {sigmoid:.2} / ");
    assert!(md.contains(&evidence), "report.md lacks {evidence:?}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.matches("data:image/png;base64,").count() >= figures.len(),
        "figures not embedded"
    );
    let samples = read_json(&out.join("samples.json"));
    assert_eq!(samples["indices"].as_array().unwrap().len(), 20);
    assert_eq!(samples["networks"].as_array().unwrap().len(), 2);

    // Redraw from the records alone: delete every figure and report, redraw, compare bytes.
    let before = report_files(&out);
    for name in before.keys() {
        std::fs::remove_file(out.join(name)).unwrap();
    }
    mnist_mlp()
        .args(["report", "--from"])
        .arg(&out)
        .assert()
        .success();
    let after = report_files(&out);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &before {
        assert!(after[name] == *bytes, "{name} differs when redrawn");
    }

    // A run without layers.csv (trained before per-layer records existed) leaves figures 7 and
    // 8 out with the reason, and the rest of the report as it was.
    std::fs::remove_file(out.join("runs/relu-lr0.0001/layers.csv")).unwrap();
    mnist_mlp()
        .args(["report", "--from"])
        .arg(&out)
        .assert()
        .success();
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("(Figures 7 and 8 omitted: no `layers.csv` for `relu-lr0.0001`."),
        "{md}"
    );
    assert!(md.contains("fig9-features.png") && md.contains("fig6-mistakes.png"));
}

#[test]
fn a_custom_spec_with_a_grid_and_seeds_runs_every_combination() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("data"), tmp.path().join("study"));
    common::write_dataset(&data, 300, 50, 8);
    let spec = tmp.path().join("spec.toml");
    std::fs::write(
        &spec,
        r#"
name = "grid"
seeds = [1, 2]
[base]
hidden = [32]
iterations = 50
eval_every = 25
[grid]
lr = [0.05, 0.1]
"#,
    )
    .unwrap();
    mnist_mlp()
        .args(["study", "--quiet", "--jobs", "2", "--spec"])
        .arg(&spec)
        .arg("--data-dir")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let results = read_json(&out.join("results.json"));
    let names: Vec<&str> = results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["lr=0.05-s1", "lr=0.05-s2", "lr=0.1-s1", "lr=0.1-s2"]);
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("| lr=0.05 |") && md.contains("±"),
        "mean ± std per group:\n{md}"
    );
}

#[test]
fn a_bad_spec_is_refused_naming_the_file_and_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("bad.toml");
    std::fs::write(&spec, "name = \"x\"\n[base]\nlearning_rate = 0.1\n").unwrap();
    let a = mnist_mlp()
        .args(["study", "--spec"])
        .arg(&spec)
        .assert()
        .failure();
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(err.contains("bad.toml") && err.contains("learning_rate"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
