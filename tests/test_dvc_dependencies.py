"""Every stage of dvc.yaml lists, as deps, exactly the modules of the computing code its command
and notebook import, and never a module of the runner: an edit to the computing code outdates the
stage, and an edit to the layer that runs and reports it (``adaopt.runner``) outdates nothing.

The runner is the package ``adaopt.runner`` and ``adaopt/__main__.py``, which only starts its
command line (``python -m adaopt``). The computing code never imports the runner; it reaches it by
name at run time, through ``adaopt.hooks`` (progress bar, GPU claim, log lines).

What a stage runs is its command's ``python -m adaopt <subcommand>`` and the notebook that
``python -m adaopt notebook`` executes. Their imports are read with ``ast``, never executed,
and followed transitively, through the runner's modules too (what the runner runs of the
computing code is a dep):

- a module imports what all of its import statements name, those inside functions included;
  except the command line (``adaopt.runner.cli``), which imports lazily so that ``check`` stays
  fast: there only the module level and the functions the subcommand runs count
  (``_<subcommand>`` and the functions it, or the module level, calls), so that ``check`` does
  not depend on what ``report`` imports;
- importing ``adaopt.a.b`` runs ``adaopt/__init__.py`` and ``adaopt/a/__init__.py`` first;
- ``from adaopt.a import b`` imports the submodule ``adaopt.a.b`` when there is one;
- a notebook is its code cells, less IPython's ``%`` and ``!`` lines.

A dep covers a module when it is the module's file or a folder above it.
"""

from __future__ import annotations

import ast
import copy
import json
import shlex
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
#: Each stage's definition; a ``foreach`` stage's is its ``do`` block.
STAGES: dict[str, dict[str, Any]] = {
    name: stage.get("do", stage)
    for name, stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items()}
RUNNER_PACKAGE = "adaopt.runner"
RUNNER_SHIMS = ("adaopt.__main__",)
CLI = "adaopt.runner.cli"


def is_runner(name: str) -> bool:
    """Whether the module ``name`` belongs to the layer that runs and reports stages."""
    return name in RUNNER_SHIMS or name == RUNNER_PACKAGE or name.startswith(f"{RUNNER_PACKAGE}.")


def all_modules() -> list[str]:
    """Every module under src/adaopt, dotted."""
    return sorted(".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
                  for path in (SRC / "adaopt").rglob("*.py"))


def module_file(name: str) -> Path | None:
    """The file of the dotted module ``name`` under src/, or None when there is none."""
    base = SRC.joinpath(*name.split("."))
    return next((path for path in (base.with_suffix(".py"), base / "__init__.py")
                 if path.is_file()), None)


