//! The smallest complete use of the library: train the default network on MNIST (fetched into
//! the cache if missing), evaluate it on the test set, save it, and load it back.
//!
//!     cargo run --release --example train_minimal [ITERATIONS] [OUT_DIR]

use mnist_mlp::config::TrainConfig;
use mnist_mlp::data::{Dataset, DatasetKind};
use mnist_mlp::kernels::{Backend, Engine};
use mnist_mlp::nn::Workspace;
use mnist_mlp::train::{self, Progress};

fn main() -> mnist_mlp::Result<()> {
    let mut args = std::env::args().skip(1);
    let iterations = args
        .next()
        .map_or(2000, |a| a.parse().expect("ITERATIONS: a number"));
    let out = args.next().unwrap_or_else(|| "runs/minimal".into());

    let data = Dataset::open(None, DatasetKind::Mnist, true)?;
    let cfg = TrainConfig {
        iterations,
        ..TrainConfig::default()
    };
    let summary = train::run(&cfg, &data, out.as_ref(), Progress::Quiet)?;
    println!(
        "test accuracy {:.2}%, model in {out}",
        100.0 * summary.test_accuracy
    );

    // The run directory is a model; evaluate what was saved.
    let model = mnist_mlp::model::load(out.as_ref())?;
    let engine = Engine::new(1, Backend::detect());
    let mut ws = Workspace::new(&model.mlp.sizes, 1000);
    let e = mnist_mlp::eval::evaluate(&engine, &model.mlp, &mut ws, &data.test);
    println!("reloaded: test accuracy {:.2}%", 100.0 * e.accuracy);
    Ok(())
}
