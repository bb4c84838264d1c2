"""The mixed-precision ablation on the smoke profile's SST-2: the same runs in fp32 and bf16."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from adaopt import io
from adaopt.ablation import COLUMNS, ablation_markdown, precision_ablation
from adaopt.config import load_params
from adaopt.figures import precision_ablation as draw_precision_ablation

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ablation(prepared_sst2: Path, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    params = load_params(ROOT / "profiles" / "smoke.yaml")
    settings = params.precision_ablation
    tuning = tmp_path_factory.mktemp("tuning")
    for optimizer in settings.optimizers:
        io.write_json(tuning / "sst2" / optimizer / settings.setting / "choice.json",
                      {"task": "sst2", "optimizer": optimizer, "setting": settings.setting,
                       "hparams": {"lr": 1e-3}})
    return precision_ablation(params, prepared_sst2, tuning, progress=False)


def test_every_optimizer_runs_in_every_precision_from_the_same_start(
        ablation: pd.DataFrame) -> None:
    params = load_params(ROOT / "profiles" / "smoke.yaml").precision_ablation
    assert list(ablation.columns) == list(COLUMNS)
    assert list(zip(ablation.optimizer, ablation.precision, strict=True)) == [
        (optimizer, precision) for optimizer in params.optimizers
        for precision in params.precisions]
    assert (ablation.steps == params.max_steps).all() and (ablation.status == "ok").all()
    assert ablation.dev.between(0, 1).all() and (ablation.metric == "accuracy").all()
    assert ablation.device.str.startswith("cpu (").all()
    fp32 = ablation[ablation.precision == "fp32"]
    assert (fp32.throughput_vs_fp32 == 1.0).all()
    bf16 = ablation[ablation.precision == "bf16"]
    assert (bf16.throughput_vs_fp32.to_numpy() == (
        bf16.train_samples_per_s.to_numpy() / fp32.train_samples_per_s.to_numpy())).all()
    assert (ablation.peak_memory_mb > 0).all()


def test_the_table_and_figure_show_costs_beside_the_metric(ablation: pd.DataFrame,
                                                           tmp_path: Path) -> None:
    table = ablation_markdown(ablation)
    assert table.startswith("## Mixed precision · sst2 on cpu (")
    assert "dev accuracy" in table and table.count("\n| ") == len(ablation) + 1
    path = draw_precision_ablation(ablation, tmp_path / "precision.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
