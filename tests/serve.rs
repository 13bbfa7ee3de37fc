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
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mnist-mlp"));
    cmd.stderr(Stdio::null());
    start_command(cmd, model, extra)
}

/// Start `cmd` (the binary, with its stderr and limits set) serving `model`.
fn start_command(mut cmd: Command, model: &Path, extra: &[&str]) -> Server {
    let mut child = cmd
        .args(["serve", "--addr", "127.0.0.1:0", "--workers", "4", "--model"])
        .arg(model)
        .args(extra)
        .stdout(Stdio::piped())
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

fn pixels_body() -> String {
    serde_json::json!({ "pixels": bar_pixels() }).to_string()
}

fn png_of_a_stroke() -> Vec<u8> {
    png_of_a_stroke_sized(280)
}

/// A vertical stroke down the middle of a white `side × side` picture, as PNG.
fn png_of_a_stroke_sized(side: u32) -> Vec<u8> {
    let mut img = image::GrayImage::from_pixel(side, side, image::Luma([255]));
    for y in side / 7..side * 6 / 7 {
        for x in side * 13 / 28..side * 15 / 28 {
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
    let model = common::tiny_model(tmp.path(), 20).1;
    let server = start(&model);
    let url = |p: &str| format!("{}{p}", server.base);
    // What `eval` (and `predict`) compute for an input: the server's answers are the same bits.
    let loaded = mnist_mlp::model::load(&model).unwrap();
    let engine = mnist_mlp::kernels::Engine::new(1, mnist_mlp::kernels::Backend::detect());
    let mut ws = mnist_mlp::nn::Workspace::new(&loaded.mlp.sizes, 1);
    let mut eval_of = |x: &[f32]| mnist_mlp::eval::predict(&engine, &loaded.mlp, &mut ws, x);

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
    // A small picture is prepared on the connection's thread, a larger one on the blocking
    // pool: both as `preprocess` prepares them.
    for side in [100, 128, 129, 280] {
        let png = png_of_a_stroke_sized(side);
        let (status, answer) = call("POST", &url("/api/predict"), "image/png", &png);
        assert_eq!(status, 200, "{side}: {answer}");
        let img = mnist_mlp::preprocess::decode_image(&png, "test").unwrap();
        let want = mnist_mlp::preprocess::preprocess(&img).unwrap().to_vec();
        // The answer's numbers are the f32s' shortest decimals.
        let floats = |field: &str| -> Vec<f32> {
            json(&answer)[field]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect()
        };
        assert_eq!(floats("input"), want, "the {side}×{side} picture's input");
        assert_eq!(
            floats("probabilities"),
            eval_of(&want),
            "the {side}×{side} picture's probabilities"
        );
    }

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

/// A field of a form: its name, file name, content type and bytes.
type Part<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a [u8]);

/// A `multipart/form-data` body (`curl -F image=@digit.png`, an HTML form, `requests`'
/// `files=`) with `boundary` holding `parts`.
fn form(boundary: &str, parts: &[Part]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, file, ct, bytes) in parts {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"").as_bytes(),
        );
        if let Some(file) = file {
            body.extend_from_slice(format!("; filename=\"{file}\"").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        if let Some(ct) = ct {
            body.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

#[test]
fn a_picture_sent_as_a_form_file_is_read_as_a_raw_upload_is() {
    let tmp = tempfile::tempdir().unwrap();
    let model = common::tiny_model(tmp.path(), 20).1;
    let server = start(&model);
    let url = format!("{}/api/predict", server.base);
    let png = png_of_a_stroke();
    let (status, raw) = call("POST", &url, "image/png", &png);
    assert_eq!(status, 200, "{raw}");
    let ct = "multipart/form-data; boundary=XyZ-42";
    // The file is found whatever its field is called and whatever comes before it.
    for parts in [
        vec![("image", Some("digit.png"), Some("image/png"), &png[..])],
        vec![
            ("note", None, None, &b"a seven, I think"[..]),
            (
                "file",
                Some("digit.png"),
                Some("application/octet-stream"),
                &png[..],
            ),
        ],
    ] {
        let (status, answer) = call("POST", &url, ct, &form("XyZ-42", &parts));
        assert_eq!(status, 200, "{answer}");
        assert_eq!(json(&answer), json(&raw), "the same answer as the raw upload");
    }
    let bad: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            ct,
            form("XyZ-42", &[("note", None, None, b"no file here")]),
            "holds no file",
        ),
        (ct, b"--XyZ-42\r\nnot a part".to_vec(), "malformed"),
        ("multipart/form-data", form("XyZ-42", &[]), "boundary"),
        (
            ct,
            form(
                "XyZ-42",
                &[("image", Some("a.png"), Some("image/png"), b"not a png")],
            ),
            "not an image",
        ),
    ];
    for (ct, body, needle) in bad {
        let (status, answer) = call("POST", &url, ct, &body);
        assert_eq!(status, 400, "{ct}: {answer}");
        let error = json(&answer)["error"].as_str().unwrap().to_string();
        assert!(error.contains(needle), "{ct}: {answer}");
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

/// `host:port` of a server.
fn addr_of(server: &Server) -> String {
    server.base.trim_start_matches("http://").to_string()
}

/// Send `request` on a new connection and read until the server closes it (10 s at most).
fn raw(addr: &str, request: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The server may answer and close before it has read all of a refused request.
    let _ = s.write_all(request);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// The status code of a raw HTTP answer.
fn status_of(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {:?}", clip(answer)))
}

fn clip(s: &str) -> &str {
    &s[..s.len().min(300)]
}

/// The JSON body of a raw HTTP answer.
fn body_json(answer: &str) -> serde_json::Value {
    json(answer.split_once("\r\n\r\n").map_or("", |(_, b)| b))
}

use std::time::{Duration, Instant};

/// Times of `n` normal prediction requests, made one after another.
fn normal_requests(server: &Server, n: usize) -> Vec<Duration> {
    let body = serde_json::json!({ "pixels": bar_pixels() }).to_string();
    (0..n)
        .map(|_| {
            let t = Instant::now();
            let (status, answer) = call(
                "POST",
                &format!("{}/api/predict", server.base),
                "application/json",
                body.as_bytes(),
            );
            assert_eq!(status, 200, "{answer}");
            t.elapsed()
        })
        .collect()
}

/// Open `n` connections, send each `head`, then send one more byte of `drip` to every one of
/// them every 100 ms until `stop`: clients that send their request as slowly as a server could
/// be made to wait for.
fn slow_clients(addr: &str, n: usize, head: &str, drip: &'static [u8], stop: &std::sync::atomic::AtomicBool) {
    use std::io::Write;
    let mut conns: Vec<std::net::TcpStream> = (0..n)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(head.as_bytes()).unwrap();
            s
        })
        .collect();
    let mut i = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        for s in &mut conns {
            let _ = s.write_all(&drip[i % drip.len()..][..1]);
        }
        i += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// 50 clients sending their request heads a byte at a time, or 20 sending their bodies so,
/// hold no thread: a normal request is answered at once all along.
#[test]
fn slow_clients_do_not_hold_up_a_normal_request() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let tmp = tempfile::tempdir().unwrap();
    let server = start(&common::tiny_model(tmp.path(), 20).1);
    let addr = addr_of(&server);
    for (n, head, drip) in [
        (
            50,
            "GET /healthz HTTP/1.1\r\n",
            &b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"[..],
        ),
        (
            20,
            "POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"pixels\": [",
            &b"0,"[..],
        ),
    ] {
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| slow_clients(&addr, n, head, drip, &stop));
            std::thread::sleep(Duration::from_millis(500));
            let times = normal_requests(&server, 10);
            stop.store(true, Ordering::Relaxed);
            let worst = times.iter().max().unwrap();
            assert!(
                *worst < Duration::from_secs(1),
                "with {n} slow clients, a normal request took {worst:?}"
            );
        });
    }
}

/// A request that trickles in for longer than --request-timeout is answered 408, however often
/// its bytes arrive; one whose head trickles past --client-timeout is closed (after its own 408:
/// a_request_head_trickled_past_the_client_timeout_is_answered_408_then_closed).
#[test]
fn a_request_is_bounded_in_time_as_a_whole_not_per_read() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let server = start_with(
        &common::tiny_model(tmp.path(), 20).1,
        &["--client-timeout", "1", "--request-timeout", "1.5"],
    );
    let addr = addr_of(&server);
    let started = Instant::now();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.write_all(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n[")
        .unwrap();
    // A byte every 100 ms: never a read that waits long, but a request that never ends.
    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while started.elapsed() < Duration::from_secs(10) {
        let _ = s.write_all(b"0,");
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(status_of(&answer), 408, "{answer}");
    assert!(
        body_json(&answer)["error"]
            .as_str()
            .unwrap()
            .contains("--request-timeout")
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // A head that never ends: the connection is closed after the client time-out.
    let started = Instant::now();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(10) {
        if s.write_all(b"a").is_err() {
            closed = true;
            break;
        }
        match s.read(&mut buf) {
            Ok(_) => {
                closed = true;
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                closed = true;
                break;
            }
            Err(_) => {}
        }
    }
    assert!(closed, "a trickling request head was still open after 10 s");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(call("GET", &format!("{}/healthz", server.base), "", b"").0, 200);
}

/// Slowloris: a request head trickled a byte every 100 ms past --client-timeout is answered
/// `408` (a JSON error naming the flag, `Connection: close`) and closed; a connection on which
/// nothing was sent is closed after the time-out without an answer.
#[test]
fn a_request_head_trickled_past_the_client_timeout_is_answered_408_then_closed() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let server = start_with(&common::tiny_model(tmp.path(), 20).1, &["--client-timeout", "1"]);
    let addr = addr_of(&server);
    let started = Instant::now();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        if started.elapsed() > Duration::from_secs(10) {
            break false;
        }
        let _ = s.write_all(b"a");
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break true,
        }
    };
    let waited = started.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(closed, "still open after {waited:?}; read {answer:?}");
    assert!(!answer.is_empty(), "closed after {waited:?} without an answer");
    assert_eq!(status_of(&answer), 408, "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(lower.contains("\r\nconnection: close\r\n"), "{answer}");
    assert!(
        lower.contains("\r\ncontent-type: application/json\r\n"),
        "{answer}"
    );
    let error = body_json(&answer)["error"].as_str().unwrap().to_string();
    assert!(error.contains("--client-timeout"), "{error}");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "answered after {waited:?}"
    );

    // A connection that sends nothing is not a request: closed, nothing said.
    let started = Instant::now();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    let waited = started.elapsed();
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "closed after {waited:?}"
    );
    assert_eq!(call("GET", &format!("{}/healthz", server.base), "", b"").0, 200);
}

