//! `mnist-mlp serve`: a small HTTP server with a draw-a-digit page and a JSON prediction API.
//!
//! - `GET /`: the page (`page.html`, embedded in the binary; no CDN, no build step)
//! - `POST /api/predict`: body `{"pixels": [784 numbers in 0..1]}` (row-major 28×28, white digit
//!   on black, as MNIST) or an image file (`Content-Type: image/*`, or the first file field of a
//!   `multipart/form-data` form), which is preprocessed like `predict` does. Answers `{"top":
//!   [{"digit", "name", "probability"} ×3], "probabilities": [10], "input": [784]}`, `input`
//!   being what the network saw, `digit` the class index and `name` its name (the digit itself
//!   for MNIST, `"Ankle boot"` for Fashion-MNIST's 9).
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
//!   [`MAX_HEADER_BYTES`] of headers (431); hyper itself stops reading a head of more than
//!   [`MAX_HEAD`] bytes or [`MAX_HEADER_FIELDS`] fields;
//! - a whole request, body read and answer computed: [`Limits::request_timeout`] (408,
//!   tower-http's `TimeoutLayer`), however slowly its bytes trickle in;
//! - a body: [`MAX_BODY`] bytes (413), read into one buffer of the announced size;
//! - JSON pixels: parsed straight into `f32`s, refused at the first value past 784, so a body of
//!   a million numbers costs no more than one of 785;
//! - connections: at most [`Limits::max_connections`] at once; one more is answered 503 and
//!   closed.
//!
//! hyper closes a connection whose head ran out of time without a word, and answers a head it
//! cannot parse (too large, not HTTP) with a bare status and no body. So each connection's socket
//! is wrapped (`ClientIo`) to come back to us when hyper lets it go, with hyper's bare answer held
//! back, not sent: we then answer 408, 414, 431 or 400 ourselves, with a JSON error naming the
//! limit and `Connection: close` (`last_word`). A connection that was idle when its time ran out
//! (no byte of a next request) is closed unanswered.
//!
//! The forward pass (microseconds to a millisecond) runs inline on the runtime's thread, and so
//! does preparing a picture of at most 128×128 pixels; decoding and preparing a
//! larger one (milliseconds to tens of them for a photo) runs on tokio's blocking pool, capped at
//! `--workers` threads, so that it never holds up the threads that accept connections and read
//! requests.

use crate::error::{Error, Result};
use crate::kernels::{Backend, Engine, Prepared};
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
/// Most bytes of request headers (names, values) we answer; more gets 431.
pub const MAX_HEADER_BYTES: usize = 8 << 10;
/// The largest request head (request line and headers) hyper buffers. hyper stops reading a
/// larger one, or one of more than [`MAX_HEADER_FIELDS`] fields, before we see it, and answers
/// it 431 with no body; that answer is held back and ours, naming the limits, sent instead
/// (414 when the request line alone is that long).
pub const MAX_HEAD: usize = 64 << 10;
/// Most header fields in a request: hyper's default (raising it costs an allocation a request).
pub const MAX_HEADER_FIELDS: usize = 100;
/// How many characters of a path a 404 answer repeats.
const ECHO_CHARS: usize = 100;

