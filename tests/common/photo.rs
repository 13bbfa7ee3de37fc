//! Photo-like pictures of handwritten digits, generated deterministically from a seed: a digit's
//! strokes (the skeleton of an MNIST test image, or a hand-made polyline digit) re-drawn with a
//! pen of any width onto a large canvas of light grey paper, with paper texture, sensor noise, a
//! lighting gradient, a soft shadow, dust specks, sometimes the table beyond the paper's edge,
//! off-centre, rotated by up to ±12°, in coloured ink, blurred and passed through JPEG.
//!
//! Shared by tests/photos.rs and examples/photo_set.rs (`#[path]`), so that the numbers the
//! example reports come from the same pictures the tests check.
#![allow(dead_code)]

use image::{DynamicImage, RgbImage};
use mnist_mlp::rng::Rng;

/// Side of the design grid on which a digit's skeleton lives (10× MNIST's 28).
pub const DESIGN: usize = 280;

/// A digit's strokes as one-pixel-wide segments on the design grid: (x0, y0, x1, y1).
#[derive(Clone, Debug)]
pub struct Strokes {
    pub segments: Vec<[f32; 4]>,
}

/// The skeleton of a 28×28 grey digit (0–255, white on black): upscaled 10× bilinearly,
/// thresholded at half level, thinned to one pixel (Zhang–Suen), and each skeleton pixel joined
/// to its 8-neighbours.
pub fn strokes_from_mnist(img28: &[u8]) -> Strokes {
    assert_eq!(img28.len(), 28 * 28);
    let n = DESIGN;
    let at = |x: isize, y: isize| -> f32 {
        if (0..28).contains(&x) && (0..28).contains(&y) {
            f32::from(img28[y as usize * 28 + x as usize]) / 255.0
        } else {
            0.0
        }
    };
    let mut mask = vec![false; n * n];
    for y in 0..n {
        for x in 0..n {
            let sx = (x as f32 + 0.5) / 10.0 - 0.5;
            let sy = (y as f32 + 0.5) / 10.0 - 0.5;
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            let (x0, y0) = (x0 as isize, y0 as isize);
            let v = (1.0 - fy) * ((1.0 - fx) * at(x0, y0) + fx * at(x0 + 1, y0))
                + fy * ((1.0 - fx) * at(x0, y0 + 1) + fx * at(x0 + 1, y0 + 1));
            mask[y * n + x] = v > 0.5;
        }
    }
    thin(&mut mask, n, n);
    let mut segments = Vec::new();
    for y in 1..n - 1 {
        for x in 1..n - 1 {
            if !mask[y * n + x] {
                continue;
            }
            let mut alone = true;
            // Each pair once: the neighbours after this pixel in raster order.
            for (dx, dy) in [(1isize, 0isize), (-1, 1), (0, 1), (1, 1)] {
                let (x1, y1) = ((x as isize + dx) as usize, (y as isize + dy) as usize);
                if mask[y1 * n + x1] {
                    segments.push([x as f32, y as f32, x1 as f32, y1 as f32]);
                    alone = false;
                }
            }
            if alone {
                segments.push([x as f32, y as f32, x as f32, y as f32]);
            }
        }
    }
    Strokes { segments }
}

/// Zhang–Suen thinning of a binary image, in place.
fn thin(m: &mut [bool], w: usize, h: usize) {
    loop {
        let mut changed = false;
        for step in 0..2 {
            let mut remove = Vec::new();
            for y in 1..h - 1 {
                for x in 1..w - 1 {
                    if !m[y * w + x] {
                        continue;
                    }
                    let p = |dx: isize, dy: isize| {
                        m[(y as isize + dy) as usize * w + (x as isize + dx) as usize] as u8
                    };
                    // p2..p9: N, NE, E, SE, S, SW, W, NW.
                    let nb = [
                        p(0, -1),
                        p(1, -1),
                        p(1, 0),
                        p(1, 1),
                        p(0, 1),
                        p(-1, 1),
                        p(-1, 0),
                        p(-1, -1),
                    ];
                    let b: u8 = nb.iter().sum();
                    let a = (0..8).filter(|&i| nb[i] == 0 && nb[(i + 1) % 8] == 1).count();
                    let (p2, p4, p6, p8) = (nb[0], nb[2], nb[4], nb[6]);
                    let ok = if step == 0 {
                        p2 * p4 * p6 == 0 && p4 * p6 * p8 == 0
                    } else {
                        p2 * p4 * p8 == 0 && p2 * p6 * p8 == 0
                    };
                    if (2..=6).contains(&b) && a == 1 && ok {
                        remove.push(y * w + x);
                    }
                }
            }
            changed |= !remove.is_empty();
            for i in remove {
                m[i] = false;
            }
        }
        if !changed {
            break;
        }
    }
}