/// A pipelined request whose head stalls is answered 408 too: its first bytes arrived with the
/// request before it, before that one's answer was written.
#[test]
fn a_pipelined_head_that_stalls_is_answered_408_after_the_first_answer() {
    use std::io::Read;
    let tmp = tempfile::tempdir().unwrap();
    let server = start_with(&common::tiny_model(tmp.path(), 20).1, &["--client-timeout", "1"]);
    let addr = addr_of(&server);
    for first in [
        "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
        format!(
            "POST /api/predict HTTP/1.1\r\nHost: x\r\ncontent-length: {}\r\nContent-Type: \
             application/json\r\n\r\n{}",
            pixels_body().len(),
            pixels_body()
        ),
    ] {
        let started = Instant::now();
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        let both = format!("{first}GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ");
        std::io::Write::write_all(&mut s, both.as_bytes()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        let waited = started.elapsed();
        let got = String::from_utf8_lossy(&got);
        let answers: Vec<&str> = got.split("HTTP/1.1 ").skip(1).collect();
        assert_eq!(answers.len(), 2, "after {waited:?}: {got}");
        assert!(answers[0].starts_with("200"), "{got}");
        assert!(answers[1].starts_with("408"), "{got}");
        assert!(answers[1].contains("--client-timeout"), "{got}");
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
            "answered after {waited:?}"
        );
    }
}

