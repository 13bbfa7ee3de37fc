//! From an arbitrary picture of a digit (a drawing, a scan, a photo of paper) to the 28×28
//! input an MNIST network expects, made the way MNIST itself was made (LeCun et al.: NIST's digits were size-normalised to fit a 20×20
//! box keeping their aspect ratio, anti-aliased, then centred by their centre of mass in a
//! 28×28 field). [`preprocess`] is a pure function of the decoded image, so the CLI, tests and
//! a server share it. Its steps, in order:
//!
//! 1. **Grey.** Luminance `0.299 R + 0.587 G + 0.114 B` of the stored (gamma-encoded) values,
//!    as PIL's `convert("L")` does, with alpha composited over **white**: a transparent
//!    background is paper, not ink. 8-, 16-bit and float images all map to 0–1.
//! 2. **Polarity.** MNIST digits are white (1) on black (0); the picture is inverted when its
//!    ink is darker than its background (`separate::dark_ink`: the border's median level; a
//!    large picture is taken as dark ink on paper unless its border is really dark).
//! 3. **The digit, found.** A *small* picture (shorter side under 100 pixels: MNIST's own
//!    images, icons, scans) has one background level, the border's mean; levels are stretched
//!    so that it becomes 0 and the strongest ink 1. A *large* one (a photo, the page's canvas)
//!    is reduced to at most 1600 pixels a side, blurred lightly (σ = 0.8 px) against sensor
//!    noise and JPEG blocks, and its background (paper under uneven light, shadows) estimated
//!    by a morphological opening wider than any stroke (1/8 of the longer side) and divided
//!    out. Ink is then what stands above the paper's noise floor: Otsu's threshold among the
//!    marks above the floor, with hysteresis (marks reaching half of it kept down to a quarter
//!    of it). Of the 8-connected marks (a large picture's marks within 0.5% of its side joined),
//!    the digit is the longest one not touching the border (a page edge, the table, a shadow's
//!    corner) with the others near it holding at least 5% of its ink; specks and stray marks
//!    are dropped (`separate::digit_parts`). An image whose ink is less than
//!    [`MIN_CONTRAST`] above its background holds no digit. In a large picture the digit is
//!    then drawn again in a square of [`WORK`] pixels with strokes of MNIST's width
//!    ([`STROKE_SHARE`] of the digit's size), estimated from a distance transform: a thin pen's
//!    lines are thickened, a marker's thinned.
//!    **Crop** to the bounding box of the pixels above [`INK_THRESHOLD`].
//! 4. **Scale** the crop so that its longer side is exactly 20 pixels and the shorter one keeps
//!    the aspect ratio, by area averaging (every output pixel is the mean of the source area it
//!    covers, fractional pixels weighted by coverage): anti-aliased, and it keeps the ink's
//!    centre of mass where it was. Levels are stretched again so that the brightest pixel is 1,
//!    as in nearly every MNIST digit, so that thin strokes do not come out faint.
//! 5. **Centre.** The scaled digit is pasted into a black 28×28 field at the whole-pixel offset
//!    that puts its intensity centre of mass nearest to (row 14, column 14) in pixel indices,
//!    where MNIST's test digits have theirs on average (13.99, 14.01); the offset is clamped so
//!    that the digit stays entirely inside the field.
//!
//! The result is 784 f32 in 0–1, row-major, the same encoding as `data::Split::gather`.
//!
//! Decoding ([`decode_image`], [`load_image`]) refuses empty, unrecognised, truncated and
//! oversized files with an [`Error`] naming the input; the size limits are checked from the
//! header, before the pixels are allocated.

use crate::error::{Error, Result};
use image::{DynamicImage, ImageBuffer, ImageDecoder, ImageEncoder, ImageReader, Limits, Pixel};
use std::path::Path;

mod separate;

/// Side of the network's input field.
pub const SIDE: usize = 28;
/// Pixels of one preprocessed image, `SIDE²`.
pub const PIXELS: usize = SIDE * SIDE;
/// The digit is scaled to fit a box of this side (MNIST: 20).
pub const BOX: usize = 20;
/// A pixel is ink, for the bounding box, when its stretched level exceeds this.
pub const INK_THRESHOLD: f32 = 0.1;
/// Least difference between the strongest ink and the background for an image to hold a digit.
pub const MIN_CONTRAST: f32 = 0.1;

