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
/// rounded up, as `f32::round` does. Written with selects, an addition and integer bits (no
/// float-to-integer conversion, which Rust saturates and x86's baseline cannot do on vectors,
/// and no call to the C library's `roundf`), so that a loop over many values is vectorised.
fn bin(x: f32, bins: usize) -> usize {
    // `x.clamp(0.0, 1.0)`, with NaN (which `clamp` keeps, and which then falls in bin 0) made 0
    // at once, in a form the compiler turns into branch-free selects.
    let x = if x > 0.0 { x } else { 0.0 };
    let x = if x < 1.0 { x } else { 1.0 };
    let v = x * (bins - 1) as f32;
    // Adding 2^23 rounds `v` (far below 2^23) to the nearest integer, halves to even, exactly;
    // the integer is then the low bits of the sum. A half rounded down (to even) goes up.
    const MAGIC: f32 = 8_388_608.0;
    let sum = v + MAGIC;
    let nearest = sum.to_bits() - MAGIC.to_bits();
    (nearest + u32::from(v - (sum - MAGIC) >= 0.5)) as usize
}

/// How many of `v` fall in each of [`QUANTILE_BINS`] bins spread evenly over 0–1.
fn histogram(v: &[f32]) -> Vec<usize> {
    // The bins of a chunk are found first (a loop the compiler vectorises), then counted in
    // four partial histograms in turn, so that a run of equal values (the paper) does not make
    // every increment wait for the one before. A bin is below QUANTILE_BINS, a power of two:
    // `% QUANTILE_BINS` tells the compiler so, and costs nothing.
    let mut part = vec![[0u32; QUANTILE_BINS]; 4];
    let mut bins = [0u16; 256];
    for chunk in v.chunks(bins.len()) {
        for (b, &x) in bins.iter_mut().zip(chunk) {
            *b = bin(x, QUANTILE_BINS) as u16;
        }
        let quads = bins[..chunk.len()].chunks_exact(4);
        for &b in quads.remainder() {
            part[0][usize::from(b) % QUANTILE_BINS] += 1;
        }
        for quad in quads {
            for (p, &b) in part.iter_mut().zip(quad) {
                p[usize::from(b) % QUANTILE_BINS] += 1;
            }
        }
    }
    (0..QUANTILE_BINS)
        .map(|b| part.iter().map(|p| p[b] as usize).sum())
        .collect()
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
    if b >= 0.25 {
        return true;
    }
    let hist = histogram(&g.data);
    let lo = quantile_of(&hist, g.data.len(), 0.001);
    let hi = quantile_of(&hist, g.data.len(), 0.999);
    hi - b <= 2.0 * (b - lo)
}

