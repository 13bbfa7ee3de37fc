#!/usr/bin/env python3
"""Run an mnist-mlp model with numpy alone, as any other tool would read it, and print logits.

The model directory is what `mnist-mlp train` writes: `model.safetensors` holds
`layers.{i}.weight` [out, in] and `layers.{i}.bias` [out] (f32, i = 0 next to the input) and
`config.json` names the hidden activation (`model.activation`: sigmoid, relu or tanh). The
output layer is linear; the logits are the scores before softmax.

Inputs, each a row of 784 pixels in 0..1 (28x28 row-major, white digit on black):
  --idx FILE --indices 0,1,2   images of an IDX image file (gzip or not), pixels = byte / 255
  --pixels FILE.json           a JSON list of 784-number lists

Prints {"logits": [[10 floats], ...]} on stdout. Compare with `mnist-mlp predict --json`, whose
entries carry the same "logits" (tests/predict.rs does). Needs: pip install numpy safetensors
"""
import argparse
import gzip
import json
import pathlib
import sys

import numpy as np
from safetensors.numpy import load_file

ACTIVATIONS = {
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "relu": lambda z: np.maximum(z, 0.0),
    "tanh": np.tanh,
}


def load_model(model_dir):
    model_dir = pathlib.Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    activation = config["model"]["activation"]
    if activation not in ACTIVATIONS:
        sys.exit(f"{model_dir / 'config.json'}: unknown activation {activation!r}")
    tensors = load_file(str(model_dir / "model.safetensors"))
    layers = []
    while f"layers.{len(layers)}.weight" in tensors:
        i = len(layers)
        layers.append((tensors[f"layers.{i}.weight"], tensors[f"layers.{i}.bias"]))
    if not layers:
        sys.exit(f"{model_dir / 'model.safetensors'}: no layers.0.weight tensor")
    return layers, ACTIVATIONS[activation]


def forward(layers, f, x):
    """Logits of x (n, I); hidden layers a = f(a W^T + b), the last layer linear. In float64."""
    a = np.asarray(x, dtype=np.float64)
    for i, (w, b) in enumerate(layers):
        z = a @ w.astype(np.float64).T + b.astype(np.float64)
        a = z if i == len(layers) - 1 else f(z)
    return a


def read_idx_images(path, indices):
    raw = pathlib.Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    magic = int.from_bytes(raw[0:4], "big")
    if magic != 0x803:
        sys.exit(f"{path}: magic {magic:#x}, expected 0x803 (IDX images)")
    count, rows, cols = (int.from_bytes(raw[4 + 4 * k : 8 + 4 * k], "big") for k in range(3))
    images = np.frombuffer(raw, dtype=np.uint8, offset=16, count=count * rows * cols)
    images = images.reshape(count, rows * cols)
    for i in indices:
        if not 0 <= i < count:
            sys.exit(f"{path}: index {i} out of range 0..{count - 1}")
    return images[indices].astype(np.float64) / 255.0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="model directory (config.json + model.safetensors)")
    p.add_argument("--idx", help="IDX image file")
    p.add_argument("--indices", help="comma-separated image indices into --idx")
    p.add_argument("--pixels", help="JSON file: a list of 784-number lists")
    args = p.parse_args()

    if args.pixels and not args.idx:
        x = np.asarray(json.loads(pathlib.Path(args.pixels).read_text()), dtype=np.float64)
        if x.ndim != 2:
            sys.exit(f"{args.pixels}: expected a list of equally long lists of numbers")
    elif args.idx and args.indices and not args.pixels:
        x = read_idx_images(args.idx, [int(s) for s in args.indices.split(",")])
    else:
        p.error("give either --idx FILE --indices 0,1,2 or --pixels FILE.json")

    layers, f = load_model(args.model)
    if x.shape[1] != layers[0][0].shape[1]:
        sys.exit(f"inputs have {x.shape[1]} values, the model expects {layers[0][0].shape[1]}")
    json.dump({"logits": forward(layers, f, x).tolist()}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