/// Largest width or height accepted.
pub const MAX_SIDE: u32 = 8192;
/// Largest pixel count accepted (40 megapixels).
pub const MAX_PIXELS: u64 = 40_000_000;
/// Largest file read by [`load_image`].
pub const MAX_FILE_BYTES: u64 = 256 << 20;
/// Most memory a decoder may allocate.
const MAX_DECODER_ALLOC: u64 = 512 << 20;

const FORMATS: &str = "PNG, JPEG, BMP, GIF or WebP";

fn image_err(input: &str, msg: impl Into<String>) -> Error {
    Error::Image {
        input: input.to_string(),
        msg: msg.into(),
    }
}

/// Read and decode an image file; every failure names `path`.
pub fn load_image(path: &Path) -> Result<DynamicImage> {
    let name = path.display().to_string();
    let unreadable =
        |e: std::io::Error| image_err(&name, format!("cannot be read ({e}); expected an image file"));
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if meta.is_dir() {
        return Err(image_err(
            &name,
            format!("is a directory; expected an image file ({FORMATS})"),
        ));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(image_err(
            &name,
            format!(
                "is {} bytes; image files over {MAX_FILE_BYTES} bytes are refused",
                meta.len()
            ),
        ));
    }
    let bytes = std::fs::read(path).map_err(unreadable)?;
    decode_image(&bytes, &name)
}

/// Decode an image held in memory (`name` is what error messages call it: a file name, "request
/// body"). The format is recognised from the first bytes, not from a name; EXIF orientation
/// (photos from phones) is applied.
pub fn decode_image(bytes: &[u8], name: &str) -> Result<DynamicImage> {
    if bytes.is_empty() {
        return Err(image_err(
            name,
            format!("is empty; expected an image ({FORMATS})"),
        ));
    }
    let mut reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| image_err(name, format!("could not be read: {e}")))?;
    let Some(format) = reader.format() else {
        return Err(image_err(
            name,
            format!("is not an image in a known format; expected {FORMATS}"),
        ));
    };
    let format_name = format!("{format:?}").to_uppercase();
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODER_ALLOC);
    reader.limits(limits);
    let describe = |e: image::ImageError| -> Error {
        use image::ImageError as E;
        let msg = match e {
            E::Unsupported(e) => format!("{e}; expected {FORMATS}"),
            E::Limits(e) => format!(
                "is too large to decode ({e}); images up to {MAX_SIDE}×{MAX_SIDE} and \
                 {MAX_PIXELS} pixels are accepted"
            ),
            E::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                format!("ends early: not a complete {format_name} file (truncated?)")
            }
            e => format!("is not a valid {format_name} image (corrupt or truncated?): {e}"),
        };
        image_err(name, msg)
    };
    let mut decoder = reader.into_decoder().map_err(describe)?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(image_err(
            name,
            format!("is {w}×{h} pixels; expected a non-empty image"),
        ));
    }
    if w > MAX_SIDE || h > MAX_SIDE || u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(image_err(
            name,
            format!(
                "is {w}×{h} pixels; images up to {MAX_SIDE}×{MAX_SIDE} and {MAX_PIXELS} pixels \
                 are accepted"
            ),
        ));
    }
    let orientation = decoder.orientation().map_err(describe)?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(describe)?;
    img.apply_orientation(orientation);
    Ok(img)
}

/// The number of pixels of the image `bytes` hold, read from its header alone; `None` when
/// the header cannot be read (then [`decode_image`] fails as early).
pub fn image_pixels(bytes: &[u8]) -> Option<u64> {
    let (w, h) = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .ok()?
        .into_dimensions()
        .ok()?;
    Some(u64::from(w) * u64::from(h))
}

/// A grey image as f32, row-major.
struct Grey {
    width: usize,
    height: usize,
    data: Vec<f32>,
}

