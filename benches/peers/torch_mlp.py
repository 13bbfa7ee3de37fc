#!/usr/bin/env python3
"""The mnist-mlp training workload in idiomatic PyTorch (eager mode, CPU, float32).

784 → 500 → 250 → 100 → 10 nn.Linear layers, ReLU hidden layers, F.cross_entropy (mean over the
batch), U(−1/√fan_in, 1/√fan_in) for weights and biases (nn.Linear's default, set explicitly here),
torch.optim.SGD(momentum=μ) with TWO parameter groups so that weight decay λ applies to the weights
only, as in ours (PyTorch's weight_decay would otherwise also decay the biases).

PyTorch's momentum is `buf = μ·buf + g; w −= α·buf` where ours is `v = μ·v − α·g; w += v`; with
a constant α, v = −α·buf, so both follow the same trajectory up to float rounding.

Batches: a fresh permutation of the training set each epoch, the last partial batch dropped; images
stay uint8 in memory and each batch is converted to float32. Only the training loop is timed.
Prints one JSON line on stdout.

    python torch_mlp.py --threads 1 --batch 64 --iterations 8000 [--data-dir DIR] [--eval]
"""

import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

args = common.parse_args("pytorch")
common.set_thread_env(args.threads)

import numpy as np  # noqa: E402  (data loading only)
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

torch.set_num_threads(args.threads)
torch.set_num_interop_threads(1)


def build(sizes):
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = nn.Linear(fan_in, fan_out)
        k = 1.0 / fan_in ** 0.5
        nn.init.uniform_(lin.weight, -k, k)
        nn.init.uniform_(lin.bias, -k, k)
        layers.append(lin)
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


@torch.inference_mode()
def evaluate(model, x_u8, y, chunk=1000):
    total_loss, correct = 0.0, 0
    for s in range(0, len(y), chunk):
        logits = model(x_u8[s:s + chunk].float().mul_(1.0 / 255.0))
        yy = y[s:s + chunk]
        total_loss += F.cross_entropy(logits, yy, reduction="sum").item()
        correct += (logits.argmax(dim=1) == yy).sum().item()
    return total_loss / len(y), correct / len(y)


def main():
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    xtr, ytr, xte, yte, source = common.load_data(np, args.data_dir, args.seed)
    xtr, ytr = torch.from_numpy(xtr.copy()), torch.from_numpy(ytr)  # uint8 [n, 784], int64 [n]
    xte, yte = torch.from_numpy(xte.copy()), torch.from_numpy(yte)
    n, pixels = xtr.shape
    B = args.batch
    if B > n:
        raise SystemExit(f"--batch {B} is larger than the training set ({n})")

    model = build([pixels] + args.hidden + [common.CLASSES])
    weights = [p for name, p in model.named_parameters() if name.endswith("weight")]
    biases = [p for name, p in model.named_parameters() if name.endswith("bias")]
    opt = torch.optim.SGD(
        [
            {"params": weights, "weight_decay": args.l2},
            {"params": biases, "weight_decay": 0.0},
        ],
        lr=args.lr,
        momentum=args.momentum,
    )
    model.train()

    perm = torch.randperm(n, generator=gen)
    pos = 0
    losses = []

    t0 = time.perf_counter()
    for _ in range(args.iterations):
        if pos + B > n:
            perm = torch.randperm(n, generator=gen)
            pos = 0
        idx = perm[pos:pos + B]
        pos += B
        x = xtr[idx].float().mul_(1.0 / 255.0)  # uint8 → float32 per batch, like ours
        y = ytr[idx]

        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)  # mean over the batch
        loss.backward()
        opt.step()
        losses.append(loss.item())
    train_seconds = time.perf_counter() - t0

    model.eval()
    common.finish("pytorch", args, B, losses, train_seconds, source,
                  {"version": torch.__version__, "torch_threads": torch.get_num_threads()},
                  lambda: evaluate(model, xte, yte))


if __name__ == "__main__":
    main()
