//! Every fuzz target's committed seed corpus (`fuzz/seeds/<target>/`, written by
//! `scripts/fuzz_seeds.py`) replayed through the same function the target calls
//! (`mnist_mlp::fuzz`): no input may panic. Runs with every `cargo test`, so the targets'
//! code cannot rot unnoticed, and a crash the fuzzer found, once its input is added to the
//! corpus, stays fixed.

use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

#[test]
fn every_fuzz_target_has_a_corpus_that_replays_without_a_panic() {
    for (target, run) in mnist_mlp::fuzz::TARGETS {
        let files = corpus(target);
        assert!(files.len() >= 3, "{target}: {} seed files", files.len());
        for file in files {
            let data = std::fs::read(&file).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{target}: {} panicked", file.display());
        }
        println!("{target}: corpus replayed");
    }
}

/// The fuzz crate's binaries are exactly the library's targets, each with a corpus.
#[test]
fn the_fuzz_crate_builds_one_binary_per_target() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/Cargo.toml")).unwrap();
    let mut bins: Vec<&str> = manifest
        .split("[[bin]]")
        .skip(1)
        .map(|section| {
            let line = section
                .lines()
                .find(|l| l.trim_start().starts_with("name"))
                .unwrap();
            line.split('"').nth(1).unwrap()
        })
        .collect();
    let mut targets: Vec<&str> = mnist_mlp::fuzz::TARGETS.iter().map(|t| t.0).collect();
    bins.sort();
    targets.sort();
    assert_eq!(bins, targets);
}

/// The seeds reach past the first refusal: the valid ones are accepted, so that the fuzzer
/// starts from inputs that exercise the whole reader.
#[test]
fn the_valid_seeds_are_accepted() {
    use mnist_mlp::model::{from_parts, parse_config};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let data = std::fs::read(dir.join("model/tiny")).unwrap();
    let n = u16::from_le_bytes([data[0], data[1]]) as usize;
    let text = std::str::from_utf8(&data[2..2 + n]).unwrap();
    let config = parse_config(text, Path::new("config.json")).expect("the seed's config parses");
    from_parts(config, &data[2 + n..], Path::new("model.safetensors")).expect("the seed's model loads");

    let png = std::fs::read(dir.join("image/digit.png")).unwrap();
    let img = mnist_mlp::preprocess::decode_image(&png, "digit.png").expect("the seed decodes");
    mnist_mlp::preprocess::preprocess(&img).expect("the seed holds a digit");

    let images = std::fs::read(dir.join("idx/images")).unwrap();
    let parsed = mnist_mlp::data::idx::parse_images(&images, Path::new("images")).expect("the seed parses");
    assert_eq!(parsed.count, 2);
}
