"""Shared by the peer benchmarks: flags, thread environment, data loading, the JSON line.

Nothing here imports numpy or torch at module level: the thread-count environment variables must
be set before either is imported, so the scripts parse their flags first (see `setup`).
"""

import argparse
import gzip
import json
import os
import struct
import sys

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"

# Thread-count variables read by the BLAS / OpenMP runtimes when they load.
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)

# Size of the synthetic stand-in for MNIST when no --data-dir is given.
SYNTH_TRAIN, SYNTH_TEST, SYNTH_PIXELS, CLASSES = 60_000, 10_000, 28 * 28, 10

# Mean training loss is reported over this many last iterations (our metrics.csv window with the
# default --eval-every 250).
LOSS_WINDOW = 250


def parse_args(impl):
    p = argparse.ArgumentParser(
        description=f"Train the mnist-mlp benchmark MLP with {impl} and print one JSON line.",
    )
    p.add_argument("--threads", type=int, default=1, help="compute threads (default 1)")
    p.add_argument("--batch", "--batch-size", dest="batch", type=int, default=64,
                   help="minibatch size B (default 64)")
    p.add_argument("--iterations", type=int, default=8000, help="training iterations (default 8000)")
    p.add_argument("--data-dir", default=None,
                   help="directory with the four raw (or .gz) MNIST IDX files; "
                        "without it, random uint8 images and labels of MNIST's shape")
    p.add_argument("--hidden", default="500,250,100", help="hidden layer sizes (default 500,250,100)")
    p.add_argument("--lr", type=float, default=0.01, help="learning rate α (default 0.01)")
    p.add_argument("--momentum", type=float, default=0.9, help="momentum μ (default 0.9)")
    p.add_argument("--l2", type=float, default=0.005, help="L2 λ on weights only (default 0.005)")
    p.add_argument("--seed", type=int, default=0, help="seed for init, shuffling, synthetic data")
    p.add_argument("--eval", action="store_true",
                   help="after training (untimed), print test loss and accuracy on stderr "
                        "and add them to the JSON line")
    a = p.parse_args()
    if a.threads < 1 or a.batch < 1 or a.iterations < 1:
        p.error("--threads, --batch and --iterations must be positive")
    try:
        a.hidden = [int(h) for h in a.hidden.split(",")]
    except ValueError:
        p.error(f"--hidden '{a.hidden}' is not a comma-separated list of sizes")
    return a


def set_thread_env(threads):
    """Pin every BLAS/OpenMP runtime to `threads`. Call before importing numpy or torch."""
    for var in THREAD_VARS:
        os.environ[var] = str(threads)


def _read_idx(np, path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise SystemExit(f"{path}: not an unsigned-byte IDX file")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise SystemExit(f"{path}: {arr.size} bytes of data, header says {dims}")
    return arr.reshape(dims)


def _find(data_dir, name):
    for cand in (os.path.join(data_dir, name), os.path.join(data_dir, name + ".gz")):
        if os.path.isfile(cand):
            return cand
    raise SystemExit(f"{data_dir}: no {name} (nor {name}.gz)")


def load_data(np, data_dir, seed):
    """(train_images u8 [n, 784], train_labels int64 [n], test_images, test_labels, source)."""
    if data_dir:
        xs = []
        for name in (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS):
            xs.append(_read_idx(np, _find(data_dir, name)))
        xtr, ytr, xte, yte = xs
        xtr = np.ascontiguousarray(xtr.reshape(xtr.shape[0], -1))
        xte = np.ascontiguousarray(xte.reshape(xte.shape[0], -1))
        return xtr, ytr.astype(np.int64), xte, yte.astype(np.int64), os.path.abspath(data_dir)
    # Same shapes and dtypes as MNIST, so the same compute; the accuracy means nothing.
    rng = np.random.default_rng(seed + 1_000_003)
    xtr = rng.integers(0, 256, size=(SYNTH_TRAIN, SYNTH_PIXELS), dtype=np.uint8)
    ytr = rng.integers(0, CLASSES, size=SYNTH_TRAIN, dtype=np.int64)
    xte = rng.integers(0, 256, size=(SYNTH_TEST, SYNTH_PIXELS), dtype=np.uint8)
    yte = rng.integers(0, CLASSES, size=SYNTH_TEST, dtype=np.int64)
    return xtr, ytr, xte, yte, "synthetic"


def finish(impl, args, batch, losses, train_seconds, source, extra, evaluate=None):
    """Check the run did not diverge, build its result record (`extra` adds fields), add the test
    figures when `--eval` was given (`evaluate()` returns loss and accuracy), and print it."""
    if losses[-1] != losses[-1] or abs(losses[-1]) == float("inf"):
        raise SystemExit(f"diverged: loss {losses[-1]}")
    window = losses[-LOSS_WINDOW:]
    record = {
        "impl": impl,
        "threads": args.threads,
        "batch": batch,
        "iterations": args.iterations,
        "train_seconds": train_seconds,
        "samples_per_second": args.iterations * batch / train_seconds,
        "final_loss": sum(window) / len(window),
        **extra,
        "data": source,
    }
    if args.eval and evaluate is not None:
        test_loss, test_acc = evaluate()
        record["test_loss"], record["test_accuracy"] = test_loss, test_acc
        log(f"{impl}: test loss {test_loss:.4f}, test accuracy {100 * test_acc:.2f}% "
            f"after {args.iterations} iterations ({source})")
    emit(record)


def emit(record):
    print(json.dumps(record), flush=True)


def log(msg):
    print(msg, file=sys.stderr, flush=True)
