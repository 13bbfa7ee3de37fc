#!/usr/bin/env bash
# Runs docs/cluster.md's Slurm recipe (scripts/slurm-study.sbatch) on a running Slurm cluster,
# e.g. one node on localhost, on a small synthetic data set in a directory every node sees
# (here: this machine's /tmp), and compares the sharded study with the same study in one
# process, as scripts/cluster-parallel.sh does. Not run by .ci/run: it needs slurmctld and
# slurmd running (root, see docs/cluster.md).
#
#   scripts/cluster-slurm.sh [path/to/mnist-mlp]     # default: target/release/mnist-mlp
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/release/mnist-mlp}")
command -v sbatch >/dev/null || { echo "sbatch not found: Slurm is not installed" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
. scripts/cluster-lib.sh
make_data
make_spec
single_study

export SPEC="$work/spec.toml" DIR="$work/slurm-study"
N=2
job=$(sbatch --parsable --chdir "$work" --array=0-$((N - 1)) scripts/slurm-study.sbatch)
report=$(sbatch --parsable --chdir "$work" --dependency=afterany:$job --wrap "mnist-mlp report --from $DIR")
# Wait for the report job (which waits for the array).
while squeue -h -j "$job,$report" 2>/dev/null | grep -q .; do sleep 1; done
cat "$work"/mnist-mlp-study-*.out "$work"/slurm-"$report".out
grep -q "4 of 4 runs finished" "$work"/slurm-"$report".out
compare "$DIR"
echo "Slurm array $job (2 tasks) and report job $report"
