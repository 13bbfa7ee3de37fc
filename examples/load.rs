//! A bounded load test of `mnist-mlp serve` on loopback: N requests from C concurrent clients,
//! a mix of valid JSON predictions, valid PNG uploads and malformed bodies. Prints requests/s,
//! p50/p99 latency, failures, and the server's resident memory before and after.
//!
//!   cargo run --release --example load -- URL SERVER_PID [REQUESTS] [CLIENTS]
use std::time::{Duration, Instant};

fn rss_kb(pid: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (url, pid) = (args[1].clone(), args[2].clone());
    let total: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let clients: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(32);
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
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("application/json", valid_json.clone().into_bytes(), 200),
        ("application/json", valid_json.into_bytes(), 200),
        ("image/png", png, 200),
        ("application/json", br#"{"pixels": [1, 2, 3]}"#.to_vec(), 400),
        ("application/json", b"{not json".to_vec(), 400),
        ("image/png", b"GIF89a but not really".to_vec(), 400),
    ];

    let before = rss_kb(&pid);
    let started = Instant::now();
    let per_client = total / clients;
    let results: Vec<(Vec<Duration>, usize, usize)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let (cases, predict) = (&cases, &predict);
                s.spawn(move || {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .build()
                        .into();
                    let (mut lat, mut wrong, mut valid) = (Vec::with_capacity(per_client), 0, 0);
                    for i in 0..per_client {
                        let (ct, body, want) = &cases[(c + i) % cases.len()];
                        let t = Instant::now();
                        let status = agent
                            .post(predict.as_str())
                            .header("Content-Type", *ct)
                            .send(&body[..])
                            .map(|mut r| {
                                let _ = r.body_mut().read_to_vec();
                                r.status().as_u16()
                            })
                            .unwrap_or(0);
                        lat.push(t.elapsed());
                        if *want == 200 {
                            valid += 1;
                        }
                        if status != *want {
                            wrong += 1;
                        }
                    }
                    (lat, wrong, valid)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let after = rss_kb(&pid);
    let mut lat: Vec<Duration> = results.iter().flat_map(|r| r.0.iter().copied()).collect();
    lat.sort();
    let wrong: usize = results.iter().map(|r| r.1).sum();
    let valid: usize = results.iter().map(|r| r.2).sum();
    let q = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1e3;
    println!(
        "{} requests ({valid} valid, {} malformed) from {clients} clients in {elapsed:.2} s: {:.0} requests/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; unexpected answers: {wrong}; server RSS {} → {} kB",
        lat.len(),
        lat.len() - valid,
        lat.len() as f64 / elapsed,
        q(0.5),
        q(0.99),
        q(1.0),
        before.map(|v| v.to_string()).unwrap_or("?".into()),
        after.map(|v| v.to_string()).unwrap_or("?".into()),
    );
    if wrong > 0 {
        std::process::exit(1);
    }
}
