#!/usr/bin/env bash
# Training on a busy machine: the default `train` beside a busy process and beside a second
# default `train`, against `--threads 1` and `--threads 2` (and an oversubscribed
# `--threads 4`) in the same conditions. Prints one table of `train_seconds` and the ratios the
# performance targets are stated in. See docs/performance.md.
#
#   bash benches/busy/run.sh
#
# Environment (defaults in brackets):
#   BIN         the mnist-mlp binary [target/release/mnist-mlp, built if missing]
#   ITERATIONS  training iterations per run [4000]
#   REPEATS     rounds of every measurement; the table shows medians [1]
#   OUT         directory for the runs, kept [a temporary directory, removed at the end]
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
ITERATIONS=${ITERATIONS:-4000}
REPEATS=${REPEATS:-1}
BIN=${BIN:-$ROOT/target/release/mnist-mlp}
for n in $ITERATIONS $REPEATS; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "ITERATIONS and REPEATS must be positive integers (got '$n')" >&2; exit 1; }
done
if [[ ! -x "$BIN" ]]; then
    (cd "$ROOT" && cargo build --release --quiet)
fi
if [[ -n "${OUT:-}" ]]; then
    mkdir -p "$OUT"; REMOVE_OUT=0
else
    OUT=$(mktemp -d); REMOVE_OUT=1
fi
NEIGHBOUR=""
cleanup() {
    if [[ -n "$NEIGHBOUR" ]]; then kill "$NEIGHBOUR" 2>/dev/null || true; fi
    if [[ $REMOVE_OUT == 1 ]]; then rm -rf "$OUT"; fi
}
trap cleanup EXIT

# train_seconds of one run: train ARGS... into a fresh directory.
run() {
    local dir
    dir=$(mktemp -d "$OUT/run.XXXX")
    "$BIN" train --iterations "$ITERATIONS" --quiet --out "$dir" "$@" >/dev/null
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["train_seconds"])' "$dir/summary.json"
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
measure() { # LABEL ARGS...: the median of REPEATS runs
    local label=$1; shift
    local xs=()
    for _ in $(seq "$REPEATS"); do xs+=("$(run "$@")"); done
    median "${xs[@]}"
}
# Two default runs started together: the wall time until both are done.
pair() {
    local xs=()
    for _ in $(seq "$REPEATS"); do
        local start end
        start=$(date +%s.%N)
        run >/dev/null & local a=$!
        run >/dev/null & local b=$!
        wait "$a" "$b"
        end=$(date +%s.%N)
        xs+=("$(echo "$end - $start" | bc)")
    done
    median "${xs[@]}"
}

cores=$(nproc)
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $cores cores; $ITERATIONS iterations, median of $REPEATS" >&2

declare -A T
for cond in idle neighbour; do
    if [[ $cond == neighbour ]]; then
        yes > /dev/null & NEIGHBOUR=$!
        sleep 0.5
    fi
    for th in 1 2 4 default; do
        if [[ $th == default ]]; then
            T[$cond,$th]=$(measure "$cond default")
        else
            T[$cond,$th]=$(measure "$cond $th" --threads "$th")
        fi
        echo "  $cond, threads $th: ${T[$cond,$th]} s" >&2
    done
    if [[ $cond == neighbour ]]; then
        kill "$NEIGHBOUR"; wait "$NEIGHBOUR" 2>/dev/null || true; NEIGHBOUR=""
    fi
done
PAIR=$(pair)
echo "  two default runs together: $PAIR s" >&2

python3 - "$PAIR" "${T[idle,1]}" "${T[idle,2]}" "${T[idle,4]}" "${T[idle,default]}" \
    "${T[neighbour,1]}" "${T[neighbour,2]}" "${T[neighbour,4]}" "${T[neighbour,default]}" <<'PY'
import sys
pair, i1, i2, i4, idf, n1, n2, n4, ndf = map(float, sys.argv[1:])
print("| condition | --threads 1 | --threads 2 | --threads 4 | default | default / best of 1, 2 | 4 / 2 |")
print("|---|---|---|---|---|---|---|")
for name, a, b, c, d in [("idle", i1, i2, i4, idf), ("one busy process beside it", n1, n2, n4, ndf)]:
    print(f"| {name} | {a:.2f} s | {b:.2f} s | {c:.2f} s | {d:.2f} s | {d / min(a, b):.2f} | {c / b:.2f} |")
print()
print(f"two default runs started together: {pair:.2f} s for both, against {2 * idf:.2f} s one after the other "
      f"({pair / (2 * idf):.2f}×)")
PY