/// Step 1: luminance in 0–1 with alpha composited over white, for any channel layout and depth.
fn grey_over_white<P>(buf: &ImageBuffer<P, Vec<P::Subpixel>>) -> Vec<f32>
where
    P: Pixel,
    P::Subpixel: Into<f32>,
{
    let max: f32 = <P::Subpixel as image::Primitive>::DEFAULT_MAX_VALUE.into();
    let unit = |v: P::Subpixel| -> f32 { (v.into() / max).clamp(0.0, 1.0) };
    let luma = |r: f32, g: f32, b: f32| 0.299 * r + 0.587 * g + 0.114 * b;
    buf.pixels()
        .map(|p| {
            let c = p.channels();
            let (value, alpha) = match c.len() {
                1 => (unit(c[0]), 1.0),
                2 => (unit(c[0]), unit(c[1])),
                3 => (luma(unit(c[0]), unit(c[1]), unit(c[2])), 1.0),
                _ => (luma(unit(c[0]), unit(c[1]), unit(c[2])), unit(c[3])),
            };
            alpha * value + (1.0 - alpha)
        })
        .collect()
}

fn to_grey(img: &DynamicImage) -> Grey {
    use DynamicImage as D;
    let data = match img {
        D::ImageLuma8(b) => grey_over_white(b),
        D::ImageLumaA8(b) => grey_over_white(b),
        D::ImageRgb8(b) => grey_over_white(b),
        D::ImageRgba8(b) => grey_over_white(b),
        D::ImageLuma16(b) => grey_over_white(b),
        D::ImageLumaA16(b) => grey_over_white(b),
        D::ImageRgb16(b) => grey_over_white(b),
        D::ImageRgba16(b) => grey_over_white(b),
        D::ImageRgb32F(b) => grey_over_white(b),
        D::ImageRgba32F(b) => grey_over_white(b),
        other => grey_over_white(&other.to_rgba32f()),
    };
    Grey {
        width: img.width() as usize,
        height: img.height() as usize,
        data,
    }
}

/// Mean of the outermost ring of pixels.
fn border_mean(g: &Grey) -> f32 {
    let (w, h) = (g.width, g.height);
    let mut sum = 0.0f64;
    let mut n = 0usize;
    for y in 0..h {
        let row = &g.data[y * w..(y + 1) * w];
        if y == 0 || y == h - 1 {
            sum += row.iter().map(|&v| f64::from(v)).sum::<f64>();
            n += w;
        } else {
            sum += f64::from(row[0]);
            n += 1;
            if w > 1 {
                sum += f64::from(row[w - 1]);
                n += 1;
            }
        }
    }
    (sum / n as f64) as f32
}

/// Step 3: the bounding box of the ink as (left, top, width, height).
fn ink_box(g: &Grey) -> Option<(usize, usize, usize, usize)> {
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
    for (y, row) in g.data.chunks_exact(g.width).enumerate() {
        for (x, &v) in row.iter().enumerate() {
            if v > INK_THRESHOLD {
                x0 = x0.min(x);
                x1 = x1.max(x);
                y0 = y0.min(y);
                y1 = y1.max(y);
            }
        }
    }
    (x0 != usize::MAX).then(|| (x0, y0, x1 - x0 + 1, y1 - y0 + 1))
}

/// Area-averaging weights from `len_in` source pixels to `len_out` output pixels: for each
/// output pixel, the source pixels it covers with their share of its area (summing to 1).
fn area_weights(len_in: usize, len_out: usize) -> Vec<Vec<(usize, f32)>> {
    let ratio = len_in as f64 / len_out as f64;
    (0..len_out)
        .map(|i| {
            let (lo, hi) = (i as f64 * ratio, (i + 1) as f64 * ratio);
            let first = lo.floor() as usize;
            let last = (hi.ceil() as usize).min(len_in);
            (first..last)
                .filter_map(|j| {
                    let overlap = (hi.min(j as f64 + 1.0) - lo.max(j as f64)) / ratio;
                    (overlap > 1e-9).then_some((j, overlap as f32))
                })
                .collect()
        })
        .collect()
}