/// A request head over 64 KiB, which the HTTP layer stops reading, is answered as other refused
/// requests are, with a JSON error naming the limit and `Connection: close`: 431 for headers
/// (or more than 100 header fields, however short), 414 for a URL; a head that is not HTTP at all
/// is answered 400 so too.
#[test]
fn a_request_head_over_64_kib_is_answered_with_a_json_error_naming_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(&common::tiny_model(tmp.path(), 20).1);
    let addr = addr_of(&server);
    let cases: Vec<(String, u16, &str)> = vec![
        (
            format!(
                "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                "c".repeat(100_000)
            ),
            431,
            "65536",
        ),
        (
            format!(
                "GET /healthz HTTP/1.1\r\nHost: x\r\n{}\r\n",
                "X-Many: c\r\n".repeat(150)
            ),
            431,
            "100 header fields",
        ),
        (
            format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000)),
            414,
            "2048",
        ),
        (
            format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(1 << 20)),
            414,
            "2048",
        ),
        ("NOT HTTP AT ALL\r\n\r\n".to_string(), 400, "HTTP"),
    ];
    for (request, status, needle) in cases {
        let what = clip(&request[..request.len().min(60)]).to_string();
        let answer = raw(&addr, request.as_bytes());
        assert_eq!(status_of(&answer), status, "{what}: {}", clip(&answer));
        let lower = answer.to_ascii_lowercase();
        assert!(lower.contains("\r\nconnection: close\r\n"), "{what}: {answer}");
        assert!(
            lower.contains("\r\ncontent-type: application/json\r\n"),
            "{what}: {answer}"
        );
        let error = body_json(&answer)["error"].as_str().unwrap().to_string();
        assert!(error.contains(needle), "{what}: {error}");
        assert!(answer.len() < 500, "{what}: {} bytes", answer.len());
    }
    assert_eq!(call("GET", &format!("{}/healthz", server.base), "", b"").0, 200);
}

