"""Adding an optimizer is one registry entry plus its params.yaml keys (docs/method.md), and a
params.yaml section may name an installed optimizer class instead."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from design import full_matrix

from adaopt import hparams
from adaopt.config import ConfigError, optimizer_hparams, parse_params
from adaopt.experiment import run_setting
from adaopt.hparams import Entry, in_table_order, real
from adaopt.optim import build_method

ROOT = Path(__file__).resolve().parents[1]
NADAM = Entry("torch.optim.NAdam",
              {"lr": 2e-5, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
               "momentum_decay": 4e-3},
              rules={"momentum_decay": real(0.0, None, lo_open=False, hi_open=False)})


def _smoke_with(name: str, section: dict[str, Any]) -> dict[str, Any]:
    """The smoke profile with ``name`` swept: a section and a search space, nothing else."""
    raw = yaml.safe_load((ROOT / "profiles" / "smoke.yaml").read_text())
    raw["optimizers"][name] = section
    raw["tuning"]["spaces"][name] = {"lr": [1e-4, 1e-3]}
    raw["sweep"]["optimizers"].append(name)
    return full_matrix(raw)


def _tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Linear(4, 2)


def test_nadam_added_as_one_entry_trains_a_smoke_cell(
    prepared_sst2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None,
) -> None:
    monkeypatch.setitem(hparams.REGISTRY, "nadam", NADAM)
    params = parse_params(_smoke_with("nadam", {"momentum_decay": 0.004}))
    optimizer, controller = build_method("nadam", _tiny(), **params.optimizers["nadam"])
    assert type(optimizer) is torch.optim.NAdam and controller is None
    with pytest.raises(ConfigError, match=r"optimizers.nadam: momentum_decay=-1 is invalid"):
        parse_params(_smoke_with("nadam", {"momentum_decay": -1}))

    choice = tmp_path / "choice.json"
    choice.write_text(json.dumps({"task": "sst2", "optimizer": "nadam", "setting": "fair",
                                  "hparams": {"lr": 1e-3}}))
    deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        metrics = run_setting(params, "sst2", "nadam", "fair", prepared_sst2, tmp_path / "out",
                              choice, progress=False)
    finally:
        torch.use_deterministic_algorithms(deterministic)
    for run in metrics.values():
        assert run["optimizer"] == "nadam" and run["status"] == "ok" and run["dev"]
    assert in_table_order(["nadam", "adamw", "sgd"]) == ["sgd", "adamw", "nadam"]


def test_a_section_names_an_installed_optimizer_class() -> None:
    pytorch_optimizer = pytest.importorskip("pytorch_optimizer")
    params = parse_params(_smoke_with("lion", {"class": "pytorch_optimizer.Lion",
                                               "weight_decay": 0.01}))
    optimizer, _ = build_method("lion", _tiny(), **optimizer_hparams(params.optimizers["lion"]),
                                lr=1e-4)
    assert type(optimizer) is pytorch_optimizer.Lion
    assert in_table_order(["lion", "adamw"]) == ["adamw", "lion"]


@pytest.mark.parametrize(("section", "expected"), [
    ({"class": "torch.optim.NoSuchOptimizer"}, "class='torch.optim.NoSuchOptimizer' is invalid"),
    ({"class": "no_such_package.Lion"}, "cannot import no_such_package"),
    ({"class": "torch.nn.Linear"}, "torch.optim.Optimizer"),
    ({"class": "torch.optim.NAdam", "betaz": 0.9}, "unknown hyperparameter(s) 'betaz'"),
])
def test_a_bad_class_or_hyperparameter_is_one_line(section: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_params(_smoke_with("mine", section))
    message = str(info.value)
    assert expected in message and message.startswith("params.yaml: optimizers.mine: ")
    assert "\n" not in message


def test_a_class_cannot_replace_a_registry_optimizer() -> None:
    with pytest.raises(ConfigError, match=r"adamw.*registry optimizer"):
        raw = yaml.safe_load((ROOT / "profiles" / "smoke.yaml").read_text())
        raw["optimizers"]["adamw"] = {"class": "torch.optim.NAdam"}
        parse_params(raw)
