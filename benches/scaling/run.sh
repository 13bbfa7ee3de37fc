#!/usr/bin/env bash
# Scaling with the core count: the training step of the seed network at batch 64, 256 and 1024
# on 1, 2, 4, 8 and 16 threads, mnist-mlp (`bench`) against PyTorch (benches/peers/torch_mlp.py)
# on the same host, alternating. Prints one table of ms per step and the ratio PyTorch / ours.
# Meant for hosts with more cores than threads asked for; short (about a minute per thread
# count on a 16-core host).
#
#   bash benches/scaling/run.sh
#
# Environment (defaults in brackets):
#   THREADS     thread counts ["1 2 4 8 16"], each at most the host's cores
#   BATCH       batch sizes ["64 256 1024"]
#   STEPS       PyTorch's timed iterations per (batch, threads) [300]
#   BIN         the mnist-mlp binary [target/release/mnist-mlp, built if missing]
#   PYTHON      a Python with torch and numpy [benches/peers/.venv/bin/python, made by
#               benches/peers/run.sh]
#   OUT         results JSON [benches/scaling/results.json]
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
THREADS=${THREADS:-"1 2 4 8 16"}
BATCH=${BATCH:-"64 256 1024"}
STEPS=${STEPS:-300}
BIN=${BIN:-$ROOT/target/release/mnist-mlp}
PYTHON=${PYTHON:-$ROOT/benches/peers/.venv/bin/python}
OUT=${OUT:-$HERE/results.json}
cores=$(nproc)
for n in $THREADS $BATCH $STEPS; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "THREADS, BATCH and STEPS must be positive integers (got '$n')" >&2; exit 1; }
done
for t in $THREADS; do
    (( t <= cores )) || { echo "--threads $t asked for, but this host has $cores cores; set THREADS" >&2; exit 1; }
done
[[ -x "$BIN" ]] || (cd "$ROOT" && cargo build --release --quiet)
have_torch=1
"$PYTHON" -c "import torch" 2>/dev/null || { have_torch=0; echo "no torch in $PYTHON: timing mnist-mlp alone (run benches/peers/run.sh once to make the environment)" >&2; }

batches=$(echo "$BATCH" | tr ' ' ',')
rows=()
for t in $THREADS; do
    ours=$("$BIN" bench --batch "$batches" --threads "$t" --json)
    rows+=("$(python3 -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps({"threads": int(sys.argv[1]), "ours": d}))' "$t" <<< "$ours")")
    if (( have_torch )); then
        for b in $BATCH; do
            torch=$("$PYTHON" "$ROOT/benches/peers/torch_mlp.py" --threads "$t" --batch "$b" --iterations "$STEPS")
            rows+=("$(python3 -c 'import json,sys; print(json.dumps({"threads": int(sys.argv[1]), "torch": json.loads(sys.argv[2])}))' "$t" "$torch")")
        done
    fi
done
ROWS=$(mktemp); trap 'rm -f "$ROWS"' EXIT
printf '%s\n' "${rows[@]}" > "$ROWS"
python3 - "$ROWS" "$OUT" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $cores cores" <<'PY'
import json, sys
rows, out, machine = sys.argv[1], sys.argv[2], sys.argv[3]
ours, torch = {}, {}
for line in open(rows):
    r = json.loads(line)
    t = r["threads"]
    if "ours" in r:
        for s in r["ours"]["steps"]:
            if s["threads"] == t:
                ours[(s["batch"], t)] = s["ms_per_step"]
    else:
        x = r["torch"]
        torch[(x["batch"], t)] = 1000 * x["train_seconds"] / x["iterations"]
json.dump({"machine": machine,
           "ours_ms": {f"{b}/{t}": v for (b, t), v in ours.items()},
           "torch_ms": {f"{b}/{t}": v for (b, t), v in torch.items()}}, open(out, "w"), indent=1)
print(f"machine: {machine}; ms per step (PyTorch / ours)")
threads = sorted({t for _, t in ours})
print("| batch | " + " | ".join(f"{t} threads" for t in threads) + " |")
print("|---|" + "---|" * len(threads))
for b in sorted({b for b, _ in ours}):
    cells = []
    for t in threads:
        o, p = ours.get((b, t)), torch.get((b, t))
        cells.append(f"{o:.2f}" + (f" ({p / o:.1f}×)" if p else ""))
    print(f"| {b} | " + " | ".join(cells) + " |")
PY
