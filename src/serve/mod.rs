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
//! Every refused request gets a 4xx (or 503) answer with `{"error": "..."}` naming what was
//! wrong; the server stays up.
//!
//! # The stack and its limits
//!
//! axum's router on hyper's HTTP/1 connections, on a multi-thread tokio runtime of `--workers`
//! threads (a few: the work per request is small). Our own accept loop, rather than
//! `axum::serve`, so that each connection gets hyper's header-read time-out and header-size
//! bound, the connection cap answers 503, and the loop survives running out of file
//! descriptors. What bounds each resource:
//!
//! - a request's head: [`Limits::client_timeout`] to arrive (hyper's header-read time-out, which
//!   also closes idle keep-alive connections), at most [`MAX_URL`] bytes of URL (414) and
//!   [`MAX_HEADER_BYTES`] of headers (431);
//! - a whole request, body read and answer computed: [`Limits::request_timeout`] (408,
//!   tower-http's `TimeoutLayer`), however slowly its bytes trickle in;
//! - a body: [`MAX_BODY`] bytes (413), read into one buffer of the announced size;
//! - JSON pixels: parsed straight into `f32`s, refused at the first value past 784, so a body of
//!   a million numbers costs no more than one of 785;
//! - connections: at most [`Limits::max_connections`] at once; one more is answered 503 and
//!   closed.
//!
//! The forward pass (microseconds to a millisecond) runs inline on the runtime's thread; decoding
//! and preparing an uploaded image (milliseconds to tens of them for a large photo) runs on
//! tokio's blocking pool, capped at `--workers` threads, so that it never holds up the threads
//! that accept connections and read requests.

use crate::error::{Error, Result};
use crate::kernels::{Backend, Engine};
use crate::model::Loaded;
use crate::nn::Workspace;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::cell::RefCell;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub const PAGE: &str = include_str!("page.html");
/// Largest request body we read.
pub const MAX_BODY: usize = 2 << 20;
/// Longest URL (path and query) we answer; longer gets 414.
pub const MAX_URL: usize = 2048;
/// Most bytes of request headers (names, values) we answer; more gets 431. hyper itself drops a
/// request head larger than [`MAX_HEAD`] with a bare 431 (or 414) before we see it.
pub const MAX_HEADER_BYTES: usize = 8 << 10;
/// The largest request head (request line and headers) hyper buffers.
pub const MAX_HEAD: usize = 64 << 10;
/// How many characters of a path a 404 answer repeats.
const ECHO_CHARS: usize = 100;

