//! Finding the digit in a picture: which pixels are ink, which of them make up the digit, and
//! how wide its strokes are. The steps of [`super`] that turn a photo of paper into something
//! like a drawing; on MNIST's own images and clean drawings they change nothing or little.

use super::Grey;

/// Pictures whose longer side exceeds this are first reduced to it by area averaging: it
/// bounds the work, and a phone's 12-megapixel photo of a digit holds no more information
/// that matters at 28×28.
pub const MAX_WORK_SIDE: usize = 1600;
/// Pictures with a shorter side below this are small (MNIST's 28×28, icons): no blur and no
/// background estimation, whose windows would be as large as the strokes.
pub const SMALL_SIDE: usize = 100;

/// The k-th smallest of `v` at fraction `q` (0–1), by a 4096-bin histogram of 0–1 values.
pub(crate) fn quantile(v: &[f32], q: f64) -> f32 {
    const BINS: usize = 4096;
    let mut hist = vec![0usize; BINS];
    for &x in v {
        hist[((x.clamp(0.0, 1.0) * (BINS - 1) as f32).round()) as usize] += 1;
    }
    let target = (q * v.len() as f64).ceil().max(1.0) as usize;
    let mut seen = 0;
    for (b, &n) in hist.iter().enumerate() {
        seen += n;
        if seen >= target {
            return b as f32 / (BINS - 1) as f32;
        }
    }
    1.0
}

/// The outermost ring of pixels.
fn border(g: &Grey) -> Vec<f32> {
    let (w, h) = (g.width, g.height);
    let mut v = Vec::with_capacity(2 * (w + h));
    for y in 0..h {
        if y == 0 || y == h - 1 {
            v.extend_from_slice(&g.data[y * w..(y + 1) * w]);
        } else {
            v.push(g.data[y * w]);
            if w > 1 {
                v.push(g.data[y * w + w - 1]);
            }
        }
    }
    v
}

/// Whether the ink is darker than the background, whose level is the median of the border.
/// A small picture (a scan, a drawing, MNIST's own images) has dark ink when its border is
/// light (> 0.5). A photo's border can be dark from a shadow or under-exposure while the paper
/// is still lighter than the ink (a thin pen's line holds too few pixels to show in the
/// levels' extremes), so a large picture has dark ink unless its border is really dark
/// (< 0.25) and its brightest marks stand out from it twice as far as its darkest.
pub fn dark_ink(g: &Grey, small: bool) -> bool {
    let b = quantile(&border(g), 0.5);
    if small {
        return b > 0.5;
    }
    let lo = quantile(&g.data, 0.001);
    let hi = quantile(&g.data, 0.999);
    !(b < 0.25 && hi - b > 2.0 * (b - lo))
}

