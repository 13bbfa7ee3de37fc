//! A run's records: `metrics.csv` (one [`MetricsRow`] per evaluation, written by
//! [`crate::train`] as it goes and carried in its checkpoints) and `summary.json` (a finished
//! run's [`Summary`]). Training writes them; the study's report, `serve` and `watch` read them.
//!
//! `layers.csv`, the per-layer statistics, is [`crate::layerstats`]'s.

use crate::error::{Error, Result};
use crate::fsutil::{write_atomic, write_json_atomic};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A run's learning curves, one row per evaluation.
pub const METRICS_FILE: &str = "metrics.csv";
/// A finished run's figures; its presence marks the run as finished.
pub const SUMMARY_FILE: &str = "summary.json";

/// `metrics.csv`'s header when the curves are measured on the test set.
pub const METRICS_HEADER: &str = "iteration,lr,train_loss,test_loss,test_accuracy";
/// `metrics.csv`'s header when they are measured on the `--validation` split.
pub const METRICS_HEADER_VALIDATION: &str = "iteration,lr,train_loss,val_loss,val_accuracy";

/// One row of `metrics.csv`.
///
/// The serde names are those of the checkpoint's JSON state, which holds the rows so far, and
/// stay as they were (`test_loss`, `test_accuracy`) so that older checkpoints resume.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricsRow {
    pub iteration: usize,
    /// α used for the last update before this row.
    pub lr: f64,
    /// Mean training loss over the iterations since the previous row.
    pub train_loss: f64,
    /// Loss on the held-out set that draws the curves: the test set, or the validation split
    /// with `--validation` (the CSV's header then says `val_loss`, else `test_loss`).
    #[serde(rename = "test_loss")]
    pub eval_loss: f64,
    /// Accuracy on the same set as [`eval_loss`](Self::eval_loss) (`val_accuracy` or
    /// `test_accuracy` in the CSV).
    #[serde(rename = "test_accuracy")]
    pub eval_accuracy: f64,
}

/// The header of `metrics.csv`: which set the evaluation columns measure.
pub fn metrics_header(validation: bool) -> &'static str {
    if validation {
        METRICS_HEADER_VALIDATION
    } else {
        METRICS_HEADER
    }
}

/// The text of `metrics.csv` with `header` ([`metrics_header`]) and `rows`.
pub fn metrics_csv(rows: &[MetricsRow], header: &str) -> String {
    let mut s = format!("{header}\n");
    for r in rows {
        s += &format!(
            "{},{},{},{},{}\n",
            r.iteration, r.lr, r.train_loss, r.eval_loss, r.eval_accuracy
        );
    }
    s
}

/// Write `dir/metrics.csv` atomically; `validation` chooses the header ([`metrics_header`]).
pub fn write_metrics(dir: &Path, rows: &[MetricsRow], validation: bool) -> Result<()> {
    write_atomic(
        &dir.join(METRICS_FILE),
        metrics_csv(rows, metrics_header(validation)).as_bytes(),
    )
}

/// Read a run's `metrics.csv` (either header; the first line is not checked).
pub fn read_metrics(path: &Path) -> Result<Vec<MetricsRow>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_metrics(&text).map_err(|(line, msg)| Error::Record {
        path: path.to_path_buf(),
        line,
        msg,
    })
}

/// The rows of `metrics.csv`'s text, or the 1-based line that is not a row, and why.
fn parse_metrics(text: &str) -> std::result::Result<Vec<MetricsRow>, (usize, String)> {
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        let bad = || {
            (
                n + 1,
                format!(
                    "'{line}' is not a row of {METRICS_HEADER} (or {METRICS_HEADER_VALIDATION}): an iteration and four numbers, comma-separated"
                ),
            )
        };
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 5 {
            return Err(bad());
        }
        let num = |i: usize| f[i].parse::<f64>().map_err(|_| bad());
        rows.push(MetricsRow {
            iteration: f[0].parse().map_err(|_| bad())?,
            lr: num(1)?,
            train_loss: num(2)?,
            eval_loss: num(3)?,
            eval_accuracy: num(4)?,
        });
    }
    Ok(rows)
}

