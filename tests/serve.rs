//! `mnist-mlp serve` over real HTTP on loopback: the page, the model endpoint, predictions from
//! pixels and from image files, every kind of bad request (answered 4xx with a JSON error, the
//! server staying up), and parallel clients.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running server, killed when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(model: &Path) -> Server {
    start_with(model, &[])
}

fn start_with(model: &Path, extra: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mnist-mlp"))
        .args(["serve", "--addr", "127.0.0.1:0", "--workers", "4", "--model"])
        .arg(model)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .expect("the server prints its address")
        .to_string();
    Server { child, base }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// (status, body) of a request.
fn call(method: &str, url: &str, content_type: &str, body: &[u8]) -> (u16, String) {
    let agent = agent();
    let mut resp = match method {
        "GET" => agent.get(url).call().unwrap(),
        _ => agent
            .post(url)
            .header("Content-Type", content_type)
            .send(body)
            .unwrap(),
    };
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap())
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// A vertical bar, as a 784-pixel "1".
fn bar_pixels() -> Vec<f64> {
    let mut x = vec![0.0; 784];
    for r in 4..24 {
        for c in 12..16 {
            x[r * 28 + c] = 1.0;
        }
    }
    x
}

fn png_of_a_stroke() -> Vec<u8> {
    let mut img = image::GrayImage::from_pixel(280, 280, image::Luma([255]));
    for y in 40..240 {
        for x in 130..150 {
            img.put_pixel(x, y, image::Luma([0]));
        }
    }
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

#[test]
fn the_server_answers_pages_models_and_predictions_and_refuses_bad_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(&common::tiny_model(tmp.path(), 20).1);
    let url = |p: &str| format!("{}{p}", server.base);

    let (status, page) = call("GET", &url("/"), "", b"");
    assert_eq!(status, 200);
    assert!(
        page.contains("<canvas") && page.contains("/api/predict"),
        "the page"
    );
    assert_eq!(call("GET", &url("/healthz"), "", b""), (200, "ok\n".to_string()));
    let (status, model) = call("GET", &url("/api/model"), "", b"");
    assert_eq!(status, 200);
    assert_eq!(
        json(&model)["model"]["layer_sizes"],
        serde_json::json!([784, 32, 10])
    );
    assert!(json(&model)["test_accuracy"].is_number());
    assert_eq!(
        json(&model)["model"]["classes"],
        serde_json::json!(["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"])
    );

    let body = serde_json::json!({ "pixels": bar_pixels() }).to_string();
    let (status, answer) = call("POST", &url("/api/predict"), "application/json", body.as_bytes());
    assert_eq!(status, 200, "{answer}");
    let a = json(&answer);
    let probs: Vec<f64> = a["probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(probs.len(), 10);
    assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-4);
    let top = a["top"].as_array().unwrap();
    assert_eq!(top.len(), 3);
    assert!(top[0]["probability"].as_f64() >= top[1]["probability"].as_f64());
    assert_eq!(
        top[0]["name"],
        top[0]["digit"].to_string(),
        "an MNIST class is named by its digit"
    );
    assert_eq!(a["input"].as_array().unwrap().len(), 784);

    let (status, answer) = call("POST", &url("/api/predict"), "image/png", &png_of_a_stroke());
    assert_eq!(status, 200, "{answer}");
    assert_eq!(json(&answer)["input"].as_array().unwrap().len(), 784);

    let mut out_of_range = bar_pixels();
    out_of_range[5] = 3.0;
    let bad: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "application/json",
            br#"{"pixels": [1, 2]}"#.to_vec(),
            400,
            "expected 784",
        ),
        ("application/json", b"not json".to_vec(), 400, "is not"),
        (
            "application/json",
            serde_json::json!({"pixels": out_of_range})
                .to_string()
                .into_bytes(),
            400,
            "pixels[5]",
        ),
        (
            "application/json",
            format!("{{\"pixels\": [\"a\"{}]}}", ",0".repeat(783)).into_bytes(),
            400,
            "not a number",
        ),
        ("image/png", b"definitely not a png".to_vec(), 400, "not an image"),
        ("image/png", vec![0u8; 3 << 20], 413, "limit"),
        ("text/plain", b"hello".to_vec(), 415, "not supported"),
    ];
    for (ct, body, want, needle) in bad {
        let (status, answer) = call("POST", &url("/api/predict"), ct, &body);
        assert_eq!(status, want, "{ct}: {answer}");
        assert!(
            json(&answer)["error"].as_str().unwrap().contains(needle),
            "{ct}: {answer}"
        );
    }
    assert_eq!(call("GET", &url("/api/predict"), "", b"").0, 405);
    assert_eq!(call("GET", &url("/no/such/page"), "", b"").0, 404);
    assert_eq!(
        call("GET", &url("/healthz"), "", b"").0,
        200,
        "still up after the bad requests"
    );
}

