//! The study report, drawn from the records alone: figures (PNG + SVG), `report.md`, and a
//! self-contained `report.html` with the figures embedded.

use super::plot::{self, COLORS, LineFigure, Panel, SampleCell, SamplesFigure, Series};
use super::seed::{self, RELU, RELU_STEP, SIGMOID, SIGMOID_STEP, Samples};
use super::{RESULTS_FILE, RunResult, STUDY_FILE, StudyRecord, read_json};
use crate::data::DatasetKind;
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::records::{self, MetricsRow, read_metrics};
use base64::Engine;

mod inside;
use std::collections::BTreeMap;
use std::path::Path;

/// A report is a list of blocks, rendered once as Markdown and once as HTML.
enum Block {
    Heading(u8, String),
    Para(String),
    Table(Vec<String>, Vec<Vec<String>>),
    Figure(String, String),
    Code(String),
}

fn md(blocks: &[Block]) -> String {
    let mut s = String::new();
    for b in blocks {
        match b {
            Block::Heading(level, t) => s += &format!("{} {t}\n\n", "#".repeat(*level as usize)),
            Block::Para(t) => s += &format!("{t}\n\n"),
            Block::Table(head, rows) => {
                s += &format!(
                    "| {} |\n|{}|\n",
                    head.join(" | "),
                    head.iter().map(|_| "---").collect::<Vec<_>>().join("|")
                );
                for r in rows {
                    s += &format!("| {} |\n", r.join(" | "));
                }
                s += "\n";
            }
            Block::Figure(stem, alt) => {
                s += &format!("![{alt}]({stem}.png)\n\n*{alt}* ([SVG]({stem}.svg))\n\n")
            }
            Block::Code(t) => s += &format!("```\n{t}\n```\n\n"),
        }
    }
    s
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Escape, then turn `**bold**` and `` `code` `` into tags.
fn inline(t: &str) -> String {
    let mut out = String::new();
    let mut bold = false;
    let mut code = false;
    let text = escape(t);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '*' && chars.peek() == Some(&'*') {
            chars.next();
            out += if bold { "</strong>" } else { "<strong>" };
            bold = !bold;
        } else if c == '`' {
            out += if code { "</code>" } else { "<code>" };
            code = !code;
        } else {
            out.push(c);
        }
    }
    out
}

