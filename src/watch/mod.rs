//! `mnist-mlp watch DIR`: a local page that follows a run (or every run of a study) as its files
//! grow. It reads what training writes (`metrics.csv`, `layers.csv`, the checkpoint or the
//! model, `study.json`) and runs no training code: the page polls two JSON endpoints.
//!
//! - `GET /api/state`: every run's learning curves and per-layer statistics, whether it has
//!   finished, and for a study the seed report's accuracy of each run where the spec gives one.
//! - `GET /api/run?name=NAME`: the run's latest parameters (checkpoint while it trains, model
//!   once finished) as the first layer's weights of up to [`WEIGHT_UNITS`] units (each 28×28,
//!   scaled to 0..255 by its own largest magnitude) and the predictions on [`DIGITS`] fixed
//!   test images.

use crate::data::{Dataset, Split};
use crate::error::{Error, Result};
use crate::eval::predict;
use crate::kernels::{Backend, Engine};
use crate::layerstats;
use crate::nn::{Mlp, Workspace};
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub const PAGE: &str = include_str!("page.html");
/// First-layer units drawn on the page.
pub const WEIGHT_UNITS: usize = 64;
/// Test images whose current predictions the page shows.
pub const DIGITS: usize = 20;

/// What is being watched: one run directory, or a study's (`runs/NAME/` inside).
struct Watched {
    dir: PathBuf,
    study: bool,
    /// The first [`DIGITS`] test images of each data set directory asked for, loaded once.
    digits: Mutex<HashMap<String, Arc<Split>>>,
}

type Shared = Arc<Watched>;

/// Whether `dir` is a study directory (it has `runs/`) or a run directory (it has
/// `config.json`); anything else is an error naming what was expected.
fn classify(dir: &Path) -> Result<bool> {
    if dir.join("runs").is_dir() {
        Ok(true)
    } else if dir.join("config.json").is_file() || dir.join(crate::records::METRICS_FILE).is_file() {
        Ok(false)
    } else {
        Err(Error::flag(
            "DIR",
            format!(
                "{} is neither a run directory (with config.json) nor a study directory (with runs/)",
                dir.display()
            ),
        ))
    }
}

#[derive(Serialize)]
struct RunState {
    name: String,
    finished: bool,
    /// `metrics.csv`'s header names and rows.
    columns: Vec<String>,
    metrics: Vec<Vec<f64>>,
    /// `layers.csv`'s rows, in its column order ([`layerstats::LAYERS_HEADER`]).
    layers: Vec<Vec<f64>>,
    reported_accuracy: Option<f64>,
}

/// A CSV of numbers as written by training: header names and rows. A line that does not parse
/// (a file being replaced is never half-written, but a foreign file may be anything) ends it.
fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<f64>>) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return (Vec::new(), Vec::new());
    };
    let mut lines = text.lines();
    let columns = lines
        .next()
        .map(|h| h.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    let rows = lines
        .map_while(|l| {
            l.split(',')
                .map(|v| v.parse::<f64>().ok())
                .collect::<Option<Vec<f64>>>()
        })
        .collect();
    (columns, rows)
}

fn run_dirs(w: &Watched) -> Vec<(String, PathBuf)> {
    if !w.study {
        let name = w
            .dir
            .file_name()
            .map_or_else(|| "run".into(), |n| n.to_string_lossy().into_owned());
        return vec![(name, w.dir.clone())];
    }
    let mut runs: Vec<(String, PathBuf)> = std::fs::read_dir(w.dir.join("runs"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(n, _)| !n.starts_with('.'))
        .collect();
    runs.sort();
    runs
}

/// The seed report's accuracy of each run of a study, from its `study.json` where it has one.
fn reported(w: &Watched) -> HashMap<String, f64> {
    let text = std::fs::read_to_string(w.dir.join("study.json")).unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    json["plans"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["name"].as_str()?.to_string(), p["reported_accuracy"].as_f64()?)))
        .collect()
}

async fn state(State(w): State<Shared>) -> Response {
    let reported = reported(&w);
    let runs: Vec<RunState> = run_dirs(&w)
        .into_iter()
        .map(|(name, dir)| {
            // metrics.csv first: training writes an evaluation's layers.csv rows before its
            // metrics.csv row, so every evaluation read here has its layer rows, and rows of a
            // newer evaluation are left for the next poll.
            let (columns, metrics) = read_csv(&dir.join(crate::records::METRICS_FILE));
            let (_, mut layers) = read_csv(&dir.join(crate::train::LAYERS_FILE));
            let last = metrics.last().map_or(f64::NEG_INFINITY, |r| r[0]);
            layers.retain(|r| r[0] <= last);
            RunState {
                finished: dir.join(crate::records::SUMMARY_FILE).is_file(),
                reported_accuracy: reported.get(&name).copied(),
                name,
                columns,
                metrics,
                layers,
            }
        })
        .collect();
    let body = serde_json::json!({
        "kind": if w.study { "study" } else { "run" },
        "dir": w.dir.display().to_string(),
        "layer_columns": layerstats::LAYERS_HEADER.split(',').collect::<Vec<_>>(),
        "runs": runs,
    });
    json(StatusCode::OK, body.to_string())
}

