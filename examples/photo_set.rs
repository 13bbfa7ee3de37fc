//! Photo-like pictures of digits, and how well trained models read them through
//! `preprocess::preprocess` (the preparation `predict` and the server use).
//!
//!   cargo run --release --example photo_set -- [--count N] [--seed S] [--drawn] [--out DIR]
//!       [--model DIR]...
//!
//! Each picture re-draws the strokes of one of MNIST's **test** images (its skeleton, with a
//! thin pen, a ballpoint or a marker) on a 1200×900 page, per `tests/common/photo.rs`; with
//! `--drawn` (or without the MNIST cache) hand-made polyline digits are used instead. Pictures
//! are taken from the test set in order of index, `N / 10` of each digit. With `--out`, each is
//! written as `photo-<k>-<digit>.jpg` (and `clean-<k>-<digit>.png`, the same strokes drawn
//! cleanly); with `--model`, the top-1 rate of each model is printed, in all and per pen.
//! `--clean` reads the clean drawings instead of the photos, `--page` drawings as made on
//! `serve`'s page (280×280, a 20-pixel pen); `--sheet FILE` writes a contact
//! sheet of the first 24 pictures (with `SHEET_WRONG=1`, the first model's misses) beside what
//! the network saw; `SHOW_WRONG=1` lists the misses.
//!
//!   cargo run --release --example photo_set -- --mnist-png DIR
//!
//! writes MNIST's 10,000 test images as `DIR/<index>-<label>.png`, to pass them through
//! `mnist-mlp predict` and compare with `mnist-mlp eval`.
#[path = "../tests/common/photo.rs"]
mod photo;

use mnist_mlp::data::DatasetKind;
use mnist_mlp::data::mnist::Dataset;
use mnist_mlp::{eval, kernels, model, nn::Workspace, preprocess};
use photo::{Pen, Scene};
use std::path::PathBuf;