/// One real idle period longer than the default client time-out (10 s), with the defaults.
#[test]
fn the_server_answers_after_15_s_of_idle_time_with_its_default_time_outs() {
    let tmp = tempfile::tempdir().unwrap();
    let model = common::tiny_model(tmp.path(), 20).1;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mnist-mlp"));
    cmd.stderr(Stdio::null());
    let mut child = cmd
        .args(["serve", "--addr", "127.0.0.1:0", "--model"])
        .arg(&model)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let server = Server {
        child,
        base: line.trim().strip_prefix("listening on ").unwrap().to_string(),
    };
    assert_eq!(call("GET", &format!("{}/healthz", server.base), "", b"").0, 200);
    std::thread::sleep(Duration::from_secs(15));
    assert_eq!(
        call("GET", &format!("{}/healthz", server.base), "", b""),
        (200, "ok\n".to_string())
    );
}

/// A keep-alive connection left idle past the client time-out is closed by the server; new
/// connections are served as before.
#[test]
fn idle_keep_alive_connections_are_closed_after_the_client_timeout() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let server = start_with(&common::tiny_model(tmp.path(), 20).1, &["--client-timeout", "1"]);
    let mut s = std::net::TcpStream::connect(addr_of(&server)).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let answer = String::from_utf8_lossy(&buf);
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert_eq!(
        answer.matches("HTTP/1.1 ").count(),
        1,
        "an idle connection is closed unanswered: {answer}"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "the idle connection was closed after {waited:?}"
    );
    assert_eq!(call("GET", &format!("{}/healthz", server.base), "", b"").0, 200);
}

