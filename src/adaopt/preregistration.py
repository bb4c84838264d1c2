"""The pre-registration: what the verdict depends on, fixed and committed before the runs.

``preregistration.yaml`` holds the rule that turns runs into an answer (the method, its
references, the primary family, alpha, power, the test's name and version, its resamples and
seed, the equivalence margins, how a diverged seed counts) and a hash of the design the runs are
made with (the profile's seeds, budgets, grids and the controller's values), so that neither
can move after the results are seen without it showing. The evaluate and report stages depend
on the file; ``REPORT.md`` names the commit that set it and its hash
(:func:`registration_record`) and says so if it changed after any run it reports.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from adaopt.config import ConfigError, Params
from adaopt.hparams import OPTIMIZERS
from adaopt.tasks import get_task

PATH = "preregistration.yaml"

#: The sections of ``params.yaml`` that decide which runs are made and how (seeds, budgets,
#: grids, schedules, the controller's values, the selection split): the registered design.
DESIGN_SECTIONS = ("sweep", "train", "settings", "optimizers", "tuning", "workloads")
DESIGN_DATA_KEYS = ("selection_samples", "seed", "max_train_samples", "max_eval_samples")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Comparison(_Strict):
    """The method against one reference in one setting."""

    setting: Literal["traditional", "fair"]
    reference: str

    @field_validator("reference")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {name!r}; allowed: {', '.join(OPTIMIZERS)}")
        return name


class Family(_Strict):
    """The primary family: every comparison on every task, corrected over its full size."""

    tasks: list[str]
    comparisons: list[Comparison]

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, tasks: list[str]) -> list[str]:
        return [get_task(name).name for name in tasks]

    @property
    def size(self) -> int:
        return len(self.tasks) * len(self.comparisons)

    def members(self) -> list[tuple[str, str, str]]:
        """``(task, setting, reference)`` of every declared member, in the verdict's order."""
        return [(task, c.setting, c.reference) for c in self.comparisons for task in self.tasks]


class Test(_Strict):
    name: str
    version: int


class Bootstrap(_Strict):
    """The dev set's resamples inside the test (:func:`adaopt.statistics.paired_test`)."""

    samples: Annotated[int, Field(ge=100)]
    seed: Annotated[int, Field(ge=0)]


class Design(_Strict):
    """The profile the reference run is made with, and the hash of its design sections."""

    profile: str
    sha256: str


class Preregistration(_Strict):
    """The whole ``preregistration.yaml``."""

    version: int
    method: str
    references: list[str]
    primary: Family
    alpha: Annotated[float, Field(gt=0.0, lt=0.5)]
    power: Annotated[float, Field(gt=0.0, lt=1.0)]
    test: Test
    bootstrap: Bootstrap
    margins: dict[str, Annotated[float, Field(gt=0.0)]]
    diverged: Literal["worst finished seed of its cell"]
    design: Design

    @field_validator("references")
    @classmethod
    def _known_references(cls, names: list[str]) -> list[str]:
        unknown = [name for name in names if name not in OPTIMIZERS]
        if unknown:
            raise ValueError(f"unknown optimizer {unknown[0]!r}; allowed: {', '.join(OPTIMIZERS)}")
        return names

    @field_validator("margins")
    @classmethod
    def _margin_tasks(cls, margins: dict[str, float]) -> dict[str, float]:
        return {get_task(name).name: value for name, value in margins.items()}

    def primary_member(self, task: str, setting: str, reference: str, optimizer: str) -> bool:
        return optimizer == self.method and (task, setting, reference) in self.primary.members()


def load_preregistration(path: str | Path = PATH) -> Preregistration:
    """Read and validate the file; one line (``ConfigError``) naming what is wrong."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
        return Preregistration.model_validate(raw)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found; the verdict needs its pre-registration") \
            from None
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(map(str, first["loc"]))
        raise ConfigError(f"{path}: {where}: {first['msg'].removeprefix('Value error, ')}") \
            from None


def design_sha256(params: Params) -> str:
    """The hash of the design sections of ``params`` (:data:`DESIGN_SECTIONS`), key order aside."""
    dumped = params.model_dump(mode="json")
    design = {key: dumped[key] for key in DESIGN_SECTIONS}
    design["data"] = {key: dumped["data"][key] for key in DESIGN_DATA_KEYS}
    text = json.dumps(design, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _git(root: Path, *args: str) -> str | None:
    """A git command's output in ``root``, or None outside a repository (or without git)."""
    try:
        result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                                check=False)
    except OSError:
        return None
    return result.stdout.strip() if result.returncode == 0 else None


@dataclass(frozen=True)
class Record:
    """Where the pre-registration stands: its hash, the commit that set it, and whether the
    runs reported came before it (``runs_before``: run records last committed before it)."""

    sha256: str
    commit: str | None
    date: str | None
    uncommitted: bool
    runs_before: int
    runs: int


def registration_record(root: str | Path, run_files: list[str], path: str = PATH) -> Record:
    """The commit that last set ``path``, and how many of ``run_files`` (each run's
    ``metrics.json``, relative to ``root``) were last committed before it: a run the rule was
    set after cannot be said to have been judged by a rule fixed in advance."""
    root = Path(root)
    sha = file_sha256(root / path)
    line = _git(root, "log", "-1", "--format=%H %ct %cs", "--", path)
    if not line:
        return Record(sha, None, None, True, 0, len(run_files))
    commit, time, date = line.split()
    uncommitted = _git(root, "hash-object", path) != _git(root, "rev-parse", f"{commit}:{path}")
    history = _git(root, "log", "--format=@%ct", "--name-only", "--", *run_files) or ""
    last: dict[str, int] = {}
    stamp = 0
    for entry in history.splitlines():
        if entry.startswith("@"):
            stamp = int(entry[1:])
        elif entry and entry not in last:
            last[entry] = stamp
    status = _git(root, "status", "--porcelain", "--untracked-files=all", "--", *run_files)
    changed = {line.split(maxsplit=1)[1] for line in (status or "").splitlines()}
    before = sum(1 for name in run_files  # a run re-made since its last commit came after
                 if name in last and name not in changed and last[name] < int(time))
    return Record(sha, commit, date, uncommitted, before, len(run_files))


def check_design(registration: Preregistration, params: Params) -> str | None:
    """Why ``params`` is not the registered design (None when it is)."""
    if params.profile != registration.design.profile:
        return (f"this is the {params.profile} profile; the registered design is the "
                f"{registration.design.profile} profile's")
    if design_sha256(params) != registration.design.sha256:
        return ("params.yaml's design sections (" + ", ".join(DESIGN_SECTIONS) + ", data's "
                "sample counts) differ from the registered design: re-register with `python -m "
                "adaopt preregister` and commit before the runs")
    return None


def register_design(params: Params, path: str | Path = PATH) -> str:
    """Write ``params``' profile and design hash into the pre-registration's ``design`` lines
    (the rest of the file, comments included, is kept); returns what it wrote."""
    path = Path(path)
    load_preregistration(path)  # a broken file is refused before it is touched
    lines = path.read_text().splitlines(keepends=True)
    values = {"profile": params.profile, "sha256": design_sha256(params)}
    inside = False
    for i, line in enumerate(lines):
        if line.startswith("design:"):
            inside = True
        elif inside and line.strip().split(":")[0] in values:
            key = line.strip().split(":")[0]
            lines[i] = f"{line[:len(line) - len(line.lstrip())]}{key}: {values[key]}\n"
    path.write_text("".join(lines))
    load_preregistration(path)
    return f"{path}: design {values['profile']} {values['sha256']}"
