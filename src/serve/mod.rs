//! `mnist-mlp serve`: a small HTTP server with a draw-a-digit page and a JSON prediction API.
//!
//! - `GET /`: the page (`page.html`, embedded in the binary; no CDN, no build step)
//! - `POST /api/predict`: body `{"pixels": [784 numbers in 0..1]}` (row-major 28×28, white digit
//!   on black, as MNIST) or an image file (`Content-Type: image/*`), which is preprocessed like
//!   `predict` does. Answers `{"top": [{"digit", "name", "probability"} ×3], "probabilities":
//!   [10], "input": [784]}`, `input` being what the network saw, `digit` the class index and
//!   `name` its name (the digit itself for MNIST, `"Ankle boot"` for Fashion-MNIST's 9).
//! - `GET /api/model`: the model's configuration (with its class names, `model.classes`) and
//!   test accuracy; `GET /healthz`.
//!
//! Bad requests get a 4xx answer with `{"error": "..."}` naming what was wrong; the server
//! stays up. Requests are served by a fixed set of worker threads, each with its own workspace,
//! all sharing one model and the same prediction function as `eval` and `predict`.

use crate::error::{Error, Result};
use crate::eval::{predict, top_k};
use crate::kernels::{Backend, Engine};
use crate::model::Loaded;
use crate::nn::Workspace;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

pub const PAGE: &str = include_str!("page.html");
/// Largest request body we read.
pub const MAX_BODY: usize = 2 << 20;

#[derive(Serialize)]
struct TopClass {
    /// The class index (named `digit` since MNIST, kept for clients that read it).
    digit: usize,
    name: String,
    probability: f32,
}

#[derive(Serialize)]
struct Prediction {
    top: Vec<TopClass>,
    probabilities: Vec<f32>,
    input: Vec<f32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PixelsBody {
    pixels: Vec<serde_json::Value>,
}

/// A request that cannot be answered: its status and the message for the client.
#[derive(Debug)]
pub struct Reject {
    pub status: u16,
    pub message: String,
}

fn reject(status: u16, message: impl Into<String>) -> Reject {
    Reject {
        status,
        message: message.into(),
    }
}

/// What the server knows of its model, shared by every worker.
pub struct Service {
    pub loaded: Loaded,
    /// `summary.json` of the model's run, if it was there.
    pub summary: Option<serde_json::Value>,
}

impl Service {
    pub fn input_size(&self) -> usize {
        self.loaded.mlp.sizes[0]
    }

    /// The 784 inputs a request body describes.
    pub fn parse_input(&self, content_type: &str, body: &[u8]) -> std::result::Result<Vec<f32>, Reject> {
        let n = self.input_size();
        let ct = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if ct.starts_with("image/") {
            let img = crate::preprocess::decode_image(body, "request body")
                .map_err(|e| reject(400, format!("{e}")))?;
            let x = crate::preprocess::preprocess(&img).map_err(|e| reject(422, format!("{e}")))?;
            return Ok(x.to_vec());
        }
        if ct != "application/json" && !ct.is_empty() {
            return Err(reject(
                415,
                format!("Content-Type '{ct}' is not supported; send application/json or image/*"),
            ));
        }
        let parsed: PixelsBody = serde_json::from_slice(body)
            .map_err(|e| reject(400, format!("body is not {{\"pixels\": [{n} numbers]}}: {e}")))?;
        if parsed.pixels.len() != n {
            return Err(reject(
                400,
                format!(
                    "pixels has {} values, expected {n} (28×28, row-major)",
                    parsed.pixels.len()
                ),
            ));
        }
        let mut x = Vec::with_capacity(n);
        for (i, v) in parsed.pixels.iter().enumerate() {
            let f = v
                .as_f64()
                .ok_or_else(|| reject(400, format!("pixels[{i}] is {v}, not a number")))?;
            if !(0.0..=1.0).contains(&f) {
                return Err(reject(
                    400,
                    format!("pixels[{i}] is {f}, expected a value in 0..1"),
                ));
            }
            x.push(f as f32);
        }
        Ok(x)
    }

    fn predict_json(&self, engine: &Engine, ws: &mut Workspace<f32>, x: Vec<f32>) -> String {
        let probs = predict(engine, &self.loaded.mlp, ws, &x);
        let top = top_k(&probs, 3)
            .into_iter()
            .map(|(digit, probability)| TopClass {
                digit,
                name: self.loaded.config.model.classes[digit].clone(),
                probability,
            })
            .collect();
        serde_json::to_string(&Prediction {
            top,
            probabilities: probs,
            input: x,
        })
        .expect("serialisable")
    }