/// Step 4: the crop `(left, top, w, h)` of `g`, scaled by area averaging to `out_w × out_h`.
fn scale_area(g: &Grey, (left, top, w, h): (usize, usize, usize, usize), out_w: usize, out_h: usize) -> Grey {
    let wx = area_weights(w, out_w);
    let wy = area_weights(h, out_h);
    // Horizontal pass over the crop's rows: (h, out_w).
    let mut rows = vec![0.0f32; h * out_w];
    for y in 0..h {
        let src = &g.data[(top + y) * g.width + left..][..w];
        for (dst, weights) in rows[y * out_w..(y + 1) * out_w].iter_mut().zip(&wx) {
            *dst = weights.iter().map(|&(j, k)| src[j] * k).sum();
        }
    }
    // Vertical pass: (out_h, out_w).
    let mut data = vec![0.0f32; out_h * out_w];
    for (oy, weights) in wy.iter().enumerate() {
        let dst = &mut data[oy * out_w..(oy + 1) * out_w];
        for &(j, k) in weights {
            for (d, &s) in dst.iter_mut().zip(&rows[j * out_w..(j + 1) * out_w]) {
                *d += s * k;
            }
        }
    }
    Grey {
        width: out_w,
        height: out_h,
        data,
    }
}

/// Intensity centre of mass (row, column) in pixel indices.
fn centre_of_mass(g: &Grey) -> (f64, f64) {
    let (mut m, mut my, mut mx) = (0.0f64, 0.0f64, 0.0f64);
    for (y, row) in g.data.chunks_exact(g.width).enumerate() {
        for (x, &v) in row.iter().enumerate() {
            let v = f64::from(v);
            m += v;
            my += v * y as f64;
            mx += v * x as f64;
        }
    }
    (my / m, mx / m)
}

/// Side of the square in which a large picture's digit is drawn again with strokes of
/// MNIST's width (4 × [`BOX`]), before it is scaled to the box.
pub const WORK: usize = 4 * BOX;
/// MNIST's stroke width as a share of the longer side of the digit's box: its strokes are
/// about 2.6 pixels wide in the 20-pixel box.
pub const STROKE_SHARE: f32 = 0.13;

/// The digit of a picture, found: either the ink levels of a small picture with everything
/// that is not the digit removed, or, for a large one, the digit's strokes drawn again in
/// white on black at MNIST's stroke width in a square of about [`WORK`] pixels.
fn find_digit(g: Grey) -> Result<Grey> {
    let mut g = g;
    let small = g.width.min(g.height) < separate::SMALL_SIDE;
    let dark = separate::dark_ink(&g, small);
    if dark {
        for v in &mut g.data {
            *v = 1.0 - *v;
        }
    }
    // Ink levels: 0 on the background, 1 for the strongest ink; and the levels a mark must
    // reach to be ink (`low`) and, somewhere, to be a stroke (`high`).
    let (ink, low, high) = if small {
        drawing_levels(g)?
    } else {
        photo_levels(g, dark)?
    };
    let mask: Vec<bool> = ink.data.iter().map(|&v| v > low).collect();
    // Marks within 1% of the border are the page's edge, the table or a shadow's corner
    // (where the background's window cannot follow the light), not the digit.
    let margin = if small { 0 } else { ink.width.max(ink.height) / 100 };
    // In a large picture, marks closer than 0.5% of its side are one (a faint line's gaps).
    let join = if small {
        0.0
    } else {
        (ink.width.max(ink.height) as f32 / 200.0).max(2.0)
    };
    let comps = separate::components(&mask, &ink.data, ink.width, high, join, margin);
    let parts = separate::digit_parts(&comps);
    if parts.is_empty() {
        return Err(Error::NoDigit("nothing stands out from the background".into()));
    }
    if small {
        // Only what is not the digit is removed: the faint edges of its strokes stay.
        let mut ink = ink;
        for (i, c) in comps.iter().enumerate() {
            if !parts.contains(&i) {
                for &p in &c.pixels {
                    ink.data[p] = 0.0;
                }
            }
        }
        return Ok(ink);
    }
    let mut digit = vec![false; mask.len()];
    for &i in &parts {
        for &p in &comps[i].pixels {
            digit[p] = true;
        }
    }
    Ok(redraw_strokes(&digit, ink.width))
}

