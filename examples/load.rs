//! A bounded load test of `mnist-mlp serve` on loopback: N requests from C concurrent clients.
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
use std::time::{Duration, Instant};

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
    let mode = args.get(5).map(String::as_str).unwrap_or("keep-alive");
    if !["keep-alive", "close", "big"].contains(&mode) {
        eprintln!("MODE is '{mode}'; expected keep-alive, close or big");
        std::process::exit(2);
    }
    let predict = format!("{url}/api/predict");

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
    let results: Vec<(Vec<Duration>, usize, usize, Vec<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let (cases, predict) = (&cases, &predict);
                s.spawn(move || {
                    let idle = if mode == "close" { 0 } else { 1 };
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .max_idle_connections(idle)
                        .max_idle_connections_per_host(idle)
                        .timeout_global(Some(Duration::from_secs(30)))
                        .build()
                        .into();
                    let mut lat = Vec::with_capacity(per_client);
                    let (mut wrong, mut valid, mut examples) = (0, 0, Vec::new());
                    for i in 0..per_client {
                        let (ct, body, want) = &cases[(c + i) % cases.len()];
                        let t = Instant::now();
                        let mut req = agent.post(predict.as_str()).header("Content-Type", *ct);
                        if mode == "close" {
                            req = req.header("Connection", "close");
                        }
                        let status = req.send(&body[..]).map(|mut r| {
                            let _ = r.body_mut().read_to_vec();
                            r.status().as_u16()
                        });
                        lat.push(t.elapsed());
                        if *want == 200 {
                            valid += 1;
                        }
                        let ok = matches!(status, Ok(s) if s == *want);
                        if !ok {
                            wrong += 1;
                            if examples.len() < 3 {
                                examples.push(format!("{status:?} (expected {want})"));
                            }
                        }
                    }
                    (lat, wrong, valid, examples)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let after = proc_kb(&pid, "VmRSS:");
    let peak = proc_kb(&pid, "VmHWM:");
    let mut lat: Vec<Duration> = results.iter().flat_map(|r| r.0.iter().copied()).collect();
    lat.sort();
    let wrong: usize = results.iter().map(|r| r.1).sum();
    let valid: usize = results.iter().map(|r| r.2).sum();
    let q = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1e3;
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
    for e in results.iter().flat_map(|r| r.3.iter()).take(5) {
        println!("  unexpected: {e}");
    }
    if wrong > 0 {
        std::process::exit(1);
    }
}
