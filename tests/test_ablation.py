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


def test_a_cpu_without_native_bf16_skips_bf16_with_one_line(
        prepared_sst2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """On an AVX2 CPU bf16 is emulated many times slower than fp32: the ablation says so in one
    line, keeps a ``skipped`` row per optimizer, and still trains fp32; the table and figure
    read the skipped rows."""
    import adaopt.ablation

    monkeypatch.setattr(adaopt.ablation, "native_bf16", lambda device_type: False)
    params = load_params(ROOT / "profiles" / "smoke.yaml")
    settings = params.precision_ablation
    for optimizer in settings.optimizers:
        io.write_json(tmp_path / "tuning" / "sst2" / optimizer / settings.setting / "choice.json",
                      {"task": "sst2", "optimizer": optimizer, "setting": settings.setting,
                       "hparams": {"lr": 1e-3}})
    frame = precision_ablation(params, prepared_sst2, tmp_path / "tuning", progress=False)
    lines = [line for line in capsys.readouterr().out.splitlines() if "bf16 skipped" in line]
    assert len(lines) == 1 and "no native bf16" in lines[0]
    bf16 = frame[frame.precision == "bf16"]
    assert len(bf16) == len(settings.optimizers)
    assert bf16.status.str.startswith("skipped").all() and bf16.dev.isna().all()
    assert (frame[frame.precision == "fp32"].status == "ok").all()
    assert (frame.metric == "accuracy").all()
    assert "skipped" in ablation_markdown(frame)
    draw_precision_ablation(frame, tmp_path / "precision.png")