/// The error for a picture whose strongest mark stands out from the background by `contrast`.
fn no_digit(contrast: f32) -> Error {
    Error::NoDigit(format!(
        "nothing stands out from the background (the strongest mark differs from it by \
         {:.0}%; a digit needs at least {:.0}%)",
        100.0 * contrast.max(0.0),
        100.0 * MIN_CONTRAST
    ))
}

/// A small picture's ink levels (`g` bright ink on a background): a drawing or a scan, whose
/// background is the border's level, as one colour (MNIST's own images have a black border
/// of 0). Returns the levels and the ink and stroke thresholds.
fn drawing_levels(mut g: Grey) -> Result<(Grey, f32, f32)> {
    let background = border_mean(&g);
    let max = g.data.iter().copied().fold(0.0f32, f32::max);
    let contrast = max - background;
    if contrast < MIN_CONTRAST {
        return Err(no_digit(contrast));
    }
    for v in &mut g.data {
        *v = ((*v - background) / contrast).clamp(0.0, 1.0);
    }
    Ok((g, INK_THRESHOLD, 0.5))
}

/// A photo's ink levels (`g` bright ink; `dark`: it was dark ink on lighter paper). A light
/// blur takes the sensor's noise and JPEG's blocks out of the levels; the background (paper
/// under uneven light, shadows) is estimated by an opening wider than any stroke and divided
/// out (light falls on ink and paper alike). Returns the levels and the ink and stroke
/// thresholds.
fn photo_levels(g: Grey, dark: bool) -> Result<(Grey, f32, f32)> {
    let g = separate::blur(&g, 0.8);
    let k = (g.width.max(g.height) / 8) | 1;
    let bg = separate::background(&g, k);
    let mut t = g;
    for (v, &b) in t.data.iter_mut().zip(&bg.data) {
        let paper = if dark { 1.0 - b } else { 1.0 };
        *v = ((*v - b) / paper.max(0.05)).clamp(0.0, 1.0);
    }
    let max = t.data.iter().copied().fold(0.0f32, f32::max);
    if max < MIN_CONTRAST {
        return Err(no_digit(max));
    }
    for v in &mut t.data {
        *v /= max;
    }
    // The paper's noise floor (median + 6 robust standard deviations); above it, Otsu's
    // threshold between faint and strong marks. Hysteresis: a mark is kept when part of it
    // reaches half of Otsu's level (and twice the floor), and whole down to a quarter of it,
    // so that thin and faint pens stay joined.
    let median = separate::quantile(&t.data, 0.5);
    let dev: Vec<f32> = t.data.iter().map(|v| (v - median).abs()).collect();
    let floor = median + 6.0 * 1.4826 * separate::quantile(&dev, 0.5) + 0.02;
    let above: Vec<f32> = t.data.iter().copied().filter(|&v| v > floor).collect();
    let level = separate::otsu(&above);
    Ok((t, (0.25 * level).max(floor), (0.5 * level).max(2.0 * floor)))
}

/// The digit in `mask` (a `width`-wide picture) in a square of about [`WORK`] pixels, with
/// its strokes made MNIST's width: a thin pen's lines thickened, a marker's thinned.
fn redraw_strokes(mask: &[bool], width: usize) -> Grey {
    let bin = Grey {
        width,
        height: mask.len() / width,
        data: mask.iter().map(|&m| if m { 1.0 } else { 0.0 }).collect(),
    };
    let (left, top, w, h) = ink_box(&bin).expect("the digit has pixels");
    let crop: Vec<bool> = (top..top + h)
        .flat_map(|y| mask[y * width + left..][..w].iter().copied())
        .collect();
    let f = WORK as f32 / w.max(h) as f32;
    let stroke = separate::stroke_width(&crop, w) * f;
    let target = STROKE_SHARE * WORK as f32;
    let pad = target.ceil() as usize + 2;
    let (cw, ch) = (
        ((w as f32 * f).round() as usize).max(1),
        ((h as f32 * f).round() as usize).max(1),
    );
    let coverage = scale_area(&bin, (left, top, w, h), cw, ch);
    // A line thinner than a pixel of the square is kept wherever it touches one, so that it
    // stays joined.
    let level = if stroke < 1.5 { 0.0 } else { 0.5 };
    let (sw, sh) = (cw + 2 * pad, ch + 2 * pad);
    let mut square = vec![false; sw * sh];
    for y in 0..ch {
        for x in 0..cw {
            square[(y + pad) * sw + x + pad] = coverage.data[y * cw + x] > level;
        }
    }
    let redrawn: Vec<bool> = if stroke < target {
        let r = (target - stroke.max(1.0)) / 2.0;
        separate::distance_to(&square, sw, true)
            .iter()
            .map(|&d| d <= r)
            .collect()
    } else {
        let r = (stroke - target) / 2.0;
        let eroded: Vec<bool> = separate::distance_to(&square, sw, false)
            .iter()
            .map(|&d| d > r)
            .collect();
        if eroded.iter().any(|&m| m) {
            eroded
        } else {
            square.clone()
        }
    };
    Grey {
        width: sw,
        height: sh,
        data: redrawn.iter().map(|&m| if m { 1.0 } else { 0.0 }).collect(),
    }
}

