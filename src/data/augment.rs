//! On-the-fly data augmentation of 28×28 training images: a random affine map (shift, rotation,
//! scale, shear) and a random elastic distortion, composed into one displacement per output
//! pixel and sampled once, bilinearly, with zero outside the field.
//!
//! **Elastic distortion** is Simard, Steinkraus & Platt (2003), "Best practices for
//! convolutional neural networks applied to visual document analysis", §2: two random fields
//! Δx, Δy, uniform in [−1, 1] at every pixel, each convolved with a Gaussian of standard
//! deviation σ pixels and multiplied by α (they used σ = 4, α = 34 on MNIST). Every output
//! pixel (x, y) then takes the source's value at (x + Δx, y + Δy).
//!
//! That field is a linear function of white noise, so all of its statistics are set by its
//! covariance, `Cov(Δ(p), Δ(p + d)) = α²/3 · Σ_q g(q) g(q + d)`, a Gaussian in d of standard
//! deviation σ√2 (g is the 2-D Gaussian kernel). Per component, `Var Δ = α²/(3 · 4πσ²)`: for
//! α = 34, σ = 4 the standard deviation is 1.384 px, the mean |Δx| is 1.104 px (×√(2/π)) and the
//! mean length of the displacement is 1.735 px (×√(π/2), Rayleigh).
//!
//! **How we make it fast.** Done literally, the field costs 1568 random numbers and, even with
//! a separable blur cut at 3σ (25 taps for σ = 4), ~80 k multiply-adds per image: several times
//! the budget of ~5 µs per image (a training step spends ~15 µs per image). Instead, the noise
//! is drawn on a coarse grid of cells spaced b = σ apart (12 × 12 cells for σ = 4, reaching 3σ
//! beyond the image), one uniform value per cell in [−b, b] — the variance b²/3 of the sum of
//! the b² pixel values that a cell stands for — and the Gaussian is evaluated at the cell
//! centres: `Δ(p) = α Σ_cells g(p − c) · u_c`. That is separable, so a field is two small
//! matrix products, `α Wy · U · (b Wx)ᵀ` (~9 k multiply-adds on 28-wide rows that LLVM
//! vectorises; Wy banded), from 144 random numbers of 16 bits each.
//!
//! This sums the same Gaussian at spacing b instead of 1. By Poisson summation, the covariance
//! it gives differs from the per-pixel one by a relative ~2·exp(−π²σ²/b²) = 1e-4 at b = σ,
//! wherever p sits between cell centres: the field has Simard's covariance, and so his
//! smoothness and magnitude. What changes is the marginal distribution: each Δ is a weighted
//! sum of ~4π ≈ 13 uniforms instead of ~4πσ² ≈ 200, a little less heavy-tailed than his
//! (nearly Gaussian) one; the mean |Δx| comes out ~1 % above the Gaussian value for the same
//! standard deviation. At σ = 1 the cells are the pixels and this is Simard's definition. Simard
//! does not say what happens at the border; here the noise extends beyond the image, so the
//! field is stationary: a stroke near the edge is distorted as much as one in the middle.
//! The tests check standard deviation, mean |Δx|, lag-4 correlation and stationarity against
//! the numbers above, and the numbers against a literal per-pixel implementation.
//!
//! Measured with `cargo run --release --example augment_speed` on one core of the 2-core
//! development machine: ~1.7 µs per image for the affine map, ~3.1 µs with the elastic field.
//! The warp does everything but its four loads per pixel in vectorised passes over rows.
//!
//! **Affine part.** Shift, rotation angle, scale and horizontal shear angle are each drawn
//! uniformly in `[−max, max]` (scale as `1 ± max`); the image content is mapped about the centre
//! of the field, (13.5, 13.5). The elastic displacement is added in source coordinates, so one
//! output pixel reads the source at `A⁻¹(p) + Δ(p)`.
//!
//! [`Augmenter::apply`] separates the random draw (`Transform::draw`, `Elastic::draw`) from the
//! deterministic warp (`warp`, which the tests call with fixed transforms); the same RNG state
//! gives the same output bits.

use crate::error::{Error, Result};
use crate::preprocess::{PIXELS, SIDE};
use crate::rng::Rng;
use std::fmt;
use std::str::FromStr;

