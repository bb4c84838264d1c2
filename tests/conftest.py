"""Fixtures shared by the test files."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow end-to-end tests first: with two workers, the longest file (the smoke pipeline)
    then starts at once instead of after everything else."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread while a test runs: the machine has two cores, shared with the pipeline."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def prepared_sst2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SST-2 of the fixture mirror, prepared as the smoke profile prepares it (train, selection
    and dev splits)."""
    from transformers import AutoTokenizer

    from adaopt.config import load_params
    from adaopt.data import prepare_task
    from adaopt.modeling import resolve_model_path

    params = load_params(ROOT / "profiles" / "smoke.yaml")
    out = tmp_path_factory.mktemp("prepared")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(params.model.name_or_path))
    prepare_task("sst2", ROOT / "tests" / "fixtures" / "mirror", out, tokenizer,
                 max_train_samples=None, max_eval_samples=None,
                 max_length=params.data.max_length, seed=params.data.seed,
                 selection_samples=params.data.selection_samples, model=params.model)
    return out