/// A picture reduced by area averaging so that its longer side is at most
/// [`separate::MAX_WORK_SIDE`].
fn reduce(g: Grey) -> Grey {
    let side = g.width.max(g.height);
    if side <= separate::MAX_WORK_SIDE {
        return g;
    }
    let f = separate::MAX_WORK_SIDE as f64 / side as f64;
    let w = ((g.width as f64 * f).round() as usize).max(1);
    let h = ((g.height as f64 * f).round() as usize).max(1);
    scale_area(&g, (0, 0, g.width, g.height), w, h)
}

/// Have the C library's allocator (glibc's) keep the memory that preparing pictures frees,
/// for the next picture, instead of handing it back to the kernel. A photo's preparation
/// allocates and frees buffers of megabytes, step after step; with glibc's defaults each is
/// mapped afresh and its pages faulted in again, a large share of the preparation's time.
/// Buffers under 32 MiB (every working picture, at most 1600 pixels a side) then come from
/// the heap, and up to 64 MiB of free heap is kept.
/// Process-wide: `predict` and `serve` call it before preparing pictures. Elsewhere it does
/// nothing.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets two of the allocator's parameters; any value is allowed.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

/// The 784 network inputs (28×28, row-major, white digit on black, 0–1) for a picture of one
/// digit: the steps of the [module documentation](self). Fails with [`Error::NoDigit`]
/// when the image has no pixels or nothing that stands out from its background.
pub fn preprocess(img: &DynamicImage) -> Result<[f32; PIXELS]> {
    if img.width() == 0 || img.height() == 0 {
        return Err(Error::NoDigit(format!(
            "the image is {}×{} pixels",
            img.width(),
            img.height()
        )));
    }
    let g = find_digit(reduce(to_grey(img)))?;
    Ok(fit_and_centre(&g))
}

/// Crop to the ink's box, scale it to fit [`BOX`], stretch its levels, and place it by its
/// centre of mass in the 28×28 field.
fn fit_and_centre(g: &Grey) -> [f32; PIXELS] {
    let bbox = ink_box(g).expect("the digit has ink");
    let (_, _, w, h) = bbox;
    let scale = BOX as f64 / w.max(h) as f64;
    let out_w = ((w as f64 * scale).round() as usize).clamp(1, BOX);
    let out_h = ((h as f64 * scale).round() as usize).clamp(1, BOX);
    let mut digit = scale_area(g, bbox, out_w, out_h);
    let max = digit.data.iter().copied().fold(0.0f32, f32::max);
    if max > 0.0 {
        for v in &mut digit.data {
            *v = (*v / max).min(1.0);
        }
    }
    let (cy, cx) = centre_of_mass(&digit);
    let half = (SIDE / 2) as f64;
    let top = (half - cy).round().clamp(0.0, (SIDE - out_h) as f64) as usize;
    let left = (half - cx).round().clamp(0.0, (SIDE - out_w) as f64) as usize;
    let mut out = [0.0f32; PIXELS];
    for (y, row) in digit.data.chunks_exact(out_w).enumerate() {
        out[(top + y) * SIDE + left..][..out_w].copy_from_slice(row);
    }
    out
}

