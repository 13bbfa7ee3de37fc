//! A PNG grid for looking at augmentations: one row per digit, the original in the first column
//! and eight random variants after it. Uses MNIST's test images if they are in the cache, else
//! synthetic strokes.
//!
//!   cargo run --release --example augment_preview [CONFIG] [OUT.png]
//!   (defaults: shift=2,rotate=10,scale=0.1,elastic=34:4 and docs/augment-preview.png)
use mnist_mlp::data::augment::{Augment, Augmenter};
use mnist_mlp::data::mnist;
use mnist_mlp::preprocess::{PIXELS, SIDE};
use mnist_mlp::rng::Rng;
use std::path::PathBuf;

const ROWS: usize = 8;
const VARIANTS: usize = 8;
/// Each pixel is drawn as a ZOOM × ZOOM block.
const ZOOM: usize = 3;
const GAP: usize = 2;

/// The first test image of each digit 0..ROWS, or synthetic strokes without the data set.
fn originals() -> Vec<Vec<u8>> {
    if let Ok(d) = mnist::Dataset::load(&mnist_mlp::data::DatasetKind::Mnist.cache_dir(), None) {
        return (0..ROWS as u8)
            .map(|digit| {
                let i = d.test.labels.iter().position(|&l| l == digit).unwrap();
                d.test.images.image(i).to_vec()
            })
            .collect();
    }
    eprintln!("no MNIST cache; drawing synthetic strokes");
    (0..ROWS)
        .map(|k| {
            // A ring for even rows, an L for odd ones, a little wider each time.
            let w = 2.0 + k as f32 * 0.3;
            (0..PIXELS)
                .map(|i| {
                    let (y, x) = ((i / SIDE) as f32 - 13.5, (i % SIDE) as f32 - 13.5);
                    let d = if k % 2 == 0 {
                        ((x * x + y * y).sqrt() - 7.0).abs()
                    } else if x < -4.0 {
                        (x + 6.0).abs().max(y.abs() - 8.0)
                    } else {
                        (y - 8.0).abs().max(x.abs() - 8.0 + 2.0)
                    };
                    (255.0 * (1.0 - (d - w / 2.0).clamp(0.0, 1.0))) as u8
                })
                .collect()
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let text = args
        .next()
        .unwrap_or_else(|| "shift=2,rotate=10,scale=0.1,elastic=34:4".into());
    let out_path = PathBuf::from(args.next().unwrap_or_else(|| "docs/augment-preview.png".into()));
    let cfg: Augment = text.parse().map_err(|e| anyhow::anyhow!("{text}: {e}"))?;

    let cell = SIDE * ZOOM + GAP;
    // One extra gap after the originals' column.
    let (width, height) = ((VARIANTS + 1) * cell + GAP * 2, ROWS * cell + GAP);
    let mut img = image::GrayImage::from_pixel(width as u32, height as u32, image::Luma([96]));
    let mut draw = |row: usize, col: usize, pixels: &[f32]| {
        let (x0, y0) = (GAP + col * cell + if col > 0 { GAP } else { 0 }, GAP + row * cell);
        for (i, &v) in pixels.iter().enumerate() {
            let level = image::Luma([(v * 255.0).round() as u8]);
            for dy in 0..ZOOM {
                for dx in 0..ZOOM {
                    let (x, y) = (x0 + (i % SIDE) * ZOOM + dx, y0 + (i / SIDE) * ZOOM + dy);
                    img.put_pixel(x as u32, y as u32, level);
                }
            }
        }
    };

    let mut augmenter = Augmenter::new(&cfg);
    let mut rng = Rng::new(0, 0);
    let mut out = vec![0.0f32; PIXELS];
    for (row, src) in originals().iter().enumerate() {
        let original: Vec<f32> = src.iter().map(|&p| p as f32 / 255.0).collect();
        draw(row, 0, &original);
        for col in 1..=VARIANTS {
            augmenter.apply(src, &mut rng, &mut out);
            draw(row, col, &out);
        }
    }
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png)?;
    mnist_mlp::fsutil::write_atomic(&out_path, png.get_ref())?;
    println!(
        "{}: {ROWS} originals × {VARIANTS} variants of `{cfg}`, {} bytes",
        out_path.display(),
        png.get_ref().len()
    );
    Ok(())
}