#[test]
fn a_fashion_mnist_model_names_its_classes_in_the_model_and_every_prediction() {
    let tmp = tempfile::tempdir().unwrap();
    let model = common::tiny_model_with(tmp.path(), 20, &["--dataset", "fashion-mnist"]).1;
    let server = start(&model);
    let (status, model) = call("GET", &format!("{}/api/model", server.base), "", b"");
    assert_eq!(status, 200, "{model}");
    let classes = json(&model)["model"]["classes"].clone();
    assert_eq!(classes[0], "T-shirt/top");
    assert_eq!(classes[9], "Ankle boot");
    assert_eq!(json(&model)["train"]["dataset"], "fashion-mnist");

    let body = serde_json::json!({ "pixels": bar_pixels() }).to_string();
    let url = format!("{}/api/predict", server.base);
    let (status, answer) = call("POST", &url, "application/json", body.as_bytes());
    assert_eq!(status, 200, "{answer}");
    for t in json(&answer)["top"].as_array().unwrap() {
        let digit = t["digit"].as_u64().unwrap() as usize;
        assert_eq!(t["name"], classes[digit], "{answer}");
    }
}

#[test]
fn parallel_clients_are_all_answered() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(&common::tiny_model(tmp.path(), 20).1);
    let url = format!("{}/api/predict", server.base);
    let body = serde_json::json!({ "pixels": bar_pixels() }).to_string();
    let first = json(&call("POST", &url, "application/json", body.as_bytes()).1);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..25 {
                    let (status, answer) = call("POST", &url, "application/json", body.as_bytes());
                    assert_eq!(status, 200);
                    // Every worker computes the same bits for the same input.
                    assert_eq!(json(&answer)["probabilities"], first["probabilities"]);
                }
            });
        }
    });
}

#[test]
fn stalled_clients_are_dropped_after_the_timeout_and_do_not_block_others_for_ever() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let tmp = tempfile::tempdir().unwrap();
    // More stalled clients than workers: without a time-out, nobody else would ever be served.
    let server = start_with(
        &common::tiny_model(tmp.path(), 20).1,
        &["--client-timeout", "1", "--request-timeout", "2"],
    );
    let addr = server.base.trim_start_matches("http://").to_string();
    let stalled: Vec<std::net::TcpStream> = (0..6)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            let head = "POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{\"pix";
            s.write_all(head.as_bytes()).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));

    let started = Instant::now();
    let body = serde_json::json!({ "pixels": bar_pixels() }).to_string();
    let (status, _) = call(
        "POST",
        &format!("{}/api/predict", server.base),
        "application/json",
        body.as_bytes(),
    );
    assert_eq!(status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a normal request waited {:?}",
        started.elapsed()
    );

    // The stalled connections are answered 408 once their request has taken longer than the
    // request time-out, and closed by the server, not left open.
    for mut s in stalled {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = Vec::new();
        let closed = match s.read_to_end(&mut buf) {
            Ok(_) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        };
        assert!(closed, "a stalled connection was still open after 5 s");
        let answer = String::from_utf8_lossy(&buf);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("--request-timeout"), "{answer}");
    }
}

/// Regression: the listening socket once inherited the client time-out as a receive time-out,
/// so `accept()` timed out after that long without a new connection and the server stopped
/// accepting for good (connection refused, the process alive and silent).
#[test]
fn the_server_keeps_accepting_after_idling_longer_than_the_client_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start_with(&common::tiny_model(tmp.path(), 20).1, &["--client-timeout", "1"]);
    std::thread::sleep(std::time::Duration::from_millis(3500));
    assert_eq!(
        call("GET", &format!("{}/healthz", server.base), "", b""),
        (200, "ok\n".to_string())
    );
}
