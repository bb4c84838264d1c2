"""Where a training stage's wall time goes: setup, training steps, scoring and the rest.

Runs one real ``train`` stage of a profile (by default the cpu profile's AdamW, fair setting, on
SST-2: its full budget for every seed of the cell) with ``dvc repro -s`` in a temporary copy of the
project, then splits the stage's wall time, measured around the ``dvc`` command, with the
timings each run wrote into its ``efficiency.json``:

* training steps: forward, backward, clipping and optimizer steps (``wall_time_s``);
* scoring: the selection-split evaluations and the dev scoring (``scoring_time_s``);
* in the runs, the rest: model loading, checkpoints, writing the outputs
  (``run_time_s`` less the two above);
* stage setup: everything outside the runs: dvc, ``adaopt check``, the papermill kernel,
  imports, loading the tokenizer and the prepared data.

The stage reads a ``choice.json`` written here (``--lr``) instead of running its tune stage,
which is timed apart from it. Usage::

    ADAOPT_DATA_MIRROR=../shared/data python benchmarks/pipeline_overhead.py
    python benchmarks/pipeline_overhead.py --profile smoke --mirror tests/fixtures/mirror
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = ("runs", "tuning", "results", "data", "figures", "checkpoints", ".dvc/cache",
           ".dvc/tmp")


def project_copy(tmp: Path, profile: str, task: str | None = None) -> Path:
    """The project without its outputs, ``profile`` active (narrowed to ``task`` if given)."""
    repo = tmp / "repo"
    ignore = shutil.ignore_patterns(".venv", ".git", "__pycache__", ".pytest_cache",
                                    ".ruff_cache")
    shutil.copytree(ROOT, repo, ignore=ignore)
    for output in OUTPUTS:
        shutil.rmtree(repo / output, ignore_errors=True)
    params = yaml.safe_load((ROOT / "profiles" / f"{profile}.yaml").read_text())
    if task is not None:
        params["data"]["tasks"] = []
        params["workloads"] = {task: params["workloads"].get(task, {})}
        params["sweep"]["cells"] = {key: cell for key, cell in params["sweep"]["cells"].items()
                                    if cell["task"] == task}
        params["evaluate"]["targets"] = {task: params["evaluate"]["targets"][task]}
        params["precision_ablation"]["task"] = task  # it trains on a task of the sweep
        params["compress"]["tasks"] = [name for name in params["compress"]["tasks"]
                                       if name == task]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (repo / "dvc.lock").unlink(missing_ok=True)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    return repo


def dvc(repo: Path, mirror: Path, *args: str) -> float:
    """Run ``dvc`` in ``repo``; return its wall time in seconds."""
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "ADAOPT_DATA_MIRROR": str(mirror)}
    started = time.perf_counter()
    result = subprocess.run([str(Path(bin_dir) / "dvc"), *args], cwd=repo, env=env,
                            capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"dvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return seconds


def split(cell: Path, wall: float) -> dict[str, float]:
    """The stage's wall time split with its runs' own timings."""
    runs = [json.loads(path.read_text()) for path in sorted(cell.glob("seed*/efficiency.json"))]
    steps = sum(run["wall_time_s"] for run in runs)
    scoring = sum(run["scoring_time_s"] for run in runs)
    in_runs = sum(run["run_time_s"] for run in runs)
    return {"stage setup": wall - in_runs, "training steps": steps, "scoring": scoring,
            "rest of the runs": in_runs - steps - scoring, "runs": len(runs)}


def report(parts: dict[str, float], wall: float, stage: str) -> str:
    rest = parts["stage setup"] + parts["rest of the runs"]
    lines = [f"stage {stage}: {parts['runs']:.0f} runs, wall time {wall:.1f} s",
             "| part | seconds | share |", "|---|---:|---:|"]
    for name in ("stage setup", "training steps", "scoring", "rest of the runs"):
        lines.append(f"| {name} | {parts[name]:.1f} | {parts[name] / wall:.1%} |")
    lines.append(f"rest (setup + rest of the runs) = {rest:.1f} s = {rest / wall:.1%} of the "
                 "stage's wall time")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--optimizer", default="adamw")
    parser.add_argument("--setting", default="fair")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--mirror", type=Path,
                        default=os.environ.get("ADAOPT_DATA_MIRROR") or ROOT.parent / "shared"
                        / "data")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        repo = project_copy(Path(tmp), args.profile, args.task)
        prepare = dvc(repo, args.mirror.resolve(), "repro", "prepare")
        cell = Path(args.task, args.optimizer, args.setting)
        choice = repo / "tuning" / cell / "choice.json"
        choice.parent.mkdir(parents=True)
        choice.write_text(json.dumps({"task": args.task, "optimizer": args.optimizer,
                                      "setting": args.setting, "hparams": {"lr": args.lr}}))
        stage = f"train@{args.task}-{args.optimizer}-{args.setting}"
        wall = dvc(repo, args.mirror.resolve(), "repro", "-s", stage)
        print(f"profile {args.profile}; fetch + prepare (not counted): {prepare:.1f} s")
        print(report(split(repo / "runs" / cell, wall), wall, stage))
    return 0


if __name__ == "__main__":
    sys.exit(main())