/// The contents of `summary.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    pub test_accuracy: f64,
    pub test_loss: f64,
    /// With `--validation`: the last evaluation on the validation set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_loss: Option<f64>,
    /// With `--keep-best`: the iteration whose parameters were kept (the validation figures
    /// above are that evaluation's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected_iteration: Option<usize>,
    pub iterations: usize,
    pub epochs: f64,
    /// Training loop only: batches, forward, backward, updates. Evaluation is not included.
    pub train_seconds: f64,
    pub eval_seconds: f64,
    pub samples_per_second: f64,
    pub final_lr: f64,
    pub threads: usize,
    /// The step implementation that ran (`avx512-fma`, `avx2-fma` or `reference`); empty when
    /// read from a summary written before it was recorded.
    #[serde(default)]
    pub kernels: String,
    pub tool_version: String,
}

/// Write `dir/summary.json` atomically.
pub fn write_summary(dir: &Path, summary: &Summary) -> Result<()> {
    write_json_atomic(&dir.join(SUMMARY_FILE), summary)
}

/// Read `dir/summary.json`.
pub fn read_summary(dir: &Path) -> Result<Summary> {
    let path = dir.join(SUMMARY_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Record {
        path,
        line: e.line(),
        msg: format!("not a run summary: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: usize) -> MetricsRow {
        MetricsRow {
            iteration: i,
            lr: 0.01,
            train_loss: 0.5,
            eval_loss: 0.25,
            eval_accuracy: 0.9375,
        }
    }

    #[test]
    fn metrics_csv_reads_back_as_written() {
        let rows = vec![row(100), row(200)];
        for validation in [false, true] {
            let text = metrics_csv(&rows, metrics_header(validation));
            assert_eq!(parse_metrics(&text).unwrap(), rows);
        }
        assert_eq!(
            metrics_csv(&rows[..1], METRICS_HEADER),
            "iteration,lr,train_loss,test_loss,test_accuracy\n100,0.01,0.5,0.25,0.9375\n"
        );
    }

    #[test]
    fn a_bad_metrics_line_is_named_with_what_was_expected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(METRICS_FILE);
        std::fs::write(
            &path,
            format!("{METRICS_HEADER}\n100,0.01,0.5,0.25,0.9\n200,0.01,x,0.2,0.9\n"),
        )
        .unwrap();
        let err = read_metrics(&path).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("'200,0.01,x,0.2,0.9'"), "{err}");
        assert!(err.contains(METRICS_HEADER), "{err}");
        assert!(!err.contains("data set"), "{err}");
    }

    /// `serve` shows a model's test accuracy from its summary, also for runs from before
    /// `kernels` was recorded.
    #[test]
    fn a_summary_reads_back_and_one_without_kernels_reads_too() {
        let dir = tempfile::tempdir().unwrap();
        let summary = Summary {
            test_accuracy: 0.97,
            test_loss: 0.1,
            validation_accuracy: None,
            validation_loss: None,
            selected_iteration: None,
            iterations: 600,
            epochs: 0.64,
            train_seconds: 1.5,
            eval_seconds: 0.25,
            samples_per_second: 25600.0,
            final_lr: 0.01,
            threads: 2,
            kernels: "avx2-fma".into(),
            tool_version: "0.1.0".into(),
        };
        write_summary(dir.path(), &summary).unwrap();
        let back = read_summary(dir.path()).unwrap();
        assert_eq!((back.test_accuracy, back.kernels.as_str()), (0.97, "avx2-fma"));
        let text = std::fs::read_to_string(dir.path().join(SUMMARY_FILE)).unwrap();
        let old = text.replace("  \"kernels\": \"avx2-fma\",\n", "");
        assert_ne!(old, text);
        std::fs::write(dir.path().join(SUMMARY_FILE), old).unwrap();
        let back = read_summary(dir.path()).unwrap();
        assert_eq!((back.test_accuracy, back.kernels.as_str()), (0.97, ""));
        std::fs::write(dir.path().join(SUMMARY_FILE), "{\n  \"test_accuracy\": 0.9\n}\n").unwrap();
        let err = read_summary(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains(SUMMARY_FILE) && err.contains("not a run summary"),
            "{err}"
        );
    }

    /// Checkpoints hold the rows as JSON under these names; renaming the fields must not
    /// change them, or older checkpoints would not resume.
    #[test]
    fn a_row_keeps_its_json_names() {
        let json = serde_json::to_string(&row(7)).unwrap();
        assert_eq!(
            json,
            r#"{"iteration":7,"lr":0.01,"train_loss":0.5,"test_loss":0.25,"test_accuracy":0.9375}"#
        );
        assert_eq!(serde_json::from_str::<MetricsRow>(&json).unwrap(), row(7));
    }
}
