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

/// The bin of a 0–1 value among `bins` bins spread evenly over 0–1: the nearest, halves
/// rounded up, as `f32::round` does (which calls the C library where the CPU has no rounding
/// instruction in its baseline; this is the same value without the call).
fn bin(x: f32, bins: usize) -> usize {
    // `x.clamp(0.0, 1.0)`, with NaN (which `clamp` keeps, and which then falls in bin 0) made 0
    // at once, in a form the compiler turns into branch-free selects.
    let x = if x > 0.0 {
        if x < 1.0 { x } else { 1.0 }
    } else {
        0.0
    };
    let v = x * (bins - 1) as f32;
    let whole = v as i32;
    // Exact: `whole` is at most `v` and at least half of it.
    (whole + i32::from(v - whole as f32 >= 0.5)) as usize
}

/// How many of `v` fall in each of [`QUANTILE_BINS`] bins spread evenly over 0–1.
fn histogram(v: &[f32]) -> Vec<usize> {
    // The bins of a chunk are found first (a loop the compiler vectorises), then counted in
    // four partial counts, so that a run of equal values (the paper) does not make every
    // increment wait for the one before.
    let mut part = vec![[0u32; 4]; QUANTILE_BINS];
    let mut bins = [0u16; 256];
    for chunk in v.chunks(bins.len()) {
        for (b, &x) in bins.iter_mut().zip(chunk) {
            *b = bin(x, QUANTILE_BINS) as u16;
        }
        for (j, &b) in bins[..chunk.len()].iter().enumerate() {
            part[usize::from(b)][j % 4] += 1;
        }
    }
    part.iter().map(|p| p.iter().map(|&n| n as usize).sum()).collect()
}

const QUANTILE_BINS: usize = 4096;

/// The k-th smallest of `len` values at fraction `q` (0–1), from their [`histogram`].
fn quantile_of(hist: &[usize], len: usize, q: f64) -> f32 {
    let target = (q * len as f64).ceil().max(1.0) as usize;
    let mut seen = 0;
    for (b, &n) in hist.iter().enumerate() {
        seen += n;
        if seen >= target {
            return b as f32 / (QUANTILE_BINS - 1) as f32;
        }
    }
    1.0
}