fn html(blocks: &[Block], dir: &Path, title: &str) -> Result<String> {
    let mut s = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>\
body{{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}}\
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:left}}th{{background:#f3f3f3}}\
img{{max-width:100%;border:1px solid #ddd}}figure{{margin:1.5em 0}}figcaption{{color:#555;font-style:italic}}code,pre{{background:#f6f6f6}}pre{{padding:.8em;overflow-x:auto}}\
</style></head><body>\n",
        escape(title)
    );
    for b in blocks {
        match b {
            Block::Heading(level, t) => s += &format!("<h{level}>{}</h{level}>\n", inline(t)),
            Block::Para(t) => s += &format!("<p>{}</p>\n", inline(t)),
            Block::Table(head, rows) => {
                s += "<table><tr>";
                for h in head {
                    s += &format!("<th>{}</th>", inline(h));
                }
                s += "</tr>\n";
                for r in rows {
                    s += "<tr>";
                    for c in r {
                        s += &format!("<td>{}</td>", inline(c));
                    }
                    s += "</tr>\n";
                }
                s += "</table>\n";
            }
            Block::Figure(stem, alt) => {
                let path = dir.join(format!("{stem}.png"));
                let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
                let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
                s += &format!(
                    "<figure><img alt=\"{}\" src=\"data:image/png;base64,{b64}\"><figcaption>{}</figcaption></figure>\n",
                    escape(alt),
                    inline(alt)
                );
            }
            Block::Code(t) => s += &format!("<pre>{}</pre>\n", escape(t)),
        }
    }
    s += "</body></html>\n";
    Ok(s)
}

/// Everything the report needs, read from a study directory.
struct Records {
    study: StudyRecord,
    results: Vec<RunResult>,
    metrics: BTreeMap<String, Vec<MetricsRow>>,
}

impl Records {
    fn read(dir: &Path) -> Result<Records> {
        let study: StudyRecord = read_json(&dir.join(STUDY_FILE))?;
        let results: Vec<RunResult> = read_json(&dir.join(RESULTS_FILE))?;
        let mut metrics = BTreeMap::new();
        for r in &results {
            let path = dir.join("runs").join(&r.name).join(records::METRICS_FILE);
            if path.is_file() {
                metrics.insert(r.name.clone(), read_metrics(&path)?);
            }
        }
        Ok(Records {
            study,
            results,
            metrics,
        })
    }

    /// Runs of a group (one per seed).
    fn group(&self, group: &str) -> Vec<&RunResult> {
        self.results.iter().filter(|r| r.group == group).collect()
    }

    /// Metrics of a group's first seed.
    fn curve(&self, group: &str) -> Option<&Vec<MetricsRow>> {
        self.group(group).first().and_then(|r| self.metrics.get(&r.name))
    }

    fn accuracy(&self, group: &str) -> Option<Stat> {
        Stat::of(self.group(group).iter().filter_map(|r| r.test_accuracy).collect())
    }
}

/// Mean and sample standard deviation over seeds.
#[derive(Clone, Copy, Debug)]
struct Stat {
    mean: f64,
    std: f64,
    n: usize,
}

impl Stat {
    fn of(v: Vec<f64>) -> Option<Stat> {
        if v.is_empty() {
            return None;
        }
        let n = v.len();
        let mean = v.iter().sum::<f64>() / n as f64;
        let std = if n > 1 {
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        Some(Stat { mean, std, n })
    }
    fn pct(&self) -> String {
        if self.n > 1 {
            format!("{:.2}% ± {:.2}", 100.0 * self.mean, 100.0 * self.std)
        } else {
            format!("{:.2}%", 100.0 * self.mean)
        }
    }
}

fn pct(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

fn series(label: &str, rows: &[MetricsRow], color: usize, pick: fn(&MetricsRow) -> f64) -> Series {
    Series {
        label: label.to_string(),
        points: rows.iter().map(|r| (r.iteration as f64, pick(r))).collect(),
        color: COLORS[color % COLORS.len()],
    }
}

fn loss_panel(title: &str, series: Vec<Series>) -> Panel {
    Panel {
        title: title.into(),
        x_desc: "iteration".into(),
        y_desc: "cross-entropy loss (log scale)".into(),
        log_y: true,
        series,
    }
}

fn train_loss(r: &MetricsRow) -> f64 {
    r.train_loss
}
/// The held-out loss of a row: the test set's, unless the run held out a validation split.
fn eval_loss(r: &MetricsRow) -> f64 {
    r.eval_loss
}

/// Train and test loss of several groups, in two panels.
fn train_test_figure(rec: &Records, title: &str, groups: &[(&str, String)]) -> Option<LineFigure> {
    let mut train = Vec::new();
    let mut test = Vec::new();
    for (i, (g, label)) in groups.iter().enumerate() {
        let rows = rec.curve(g)?;
        train.push(series(label, rows, i, train_loss));
        test.push(series(label, rows, i, eval_loss));
    }
    Some(LineFigure {
        title: title.into(),
        panels: vec![
            loss_panel("training loss (mean over each 100 iterations)", train),
            loss_panel("test loss (10,000 images)", test),
        ],
        grid: (1, 2),
        size: (1300, 520),
    })
}

fn save_figure(
    blocks: &mut Vec<Block>,
    dir: &Path,
    stem: &str,
    fig: Option<LineFigure>,
    caption: &str,
) -> Result<()> {
    match fig {
        Some(fig) => {
            plot::save(&fig, &dir.join(stem))?;
            blocks.push(Block::Figure(stem.into(), caption.into()));
        }
        None => blocks.push(Block::Para(format!(
            "(Figure `{stem}` omitted: a run it needs did not finish.)"
        ))),
    }
    Ok(())
}

/// Test loss at `iteration` (the nearest recorded row at or after it).
fn loss_at(rows: &[MetricsRow], iteration: usize) -> Option<f64> {
    rows.iter()
        .find(|r| r.iteration >= iteration)
        .map(|r| r.eval_loss)
}

/// Mean absolute change of the test loss between evaluations over the second half of training:
/// our measure of how smooth a curve is.
fn roughness(rows: &[MetricsRow]) -> f64 {
    let half = &rows[rows.len() / 2..];
    if half.len() < 2 {
        return f64::NAN;
    }
    half.windows(2)
        .map(|w| (w[1].eval_loss - w[0].eval_loss).abs())
        .sum::<f64>()
        / (half.len() - 1) as f64
}

fn verdict(holds: bool) -> String {
    if holds {
        "**holds**".into()
    } else {
        "**does not hold**".into()
    }
}

/// Draw every figure and write `report.md` and `report.html` into `dir` from its records.
/// Each study directory in `ablations` adds a table of its results.
pub fn write(dir: &Path, ablations: &[std::path::PathBuf]) -> Result<()> {
    let rec = Records::read(dir)?;
    let found;
    let ablations = if ablations.is_empty() && rec.study.kind == "seed" {
        found = sibling_ablations(dir);
        &found[..]
    } else {
        ablations
    };
    let mut b: Vec<Block> = Vec::new();
    let title = report_title(&rec);
    b.push(Block::Heading(1, title.clone()));
    header_section(&rec, &mut b);
    configuration_section(&rec, &mut b);

    if rec.study.kind == "seed" {
        seed_sections(&rec, dir, &mut b)?;
    } else {
        custom_sections(&rec, dir, &mut b)?;
    }

    runs_section(&rec, &mut b);
    ablation_sections(ablations, &mut b)?;

    write_atomic(&dir.join("report.md"), md(&b).as_bytes())?;
    write_atomic(&dir.join("report.html"), html(&b, dir, &title)?.as_bytes())?;
    Ok(())
}

/// The report's title: the seed report's study, or the spec's name.
fn report_title(rec: &Records) -> String {
    if rec.study.kind == "seed" {
        "mnist-mlp: the seed report's study, regenerated".to_string()
    } else {
        format!("mnist-mlp study '{}'", rec.study.spec.name)
    }
}

/// The spec's description, where and how the study ran, its data set and its command line.
fn header_section(rec: &Records, b: &mut Vec<Block>) {
    if !rec.study.spec.description.is_empty() {
        b.push(Block::Para(rec.study.spec.description.clone()));
    }
    b.push(Block::Para(produced_by(rec)));
    let dataset = rec.results.first().map(|r| r.config.dataset).unwrap_or_default();
    if dataset != DatasetKind::Mnist {
        b.push(Block::Para(format!(
            "Data set: **{}** (`--dataset {dataset}`), classes 0–9: {}.",
            dataset.title(),
            dataset.class_names().join(", ")
        )));
    }
    b.push(Block::Para("Ran as:".into()));
    b.push(Block::Code(rec.study.command.clone()));
}

/// The sentence saying which version produced the study, on which machine(s), and how long it took.
fn produced_by(rec: &Records) -> String {
    let m = &rec.study.machine;
    if rec.study.shards.is_empty() {
        return format!(
            "Produced by mnist-mlp {} on {} ({} logical cores, {}): {} runs, {} at a time with {} matrix-product thread(s) each, {:.1} s of wall time in all.",
            rec.study.tool_version,
            m.cpu,
            m.logical_cores,
            m.os,
            rec.results.len(),
            rec.study.jobs,
            rec.study.threads_per_run,
            rec.study.wall_seconds
        );
    }
    let mut hosts: Vec<String> = rec
        .study
        .shards
        .iter()
        .map(|s| {
            format!(
                "{} ({}, {} logical cores)",
                s.host, s.machine.cpu, s.machine.logical_cores
            )
        })
        .collect();
    hosts.dedup();
    format!(
        "Produced by mnist-mlp {} in {} shard process(es) on {}: {} runs, {:.1} s of wall time from the first shard's start to the last one's end.",
        rec.study.tool_version,
        rec.study.shards.len(),
        hosts.join(", "),
        rec.results.len(),
        rec.study.wall_seconds
    )
}

/// The options shared by every run, and the seeds, as a table.
fn configuration_section(rec: &Records, b: &mut Vec<Block>) {
    b.push(Block::Heading(2, "Configuration".into()));
    b.push(Block::Para(
        "Options shared by every run (everything else is the default of `mnist-mlp train`):".into(),
    ));
    let mut rows: Vec<Vec<String>> = rec
        .study
        .spec
        .base
        .iter()
        .map(|(k, v)| {
            let value = match v {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            vec![format!("`{k}`"), value]
        })
        .collect();
    rows.push(vec!["`seeds`".into(), format!("{:?}", rec.study.spec.seeds)]);
    b.push(Block::Table(vec!["option".into(), "value".into()], rows));
}

/// Every run's status, accuracy, loss and speed, why any failed, and which have not finished.
fn runs_section(rec: &Records, b: &mut Vec<Block>) {
    b.push(Block::Heading(2, "Runs: time and speed".into()));
    let rows = rec
        .results
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.status.clone(),
                r.test_accuracy.map(pct).unwrap_or_else(|| "—".into()),
                r.test_loss
                    .map(|l| format!("{l:.4}"))
                    .unwrap_or_else(|| "—".into()),
                r.train_seconds
                    .map(|t| format!("{t:.1}"))
                    .unwrap_or_else(|| "—".into()),
                r.samples_per_second
                    .map(|s| format!("{s:.0}"))
                    .unwrap_or_else(|| "—".into()),
            ]
        })
        .collect();
    b.push(Block::Table(
        [
            "run",
            "status",
            "test accuracy",
            "test loss",
            "training s",
            "samples/s",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    ));
    for r in rec.results.iter().filter(|r| r.status != "ok") {
        b.push(Block::Para(format!(
            "`{}`: {}",
            r.name,
            r.message.clone().unwrap_or_default()
        )));
    }
    let missing: Vec<&str> = rec
        .study
        .plans
        .iter()
        .filter(|p| !rec.results.iter().any(|r| r.name == p.name))
        .map(|p| p.name.as_str())
        .collect();
    if !missing.is_empty() {
        b.push(Block::Para(format!(
            "Not finished ({} of {} runs, left out of every table above): {}. `mnist-mlp study --status DIR` shows where they stand.",
            missing.len(),
            rec.study.plans.len(),
            missing.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
        )));
    }
}

/// The ablation heading and its explanation, then one table per ablation study in `ablations`.
fn ablation_sections(ablations: &[std::path::PathBuf], b: &mut Vec<Block>) -> Result<()> {
    if !ablations.is_empty() {
        b.push(Block::Heading(
            2,
            "Ablation: which unstated settings reproduce the seed report".into(),
        ));
        b.push(Block::Para(
            "Each row is one combination of the settings the report leaves open; each column one of its cells (our accuracy, and the difference from the report in points). The last column is the mean absolute difference over the cells.".into(),
        ));
    }
    for ab in ablations {
        ablation_section(ab, b)?;
    }
    Ok(())
}

/// The sections that reproduce the seed report, in its order, then what it does not show.
fn seed_sections(rec: &Records, dir: &Path, b: &mut Vec<Block>) -> Result<()> {
    accuracy_section(rec, b);
    sigmoid_section(rec, dir, b)?;
    schedule_section(rec, dir, b)?;
    relu_section(rec, dir, b)?;
    let samples = samples_section(dir, b)?;
    mistakes_section(rec, dir, b)?;
    inside::section(rec, dir, b)?;
    claims_section(rec, samples.as_ref(), b);
    Ok(())
}

/// The seed's eight accuracies beside ours, and which cells fall outside ±1 point.
fn accuracy_section(rec: &Records, b: &mut Vec<Block>) {
    b.push(Block::Heading(2, "Accuracy against the seed report".into()));
    let dataset = rec.results.first().map(|r| r.config.dataset).unwrap_or_default();
    if dataset != DatasetKind::Mnist {
        b.push(Block::Para(format!(
            "The seed report's numbers are for MNIST, these runs for {}: the differences measure the other data set, not how well the report is reproduced.",
            dataset.title()
        )));
    }
    let cells: [(&str, &str); 8] = [
        (SIGMOID[0], "Sigmoid, α = 1e-2 (§2.2)"),
        (SIGMOID[1], "Sigmoid, α = 1e-3 (§2.2)"),
        (SIGMOID[2], "Sigmoid, α = 1e-4 (§2.2)"),
        (RELU[0], "ReLU, α = 1e-2 (§2.4)"),
        (RELU[1], "ReLU, α = 1e-3 (§2.4)"),
        (RELU[2], "ReLU, α = 1e-4 (§2.4)"),
        (SIGMOID_STEP, "Sigmoid, α = 1e-2, step decay ×0.85 / 250 (§2.3)"),
        (RELU_STEP, "ReLU, α = 1e-2, step decay ×0.85 / 250 (ours)"),
    ];
    let mut rows = Vec::new();
    let mut misses: Vec<String> = Vec::new();
    // The group furthest from the report, and by how many points.
    let mut furthest: Option<(&str, f64)> = None;
    for (g, label) in cells {
        let reported = rec.group(g).first().and_then(|r| r.reported_accuracy);
        let ours = rec.accuracy(g);
        match (reported, ours) {
            (Some(s), Some(o)) if (o.mean - s).abs() > 0.01 => {
                misses.push(format!("{label} ({:+.2} points)", 100.0 * (o.mean - s)));
                let d = 100.0 * (o.mean - s).abs();
                if furthest.is_none_or(|(_, f)| d > f) {
                    furthest = Some((g, d));
                }
            }
            (Some(_), None) => misses.push(format!("{label} (diverged)")),
            _ => {}
        }
        let diff = match (reported, ours) {
            (Some(s), Some(o)) => format!("{:+.2}", 100.0 * (o.mean - s)),
            _ => "—".into(),
        };
        rows.push(vec![
            label.to_string(),
            reported.map(pct).unwrap_or_else(|| "—".into()),
            ours.map(|o| o.pct()).unwrap_or_else(|| "diverged".into()),
            diff,
        ]);
    }
    b.push(Block::Table(
        ["experiment", "seed report", "mnist-mlp", "difference (points)"]
            .map(String::from)
            .to_vec(),
        rows,
    ));
    b.push(Block::Para(if misses.is_empty() {
        "Every cell is within ±1.0 point of the seed report.".to_string()
    } else {
        format!(
            "Outside ±1.0 point of the seed report: {}. The report does not state its hidden sizes, momentum, initialisation or how it reduces the loss and the L2 term over the batch; this study uses the reading that came closest in the ablation of `studies/ablation*.toml` (mean absolute difference over the seven cells). The ablation's tables, at the end of this report, show for every cell what was tried and what came closest. They are drawn from a fresh run of the ablation beside this study (`runs/study-ablation*`) if there is one, else from the records of ours committed in `studies/results/`, or from `--ablation DIR`.",
            misses.join("; ")
        ) + &match furthest {
            // The per-layer section shows why this cell is the most sensitive to what the
            // report leaves out; its own table checks that claim against the records.
            Some((g, d)) if g == SIGMOID[2] => format!(
                " The cell furthest off is the sigmoid network at α = 1e-4 ({d:.2} points). The section \"Inside the networks\" below shows why that network is the most sensitive to the settings the report leaves out: its first layer gets a fraction of the gradient its last layer gets, so how far it gets in 8000 iterations hangs on whatever scales that gradient."
            ),
            _ => String::new(),
        }
    }));
}

/// "sigmoid, α = 1e-2", … for the three learning rates of `names`.
fn lr_groups(names: [&'static str; 3], act: &str) -> Vec<(&'static str, String)> {
    names
        .iter()
        .zip(["1e-2", "1e-3", "1e-4"])
        .map(|(g, a)| (*g, format!("{act}, α = {a}")))
        .collect()
}

/// §2.2: the sigmoid network's learning curves and its three learning rates.
fn sigmoid_section(rec: &Records, dir: &Path, b: &mut Vec<Block>) -> Result<()> {
    b.push(Block::Heading(2, "§2.2 Learning curves, sigmoid".into()));
    save_figure(
        b,
        dir,
        "fig1-sigmoid-curves",
        train_test_figure(
            rec,
            "Sigmoid network, α = 1e-2: training and test loss",
            &[(SIGMOID[0], "sigmoid, α = 1e-2".into())],
        ),
        "Figure 1a. Training and test loss of the sigmoid network at α = 1e-2 (seed §2.2).",
    )?;
    save_figure(
        b,
        dir,
        "fig2-lr-sigmoid",
        train_test_figure(
            rec,
            "Sigmoid network: three learning rates",
            &lr_groups(SIGMOID, "sigmoid"),
        ),
        "Figure 2a. Loss for α = 1e-2, 1e-3, 1e-4, sigmoid (seed §2.2).",
    )?;
    Ok(())
}

/// §2.3: step decay against a constant rate, for both activations.
fn schedule_section(rec: &Records, dir: &Path, b: &mut Vec<Block>) -> Result<()> {
    b.push(Block::Heading(2, "§2.3 Learning-rate schedule".into()));
    for (constant, step, act, n) in [
        (SIGMOID[0], SIGMOID_STEP, "Sigmoid", "a"),
        (RELU[0], RELU_STEP, "ReLU", "b"),
    ] {
        let fig = (|| {
            let (c, s) = (rec.curve(constant)?, rec.curve(step)?);
            let lr = |r: &MetricsRow| r.lr;
            Some(LineFigure {
                title: format!(
                    "{act}, α = 1e-2: step decay ×0.85 every 250 iterations against a constant rate"
                ),
                panels: vec![
                    loss_panel(
                        "training loss",
                        vec![
                            series("constant", c, 0, train_loss),
                            series("step decay", s, 1, train_loss),
                        ],
                    ),
                    loss_panel(
                        "test loss",
                        vec![
                            series("constant", c, 0, eval_loss),
                            series("step decay", s, 1, eval_loss),
                        ],
                    ),
                    Panel {
                        title: "learning rate α".into(),
                        x_desc: "iteration".into(),
                        y_desc: "α (log scale)".into(),
                        log_y: true,
                        series: vec![series("constant", c, 0, lr), series("step decay", s, 1, lr)],
                    },
                ],
                grid: (1, 3),
                size: (1600, 500),
            })
        })();
        save_figure(
            b,
            dir,
            &format!("fig3-schedule-{}", act.to_lowercase()),
            fig,
            &format!(
                "Figure 3{n}. {act}: scheduled against constant learning rate, with α itself on the right."
            ),
        )?;
    }
    Ok(())
}

/// §2.4: the ReLU network's curves, its learning rates, and ReLU against sigmoid.
fn relu_section(rec: &Records, dir: &Path, b: &mut Vec<Block>) -> Result<()> {
    b.push(Block::Heading(2, "§2.4 ReLU".into()));
    save_figure(
        b,
        dir,
        "fig1-relu-curves",
        train_test_figure(
            rec,
            "ReLU network, α = 1e-2: training and test loss",
            &[(RELU[0], "ReLU, α = 1e-2".into())],
        ),
        "Figure 1b. Training and test loss of the ReLU network at α = 1e-2 (seed §2.4).",
    )?;
    save_figure(
        b,
        dir,
        "fig2-lr-relu",
        train_test_figure(
            rec,
            "ReLU network: three learning rates",
            &lr_groups(RELU, "ReLU"),
        ),
        "Figure 2b. Loss for α = 1e-2, 1e-3, 1e-4, ReLU (seed §2.4).",
    )?;
    save_figure(
        b,
        dir,
        "fig4-relu-vs-sigmoid",
        train_test_figure(
            rec,
            "ReLU against sigmoid, α = 1e-2",
            &[(SIGMOID[0], "sigmoid".into()), (RELU[0], "ReLU".into())],
        ),
        "Figure 4. ReLU against sigmoid at α = 1e-2 (seed §2.4).",
    )?;
    Ok(())
}

/// §2.5: the 20 sample digits with both networks' top-3 (from `samples.json`).
fn samples_section(dir: &Path, b: &mut Vec<Block>) -> Result<Option<Samples>> {
    b.push(Block::Heading(2, "§2.5 Sample predictions".into()));
    let samples_path = dir.join(seed::SAMPLES_FILE);
    let samples: Option<Samples> = if samples_path.is_file() {
        Some(read_json(&samples_path)?)
    } else {
        None
    };
    if let Some(s) = &samples {
        let caption = s
            .networks
            .iter()
            .map(|n| format!("{}: {}/{} correct", n.label, n.correct, s.labels.len()))
            .collect::<Vec<_>>()
            .join(", ");
        let cells = (0..s.labels.len())
            .map(|i| SampleCell {
                pixels: s.pixels[i].clone(),
                rows: s.rows,
                cols: s.cols,
                label: s.labels[i],
                predictions: s
                    .networks
                    .iter()
                    .map(|n| (n.label.clone(), n.top3[i].iter().map(|p| p.0).collect()))
                    .collect(),
            })
            .collect();
        let classes = if s.classes.is_empty() {
            crate::data::sets::digit_names(crate::data::sets::CLASS_COUNT)
        } else {
            s.classes.clone()
        };
        let what = if crate::data::sets::are_digits(&classes) {
            "digits"
        } else {
            "images"
        };
        let fig = SamplesFigure {
            title: format!(
                "{} test {what} picked by seed: true label and top-3 predictions",
                s.labels.len()
            ),
            caption: format!("{caption} (top-1); a wrong top-1 is red and marked ✗"),
            cells,
            columns: 5,
            classes,
        };
        plot::save(&fig, &dir.join("fig5-samples"))?;
        b.push(Block::Figure(
            "fig5-samples".into(),
            format!("Figure 5. Sample predictions, α = 1e-2 networks. {caption}."),
        ));
    } else {
        b.push(Block::Para(
            "(No samples.json: a network it needs did not finish.)".into(),
        ));
    }
    Ok(samples)
}

/// The seed report's claims, each with our evidence and a verdict.
fn claims_section(rec: &Records, samples: Option<&Samples>, b: &mut Vec<Block>) {
    b.push(Block::Heading(2, "The seed report's claims, checked".into()));
    let counts: BTreeMap<String, usize> = samples
        .map(|s| s.networks.iter().map(|n| (n.label.clone(), n.correct)).collect())
        .unwrap_or_default();
    let mut rows: Vec<Vec<String>> = Vec::new();
    for (names, act) in [(SIGMOID, "sigmoid"), (RELU, "ReLU")] {
        let losses: Option<Vec<f64>> = names
            .iter()
            .map(|g| rec.curve(g).and_then(|c| loss_at(c, 1000)))
            .collect();
        if let Some(l) = losses {
            rows.push(vec![
                format!("Higher α converges faster ({act})"),
                format!(
                    "test loss at iteration 1000: {:.3} (1e-2), {:.3} (1e-3), {:.3} (1e-4)",
                    l[0], l[1], l[2]
                ),
                verdict(l[0] < l[1] && l[1] < l[2]),
            ]);
        }
    }
    if let (Some(s), Some(r)) = (rec.curve(SIGMOID[0]), rec.curve(RELU[0])) {
        let (ls, lr) = (
            loss_at(s, 1000).unwrap_or(f64::NAN),
            loss_at(r, 1000).unwrap_or(f64::NAN),
        );
        rows.push(vec![
            "ReLU converges faster than sigmoid (α = 1e-2)".into(),
            format!("test loss at iteration 1000: ReLU {lr:.3}, sigmoid {ls:.3}"),
            verdict(lr < ls),
        ]);
    }
    if let (Some(s), Some(r)) = (rec.accuracy(SIGMOID[0]), rec.accuracy(RELU[0])) {
        rows.push(vec![
            "ReLU ends higher than sigmoid (α = 1e-2)".into(),
            format!("final test accuracy: ReLU {}, sigmoid {}", r.pct(), s.pct()),
            verdict(r.mean > s.mean),
        ]);
    }
    for (constant, step, act) in [
        (SIGMOID[0], SIGMOID_STEP, "sigmoid"),
        (RELU[0], RELU_STEP, "ReLU, ours"),
    ] {
        if let (Some(c), Some(s)) = (rec.curve(constant), rec.curve(step)) {
            let (rc, rs) = (roughness(c), roughness(s));
            rows.push(vec![
                format!("The schedule converges more smoothly ({act})"),
                format!("mean absolute change of test loss between evaluations, second half: scheduled {rs:.4}, constant {rc:.4}"),
                verdict(rs < rc),
            ]);
        }
        if let (Some(c), Some(s)) = (rec.accuracy(constant), rec.accuracy(step)) {
            rows.push(vec![
                format!("The schedule ends lower ({act})"),
                format!("final test accuracy: scheduled {}, constant {}", s.pct(), c.pct()),
                verdict(s.mean < c.mean),
            ]);
        }
    }
    if let (Some(&r), Some(&s)) = (counts.get("ReLU"), counts.get("Sigmoid")) {
        let n = samples
            .as_ref()
            .map(|s| s.labels.len())
            .unwrap_or(seed::SAMPLE_COUNT);
        rows.push(vec![
            "ReLU gets 19/20 samples right, sigmoid 17/20".into(),
            format!("on our {n} samples: ReLU {r}/{n}, sigmoid {s}/{n}"),
            if r == 19 && s == 17 {
                "**holds exactly**".into()
            } else if r >= s {
                "**holds in direction** (ReLU at least as good), counts differ: other samples".into()
            } else {
                "**does not hold**".into()
            },
        ]);
    }
    b.push(Block::Table(
        ["claim", "evidence", "verdict"].map(String::from).to_vec(),
        rows,
    ));
}

/// How many mistakes of each network the mistakes figure shows.
const MISTAKES_SHOWN: usize = 8;

/// Figure 6: the most confident mistakes on the test set of the sigmoid and ReLU networks at
/// α = 1e-2 (first seed). The networks are read from their run directories' model files and
/// the test images from the data set they were trained on, so `report --from` redraws the same
/// figure; without them the section says what is missing.
fn mistakes_section(rec: &Records, dir: &Path, b: &mut Vec<Block>) -> Result<()> {
    b.push(Block::Heading(2, "The networks' most confident mistakes".into()));
    let mut cells = Vec::new();
    let mut missing = Vec::new();
    let mut classes = Vec::new();
    let mut caption = Vec::new();
    for (group, label) in [(SIGMOID[0], "Sigmoid"), (RELU[0], "ReLU")] {
        let Some(r) = rec.group(group).into_iter().find(|r| r.status == "ok") else {
            missing.push(format!("{label}: no finished run of {group}"));
            continue;
        };
        let run_dir = dir.join("runs").join(&r.name);
        let loaded = match crate::model::load(&run_dir) {
            Ok(l) => l,
            Err(e) => {
                missing.push(format!("{label}: {e}"));
                continue;
            }
        };
        let train = &loaded.config.train;
        let data = match crate::data::Dataset::open(train.data_dir.as_deref(), train.dataset, false) {
            Ok(d) => d,
            Err(e) => {
                missing.push(format!("{label}: {e}"));
                continue;
            }
        };
        let mut ws = crate::nn::Workspace::new(&loaded.mlp.sizes, 1000.min(data.test.len().max(1)));
        let engine = crate::kernels::Engine::new(1, crate::kernels::Backend::detect());
        let m = crate::eval::mistakes(&engine, &loaded.mlp, &mut ws, &data.test, MISTAKES_SHOWN, 3);
        caption.push(format!("{label} ({} shown)", m.len()));
        classes = loaded.config.model.classes.clone();
        for x in &m {
            cells.push(SampleCell {
                pixels: data.test.images.image(x.index).to_vec(),
                rows: data.test.images.rows,
                cols: data.test.images.cols,
                label: x.label as u8,
                predictions: vec![(
                    format!("{label} #{} ({:.0}%)", x.index, 100.0 * x.top[0].probability),
                    x.top.iter().map(|t| t.class).collect(),
                )],
            });
        }
    }
    if cells.is_empty() {
        let why = if missing.is_empty() {
            "the networks made no mistakes".to_string()
        } else {
            missing.join("; ")
        };
        b.push(Block::Para(format!("(No mistakes figure: {why}.)")));
        return Ok(());
    }
    let fig = SamplesFigure {
        title: "The most confident mistakes on the test set, α = 1e-2 networks".into(),
        caption: "true label; network, test index (probability of the wrong top-1): top 3".into(),
        cells,
        columns: 4,
        classes,
    };
    plot::save(&fig, &dir.join("fig6-mistakes"))?;
    b.push(Block::Figure(
        "fig6-mistakes".into(),
        format!(
            "Figure 6. The test images each network gets wrong with the highest probability: {}.",
            caption.join(", ")
        ),
    ));
    if !missing.is_empty() {
        b.push(Block::Para(format!("(Missing: {}.)", missing.join("; "))));
    }
    Ok(())
}

fn custom_sections(rec: &Records, dir: &Path, b: &mut Vec<Block>) -> Result<()> {
    b.push(Block::Heading(2, "Results".into()));
    let mut groups: Vec<&str> = Vec::new();
    for r in &rec.results {
        if !groups.contains(&r.group.as_str()) {
            groups.push(&r.group);
        }
    }
    let rows = groups
        .iter()
        .map(|g| {
            let acc = rec.accuracy(g);
            let reported = rec.group(g).first().and_then(|r| r.reported_accuracy);
            vec![
                g.to_string(),
                acc.map(|a| a.pct()).unwrap_or_else(|| "diverged".into()),
                reported.map(pct).unwrap_or_else(|| "—".into()),
                match (acc, reported) {
                    (Some(a), Some(s)) => format!("{:+.2}", 100.0 * (a.mean - s)),
                    _ => "—".into(),
                },
            ]
        })
        .collect();
    b.push(Block::Table(
        ["run", "test accuracy", "reported", "difference (points)"]
            .map(String::from)
            .to_vec(),
        rows,
    ));
    if groups.len() <= 12 {
        let pairs: Vec<(&str, String)> = groups.iter().map(|g| (*g, g.to_string())).collect();
        let fig = train_test_figure(
            rec,
            &format!("Study '{}': loss curves", rec.study.spec.name),
            &pairs,
        );
        save_figure(
            b,
            dir,
            "fig-curves",
            fig,
            "Training and test loss of every run (first seed).",
        )?;
    }
    Ok(())
}

/// The records of the ablation that chose the seed study's settings, as committed with the
/// project (`results.json` and `study.json` of each study; the models are not kept).
pub const COMMITTED_ABLATIONS: &str = "studies/results";

/// Finished ablation studies for a seed study's report: `study-ablation*` directories beside
/// it (a fresh run of the ablation), else the committed records in `studies/results/` when
/// the report is drawn from the project's root.
fn sibling_ablations(dir: &Path) -> Vec<std::path::PathBuf> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let found = ablations_in(&parent);
    if found.is_empty() {
        ablations_in(Path::new(COMMITTED_ABLATIONS))
    } else {
        found
    }
}

fn ablations_in(parent: &Path) -> Vec<std::path::PathBuf> {
    let mut found: Vec<std::path::PathBuf> = std::fs::read_dir(parent)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("study-ablation"))
        })
        .filter(|p| p.join(RESULTS_FILE).is_file() && p.join(STUDY_FILE).is_file())
        .collect();
    found.sort();
    found
}