#[test]
fn connections_over_the_cap_are_answered_503_and_served_again_once_others_close() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start_with(&common::tiny_model(tmp.path(), 20).1, &["--max-connections", "4"]);
    let addr = addr_of(&server);
    let held: Vec<_> = (0..4)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let answer = raw(&addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status_of(&answer), 503, "{answer}");
    assert!(
        body_json(&answer)["error"]
            .as_str()
            .unwrap()
            .contains("--max-connections"),
        "{answer}"
    );
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(call("GET", &format!("{}/healthz", server.base), "", b"").0, 200);
}

#[test]
fn bounded_urls_and_headers_allow_on_405_and_no_echo_of_long_input() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(&common::tiny_model(tmp.path(), 20).1);
    let addr = addr_of(&server);

    let answer = raw(
        &addr,
        b"GET /api/predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&answer), 405, "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("\r\nallow: post"),
        "{answer}"
    );
    assert!(body_json(&answer)["error"].as_str().unwrap().contains("POST"));
    let answer = raw(
        &addr,
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&answer), 405, "{answer}");
    assert!(answer.to_ascii_lowercase().contains("\r\nallow: get"), "{answer}");

    // A long URL: 414, and the answer does not repeat it.
    let long = format!("/{}", "a".repeat(5000));
    let answer = raw(
        &addr,
        format!("GET {long} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(status_of(&answer), 414, "{}", clip(&answer));
    assert!(body_json(&answer)["error"].as_str().unwrap().contains("2048"));
    assert!(answer.len() < 500, "{} bytes: {}", answer.len(), clip(&answer));
    // A URL of a megabyte: refused (414) before it is read whole, with a short answer.
    let huge = format!("/{}", "a".repeat(1 << 20));
    let answer = raw(
        &addr,
        format!("GET {huge} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    );
    assert_eq!(status_of(&answer), 414, "{}", clip(&answer));
    assert!(answer.len() < 500, "{} bytes", answer.len());
    // A 404 names at most 100 characters of the path.
    let path = format!("/{}", "b".repeat(1500));
    let answer = raw(
        &addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(status_of(&answer), 404, "{}", clip(&answer));
    let error = body_json(&answer)["error"].as_str().unwrap().to_string();
    assert!(
        error.contains(&"b".repeat(90)) && error.chars().count() < 150,
        "{error}"
    );

    // Headers: 10 kB of them is 431 with our JSON; 100 kB too, though the HTTP layer stops
    // reading them at 64 KiB (a_request_head_over_64_kib_is_answered_with_a_json_error_naming_the_limit).
    for size in [10_000, 100_000] {
        let answer = raw(
            &addr,
            format!(
                "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
                "c".repeat(size)
            )
            .as_bytes(),
        );
        assert_eq!(status_of(&answer), 431, "{size}: {}", clip(&answer));
        assert!(answer.len() < 500, "{} bytes", answer.len());
    }
    assert_eq!(call("GET", &format!("{}/healthz", server.base), "", b"").0, 200);
}

/// `ab -k`'s way: HTTP/1.0 with `Connection: keep-alive` is answered with `Connection:
/// keep-alive` and a length, and the connection serves a second request; plain HTTP/1.0 is
/// answered and closed.
#[test]
fn http_1_0_keep_alive_is_honoured_and_plain_1_0_is_closed() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let server = start(&common::tiny_model(tmp.path(), 20).1);
    let addr = addr_of(&server);
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for _ in 0..2 {
        s.write_all(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.ends_with(b"ok\n") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        let answer = String::from_utf8_lossy(&got).to_ascii_lowercase();
        assert!(
            answer.starts_with("http/1.0 200") || answer.starts_with("http/1.1 200"),
            "{answer}"
        );
        assert!(answer.contains("\r\nconnection: keep-alive\r\n"), "{answer}");
        assert!(answer.contains("\r\ncontent-length: 3\r\n"), "{answer}");
    }
    let answer = raw(&addr, b"GET /healthz HTTP/1.0\r\n\r\n");
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert!(answer.ends_with("ok\n"), "{answer}");
}

/// A body of a million numbers is refused as soon as the 785th is read, naming the count.
#[test]
fn a_million_pixels_are_refused_by_count() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start(&common::tiny_model(tmp.path(), 20).1);
    let mut body = String::from("{\"pixels\": [");
    body.push_str(&"0,".repeat(999_999));
    body.push_str("0]}");
    assert!(body.len() < 2 << 20);
    let (status, answer) = call(
        "POST",
        &format!("{}/api/predict", server.base),
        "application/json",
        body.as_bytes(),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(
        json(&answer)["error"]
            .as_str()
            .unwrap()
            .contains("more than 784 values"),
        "{answer}"
    );
}

/// Out of file descriptors, the server waits for some to close instead of losing its listener.
#[cfg(unix)]
#[test]
fn running_out_of_file_descriptors_does_not_stop_the_server() {
    use std::os::unix::process::CommandExt;
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mnist-mlp"));
    cmd.stderr(Stdio::null());
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 64,
                rlim_max: 64,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut server = start_command(
        cmd,
        &common::tiny_model(tmp.path(), 20).1,
        &["--max-connections", "1000"],
    );
    let addr = addr_of(&server);
    let held: Vec<_> = (0..70)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    assert!(server.child.try_wait().unwrap().is_none(), "the server died");
    drop(held);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(call("GET", &format!("{}/healthz", server.base), "", b"").0, 200);
}

#[test]
fn a_bad_address_is_an_error_before_any_invitation_to_open_it() {
    let tmp = tempfile::tempdir().unwrap();
    let model = common::tiny_model(tmp.path(), 20).1;
    let out = Command::new(env!("CARGO_BIN_EXE_mnist-mlp"))
        .args(["serve", "--addr", "127.0.0.1:99999", "--model"])
        .arg(&model)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--addr"), "{err}");
    assert!(!err.contains("open the address"), "{err}");
}

/// SIGTERM: the listener closes, a request in flight is finished and answered, the process
/// exits 0.
#[cfg(unix)]
#[test]
fn sigterm_finishes_the_request_in_flight_and_exits_cleanly() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mnist-mlp"));
    cmd.stderr(Stdio::piped());
    let mut server = start_command(cmd, &common::tiny_model(tmp.path(), 20).1, &[]);
    let body = serde_json::json!({ "pixels": bar_pixels() }).to_string();
    let mut s = std::net::TcpStream::connect(addr_of(&server)).unwrap();
    let head = format!(
        "POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body.as_bytes()[..100]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(server.child.id() as i32, libc::SIGTERM);
    }
    std::thread::sleep(Duration::from_millis(300));
    s.write_all(&body.as_bytes()[100..]).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let answer = String::from_utf8_lossy(&buf);
    assert_eq!(status_of(&answer), 200, "{}", clip(&answer));
    let started = Instant::now();
    let status = loop {
        if let Some(st) = server.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still running 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let mut err = String::new();
    server
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("shutting down"), "{err}");
}

/// A client that sends requests but never reads the answers loses its connection once the
/// server's writes have waited --client-timeout, rather than holding it for ever.
#[test]
fn a_client_that_stops_reading_answers_is_dropped() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let server = start_with(&common::tiny_model(tmp.path(), 20).1, &["--client-timeout", "1"]);
    let mut s = std::net::TcpStream::connect(addr_of(&server)).unwrap();
    // 5,000 pipelined requests for the page: far more answer than the sockets' buffers hold.
    let n = 5000;
    let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".repeat(n);
    s.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
    let _ = s.write_all(&request);
    std::thread::sleep(Duration::from_secs(3));
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the connection was still open, {got} bytes read: {e}"),
        }
    }
    let page = call("GET", &format!("{}/", server.base), "", b"").1.len();
    assert!(got < n * page, "the server wrote all {got} bytes of {n} answers");
    assert_eq!(call("GET", &format!("{}/healthz", server.base), "", b"").0, 200);
}
