"""Write tests/fixtures/reference.json: gradients and a short training trajectory of a small MLP,
computed by an independent numpy implementation of the seed report's equations (§2.1).

The Rust test tests/reference.rs reads the JSON and compares, so the tests never need Python.
Regenerate with:  python3 scripts/reference/make_fixture.py   (needs numpy)
"""
import json
import pathlib

import numpy as np

SIZES = [8, 6, 5, 10]
BATCH = 4
STEPS = 5
LR, MOMENTUM, L2 = 0.1, 0.9, 0.005


def f(z, act):
    return 1.0 / (1.0 + np.exp(-z)) if act == "sigmoid" else np.maximum(z, 0.0)


def df_from_a(a, act):
    return a * (1.0 - a) if act == "sigmoid" else (a > 0).astype(np.float64)


def loss_and_grads(Ws, bs, x, y, act):
    """Mean cross-entropy over the batch and its gradient w.r.t. every W (O, I) and b (O)."""
    a = [x]
    for l, (W, b) in enumerate(zip(Ws, bs)):
        z = a[-1] @ W.T + b
        a.append(f(z, act) if l < len(Ws) - 1 else z)
    z = a.pop()
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    n = x.shape[0]
    loss = -np.log(p[np.arange(n), y]).mean()
    onehot = np.eye(SIZES[-1])[y]
    delta = (p - onehot) / n  # δ^L = ŷ − y, averaged over the batch
    dWs, dbs = [None] * len(Ws), [None] * len(Ws)
    for l in reversed(range(len(Ws))):
        dWs[l] = delta.T @ a[l]
        dbs[l] = delta.sum(axis=0)
        if l > 0:
            delta = (delta @ Ws[l]) * df_from_a(a[l], act)
    return loss, dWs, dbs


def flat(Ws, bs):
    return [float(v) for W, b in zip(Ws, bs) for v in list(W.ravel()) + list(b)]


def case(act, rng):
    Ws = [rng.uniform(-0.6, 0.6, (o, i)) for i, o in zip(SIZES[:-1], SIZES[1:])]
    bs = [rng.uniform(-0.2, 0.2, o) for o in SIZES[1:]]
    x = rng.uniform(0.0, 1.0, (BATCH, SIZES[0]))
    y = rng.integers(0, SIZES[-1], BATCH)
    params = flat(Ws, bs)
    loss, dWs, dbs = loss_and_grads(Ws, bs, x, y, act)

    # Momentum SGD exactly as the seed: g = mean grad + λw (weights only), v = μv − αg, w += v.
    batches, losses = [], []
    vW = [np.zeros_like(W) for W in Ws]
    vb = [np.zeros_like(b) for b in bs]
    for _ in range(STEPS):
        bx = rng.uniform(0.0, 1.0, (BATCH, SIZES[0]))
        by = rng.integers(0, SIZES[-1], BATCH)
        batches.append({"x": [float(v) for v in bx.ravel()], "labels": [int(v) for v in by]})
        step_loss, gW, gb = loss_and_grads(Ws, bs, bx, by, act)
        losses.append(float(step_loss))
        for l in range(len(Ws)):
            vW[l] = MOMENTUM * vW[l] - LR * (gW[l] + L2 * Ws[l])
            vb[l] = MOMENTUM * vb[l] - LR * gb[l]
            Ws[l] = Ws[l] + vW[l]
            bs[l] = bs[l] + vb[l]
    return {
        "activation": act,
        "params": params,
        "x": [float(v) for v in x.ravel()],
        "labels": [int(v) for v in y],
        "loss": float(loss),
        "grads": flat(dWs, dbs),
        "trajectory": {"batches": batches, "losses": losses, "final_params": flat(Ws, bs)},
    }


def main():
    rng = np.random.default_rng(20261127)
    out = {
        "generator": "scripts/reference/make_fixture.py (numpy %s)" % np.__version__,
        "sizes": SIZES,
        "sgd": {"lr": LR, "momentum": MOMENTUM, "l2": L2, "l2_mode": "per-sample"},
        "cases": [case("sigmoid", rng), case("relu", rng)],
    }
    path = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "reference.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
