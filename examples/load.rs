//! A bounded load test of `mnist-mlp serve` on loopback: N requests from C concurrent clients,
//! all driven by one thread (each client sends its next request when its answer is in).
//! Prints requests/s, p50/p99/max latency, unexpected answers, and the server's resident memory
//! (VmRSS) before and after and its peak (VmHWM).
//!
//!   cargo run --release --example load -- URL SERVER_PID [REQUESTS] [CLIENTS] [MODE]
//!
//! MODE:
//! - `keep-alive` (the default): each client keeps its connection; a mix of valid JSON
//!   predictions, valid PNG uploads and malformed bodies (answered 400);
//! - `close`: the same mix, a new connection for every request;
//! - `big`: every request a 2 MB JSON body of a million numbers (answered 400 after 785 of
//!   them), for the server's memory under large bodies.
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// A connection to `addr`: the handle that sends requests; its driver runs as a task.
async fn connect(addr: &str) -> std::io::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    Ok(send)
}

/// One client: `count` requests, one after the other, cycling through `cases` from `first`; a
/// connection kept across requests (`keep-alive`, `big`) or one per request (`close`).
/// Returns the latencies, the unexpected answers, the valid requests and a few examples.
async fn client(
    addr: &str,
    first: usize,
    count: usize,
    cases: &[(&str, Vec<u8>, u16)],
    mode: &str,
) -> (Vec<(usize, Duration)>, usize, usize, Vec<String>) {
    let mut lat = Vec::with_capacity(count);
    let (mut wrong, mut valid, mut examples) = (0, 0, Vec::new());
    let mut conn = None;
    for i in 0..count {
        let case = (first + i) % cases.len();
        let (ct, body, want) = &cases[case];
        let t = Instant::now();
        let status: Result<u16, String> = async {
            let send = match &mut conn {
                Some(s) if mode != "close" && !hyper::client::conn::http1::SendRequest::is_closed(s) => s,
                _ => conn.insert(connect(addr).await.map_err(|e| format!("connect: {e}"))?),
            };
            send.ready().await.map_err(|e| format!("{e}"))?;
            let mut req = hyper::Request::post("/api/predict")
                .header("Host", addr)
                .header("Content-Type", *ct);
            if mode == "close" {
                req = req.header("Connection", "close");
            }
            let req = req
                .body(Full::new(Bytes::copy_from_slice(body)))
                .expect("a request");
            let res = send.send_request(req).await.map_err(|e| format!("{e}"))?;
            let closing = res
                .headers()
                .get("connection")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
            let status = res.status().as_u16();
            res.into_body().collect().await.map_err(|e| format!("{e}"))?;
            if closing {
                conn = None;
            }
            Ok(status)
        }
        .await;
        lat.push((case, t.elapsed()));
        if status.is_err() {
            conn = None;
        }
        if *want == 200 {
            valid += 1;
        }
        if !matches!(status, Ok(s) if s == *want) {
            wrong += 1;
            if examples.len() < 3 {
                examples.push(format!("{status:?} (expected {want})"));
            }
        }
    }
    (lat, wrong, valid, examples)
}

/// The latency at fraction `p` (0–1) of `sorted`, in milliseconds.
fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)].as_secs_f64() * 1e3
}