fn json(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

fn error(status: StatusCode, message: String) -> Response {
    json(status, serde_json::json!({ "error": message }).to_string())
}

/// The run's current parameters: the model once it is finished, else its checkpoint.
fn current_network(dir: &Path) -> Result<(Mlp<f32>, crate::config::RunConfig)> {
    if dir.join("model.safetensors").is_file() {
        let loaded = crate::model::load(dir)?;
        return Ok((loaded.mlp, loaded.config));
    }
    let config = crate::model::load_config(dir)?;
    let ck = crate::checkpoint::load(dir)?;
    let mut mlp = Mlp::new(&config.model.layer_sizes, config.model.activation);
    if ck.params.len() != mlp.params.len() {
        return Err(Error::model(
            &dir.join(crate::checkpoint::CHECKPOINT_FILE),
            format!(
                "holds {} parameters; config.json's network has {}",
                ck.params.len(),
                mlp.params.len()
            ),
        ));
    }
    mlp.params = ck.params;
    Ok((mlp, config))
}

#[derive(Serialize)]
struct Digit {
    /// 784 grey values 0..255, white digit on black.
    pixels: Vec<u8>,
    label: String,
    predicted: String,
    probability: f32,
}

fn test_digits(w: &Watched, config: &crate::config::RunConfig) -> Result<Arc<Split>> {
    let train = &config.train;
    let key = format!("{:?}:{:?}", train.dataset, train.data_dir);
    let mut cache = w.digits.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(split) = cache.get(&key) {
        return Ok(Arc::clone(split));
    }
    let data = Dataset::open(train.data_dir.as_deref(), train.dataset, false)?;
    let mut test = data.test;
    let n = test.len().min(DIGITS);
    test.images.pixels.truncate(n * test.images.pixels_per_image());
    test.images.count = n;
    test.labels.truncate(n);
    let split = Arc::new(test);
    cache.insert(key, Arc::clone(&split));
    Ok(split)
}

fn run_view(w: &Watched, name: &str) -> std::result::Result<serde_json::Value, (StatusCode, String)> {
    let dir = run_dirs(w)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, d)| d)
        .ok_or_else(|| (StatusCode::NOT_FOUND, format!("no run named '{}'", clip(name))))?;
    let (mlp, config) = current_network(&dir).map_err(|e| (StatusCode::CONFLICT, format!("{e:#}")))?;
    let first = &mlp.layers[0];
    let w0 = &mlp.params[first.w_range()];
    let units = first.fan_out.min(WEIGHT_UNITS);
    let weights: Vec<Vec<u8>> = (0..units)
        .map(|u| {
            let row = &w0[u * first.fan_in..(u + 1) * first.fan_in];
            let top = row.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
            row.iter()
                .map(|v| (127.5 + 127.5 * v / top).round() as u8)
                .collect()
        })
        .collect();
    let classes = &config.model.classes;
    let digits: Vec<Digit> = match test_digits(w, &config) {
        Ok(split) => {
            let engine = Engine::new(1, Backend::detect());
            let mut ws = Workspace::new(&mlp.sizes, 1);
            let mut x = vec![0f32; split.images.pixels_per_image()];
            (0..split.len())
                .map(|i| {
                    split.image_to_unit(i, &mut x);
                    let p = predict(&engine, &mlp, &mut ws, &x);
                    let best = (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap_or(0);
                    Digit {
                        pixels: split.images.image(i).to_vec(),
                        label: classes[split.labels[i] as usize].clone(),
                        predicted: classes[best].clone(),
                        probability: p[best],
                    }
                })
                .collect()
        }
        // No test set where the run's configuration says: weights and curves only.
        Err(_) => Vec::new(),
    };
    Ok(serde_json::json!({
        "name": name,
        "side": (first.fan_in as f64).sqrt().round() as usize,
        "weights": weights,
        "digits": digits,
    }))
}

fn clip(s: &str) -> String {
    s.chars().take(100).collect()
}

async fn run(State(w): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let Some(name) = q.get("name") else {
        return error(StatusCode::BAD_REQUEST, "missing ?name=RUN".into());
    };
    let (w, name) = (Arc::clone(&w), name.clone());
    match tokio::task::spawn_blocking(move || run_view(&w, &name)).await {
        Ok(Ok(v)) => json(StatusCode::OK, v.to_string()),
        Ok(Err((status, message))) => error(status, message),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}")),
    }
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
        .into_response()
}

fn router(w: Shared) -> axum::Router {
    axum::Router::new()
        .route("/", get(page))
        .route("/api/state", get(state))
        .route("/api/run", get(run))
        .with_state(w)
}

/// Whether `dir` is a study directory (true) or a run directory (false); an error naming what
/// was expected if it is neither.
pub fn kind(dir: &Path) -> Result<bool> {
    classify(dir)
}

/// Listen on `addr`, given by `flag` (`watch --addr`, `train --watch`: checked before training
/// starts), which an error names.
pub fn listen(flag: &str, addr: &str) -> Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| Error::flag(flag, format!("cannot listen on {addr}: {e}")))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::flag(flag, format!("cannot serve on {addr}: {e}")))?;
    Ok(listener)
}

/// Serve the page for `dir` on `listener` until the process ends (or Ctrl-C, when `signals`).
pub fn serve(dir: PathBuf, listener: std::net::TcpListener, study: bool, signals: bool) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(2)
        .thread_name("mnist-mlp-watch")
        .enable_all()
        .build()
        .map_err(|e| Error::flag("--addr", format!("cannot start the page's threads: {e}")))?;
    let w = Arc::new(Watched {
        dir,
        study,
        digits: Mutex::new(HashMap::new()),
    });
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|e| Error::flag("--addr", format!("cannot serve: {e}")))?;
        let server = axum::serve(listener, router(w));
        let result = if signals {
            server
                .with_graceful_shutdown(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await
        } else {
            server.await
        };
        result.map_err(|e| Error::flag("--addr", format!("the page's server stopped: {e}")))
    })
}

/// The address a listener got, for the "open this" line.
pub fn url(listener: &std::net::TcpListener) -> String {
    listener
        .local_addr()
        .map_or_else(|_| "?".into(), |a| format!("http://{a}"))
}
