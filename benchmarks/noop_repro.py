"""How long ``dvc repro`` takes when nothing changed, on every stage of a profile.

Builds a copy of the project with the profile active, writes a placeholder for every stage's
outputs, records them in ``dvc.lock`` with ``dvc commit -f`` (so the lock has the real pipeline's
shape: every stage, dependency and parameter) and then times ``dvc repro`` several times; every
stage must be found unchanged. What it measures is DVC's own cost per stage (reading
``params.yaml`` for each stage, the lock file, hashing dependencies, the per-stage lock), not
ours. Usage::

    python benchmarks/noop_repro.py                 # the cpu profile, 5 repeats
    python benchmarks/noop_repro.py --profile smoke --repeats 2
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline_overhead import project_copy  # benchmarks/ is on the path when run as a script


def dvc(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    dvc_bin = Path(sys.executable).parent / "dvc"
    result = subprocess.run([str(dvc_bin), *args], cwd=repo, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"dvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def fake_outputs(repo: Path) -> int:
    """A placeholder file for every output of every stage (a folder gets one file inside), and
    for the dependencies inside another stage's output folder (``data/prepared/<task>``)."""
    from dvc.repo import Repo

    stages = Repo(str(repo)).index.stages
    for stage in stages:
        prepared = [dep for dep in stage.deps if "data/prepared/" in dep.def_path]
        for out in [*stage.outs, *prepared]:
            path = Path(out.fs_path)
            if path.exists():
                continue
            if not path.suffix:  # a folder output: runs/<cell>, data/prepared, ...
                path = path / "placeholder.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("{}\n")
    return len(stages)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}: must be at least 1")
    with tempfile.TemporaryDirectory() as tmp:
        repo = project_copy(Path(tmp), args.profile)
        stages = fake_outputs(repo)
        dvc(repo, "commit", "--force")
        lock_lines = len((repo / "dvc.lock").read_text().splitlines())
        seconds = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            result = dvc(repo, "repro")
            seconds.append(time.perf_counter() - started)
            ran = [line for line in result.stdout.splitlines() if line.startswith("Running stage")]
            if ran:
                raise SystemExit(f"not a no-op: {ran[0]}")
    print(f"profile {args.profile}: {stages} stages, dvc.lock {lock_lines} lines")
    print(f"no-op dvc repro: median {statistics.median(seconds):.2f} s "
          f"(min {min(seconds):.2f}, max {max(seconds):.2f}, {args.repeats} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