/// Hand-made polyline strokes of `digit` (0–9), for tests that must not need MNIST: each digit
/// drawn as a person would, in the central 200×200 of the design grid.
pub fn strokes_drawn(digit: usize) -> Strokes {
    use std::f32::consts::PI;
    type Path = Vec<(f32, f32)>;
    let arc = |cx: f32, cy: f32, rx: f32, ry: f32, a0: f32, a1: f32| -> Path {
        (0..=24)
            .map(|i| {
                let a = a0 + (a1 - a0) * i as f32 / 24.0;
                (cx + rx * a.cos(), cy + ry * a.sin())
            })
            .collect()
    };
    let line = |p: &[(f32, f32)]| -> Path { p.to_vec() };
    // Unit box: x right, y down, 0–1; angles clockwise from +x (y is down).
    let paths: Vec<Path> = match digit {
        0 => vec![arc(0.5, 0.5, 0.28, 0.44, 0.0, 2.0 * PI)],
        1 => vec![line(&[(0.35, 0.22), (0.58, 0.05), (0.52, 0.95)])],
        2 => {
            let mut p = arc(0.5, 0.3, 0.28, 0.24, PI * 1.05, PI * 2.25);
            p.extend([(0.18, 0.94), (0.85, 0.94)]);
            vec![p]
        }
        3 => {
            let mut p = arc(0.48, 0.27, 0.27, 0.22, PI * 1.1, PI * 2.5);
            p.extend(arc(0.48, 0.72, 0.31, 0.23, -PI * 0.5, PI * 0.85));
            vec![p]
        }
        4 => vec![line(&[(0.62, 0.95), (0.62, 0.05), (0.12, 0.66), (0.88, 0.66)])],
        5 => {
            let mut p = line(&[(0.8, 0.06), (0.3, 0.06), (0.26, 0.45)]);
            p.extend(arc(0.5, 0.67, 0.3, 0.27, -PI * 0.8, PI * 0.8));
            vec![p]
        }
        6 => {
            let mut p = arc(0.62, 0.55, 0.4, 0.5, -PI * 0.6, -PI);
            p.extend(arc(0.5, 0.7, 0.28, 0.25, PI, 3.0 * PI));
            vec![p]
        }
        7 => vec![line(&[(0.15, 0.06), (0.85, 0.06), (0.4, 0.95)])],
        8 => vec![
            arc(0.5, 0.27, 0.24, 0.22, 0.0, 2.0 * PI),
            arc(0.5, 0.71, 0.29, 0.24, 0.0, 2.0 * PI),
        ],
        9 => {
            let mut p = arc(0.48, 0.3, 0.27, 0.25, 0.0, 2.0 * PI);
            p.extend([(0.72, 0.5), (0.68, 0.95)]);
            vec![p]
        }
        _ => panic!("digit {digit}"),
    };
    let to_design = |(u, v): (f32, f32)| (40.0 + 200.0 * (0.15 + 0.7 * u), 40.0 + 200.0 * v);
    let mut segments = Vec::new();
    for p in paths {
        for w in p.windows(2) {
            let (a, b) = (to_design(w[0]), to_design(w[1]));
            segments.push([a.0, a.1, b.0, b.1]);
        }
    }
    Strokes { segments }
}

/// The pen a digit is written with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pen {
    /// 1–2 canvas pixels wide.
    Thin,
    /// 3–7 pixels.
    Ballpoint,
    /// 9–20% of the digit's height: a felt marker.
    Marker,
}