/// A grey PNG of `pixels` (0–1, row-major, `width × height`), as the network sees them: white
/// digit on black.
pub fn encode_png(pixels: &[f32], width: usize, height: usize) -> Vec<u8> {
    assert_eq!(pixels.len(), width * height);
    let bytes: Vec<u8> = pixels
        .iter()
        .map(|&v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect();
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(&bytes, width as u32, height as u32, image::ExtendedColorType::L8)
        .expect("encoding a grey image into memory cannot fail");
    png
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Luma, Rgba, RgbaImage};

    fn com(x: &[f32]) -> (f64, f64) {
        centre_of_mass(&Grey {
            width: SIDE,
            height: SIDE,
            data: x.to_vec(),
        })
    }

    /// (left, top, width, height) of the pixels above `t`.
    fn bbox(x: &[f32], t: f32) -> (usize, usize, usize, usize) {
        let g = Grey {
            width: SIDE,
            height: SIDE,
            data: x.iter().map(|&v| if v > t { 1.0 } else { 0.0 }).collect(),
        };
        ink_box(&g).expect("ink")
    }

    /// A black "7"-like stroke on white paper, in the top-left corner of a 120×90 page.
    fn off_centre_seven() -> DynamicImage {
        let mut img = GrayImage::from_pixel(120, 90, Luma([235]));
        for y in 8..14 {
            for x in 10..50 {
                img.put_pixel(x, y, Luma([20]));
            }
        }
        for y in 14..60 {
            let x0 = 44 - (y - 14) / 2;
            for x in x0..x0 + 6 {
                img.put_pixel(x, y, Luma([20]));
            }
        }
        DynamicImage::ImageLuma8(img)
    }

    #[test]
    fn black_on_white_off_centre_digit_comes_out_mnist_like() {
        let x = preprocess(&off_centre_seven()).unwrap();
        assert_eq!(x.len(), 28 * 28);
        assert!(x.iter().all(|v| (0.0..=1.0).contains(v)));
        // White on black: the corners are background, the strokes are bright.
        for i in [0, 27, 28 * 27, 28 * 28 - 1] {
            assert_eq!(x[i], 0.0, "corner {i} should be black");
        }
        assert_eq!(x.iter().copied().fold(0.0, f32::max), 1.0);
        let (cy, cx) = com(&x);
        assert!(
            (cy - 14.0).abs() <= 1.0 && (cx - 14.0).abs() <= 1.0,
            "centre of mass ({cy}, {cx})"
        );
        let (_, _, w, h) = bbox(&x, 0.0);
        assert!(w <= 20 && h <= 20, "bounding box {w}×{h}");
        assert_eq!(w.max(h), 20, "the longer side fills the 20-pixel box");
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    #[test]
    fn polarity_depth_and_colour_do_not_matter() {
        let dark = preprocess(&off_centre_seven()).unwrap();
        let mut inverted = off_centre_seven();
        inverted.invert();
        let cases = [
            ("white on black", inverted),
            ("RGB", DynamicImage::ImageRgb8(off_centre_seven().to_rgb8())),
            (
                "16-bit RGB",
                DynamicImage::ImageRgb16(off_centre_seven().to_rgb16()),
            ),
            (
                "float RGBA",
                DynamicImage::ImageRgba32F(off_centre_seven().to_rgba32f()),
            ),
        ];
        for (what, img) in cases {
            let d = max_diff(&dark, &preprocess(&img).unwrap());
            assert!(d < 1e-5, "{what} differs from black on white grey by {d}");
        }
    }

    #[test]
    fn transparent_background_is_paper() {
        // Black ink on a fully transparent (black-valued!) background: compositing over white
        // makes it a dark digit on light paper.
        let mut img = RgbaImage::from_pixel(40, 40, Rgba([0, 0, 0, 0]));
        for y in 5..35 {
            for x in 18..24 {
                img.put_pixel(x, y, Rgba([0, 0, 0, 255]));
            }
        }
        let x = preprocess(&DynamicImage::ImageRgba8(img)).unwrap();
        let (_, _, w, h) = bbox(&x, 0.0);
        assert_eq!(h, 20, "the stroke is the digit");
        assert!(w <= 5, "a thin vertical stroke, got width {w}");
        assert_eq!(x[0], 0.0);
    }

    #[test]
    fn small_digits_are_scaled_up_and_aspect_ratio_is_kept() {
        let mut img = GrayImage::new(28, 28);
        for y in 10..15 {
            for x in 12..22 {
                img.put_pixel(x, y, Luma([255]));
            }
        }
        let x = preprocess(&DynamicImage::ImageLuma8(img)).unwrap();
        let (_, _, w, h) = bbox(&x, 0.0);
        assert_eq!((w, h), (20, 10));
    }

    #[test]
    fn blank_and_empty_images_have_no_digit() {
        for img in [
            DynamicImage::ImageLuma8(GrayImage::from_pixel(50, 50, Luma([255]))),
            DynamicImage::ImageLuma8(GrayImage::from_pixel(50, 50, Luma([0]))),
            DynamicImage::ImageLuma8(GrayImage::from_pixel(1, 1, Luma([0]))),
            DynamicImage::ImageLuma8(GrayImage::new(0, 7)),
        ] {
            let e = preprocess(&img).unwrap_err();
            assert!(matches!(e, Error::NoDigit(_)), "{e}");
            assert!(e.to_string().starts_with("no digit found"), "{e}");
        }
    }

    #[test]
    fn decoding_refuses_bad_bytes_naming_the_input() {
        let png = encode_png(&[0.5; 12], 4, 3);
        let img = decode_image(&png, "x.png").unwrap();
        assert_eq!((img.width(), img.height()), (4, 3));
        for (bytes, expect) in [
            (&b""[..], "is empty"),
            (&b"hello, world"[..], "not an image"),
            (&png[..png.len() / 2], "PNG"),
        ] {
            let e = decode_image(bytes, "x.png").unwrap_err().to_string();
            assert!(e.starts_with("x.png: ") && e.contains(expect), "{e}");
        }
    }

    #[test]
    fn every_supported_format_decodes_to_the_same_digit() {
        use image::ImageFormat as F;
        let img = off_centre_seven();
        let want = preprocess(&img).unwrap();
        for format in [F::Png, F::Jpeg, F::Bmp, F::Gif, F::WebP] {
            let mut bytes = std::io::Cursor::new(Vec::new());
            let rgb = DynamicImage::ImageRgb8(img.to_rgb8());
            rgb.write_to(&mut bytes, format).unwrap();
            let decoded = decode_image(bytes.get_ref(), "x").unwrap();
            assert_eq!((decoded.width(), decoded.height()), (120, 90), "{format:?}");
            let got = preprocess(&decoded).unwrap();
            // JPEG is lossy: compare on average.
            let mean = want.iter().zip(&got).map(|(a, b)| (a - b).abs()).sum::<f32>() / PIXELS as f32;
            assert!(mean < 0.02, "{format:?}: mean difference {mean}");
        }
    }

    #[test]
    fn oversized_headers_are_refused_before_decoding() {
        // A valid PNG header claiming 100000×100000 pixels, with no pixel data behind it.
        let mut png = encode_png(&[0.0; 1], 1, 1);
        png[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        png[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(&png[12..29]);
        png[29..33].copy_from_slice(&crc.sum().to_be_bytes());
        let e = decode_image(&png, "big.png").unwrap_err().to_string();
        assert!(e.starts_with("big.png: "), "{e}");
        assert!(e.contains("large") || e.contains("8192"), "{e}");
    }

    #[test]
    fn area_weights_cover_each_output_pixel_once() {
        for (n_in, n_out) in [(7, 3), (3, 7), (20, 20), (1, 20), (1000, 20)] {
            let w = area_weights(n_in, n_out);
            assert_eq!(w.len(), n_out);
            for row in &w {
                let s: f32 = row.iter().map(|&(_, k)| k).sum();
                assert!((s - 1.0).abs() < 1e-5, "{n_in}→{n_out}: weights sum to {s}");
                assert!(row.iter().all(|&(j, _)| j < n_in));
            }
        }
    }
}