/// How long a client may take to send a request head, or stay idle between requests on a
/// keep-alive connection (`serve --client-timeout`).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a whole request may take, body included (`serve --request-timeout`).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once (`serve --max-connections`).
pub const MAX_CONNECTIONS: usize = 256;
/// How long a shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The answer to `/predict`: the top 3, every probability, and the 784 inputs the model saw.
#[derive(Serialize)]
struct Answer {
    top: Vec<crate::predict::RankedClass>,
    probabilities: Vec<f32>,
    input: Vec<f32>,
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

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        json_response(status, serde_json::json!({ "error": self.message }).to_string())
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
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

/// What the server knows of its model, shared by every request.
pub struct Service {
    pub loaded: Loaded,
    /// `summary.json` of the model's run, if it was there and readable.
    pub summary: Option<crate::records::Summary>,
}

/// `{"pixels": [n numbers in 0..1]}`, parsed straight into `f32`s: the seed knows `n`, the
/// visitor refuses the first value past it, any value out of range or not a number, and any
/// other field, all without building a tree of JSON values.
struct PixelsBody(usize);

impl<'de> DeserializeSeed<'de> for PixelsBody {
    type Value = Vec<f32>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Vec<f32>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PixelsBody {
    type Value = Vec<f32>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an object {{\"pixels\": [{} numbers]}}", self.0)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Vec<f32>, A::Error> {
        use serde::de::Error as _;
        let mut pixels = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key != "pixels" {
                return Err(A::Error::custom(format!(
                    "unknown field '{key}'; the body holds only \"pixels\""
                )));
            }
            if pixels.is_some() {
                return Err(A::Error::custom("\"pixels\" is given twice"));
            }
            pixels = Some(map.next_value_seed(PixelList(self.0))?);
        }
        pixels.ok_or_else(|| A::Error::custom("missing field \"pixels\""))
    }
}

struct PixelList(usize);

impl<'de> DeserializeSeed<'de> for PixelList {
    type Value = Vec<f32>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Vec<f32>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for PixelList {
    type Value = Vec<f32>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an array of {} numbers", self.0)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Vec<f32>, A::Error> {
        use serde::de::Error as _;
        let n = self.0;
        let mut x = Vec::with_capacity(n);
        // A value out of range is reported after the count: a body of the wrong length is told
        // so first, whatever its values.
        let mut out_of_range = None;
        loop {
            let i = x.len();
            let v = match seq.next_element::<Number>() {
                Ok(Some(Number(v))) => v,
                Ok(None) => break,
                Err(e) => return Err(A::Error::custom(format!("pixels[{i}] is not a number: {e}"))),
            };
            if i == n {
                return Err(A::Error::custom(format!(
                    "pixels has more than {n} values, expected {n} (28×28, row-major)"
                )));
            }
            if out_of_range.is_none() && !(0.0..=1.0).contains(&v) {
                out_of_range = Some((i, v));
            }
            x.push(v as f32);
        }
        if x.len() != n {
            return Err(A::Error::custom(format!(
                "pixels has {} values, expected {n} (28×28, row-major)",
                x.len()
            )));
        }
        if let Some((i, v)) = out_of_range {
            return Err(A::Error::custom(format!(
                "pixels[{i}] is {v}, expected a value in 0..1"
            )));
        }
        Ok(x)
    }
}

/// One JSON number, as f64; anything else is refused by serde's "invalid type" error.
struct Number(f64);

impl<'de> serde::Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Number, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Number;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number in 0..1")
            }
            fn visit_f64<E>(self, v: f64) -> std::result::Result<Number, E> {
                Ok(Number(v))
            }
            fn visit_u64<E>(self, v: u64) -> std::result::Result<Number, E> {
                Ok(Number(v as f64))
            }
            fn visit_i64<E>(self, v: i64) -> std::result::Result<Number, E> {
                Ok(Number(v as f64))
            }
        }
        d.deserialize_f64(V)
    }
}

/// The engine and workspace of the thread answering a request, made on its first request (the
/// runtime's threads and the blocking pool's are few and long-lived).
struct Scratch {
    sizes: Vec<usize>,
    engine: Engine,
    ws: Workspace<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Option<Scratch>> = const { RefCell::new(None) };
}

impl Service {
    pub fn input_size(&self) -> usize {
        self.loaded.mlp.sizes[0]
    }

    /// The inputs a request body of content type `content_type` describes (what
    /// `POST /api/predict` reads; the fuzz target `http_body` calls it on arbitrary bytes).
    pub fn parse_input(&self, content_type: &str, body: &[u8]) -> std::result::Result<Vec<f32>, Reject> {
        match body_kind(content_type)? {
            BodyKind::Image => self.parse_image(body),
            BodyKind::Pixels => self.parse_pixels(body),
        }
    }

    /// The inputs a JSON body describes: `{"pixels": [n numbers in 0..1]}`.
    pub fn parse_pixels(&self, body: &[u8]) -> std::result::Result<Vec<f32>, Reject> {
        let n = self.input_size();
        let mut de = serde_json::Deserializer::from_slice(body);
        let parsed = PixelsBody(n)
            .deserialize(&mut de)
            .and_then(|x| de.end().map(|()| x));
        parsed.map_err(|e| match e.classify() {
            serde_json::error::Category::Data => reject(400, e.to_string()),
            _ => reject(
                400,
                format!("body is not JSON of the form {{\"pixels\": [{n} numbers]}}: {e}"),
            ),
        })
    }

    /// The inputs an image file describes, prepared as `predict` prepares a picture.
    pub fn parse_image(&self, body: &[u8]) -> std::result::Result<Vec<f32>, Reject> {
        let img =
            crate::preprocess::decode_image(body, "request body").map_err(|e| reject(400, format!("{e}")))?;
        let x = crate::preprocess::preprocess(&img).map_err(|e| reject(422, format!("{e}")))?;
        Ok(x.to_vec())
    }

