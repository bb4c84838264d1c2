"""What a stage depends on, in a real ``dvc status``: in a smoke project whose tune and train stages
are up to date, an edit of any runner module (``adaopt.runner``, ``__main__.py``, ``progress.py``)
outdates none of them, and an edit of a computing module outdates them all. Its own file, so that
it runs beside the other end-to-end files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from smoke_pipeline import dvc, restrict_optimizers, restrict_settings, restrict_tasks, smoke_copy
from test_dvc_dependencies import all_modules, is_runner, module_file

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def _stale(repo: Path) -> set[str]:
    """The tune and train stages ``dvc status`` calls stale, and fetch and prepare."""
    return {stage for stage in json.loads(dvc(repo, "status", "--json").stdout)
            if stage.startswith(("tune@", "train@", "fetch", "prepare"))}


def _edited(repo: Path, *relative: Path) -> set[str]:
    """The stages stale while each of ``relative`` carries one more comment line."""
    originals = {path: path.read_text() for path in (repo / name for name in relative)}
    for path, original in originals.items():
        path.write_text(f"{original}# an edit\n")
    try:
        return _stale(repo)
    finally:
        for path, original in originals.items():
            path.write_text(original)


def test_a_runner_edit_outdates_no_stage_and_a_computing_edit_outdates_them(
    tmp_path: Path,
) -> None:
    repo = smoke_copy(tmp_path)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    restrict_tasks(params, ["sst2"])
    restrict_optimizers(params, ["adamw"])
    restrict_settings(params, ["fair"])  # one cell: its tune and its train stage
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    cells = ["tune@sst2-adamw-fair", "train@sst2-adamw-fair"]
    dvc(repo, "repro", *cells)
    assert not _stale(repo)

    runner = [module_file(name).relative_to(ROOT) for name in all_modules() if is_runner(name)]
    assert Path("src/adaopt/runner/cli.py") in runner and Path("src/adaopt/__main__.py") in runner
    if _edited(repo, *runner):  # all at once (one dvc status); one by one only to name it
        culprits = [relative for relative in runner if _edited(repo, relative)]
        pytest.fail(f"editing {culprits} outdated a stage")
    for computing in ("src/adaopt/training.py", "src/adaopt/hooks.py"):
        assert _edited(repo, Path(computing)) >= set(cells), f"editing {computing}"