/// Elastic σ when `elastic=ALPHA` gives none: Simard's.
pub const DEFAULT_SIGMA: f32 = 4.0;
/// The elastic kernel is cut at this many σ.
const CUTOFF_SIGMAS: f32 = 3.0;
/// Width and height of the zero-padded source: pixel (r, c) is at (r + 1, c + 1), and a
/// bilinear sample at a clamped coordinate in [−1, SIDE] reads at most index SIDE + 1.
const PAD: usize = 32;
/// Length of the padded source buffer: PAD² and slack, so that a pair read at any index below
/// PAD² (the mask in [`warp`]) is in bounds.
const PADDED: usize = PAD * PAD + PAD + 2;
type Padded = [f32; PADDED];
/// The centre of the field in pixel indices, about which rotation, scale and shear act.
const CENTRE: f32 = (SIDE as f32 - 1.0) / 2.0;

/// What to draw for each training image; zero turns a component off. Parsed from and printed as
/// `shift=2,rotate=15,scale=0.1,shear=10,elastic=34:4` (or `none`).
#[derive(Clone, Debug, PartialEq)]
pub struct Augment {
    /// Largest shift, in pixels, along each axis.
    pub shift: f32,
    /// Largest rotation, in degrees, either way.
    pub rotate: f32,
    /// Largest relative change of size: 0.1 draws a scale factor in [0.9, 1.1].
    pub scale: f32,
    /// Largest horizontal shear angle, in degrees, either way.
    pub shear: f32,
    /// Simard's α: the elastic field's scale in pixels per unit of smoothed noise (34 for MNIST).
    pub elastic_alpha: f32,
    /// Simard's σ: the elastic field's smoothness, in pixels (4 for MNIST).
    pub elastic_sigma: f32,
}

impl Default for Augment {
    /// No augmentation.
    fn default() -> Self {
        Augment {
            shift: 0.0,
            rotate: 0.0,
            scale: 0.0,
            shear: 0.0,
            elastic_alpha: 0.0,
            elastic_sigma: DEFAULT_SIGMA,
        }
    }
}

const KEYS: &str = "valid keys: shift=PIXELS, rotate=DEGREES, scale=FRACTION, shear=DEGREES, \
                    elastic=ALPHA[:SIGMA]; or `none`";

impl Augment {
    /// True when [`Augmenter::apply`] returns the image unchanged (as byte / 255).
    pub fn is_identity(&self) -> bool {
        [
            self.shift,
            self.rotate,
            self.scale,
            self.shear,
            self.elastic_alpha,
        ]
        .iter()
        .all(|&v| v == 0.0)
    }

    /// Reject values no run can use, naming the field.
    pub fn validate(&self) -> Result<()> {
        self.check().map_err(|msg| Error::flag("--augment", msg))
    }

    fn check(&self) -> Result<(), String> {
        let ranges = [
            ("shift", self.shift, 0.0, 14.0, " pixels"),
            ("rotate", self.rotate, 0.0, 180.0, " degrees"),
            ("scale", self.scale, 0.0, 0.9, ""),
            ("shear", self.shear, 0.0, 60.0, " degrees"),
            ("elastic α", self.elastic_alpha, 0.0, 1000.0, ""),
            // Below σ = 1 the field is pixel noise, and the cells (spaced σ) would outnumber
            // the pixels.
            ("elastic σ", self.elastic_sigma, 1.0, 28.0, " pixels"),
        ];
        for (name, v, lo, hi, unit) in ranges {
            if !(lo..=hi).contains(&v) {
                return Err(format!("{name} must be between {lo} and {hi}{unit}, got {v}"));
            }
        }
        Ok(())
    }
}

impl fmt::Display for Augment {
    /// The nonzero components in a fixed order, so that parsing the text gives the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        for (key, v) in [
            ("shift", self.shift),
            ("rotate", self.rotate),
            ("scale", self.scale),
            ("shear", self.shear),
        ] {
            if v != 0.0 {
                parts.push(format!("{key}={v}"));
            }
        }
        if self.elastic_alpha != 0.0 || self.elastic_sigma != DEFAULT_SIGMA {
            parts.push(format!("elastic={}:{}", self.elastic_alpha, self.elastic_sigma));
        }
        if parts.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&parts.join(","))
        }
    }
}

crate::serde_via_str!(Augment);

impl FromStr for Augment {
    type Err = String;