    /// The answer to a prediction for inputs `x`, computed on this thread.
    fn predict_json(&self, x: Vec<f32>) -> String {
        let sizes = &self.loaded.mlp.sizes;
        let p = SCRATCH.with_borrow_mut(|slot| {
            if slot.as_ref().is_none_or(|s| &s.sizes != sizes) {
                *slot = Some(Scratch {
                    sizes: sizes.clone(),
                    engine: Engine::new(1, Backend::detect()),
                    ws: Workspace::new(sizes, 1),
                });
            }
            let s = slot.as_mut().expect("just made");
            crate::predict::classify(&s.engine, &self.loaded, &mut s.ws, &x, 3)
                .pop()
                .expect("one image, one prediction")
        });
        serde_json::to_string(&Answer {
            top: p.top,
            probabilities: p.probabilities,
            input: x,
        })
        .expect("serialisable")
    }

    fn model_json(&self) -> String {
        let acc = self.summary.as_ref().map(|s| s.test_accuracy);
        serde_json::json!({
            "model": self.loaded.config.model,
            "train": self.loaded.config.train,
            "test_accuracy": acc,
        })
        .to_string()
    }
}

/// The time-outs and caps of a server (`serve`'s flags).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Tokio worker threads, and the most threads preparing uploaded images at once.
    pub workers: usize,
    pub client_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            workers: 2,
            client_timeout: CLIENT_TIMEOUT,
            request_timeout: REQUEST_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

struct App {
    service: Service,
    limits: Limits,
}

type Shared = Arc<App>;

/// At most `chars` characters of `s`, with "…" when cut.
fn clip(s: &str, chars: usize) -> String {
    match s.char_indices().nth(chars) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
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

async fn healthz() -> Response {
    ([(header::CONTENT_TYPE, "text/plain")], "ok\n").into_response()
}

async fn model(State(app): State<Shared>) -> Response {
    json_response(StatusCode::OK, app.service.model_json())
}

async fn not_found(req: Request) -> Response {
    let path = req.uri().path();
    reject(404, format!("no such endpoint: {}", clip(path, ECHO_CHARS))).into_response()
}

/// How much of a refused body we read and drop before answering, so that a client that sends
/// its whole body before reading the answer (most do) gets to read it: closing on unread data
/// resets the connection, and the client sees a broken pipe instead of our 413 or 415.
const MAX_DRAIN: usize = 16 << 20;

/// Read and drop the rest of `body`, [`MAX_DRAIN`] bytes at most.
async fn drain<B: axum::body::HttpBody<Data = axum::body::Bytes> + Unpin>(mut body: B) {
    use http_body_util::BodyExt;
    let mut seen = 0usize;
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(data) = frame.into_data() {
            seen += data.len();
            if seen > MAX_DRAIN {
                break;
            }
        }
    }
}

/// The body, at most [`MAX_BODY`] bytes, read into one buffer of the announced length.
async fn read_body(headers: &HeaderMap, body: Body) -> std::result::Result<Vec<u8>, Reject> {
    use http_body_util::BodyExt;
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = announced.filter(|&len| len > MAX_BODY as u64) {
        drain(body).await;
        return Err(reject(
            413,
            format!("body is {len} bytes; the limit is {MAX_BODY}"),
        ));
    }
    let mut out = Vec::with_capacity(announced.unwrap_or(0) as usize);
    let mut body = http_body_util::Limited::new(body, MAX_BODY);
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                drain(body).await;
                return Err(reject(413, format!("body exceeds the limit of {MAX_BODY} bytes")));
            }
            Err(e) => return Err(reject(400, format!("could not read the body: {e}"))),
        };
        if let Ok(data) = frame.into_data() {
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    /// `application/json` (or no content type): `{"pixels": [...]}`.
    Pixels,
    /// `image/*`: a picture to prepare.
    Image,
}

/// What a body of content type `content_type` holds, or 415.
fn body_kind(content_type: &str) -> std::result::Result<BodyKind, Reject> {
    let ct = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if ct.starts_with("image/") {
        Ok(BodyKind::Image)
    } else if ct == "application/json" || ct.is_empty() {
        Ok(BodyKind::Pixels)
    } else {
        Err(reject(
            415,
            format!(
                "Content-Type '{}' is not supported; send application/json or image/*",
                clip(&ct, ECHO_CHARS)
            ),
        ))
    }
}

async fn predict_handler(State(app): State<Shared>, req: Request) -> Response {
    match predict_request(app, req).await {
        Ok(answer) => json_response(StatusCode::OK, answer),
        Err(r) => r.into_response(),
    }
}