/// Everything random about one photo, drawn from a seed.
#[derive(Clone, Debug)]
pub struct Scene {
    pub width: usize,
    pub height: usize,
    /// Digit height on the canvas (its design box of 280 maps to this × 280/200).
    pub digit_px: f32,
    pub centre: (f32, f32),
    /// Radians.
    pub rotation: f32,
    pub pen: Pen,
    /// Full stroke width in canvas pixels.
    pub pen_width: f32,
    pub ink: [f32; 3],
    pub paper: [f32; 3],
    /// Strength of the light's fall-off across the page, and its direction.
    pub gradient: f32,
    pub gradient_dir: f32,
    /// A soft shadow: a half-plane through `shadow_at` at angle `shadow_dir`, darkening by
    /// `shadow` (0 = none).
    pub shadow: f32,
    pub shadow_at: (f32, f32),
    pub shadow_dir: f32,
    pub shadow_soft: f32,
    /// The table beyond the paper along one side: (side 0–3, depth in pixels); none when 0.
    pub table: (usize, f32),
    pub specks: usize,
    pub noise: f32,
    pub blur: f32,
    pub jpeg_quality: u8,
    pub seed: u64,
}

impl Scene {
    /// A random scene for picture `index` of a set made with `seed`; the pen cycles thin,
    /// ballpoint, marker so that every set holds all three.
    pub fn random(seed: u64, index: u64) -> Scene {
        let mut r = Rng::new(seed, 1000 + index);
        let portrait = r.below(4) == 0;
        let (width, height) = if portrait { (900, 1200) } else { (1200, 900) };
        let digit_px = r.uniform(160.0, 420.0) as f32;
        let margin = digit_px * 0.75;
        let centre = (
            r.uniform(f64::from(margin), width as f64 - f64::from(margin)) as f32,
            r.uniform(f64::from(margin), height as f64 - f64::from(margin)) as f32,
        );
        let pen = match index % 3 {
            0 => Pen::Thin,
            1 => Pen::Ballpoint,
            _ => Pen::Marker,
        };
        let pen_width = match pen {
            Pen::Thin => r.uniform(1.0, 2.0) as f32,
            Pen::Ballpoint => r.uniform(3.0, 7.0) as f32,
            Pen::Marker => digit_px * r.uniform(0.09, 0.2) as f32,
        };
        let inks = [
            [0.08, 0.08, 0.1],  // black
            [0.1, 0.15, 0.55],  // blue
            [0.55, 0.08, 0.1],  // red
            [0.08, 0.35, 0.15], // green
            [0.3, 0.3, 0.32],   // pencil grey
        ];
        let ink = inks[r.below(inks.len() as u64) as usize];
        let base = r.uniform(0.72, 0.93) as f32;
        let tint = [
            r.uniform(-0.03, 0.03) as f32,
            r.uniform(-0.03, 0.03) as f32,
            r.uniform(-0.05, 0.0) as f32,
        ];
        Scene {
            width,
            height,
            digit_px,
            centre,
            rotation: r.uniform(-12.0, 12.0).to_radians() as f32,
            pen,
            pen_width,
            ink,
            paper: [base + tint[0], base + tint[1], base + tint[2]],
            gradient: r.uniform(0.1, 0.4) as f32,
            gradient_dir: r.uniform(0.0, std::f64::consts::TAU) as f32,
            shadow: if r.below(3) > 0 {
                r.uniform(0.2, 0.45) as f32
            } else {
                0.0
            },
            shadow_at: (
                r.uniform(0.0, width as f64) as f32,
                r.uniform(0.0, height as f64) as f32,
            ),
            shadow_dir: r.uniform(0.0, std::f64::consts::TAU) as f32,
            shadow_soft: r.uniform(10.0, 80.0) as f32,
            table: if r.below(3) == 0 {
                (r.below(4) as usize, r.uniform(20.0, 90.0) as f32)
            } else {
                (0, 0.0)
            },
            specks: r.below(12) as usize,
            noise: r.uniform(0.01, 0.035) as f32,
            blur: r.uniform(0.4, 1.4) as f32,
            jpeg_quality: r.uniform(55.0, 92.0) as u8,
            seed: seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        }
    }

    /// The same geometry drawn cleanly: black ink of MNIST's relative width on white, no light,
    /// noise, blur or JPEG. What the photo would look like as a drawing.
    pub fn clean(&self) -> Scene {
        Scene {
            pen: Pen::Marker,
            pen_width: self.digit_px * 0.13,
            ink: [0.0; 3],
            paper: [1.0; 3],
            gradient: 0.0,
            shadow: 0.0,
            table: (0, 0.0),
            specks: 0,
            noise: 0.0,
            blur: 0.0,
            jpeg_quality: 0,
            ..self.clone()
        }
    }
}