    /// `none`, or comma-separated `key=value`s; keys left out are zero (σ defaults to 4). The
    /// result is validated.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let mut a = Augment::default();
        if s == "none" {
            return Ok(a);
        }
        if s.is_empty() {
            return Err(format!("is empty; {KEYS}"));
        }
        let number = |key: &str, v: &str| -> Result<f32, String> {
            v.trim()
                .parse::<f32>()
                .map_err(|_| format!("{key}: `{v}` is not a number"))
        };
        let mut seen: Vec<&str> = Vec::new();
        for item in s.split(',') {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("`{item}` is not KEY=VALUE; {KEYS}"))?;
            let key = key.trim();
            if seen.contains(&key) {
                return Err(format!("{key} is given twice"));
            }
            seen.push(key);
            match key {
                "shift" => a.shift = number(key, value)?,
                "rotate" => a.rotate = number(key, value)?,
                "scale" => a.scale = number(key, value)?,
                "shear" => a.shear = number(key, value)?,
                "elastic" => match value.split_once(':') {
                    Some((alpha, sigma)) => {
                        a.elastic_alpha = number("elastic α", alpha)?;
                        a.elastic_sigma = number("elastic σ", sigma)?;
                    }
                    None => a.elastic_alpha = number("elastic α", value)?,
                },
                _ => return Err(format!("unknown key `{key}`; {KEYS}")),
            }
        }
        a.check()?;
        Ok(a)
    }
}

/// An affine map of the image content about the centre of the field: a source point p moves to
/// `c + M (p − c) + shift`, with `M = R(rotate) · scale · H(shear)`, R counter-clockwise as
/// seen on screen (y points down) and H a horizontal shear `x' = x + tan(shear) · y`. Stored
/// inverted, as the warp needs it: output pixel (x, y) reads the source at
/// `offset + inverse · (x, y)`.
#[derive(Clone, Debug, PartialEq)]
struct Transform {
    inverse: [[f32; 2]; 2],
    offset: [f32; 2],
}

impl Transform {
    fn new(shift: [f32; 2], rotate_deg: f32, scale: f32, shear_deg: f32) -> Self {
        let (sin, cos) = (rotate_deg as f64).to_radians().sin_cos();
        let k = (shear_deg as f64).to_radians().tan();
        let s = scale as f64;
        // M = R · s · H, with R = [[cos, sin], [−sin, cos]] and H = [[1, k], [0, 1]].
        let m = [[s * cos, s * (cos * k + sin)], [-s * sin, s * (cos - sin * k)]];
        let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
        let inv = [[m[1][1] / det, -m[0][1] / det], [-m[1][0] / det, m[0][0] / det]];
        // source = c + M⁻¹ (q − c − shift) = offset + M⁻¹ q
        let c = CENTRE as f64;
        let (tx, ty) = (c + shift[0] as f64, c + shift[1] as f64);
        let offset = [
            c - (inv[0][0] * tx + inv[0][1] * ty),
            c - (inv[1][0] * tx + inv[1][1] * ty),
        ];
        Transform {
            inverse: inv.map(|row| row.map(|v| v as f32)),
            offset: offset.map(|v| v as f32),
        }
    }

    /// Five uniform draws, always, so that the stream does not depend on which are zero.
    fn draw(cfg: &Augment, rng: &mut Rng) -> Self {
        let mut sym = |max: f32| rng.uniform(-max as f64, max as f64) as f32;
        let shift = [sym(cfg.shift), sym(cfg.shift)];
        let rotate = sym(cfg.rotate);
        let scale = 1.0 + sym(cfg.scale);
        let shear = sym(cfg.shear);
        Transform::new(shift, rotate, scale, shear)
    }
}

/// A displacement field in pixels, (SIDE, SIDE) row-major per component.
#[derive(Clone, Debug)]
struct Field {
    dx: Vec<f32>,
    dy: Vec<f32>,
}

impl Field {
    fn zero() -> Self {
        Field {
            dx: vec![0.0; PIXELS],
            dy: vec![0.0; PIXELS],
        }
    }
}

type Row = [f32; SIDE];

/// Simard's elastic field drawn on a coarse grid of cells spaced b = σ apart (see the module
/// doc): `Δ = α Wy · U · (b Wx)ᵀ` per component, U the (N, N) cell noise in [−1, 1].
#[derive(Clone, Debug)]
struct Elastic {
    /// (N, SIDE): `b · g(x − c_i)` at row i, zero beyond the cutoff.
    wx: Vec<Row>,
    /// (SIDE, N): `α · g(y − c_j)`.
    wy: Vec<Vec<f32>>,
    /// Per output row y, the cells j with `wy[y][j] ≠ 0`.
    bands: Vec<std::ops::Range<usize>>,
    /// (2, N, N) scratch: the cell noise of Δx, then of Δy.
    noise: Vec<f32>,
    /// (2, N, SIDE) scratch: `U · (b Wx)ᵀ`.
    rows: Vec<Row>,
}

