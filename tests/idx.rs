//! The IDX reader and data-directory loading, on tiny hand-written files and on every kind of
//! broken input. Each error must name the file and say what was wrong.

mod common;

use flate2::write::GzEncoder;
use mnist_mlp::data::idx::{parse_images, parse_labels, read_maybe_gz};
use mnist_mlp::data::{Dataset, DatasetKind};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Two 2×3 images, written out byte by byte.
const TINY_IMAGES: [u8; 28] = [
    0x00, 0x00, 0x08, 0x03, // magic 2051: unsigned bytes, 3 dimensions
    0x00, 0x00, 0x00, 0x02, // 2 images
    0x00, 0x00, 0x00, 0x02, // 2 rows
    0x00, 0x00, 0x00, 0x03, // 3 columns
    0, 128, 255, 1, 2, 3, // image 0
    9, 8, 7, 6, 5, 4, // image 1
];
const TINY_LABELS: [u8; 10] = [0x00, 0x00, 0x08, 0x01, 0x00, 0x00, 0x00, 0x02, 7, 3];

fn err_text<T: std::fmt::Debug>(r: mnist_mlp::Result<T>) -> String {
    format!("{:#}", anyhow::Error::from(r.expect_err("expected an error")))
}

fn p(name: &str) -> PathBuf {
    PathBuf::from(name)
}

#[test]
fn a_hand_written_image_file_parses_to_its_bytes() {
    let imgs = parse_images(&TINY_IMAGES, &p("tiny")).unwrap();
    assert_eq!((imgs.count, imgs.rows, imgs.cols), (2, 2, 3));
    assert_eq!(imgs.image(0), &[0, 128, 255, 1, 2, 3]);
    assert_eq!(imgs.image(1), &[9, 8, 7, 6, 5, 4]);
    assert_eq!(parse_labels(&TINY_LABELS, &p("tiny"), 10).unwrap(), vec![7, 3]);
}

#[test]
fn wrong_magic_is_reported_with_both_numbers() {
    let e = err_text(parse_images(&TINY_LABELS, &p("imgs")));
    assert!(
        e.contains("imgs") && e.contains("2049") && e.contains("2051") && e.contains("label file"),
        "{e}"
    );
    let mut bad = TINY_IMAGES;
    bad[2] = 0x0d; // float data, not bytes
    let e = err_text(parse_images(&bad, &p("imgs")));
    assert!(e.contains("magic number") && e.contains("expected 2051"), "{e}");
}

#[test]
fn an_empty_file_is_reported_as_empty() {
    let e = err_text(parse_images(&[], &p("empty-file")));
    assert!(e.contains("empty-file") && e.contains("empty"), "{e}");
}

#[test]
fn a_truncated_header_is_reported() {
    let e = err_text(parse_images(&TINY_IMAGES[..2], &p("x")));
    assert!(e.contains("truncated header"), "{e}");
    let e = err_text(parse_images(&TINY_IMAGES[..10], &p("x")));
    assert!(e.contains("truncated header") && e.contains("16"), "{e}");
}

#[test]
fn truncated_data_and_trailing_bytes_are_reported_with_sizes() {
    let e = err_text(parse_images(&TINY_IMAGES[..27], &p("x")));
    assert!(
        e.contains("truncated data") && e.contains("2×2×3 = 12") && e.contains("holds 11"),
        "{e}"
    );
    let mut long = TINY_IMAGES.to_vec();
    long.push(0);
    let e = err_text(parse_images(&long, &p("x")));
    assert!(e.contains("trailing bytes") && e.contains("holds 13"), "{e}");
}

#[test]
fn a_label_of_ten_or_more_is_reported_with_its_index() {
    let mut bad = TINY_LABELS;
    bad[9] = 10;
    let e = err_text(parse_labels(&bad, &p("labels"), 10));
    assert!(e.contains("label 10 at index 1") && e.contains("0–9"), "{e}");
}

#[test]
fn gzip_files_are_read_and_a_fake_gz_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("a.gz");
    let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&TINY_IMAGES).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    assert_eq!(read_maybe_gz(&gz).unwrap(), TINY_IMAGES.to_vec());

    let fake = dir.path().join("b.gz");
    std::fs::write(&fake, TINY_IMAGES).unwrap();
    let e = err_text(read_maybe_gz(&fake));
    assert!(e.contains("b.gz") && e.contains("not gzip"), "{e}");

    let cut = dir.path().join("c.gz");
    let full = std::fs::read(&gz).unwrap();
    std::fs::write(&cut, &full[..full.len() / 2]).unwrap();
    let e = err_text(read_maybe_gz(&cut));
    assert!(e.contains("c.gz") && e.contains("corrupt or truncated"), "{e}");
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).unwrap();
}

#[test]
fn a_synthetic_directory_loads_and_gz_files_are_found() {
    let dir = tempfile::tempdir().unwrap();
    common::write_dataset(dir.path(), 30, 20, 1);
    // Replace one file by its gzip form.
    let raw = std::fs::read(dir.path().join("t10k-labels-idx1-ubyte")).unwrap();
    std::fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte")).unwrap();
    let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&raw).unwrap();
    write(dir.path(), "t10k-labels-idx1-ubyte.gz", &enc.finish().unwrap());

    let data = Dataset::load(dir.path(), None).unwrap();
    assert_eq!(
        (data.train.len(), data.test.len(), data.input_size()),
        (30, 20, 784)
    );
    assert_eq!(&data.test.labels[..3], &[0, 1, 2]);
}

#[test]
fn a_count_mismatch_between_images_and_labels_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    common::write_dataset(dir.path(), 30, 20, 1);
    write(
        dir.path(),
        "t10k-labels-idx1-ubyte",
        &mnist_mlp::data::idx::encode_labels(&[1; 19]),
    );
    let e = err_text(Dataset::load(dir.path(), None));
    assert!(
        e.contains("20 images") && e.contains("19 labels") && e.contains("t10k-labels-idx1-ubyte"),
        "{e}"
    );
}

#[test]
fn a_missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    common::write_dataset(dir.path(), 30, 20, 1);
    std::fs::remove_file(dir.path().join("train-labels-idx1-ubyte")).unwrap();
    let e = err_text(Dataset::load(dir.path(), None));
    assert!(e.contains("missing train-labels-idx1-ubyte"), "{e}");
}

#[test]
fn train_and_test_images_of_different_sizes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    common::write_dataset(dir.path(), 30, 20, 1);
    write(
        dir.path(),
        "t10k-images-idx3-ubyte",
        &mnist_mlp::data::idx::encode_images(20, 14, 14, &[0; 20 * 196]),
    );
    let e = err_text(Dataset::load(dir.path(), None));
    assert!(e.contains("28×28") && e.contains("14×14"), "{e}");
}

#[test]
fn a_file_that_does_not_match_the_mnist_checksum_is_refused_with_both_hashes() {
    let dir = tempfile::tempdir().unwrap();
    common::write_dataset(dir.path(), 30, 20, 1);
    let e = err_text(Dataset::load(dir.path(), Some(DatasetKind::Mnist)));
    assert!(
        e.contains("SHA-256")
            && e.contains("ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
        "{e}"
    );
    let actual = mnist_mlp::data::sets::sha256_hex(
        &std::fs::read(dir.path().join("train-images-idx3-ubyte")).unwrap(),
    );
    assert!(e.contains(&actual), "{e}");
}
