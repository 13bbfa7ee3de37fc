//! The IDX format of the MNIST files: a big-endian header, then raw bytes.
//!
//! ```text
//! magic: 0x00 0x00 <type> <ndims>   type 0x08 = unsigned bytes
//! ndims × u32 big-endian sizes
//! data: product of the sizes, in bytes
//! ```
//! Images are magic 2051 (0x00000803, 3 dimensions: count, rows, cols), labels are magic 2049
//! (0x00000801, 1 dimension: count). Files may be gzip-compressed.

use crate::error::{Error, Result};
use std::io::Read;
use std::path::Path;

pub const IMAGES_MAGIC: u32 = 0x0000_0803;
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// No IDX file we accept decompresses to more than this; it stops gzip bombs.
pub const MAX_DECOMPRESSED: u64 = 1 << 30;

/// Images as stored: `count` images of `rows × cols` bytes, row-major, 0 = background.
#[derive(Clone, Debug, PartialEq)]
pub struct Images {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    /// (count, rows·cols) u8. Kept as bytes (47 MB for MNIST's training set instead of 188 MB
    /// in f32); batches are converted to f32 = value / 255 as they are drawn.
    pub pixels: Vec<u8>,
}

impl Images {
    pub fn pixels_per_image(&self) -> usize {
        self.rows * self.cols
    }
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.pixels_per_image();
        &self.pixels[i * n..(i + 1) * n]
    }
}

fn idx_err(path: &Path, msg: impl Into<String>) -> Error {
    Error::Idx {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// Read a file's bytes, decompressing gzip when the file is gzip (by its magic bytes 1f 8b).
/// A file named `*.gz` that is not gzip is an error, not a guess.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decompress_if_gz(path, raw)
}

/// See [`read_maybe_gz`]; `path` is only used to name the file in errors.
pub fn decompress_if_gz(path: &Path, raw: Vec<u8>) -> Result<Vec<u8>> {
    let is_gzip = raw.starts_with(&[0x1f, 0x8b]);
    let named_gz = path.extension().is_some_and(|e| e == "gz");
    if named_gz && !is_gzip {
        let head: Vec<String> = raw.iter().take(4).map(|b| format!("{b:02x}")).collect();
        return Err(idx_err(
            path,
            format!(
                "named .gz but is not gzip: starts with [{}], expected 1f 8b",
                head.join(" ")
            ),
        ));
    }
    if !is_gzip {
        return Ok(raw);
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(&raw[..])
        .take(MAX_DECOMPRESSED + 1)
        .read_to_end(&mut out)
        .map_err(|e| idx_err(path, format!("gzip data is corrupt or truncated: {e}")))?;
    if out.len() as u64 > MAX_DECOMPRESSED {
        return Err(idx_err(
            path,
            format!("decompresses to more than {MAX_DECOMPRESSED} bytes; not an IDX file we accept"),
        ));
    }
    Ok(out)
}

/// Parse an IDX header, check it against the expected magic, and return (dims, data).
fn parse<'a>(bytes: &'a [u8], path: &Path, magic: u32, what: &str) -> Result<(Vec<usize>, &'a [u8])> {
    if bytes.is_empty() {
        return Err(idx_err(path, "file is empty; expected an IDX file"));
    }
    if bytes.len() < 4 {
        return Err(idx_err(
            path,
            format!(
                "truncated header: {} bytes, an IDX header needs at least 4",
                bytes.len()
            ),
        ));
    }
    let found = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if found != magic {
        let hint = match found {
            IMAGES_MAGIC => " (that is an image file)",
            LABELS_MAGIC => " (that is a label file)",
            _ => "",
        };
        return Err(idx_err(
            path,
            format!(
                "magic number is {found} (0x{found:08x}){hint}, expected {magic} (0x{magic:08x}) for {what}"
            ),
        ));
    }
    let ndims = bytes[3] as usize;
    let header_len = 4 + 4 * ndims;
    if bytes.len() < header_len {
        return Err(idx_err(
            path,
            format!(
                "truncated header: {} bytes, the header of a {ndims}-dimensional IDX file is {header_len}",
                bytes.len()
            ),
        ));
    }
    let dims: Vec<usize> = bytes[4..header_len]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| idx_err(path, format!("dimensions {dims:?} overflow")))?;
    let data = &bytes[header_len..];
    if data.len() != expected {
        let dims_text: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
        let kind = if data.len() < expected {
            "truncated data"
        } else {
            "trailing bytes"
        };
        return Err(idx_err(
            path,
            format!(
                "{kind}: header says {} = {expected} bytes of data, file holds {}",
                dims_text.join("×"),
                data.len()
            ),
        ));
    }
    Ok((dims, data))
}

/// Parse an image file (magic 2051).
pub fn parse_images(bytes: &[u8], path: &Path) -> Result<Images> {
    let (dims, data) = parse(bytes, path, IMAGES_MAGIC, "an image file")?;
    let (count, rows, cols) = (dims[0], dims[1], dims[2]);
    if rows == 0 || cols == 0 {
        return Err(idx_err(
            path,
            format!("images are {rows}×{cols}; expected a positive size like 28×28"),
        ));
    }
    if count == 0 {
        return Err(idx_err(path, "holds no images"));
    }
    Ok(Images {
        count,
        rows,
        cols,
        pixels: data.to_vec(),
    })
}

/// Parse a label file (magic 2049); every label must be below `classes`.
pub fn parse_labels(bytes: &[u8], path: &Path, classes: usize) -> Result<Vec<u8>> {
    let (_, data) = parse(bytes, path, LABELS_MAGIC, "a label file")?;
    if data.is_empty() {
        return Err(idx_err(path, "holds no labels"));
    }
    if let Some((i, &y)) = data.iter().enumerate().find(|&(_, &y)| y as usize >= classes) {
        return Err(idx_err(
            path,
            format!(
                "label {y} at index {i} is out of range; expected 0–{}",
                classes - 1
            ),
        ));
    }
    Ok(data.to_vec())
}

/// Encode images as an IDX file (uncompressed).
pub fn encode_images(count: usize, rows: usize, cols: usize, pixels: &[u8]) -> Vec<u8> {
    assert_eq!(pixels.len(), count * rows * cols);
    let mut out = Vec::with_capacity(16 + pixels.len());
    out.extend_from_slice(&IMAGES_MAGIC.to_be_bytes());
    for d in [count, rows, cols] {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(pixels);
    out
}

/// Encode labels as an IDX file (uncompressed).
pub fn encode_labels(labels: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + labels.len());
    out.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
    out.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    out.extend_from_slice(labels);
    out
}