impl Elastic {
    fn new(alpha: f32, sigma: f32) -> Self {
        let (alpha, sigma) = (alpha as f64, sigma as f64);
        let b = sigma;
        let reach = (CUTOFF_SIGMAS as f64) * sigma;
        let c = CENTRE as f64;
        // Cells centred at c + (k + ½) b for k in −h..h; h is the least that includes every
        // cell within `reach` of pixel 0 (and, by symmetry, of pixel SIDE − 1).
        let h = ((c + reach) / b - 0.5).floor() as i64 + 1;
        let centres: Vec<f64> = (-h..h).map(|k| c + (k as f64 + 0.5) * b).collect();
        let n = centres.len();
        // The continuous normalisation 1/(√(2π) σ): the kernel sampled at spacing b sums to 1/b.
        let g = |d: f64| {
            if d.abs() > reach {
                0.0
            } else {
                (-0.5 * (d / sigma).powi(2)).exp() / ((2.0 * std::f64::consts::PI).sqrt() * sigma)
            }
        };
        let wx: Vec<Row> = centres
            .iter()
            .map(|&ci| std::array::from_fn(|x| (b * g(x as f64 - ci)) as f32))
            .collect();
        let wy: Vec<Vec<f32>> = (0..SIDE)
            .map(|y| {
                centres
                    .iter()
                    .map(|&cj| (alpha * g(y as f64 - cj)) as f32)
                    .collect()
            })
            .collect();
        let bands = wy
            .iter()
            .map(|w| {
                let lo = w.iter().position(|&v| v != 0.0).unwrap_or(0);
                let hi = w.iter().rposition(|&v| v != 0.0).map_or(0, |i| i + 1);
                lo..hi.max(lo)
            })
            .collect();
        Elastic {
            wx,
            wy,
            bands,
            noise: vec![0.0; 2 * n * n],
            rows: vec![[0.0; SIDE]; 2 * n],
        }
    }

    fn cells(&self) -> usize {
        self.wx.len()
    }

    /// Draw a field into `field`: 2·N² uniform values, four from each 64-bit draw.
    fn draw(&mut self, rng: &mut Rng, field: &mut Field) {
        const SCALE: f32 = 2.0 / 65536.0;
        for chunk in self.noise.chunks_mut(4) {
            let bits = rng.next_u64();
            for (k, u) in chunk.iter_mut().enumerate() {
                // 16 random bits to the centre of one of 65536 equal steps of (−1, 1): mean 0.
                *u = ((bits >> (16 * k)) as u16 as f32 + 0.5) * SCALE - 1.0;
            }
        }
        let n = self.cells();
        for (noise, rows) in self.noise.chunks_exact(n * n).zip(self.rows.chunks_exact_mut(n)) {
            // rows = U · (b Wx)ᵀ: row j is Σ_i u[j][i] · wx[i], 28-wide axpys.
            for (u, row) in noise.chunks_exact(n).zip(rows.iter_mut()) {
                let mut acc: Row = [0.0; SIDE];
                for (&uji, wi) in u.iter().zip(&self.wx) {
                    for (a, &w) in acc.iter_mut().zip(wi) {
                        *a += uji * w;
                    }
                }
                *row = acc;
            }
        }
        let (rows_x, rows_y) = self.rows.split_at(n);
        for (rows, out) in [(rows_x, &mut field.dx), (rows_y, &mut field.dy)] {
            // Δ = α Wy · rows, over the band of cells that reach row y.
            for ((out, wy), band) in out.chunks_exact_mut(SIDE).zip(&self.wy).zip(&self.bands) {
                let mut acc: Row = [0.0; SIDE];
                for j in band.clone() {
                    let w = wy[j];
                    for (a, &r) in acc.iter_mut().zip(&rows[j]) {
                        *a += w * r;
                    }
                }
                out.copy_from_slice(&acc);
            }
        }
    }
}

/// `(⌊p⌋, p − ⌊p⌋)` for each p in [0, 2²²). Rust's `as i32` saturates, which x86-64 without
/// SSE4.1 does one element at a time with four extra instructions; this is plain float and
/// integer arithmetic that vectorises: adding 2²³ rounds p to the nearest integer, which then
/// sits in the low bits of the sum, and a negative remainder means it was rounded up.
#[inline(always)]
fn floor_and_fraction(p: &Row) -> ([i32; SIDE], Row) {
    const ROUND: f32 = 8_388_608.0;
    let mut floor = [0; SIDE];
    let mut fraction = [0.0; SIDE];
    for i in 0..SIDE {
        let biased = p[i] + ROUND;
        let nearest = biased.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
        // Exact: p and its nearest integer are within ½ of each other.
        let rest = p[i] - (biased - ROUND);
        let up = rest < 0.0;
        floor[i] = nearest - up as i32;
        fraction[i] = if up { rest + 1.0 } else { rest };
    }
    (floor, fraction)
}