    fn model_json(&self) -> String {
        let acc = self
            .summary
            .as_ref()
            .and_then(|s| s.get("test_accuracy").cloned());
        serde_json::json!({
            "model": self.loaded.config.model,
            "train": self.loaded.config.train,
            "test_accuracy": acc,
        })
        .to_string()
    }
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("valid header")
}

fn respond(req: tiny_http::Request, status: u16, content_type: &str, body: String) {
    let resp = tiny_http::Response::from_string(body)
        .with_status_code(status)
        .with_header(header("Content-Type", content_type))
        .with_header(header("Cache-Control", "no-store"));
    // A client that went away is not our error.
    let _ = req.respond(resp);
}

fn respond_error(req: tiny_http::Request, r: Reject) {
    let body = serde_json::json!({ "error": r.message }).to_string();
    respond(req, r.status, "application/json", body);
}

/// Read at most `MAX_BODY` bytes of the body; more is a 413.
fn read_body(req: &mut tiny_http::Request) -> std::result::Result<Vec<u8>, Reject> {
    if let Some(len) = req.body_length().filter(|&len| len > MAX_BODY) {
        return Err(reject(
            413,
            format!("body is {len} bytes; the limit is {MAX_BODY}"),
        ));
    }
    let mut body = Vec::new();
    req.as_reader()
        .take(MAX_BODY as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| reject(400, format!("could not read the body: {e}")))?;
    if body.len() > MAX_BODY {
        return Err(reject(413, format!("body exceeds the limit of {MAX_BODY} bytes")));
    }
    Ok(body)
}

fn handle(service: &Service, engine: &Engine, ws: &mut Workspace<f32>, mut req: tiny_http::Request) {
    let path = req.url().split('?').next().unwrap_or("").to_string();
    let method = req.method().clone();
    use tiny_http::Method::{Get, Post};
    match (method, path.as_str()) {
        (Get, "/") | (Get, "/index.html") => respond(req, 200, "text/html; charset=utf-8", PAGE.to_string()),
        (Get, "/healthz") => respond(req, 200, "text/plain", "ok\n".into()),
        (Get, "/api/model") => {
            let body = service.model_json();
            respond(req, 200, "application/json", body)
        }
        (Post, "/api/predict") => {
            let ct = req
                .headers()
                .iter()
                .find(|h| h.field.equiv("Content-Type"))
                .map(|h| h.value.as_str().to_string())
                .unwrap_or_default();
            let input = read_body(&mut req).and_then(|body| service.parse_input(&ct, &body));
            match input {
                Ok(x) => {
                    let body = service.predict_json(engine, ws, x);
                    respond(req, 200, "application/json", body)
                }
                Err(r) => respond_error(req, r),
            }
        }
        (_, "/" | "/index.html" | "/healthz" | "/api/model" | "/api/predict") => {
            respond_error(req, reject(405, format!("method not allowed on {path}")))
        }
        _ => respond_error(req, reject(404, format!("no such endpoint: {path}"))),
    }
}

/// How long a connection may stall in the middle of sending a request, or receiving an answer,
/// before it is dropped (`serve --client-timeout`).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Socket options for every connection, set on the listening socket, whose options Linux copies
/// to each accepted connection:
/// - `TCP_NODELAY`: without it, a response written in two parts (head, then body) waits for the
///   client's delayed ACK, about 40 ms on most requests;
/// - receive and send time-outs (`timeout`): a client that stops sending its body releases its
///   worker with an error instead of holding it for ever.
fn set_socket_options(listener: &std::net::TcpListener, timeout: Duration) {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        let fd = listener.as_raw_fd();
        let one: libc::c_int = 1;
        let timeout = libc::timeval {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_usec: timeout.subsec_micros() as libc::suseconds_t,
        };
        // SAFETY: a valid socket descriptor and correctly sized option values.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            for opt in [libc::SO_RCVTIMEO, libc::SO_SNDTIMEO] {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    opt,
                    &timeout as *const libc::timeval as *const libc::c_void,
                    std::mem::size_of::<libc::timeval>() as libc::socklen_t,
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = listener;
}

/// Serve `service` on `addr` with `workers` threads until the process ends. Prints the address
/// it listens on (useful with port 0) on stdout.
pub fn run(service: Service, addr: &str, workers: usize, client_timeout: Duration) -> Result<()> {
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| Error::flag("--addr", format!("cannot listen on {addr}: {e}")))?;
    set_socket_options(&listener, client_timeout);
    let server = tiny_http::Server::from_listener(listener, None)
        .map_err(|e| Error::flag("--addr", format!("cannot serve on {addr}: {e}")))?;
    let server = Arc::new(server);
    let service = Arc::new(service);
    match server.server_addr() {
        tiny_http::ListenAddr::IP(a) => println!("listening on http://{a}"),
        #[allow(unreachable_patterns)]
        other => println!("listening on {other:?}"),
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let handles: Vec<_> = (0..workers.max(1))
        .map(|_| {
            let (server, service) = (Arc::clone(&server), Arc::clone(&service));
            std::thread::spawn(move || {
                let engine = Engine::new(1, Backend::detect());
                let mut ws = Workspace::new(&service.loaded.mlp.sizes, 1);
                loop {
                    match server.recv_timeout(Duration::from_secs(1)) {
                        Ok(Some(req)) => handle(&service, &engine, &mut ws, req),
                        Ok(None) => continue,
                        Err(_) => continue,
                    }
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}