/// The k-th smallest of `v` at fraction `q` (0–1), by a 4096-bin histogram of 0–1 values.
pub(crate) fn quantile(v: &[f32], q: f64) -> f32 {
    quantile_of(&histogram(v), v.len(), q)
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
    let hist = histogram(&g.data);
    let lo = quantile_of(&hist, g.data.len(), 0.001);
    let hi = quantile_of(&hist, g.data.len(), 0.999);
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
    // Along each row, its ends extended: every output sums its taps in order from -0.0 (as
    // `Iterator::sum` does), tap by tap over the whole row at once.
    let r = rad as usize;
    let mut tmp = vec![-0.0f32; g.data.len()];
    let mut padded = vec![0.0f32; w as usize + 2 * r];
    for (row, out) in g
        .data
        .chunks_exact(w as usize)
        .zip(tmp.chunks_exact_mut(w as usize))
    {
        padded[..r].fill(row[0]);
        padded[r..r + row.len()].copy_from_slice(row);
        padded[r + row.len()..].fill(row[row.len() - 1]);
        for (j, kv) in k.iter().enumerate() {
            for (o, v) in out.iter_mut().zip(&padded[j..]) {
                *o += kv * v;
            }
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

/// Running minimum (or maximum) along the first axis of `src`, `n` rows of `lanes` values
/// each, over windows of `k` rows centred on each one (edges clamped: the window shrinks),
/// into `out`: `lanes = 1` runs along one line of pixels, `lanes = width` down every column of
/// a picture at once. The van Herk/Gil-Werman scheme, O(n) whatever `k`: the padded rows are
/// cut into blocks of `k`, each row keeps the extreme from its block's start (`ahead`) and to
/// its block's end (`behind`), and a window, which spans at most two blocks, is the extreme of
/// its first row's `behind` and its last row's `ahead`. The same values as a direct scan.
fn running_extreme(src: &[f32], lanes: usize, k: usize, max: bool, out: &mut [f32]) {
    if max {
        running_extreme_by(src, lanes, k, f32::NEG_INFINITY, f32::max, out)
    } else {
        running_extreme_by(src, lanes, k, f32::INFINITY, f32::min, out)
    }
}

fn running_extreme_by(
    src: &[f32],
    lanes: usize,
    k: usize,
    neutral: f32,
    pick: impl Fn(f32, f32) -> f32 + Copy,
    out: &mut [f32],
) {
    let n = src.len() / lanes;
    let r = k / 2;
    let k = 2 * r + 1;
    // Row p of the padded sequence: r neutral rows, the n rows of `src`, r neutral rows.
    let padded = n + 2 * r;
    let row = |p: usize| (p >= r && p < r + n).then(|| &src[(p - r) * lanes..][..lanes]);
    let mut ahead = vec![neutral; padded * lanes];
    let mut behind = vec![neutral; padded * lanes];
    for p in 0..padded {
        let (done, rest) = ahead.split_at_mut(p * lanes);
        let here = &mut rest[..lanes];
        let start = p % k == 0;
        match (row(p), start) {
            (Some(v), true) => here.copy_from_slice(v),
            (Some(v), false) => {
                let prev = &done[(p - 1) * lanes..];
                for ((h, &a), &b) in here.iter_mut().zip(prev).zip(v) {
                    *h = pick(a, b);
                }
            }
            (None, false) => here.copy_from_slice(&done[(p - 1) * lanes..][..lanes]),
            (None, true) => {}
        }
    }
    for p in (0..padded).rev() {
        let (here, after) = behind.split_at_mut((p + 1) * lanes);
        let here = &mut here[p * lanes..];
        let end = p % k == k - 1 || p == padded - 1;
        match (row(p), end) {
            (Some(v), true) => here.copy_from_slice(v),
            (Some(v), false) => {
                for ((h, &a), &b) in here.iter_mut().zip(&after[..lanes]).zip(v) {
                    *h = pick(a, b);
                }
            }
            (None, false) => here.copy_from_slice(&after[..lanes]),
            (None, true) => {}
        }
    }
    // The window of row i covers padded rows i ..= i + k - 1.
    for (i, o) in out.chunks_exact_mut(lanes).enumerate() {
        let first = &behind[i * lanes..][..lanes];
        let last = &ahead[(i + k - 1) * lanes..][..lanes];
        for ((o, &a), &b) in o.iter_mut().zip(first).zip(last) {
            *o = pick(a, b);
        }
    }
}

/// Minimum (or maximum) over `k × k` squares, separably: down the columns, then (transposed,
/// so that both passes run over whole rows at once) along the rows.
fn square_extreme(g: &Grey, k: usize, max: bool) -> Grey {
    let (w, h) = (g.width, g.height);
    let mut columns = vec![0.0f32; w * h];
    running_extreme(&g.data, w, k, max, &mut columns);
    let across = transpose(&columns, w, h);
    let mut rows = vec![0.0f32; w * h];
    running_extreme(&across, h, k, max, &mut rows);
    Grey {
        width: w,
        height: h,
        data: transpose(&rows, h, w),
    }
}

/// `src` (`h` rows of `w`) transposed: `w` rows of `h`.
fn transpose(src: &[f32], w: usize, h: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; w * h];
    const TILE: usize = 32;
    for y0 in (0..h).step_by(TILE) {
        for x0 in (0..w).step_by(TILE) {
            for y in y0..(y0 + TILE).min(h) {
                for x in x0..(x0 + TILE).min(w) {
                    out[x * h + y] = src[y * w + x];
                }
            }
        }
    }
    out
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
        hist[bin(x, BINS)] += 1.0;
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
    // A ring of `inf` around the picture stands for "no neighbour there", so that the passes
    // need no test at the edges.
    let pw = width + 2;
    let mut d = vec![inf; pw * (height + 2)];
    for (row, m) in d[pw..].chunks_exact_mut(pw).zip(mask.chunks_exact(width)) {
        for (v, &m) in row[1..].iter_mut().zip(m) {
            *v = if m == target { 0 } else { inf };
        }
    }
    // Each pass takes the three neighbours in the row already done for a whole row at once,
    // then runs along the row for the neighbour just done.
    for y in 1..=height {
        let (done, rest) = d.split_at_mut(y * pw);
        let above = &done[(y - 1) * pw..];
        let row = &mut rest[..pw];
        for (v, a) in row[1..=width].iter_mut().zip(above.windows(3)) {
            *v = (*v).min(a[1] + 3).min(a[0] + 4).min(a[2] + 4);
        }
        let mut left = row[0];
        for v in &mut row[1..=width] {
            left = (*v).min(left + 3);
            *v = left;
        }
    }
    for y in (1..=height).rev() {
        let (rest, done) = d.split_at_mut((y + 1) * pw);
        let below = &done[..pw];
        let row = &mut rest[y * pw..];
        for (v, b) in row[1..=width].iter_mut().zip(below.windows(3)) {
            *v = (*v).min(b[1] + 3).min(b[2] + 4).min(b[0] + 4);
        }
        let mut right = row[width + 1];
        for v in row[1..=width].iter_mut().rev() {
            right = (*v).min(right + 3);
            *v = right;
        }
    }
    let mut out = Vec::with_capacity(width * height);
    for row in d.chunks_exact(pw).skip(1).take(height) {
        out.extend(row[1..=width].iter().map(|&v| v as f32 / 3.0));
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Values from a fixed sequence, with runs of equal ones as paper has.
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let v = (s >> 40) as f32 / (1u64 << 24) as f32;
                if v < 0.3 { 0.25 } else { v }
            })
            .collect()
    }

    #[test]
    fn running_extreme_is_the_extreme_of_each_clamped_window() {
        for (n, lanes, k) in [
            (1, 1, 1),
            (7, 1, 3),
            (10, 3, 5),
            (13, 2, 31),
            (40, 1, 15),
            (9, 4, 9),
        ] {
            let src = values(n * lanes, (n * 31 + k) as u64);
            for max in [false, true] {
                let mut out = vec![f32::NAN; n * lanes];
                running_extreme(&src, lanes, k, max, &mut out);
                let r = k / 2;
                for i in 0..n {
                    for l in 0..lanes {
                        let window = i.saturating_sub(r)..=(i + r).min(n - 1);
                        let it = window.map(|j| src[j * lanes + l]);
                        let want = if max {
                            it.fold(f32::MIN, f32::max)
                        } else {
                            it.fold(f32::MAX, f32::min)
                        };
                        assert_eq!(
                            out[i * lanes + l],
                            want,
                            "n {n} lanes {lanes} k {k} max {max} row {i}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn square_extreme_is_the_extreme_of_each_clamped_square() {
        let (w, h, k) = (17, 11, 5);
        let g = Grey {
            width: w,
            height: h,
            data: values(w * h, 7),
        };
        let got = square_extreme(&g, k, false);
        for y in 0..h {
            for x in 0..w {
                let mut want = f32::MAX;
                for yy in y.saturating_sub(2)..=(y + 2).min(h - 1) {
                    for xx in x.saturating_sub(2)..=(x + 2).min(w - 1) {
                        want = want.min(g.data[yy * w + xx]);
                    }
                }
                assert_eq!(got.data[y * w + x], want, "({x}, {y})");
            }
        }
    }

    #[test]
    fn histogram_bins_round_as_f32_round_does() {
        let mut v = values(1001, 3);
        // Values on and just beside the halfway points between bins, and the ends.
        for b in [0usize, 1, 2047, 4094] {
            let half = (b as f32 + 0.5) / 4095.0;
            v.extend([
                half,
                f32::from_bits(half.to_bits() - 1),
                f32::from_bits(half.to_bits() + 1),
            ]);
        }
        v.extend([0.0, 1.0, -0.5, 1.5]);
        for &x in &v {
            let want = (x.clamp(0.0, 1.0) * 4095.0).round() as usize;
            assert_eq!(bin(x, QUANTILE_BINS), want, "{x}");
        }
        let hist = histogram(&v);
        assert_eq!(hist.iter().sum::<usize>(), v.len());
        for b in 0..QUANTILE_BINS {
            let n = v
                .iter()
                .filter(|&&x| (x.clamp(0.0, 1.0) * 4095.0).round() as usize == b)
                .count();
            assert_eq!(hist[b], n, "bin {b}");
        }
    }

    #[test]
    fn distance_is_the_chamfer_distance_of_a_direct_scan() {
        let (w, h) = (23, 14);
        let mask: Vec<bool> = values(w * h, 11).iter().map(|&v| v > 0.9).collect();
        for target in [true, false] {
            let got = distance_to(&mask, w, target);
            // Two raster scans with every neighbour tested at the edges.
            let inf = u32::MAX / 2;
            let mut d: Vec<u32> = mask.iter().map(|&m| if m == target { 0 } else { inf }).collect();
            let near = |d: &[u32], x: usize, y: usize, dx: isize, dy: isize, cost: u32| {
                let (nx, ny) = (x as isize + dx, y as isize + dy);
                if nx < 0 || ny < 0 || nx >= w as isize || ny >= h as isize {
                    inf
                } else {
                    d[ny as usize * w + nx as usize] + cost
                }
            };
            for y in 0..h {
                for x in 0..w {
                    let v = [(-1, 0, 3), (0, -1, 3), (-1, -1, 4), (1, -1, 4)]
                        .iter()
                        .map(|&(dx, dy, c)| near(&d, x, y, dx, dy, c))
                        .fold(d[y * w + x], u32::min);
                    d[y * w + x] = v;
                }
            }
            for y in (0..h).rev() {
                for x in (0..w).rev() {
                    let v = [(1, 0, 3), (0, 1, 3), (1, 1, 4), (-1, 1, 4)]
                        .iter()
                        .map(|&(dx, dy, c)| near(&d, x, y, dx, dy, c))
                        .fold(d[y * w + x], u32::min);
                    d[y * w + x] = v;
                }
            }
            let want: Vec<f32> = d.iter().map(|&v| v as f32 / 3.0).collect();
            assert_eq!(got, want, "target {target}");
        }
    }
}
