//! The `mnist-mlp` binary: parse, dispatch to the library, print errors with their causes.

use std::process::ExitCode;

fn main() -> ExitCode {
    // Die quietly, like other command-line tools, when our output pipe closes early
    // (`mnist-mlp eval … | head`), instead of panicking on the failed write.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    match mnist_mlp::cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            // 130 = interrupted, as shells report a process ended by Ctrl-C.
            match e.downcast_ref::<mnist_mlp::Error>() {
                Some(mnist_mlp::Error::Interrupted { .. }) => ExitCode::from(130),
                _ => ExitCode::FAILURE,
            }
        }
    }
}
