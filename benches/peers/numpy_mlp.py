#!/usr/bin/env python3
"""The mnist-mlp training workload in plain numpy: forward and backward by hand, float32 throughout.

784 → 500 → 250 → 100 → 10, ReLU hidden layers, softmax + cross-entropy averaged over the batch,
U(−1/√fan_in, 1/√fan_in) for weights and biases, and the update written exactly in the seed's form:

    g = (1/B) Σ_batch ∂E/∂w + λ·w      (λ on weights only; biases: g = mean gradient)
    v ← μ·v − α·g
    w ← w + v

Batches: a fresh permutation of the training set each epoch, the last partial batch dropped.
Only the training loop is timed. Prints one JSON line on stdout.

    python numpy_mlp.py --threads 1 --batch 64 --iterations 8000 [--data-dir DIR] [--eval]
"""

import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (stdlib only; numpy comes after the thread variables are set)

args = common.parse_args("numpy")
common.set_thread_env(args.threads)

import numpy as np  # noqa: E402

F32 = np.float32


def blas_name():
    """The BLAS numpy was built with and, where threadpoolctl is installed, the kernel it runs."""
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        name = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # numpy < 1.26 has no mode="dicts"
        name = "unknown"
    try:
        import threadpoolctl

        for lib in threadpoolctl.threadpool_info():
            if lib.get("internal_api") in ("openblas", "blis", "mkl") and lib.get("architecture"):
                name += f" ({lib['architecture']} kernels, {lib.get('num_threads')} threads)"
                break
    except ImportError:
        pass
    return name


def init_params(rng, sizes):
    ws, bs = [], []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        k = 1.0 / np.sqrt(fan_in)
        # Stored [in, out] so that the forward product is a @ W (PyTorch stores [out, in]).
        ws.append(rng.uniform(-k, k, size=(fan_in, fan_out)).astype(F32))
        bs.append(rng.uniform(-k, k, size=fan_out).astype(F32))
    return ws, bs


def forward_eval(ws, bs, x_u8, y, chunk=1000):
    """Untimed: mean cross-entropy and accuracy over a whole split."""
    total_loss, correct = 0.0, 0
    for s in range(0, len(y), chunk):
        a = x_u8[s:s + chunk] * F32(1.0 / 255.0)
        for layer, (w, b) in enumerate(zip(ws, bs)):
            a = a @ w + b
            if layer < len(ws) - 1:
                np.maximum(a, 0, out=a)
        yy = y[s:s + chunk]
        m = a.max(axis=1, keepdims=True)
        lse = np.log(np.exp(a - m).sum(axis=1)) + m[:, 0]
        total_loss += float((lse - a[np.arange(len(yy)), yy]).astype(np.float64).sum())
        correct += int((a.argmax(axis=1) == yy).sum())
    return total_loss / len(y), correct / len(y)


def main():
    rng = np.random.default_rng(args.seed)
    xtr, ytr, xte, yte, source = common.load_data(np, args.data_dir, args.seed)
    n, pixels = xtr.shape
    B = args.batch
    if B > n:
        raise SystemExit(f"--batch {B} is larger than the training set ({n})")
    sizes = [pixels] + args.hidden + [common.CLASSES]
    L = len(sizes) - 1

    ws, bs = init_params(rng, sizes)
    vw = [np.zeros_like(w) for w in ws]
    vb = [np.zeros_like(b) for b in bs]
    # Preallocated float32 buffers: acts[0] is the input batch, acts[l+1] layer l's output
    # (post-ReLU for hidden layers, logits for the last); dz[l] = ∂E/∂z of layer l.
    acts = [np.empty((B, s), F32) for s in sizes]
    dz = [np.empty((B, s), F32) for s in sizes[1:]]
    dw = [np.empty_like(w) for w in ws]
    db = [np.empty_like(b) for b in bs]
    gw = [np.empty_like(w) for w in ws]
    rows = np.arange(B)
    inv255, inv_b = F32(1.0 / 255.0), F32(1.0 / B)
    lr, mu, lam = F32(args.lr), F32(args.momentum), F32(args.l2)

    perm = rng.permutation(n)
    pos = 0
    losses = []

    t0 = time.perf_counter()
    for _ in range(args.iterations):
        # --- batch: next B indices of this epoch's permutation; reshuffle when too few remain.
        if pos + B > n:
            perm = rng.permutation(n)
            pos = 0
        idx = perm[pos:pos + B]
        pos += B
        np.multiply(xtr[idx], inv255, out=acts[0])  # uint8 → float32, like ours: p · (1/255)
        y = ytr[idx]

        # --- forward
        for l in range(L):
            np.matmul(acts[l], ws[l], out=acts[l + 1])
            acts[l + 1] += bs[l]
            if l < L - 1:
                np.maximum(acts[l + 1], 0, out=acts[l + 1])

        # --- softmax + mean cross-entropy; dz[L-1] = (softmax − onehot) / B
        z, d = acts[L], dz[L - 1]
        m = z.max(axis=1, keepdims=True)
        np.subtract(z, m, out=d)
        target = d[rows, y]  # shifted logit of the true class (a copy)
        np.exp(d, out=d)
        s = d.sum(axis=1, keepdims=True)
        losses.append(float(np.mean(np.log(s[:, 0]) - target)))
        d /= s
        d[rows, y] -= 1
        d *= inv_b

        # --- backward
        for l in range(L - 1, -1, -1):
            np.matmul(acts[l].T, dz[l], out=dw[l])
            np.sum(dz[l], axis=0, out=db[l])
            if l > 0:
                np.matmul(dz[l], ws[l].T, out=dz[l - 1])
                np.multiply(dz[l - 1], acts[l] > 0, out=dz[l - 1])  # ReLU'(z) = [a > 0]

        # --- update, the seed's form: v ← μv − α(g + λw); w ← w + v (no λ on biases)
        for l in range(L):
            g = gw[l]
            np.multiply(ws[l], lam, out=g)
            g += dw[l]
            g *= lr
            vw[l] *= mu
            vw[l] -= g
            ws[l] += vw[l]
            db[l] *= lr
            vb[l] *= mu
            vb[l] -= db[l]
            bs[l] += vb[l]
    train_seconds = time.perf_counter() - t0

    for arr in ws + bs + vw + vb + acts + dz:
        assert arr.dtype == F32, f"buffer upcast to {arr.dtype}"
    common.finish("numpy", args, B, losses, train_seconds, source,
                  {"version": np.__version__, "blas": blas_name()},
                  lambda: forward_eval(ws, bs, xte, yte))


if __name__ == "__main__":
    main()
