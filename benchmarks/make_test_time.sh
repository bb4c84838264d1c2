#!/usr/bin/env bash
# How long a newcomer's `make test` takes: a fresh clone of HEAD, the environment built from
# its own files, the README's test command, timed. Writes benchmarks/results/make_test.json
# (wall seconds, pytest's summary line, the machine), which the README quotes.
#
#   ADAOPT_DATA_MIRROR=../shared/data benchmarks/make_test_time.sh [CLONE_DIR]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
clone="${1:-/tmp/adaopt-make-test}"
rm -rf "$clone" && git clone --quiet "$root" "$clone"
log="$clone.log"
start=$(date +%s)
status=0
(cd "$clone" && make test) > "$log" 2>&1 || status=$?
seconds=$(( $(date +%s) - start ))
summary="$(grep -E '^=+ .*(passed|failed).* =+$' "$log" | tail -1 | sed -E 's/^=+ //; s/ =+$//')"
python3 - "$root/benchmarks/results/make_test.json" "$seconds" "$status" "$summary" <<'PY'
import json, os, platform, subprocess, sys
path, seconds, status, summary = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
kind = "AVX512" if " avx512f" in flags else "AVX2" if " avx2" in flags else platform.machine()
model = next((line.split(":", 1)[1].strip() for line in flags.splitlines()
              if line.startswith("model name")), platform.processor())
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                        cwd=os.path.dirname(path)).stdout.strip()
record = {"command": "make test (fresh clone, environment install included)", "commit": commit,
          "wall_seconds": seconds, "minutes": f"{seconds // 60} min {seconds % 60} s",
          "exit_status": status, "pytest": summary, "cpu": kind, "cpu_model": model,
          "cores": os.cpu_count()}
with open(path, "w") as handle:
    json.dump(record, handle, indent=2)
    handle.write("\n")
print(json.dumps(record))
PY
exit "$status"
