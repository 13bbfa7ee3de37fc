# Shared by scripts/cluster-parallel.sh and scripts/cluster-slurm.sh: a synthetic data set, a
# study spec of four short runs, the study run in one process, and the comparison of sharded
# studies with it. Sourced with `work` (a scratch directory) and `bin` (the binary) set.

export MNIST_MLP_CACHE="$work/no-cache" MNIST_MLP_DATA="$work/no-cache"
# The recipes call `mnist-mlp` by name, as docs/cluster.md writes them.
export PATH="$(dirname "$bin"):$PATH"
unset SLURM_ARRAY_TASK_ID JOB_COMPLETION_INDEX PARALLEL_SEQ

# 400 training and 100 test images of ten classes: a bright square whose place is the class.
make_data() {
python3 - "$work/data" <<'EOF'
import os, random, struct, sys
out = sys.argv[1]
os.makedirs(out)
rng = random.Random(7)
def split(n):
    pixels, labels = bytearray(), bytearray()
    for i in range(n):
        c = i % 10
        img = bytearray(rng.randrange(40) for _ in range(784))
        top, left = 3 + (c // 5) * 13 + rng.randrange(3), 1 + (c % 5) * 5 + rng.randrange(2)
        for r in range(top, top + 5):
            for col in range(left, min(left + 5, 28)):
                img[r * 28 + col] = 200 + rng.randrange(56)
        pixels += img
        labels.append(c)
    return pixels, labels
for name, n in (("train", 400), ("t10k", 100)):
    pixels, labels = split(n)
    with open(f"{out}/{name}-images-idx3-ubyte", "wb") as f:
        f.write(struct.pack(">IIII", 2051, n, 28, 28) + pixels)
    with open(f"{out}/{name}-labels-idx1-ubyte", "wb") as f:
        f.write(struct.pack(">II", 2049, n) + labels)
EOF

cat > "$work/spec.toml" <<EOF
name = "parallel-recipe"
seeds = [1, 2]
[base]
hidden = [16]
iterations = 200
eval_every = 50
data_dir = "$work/data"
[grid]
lr = [0.05, 0.1]
EOF
}

make_spec() {
cat > "$work/spec.toml" <<EOF
name = "parallel-recipe"
seeds = [1, 2]
[base]
hidden = [16]
iterations = 200
eval_every = 50
data_dir = "$work/data"
[grid]
lr = [0.05, 0.1]
EOF
}

# The study in one process: one job of one thread per run, as in the shards (the thread count
# is recorded in results.json; the bits do not depend on it).
single_study() {
  "$bin" study --spec "$work/spec.toml" --out "$work/single" --jobs 2 --quiet >/dev/null
}

# compare DIR...: each study directory against the single process's.
compare() {
python3 - "$work/single" "$@" <<'EOF'
import json, sys
single, *sharded = sys.argv[1:]
# Time, host and shard; the thread count is the host's too (its cores over --jobs).
ignored = {"train_seconds", "samples_per_second", "host", "shard"}
def results(d):
    out = []
    for r in json.load(open(f"{d}/results.json")):
        r = {k: v for k, v in r.items() if k not in ignored}
        del r["config"]["threads"]
        out.append(r)
    return out
want = results(single)
assert len(want) == 4, want
for d in sharded:
    got = results(d)
    assert got == want, f"{d}/results.json differs from the single process's"
    shards = sorted({r["shard"] for r in json.load(open(f"{d}/results.json"))})
    assert shards == ["0/2", "1/2"], shards
    for r in want:
        a = open(f"{single}/runs/{r['name']}/model.safetensors", "rb").read()
        b = open(f"{d}/runs/{r['name']}/model.safetensors", "rb").read()
        assert a == b, f"{d}: model of {r['name']} differs"
print(f"{len(sharded)} sharded studies of 4 runs in 2 shards match the single process: "
      "models byte for byte, results.json but for time, host and shard")
EOF
}
