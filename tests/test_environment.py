"""The pip and conda environments must pin the same packages, torch included."""

import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _requirements() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _conda_pip_pins() -> list[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(dep["pip"] for dep in env["dependencies"] if isinstance(dep, dict))
    return [pin for pin in pip_section if "==" in pin]


def test_requirements_and_environment_pin_the_same_versions() -> None:
    assert _requirements() == _conda_pip_pins()


def test_every_requirement_is_pinned_exactly() -> None:
    unpinned = [req for req in _requirements() if "==" not in req]
    assert not unpinned, f"unpinned requirements: {unpinned}"


def test_torch_is_pinned_to_one_release() -> None:
    assert "torch==2.13.0" in _requirements()


def _setup_commands(*variables: str) -> list[str]:
    """What ``make setup`` would run in a fresh clone (dry run, nothing installed)."""
    result = subprocess.run(["make", "-n", "-B", "setup", *variables], cwd=ROOT,
                            capture_output=True, text=True, check=True)
    return [line for line in result.stdout.splitlines() if "pip install" in line]


def test_setup_installs_torch_from_the_index_a_user_names_first() -> None:
    """The CPU-only recipe of docs/scaling.md: torch from PyTorch's CPU index, then the rest,
    which keeps it (the pin is already met); without TORCH_INDEX, torch comes with the
    requirements."""
    cpu = _setup_commands("TORCH_INDEX=https://download.pytorch.org/whl/cpu")
    assert any("--index-url https://download.pytorch.org/whl/cpu" in line
               and "grep '^torch==' requirements.txt" in line for line in cpu)
    assert cpu[-1].endswith("install --quiet -r requirements.txt -e .")
    assert not any("--index-url" in line for line in _setup_commands())


def test_conda_environment_uses_python_311() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