async fn predict_request(app: Shared, req: Request) -> std::result::Result<String, Reject> {
    let (parts, body) = req.into_parts();
    let ct = parts
        .headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let kind = match body_kind(&ct) {
        Ok(kind) => kind,
        Err(r) => {
            drain(body).await;
            return Err(r);
        }
    };
    let body = read_body(&parts.headers, body).await?;
    if kind == BodyKind::Image {
        // Decoding a large photo takes milliseconds: off the threads that serve connections.
        tokio::task::spawn_blocking(move || {
            let x = app.service.parse_image(&body)?;
            Ok(app.service.predict_json(x))
        })
        .await
        .map_err(|e| reject(500, format!("preparing the image failed: {e}")))?
    } else {
        let x = app.service.parse_pixels(&body)?;
        Ok(app.service.predict_json(x))
    }
}

/// The request's bounds on URL and header size, and a JSON body for every error answer that
/// has none of its own (axum's 405, tower-http's 408).
async fn guard(State(app): State<Shared>, req: Request, next: Next) -> Response {
    let target = req.uri().path_and_query().map(|p| p.as_str().len()).unwrap_or(0);
    if target > MAX_URL {
        return reject(
            414,
            format!("the URL is {target} bytes long; the limit is {MAX_URL}"),
        )
        .into_response();
    }
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return reject(
            431,
            format!("the headers are {header_bytes} bytes; the limit is {MAX_HEADER_BYTES}"),
        )
        .into_response();
    }
    let method = req.method().clone();
    let path = clip(req.uri().path(), ECHO_CHARS);
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            let allow = response
                .headers()
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            format!("method {method} is not allowed on {path}; allowed: {allow}")
        }
        StatusCode::REQUEST_TIMEOUT => format!(
            "the request was not received and answered within {} s (--request-timeout)",
            app.limits.request_timeout.as_secs_f64()
        ),
        s => s.canonical_reason().unwrap_or("error").to_string(),
    };
    let (mut parts, _) = response.into_parts();
    let json = serde_json::json!({ "error": message }).to_string();
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(json))
}

fn router(app: Shared) -> axum::Router {
    use tower_http::timeout::TimeoutLayer;
    let routes = axum::Router::new()
        .route("/", get(page))
        .route("/index.html", get(page))
        .route("/healthz", get(healthz))
        .route("/api/model", get(model))
        .route("/api/predict", post(predict_handler))
        .fallback(not_found)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            app.limits.request_timeout,
        ))
        .with_state(Arc::clone(&app));
    // The guard wraps the whole router, so that it sees the `Allow` header axum adds to a 405.
    axum::Router::new()
        .fallback_service(routes)
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&app), guard))
}

/// A warning for listening on `addr`, if it is reachable from beyond this machine.
pub fn beyond_loopback_warning(addr: &SocketAddr) -> Option<String> {
    if addr.ip().is_loopback() {
        return None;
    }
    let reach = if addr.ip().is_unspecified() {
        "every network this machine is on"
    } else {
        "the network of that address"
    };
    Some(format!(
        "warning: listening on {addr}, reachable from {reach}; the server has no \
         authentication. Use --addr 127.0.0.1:{} to serve this machine only",
        addr.port()
    ))
}

/// What an accept error means for the loop: most concern one connection (it went away before
/// we took it); running out of descriptors or memory concerns all, and is waited out.
fn accept_error_is_resource(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}

const BUSY_BODY: &str = "{\"error\": \"the server is serving as many connections as it allows \
                         (--max-connections); try again shortly\"}";