fn main() {
    let mut sheet_path: Option<PathBuf> = None;
    let mut examples: Option<PathBuf> = None;
    let mut page = false;
    let mut args = std::env::args().skip(1);
    let (mut count, mut seed, mut drawn, mut clean) = (100usize, 14u64, false, false);
    let (mut out, mut models, mut mnist_png): (Option<PathBuf>, Vec<PathBuf>, Option<PathBuf>) =
        (None, Vec::new(), None);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--count" => count = value().parse().expect("--count N"),
            "--seed" => seed = value().parse().expect("--seed S"),
            "--drawn" => drawn = true,
            "--clean" => clean = true,
            "--page" => page = true,
            "--out" => out = Some(value().into()),
            "--model" => models.push(value().into()),
            "--mnist-png" => mnist_png = Some(value().into()),
            "--examples" => examples = Some(PathBuf::from(value())),
            "--sheet" => sheet_path = Some(PathBuf::from(value())),
            other => panic!("unknown argument {other}"),
        }
    }
    let data = Dataset::load(&DatasetKind::Mnist.cache_dir(), None).ok();
    if let Some(dir) = mnist_png {
        let d = data.expect("--mnist-png needs MNIST in the cache (mnist-mlp fetch)");
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..d.test.len() {
            let img = image::GrayImage::from_raw(28, 28, d.test.images.image(i).to_vec()).unwrap();
            img.save(dir.join(format!("{i:05}-{}.png", d.test.labels[i])))
                .unwrap();
        }
        println!("wrote {} PNGs into {}", d.test.len(), dir.display());
        return;
    }
    if let Some(dir) = examples {
        let d = data.expect("--examples needs MNIST in the cache (mnist-mlp fetch)");
        write_examples(&dir, &d);
        return;
    }
    let drawn = drawn || data.is_none();
    // (digit, strokes, MNIST test index)
    let mut digits = Vec::new();
    let mut taken = [0usize; 10];
    if drawn {
        for k in 0..count {
            digits.push((k % 10, photo::strokes_drawn(k % 10), None));
        }
    } else {
        let d = data.as_ref().unwrap();
        for i in 0..d.test.len() {
            let l = d.test.labels[i] as usize;
            if digits.len() < count && taken[l] < count.div_ceil(10) {
                taken[l] += 1;
                digits.push((l, photo::strokes_from_mnist(d.test.images.image(i)), Some(i)));
            }
        }
    }
    let loaded: Vec<_> = models
        .iter()
        .map(|m| model::load(m).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let engine = kernels::Engine::new(1, kernels::Backend::detect());
    // correct[model][pen], total[pen]
    let mut correct = vec![[0usize; 3]; loaded.len()];
    let mut total = [0usize; 3];
    let mut wrong: Vec<Vec<String>> = vec![Vec::new(); loaded.len()];
    if let Some(dir) = &out {
        std::fs::create_dir_all(dir).unwrap();
    }
    let sheet_wrong = std::env::var_os("SHEET_WRONG").is_some();
    let mut cells = 0;
    let mut sheets = sheet_path.as_ref().map(|_| {
        image::RgbImage::from_pixel(
            SHEET_COLS as u32 * CELL_W,
            SHEET_CELLS.div_ceil(SHEET_COLS) as u32 * CELL_H,
            image::Rgb([255, 255, 255]),
        )
    });
    for (k, (digit, strokes, index)) in digits.iter().enumerate() {
        let scene = Scene::random(seed, k as u64);
        let scene = if page {
            // As drawn on serve's page: a 20-pixel black pen on a 280×280 white canvas.
            Scene {
                width: 280,
                height: 280,
                digit_px: 200.0,
                centre: (140.0, 140.0),
                pen_width: 20.0,
                ..scene.clean()
            }
        } else if clean {
            scene.clean()
        } else {
            scene
        };
        let raw = photo::render_raw(strokes, &scene);
        let jpeg = if scene.jpeg_quality == 0 {
            let mut png = std::io::Cursor::new(Vec::new());
            raw.write_to(&mut png, image::ImageFormat::Png).unwrap();
            png.into_inner()
        } else {
            photo::jpeg_bytes(&raw, scene.jpeg_quality)
        };
        if let Some(dir) = &out {
            std::fs::write(dir.join(format!("photo-{k:03}-{digit}.jpg")), &jpeg).unwrap();
            photo::render(strokes, &scene.clean())
                .save(dir.join(format!("clean-{k:03}-{digit}.png")))
                .unwrap();
        }
        let pen = scene.pen as usize;
        total[pen] += 1;
        if loaded.is_empty() {
            continue;
        }
        let img = preprocess::decode_image(&jpeg, "photo").unwrap();
        let x = match preprocess::preprocess(&img) {
            Ok(x) => x,
            Err(e) => {
                for w in wrong.iter_mut() {
                    w.push(format!("{k} ({digit}, {:?}): {e}", scene.pen));
                }
                continue;
            }
        };
        for (m, l) in loaded.iter().enumerate() {
            let mut ws = Workspace::new(&l.mlp.sizes, 1);
            let p = eval::predict(&engine, &l.mlp, &mut ws, &x);
            let top = eval::argmax(&p);
            // The sheet shows the first pictures, or with SHEET_WRONG the first model's misses.
            let show = if sheet_wrong {
                m == 0 && top != *digit
            } else {
                m == 0
            };
            if let Some(sheet) = sheets.as_mut().filter(|_| show && cells < SHEET_CELLS) {
                add_to_sheet(sheet, cells, &img, Some(x));
                cells += 1;
            }
            if top == *digit {
                correct[m][pen] += 1;
            } else {
                wrong[m].push(format!(
                    "{k} ({digit}, {:?}{}) read as {top}",
                    scene.pen,
                    index.map(|i| format!(", test {i}")).unwrap_or_default()
                ));
            }
        }
    }
    let n: usize = total.iter().sum();
    let source = if drawn {
        "hand-made polyline digits"
    } else {
        "MNIST test digits"
    };
    println!(
        "{n} photos of {source} (seed {seed}): thin {}, ballpoint {}, marker {}",
        total[0], total[1], total[2]
    );
    for (m, path) in models.iter().enumerate() {
        let all: usize = correct[m].iter().sum();
        println!(
            "{}: top-1 {all}/{n} = {:.1}% (thin {}/{}, ballpoint {}/{}, marker {}/{})",
            path.display(),
            100.0 * all as f64 / n as f64,
            correct[m][0],
            total[0],
            correct[m][1],
            total[1],
            correct[m][2],
            total[2]
        );
        if std::env::var_os("SHOW_WRONG").is_some() {
            for w in &wrong[m] {
                println!("  wrong: {w}");
            }
        }
    }
    if let (Some(sheet), Some(path)) = (sheets, sheet_path) {
        sheet.save(&path).unwrap();
        println!("contact sheet of the first {SHEET_CELLS} in {}", path.display());
    }
    let _ = Pen::Thin;
}

