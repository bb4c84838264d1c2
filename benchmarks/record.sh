#!/usr/bin/env bash
# Run a benchmark and keep what it printed as its committed result, with the machine and the
# command: benchmarks/results/<name>.txt (docs/benchmarks.md links each).
#
#   benchmarks/record.sh loop_vs_trainer python benchmarks/loop_vs_trainer.py --check
#
# Run it alone on the machine: another process on a core is what a timing would measure.
set -uo pipefail
name="$1"; shift
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/benchmarks/results/$name.txt"
model="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
kind="$(grep -qw avx512f /proc/cpuinfo && echo AVX512 || (grep -qw avx2 /proc/cpuinfo && echo AVX2 || uname -m))"
start=$(date +%s)
printed="$(cd "$root" && "$@" 2>&1)"
status=$?
{
  echo "command: $*"
  echo "commit: $(git -C "$root" rev-parse --short HEAD)"
  echo "machine: $model ($kind), $(nproc) cores, torch $("$root/.venv/bin/python" -c 'import torch; print(torch.__version__)' 2>/dev/null)"
  echo "date: $(date -u +%Y-%m-%d)"
  echo "wall seconds: $(( $(date +%s) - start ))"
  echo "exit status: $status"
  echo
  printf '%s\n' "$printed" | grep -v -e 'Loading weights' -e 'Saving the dataset' -e '^\s*$'
} > "$out"
echo "$out (exit status $status)"
exit $status
