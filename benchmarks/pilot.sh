#!/usr/bin/env bash
# The real-data pilot of issue #24, as it was run: the cpu profile's prepared data
# (`dvc repro prepare` with ADAOPT_DATA_MIRROR set), then the parts below in this order.
# Outputs: benchmarks/results/pilot/ (runs, timing.csv), benchmarks/results/learning_curves.csv,
# and benchmarks/results/pilot.md from `python benchmarks/pilot.py summary`.
set -euo pipefail
cd "$(dirname "$0")/.."
pilot="python benchmarks/pilot.py"
$pilot pairs --task lm_pretrain --steps 1000 --every 50
$pilot pairs --task sst2 --steps 300 --every 20
$pilot curves --task cola --steps 300 --every 25 --lr 3e-5 --lr 1e-4 --lr 3e-4
$pilot curves --task sst2 --steps 300 --every 25 --lr 3e-5 --lr 1e-4 --lr 3e-4
$pilot curves --task stsb --steps 200 --every 20 --lr 3e-5 --lr 1e-4 --lr 3e-4
$pilot curves --task rte --steps 150 --every 15 --lr 3e-5 --lr 1e-4 --lr 3e-4
$pilot curves --task mrpc --steps 150 --every 15 --lr 3e-5 --lr 1e-4 --lr 3e-4
$pilot curves --task squad --steps 120 --every 15 --lr 1e-4 --lr 3e-4
$pilot summary