/// Ink coverage (0–1) of `strokes` drawn per `scene`, on the canvas: each segment mapped from
/// the design grid (scaled, rotated, moved) and stamped with an anti-aliased round pen.
fn ink_coverage(strokes: &Strokes, s: &Scene) -> Vec<f32> {
    let (w, h) = (s.width, s.height);
    let mut cov = vec![0.0f32; w * h];
    let scale = s.digit_px / 200.0;
    let (sin, cos) = s.rotation.sin_cos();
    let half = DESIGN as f32 / 2.0;
    let map = |x: f32, y: f32| {
        let (dx, dy) = ((x - half) * scale, (y - half) * scale);
        (s.centre.0 + cos * dx - sin * dy, s.centre.1 + sin * dx + cos * dy)
    };
    let r = s.pen_width / 2.0;
    for seg in &strokes.segments {
        let (ax, ay) = map(seg[0], seg[1]);
        let (bx, by) = map(seg[2], seg[3]);
        let (x0, x1) = (
            (ax.min(bx) - r - 2.0).max(0.0) as usize,
            ((ax.max(bx) + r + 2.0) as usize).min(w - 1),
        );
        let (y0, y1) = (
            (ay.min(by) - r - 2.0).max(0.0) as usize,
            ((ay.max(by) + r + 2.0) as usize).min(h - 1),
        );
        let (ex, ey) = (bx - ax, by - ay);
        let len2 = ex * ex + ey * ey;
        for y in y0..=y1 {
            for x in x0..=x1 {
                let (px, py) = (x as f32 + 0.5 - ax, y as f32 + 0.5 - ay);
                let t = if len2 > 0.0 {
                    ((px * ex + py * ey) / len2).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let (qx, qy) = (px - t * ex, py - t * ey);
                let d = (qx * qx + qy * qy).sqrt();
                // A pen narrower than a pixel leaves a fainter line, as it does on a sensor.
                let c = (r + 0.5 - d).clamp(0.0, 1.0).min(2.0 * r);
                let i = y * w + x;
                cov[i] = cov[i].max(c);
            }
        }
    }
    cov
}

/// Smooth random field in about ±1 with features of `cell` pixels (bilinear value noise).
fn value_noise(w: usize, h: usize, cell: f32, r: &mut Rng) -> Vec<f32> {
    let gw = (w as f32 / cell) as usize + 2;
    let gh = (h as f32 / cell) as usize + 2;
    let grid: Vec<f32> = (0..gw * gh).map(|_| r.uniform(-1.0, 1.0) as f32).collect();
    let mut out = vec![0.0; w * h];
    for y in 0..h {
        let gy = y as f32 / cell;
        let (y0, fy) = (gy as usize, gy.fract());
        for x in 0..w {
            let gx = x as f32 / cell;
            let (x0, fx) = (gx as usize, gx.fract());
            let g = |i: usize, j: usize| grid[j * gw + i];
            out[y * w + x] = (1.0 - fy) * ((1.0 - fx) * g(x0, y0) + fx * g(x0 + 1, y0))
                + fy * ((1.0 - fx) * g(x0, y0 + 1) + fx * g(x0 + 1, y0 + 1));
        }
    }
    out
}

/// Separable Gaussian blur of one channel, in place.
fn blur(c: &mut [f32], w: usize, h: usize, sigma: f32) {
    if sigma <= 0.0 {
        return;
    }
    let rad = (3.0 * sigma).ceil() as isize;
    let k: Vec<f32> = (-rad..=rad)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f32 = k.iter().sum();
    let k: Vec<f32> = k.iter().map(|v| v / sum).collect();
    let mut tmp = vec![0.0; w * h];
    for y in 0..h {
        for x in 0..w {
            let mut acc = 0.0;
            for (j, kv) in k.iter().enumerate() {
                let xx = (x as isize + j as isize - rad).clamp(0, w as isize - 1) as usize;
                acc += kv * c[y * w + xx];
            }
            tmp[y * w + x] = acc;
        }
    }
    for y in 0..h {
        for x in 0..w {
            let mut acc = 0.0;
            for (j, kv) in k.iter().enumerate() {
                let yy = (y as isize + j as isize - rad).clamp(0, h as isize - 1) as usize;
                acc += kv * tmp[yy * w + x];
            }
            c[y * w + x] = acc;
        }
    }
}

/// The picture of `strokes` per `scene`, as an RGB image, JPEG-round-tripped at the scene's
/// quality unless it is 0.
pub fn render(strokes: &Strokes, s: &Scene) -> DynamicImage {
    let img = render_raw(strokes, s);
    if s.jpeg_quality == 0 {
        return img;
    }
    image::load_from_memory(&jpeg_bytes(&img, s.jpeg_quality)).expect("decoding our own JPEG")
}

/// [`render`] before the JPEG round trip.
pub fn render_raw(strokes: &Strokes, s: &Scene) -> DynamicImage {
    let (w, h) = (s.width, s.height);
    let mut r = Rng::new(s.seed, 7);
    let mut alpha = ink_coverage(strokes, s);
    // Dust: small dark dots anywhere on the page.
    for _ in 0..s.specks {
        let (cx, cy) = (r.uniform(0.0, w as f64) as f32, r.uniform(0.0, h as f64) as f32);
        let rad = r.uniform(0.7, 3.0) as f32;
        for y in (cy - rad - 1.0).max(0.0) as usize..((cy + rad + 2.0) as usize).min(h) {
            for x in (cx - rad - 1.0).max(0.0) as usize..((cx + rad + 2.0) as usize).min(w) {
                let d = ((x as f32 + 0.5 - cx).powi(2) + (y as f32 + 0.5 - cy).powi(2)).sqrt();
                let i = y * w + x;
                alpha[i] = alpha[i].max((rad + 0.5 - d).clamp(0.0, 1.0) * 0.8);
            }
        }
    }
    let texture = if s.noise > 0.0 {
        value_noise(w, h, 30.0, &mut r)
    } else {
        vec![0.0; w * h]
    };
    let (gs, gc) = s.gradient_dir.sin_cos();
    let diag = ((w * w + h * h) as f32).sqrt();
    let (ss, sc) = s.shadow_dir.sin_cos();
    let mut chans = vec![vec![0.0f32; w * h]; 3];
    let table = [0.25, 0.2, 0.17];
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
            let t = ((fx - w as f32 / 2.0) * gc + (fy - h as f32 / 2.0) * gs) / diag;
            let mut light = 1.0 - s.gradient * (t + 0.5);
            if s.shadow > 0.0 {
                let d = (fx - s.shadow_at.0) * sc + (fy - s.shadow_at.1) * ss;
                let inside = 1.0 / (1.0 + (-d / s.shadow_soft * 4.0).exp());
                light *= 1.0 - s.shadow * inside;
            }
            let beyond = match s.table {
                (_, d) if d <= 0.0 => false,
                (0, d) => fx < d,
                (1, d) => fx > w as f32 - d,
                (2, d) => fy < d,
                (_, d) => fy > h as f32 - d,
            };
            for c in 0..3 {
                let paper = if beyond {
                    table[c]
                } else {
                    s.paper[c] + 0.025 * texture[i]
                };
                let v = paper * (1.0 - alpha[i]) + s.ink[c] * alpha[i];
                chans[c][i] = v * light;
            }
        }
    }
    for ch in chans.iter_mut() {
        blur(ch, w, h, s.blur);
        if s.noise > 0.0 {
            for v in ch.iter_mut() {
                *v += s.noise * r.normal() as f32;
            }
        }
    }
    let mut img = RgbImage::new(w as u32, h as u32);
    for (i, p) in img.pixels_mut().enumerate() {
        for c in 0..3 {
            p.0[c] = (chans[c][i].clamp(0.0, 1.0) * 255.0).round() as u8;
        }
    }
    DynamicImage::ImageRgb8(img)
}

/// The JPEG bytes of a picture at `quality` (1–100).
pub fn jpeg_bytes(img: &DynamicImage, quality: u8) -> Vec<u8> {
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality.max(1))
        .encode_image(&img.to_rgb8())
        .expect("encoding into memory");
    bytes
}