/// Separable Gaussian blur with standard deviation `sigma` pixels, edges extended.
pub fn blur(g: &Grey, sigma: f32) -> Grey {
    let rad = (3.0 * sigma).ceil() as isize;
    let k: Vec<f32> = (-rad..=rad)
        .map(|i| (-((i * i) as f32) / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f32 = k.iter().sum();
    let k: Vec<f32> = k.iter().map(|v| v / sum).collect();
    let (w, h) = (g.width as isize, g.height as isize);
    let mut tmp = vec![0.0f32; g.data.len()];
    for y in 0..h {
        let row = &g.data[(y * w) as usize..((y + 1) * w) as usize];
        for x in 0..w {
            tmp[(y * w + x) as usize] = k
                .iter()
                .enumerate()
                .map(|(j, kv)| kv * row[(x + j as isize - rad).clamp(0, w - 1) as usize])
                .sum();
        }
    }
    let mut data = vec![0.0f32; g.data.len()];
    for y in 0..h {
        for (j, kv) in k.iter().enumerate() {
            let yy = (y + j as isize - rad).clamp(0, h - 1);
            let src = &tmp[(yy * w) as usize..((yy + 1) * w) as usize];
            for (d, s) in data[(y * w) as usize..((y + 1) * w) as usize].iter_mut().zip(src) {
                *d += kv * s;
            }
        }
    }
    Grey {
        width: g.width,
        height: g.height,
        data,
    }
}

/// Running minimum (or maximum) over windows of `k` values centred on each one, edges
/// clamped: a monotone deque, O(n) whatever `k`.
fn running_extreme(src: &[f32], k: usize, max: bool, out: &mut [f32]) {
    let n = src.len();
    let r = k / 2;
    let better = |a: f32, b: f32| if max { a >= b } else { a <= b };
    let mut dq: std::collections::VecDeque<usize> = std::collections::VecDeque::new();
    let mut next = 0;
    for (i, o) in out.iter_mut().enumerate() {
        let hi = (i + r).min(n - 1);
        while next <= hi {
            while dq.back().is_some_and(|&j| better(src[next], src[j])) {
                dq.pop_back();
            }
            dq.push_back(next);
            next += 1;
        }
        while dq.front().is_some_and(|&j| j + r < i) {
            dq.pop_front();
        }
        *o = src[*dq.front().expect("the window holds the current pixel")];
    }
}

/// Minimum (or maximum) over `k × k` squares, separably.
fn square_extreme(g: &Grey, k: usize, max: bool) -> Grey {
    let (w, h) = (g.width, g.height);
    let mut rows = vec![0.0f32; w * h];
    for y in 0..h {
        running_extreme(&g.data[y * w..(y + 1) * w], k, max, &mut rows[y * w..(y + 1) * w]);
    }
    let mut col = vec![0.0f32; h];
    let mut out_col = vec![0.0f32; h];
    let mut data = vec![0.0f32; w * h];
    for x in 0..w {
        for y in 0..h {
            col[y] = rows[y * w + x];
        }
        running_extreme(&col, k, max, &mut out_col);
        for y in 0..h {
            data[y * w + x] = out_col[y];
        }
    }
    Grey {
        width: w,
        height: h,
        data,
    }
}

/// The background under bright ink: a morphological opening (minimum, then maximum, over
/// `k × k` squares) removes every bright mark narrower than `k` and keeps broad light, a
/// lighting gradient and the edges of shadows.
pub fn background(g: &Grey, k: usize) -> Grey {
    square_extreme(&square_extreme(g, k, false), k, true)
}

/// Otsu's threshold of the values in `v` (0–1): the level that best splits them in two
/// classes (largest between-class variance), by a 256-bin histogram.
pub fn otsu(v: &[f32]) -> f32 {
    const BINS: usize = 256;
    let mut hist = [0f64; BINS];
    for &x in v {
        hist[(x.clamp(0.0, 1.0) * (BINS - 1) as f32).round() as usize] += 1.0;
    }
    let total: f64 = hist.iter().sum();
    let sum_all: f64 = hist.iter().enumerate().map(|(i, n)| i as f64 * n).sum();
    let (mut w0, mut sum0, mut best, mut best_t) = (0.0, 0.0, -1.0, 0usize);
    for (t, &n) in hist.iter().enumerate() {
        w0 += n;
        sum0 += t as f64 * n;
        let w1 = total - w0;
        if w0 == 0.0 || w1 == 0.0 {
            continue;
        }
        let (m0, m1) = (sum0 / w0, (sum_all - sum0) / w1);
        let between = w0 * w1 * (m0 - m1) * (m0 - m1);
        if between > best {
            best = between;
            best_t = t;
        }
    }
    (best_t as f32 + 0.5) / (BINS - 1) as f32
}

/// One 8-connected component of a mask.
#[derive(Clone, Debug)]
pub struct Component {
    /// Pixels, as indices into the image.
    pub pixels: Vec<usize>,
    /// Sum of the ink levels of its pixels.
    pub mass: f64,
    /// (left, top, right, bottom), inclusive.
    pub bbox: (usize, usize, usize, usize),
    pub touches_border: bool,
    /// Holds at least one pixel above the high threshold.
    pub strong: bool,
}

/// The 8-connected components of `mask` over a `width`-wide image, with masses from `ink`
/// and `strong` where a pixel exceeds `high`. Pixels of `mask` closer than `join` pixels
/// belong to one component (the gaps of a faint pen's line), though the gap itself does not.
/// A component touches the border when it comes within `margin` pixels of it.
pub fn components(
    mask: &[bool],
    ink: &[f32],
    width: usize,
    high: f32,
    join: f32,
    margin: usize,
) -> Vec<Component> {
    let height = mask.len() / width;
    let joined: Vec<bool> = if join > 0.0 {
        distance_to(mask, width, true)
            .iter()
            .map(|&d| d <= join / 2.0)
            .collect()
    } else {
        mask.to_vec()
    };
    let member = mask;
    let mask = &joined[..];
    let mut seen = vec![false; mask.len()];
    let mut out = Vec::new();
    let mut stack = Vec::new();
    for start in 0..mask.len() {
        if !mask[start] || seen[start] {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let mut c = Component {
            pixels: Vec::new(),
            mass: 0.0,
            bbox: (usize::MAX, usize::MAX, 0, 0),
            touches_border: false,
            strong: false,
        };
        while let Some(i) = stack.pop() {
            let (x, y) = (i % width, i / width);
            for dy in -1isize..=1 {
                for dx in -1isize..=1 {
                    let (nx, ny) = (x as isize + dx, y as isize + dy);
                    if nx < 0 || ny < 0 || nx >= width as isize || ny >= height as isize {
                        continue;
                    }
                    let j = ny as usize * width + nx as usize;
                    if mask[j] && !seen[j] {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
            if !member[i] {
                continue;
            }
            c.pixels.push(i);
            c.mass += f64::from(ink[i]);
            c.strong |= ink[i] > high;
            c.bbox = (c.bbox.0.min(x), c.bbox.1.min(y), c.bbox.2.max(x), c.bbox.3.max(y));
            c.touches_border |=
                x <= margin || y <= margin || x + margin >= width - 1 || y + margin >= height - 1;
        }
        if !c.pixels.is_empty() {
            out.push(c);
        }
    }
    out
}

/// A part smaller than this share of the digit's largest part is a speck, not a stroke.
pub const SPECK_SHARE: f64 = 0.05;
/// A part belongs to the digit when its box comes within this share of the largest part's
/// longer side of that part's box (a 5's detached top bar, a 4's open top).
pub const NEAR_SHARE: f64 = 0.25;

/// Which components make up the digit: among those with a strong pixel and not touching the
/// picture's border (a page edge, the table, a shadow's rim; all of them when every one
/// touches it), the one of the largest extent (the longer side of its box; a speck of dust
/// can hold more ink than a thin pen's digit, never as long a line), and every other one with at least [`SPECK_SHARE`]
/// of its ink whose box comes near its box ([`NEAR_SHARE`]). Indices into `comps`.
pub fn digit_parts(comps: &[Component]) -> Vec<usize> {
    let strong: Vec<usize> = (0..comps.len()).filter(|&i| comps[i].strong).collect();
    let inner: Vec<usize> = strong
        .iter()
        .copied()
        .filter(|&i| !comps[i].touches_border)
        .collect();
    let pool = if inner.is_empty() { strong } else { inner };
    let Some(&main) = pool.iter().max_by(|&&a, &&b| {
        let extent = |c: &Component| (c.bbox.2 - c.bbox.0).max(c.bbox.3 - c.bbox.1);
        (extent(&comps[a]).cmp(&extent(&comps[b])))
            .then(comps[a].mass.total_cmp(&comps[b].mass))
            .then(b.cmp(&a))
    }) else {
        return Vec::new();
    };
    let m = &comps[main];
    let side = (m.bbox.2 - m.bbox.0).max(m.bbox.3 - m.bbox.1) as f64 + 1.0;
    let reach = (NEAR_SHARE * side).round() as isize;
    let (l, t, r, b) = (
        m.bbox.0 as isize - reach,
        m.bbox.1 as isize - reach,
        m.bbox.2 as isize + reach,
        m.bbox.3 as isize + reach,
    );
    pool.into_iter()
        .filter(|&i| {
            let c = &comps[i];
            let near = (c.bbox.0 as isize) <= r
                && (c.bbox.2 as isize) >= l
                && (c.bbox.1 as isize) <= b
                && (c.bbox.3 as isize) >= t;
            i == main || (c.mass >= SPECK_SHARE * m.mass && near)
        })
        .collect()
}

/// Chamfer (3-4) distance, in pixels, from each pixel to the nearest pixel where `mask` is
/// `target`; those pixels are 0. Two passes; within 8% of the Euclidean distance.
pub fn distance_to(mask: &[bool], width: usize, target: bool) -> Vec<f32> {
    let height = mask.len() / width;
    let inf = u32::MAX / 2;
    let mut d: Vec<u32> = mask.iter().map(|&m| if m == target { 0 } else { inf }).collect();
    for y in 0..height {
        for x in 0..width {
            let i = y * width + x;
            let mut v = d[i];
            if x > 0 {
                v = v.min(d[i - 1] + 3);
            }
            if y > 0 {
                v = v.min(d[i - width] + 3);
                if x > 0 {
                    v = v.min(d[i - width - 1] + 4);
                }
                if x + 1 < width {
                    v = v.min(d[i - width + 1] + 4);
                }
            }
            d[i] = v;
        }
    }
    for y in (0..height).rev() {
        for x in (0..width).rev() {
            let i = y * width + x;
            let mut v = d[i];
            if x + 1 < width {
                v = v.min(d[i + 1] + 3);
            }
            if y + 1 < height {
                v = v.min(d[i + width] + 3);
                if x + 1 < width {
                    v = v.min(d[i + width + 1] + 4);
                }
                if x > 0 {
                    v = v.min(d[i + width - 1] + 4);
                }
            }
            d[i] = v;
        }
    }
    d.into_iter().map(|v| v as f32 / 3.0).collect()
}

/// Mean stroke width of the ink in `mask`, in pixels: a stroke `w` pixels across has inner
/// distances 1, 2, …, w/2, …, 2, 1 to the paper, whose mean is w/4 + 1/2.
pub fn stroke_width(mask: &[bool], width: usize) -> f32 {
    let d = distance_to(mask, width, false);
    let (sum, n) = mask
        .iter()
        .zip(&d)
        .filter(|(m, _)| **m)
        .fold((0.0f64, 0usize), |(s, n), (_, &v)| (s + f64::from(v), n + 1));
    if n == 0 {
        return 0.0;
    }
    (4.0 * (sum / n as f64 - 0.5)).max(1.0) as f32
}