def imported(nodes: Iterable[ast.AST], package: str) -> set[str]:
    """The adaopt modules, parent packages included, that the imports among ``nodes`` load;
    ``package`` is the importing module's package, which relative imports start from."""
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            anchor = parts[:len(parts) + 1 - node.level] if node.level else []
            base = ".".join([*anchor, *([node.module] if node.module else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names
                         if module_file(f"{base}.{alias.name}"))
    parts = [name.split(".") for name in names if name.split(".")[0] == "adaopt"]
    return {".".join(name[:end]) for name in parts for end in range(1, len(name) + 1)}


def closure(names: set[str]) -> set[str]:
    """``names`` and every adaopt module they import, transitively."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name)
        assert path is not None, f"adaopt imports {name}, which has no file under src/"
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        todo.extend(imported(ast.walk(ast.parse(path.read_text())), package))
    return seen


def subcommand_modules(subcommand: str) -> set[str]:
    """What ``python -m adaopt <subcommand>`` imports: see the module's docstring."""
    tree = ast.parse(module_file(CLI).read_text())
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert f"_{subcommand}" in functions, f"{CLI} has no _{subcommand} to run {subcommand}"
    reached = {f"_{subcommand}"}
    todo: list[ast.AST] = [node for node in tree.body if not isinstance(node, ast.FunctionDef)]
    todo.append(functions[f"_{subcommand}"])
    walked: list[ast.AST] = []
    while todo:
        nodes = list(ast.walk(todo.pop()))
        walked += nodes
        for call in nodes:
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) \
                    and call.func.id in functions.keys() - reached:
                reached.add(call.func.id)
                todo.append(functions[call.func.id])
    package = CLI.rpartition(".")[0]
    return {"adaopt.__main__", CLI} | closure({"adaopt", package} | imported(walked, package))


def notebook_modules(path: Path) -> set[str]:
    """What the code cells of the notebook at ``path`` import."""
    cells = json.loads(path.read_text())["cells"]
    sources = ["\n".join(line for line in "".join(cell["source"]).splitlines()
                         if not line.lstrip().startswith(("%", "!")))
               for cell in cells if cell["cell_type"] == "code"]
    nodes = [node for source in sources for node in ast.walk(ast.parse(source))]
    return closure(imported(nodes, ""))


def stage_modules(stage: dict[str, Any]) -> set[str]:
    """The adaopt modules a stage's command and notebook import."""
    commands = stage["cmd"] if isinstance(stage["cmd"], list) else [stage["cmd"]]
    modules: set[str] = set()
    for command in (part for line in commands for part in line.split("&&")):
        argv = shlex.split(command)
        if argv[:3] == ["python", "-m", "adaopt"]:
            modules |= subcommand_modules(argv[3])
        if argv[:4] == ["python", "-m", "adaopt", "notebook"]:
            notebook = argv[4]
            assert "${" not in notebook, f"{notebook}: a templated notebook is not resolved here"
            modules |= notebook_modules(ROOT / notebook)
    return modules


def code_deps(stage: dict[str, Any]) -> list[PurePosixPath]:
    """The stage's deps under src/."""
    return [PurePosixPath(dep) for dep in stage.get("deps", []) if dep.startswith("src/")]


def module_paths(modules: Iterable[str]) -> list[PurePosixPath]:
    """The files of ``modules`` (each has one: ``closure`` checked), as dvc.yaml names them."""
    return sorted(PurePosixPath(module_file(name).relative_to(ROOT).as_posix())
                  for name in modules)


def computing_modules(stage: dict[str, Any]) -> set[str]:
    """The modules of the computing code a stage runs."""
    return {name for name in stage_modules(stage) if not is_runner(name)}


def covers(dep: PurePosixPath, path: PurePosixPath) -> bool:
    return dep == path or dep in path.parents


def missing_deps(stage: dict[str, Any]) -> list[str]:
    """The computing modules' files that none of the stage's deps covers."""
    deps = code_deps(stage)
    return [str(path) for path in module_paths(computing_modules(stage))
            if not any(covers(dep, path) for dep in deps)]


def unused_deps(stage: dict[str, Any]) -> list[str]:
    """The stage's deps under src/ that cover none of the computing modules it imports."""
    paths = module_paths(computing_modules(stage))
    return [str(dep) for dep in code_deps(stage)
            if not any(covers(dep, path) for path in paths)]


def runner_deps(stage: dict[str, Any]) -> list[str]:
    """The stage's deps under src/ that cover a runner module."""
    paths = module_paths(name for name in all_modules() if is_runner(name))
    return [str(dep) for dep in code_deps(stage) if any(covers(dep, path) for path in paths)]


@pytest.mark.parametrize("name", STAGES)
def test_stage_deps_cover_every_module_it_imports(name: str) -> None:
    missing = missing_deps(STAGES[name])
    assert not missing, f"stage {name} imports these, but its deps miss them: {missing}"


@pytest.mark.parametrize("name", STAGES)
def test_stage_deps_are_modules_it_imports(name: str) -> None:
    unused = unused_deps(STAGES[name])
    assert not unused, f"stage {name} lists these deps, but imports nothing in them: {unused}"


@pytest.mark.parametrize("name", STAGES)
def test_no_runner_module_is_a_dep(name: str) -> None:
    found = runner_deps(STAGES[name])
    assert not found, f"stage {name} depends on the runner, which computes none of its outputs: " \
                      f"{found}"


@pytest.mark.parametrize("name", [name for name in all_modules() if not is_runner(name)])
def test_the_computing_code_never_imports_the_runner(name: str) -> None:
    """Not even lazily: an import would make the runner part of what a stage computes."""
    path = module_file(name)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = sorted(module for module in imported(ast.walk(ast.parse(path.read_text())), package)
                   if is_runner(module))
    assert not found, f"{name} imports {found}; ask adaopt.hooks instead"


def test_a_runner_dep_is_reported() -> None:
    stage = copy.deepcopy(STAGES["train"])
    stage["deps"] += ["src/adaopt/runner/logbar.py", "src/adaopt/__main__.py"]
    assert runner_deps(stage) == ["src/adaopt/runner/logbar.py", "src/adaopt/__main__.py"]
    stage["deps"] = ["src/adaopt"]  # a folder above the runner's
    assert runner_deps(stage) == ["src/adaopt"]


def test_the_runner_is_walked_for_the_computing_code_it_runs() -> None:
    """The train notebook's closing line (runner) reaches no computing module the stage lacks,
    and the runner's modules are found but never required."""
    modules = stage_modules(STAGES["train"])
    assert {"adaopt.runner.progress", "adaopt.runner.cli"} <= modules
    assert not any(is_runner(name) for name in computing_modules(STAGES["train"]))


def test_a_removed_dep_is_reported() -> None:
    stage = copy.deepcopy(STAGES["evaluate"])
    stage["deps"].remove("src/adaopt/summary.py")
    assert missing_deps(stage) == ["src/adaopt/summary.py"]


def test_a_dep_on_code_the_stage_does_not_import_is_reported() -> None:
    stage = copy.deepcopy(STAGES["figures"])
    stage["deps"].append("src/adaopt/compression")
    assert unused_deps(stage) == ["src/adaopt/compression"]


def test_a_planted_notebook_import_is_reported(tmp_path: Path) -> None:
    """A cell importing adaopt.figures (which imports nothing evaluate lacks), behind a magic."""
    stage = copy.deepcopy(STAGES["evaluate"])
    notebook = json.loads((ROOT / "notebooks" / "03_evaluate.ipynb").read_text())
    notebook["cells"].append({"cell_type": "code", "metadata": {}, "outputs": [],
                              "execution_count": None,
                              "source": ["%matplotlib inline\n", "from adaopt import figures"]})
    planted = tmp_path / "planted.ipynb"
    planted.write_text(json.dumps(notebook))
    stage["cmd"] = stage["cmd"].replace("notebooks/03_evaluate.ipynb", str(planted))
    assert missing_deps(stage) == ["src/adaopt/figures.py"]


def test_check_does_not_import_what_report_does() -> None:
    """The command line is read per subcommand: its lazy imports stay with their subcommand."""
    assert "adaopt.report" in subcommand_modules("report")
    assert "adaopt.report" not in subcommand_modules("check")
