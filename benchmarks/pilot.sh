#!/usr/bin/env bash
# The real-data pilot of issue #24, as it was run: the cpu profile's prepared data
# (`dvc repro prepare` with ADAOPT_DATA_MIRROR set), then the parts below in this order.
# Outputs: benchmarks/results/pilot/ (runs, timing.csv), benchmarks/results/learning_curves.csv,
# and benchmarks/results/pilot.md from `python benchmarks/pilot.py summary`.
set -euo pipefail
cd "$(dirname "$0")/.."
pilot="python benchmarks/pilot.py"
$pilot pairs --task lm_pretrain --steps 600 --every 30
$pilot pairs --task sst2 --steps 240 --every 20
$pilot curves --task cola --steps 200 --every 20 --lr 1e-4 --lr 3e-4
$pilot curves --task stsb --steps 160 --every 20 --lr 1e-4 --lr 3e-4
$pilot curves --task rte --steps 120 --every 15 --lr 1e-4 --lr 3e-4
$pilot curves --task mrpc --steps 120 --every 15 --lr 1e-4 --lr 3e-4
$pilot curves --task sst2 --steps 160 --every 20 --lr 1e-4 --lr 3e-4
$pilot curves --task squad --steps 96 --every 16 --lr 1e-4 --lr 3e-4
$pilot summary