fn proc_kb(pid: &str, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: load URL SERVER_PID [REQUESTS] [CLIENTS] [keep-alive|close|big]");
        std::process::exit(2);
    }
    let (url, pid) = (args[1].clone(), args[2].clone());
    let total: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(60_000);
    let clients: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(32).max(1);
    let asked = args.get(5).map(String::as_str).unwrap_or("keep-alive");
    let Some(mode) = ["keep-alive", "close", "big"].into_iter().find(|m| *m == asked) else {
        eprintln!("MODE is '{asked}'; expected keep-alive, close or big");
        std::process::exit(2);
    };
    let addr = url
        .strip_prefix("http://")
        .unwrap_or_else(|| {
            eprintln!("URL is '{url}'; expected http://HOST:PORT");
            std::process::exit(2);
        })
        .trim_end_matches('/')
        .to_string();

    let mut pixels = vec![0.0f32; 784];
    for r in 4..24 {
        for c in 12..16 {
            pixels[r * 28 + c] = 1.0;
        }
    }
    let valid_json = serde_json::json!({ "pixels": pixels }).to_string();
    let mut img = image::GrayImage::from_pixel(120, 120, image::Luma([255]));
    for y in 20..100 {
        for x in 55..65 {
            img.put_pixel(x, y, image::Luma([0]));
        }
    }
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png).unwrap();
    let png = png.into_inner();
    // (content type, body, expected status)
    let cases: Vec<(&str, Vec<u8>, u16)> = if mode == "big" {
        let mut big = String::from("{\"pixels\": [");
        big.push_str(&"0,".repeat(999_999));
        big.push_str("0]}");
        vec![("application/json", big.into_bytes(), 400)]
    } else {
        vec![
            ("application/json", valid_json.clone().into_bytes(), 200),
            ("application/json", valid_json.into_bytes(), 200),
            ("image/png", png, 200),
            ("application/json", br#"{"pixels": [1, 2, 3]}"#.to_vec(), 400),
            ("application/json", b"{not json".to_vec(), 400),
            ("image/png", b"GIF89a but not really".to_vec(), 400),
        ]
    };

    let before = proc_kb(&pid, "VmRSS:");
    let started = Instant::now();
    let per_client = total / clients;
    // One thread drives every connection (as `ab` and `wrk` do), so that on a machine with few
    // cores the client's own threads do not queue for them and the latencies are the server's.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let cases = std::sync::Arc::new(cases);
    let results: Vec<(Vec<(usize, Duration)>, usize, usize, Vec<String>)> = runtime.block_on(async {
        let tasks: Vec<_> = (0..clients)
            .map(|c| {
                let cases = cases.clone();
                let addr = addr.clone();
                tokio::spawn(async move { client(&addr, c, per_client, &cases, mode).await })
            })
            .collect();
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.expect("a client task"));
        }
        results
    });
    let elapsed = started.elapsed().as_secs_f64();
    let after = proc_kb(&pid, "VmRSS:");
    let peak = proc_kb(&pid, "VmHWM:");
    let timed: Vec<(usize, Duration)> = results.iter().flat_map(|r| r.0.iter().copied()).collect();
    let mut lat: Vec<Duration> = timed.iter().map(|t| t.1).collect();
    lat.sort();
    let wrong: usize = results.iter().map(|r| r.1).sum();
    let valid: usize = results.iter().map(|r| r.2).sum();
    let q = |p: f64| percentile_ms(&lat, p);
    let kb = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or("?".into());
    println!(
        "{mode}: {} requests ({valid} valid, {} refused as they should be) from {clients} clients in \
         {elapsed:.2} s: {:.0} requests/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; \
         unexpected answers: {wrong}; server RSS {} → {} kB, peak (VmHWM) {} kB",
        lat.len(),
        lat.len() - valid,
        lat.len() as f64 / elapsed,
        q(0.5),
        q(0.99),
        q(1.0),
        kb(before),
        kb(after),
        kb(peak),
    );
    // The same percentiles for each kind of request.
    let kind = |case: usize| match &cases[case] {
        (_, _, s) if *s != 200 => "refused",
        (ct, _, _) if ct.starts_with("image/") => "picture",
        _ => "pixels",
    };
    let mut kinds: Vec<&str> = (0..cases.len()).map(kind).collect();
    kinds.dedup();
    let by_kind: Vec<String> = kinds
        .iter()
        .map(|k| {
            let mut l: Vec<Duration> = timed.iter().filter(|t| kind(t.0) == *k).map(|t| t.1).collect();
            l.sort();
            let q = |p: f64| percentile_ms(&l, p);
            format!(
                "{k} ({}) p50 {:.2} p99 {:.2} max {:.2} ms",
                l.len(),
                q(0.5),
                q(0.99),
                q(1.0)
            )
        })
        .collect();
    println!("  by kind: {}", by_kind.join("; "));
    for e in results.iter().flat_map(|r| r.3.iter()).take(5) {
        println!("  unexpected: {e}");
    }
    if wrong > 0 {
        std::process::exit(1);
    }
}
