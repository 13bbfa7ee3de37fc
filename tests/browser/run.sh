#!/usr/bin/env bash
# Browser test of `mnist-mlp serve`: trains a small MNIST model (unless MODEL=DIR is given),
# serves it on a free loopback port, and drives the page in headless Chromium with
# playwright-core. Needs Chromium (Debian: apt-get install chromium) and npm.
#
#   bash tests/browser/run.sh            # prints one line per check and "N passed, M failed"
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"
command -v "${CHROMIUM:-/usr/bin/chromium}" >/dev/null || { echo "no Chromium at ${CHROMIUM:-/usr/bin/chromium}; install Debian's chromium" >&2; exit 1; }
cargo build --release --quiet
BIN="$ROOT/target/release/mnist-mlp"
if [[ ! -d "$HERE/node_modules/playwright-core" ]]; then
    (cd "$HERE" && npm install --silent --no-audit --no-fund)
fi
WORK="$(mktemp -d)"
trap 'kill "${PID:-}" 2>/dev/null || true; rm -rf "$WORK"' EXIT
MODEL="${MODEL:-}"
if [[ -z "$MODEL" ]]; then
    MODEL="$WORK/model"
    echo "training a model for the page (ReLU, 3000 iterations)" >&2
    "$BIN" train --iterations 3000 --eval-every 3000 --quiet --out "$MODEL"
fi
"$BIN" serve --model "$MODEL" --addr 127.0.0.1:0 > "$WORK/addr" 2>"$WORK/serve.log" &
PID=$!
for _ in $(seq 50); do grep -q listening "$WORK/addr" 2>/dev/null && break; sleep 0.1; done
BASE="$(sed -n 's/^listening on //p' "$WORK/addr")"
node "$HERE/draw.mjs" "$BASE" "${SCREENSHOT:-$WORK/page.png}"

# The live page of a training run: `train --watch` on a free port, checked while it trains.
kill "$PID" 2>/dev/null || true
WATCH_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$BIN" train --iterations 6000 --eval-every 250 --hidden 256,128 --quiet --out "$WORK/watched" \
    --watch "127.0.0.1:$WATCH_PORT" 2>"$WORK/watch.log" &
PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$WATCH_PORT/api/state" >/dev/null && break; sleep 0.1; done
node "$HERE/watch.mjs" "http://127.0.0.1:$WATCH_PORT" "${WATCH_SCREENSHOT:-$WORK/watch.png}"