/// The taps of a Gaussian of standard deviation `sigma` pixels, out to 3σ either side,
/// summing to 1.
fn gaussian(sigma: f32) -> Vec<f32> {
    let rad = (3.0 * sigma).ceil() as isize;
    let k: Vec<f32> = (-rad..=rad)
        .map(|i| (-((i * i) as f32) / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f32 = k.iter().sum();
    k.iter().map(|v| v / sum).collect()
}

/// Separable Gaussian blur with standard deviation `sigma` pixels, edges extended.
pub fn blur(g: &Grey, sigma: f32) -> Grey {
    let k = gaussian(sigma);
    let (w, h) = (g.width, g.height);
    let r = k.len() / 2;
    // Along each row, its ends extended, from -0.0 (as `Iterator::sum` does): tap j of output
    // x reads padded[x + j].
    let mut tmp = vec![0.0f32; w * h];
    let mut padded = vec![0.0f32; w + 2 * r];
    for (src, out) in g.data.chunks_exact(w).zip(tmp.chunks_exact_mut(w)) {
        padded[..r].fill(src[0]);
        padded[r..r + w].copy_from_slice(src);
        padded[r + w..].fill(src[w - 1]);
        blur_pass(out, &k, |j| &padded[j..], -0.0);
    }
    // Down each column, its ends extended, from 0.0: tap j of row y reads row y + j - r.
    let mut data = vec![0.0f32; w * h];
    for (y, out) in data.chunks_exact_mut(w).enumerate() {
        let row = |j: usize| {
            let yy = (y + j).saturating_sub(r).min(h - 1);
            &tmp[yy * w..][..w]
        };
        blur_pass(out, &k, row, 0.0);
    }
    Grey {
        width: g.width,
        height: g.height,
        data,
    }
}

/// One pass of [`blur`]: output x of `out` is the sum of `k[j] · row(j)[x]` over the taps j,
/// in order from `zero`, taken [`LANES`] outputs at a time in registers.
fn blur_pass<'a>(out: &mut [f32], k: &[f32], row: impl Fn(usize) -> &'a [f32], zero: f32) {
    let whole = out.len() / LANES * LANES;
    for (x, o) in (0..whole).step_by(LANES).zip(out.chunks_exact_mut(LANES)) {
        let mut acc = [zero; LANES];
        for (j, &kv) in k.iter().enumerate() {
            let v: &[f32; LANES] = row(j)[x..][..LANES].try_into().expect("LANES values");
            for (a, &v) in acc.iter_mut().zip(v) {
                *a += kv * v;
            }
        }
        o.copy_from_slice(&acc);
    }
    for (x, o) in out.iter_mut().enumerate().skip(whole) {
        *o = k
            .iter()
            .enumerate()
            .fold(zero, |acc, (j, &kv)| acc + kv * row(j)[x]);
    }
}

/// How many outputs [`blur_pass`] computes at once.
const LANES: usize = 8;

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
/// lighting gradient and the edges of shadows. Each square is taken separably, down the columns
/// and along the rows; the rows' two passes run on the picture transposed, so that every pass
/// runs over whole rows at once.
pub fn background(g: &Grey, k: usize) -> Grey {
    let (w, h) = (g.width, g.height);
    let mut a = vec![0.0f32; w * h];
    running_extreme(&g.data, w, k, false, &mut a);
    let mut across = transpose(&a, w, h);
    running_extreme(&across, h, k, false, &mut a);
    running_extreme(&a, h, k, true, &mut across);
    let down = transpose(&across, h, w);
    running_extreme(&down, w, k, true, &mut a);
    Grey {
        width: w,
        height: h,
        data: a,
    }
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
    let joined = within(mask, width, join / 2.0);
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

/// The pixels of `mask` (a `width`-wide picture) and those within chamfer distance `reach`
/// of one ([`distance_to`]). A reach under 4/3 takes in no diagonal neighbour (4/3 away) and
/// no pixel two steps away (2 or more): then the pixels within it are those of `mask` and, from
/// a reach of 1, their four direct neighbours, found without the distance transform.
fn within(mask: &[bool], width: usize, reach: f32) -> Vec<bool> {
    if reach >= 4.0 / 3.0 {
        return distance_to(mask, width, true)
            .iter()
            .map(|&d| d <= reach)
            .collect();
    }
    let mut out = mask.to_vec();
    if reach < 1.0 {
        return out;
    }
    let rows: Vec<&[bool]> = mask.chunks_exact(width).collect();
    for (y, o) in out.chunks_exact_mut(width).enumerate() {
        let row = rows[y];
        for (o, &left) in o[1..].iter_mut().zip(row) {
            *o |= left;
        }
        for (o, &right) in o.iter_mut().zip(&row[1..]) {
            *o |= right;
        }
        let near = [y.checked_sub(1), Some(y + 1)];
        for other in near.into_iter().flatten().filter_map(|n| rows.get(n)) {
            for (o, &m) in o.iter_mut().zip(other.iter()) {
                *o |= m;
            }
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
    fn background_is_the_opening_over_clamped_squares() {
        let (w, h, k) = (17, 11, 5);
        let g = Grey {
            width: w,
            height: h,
            data: values(w * h, 7),
        };
        let square = |data: &[f32], x: usize, y: usize, max: bool| {
            let it = (y.saturating_sub(2)..=(y + 2).min(h - 1))
                .flat_map(|yy| (x.saturating_sub(2)..=(x + 2).min(w - 1)).map(move |xx| data[yy * w + xx]));
            if max {
                it.fold(f32::MIN, f32::max)
            } else {
                it.fold(f32::MAX, f32::min)
            }
        };
        let eroded: Vec<f32> = (0..w * h).map(|i| square(&g.data, i % w, i / w, false)).collect();
        let got = background(&g, k);
        for y in 0..h {
            for x in 0..w {
                assert_eq!(got.data[y * w + x], square(&eroded, x, y, true), "({x}, {y})");
            }
        }
    }

    #[test]
    fn blur_sums_the_taps_in_order_as_a_direct_scan_does() {
        // 19 columns: two whole groups of LANES and a remainder.
        let (w, h) = (19, 11);
        let g = Grey {
            width: w,
            height: h,
            data: values(w * h, 9),
        };
        for sigma in [0.8f32, 1.5] {
            let k = gaussian(sigma);
            let rad = (k.len() / 2) as isize;
            let at = |i: isize, n: usize| i.clamp(0, n as isize - 1) as usize;
            let mut across = vec![0.0f32; w * h];
            for y in 0..h {
                for x in 0..w {
                    let mut acc = -0.0f32;
                    for (j, &kv) in k.iter().enumerate() {
                        acc += kv * g.data[y * w + at(x as isize + j as isize - rad, w)];
                    }
                    across[y * w + x] = acc;
                }
            }
            let got = blur(&g, sigma);
            for y in 0..h {
                for x in 0..w {
                    let mut acc = 0.0f32;
                    for (j, &kv) in k.iter().enumerate() {
                        acc += kv * across[at(y as isize + j as isize - rad, h) * w + x];
                    }
                    assert_eq!(
                        got.data[y * w + x].to_bits(),
                        acc.to_bits(),
                        "sigma {sigma} ({x}, {y})"
                    );
                }
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
    fn a_short_reach_takes_the_pixels_the_distance_transform_does() {
        let (w, h) = (23, 14);
        let mask: Vec<bool> = values(w * h, 5).iter().map(|&v| v > 0.93).collect();
        for reach in [0.0, 0.5, 1.0, 1.2, 4.0 / 3.0, 2.0, 3.5] {
            let want: Vec<bool> = distance_to(&mask, w, true).iter().map(|&d| d <= reach).collect();
            assert_eq!(within(&mask, w, reach), want, "reach {reach}");
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
