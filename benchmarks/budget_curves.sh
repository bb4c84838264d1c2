#!/usr/bin/env bash
# The selection-split curves that sized #33's budgets where the pilot's stopped short (MRPC past
# 120 steps, CoLA at lower learning rates), as they were run: the cpu profile's prepared data
# (`dvc repro prepare` with ADAOPT_DATA_MIRROR set), two one-thread processes side by side.
# Outputs: benchmarks/results/budget_curves.csv and budget_curves.md.
set -euo pipefail
cd "$(dirname "$0")/.."
params="$(mktemp --suffix=.yaml)"
python - "$params" <<'PY'
import sys, yaml
raw = yaml.safe_load(open("params.yaml"))
raw["train"]["threads"] = 1  # one core each: the two curves run side by side
yaml.safe_dump(raw, open(sys.argv[1], "w"), sort_keys=False)
PY
out=benchmarks/results/budget_curves.csv
python benchmarks/learning_curves.py --task mrpc --steps 360 --every 30 --lr 3e-5 --lr 1e-4 \
  --params "$params" --out "$out.mrpc" &
python benchmarks/learning_curves.py --task cola --steps 400 --every 40 --lr 3e-5 --lr 5e-5 \
  --params "$params" --out "$out.cola"
wait
python - "$out" <<'PY'
import sys
import pandas as pd
out = sys.argv[1]
pd.concat([pd.read_csv(f"{out}.mrpc"), pd.read_csv(f"{out}.cola")]).to_csv(out, index=False)
PY
rm "$out.mrpc" "$out.cola" "$params"
python benchmarks/budget_curves.py
