#!/usr/bin/env bash
# Peer benchmark: the same MLP training workload in ours (mnist-mlp), PyTorch and numpy, run
# alternately, timing the training loop only. See benches/peers/README.md.
#
#   bash benches/peers/run.sh
#
# Environment (defaults in brackets):
#   THREADS     thread counts to time, space-separated ["1 2"]
#   BATCH       batch sizes, space-separated [64]
#   REPEATS     rounds of (ours, numpy, pytorch) per thread count and batch [3]
#   ITERATIONS  training iterations per run [8000]
#   DATA_DIR    directory with the four MNIST IDX files [ours' cache: $MNIST_MLP_DATA or
#               ~/.cache/mnist-mlp/mnist, fetched by `mnist-mlp fetch` if missing]
#   OUT         results JSON [benches/peers/results.json]
#   PEERS       which peers to run ["numpy pytorch"]
#   NO_TORCH=1  do not try to install torch (it pulls a few GB of CUDA wheels from PyPI)
#   PYTHON      interpreter that creates the virtual environment [python3]
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CALLER_PWD="$PWD"

THREADS=${THREADS:-"1 2"}
BATCH=${BATCH:-64}
REPEATS=${REPEATS:-3}
ITERATIONS=${ITERATIONS:-8000}
PEERS=${PEERS:-"numpy pytorch"}
PYTHON=${PYTHON:-python3}
OUT=${OUT:-$ROOT/benches/peers/results.json}
[[ "$OUT" = /* ]] || OUT="$CALLER_PWD/$OUT"
VENV="$HERE/.venv"
VPY="$VENV/bin/python"
export PYTHONDONTWRITEBYTECODE=1

log() { echo "[peers] $*" >&2; }
die() { log "error: $*"; exit 1; }

for n in $THREADS $BATCH $REPEATS $ITERATIONS; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "THREADS, BATCH, REPEATS and ITERATIONS must be positive integers (got '$n')"
done

cd "$ROOT"

# --- Python environment ---------------------------------------------------------------------
if [[ ! -x "$VPY" ]]; then
    log "creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
if ! "$VPY" -c "import numpy, threadpoolctl" 2>/dev/null; then
    log "installing numpy (and threadpoolctl, to record which BLAS kernels run) into $VENV"
    "$VPY" -m pip install --quiet numpy threadpoolctl
fi
have_torch=0
if [[ " $PEERS " == *" pytorch "* ]]; then
    if "$VPY" -c "import torch" 2>/dev/null; then
        have_torch=1
    elif [[ "${NO_TORCH:-0}" == 1 ]]; then
        log "NO_TORCH=1: skipping PyTorch"
    else
        log "installing torch into $VENV (from PyPI; a few GB with its CUDA dependencies)"
        if "$VPY" -m pip install --quiet torch && "$VPY" -c "import torch" 2>/dev/null; then
            have_torch=1
        else
            log "WARNING: torch could not be installed or imported; continuing without PyTorch"
        fi
    fi
fi
impls=(ours)
[[ " $PEERS " == *" numpy "* ]] && impls+=(numpy)
[[ $have_torch == 1 ]] && impls+=(pytorch)

# --- ours ------------------------------------------------------------------------------------
log "building mnist-mlp (cargo build --release)"
cargo build --release --quiet
BIN="$ROOT/target/release/mnist-mlp"

# --- data ------------------------------------------------------------------------------------
ours_data=()
if [[ -n "${DATA_DIR:-}" ]]; then
    DATA="$(cd "$DATA_DIR" && pwd)" || die "DATA_DIR=$DATA_DIR is not a directory"
    ours_data=(--data-dir "$DATA")
else
    # The directory ours reads by default (src/data/mnist.rs: default_cache_dir).
    DATA="${MNIST_MLP_DATA:-${XDG_CACHE_HOME:-$HOME/.cache}/mnist-mlp/mnist}"
fi
if [[ ! -e "$DATA/train-images-idx3-ubyte" && ! -e "$DATA/train-images-idx3-ubyte.gz" ]]; then
    [[ -z "${DATA_DIR:-}" ]] || die "no MNIST IDX files in DATA_DIR=$DATA_DIR"
    log "no MNIST in $DATA: fetching it"
    "$BIN" fetch >&2
fi

# --- runs ------------------------------------------------------------------------------------
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
RAW="$TMP/runs.jsonl"
: >"$RAW"
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
log "impls: ${impls[*]}; threads: $THREADS; batch: $BATCH; $REPEATS round(s) of $ITERATIONS iterations; data: $DATA"
log "load average before the runs: $LOAD_START (other work on the machine skews every number)"

run_ours() { # threads batch round
    local dir="$TMP/ours-$1-$2-$3"
    "$BIN" train --quiet --threads "$1" --batch-size "$2" --iterations "$ITERATIONS" \
        --eval-every "$ITERATIONS" --out "$dir" ${ours_data[@]+"${ours_data[@]}"}
    "$VPY" - "$dir/summary.json" "$1" "$2" "$ITERATIONS" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
t, b, n = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
print(json.dumps({
    "impl": "ours", "threads": t, "batch": b, "iterations": n,
    "train_seconds": s["train_seconds"], "samples_per_second": n * b / s["train_seconds"],
    "final_loss": None, "test_accuracy": s["test_accuracy"],
    "version": s["tool_version"], "kernels": s["kernels"],
}))
EOF
}

run_peer() { # impl threads batch
    local script
    case "$1" in
        numpy) script="$HERE/numpy_mlp.py" ;;
        pytorch) script="$HERE/torch_mlp.py" ;;
    esac
    # OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, where a machine sets them, slow a current OpenBLAS.
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$VPY" "$script" \
        --threads "$2" --batch "$3" --iterations "$ITERATIONS" --data-dir "$DATA"
}

for t in $THREADS; do
    for b in $BATCH; do
        for ((r = 1; r <= REPEATS; r++)); do
            line="threads $t, batch $b, round $r/$REPEATS:"
            # How far apart the cores are right now (a virtual machine's can move): ns for a
            # value to go to another core and back. Multi-threaded runs slow down when it grows.
            rt=null
            if ((t > 1)); then
                rt="$("$BIN" bench --round-trip 2>/dev/null || echo null)"
                line+=" (core round trip ${rt} ns)"
            fi
            for impl in "${impls[@]}"; do
                if [[ $impl == ours ]]; then
                    rec="$(run_ours "$t" "$b" "$r")"
                else
                    rec="$(run_peer "$impl" "$t" "$b")"
                fi
                rec="$("$VPY" -c 'import json,sys; r=json.loads(sys.argv[1]); r["core_round_trip_ns"]=json.loads(sys.argv[2]); print(json.dumps(r))' "$rec" "$rt")"
                echo "$rec" >>"$RAW"
                secs="$("$VPY" -c 'import json,sys; print("%.2f" % json.loads(sys.argv[1])["train_seconds"])' "$rec")"
                line+=" $impl ${secs} s"
            done
            log "$line"
        done
    done
done

# --- summary ---------------------------------------------------------------------------------
CPU="$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)"
[[ -n "$CPU" ]] || CPU="$(uname -m)"
mkdir -p "$(dirname "$OUT")"
"$VPY" - "$RAW" "$OUT" "$CPU" "$(nproc)" "$LOAD_START" "$(cut -d' ' -f1-3 /proc/loadavg)" \
    "$ITERATIONS" "$REPEATS" "$DATA" <<'EOF'
import json, statistics, sys
raw, out, cpu, nproc, load0, load1, iters, repeats, data = sys.argv[1:]
runs = [json.loads(l) for l in open(raw) if l.strip()]
order = {"ours": 0, "numpy": 1, "pytorch": 2}
groups = {}
for r in runs:
    groups.setdefault((r["threads"], r["batch"], r["impl"]), []).append(r)
summary = []
for (t, b, impl) in sorted(groups, key=lambda k: (k[0], k[1], order.get(k[2], 9))):
    secs = [r["train_seconds"] for r in groups[(t, b, impl)]]
    med = statistics.median(secs)
    summary.append({
        "impl": impl, "threads": t, "batch": b, "runs": len(secs),
        "best_seconds": min(secs), "median_seconds": med,
        "samples_per_second": int(iters) * b / med,
        "version": groups[(t, b, impl)][0].get("version"),
    })
for s in summary:
    ours = next((o for o in summary if o["impl"] == "ours"
                 and o["threads"] == s["threads"] and o["batch"] == s["batch"]), None)
    # How many times faster ours is than this implementation (> 1: ours is faster).
    s["ratio_vs_ours"] = s["median_seconds"] / ours["median_seconds"] if ours else None
    s["ratio_vs_ours_best"] = s["best_seconds"] / ours["best_seconds"] if ours else None
result = {
    "machine": {"cpu": cpu, "nproc": int(nproc), "loadavg_before": load0, "loadavg_after": load1},
    "iterations": int(iters), "repeats": int(repeats), "data": data,
    "summary": summary, "runs": runs,
}
with open(out, "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")

print(f"\nmachine: {cpu}, {nproc} cores (nproc); load average before {load0}, after {load1}")
print(f"{iters} iterations per run, {repeats} round(s), data {data}; "
      "train_seconds = training loop only\n")
hdr = f"{'impl':<8} {'threads':>7} {'batch':>5} {'runs':>4} {'best s':>9} {'median s':>9} {'samples/s':>10} {'peer/ours':>9}"
print(hdr)
print("-" * len(hdr))
for s in summary:
    ratio = "" if s["ratio_vs_ours"] is None else f"{s['ratio_vs_ours']:.2f}x"
    print(f"{s['impl']:<8} {s['threads']:>7} {s['batch']:>5} {s['runs']:>4} {s['best_seconds']:>9.3f} "
          f"{s['median_seconds']:>9.3f} {s['samples_per_second']:>10.0f} {ratio:>9}")
for (t, b) in sorted({(r["threads"], r["batch"]) for r in runs}):
    trips = [r.get("core_round_trip_ns") for r in runs
             if r["impl"] == "ours" and r["threads"] == t and r["batch"] == b]
    if any(x is not None for x in trips):
        print(f"threads {t}, batch {b}: core round trip before each round: "
              + ", ".join("?" if x is None else f"{x} ns" for x in trips)
              + " (cores far apart slow multi-threaded runs down; a busy neighbour on the same core does too, unseen here)")
versions = sorted({f"{s['impl']} {s['version']}" for s in summary if s["version"]})
print(f"\npeer/ours = median seconds of that implementation / median seconds of ours "
      f"(how many times faster ours is). Versions: {', '.join(versions)}.")
print(f"results: {out}")
EOF