/// How long a client may take to send a request head, or stay idle between requests on a
/// keep-alive connection (`serve --client-timeout`).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a whole request may take, body included (`serve --request-timeout`).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Pictures up to this many pixels are prepared on the thread that serves their connection
/// (about a millisecond of work, no more than handing them to another thread costs in
/// waiting); larger ones on the blocking pool.
const INLINE_PICTURE_PIXELS: u64 = 128 * 128;

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
    /// The model prepared once for the forward pass of every request: its first layer skips
    /// zero pixels, and the answers are the numbers of `predict` and `eval`.
    prepared: Option<Prepared>,
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
    /// The service of `loaded`, prepared for its forward passes ([`Engine::prepare`]).
    pub fn new(loaded: Loaded, summary: Option<crate::records::Summary>) -> Service {
        let prepared = Engine::new(1, Backend::detect()).prepare(&loaded.mlp);
        Service {
            loaded,
            summary,
            prepared,
        }
    }

    pub fn input_size(&self) -> usize {
        self.loaded.mlp.sizes[0]
    }

    /// The inputs a request body of content type `content_type` describes (what
    /// `POST /api/predict` reads; the fuzz target `http_body` calls it on arbitrary bytes).
    pub fn parse_input(&self, content_type: &str, body: &[u8]) -> std::result::Result<Vec<f32>, Reject> {
        match body_kind(content_type)? {
            BodyKind::Image => self.parse_image(body),
            BodyKind::Pixels => self.parse_pixels(body),
            BodyKind::Form(boundary) => self.parse_image(&form_picture(body, &boundary)?),
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
            crate::predict::classify(&s.engine, &self.loaded, self.prepared.as_ref(), &mut s.ws, &x, 3)
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

#[derive(Clone, PartialEq, Eq)]
enum BodyKind {
    /// `application/json` (or no content type): `{"pixels": [...]}`.
    Pixels,
    /// `image/*`: a picture to prepare.
    Image,
    /// `multipart/form-data` with this boundary: a form whose file field is a picture.
    Form(String),
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
    } else if ct == "multipart/form-data" {
        multer::parse_boundary(content_type)
            .map(BodyKind::Form)
            .map_err(|_| {
                reject(
                    400,
                    "Content-Type multipart/form-data needs a boundary (multipart/form-data; boundary=…)",
                )
            })
    } else {
        Err(reject(
            415,
            format!(
                "Content-Type '{}' is not supported; send application/json, image/* or \
                 multipart/form-data with the picture as a file",
                clip(&ct, ECHO_CHARS)
            ),
        ))
    }
}

/// The picture in a `multipart/form-data` body: the first field that is a file (it has a file
/// name, or an `image/*` type), whatever its name. multer's parser is async; the body is
/// already whole in memory, so its future finishes in one poll.
fn form_picture(body: &[u8], boundary: &str) -> std::result::Result<Vec<u8>, Reject> {
    let malformed = |e: multer::Error| reject(400, format!("the multipart/form-data body is malformed: {e}"));
    let body = Body::from(body.to_vec()).into_data_stream();
    let parse = async {
        let mut form = multer::Multipart::new(body, boundary);
        while let Some(field) = form.next_field().await.map_err(malformed)? {
            let image = field.content_type().is_some_and(|m| m.type_() == "image");
            if field.file_name().is_some() || image {
                return field.bytes().await.map(|b| b.to_vec()).map_err(malformed);
            }
        }
        Err(reject(
            400,
            "the multipart/form-data body holds no file; send the picture as a file field \
             (curl -F image=@digit.png)",
        ))
    };
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(parse).poll(&mut cx) {
        std::task::Poll::Ready(picture) => picture,
        std::task::Poll::Pending => Err(reject(500, "reading the form did not finish")),
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
    let (kind, body) = match kind {
        BodyKind::Form(boundary) => (BodyKind::Image, form_picture(&body, &boundary)?),
        kind => (kind, body),
    };
    let small = || crate::preprocess::image_pixels(&body).is_none_or(|n| n <= INLINE_PICTURE_PIXELS);
    if kind == BodyKind::Image && !small() {
        // Preparing a photo takes milliseconds: off the threads that serve connections.
        tokio::task::spawn_blocking(move || {
            let x = app.service.parse_image(&body)?;
            Ok(app.service.predict_json(x))
        })
        .await
        .map_err(|e| reject(500, format!("preparing the image failed: {e}")))?
    } else {
        let x = match kind {
            BodyKind::Pixels => app.service.parse_pixels(&body)?,
            _ => app.service.parse_image(&body)?,
        };
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

/// How much of what a client sends after an answer written outside hyper ([`answer_and_close`])
/// is read and dropped before the socket is closed.
const LAST_WORD_DRAIN: usize = 4 << 20;

/// Write `message` as a JSON error answer of `status` (with `extra_headers`, each ending in
/// CRLF, and `Connection: close`) on the socket itself, outside hyper, then close it: the answer
/// first, then the end of our side, then whatever the client sent is read and dropped (for a
/// second and [`LAST_WORD_DRAIN`] bytes at most), so that the close is not a reset that could
/// discard the answer before the client reads it.
async fn answer_and_close(
    mut stream: tokio::net::TcpStream,
    status: StatusCode,
    extra_headers: &str,
    message: &str,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = serde_json::json!({ "error": message }).to_string();
    let answer = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n\
         Content-Length: {}\r\n{extra_headers}Connection: close\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    let drain = async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        let mut buf = vec![0u8; 16 << 10];
        let mut total = 0;
        while total < LAST_WORD_DRAIN {
            match stream.read(&mut buf).await? {
                0 => break,
                n => total += n,
            }
        }
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

/// Answer 503 on a connection over the cap, then close it.
async fn refuse_busy(stream: tokio::net::TcpStream) {
    answer_and_close(
        stream,
        StatusCode::SERVICE_UNAVAILABLE,
        "Retry-After: 1\r\n",
        "the server is serving as many connections as it allows (--max-connections); try again \
         shortly",
    )
    .await;
}

/// The status of hyper's own answer to a request head it could not parse (400, 414 or 431: a
/// bare head, `content-length: 0`), if `written` is one, whole: what [`ClientIo`] holds back.
/// Our own answers of these statuses always have a JSON body.
fn bare_error_answer(written: &[u8]) -> Option<u16> {
    let status = match written.get(..13)? {
        b"HTTP/1.1 400 " => 400,
        b"HTTP/1.1 414 " => 414,
        b"HTTP/1.1 431 " => 431,
        _ => return None,
    };
    let end = written.windows(4).position(|w| w == b"\r\n\r\n")?;
    if end + 4 != written.len() {
        return None;
    }
    let head = written[..end + 2].to_ascii_lowercase();
    head.windows(21)
        .any(|w| w == b"\r\ncontent-length: 0\r\n")
        .then_some(status)
}

/// What a connection's socket saw, handed back with it when hyper lets it go.
struct Returned {
    stream: tokio::net::TcpStream,
    /// Bytes of the request head being received; 0 between requests ([`Framing`]).
    head_bytes: usize,
    /// The length of its first line (the request line), once it has ended.
    line_len: Option<usize>,
    /// The status of hyper's bare error answer, held back and not sent.
    held_back: Option<u16>,
}

/// Where the bytes read from a connection stand in its requests: in a head (how many of its
/// bytes have arrived, how long its first line is) or in a body (how many bytes are left),
/// found from the heads' `Content-Length`. So a pipelined request's head that arrived with the
/// request before it, and then stalled, is known as a head when its time runs out.
#[derive(Debug, Default)]
struct Framing {
    /// Bytes of the head being received; 0 between requests.
    head_bytes: usize,
    /// The length of its first line (the request line), once it has ended; kept after the head
    /// has ended, until the next one begins (hyper may refuse a head that has all arrived).
    line_len: Option<usize>,
    /// The header line being read, its first [`Framing::KEPT`] bytes.
    line: Vec<u8>,
    /// The head's `Content-Length`, and whether its length cannot be told from one.
    content_length: u64,
    unframed: bool,
    /// Body bytes still to come.
    body_left: u64,
    /// A body whose end cannot be told (chunked, or a length that does not parse): the next
    /// head starts where the next answer is written, as a guess.
    lost: bool,
}

impl Framing {
    /// Header lines are kept up to this many bytes: enough for the two fields read.
    const KEPT: usize = 64;

    fn read(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.lost {
            if self.body_left > 0 {
                let n = bytes
                    .len()
                    .min(usize::try_from(self.body_left).unwrap_or(usize::MAX));
                self.body_left -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            let b = bytes[0];
            bytes = &bytes[1..];
            if self.head_bytes == 0 {
                self.line_len = None;
            }
            self.head_bytes += 1;
            if b != b'\n' {
                if self.line.len() < Self::KEPT {
                    self.line.push(b);
                }
                continue;
            }
            let line = self.line.strip_suffix(b"\r").unwrap_or(&self.line);
            let blank = line.is_empty();
            let length = Self::length(line);
            self.line.clear();
            if self.line_len.is_none() {
                if blank {
                    // Blank lines before a request line are skipped, as hyper skips them.
                    self.head_bytes = 0;
                } else {
                    self.line_len = Some(self.head_bytes);
                }
            } else if blank {
                self.end_head();
            } else {
                match length {
                    Some(Some(n)) => self.content_length = n,
                    Some(None) => self.unframed = true,
                    None => {}
                }
            }
        }
    }

    /// What a header line says of the body's length: `Some(Some(n))` for `Content-Length: n`,
    /// `Some(None)` where it cannot be told from one (`Transfer-Encoding`, a length that does
    /// not parse), `None` for any other line.
    fn length(line: &[u8]) -> Option<Option<u64>> {
        let colon = line.iter().position(|&b| b == b':')?;
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") {
            Some(std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()))
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            Some(None)
        } else {
            None
        }
    }

    fn end_head(&mut self) {
        self.lost = self.unframed;
        self.body_left = self.content_length;
        self.head_bytes = 0;
        self.content_length = 0;
        self.unframed = false;
    }

    /// An answer was written: where the body's end could not be told, the bytes read so far
    /// are taken as that request's.
    fn answered(&mut self) {
        if self.lost {
            *self = Framing::default();
        }
    }
}

/// A connection's socket as hyper uses it, watching what goes through:
///
/// - writes fail once they have made no progress for `limit`: a client that stops reading its
///   answers (its receive window full) gives up its connection after `--client-timeout`, as one
///   that stops sending does, instead of holding it for ever;
/// - it follows the requests' heads and bodies through the bytes read ([`Framing`]): how much
///   of a head has arrived, and the length of its first line;
/// - hyper's own answer to a head it cannot parse, a status with no body ([`bare_error_answer`]),
///   is held back, not sent, and the socket is then not shut down.
///
/// Dropped, it hands the socket back to the connection's task with what it saw ([`Returned`]),
/// so that the task can give the answers that hyper gives with no body, or not at all
/// ([`last_word`]).
struct ClientIo {
    /// The socket: `None` only once handed back.
    stream: Option<tokio::net::TcpStream>,
    limit: Duration,
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    framing: Framing,
    held_back: Option<u16>,
    back: Option<tokio::sync::oneshot::Sender<Returned>>,
}

impl ClientIo {
    fn new(
        stream: tokio::net::TcpStream,
        limit: Duration,
    ) -> (ClientIo, tokio::sync::oneshot::Receiver<Returned>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let io = ClientIo {
            stream: Some(stream),
            limit,
            stalled: None,
            framing: Framing::default(),
            held_back: None,
            back: Some(tx),
        };
        (io, rx)
    }

    fn stream(&mut self) -> std::pin::Pin<&mut tokio::net::TcpStream> {
        std::pin::Pin::new(self.stream.as_mut().expect("the socket is ours until dropped"))
    }

    /// `polled` is what a write returned: a write that made progress disarms the timer and
    /// ends the request whose answer it is; one that waits arms the timer, and fails once it
    /// has waited `limit`.
    fn watch(
        &mut self,
        cx: &mut std::task::Context<'_>,
        polled: std::task::Poll<std::io::Result<usize>>,
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        if polled.is_ready() {
            self.stalled = None;
            if let Poll::Ready(Ok(n)) = polled
                && n > 0
            {
                self.framing.answered();
            }
            return polled;
        }
        self.arm(cx).map(|r| r.map(|()| 0))
    }

    /// Poll the stall timer (armed if it was not): an error once it has run out.
    fn arm(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        use std::future::Future;
        use std::task::Poll;
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

impl Drop for ClientIo {
    fn drop(&mut self) {
        if let (Some(stream), Some(back)) = (self.stream.take(), self.back.take()) {
            let _ = back.send(Returned {
                stream,
                head_bytes: self.framing.head_bytes,
                line_len: self.framing.line_len,
                held_back: self.held_back,
            });
        }
    }
}

impl hyper::rt::Read for ClientIo {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let this = self.get_mut();
        // SAFETY: as hyper-util's `TokioIo` reads: tokio's `ReadBuf` writes only initialised
        // bytes into the unfilled part it is given and never de-initialises any, and `advance`
        // moves past the `n` bytes it filled.
        let n = unsafe {
            let mut tbuf = tokio::io::ReadBuf::uninit(buf.as_mut());
            match tokio::io::AsyncRead::poll_read(this.stream(), cx, &mut tbuf) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
            let got = tbuf.filled();
            this.framing.read(got);
            got.len()
        };
        // SAFETY: the `n` bytes were filled, so initialised, above.
        unsafe { buf.advance(n) };
        Poll::Ready(Ok(()))
    }
}

impl hyper::rt::Write for ClientIo {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.held_back.is_some() {
            return std::task::Poll::Ready(Ok(buf.len()));
        }
        if let Some(status) = bare_error_answer(buf) {
            this.held_back = Some(status);
            return std::task::Poll::Ready(Ok(buf.len()));
        }
        let polled = tokio::io::AsyncWrite::poll_write(this.stream(), cx, buf);
        this.watch(cx, polled)
    }
    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let total = bufs.iter().map(|b| b.len()).sum();
        if this.held_back.is_some() {
            return std::task::Poll::Ready(Ok(total));
        }
        let mut filled = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (filled.next(), filled.next())
            && let Some(status) = bare_error_answer(only)
        {
            this.held_back = Some(status);
            return std::task::Poll::Ready(Ok(total));
        }
        let polled = tokio::io::AsyncWrite::poll_write_vectored(this.stream(), cx, bufs);
        this.watch(cx, polled)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream
            .as_ref()
            .is_some_and(tokio::io::AsyncWrite::is_write_vectored)
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let this = self.get_mut();
        if this.held_back.is_some() {
            return Poll::Ready(Ok(()));
        }
        match tokio::io::AsyncWrite::poll_flush(this.stream(), cx) {
            Poll::Ready(r) => {
                this.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => this.arm(cx),
        }
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.held_back.is_some() {
            // The answer held back is written, and the socket closed, by the connection's task.
            return std::task::Poll::Ready(Ok(()));
        }
        tokio::io::AsyncWrite::poll_shutdown(this.stream(), cx)
    }
}

/// What the server says on a connection that hyper let go, if anything: the answers hyper
/// gives with no body (to a head too large or not HTTP) or not at all (to a head that took
/// longer than `--client-timeout`), as JSON errors naming the limit. A connection that was idle
/// when its time ran out (no byte of a next request) is closed without a word.
fn last_word(
    ended: &std::result::Result<(), hyper::Error>,
    seen: &Returned,
    limits: &Limits,
) -> Option<(StatusCode, String)> {
    // hyper counts the request line in the head: a line that long holds a URL over the limit
    // (for any method of up to 20 letters), which is what to tell the client first.
    let long_line = match seen.line_len {
        Some(n) if n > MAX_URL + 32 => Some(n.to_string()),
        Some(_) => None,
        None => Some(format!("over {MAX_HEAD}")),
    };
    let url_too_long = |line: &str| {
        (
            StatusCode::URI_TOO_LONG,
            format!("the request line is {line} bytes long; URLs are limited to {MAX_URL} bytes"),
        )
    };
    match (seen.held_back, long_line) {
        (Some(414 | 431), Some(line)) => Some(url_too_long(&line)),
        (Some(414), None) => Some(url_too_long(&format!("over {MAX_URL}"))),
        (Some(431), None) => Some((
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "the request head is too large: the limits are {MAX_HEADER_FIELDS} header fields, \
                 {MAX_HEADER_BYTES} bytes of headers and {MAX_HEAD} bytes in all"
            ),
        )),
        (Some(_), _) => Some((
            StatusCode::BAD_REQUEST,
            match ended {
                Err(e) => format!("the request is not valid HTTP/1.1: {e}"),
                Ok(()) => "the request is not valid HTTP/1.1".to_string(),
            },
        )),
        (None, _) => match ended {
            Err(e) if e.is_timeout() && seen.head_bytes > 0 => Some((
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request head was not received within {} s (--client-timeout)",
                    limits.client_timeout.as_secs_f64()
                ),
            )),
            _ => None,
        },
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
    // The accept loop runs on a worker, so that a connection it accepts starts on the same
    // thread without waking another.
    runtime.block_on(async {
        tokio::spawn(serve_until_signal(listener, app))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    })
}

async fn serve_until_signal(listener: std::net::TcpListener, app: Shared) -> Result<()> {
    use hyper_util::rt::TokioTimer;
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
                let (io, returned) = ClientIo::new(stream, limits.client_timeout);
                let conn = http.serve_connection(io, service.clone());
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let ended = conn.await;
                    // The connection is dropped: its socket is back, with what it saw.
                    if let Ok(seen) = returned.await
                        && let Some((status, message)) = last_word(&ended, &seen, &limits)
                    {
                        answer_and_close(seen.stream, status, "", &message).await;
                    }
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
    fn only_hyper_s_bare_error_answers_are_held_back() {
        let bare = |status: &str| {
            format!(
                "HTTP/1.1 {status}\r\nconnection: close\r\ncontent-length: 0\r\ndate: Wed, 02 Dec 2026 17:47:39 GMT\r\n\r\n"
            )
        };
        assert_eq!(
            bare_error_answer(bare("431 Request Header Fields Too Large").as_bytes()),
            Some(431)
        );
        assert_eq!(bare_error_answer(bare("414 URI Too Long").as_bytes()), Some(414));
        assert_eq!(bare_error_answer(bare("400 Bad Request").as_bytes()), Some(400));
        assert_eq!(bare_error_answer(bare("200 OK").as_bytes()), None);
        assert_eq!(bare_error_answer(bare("404 Not Found").as_bytes()), None);
        // Ours, with a body, whole or head alone.
        let ours = "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\ncontent-length: 7\r\n\r\n";
        assert_eq!(bare_error_answer(ours.as_bytes()), None);
        assert_eq!(bare_error_answer(format!("{ours}{{\"e\":1}}").as_bytes()), None);
        // A bare head followed by more bytes is not one answer alone.
        let more = format!("{}HTTP/1.1 200 OK\r\n", bare("400 Bad Request"));
        assert_eq!(bare_error_answer(more.as_bytes()), None);
        assert_eq!(bare_error_answer(b"HTTP/1.1 4"), None);
    }

    #[test]
    fn framing_follows_heads_and_bodies_however_the_bytes_are_split() {
        let stream = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\
            POST /api/predict HTTP/1.1\r\ncontent-LENGTH: 5\r\n\r\nab\r\n\n\
            \r\nGET /healthz HTTP/1.1\r\nX-Slow: a";
        let whole = {
            let mut f = Framing::default();
            f.read(stream);
            f
        };
        // The third head: its request line (after a blank line) and 9 bytes of a header.
        assert_eq!((whole.head_bytes, whole.line_len), (23 + 9, Some(23)));
        let mut bytewise = Framing::default();
        for b in stream.chunks(1) {
            bytewise.read(b);
        }
        assert_eq!((bytewise.head_bytes, bytewise.line_len), (32, Some(23)));
        // A head that has all arrived keeps its first line's length until the next head begins
        // (for the answer to a head hyper refuses whole).
        let mut f = Framing::default();
        f.read(b"GET /healthz HTTP/1.1\r\nX-Big: ccc\r\n\r\n");
        assert_eq!((f.head_bytes, f.line_len), (0, Some(23)));
        // Within a body, or between requests, no head has begun.
        let mut f = Framing::default();
        f.read(b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nGET ");
        assert_eq!((f.head_bytes, f.body_left), (0, 0));
        f.read(b"/");
        assert_eq!(f.head_bytes, 1);
        // A chunked body's end is not followed: the next head starts after the next answer.
        let mut f = Framing::default();
        f.read(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
        assert_eq!(f.head_bytes, 0);
        f.answered();
        f.read(b"GET");
        assert_eq!(f.head_bytes, 3);
    }

    #[test]
    fn the_last_word_names_the_limit_and_idle_connections_get_none() {
        let limits = Limits::default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = |head_bytes, line_len, held_back| Returned {
            stream: rt.block_on(tokio::net::TcpStream::connect(addr)).unwrap(),
            head_bytes,
            line_len,
            held_back,
        };
        let ok = Ok(());
        let status = |w: Option<(StatusCode, String)>| w.map(|(s, _)| s.as_u16());
        assert_eq!(last_word(&ok, &seen(0, None, None), &limits), None);
        assert_eq!(
            status(last_word(&ok, &seen(70_000, None, Some(431)), &limits)),
            Some(414)
        );
        assert_eq!(
            status(last_word(&ok, &seen(70_000, Some(5000), Some(431)), &limits)),
            Some(414)
        );
        let (s, message) = last_word(&ok, &seen(70_000, Some(30), Some(431)), &limits).unwrap();
        assert_eq!(s.as_u16(), 431);
        assert!(
            message.contains("65536") && message.contains("100 header fields"),
            "{message}"
        );
        assert_eq!(
            status(last_word(&ok, &seen(20, Some(20), Some(400)), &limits)),
            Some(400)
        );
    }

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
