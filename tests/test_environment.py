"""The pip and conda environments must pin the same packages, torch included."""

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


def test_torch_is_pinned_to_the_cpu_release_on_disk() -> None:
    assert "torch==2.13.0" in _requirements()


def test_conda_environment_uses_python_311() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