/// docs/examples: `drawn-7.png`, MNIST test image 0 (a 7) re-drawn as on the draw page
/// (black, 20-pixel pen, 280×280 white canvas), and `photo-2.png`, test image 1 (a 2) as a
/// small photo of paper (ballpoint in blue, shadow, gradient, noise, off-centre, rotated).
fn write_examples(dir: &std::path::Path, d: &Dataset) {
    std::fs::create_dir_all(dir).unwrap();
    let base = Scene::random(14, 1);
    let drawn = Scene {
        width: 280,
        height: 280,
        digit_px: 200.0,
        centre: (140.0, 140.0),
        rotation: 0.0,
        pen_width: 20.0,
        ..base.clean()
    };
    let strokes = photo::strokes_from_mnist(d.test.images.image(0));
    let path = dir.join("drawn-7.png");
    photo::render(&strokes, &drawn).to_luma8().save(&path).unwrap();
    println!("{}: label {}", path.display(), d.test.labels[0]);
    let photo_scene = Scene {
        width: 320,
        height: 240,
        digit_px: 100.0,
        centre: (200.0, 105.0),
        rotation: 8f32.to_radians(),
        pen: Pen::Ballpoint,
        pen_width: 2.5,
        ink: [0.1, 0.15, 0.55],
        shadow: 0.35,
        shadow_at: (95.0, 200.0),
        shadow_dir: 2.6,
        shadow_soft: 25.0,
        table: (3, 14.0),
        specks: 4,
        noise: 0.015,
        jpeg_quality: 80,
        ..base
    };
    let strokes = photo::strokes_from_mnist(d.test.images.image(1));
    let path = dir.join("photo-2.png");
    photo::render(&strokes, &photo_scene)
        .to_rgb8()
        .save(&path)
        .unwrap();
    println!("{}: label {}", path.display(), d.test.labels[1]);
}

const SHEET_CELLS: usize = 24;
const SHEET_COLS: usize = 4;
const CELL_W: u32 = 300 + 112 + 12;
const CELL_H: u32 = 300 + 8;

/// A contact sheet cell: the photo at a quarter of its size, and the 28×28 the network sees at
/// 4× beside it (red when preparation failed).
fn add_to_sheet(sheet: &mut image::RgbImage, k: usize, img: &image::DynamicImage, x: Option<[f32; 784]>) {
    let (cx, cy) = ((k % SHEET_COLS) as u32 * CELL_W, (k / SHEET_COLS) as u32 * CELL_H);
    let small = img
        .resize(300, 300, image::imageops::FilterType::Triangle)
        .to_rgb8();
    image::imageops::overlay(sheet, &small, i64::from(cx), i64::from(cy));
    for y in 0..112u32 {
        for xx in 0..112u32 {
            let v = x.map(|x| (x[(y / 4 * 28 + xx / 4) as usize] * 255.0) as u8);
            let p = v
                .map(|v| image::Rgb([v, v, v]))
                .unwrap_or(image::Rgb([200, 0, 0]));
            sheet.put_pixel(cx + 304 + xx, cy + y, p);
        }
    }
}
