#!/usr/bin/env bash
# Runs docs/cluster.md's GNU parallel recipes as written, on a small synthetic data set (four
# runs of 200 iterations, two shards at once), and checks that the sharded study gives what the
# same study gives in one process: the same model bytes for every run, and the same
# results.json apart from the fields that record time, host and shard. `.ci/run` runs it.
#
#   scripts/cluster-parallel.sh [path/to/mnist-mlp]     # default: target/release/mnist-mlp
#
# The --sshlogin recipe runs through a stand-in for ssh (`--ssh`, the one addition to the
# recipe) that runs the remote command on this machine: GNU parallel builds, quotes and wraps
# the remote command exactly as for a real host, PARALLEL_SEQ included.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/release/mnist-mlp}")
command -v parallel >/dev/null || { echo "GNU parallel is not installed (apt-get install parallel)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is needed to write the synthetic data set" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
. scripts/cluster-lib.sh
make_data
make_spec
single_study
SPEC="$work/spec.toml"

# Recipe: GNU parallel on one machine.
DIR="$work/parallel"
N=2
parallel --jobs $N --halt now,fail=1 \
  mnist-mlp study --spec $SPEC --out $DIR --quiet --shard {}/$N ::: $(seq 0 $((N - 1)))
mnist-mlp report --from $DIR

# Recipe: GNU parallel over ssh, one shard per host.
cat > "$work/ssh" <<'EOF'
#!/bin/sh
# Stands in for ssh: drops the options and the host name, runs the remote command here.
# sshd always sets SHELL for the remote command, and GNU parallel's remote wrapper runs the
# job with $SHELL, so set it where the caller's environment has none (as under CI).
export SHELL="${SHELL:-/bin/sh}"
while [ $# -gt 0 ]; do
  case "$1" in -l|-p|-o|-i|-F) shift 2 ;; -*) shift ;; *) break ;; esac
done
shift
[ "${1:-}" = "--" ] && shift
exec sh -c "$*"
EOF
chmod +x "$work/ssh"
DIR="$work/ssh-study"
N=2
parallel --ssh "$work/ssh" \
  -N0 --sshlogin 1/node1,1/node2 --halt now,fail=1 \
  mnist-mlp study --spec $SPEC --out $DIR --quiet --shard auto/$N ::: $(seq $N)
mnist-mlp report --from $DIR

# The count that the Slurm and Kubernetes recipes take from --list.
count=$(mnist-mlp study --spec $SPEC --list | tail -n 1 | cut -d' ' -f1)
[ "$count" = 4 ] || { echo "--list counts $count runs, expected 4" >&2; exit 1; }

compare "$work/parallel" "$work/ssh-study"
