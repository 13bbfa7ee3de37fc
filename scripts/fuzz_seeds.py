#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (fuzz/seeds/<target>/), which are committed and
replayed by `cargo test` (tests/fuzz_corpus.rs). Standard library only.

Usage: scripts/fuzz_seeds.py MODEL_DIR   (a model trained with --hidden 4, whose config.json and
model.safetensors seed the `model` target)"""
import gzip, json, os, struct, sys, zlib

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz", "seeds")


def put(target, name, data):
    d = os.path.join(root, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def idx_images(n, rows, cols, pixels):
    return struct.pack(">IIII", 0x803, n, rows, cols) + bytes(pixels)


def png(width, height, pixels):
    """An 8-bit greyscale PNG."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    raw = b"".join(b"\0" + bytes(pixels[r * width:(r + 1) * width]) for r in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


# A digit-like stroke on black, 28×28, and a white-on-black bar of another size.
digit = [255 if 8 <= c <= 11 and 4 <= r <= 23 else 0 for r in range(28) for c in range(28)]
bar = [0 if 10 <= c <= 14 else 255 for r in range(40) for c in range(30)]

images = idx_images(2, 28, 28, digit + digit[::-1])
labels = struct.pack(">II", 0x801, 3) + bytes([1, 7, 3])
put("idx", "images", b"\0" + images[1:])  # even first byte: read raw
put("idx", "labels", labels)
put("idx", "images.gz", gzip.compress(images, mtime=0))  # gzip's first byte 0x1f is odd
put("idx", "truncated", images[:100])
put("idx", "huge-count", struct.pack(">IIII", 0x803, 0xFFFFFFFF, 28, 28))
put("idx", "empty", b"")

model_dir = sys.argv[1]
config = open(os.path.join(model_dir, "config.json"), "rb").read()
weights = open(os.path.join(model_dir, "model.safetensors"), "rb").read()
put("model", "tiny", struct.pack("<H", len(config)) + config + weights)
put("model", "truncated-weights", struct.pack("<H", len(config)) + config + weights[:200])
put("model", "config-only", struct.pack("<H", len(config)) + config)
big = json.loads(config)
big["model"]["layer_sizes"] = [784, 100000000, 10]
big = json.dumps(big).encode()
put("model", "claims-a-huge-layer", struct.pack("<H", len(big)) + big + weights)

put("image", "digit.png", png(28, 28, digit))
put("image", "bar.png", png(30, 40, bar))
put("image", "blank.png", png(28, 28, [0] * 784))
put("image", "truncated.png", png(28, 28, digit)[:60])
put("image", "not-an-image", b"hello")

put("http_body", "json", b"\0" + json.dumps({"pixels": [d / 255 for d in digit]}).encode())
put("http_body", "json-short", b"\0" + json.dumps({"pixels": [0.5] * 10}).encode())
put("http_body", "json-out-of-range", b"\x05" + json.dumps({"pixels": [2.0] * 784}).encode())
put("http_body", "png", b"\x01" + png(28, 28, digit))
put("http_body", "text", b"\x03" + b"hello")
put("http_body", "empty-type", b"\x04")
