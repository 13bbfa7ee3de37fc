#!/usr/bin/env bash
# AddressSanitizer over the tests that drive the raw-pointer kernels (the engine against the
# reference, the reference trajectory, the library's unit tests) and the resume tests (which
# run the instrumented binary), on the stable toolchain: RUSTC_BOOTSTRAP=1 unlocks
# -Zsanitizer. An explicit --target keeps build scripts and proc macros uninstrumented; a
# separate target dir keeps these builds apart from the ordinary ones.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1
export RUSTFLAGS="-Zsanitizer=address"
export RUSTDOCFLAGS="-Zsanitizer=address"
# Leaks are not what this pass looks for (the thread pool's workers live for the process).
export ASAN_OPTIONS="detect_leaks=0"
cargo test --release --target x86_64-unknown-linux-gnu --target-dir target/asan \
    --lib --test engine --test reference --test resume "$@"