/// Output pixel (x, y) = the source, bilinearly sampled at `T(x, y) + Δ(x, y)`, zero outside.
/// `padded` is scratch whose border must be zero; only its interior is written.
///
/// Each row is done in passes over 28-wide arrays so that everything but the four loads per
/// pixel vectorises (the default x86-64 target has no gather instruction).
fn warp(src: &[u8], t: &Transform, field: Option<&Field>, padded: &mut Padded, out: &mut [f32]) {
    assert_eq!(src.len(), PIXELS);
    assert_eq!(out.len(), PIXELS);
    for (r, row) in src.chunks_exact(SIDE).enumerate() {
        let dst = &mut padded[(r + 1) * PAD + 1..][..SIDE];
        for (d, &p) in dst.iter_mut().zip(row) {
            // The encoding of `data::Split::gather`, so that no augmentation is bit-identical.
            *d = p as f32 * (1.0 / 255.0);
        }
    }
    let [[a, b], [c, d]] = t.inverse;
    let [ox, oy] = t.offset;
    let x: Row = std::array::from_fn(|x| x as f32);
    const ZERO: Row = [0.0; SIDE];
    for (y, out) in out.chunks_exact_mut(SIDE).enumerate() {
        let yf = y as f32;
        // Source coordinates, + 1 into the padded image, clamped to its zero border: a point
        // beyond it lands exactly on the border and reads zeros only.
        let (row_x, row_y) = (ox + b * yf + 1.0, oy + d * yf + 1.0);
        let (dx, dy): (&Row, &Row) = match field {
            Some(f) => {
                let row = y * SIDE..(y + 1) * SIDE;
                (
                    f.dx[row.clone()].try_into().unwrap(),
                    f.dy[row].try_into().unwrap(),
                )
            }
            None => (&ZERO, &ZERO),
        };
        let mut px: Row = std::array::from_fn(|i| row_x + a * x[i] + dx[i]);
        let mut py: Row = std::array::from_fn(|i| row_y + c * x[i] + dy[i]);
        let edge = (SIDE + 1) as f32;
        for p in px.iter_mut() {
            *p = p.clamp(0.0, edge);
        }
        for p in py.iter_mut() {
            *p = p.clamp(0.0, edge);
        }
        let (x0, fx) = floor_and_fraction(&px);
        let (y0, fy) = floor_and_fraction(&py);
        let at: [i32; SIDE] = std::array::from_fn(|i| y0[i] * PAD as i32 + x0[i]);
        // The four neighbours, as two horizontal pairs (one 8-byte load each). Masking the
        // index (a no-op: it is at most 29·33) lets the compiler drop the bounds checks from
        // this, the one scalar loop.
        let (mut upper, mut lower) = ([[0.0; 2]; SIDE], [[0.0; 2]; SIDE]);
        for i in 0..SIDE {
            let k = at[i] as usize & (PAD * PAD - 1);
            upper[i] = padded[k..k + 2].try_into().unwrap();
            lower[i] = padded[k + PAD..k + PAD + 2].try_into().unwrap();
        }
        for i in 0..SIDE {
            let ([v00, v01], [v10, v11]) = (upper[i], lower[i]);
            let top = v00 + fx[i] * (v01 - v00);
            let bottom = v10 + fx[i] * (v11 - v10);
            // Rounding could take a blend of values in [0, 1] a hair outside it.
            out[i] = (top + fy[i] * (bottom - top)).clamp(0.0, 1.0);
        }
    }
}

/// Draws and applies augmentations for one thread: the precomputed elastic kernel and the
/// scratch it needs, so that [`apply`](Augmenter::apply) allocates nothing.
#[derive(Clone, Debug)]
pub struct Augmenter {
    cfg: Augment,
    elastic: Option<Elastic>,
    field: Field,
    padded: Box<Padded>,
}

impl Augmenter {
    /// Panics if `cfg` does not pass [`Augment::validate`].
    pub fn new(cfg: &Augment) -> Self {
        if let Err(e) = cfg.check() {
            panic!("invalid augmentation {cfg}: {e}");
        }
        Augmenter {
            cfg: cfg.clone(),
            elastic: (cfg.elastic_alpha != 0.0).then(|| Elastic::new(cfg.elastic_alpha, cfg.elastic_sigma)),
            field: Field::zero(),
            padded: Box::new([0.0; PADDED]),
        }
    }

