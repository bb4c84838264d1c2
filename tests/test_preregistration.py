"""Tests of adaopt.preregistration: the committed rule, its design hash, and where it was set."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from adaopt.config import ConfigError, load_params, parse_params
from adaopt.preregistration import (
    check_design,
    design_sha256,
    load_preregistration,
    register_design,
    registration_record,
)
from adaopt.statistics import TEST_NAME, TEST_VERSION

ROOT = Path(__file__).resolve().parents[1]
PREREGISTRATION = ROOT / "preregistration.yaml"
PAPER = {"sgd", "momentum", "adagrad", "rmsprop", "adam"}


def test_the_committed_rule_tests_the_papers_claim_against_every_baseline() -> None:
    registration = load_preregistration(PREREGISTRATION)
    assert PAPER | {"adamw"} <= set(registration.references)
    assert registration.primary.size == len(registration.primary.tasks) * len(
        registration.primary.comparisons)
    pairs = {(c.setting, c.reference) for c in registration.primary.comparisons}
    assert ("fair", "adamw") in pairs and {("traditional", name) for name in PAPER} <= pairs
    assert (registration.test.name, registration.test.version) == (TEST_NAME, TEST_VERSION)
    assert set(registration.primary.tasks) <= set(registration.margins)


def test_the_registered_design_is_the_cpu_profiles() -> None:
    """Editing a budget, a grid, the seeds or the controller's values of the cpu profile without
    registering the new design (``python -m adaopt preregister``) fails here."""
    registration = load_preregistration(PREREGISTRATION)
    params = load_params(ROOT / "profiles" / f"{registration.design.profile}.yaml")
    assert design_sha256(params) == registration.design.sha256
    assert check_design(registration, params) is None


def test_another_design_is_named() -> None:
    registration = load_preregistration(PREREGISTRATION)
    quick = load_params(ROOT / "profiles" / "quick.yaml")
    assert "quick profile" in check_design(registration, quick)
    raw = yaml.safe_load((ROOT / "profiles" / "cpu.yaml").read_text())
    raw["sweep"]["seeds"] = [0, 1]
    assert "re-register" in check_design(registration, parse_params(raw))


@pytest.mark.parametrize(("edit", "message"), [
    (lambda raw: raw["primary"]["comparisons"].append({"setting": "fair", "reference": "sgdx"}),
     "primary.comparisons.6.reference: unknown optimizer 'sgdx'"),
    (lambda raw: raw.update(alpha=0.7), "alpha: Input should be less than 0.5"),
    (lambda raw: raw["margins"].update(glue=0.1), "margins: "),
    (lambda raw: raw.pop("design"), "design: Field required"),
])
def test_a_broken_preregistration_is_one_line(tmp_path: Path, edit, message: str) -> None:
    raw = yaml.safe_load(PREREGISTRATION.read_text())
    edit(raw)
    path = tmp_path / "preregistration.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as error:
        load_preregistration(path)
    assert str(error.value).startswith(f"{path}: {message}") and "\n" not in str(error.value)


def test_registering_a_design_rewrites_only_its_lines(tmp_path: Path) -> None:
    path = tmp_path / "preregistration.yaml"
    shutil.copy(PREREGISTRATION, path)
    quick = load_params(ROOT / "profiles" / "quick.yaml")
    before = path.read_text().splitlines()
    assert register_design(quick, path).endswith(f"quick {design_sha256(quick)}")
    after = path.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert [b.strip() for _, b in changed] == ["profile: quick", f"sha256: {design_sha256(quick)}"]
    assert load_preregistration(path).design.profile == "quick"


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo,
                   check=True, capture_output=True)


def commit(repo: Path, message: str, when: int) -> None:
    git(repo, "add", "-A")
    env_date = f"@{when} +0000"
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm",
                    message], cwd=repo, check=True, capture_output=True,
                   env={**os.environ, "GIT_COMMITTER_DATE": env_date,
                        "GIT_AUTHOR_DATE": env_date})


RUN = "runs/sst2/adamw/fair/seed0/metrics.json"


def test_a_rule_set_after_the_runs_is_said_so(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    (tmp_path / RUN).parent.mkdir(parents=True)
    (tmp_path / RUN).write_text("{}")
    commit(tmp_path, "runs", 1_000_000)
    shutil.copy(PREREGISTRATION, tmp_path / "preregistration.yaml")
    commit(tmp_path, "rule", 2_000_000)
    record = registration_record(tmp_path, [RUN])
    assert (record.runs_before, record.runs, record.uncommitted) == (1, 1, False)
    assert record.commit is not None and len(record.commit) == 40
    (tmp_path / RUN).write_text('{"again": 1}')  # the run made again, after the rule
    assert registration_record(tmp_path, [RUN]).runs_before == 0  # not committed yet
    commit(tmp_path, "runs again", 3_000_000)
    assert registration_record(tmp_path, [RUN]).runs_before == 0
    with (tmp_path / "preregistration.yaml").open("a") as file:
        file.write("# edited\n")
    assert registration_record(tmp_path, [RUN]).uncommitted


def test_outside_a_repository_the_rule_is_not_committed(tmp_path: Path) -> None:
    shutil.copy(PREREGISTRATION, tmp_path / "preregistration.yaml")
    record = registration_record(tmp_path, [RUN])
    assert record.commit is None and record.uncommitted and record.runs_before == 0