/// The ablation's results as one row per setting and one column per seed-report cell. Run
/// names of the ablation are `<cell>,<setting>,…` (the `[[runs]]` name, then the grid values).
fn ablation_section(dir: &Path, b: &mut Vec<Block>) -> Result<()> {
    let results: Vec<RunResult> = read_json(&dir.join(RESULTS_FILE))?;
    let name = read_json::<StudyRecord>(&dir.join(STUDY_FILE))
        .map(|s| s.spec.name)
        .unwrap_or_default();
    b.push(Block::Heading(3, format!("Study '{name}' (`{}`)", dir.display())));
    let mut cells: Vec<String> = Vec::new();
    let mut settings: Vec<String> = Vec::new();
    let mut acc: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    let mut reported: BTreeMap<String, f64> = BTreeMap::new();
    for r in &results {
        let (cell, setting) = r.group.split_once(',').unwrap_or((r.group.as_str(), "—"));
        if !cells.iter().any(|c| c == cell) {
            cells.push(cell.into());
        }
        if !settings.iter().any(|s| s == setting) {
            settings.push(setting.into());
        }
        if let Some(a) = r.reported_accuracy {
            reported.insert(cell.into(), a);
        }
        let entry = acc.entry((setting.to_string(), cell.to_string())).or_default();
        if let Some(a) = r.test_accuracy {
            entry.push(a);
        }
    }
    let mut head = vec!["setting".to_string()];
    head.extend(cells.iter().map(|c| match reported.get(c) {
        Some(s) => format!("{c} (report {})", pct(*s)),
        None => c.clone(),
    }));
    head.push("mean abs. difference".into());
    // Closest setting first.
    let mut scored: Vec<(f64, Vec<String>)> = settings
        .iter()
        .map(|s| {
            let mut row = vec![s.replace(',', ", ")];
            let mut diffs = Vec::new();
            for c in &cells {
                let a = acc.get(&(s.clone(), c.clone())).cloned().and_then(Stat::of);
                row.push(match (a, reported.get(c)) {
                    (Some(a), Some(r)) => {
                        diffs.push((a.mean - r).abs());
                        format!("{} ({:+.2})", a.pct(), 100.0 * (a.mean - r))
                    }
                    (Some(a), None) => a.pct(),
                    (None, _) => "diverged".into(),
                });
            }
            // A diverged cell counts as the whole reported accuracy missed.
            let missing = cells
                .iter()
                .filter(|c| acc.get(&(s.clone(), (*c).clone())).is_none_or(|v| v.is_empty()));
            diffs.extend(missing.filter_map(|c| reported.get(c).copied()));
            let mad = if diffs.is_empty() {
                f64::INFINITY
            } else {
                diffs.iter().sum::<f64>() / diffs.len() as f64
            };
            row.push(if mad.is_finite() {
                format!("{:.2}", 100.0 * mad)
            } else {
                "—".into()
            });
            (mad, row)
        })
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    let rows = scored.into_iter().map(|(_, r)| r).collect();
    b.push(Block::Table(head, rows));
    Ok(())
}
