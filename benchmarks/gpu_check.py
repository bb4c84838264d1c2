"""The device check: the project's training on a CUDA GPU, measured in a few minutes.

Usage (``benchmarks/gpu_check.sh`` sets up the environment and calls this)::

    python benchmarks/gpu_check.py [--mirror DIR] [--steps 300] [--optimizer-repeats 20]

Three parts, each printing what it measured:

1. **smoke cell**: the smoke profile's SST-2 cell (a tiny BERT, the fixture data) for AdamW,
   trained in bf16 on the device: the pipeline's code path runs there.
2. **full cell**: the ``full`` profile's model and data settings (MiniLM, 128 tokens, batch 32)
   on the real SST-2 of ``--mirror``: AdamW and AdaptiveAdam (lr 1e-4, the fair setting, seed 0;
   not tuned) for ``--steps`` steps each in fp32 and in bf16, dev accuracy of the selected
   weights on the whole dev set, training samples/s, peak memory, and bf16's throughput over
   fp32's for each optimizer; then AdamW in bf16 with its loss and gradient norm read back from
   the device every step and every ``steps / 6`` steps (``train.log_every``), side by side.
3. **optimizer step**: ``benchmarks/optimizer_step.py`` on the device.

Without a CUDA GPU it runs the same parts on the CPU at toy size (a handful of steps, the tiny
model for part 2) and says so: that path exists so that the script is tested where no GPU is.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_MIRROR = ROOT / "tests" / "fixtures" / "mirror"
LR = 1e-4


def profile(name: str, **changes: Any) -> dict[str, Any]:
    """A profile's raw params with the check's changes (``section.key`` -> value)."""
    raw = yaml.safe_load((ROOT / "profiles" / f"{name}.yaml").read_text())
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        section = raw
        for part in parents:
            section = section[part]
        section[key] = value
    raw["sweep"]["cells"] = {key: cell for key, cell in raw["sweep"]["cells"].items()
                             if cell["task"] in raw["workloads"]}  # the design's cells left
    return raw


def prepare_sst2(raw: dict[str, Any], mirror: Path, out: Path) -> None:
    from transformers import AutoTokenizer

    from adaopt.config import parse_params
    from adaopt.data import prepare_task
    from adaopt.modeling import resolve_model_path

    params = parse_params(raw)
    data = params.data
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(params.model.name_or_path))
    prepare_task("sst2", mirror, out, tokenizer, max_train_samples=data.max_train_samples,
                 max_eval_samples=data.max_eval_samples, max_length=data.max_length,
                 seed=data.seed, selection_samples=data.selection_samples)


def train_cell(raw: dict[str, Any], prepared: Path, optimizer: str, precision: str,
               steps: int, log_every: int = 1) -> dict[str, Any]:
    """One run of the pipeline's code (:class:`adaopt.experiment.Workload`), scored on dev;
    its loss and gradient norm read back from the device every ``log_every`` steps."""
    from adaopt.config import parse_params
    from adaopt.experiment import Workload

    params = parse_params(raw)
    work = Workload(params, "sst2", prepared,
                    overrides={"precision": precision, "max_steps": steps, "eval_every": steps,
                               "log_every": log_every})
    section = {**params.optimizers[optimizer], "lr": LR}
    result, model = work.train_run(optimizer, section, "fair", 0, steps, None, False)
    scores, _ = work.dev(model)
    return {"optimizer": optimizer, "precision": precision, "log_every": log_every,
            "steps": result.steps,
            "status": result.status, "samples_per_s": result.train_samples_per_s,
            "peak_memory_mb": result.peak_memory_mb, "dev_accuracy": scores.get("accuracy")}


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| optimizer | precision | read back every | steps | samples/s | peak memory MB | "
            "dev accuracy |")
    lines = [head, "|---|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['optimizer']} | {row['precision']} | {row['log_every']} | "
                     f"{row['steps']} | "
                     f"{row['samples_per_s']:.1f} | {row['peak_memory_mb']:.0f} | "
                     f"{row['dev_accuracy']:.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mirror", type=Path, default=ROOT.parent / "shared" / "data",
                        help="data mirror holding the real glue/SST-2 (default ../shared/data)")
    parser.add_argument("--steps", type=int, default=300, help="steps per full-cell run")
    parser.add_argument("--optimizer-repeats", type=int, default=20)
    args = parser.parse_args(argv)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    cuda = torch.cuda.is_available()
    where = torch.cuda.get_device_name() if cuda else "CPU (no CUDA GPU: toy-size fallback)"
    print(f"device: {where}; torch {torch.__version__}, Python {sys.version.split()[0]}")
    started = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        smoke = profile("smoke")
        prepare_sst2(smoke, FIXTURE_MIRROR, Path(tmp) / "smoke")
        row = train_cell(smoke, Path(tmp) / "smoke", "adamw", "bf16", 4 if not cuda else 20)
        print("\n## 1. smoke cell (tiny BERT, fixture SST-2, bf16)\n")
        print(table([row]))

        if cuda:
            full = profile("full", **{"workloads": {"sst2": {}},
                                      "compress.tasks": ["sst2"],
                                      "data.max_train_samples": args.steps * 32})
            mirror, steps = args.mirror, args.steps
        else:  # the full profile's shapes, on the tiny model and the fixture data
            full = profile("full", **{"workloads": {"sst2": {}},
                                      "compress.tasks": ["sst2"],
                                      "data.max_train_samples": None,
                                      "data.selection_samples": 8,
                                      "model.tiny": smoke["model"]["tiny"],
                                      "compress.distill.layers": [1]})
            mirror, steps = FIXTURE_MIRROR, 2
        prepare_sst2(full, mirror, Path(tmp) / "full")
        rows = [train_cell(full, Path(tmp) / "full", optimizer, precision, steps)
                for optimizer in ("adamw", "adaptive_adam") for precision in ("fp32", "bf16")]
        # The same bf16 AdamW run, its values read back every step (the loop then waits for
        # the device twice a step) and once per read-back window.
        window = max(steps // 6, 1)
        synced = [train_cell(full, Path(tmp) / "full", "adamw", "bf16", steps, every)
                  for every in (1, window)]
    print(f"\n## 2. full cell (full profile, SST-2 from {mirror}, lr {LR}, fair, seed 0)\n")
    print(table(rows))
    for optimizer in ("adamw", "adaptive_adam"):
        speed = {row["precision"]: row["samples_per_s"] for row in rows
                 if row["optimizer"] == optimizer}
        print(f"{optimizer}: bf16 / fp32 throughput = {speed['bf16'] / speed['fp32']:.2f}x")
    print(f"\n## 2b. host reads: every step against every {window} steps (train.log_every)\n")
    print(table(synced))
    print(f"read back every {window} / every step throughput = "
          f"{synced[1]['samples_per_s'] / synced[0]['samples_per_s']:.2f}x")

    print("\n## 3. optimizer step (MiniLM, every registry optimizer)\n", flush=True)
    repeats = args.optimizer_repeats if cuda else 1
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "optimizer_step.py"),
                    "--device", "cuda" if cuda else "cpu", "--repeats", str(repeats),
                    "--warmup", "3" if cuda else "0"], check=True)
    print(f"\ngpu_check finished in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
