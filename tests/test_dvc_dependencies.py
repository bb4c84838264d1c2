"""Every stage of dvc.yaml lists, as deps, exactly the modules of src/adaopt its code imports:
an edit to any of them outdates the stage, and no listed module is one it does not run.

What a stage runs is its command's ``python -m adaopt <subcommand>`` and the notebook that
``python -m adaopt notebook`` executes. Their imports are read with ``ast``, never executed,
and followed transitively:

- a module imports what all of its import statements name, those inside functions included;
  except ``__main__``, which imports lazily so that ``check`` stays fast: there only the module
  level and the functions the subcommand runs count (``_<subcommand>`` and the functions it, or
  the module level, calls), so that ``check`` does not depend on what ``report`` imports;
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
STAGES: dict[str, dict[str, Any]] = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


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
    tree = ast.parse((SRC / "adaopt" / "__main__.py").read_text())
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert f"_{subcommand}" in functions, f"__main__ has no _{subcommand} to run {subcommand}"
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
    return {"adaopt.__main__"} | closure({"adaopt"} | imported(walked, "adaopt"))


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


def module_paths(modules: set[str]) -> list[PurePosixPath]:
    """The files of ``modules`` (each has one: ``closure`` checked), as dvc.yaml names them."""
    return sorted(PurePosixPath(module_file(name).relative_to(ROOT).as_posix())
                  for name in modules)


def missing_deps(stage: dict[str, Any]) -> list[str]:
    """The imported modules' files that none of the stage's deps covers."""
    deps = code_deps(stage)
    return [str(path) for path in module_paths(stage_modules(stage))
            if not any(dep == path or dep in path.parents for dep in deps)]


def unused_deps(stage: dict[str, Any]) -> list[str]:
    """The stage's deps under src/ that cover none of the modules it imports."""
    paths = module_paths(stage_modules(stage))
    return [str(dep) for dep in code_deps(stage)
            if not any(dep == path or dep in path.parents for path in paths)]


@pytest.mark.parametrize("name", STAGES)
def test_stage_deps_cover_every_module_it_imports(name: str) -> None:
    missing = missing_deps(STAGES[name])
    assert not missing, f"stage {name} imports these, but its deps miss them: {missing}"


@pytest.mark.parametrize("name", STAGES)
def test_stage_deps_are_modules_it_imports(name: str) -> None:
    unused = unused_deps(STAGES[name])
    assert not unused, f"stage {name} lists these deps, but imports nothing in them: {unused}"


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
    """``__main__`` is read per subcommand: its lazy imports stay with their subcommand."""
    assert "adaopt.report" in subcommand_modules("report")
    assert "adaopt.report" not in subcommand_modules("check")