/// Answer 503 on a connection over the cap, then close it: the answer first, then the end of
/// our side, then whatever the client sent is read and dropped (for a second at most), so that
/// the close is not a reset that could discard the answer before the client reads it.
async fn refuse_busy(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: \
         {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{BUSY_BODY}",
        BUSY_BODY.len()
    );
    let drain = async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        let mut buf = [0u8; 4096];
        let mut total = 0;
        while total < (64 << 10) {
            match stream.read(&mut buf).await? {
                0 => break,
                n => total += n,
            }
        }
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

/// A connection's socket whose writes fail once they have made no progress for `limit`: a
/// client that stops reading its answers (its receive window full) gives up its connection
/// after `--client-timeout`, as one that stops sending does, instead of holding it for ever.
struct WriteStallLimit {
    io: hyper_util::rt::TokioIo<tokio::net::TcpStream>,
    limit: Duration,
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl WriteStallLimit {
    /// `polled` is what a write returned: a write that made progress disarms the timer; one
    /// that waits arms it, and fails once it has waited `limit`.
    fn watch<T>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        polled: std::task::Poll<std::io::Result<T>>,
    ) -> std::task::Poll<std::io::Result<T>> {
        use std::future::Future;
        use std::task::Poll;
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client read nothing of the answer for --client-timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl hyper::rt::Read for WriteStallLimit {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for WriteStallLimit {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.io).poll_write(cx, buf);
        self.watch(cx, polled)
    }
    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }
    fn is_write_vectored(&self) -> bool {
        hyper::rt::Write::is_write_vectored(&self.io)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let polled = std::pin::Pin::new(&mut self.io).poll_flush(cx);
        self.watch(cx, polled)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// Serve `service` on `addr` until Ctrl-C or SIGTERM, then finish the requests in flight (for
/// a few seconds at most) and return. Prints `banner` on stderr once the address is bound, then
/// the address (useful with port 0) on stdout.
pub fn run(service: Service, addr: &str, limits: Limits, banner: &str) -> Result<()> {
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| Error::flag("--addr", format!("cannot listen on {addr}: {e}")))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::flag("--addr", format!("cannot serve on {addr}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::flag("--addr", format!("cannot serve on {addr}: {e}")))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(limits.workers.max(1))
        .max_blocking_threads(limits.workers.max(1))
        .thread_name("mnist-mlp-serve")
        .enable_all()
        .build()
        .map_err(|e| Error::flag("--workers", format!("cannot start the server's threads: {e}")))?;
    eprintln!("{banner}");
    if let Some(w) = beyond_loopback_warning(&local) {
        eprintln!("{w}");
    }
    println!("listening on http://{local}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let app = Arc::new(App { service, limits });
    runtime.block_on(serve_until_signal(listener, app))
}

async fn serve_until_signal(listener: std::net::TcpListener, app: Shared) -> Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    use tokio::sync::Semaphore;
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|e| Error::flag("--addr", format!("cannot serve: {e}")))?;
    let limits = app.limits;
    let service = TowerToHyperService::new(router(Arc::clone(&app)));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.client_timeout)
        .max_header_size(MAX_HEAD)
        .max_buf_size(MAX_HEAD.max(8192) * 2)
        .keep_alive(true);
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    // Connections being told 503 hold a descriptor too, for a second at most: bounded as well.
    let refusals = Arc::new(Semaphore::new(64));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let mut resource_errors = 0u64;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) if accept_error_is_resource(&e) => {
                // Out of descriptors (or memory): the connection stays in the backlog; retry
                // once some of ours have closed.
                if resource_errors % 100 == 0 {
                    eprintln!(
                        "warning: cannot accept a connection ({e}); retrying (the limit of open \
                         files is {}; lower --max-connections or raise `ulimit -n`)",
                        open_files_limit().map_or("unknown".into(), |n| n.to_string())
                    );
                }
                resource_errors += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(_) => continue,
        };
        let _ = stream.set_nodelay(true);
        match Arc::clone(&connections).try_acquire_owned() {
            Ok(permit) => {
                let io = WriteStallLimit {
                    io: TokioIo::new(stream),
                    limit: limits.client_timeout,
                    stalled: None,
                };
                let conn = http.serve_connection(io, service.clone());
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                    drop(permit);
                });
            }
            Err(_) => {
                if let Ok(permit) = Arc::clone(&refusals).try_acquire_owned() {
                    tokio::spawn(async move {
                        refuse_busy(stream).await;
                        drop(permit);
                    });
                }
            }
        }
    }
    drop(listener);
    eprintln!("shutting down: finishing the requests in flight");
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            eprintln!("some connections were still busy after {} s; closing them", SHUTDOWN_GRACE.as_secs());
        }
    }
    Ok(())
}

/// The process's limit on open files (`ulimit -n`).
pub fn open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: a valid pointer to an rlimit.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0 {
            return Some(r.rlim_cur as u64);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_cuts_at_a_character_boundary() {
        assert_eq!(clip("abc", 5), "abc");
        assert_eq!(clip("ééééé", 2), "éé…");
    }

    #[test]
    fn only_loopback_addresses_go_without_a_warning() {
        for quiet in ["127.0.0.1:80", "[::1]:80"] {
            assert_eq!(beyond_loopback_warning(&quiet.parse().unwrap()), None, "{quiet}");
        }
        for loud in ["0.0.0.0:80", "[::]:80", "192.168.1.5:80"] {
            let w = beyond_loopback_warning(&loud.parse().unwrap());
            assert!(w.is_some_and(|w| w.contains("warning")), "{loud}");
        }
    }
}
