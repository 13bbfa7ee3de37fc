//! The `mnist-mlp` binary: parse, dispatch to the library, print errors with their causes.

use std::process::ExitCode;

fn main() -> ExitCode {
    match mnist_mlp::cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
