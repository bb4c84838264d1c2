#!/usr/bin/env bash
# The device check (issue #12): the project's training on a CUDA GPU, in at most 8 minutes.
#
#   benchmarks/gpu_check.sh [--wheels DIR | --bundle DIR] [--mirror DIR] [-- gpu_check.py args]
#
# It keeps the machine's own torch (a CUDA build, whatever its version and Python): it never
# installs torch. It makes a virtual environment that sees the system's packages (torch among
# them) and installs the project's other requirements into it, from the folder of wheels that
# --wheels names (offline: pip --no-index) or, without --wheels, from the package index.
# With --bundle DIR (the parts benchmarks/gpu_bundle.sh made, for a machine with no network
# whose python3 is itself a virtual environment) it checks and unpacks them, installs their
# wheels into DIR/site for the machine's python3 (no environment of its own) and reads SST-2
# from the bundle. Then it
# runs benchmarks/gpu_check.py (smoke cell in bf16, a short full-profile SST-2 cell in fp32 and
# bf16 for AdamW and AdaptiveAdam, the optimizer-step benchmark), which prints what it measured.
# Without a CUDA GPU the same script runs at toy size on the CPU and says so.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
wheels=""
bundle=""
mirror="${ADAOPT_DATA_MIRROR:-$root/../shared/data}"
venv="${GPU_CHECK_VENV:-$root/.gpu-check-venv}"
python="${PYTHON:-python3}"
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --wheels) wheels="$2"; shift 2 ;;
    --bundle) bundle="$2"; shift 2 ;;
    --mirror) mirror="$2"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "gpu_check.sh: unknown argument '$1'; allowed: --wheels DIR, --bundle DIR," \
            "--mirror DIR, -- ARGS" >&2
       exit 2 ;;
  esac
done

"$python" -c "import torch" 2>/dev/null || {
  echo "gpu_check.sh: $python has no torch; this check uses the machine's own (CUDA) torch" >&2
  exit 2
}
if [[ -n "$bundle" ]]; then
  (cd "$bundle" && sha256sum --check --quiet SHA256SUMS) || {
    echo "gpu_check.sh: $bundle: the parts do not match SHA256SUMS (one missing or cut?)" >&2
    exit 2
  }
  rm -rf "$bundle/unpacked" "$bundle/site"
  mkdir -p "$bundle/unpacked"
  cat "$bundle"/part.* | tar -xf - -C "$bundle/unpacked"
  "$python" -m pip install --quiet --no-index --no-deps --no-compile --target "$bundle/site" \
    "$bundle"/unpacked/wheels/*.whl
  export PYTHONPATH="$bundle/site"
  export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
  mirror="$bundle/unpacked/mirror"
  run="$python"
else
  if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv --system-site-packages "$venv"
  fi
  requirements="$(mktemp)"
  trap 'rm -f "$requirements"' EXIT
  grep -v -E '^(torch==|#|$)' "$root/requirements.txt" > "$requirements"  # torch: the machine's
  if [[ -n "$wheels" ]]; then
    "$venv/bin/pip" install --quiet --no-index --find-links "$wheels" -r "$requirements"
  else
    "$venv/bin/pip" install --quiet -r "$requirements"
  fi
  run="$venv/bin/python"
fi
# The package from the source tree, not installed: no build step, nothing fetched.
export PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$run" -c "import torch, transformers, datasets, pandas, adaopt.experiment
print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers',
      transformers.__version__, 'datasets', datasets.__version__, 'pandas', pandas.__version__)"
timeout 480 "$run" "$root/benchmarks/gpu_check.py" --mirror "$mirror" "${extra[@]}"
