//! `mnist-mlp watch` and `train --watch`: the page's JSON follows a run while it trains, and
//! serves a finished run's weights and predictions. Loopback only; every wait is bounded.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `GET path` on `port`: (status, body).
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn evaluations(state: &serde_json::Value) -> usize {
    state["runs"][0]["metrics"].as_array().map_or(0, Vec::len)
}

#[test]
fn the_page_follows_a_training_run_and_shows_its_weights_and_predictions() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::write_dataset(&data, 500, 40, 5);
    let out = tmp.path().join("run");
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_mnist-mlp"))
        .args([
            "train",
            "--hidden",
            "64,32",
            "--iterations",
            "30000",
            "--eval-every",
            "200",
        ])
        .args(["--batch-size", "32", "--threads", "1", "--quiet", "--data-dir"])
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .args(["--watch", &format!("127.0.0.1:{port}")])
        .env("MNIST_MLP_DATA", "/nonexistent/mnist-mlp-test-cache")
        .env("MNIST_MLP_CACHE", "/nonexistent/mnist-mlp-test-cache")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = Killed(child);

    // The number of evaluations the page's JSON holds grows at least twice while the run trains.
    let start = Instant::now();
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 3 && start.elapsed() < Duration::from_secs(60) {
        if let Some((200, body)) = get(port, "/api/state") {
            let state: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(state["kind"], "run");
            let n = evaluations(&state);
            if n > 0 {
                let run = &state["runs"][0];
                assert_eq!(run["finished"], false);
                // Two hidden layers: two rows of layers.csv per evaluation.
                assert_eq!(run["layers"].as_array().unwrap().len(), 2 * n, "{run}");
                seen.insert(n);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(seen.len() >= 3, "the curves did not grow twice in 60 s: {seen:?}");

    // The weights of the first layer (64 units of 28×28) and predictions on the test digits,
    // from the checkpoint of the run in training.
    let (status, body) = get(port, "/api/run?name=run").unwrap();
    assert_eq!(status, 200, "{body}");
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(view["side"], 28);
    let weights = view["weights"].as_array().unwrap();
    assert_eq!(weights.len(), 64);
    assert!(weights.iter().all(|w| w.as_array().unwrap().len() == 784));
    let digits = view["digits"].as_array().unwrap();
    assert_eq!(digits.len(), 20);
    assert!(
        digits
            .iter()
            .all(|d| d["pixels"].as_array().unwrap().len() == 784)
    );

    // Bad requests name what was wrong.
    let (status, body) = get(port, "/api/run?name=other").unwrap();
    assert_eq!(status, 404);
    assert!(body.contains("no run named 'other'"), "{body}");
    let (status, body) = get(port, "/api/run").unwrap();
    assert_eq!(status, 400);
    assert!(body.contains("name"), "{body}");
}

#[test]
fn watch_refuses_a_directory_that_is_neither_a_run_nor_a_study() {
    let tmp = tempfile::tempdir().unwrap();
    let a = common::mnist_mlp()
        .args(["watch"])
        .arg(tmp.path())
        .args(["--addr", "127.0.0.1:0"])
        .assert()
        .failure();
    let err = common::stderr_of(&a);
    assert!(
        err.contains("neither a run directory (with config.json) nor a study directory (with runs/)"),
        "{err}"
    );
}

/// A `--watch` address that cannot be listened on stops `train` before it trains, naming the
/// flag the user typed.
#[test]
fn train_watch_on_a_busy_address_names_the_watch_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let out = tmp.path().join("run");
    let a = common::mnist_mlp()
        .args([
            "train",
            "--iterations",
            "10",
            "--quiet",
            "--watch",
            &addr,
            "--out",
        ])
        .arg(&out)
        .env("MNIST_MLP_DATA", "/nonexistent/mnist-mlp-test-cache")
        .env("MNIST_MLP_CACHE", "/nonexistent/mnist-mlp-test-cache")
        .assert()
        .failure();
    let err = common::stderr_of(&a);
    assert!(
        err.contains(&format!("--watch: cannot listen on {addr}")),
        "{err}"
    );
    assert!(!out.exists(), "nothing is written for a run that did not start");
}