    /// Write a randomly distorted copy of `src` (SIDE² bytes, 0–255) into `out` (SIDE² f32 in
    /// 0–1, the encoding of `data::Split::gather`). The same `rng` state gives the same bits;
    /// an identity config draws nothing.
    pub fn apply(&mut self, src: &[u8], rng: &mut Rng, out: &mut [f32]) {
        assert_eq!(src.len(), PIXELS, "augmentation needs {SIDE}×{SIDE} images");
        assert_eq!(out.len(), PIXELS);
        if self.cfg.is_identity() {
            for (o, &p) in out.iter_mut().zip(src) {
                *o = p as f32 * (1.0 / 255.0);
            }
            return;
        }
        let t = Transform::draw(&self.cfg, rng);
        let field = match &mut self.elastic {
            Some(e) => {
                e.draw(rng, &mut self.field);
                Some(&self.field)
            }
            None => None,
        };
        warp(src, &t, field, &mut self.padded, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic image with every byte value represented and no symmetry.
    fn pattern() -> Vec<u8> {
        (0..PIXELS)
            .map(|i| ((i * 37 + i / SIDE * 11) % 256) as u8)
            .collect()
    }

    fn encoded(src: &[u8]) -> Vec<f32> {
        src.iter().map(|&p| p as f32 * (1.0 / 255.0)).collect()
    }

    fn warped(src: &[u8], t: &Transform, field: Option<&Field>) -> Vec<f32> {
        let mut out = vec![f32::NAN; PIXELS];
        warp(src, t, field, &mut Box::new([0.0; PADDED]), &mut out);
        out
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    #[test]
    fn identity_config_returns_the_gathered_image_exactly() {
        let src = pattern();
        let mut out = vec![f32::NAN; PIXELS];
        let mut rng = Rng::new(1, 0);
        Augmenter::new(&Augment::default()).apply(&src, &mut rng, &mut out);
        assert_eq!(out, encoded(&src));
        assert_eq!(rng, Rng::new(1, 0), "an identity config draws nothing");
        // The warp itself is exact for the identity transform, too.
        assert_eq!(
            warped(&src, &Transform::new([0.0; 2], 0.0, 1.0, 0.0), None),
            encoded(&src)
        );
    }

    #[test]
    fn an_integer_shift_moves_the_image_exactly_and_fills_with_zero() {
        let src = pattern();
        // Right by 3, up by 2: out(r, c) = src(r + 2, c − 3).
        let out = warped(&src, &Transform::new([3.0, -2.0], 0.0, 1.0, 0.0), None);
        let want = encoded(&src);
        for r in 0..SIDE {
            for c in 0..SIDE {
                let expected = if r + 2 < SIDE && c >= 3 {
                    want[(r + 2) * SIDE + c - 3]
                } else {
                    0.0
                };
                assert_eq!(out[r * SIDE + c], expected, "pixel ({r}, {c})");
            }
        }
    }

    #[test]
    fn a_half_pixel_shift_averages_neighbours() {
        let mut src = vec![0u8; PIXELS];
        src[10 * SIDE + 10] = 255;
        let out = warped(&src, &Transform::new([0.5, 0.0], 0.0, 1.0, 0.0), None);
        assert_eq!(out[10 * SIDE + 10], 0.5);
        assert_eq!(out[10 * SIDE + 11], 0.5);
        assert_eq!(out.iter().sum::<f32>(), 1.0);
    }

    #[test]
    fn rotating_by_90_degrees_turns_the_image_counter_clockwise() {
        let src = pattern();
        let out = warped(&src, &Transform::new([0.0; 2], 90.0, 1.0, 0.0), None);
        let want = encoded(&src);
        // Counter-clockwise on screen: the top-right corner goes to the top-left.
        let rotated: Vec<f32> = (0..PIXELS)
            .map(|i| want[(i % SIDE) * SIDE + SIDE - 1 - i / SIDE])
            .collect();
        assert!(max_diff(&out, &rotated) < 1e-6, "{}", max_diff(&out, &rotated));
    }

    #[test]
    fn scaling_by_two_magnifies_about_the_centre() {
        let src = pattern();
        let out = warped(&src, &Transform::new([0.0; 2], 0.0, 2.0, 0.0), None);
        let v = |r: usize, c: usize| encoded(&src)[r * SIDE + c];
        // Output (x, y) = (5, 21) reads the source at c + (p − c) / 2 = (9.25, 17.25).
        let top = v(17, 9) * 0.75 + v(17, 10) * 0.25;
        let bottom = v(18, 9) * 0.75 + v(18, 10) * 0.25;
        let expected = top * 0.75 + bottom * 0.25;
        assert!((out[21 * SIDE + 5] - expected).abs() < 1e-6);
    }

    #[test]
    fn elastic_with_alpha_zero_is_the_identity() {
        let src = pattern();
        let mut e = Elastic::new(0.0, 4.0);
        let mut field = Field::zero();
        e.draw(&mut Rng::new(3, 0), &mut field);
        assert!(field.dx.iter().chain(&field.dy).all(|&v| v == 0.0));
        let t = Transform::new([0.0; 2], 0.0, 1.0, 0.0);
        assert_eq!(warped(&src, &t, Some(&field)), encoded(&src));
    }

    /// Simard's definition taken literally: uniform noise at every pixel (of a field 2R wider
    /// than the image, R = 3σ, as our field is stationary), blurred by the discrete Gaussian
    /// cut at R and normalised to sum 1, times α. Returns Δx.
    fn simard_reference(alpha: f32, sigma: f32, rng: &mut Rng) -> Vec<f32> {
        let r = (3.0 * sigma) as usize;
        let kernel: Vec<f64> = (0..=2 * r)
            .map(|k| (-0.5 * ((k as f64 - r as f64) / sigma as f64).powi(2)).exp())
            .collect();
        let total: f64 = kernel.iter().sum();
        let kernel: Vec<f64> = kernel.iter().map(|k| k / total).collect();
        let wide = SIDE + 2 * r;
        let noise: Vec<f64> = (0..wide * wide).map(|_| rng.uniform(-1.0, 1.0)).collect();
        // Rows first: (wide, SIDE), then columns: (SIDE, SIDE).
        let mut rows = vec![0.0; wide * SIDE];
        for y in 0..wide {
            for x in 0..SIDE {
                rows[y * SIDE + x] = (0..=2 * r).map(|k| kernel[k] * noise[y * wide + x + k]).sum();
            }
        }
        (0..PIXELS)
            .map(|i| {
                let (y, x) = (i / SIDE, i % SIDE);
                let v: f64 = (0..=2 * r).map(|k| kernel[k] * rows[(y + k) * SIDE + x]).sum();
                (alpha as f64 * v) as f32
            })
            .collect()
    }

    /// Standard deviation and lag-4 (horizontal) correlation over a set of fields.
    fn sd_and_lag4(fields: &[Vec<f32>]) -> (f64, f64) {
        let (mut sq, mut lag4) = (0.0, 0.0);
        for f in fields {
            sq += f.iter().map(|&v| (v as f64).powi(2)).sum::<f64>();
            for y in 0..SIDE {
                for x in 0..SIDE - 4 {
                    lag4 += f[y * SIDE + x] as f64 * f[y * SIDE + x + 4] as f64;
                }
            }
        }
        let var = sq / (fields.len() * PIXELS) as f64;
        (var.sqrt(), lag4 / (fields.len() * SIDE * (SIDE - 4)) as f64 / var)
    }

    #[test]
    fn simards_literal_field_has_the_statistics_the_module_doc_states() {
        let mut rng = Rng::new(12, 0);
        let fields: Vec<Vec<f32>> = (0..1000).map(|_| simard_reference(34.0, 4.0, &mut rng)).collect();
        let (sd, corr) = sd_and_lag4(&fields);
        eprintln!("Simard's field: sd {sd:.4} (theory 1.3844), lag-4 correlation {corr:.4} (0.7788)");
        assert!((sd / 1.3844 - 1.0).abs() < 0.05, "sd {sd}");
        assert!((corr - 0.7788).abs() < 0.03, "lag-4 correlation {corr}");
    }

    /// Simard's field for α = 34, σ = 4 (module doc): per component, standard deviation
    /// 34 / √(3 · 4π · 16) = 1.384 px, mean |Δx| 1.104 px, correlation exp(−d² / 4σ²) at lag d
    /// (0.779 at d = 4), the same at the border as in the middle.
    #[test]
    fn the_elastic_field_has_simards_statistics() {
        let (alpha, sigma) = (34.0f32, 4.0f32);
        let sd = alpha as f64 / (3.0 * 4.0 * std::f64::consts::PI * (sigma as f64).powi(2)).sqrt();
        let mean_abs = sd * (2.0 / std::f64::consts::PI).sqrt();
        assert!((sd - 1.384).abs() < 1e-3 && (mean_abs - 1.104).abs() < 1e-3);

        let mut e = Elastic::new(alpha, sigma);
        assert_eq!(e.cells(), 12);
        let mut field = Field::zero();
        let mut rng = Rng::new(11, 0);
        let draws = 2000;
        let (mut abs, mut sq, mut lag4, mut corner, mut middle) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for _ in 0..draws {
            e.draw(&mut rng, &mut field);
            for f in [&field.dx, &field.dy] {
                abs += f.iter().map(|&v| v.abs() as f64).sum::<f64>();
                sq += f.iter().map(|&v| (v as f64).powi(2)).sum::<f64>();
                for y in 0..SIDE {
                    for x in 0..SIDE - 4 {
                        lag4 += f[y * SIDE + x] as f64 * f[y * SIDE + x + 4] as f64;
                    }
                }
                corner += (f[0] as f64).powi(2);
                middle += (f[14 * SIDE + 14] as f64).powi(2);
            }
        }
        let values = (2 * draws * PIXELS) as f64;
        let (abs, var) = (abs / values, sq / values);
        let corr = lag4 / (2 * draws * SIDE * (SIDE - 4)) as f64 / var;
        let (corner, middle) = (corner / (2 * draws) as f64, middle / (2 * draws) as f64);
        eprintln!(
            "mean |Δ| {abs:.4} (theory {mean_abs:.4}), sd {:.4} ({sd:.4}), lag-4 correlation \
             {corr:.4} (0.7788), variance at the corner {corner:.3}, in the middle {middle:.3}",
            var.sqrt()
        );
        assert!((abs / mean_abs - 1.0).abs() < 0.05, "mean |Δ| {abs}");
        assert!((var.sqrt() / sd - 1.0).abs() < 0.05, "sd {}", var.sqrt());
        assert!((corr - (-0.25f64).exp()).abs() < 0.03, "lag-4 correlation {corr}");
        assert!(
            (corner / middle - 1.0).abs() < 0.15,
            "corner {corner}, middle {middle}"
        );
    }

    #[test]
    fn at_sigma_one_the_cells_are_the_pixels() {
        // Cells from 3σ outside the image on each side, centred on whole pixels.
        let e = Elastic::new(1.0, 1.0);
        assert_eq!(e.cells(), SIDE + 6);
        let peak = 1.0 / (2.0 * std::f32::consts::PI).sqrt();
        for x in 0..SIDE {
            assert!(
                (e.wx[x + 3][x] - peak).abs() < 1e-7,
                "cell {} is pixel {x}",
                x + 3
            );
        }
    }

    #[test]
    fn output_stays_in_0_1_and_the_same_seed_gives_the_same_bits() {
        let src = pattern();
        let cfg: Augment = "shift=3,rotate=20,scale=0.2,shear=15,elastic=34:4"
            .parse()
            .unwrap();
        let mut aug = Augmenter::new(&cfg);
        let (mut a, mut b) = (vec![0.0; PIXELS], vec![0.0; PIXELS]);
        let mut rng = Rng::new(5, 0);
        for _ in 0..200 {
            let before = rng.clone();
            aug.apply(&src, &mut rng, &mut a);
            assert!(a.iter().all(|v| (0.0..=1.0).contains(v)));
            Augmenter::new(&cfg).apply(&src, &mut before.clone(), &mut b);
            assert_eq!(
                a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
        }
        let mut c = vec![0.0; PIXELS];
        aug.apply(&src, &mut Rng::new(6, 0), &mut c);
        assert_ne!(a, c);
    }

    #[test]
    fn text_round_trips() {
        for text in [
            "none",
            "shift=2",
            "shift=2,rotate=15,scale=0.1,elastic=34:4",
            "shear=7.5",
            "elastic=0:6",
        ] {
            let a: Augment = text.parse().unwrap();
            assert_eq!(a.to_string(), text);
            assert_eq!(a.to_string().parse::<Augment>().unwrap(), a);
        }
        let a: Augment = " rotate = 15 , elastic=34 ".parse().unwrap();
        assert_eq!(
            (a.rotate, a.elastic_alpha, a.elastic_sigma),
            (15.0, 34.0, DEFAULT_SIGMA)
        );
        assert!(Augment::default().is_identity() && !a.is_identity());
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Augment>(&json).unwrap(), a);
    }

    #[test]
    fn bad_text_is_refused_naming_the_key() {
        let err = |s: &str| s.parse::<Augment>().unwrap_err();
        assert!(
            err("zoom=2").contains("unknown key `zoom`; valid keys: shift"),
            "{}",
            err("zoom=2")
        );
        assert!(err("rotate=abc").contains("rotate: `abc` is not a number"));
        assert!(err("rotate").contains("`rotate` is not KEY=VALUE"));
        assert!(err("shift=1,shift=2").contains("shift is given twice"));
        assert!(err("rotate=270").contains("rotate must be between 0 and 180 degrees, got 270"));
        assert!(err("elastic=34:0").contains("elastic σ must be between 1 and 28"));
        assert!(err("shift=NaN").contains("shift must be"));
        assert!(err("").contains("empty"));
        let flag = Augment {
            scale: -0.1,
            ..Augment::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            flag.to_string(),
            "--augment: scale must be between 0 and 0.9, got -0.1"
        );
    }
}
