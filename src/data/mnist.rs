//! Loading a directory of the four files of an MNIST-style data set into memory, with every
//! check done. Which files those are, which data sets we know and where they live is in
//! [`super::sets`]; filling a data set's cache first ([`Dataset::open`]) is in [`super::fetch`].

use super::idx::{self, Images};
use super::sets::{
    CLASS_COUNT, DatasetKind, FILE_NAMES, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS,
};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Where file `name` is in `dir`: the raw file if present, else `name.gz`.
pub fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    [dir.join(name), dir.join(format!("{name}.gz"))]
        .into_iter()
        .find(|p| p.is_file())
}

/// One half of a data set: images and their labels, same count.
#[derive(Clone, Debug)]
pub struct Split {
    pub images: Images,
    pub labels: Vec<u8>,
}

impl Split {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Split off the last `n` samples: `self` keeps the first `len − n`, the result holds the
    /// rest. Used to hold out a validation set.
    pub fn split_off(&mut self, n: usize) -> Split {
        assert!(n <= self.len());
        let keep = self.len() - n;
        let ppi = self.images.pixels_per_image();
        let held = Split {
            images: Images {
                count: n,
                rows: self.images.rows,
                cols: self.images.cols,
                pixels: self.images.pixels.split_off(keep * ppi),
            },
            labels: self.labels.split_off(keep),
        };
        self.images.count = keep;
        held
    }

    /// Write images `indices` as f32 = byte / 255 into `x` (B, rows·cols) and their labels.
    pub fn gather(&self, indices: &[u32], x: &mut [f32], labels: &mut Vec<u8>) {
        let n = self.images.pixels_per_image();
        assert_eq!(x.len(), indices.len() * n);
        for (row, &i) in x.chunks_exact_mut(n).zip(indices) {
            self.image_to_unit(i as usize, row);
        }
        self.gather_labels(indices, labels);
    }

    /// Image `i` as f32 = byte / 255 into `row` (rows·cols values).
    pub fn image_to_unit(&self, i: usize, row: &mut [f32]) {
        let image = self.images.image(i);
        assert_eq!(row.len(), image.len());
        for (v, &p) in row.iter_mut().zip(image) {
            *v = p as f32 * (1.0 / 255.0);
        }
    }

    /// The labels of images `indices`, in order, replacing the contents of `labels`.
    pub fn gather_labels(&self, indices: &[u32], labels: &mut Vec<u8>) {
        labels.clear();
        labels.extend(indices.iter().map(|&i| self.labels[i as usize]));
    }
}

#[derive(Clone, Debug)]
pub struct Dataset {
    pub dir: PathBuf,
    pub train: Split,
    pub test: Split,
}

impl Dataset {
    /// Pixels per image, the network's input size.
    pub fn input_size(&self) -> usize {
        self.train.images.pixels_per_image()
    }

    /// Load the four files from `dir`. With `verify: Some(kind)`, each file's decompressed bytes
    /// must match that data set's published SHA-256 (used for the caches, not for `--data-dir`).
    pub fn load(dir: &Path, verify: Option<DatasetKind>) -> Result<Dataset> {
        if !dir.is_dir() {
            return Err(Error::Dataset {
                dir: dir.to_path_buf(),
                msg: "is not a directory".into(),
            });
        }
        let read = |name: &str| -> Result<(PathBuf, Vec<u8>)> {
            let path = find_file(dir, name).ok_or_else(|| Error::Dataset {
                dir: dir.to_path_buf(),
                msg: format!(
                    "missing {name} (or {name}.gz); expected the four IDX files {}",
                    FILE_NAMES.join(", ")
                ),
            })?;
            let bytes = idx::read_maybe_gz(&path)?;
            if let Some(kind) = verify {
                kind.verify(name, &path, &bytes)?;
            }
            Ok((path, bytes))
        };
        let split = |images: &str, labels: &str| -> Result<Split> {
            let (ipath, ibytes) = read(images)?;
            let images = idx::parse_images(&ibytes, &ipath)?;
            drop(ibytes);
            let (lpath, lbytes) = read(labels)?;
            let labels = idx::parse_labels(&lbytes, &lpath, CLASS_COUNT)?;
            if images.count != labels.len() {
                return Err(Error::Dataset {
                    dir: dir.to_path_buf(),
                    msg: format!(
                        "{} holds {} images but {} holds {} labels; the counts must agree",
                        ipath.display(),
                        images.count,
                        lpath.display(),
                        labels.len()
                    ),
                });
            }
            Ok(Split { images, labels })
        };
        let train = split(TRAIN_IMAGES, TRAIN_LABELS)?;
        let test = split(TEST_IMAGES, TEST_LABELS)?;
        let (tr, te) = (&train.images, &test.images);
        if (tr.rows, tr.cols) != (te.rows, te.cols) {
            return Err(Error::Dataset {
                dir: dir.to_path_buf(),
                msg: format!(
                    "training images are {}×{} but test images are {}×{}; they must be the same size",
                    tr.rows, tr.cols, te.rows, te.cols
                ),
            });
        }
        Ok(Dataset {
            dir: dir.to_path_buf(),
            train,
            test,
        })
    }
}
