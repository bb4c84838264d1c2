#!/usr/bin/env bash
# The pilot of issue #31, as it was run: the controller's and the verdict's current rules on real
# data. PREPARED holds the cpu profile's preparation of ADAOPT_DATA_MIRROR (selection splits of
# 1,000) for sst2 and stsb; each optimizer runs in its own one-thread process, side by side.
# Outputs: benchmarks/results/pilot_rules/ (runs, params, timing.csv) and
# benchmarks/results/pilot_rules.md from the last command.
set -euo pipefail
cd "$(dirname "$0")/.."
prepared="${PREPARED:-data/prepared}"
pilot="python benchmarks/pilot.py --out benchmarks/results/pilot_rules --prepared $prepared"
for optimizer in adamw adaptive_adam; do
  ($pilot pairs --task sst2 --steps 240 --every 24 --seeds 0 1 2 3 4 5 6 7 8 9 \
     --optimizers "$optimizer" &&
   $pilot pairs --task stsb --steps 160 --every 16 --seeds 0 1 2 3 4 --optimizers "$optimizer") &
done
wait
$pilot verdict
