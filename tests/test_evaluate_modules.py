"""The packaged ``evaluate`` modules: same numbers as adaopt.metrics, loadable offline."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import evaluate
import numpy as np
import pytest
from datasets import Dataset, DatasetDict, Features, Value

from adaopt.evaluation import DECODERS, PostProcessing
from adaopt.metrics import (
    GLUE_METRIC_PATH,
    GLUE_TASKS,
    SQUAD_METRIC_PATH,
    glue_metrics,
    load_metric,
    squad_metrics,
)
from adaopt.qa import postprocess_predictions
from adaopt.tasks import get_task

SRC = Path(__file__).resolve().parents[1] / "src"


def _same(a: dict[str, float], b: dict[str, float]) -> bool:
    """Equal keys, order and values, NaN included: metrics.json compares them byte for byte."""
    return json.dumps(a) == json.dumps(b) and all(type(v) is float for v in a.values())


def _glue_inputs(task: str, seed: int, n: int = 203) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if task == "stsb":  # float32, like the model's regression head
        return rng.normal(2.5, 1.5, n).astype(np.float32), rng.uniform(0, 5, n).astype(np.float32)
    n_classes = 3 if task.startswith("mnli") else 2
    return rng.integers(0, n_classes, n), rng.integers(0, n_classes, n)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("task", GLUE_TASKS)
def test_glue_module_equals_glue_metrics(task: str, seed: int) -> None:
    predictions, labels = _glue_inputs(task, seed)
    metric = evaluate.load(GLUE_METRIC_PATH, task)
    scores = metric.compute(predictions=predictions, references=labels)
    assert _same(scores, glue_metrics(task, predictions, labels))


def test_glue_module_takes_lists_and_task_aliases() -> None:
    scores = load_metric(GLUE_METRIC_PATH, "SST-2").compute(
        predictions=[0, 1, 1, 0], references=[0, 1, 0, 0]
    )
    assert scores == {"accuracy": 0.75}


def test_glue_module_keeps_nan_of_a_constant_regressor() -> None:
    labels = np.random.default_rng(0).uniform(0, 5, 50)
    constant = np.full(50, 2.5)
    scores = load_metric(GLUE_METRIC_PATH, "stsb").compute(predictions=constant, references=labels)
    assert _same(scores, glue_metrics("stsb", constant, labels))
    assert json.dumps(scores) == '{"pearson": NaN, "spearmanr": NaN}'


@pytest.mark.parametrize("config", [None, "squad", "sts-c"])
def test_glue_module_rejects_unknown_configs(config: str | None) -> None:
    with pytest.raises(ValueError, match=r"config name must be a GLUE task, got '.*'; known"):
        load_metric(GLUE_METRIC_PATH, config)


def test_squad_module_has_no_configs() -> None:
    with pytest.raises(ValueError, match="SQuAD metric has no configs"):
        load_metric(SQUAD_METRIC_PATH, "v2")


SQUAD_CASES: dict[str, tuple[str, list[str]]] = {
    "exact": ("Denver Broncos", ["Denver Broncos"]),
    "normalized": ("the Denver  broncos!", ["Denver Broncos"]),
    "partial": ("Broncos of Denver", ["Denver Broncos", "the Broncos"]),
    "none": ("Carolina", ["Denver Broncos"]),
    "several": ("Santa Clara, California", ["Levi's Stadium", "Santa Clara", "California"]),
    "empty": ("", ["a touchdown"]),
}


def _hub_inputs(cases: dict[str, tuple[str, list[str]]]) -> dict[str, list[dict[str, Any]]]:
    return {
        "predictions": [{"id": qid, "prediction_text": pred} for qid, (pred, _) in cases.items()],
        "references": [
            {"id": qid, "answers": {"text": gold, "answer_start": [0] * len(gold)}}
            for qid, (_, gold) in cases.items()
        ],
    }


@pytest.mark.parametrize("qid", SQUAD_CASES)
def test_squad_module_equals_squad_metrics_per_case(qid: str) -> None:
    prediction, gold = SQUAD_CASES[qid]
    scores = load_metric(SQUAD_METRIC_PATH).compute(**_hub_inputs({qid: SQUAD_CASES[qid]}))
    assert _same(scores, squad_metrics({qid: prediction}, {qid: gold}))


def test_squad_module_equals_squad_metrics_on_all_cases() -> None:
    scores = evaluate.load(SQUAD_METRIC_PATH).compute(**_hub_inputs(SQUAD_CASES))
    expected = squad_metrics(
        {qid: pred for qid, (pred, _) in SQUAD_CASES.items()},
        {qid: gold for qid, (_, gold) in SQUAD_CASES.items()},
    )
    assert _same(scores, expected)
    assert 0 < scores["exact_match"] < scores["f1"] < 100


def test_glue_decoders_score_as_glue_metrics_did() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 40)
    splits = DatasetDict({"validation": Dataset.from_dict({"labels": labels})})
    logits = rng.normal(size=(40, 2)).astype(np.float32)
    scores, _ = DECODERS["classification"](splits, "validation", get_task("sst2"),
                                           PostProcessing())({"logits": logits})
    assert _same(scores, glue_metrics("sst2", logits.argmax(-1), labels))

    gold = rng.uniform(0, 5, 40).astype(np.float32)
    features = Features({"labels": Value("float32")})
    splits = DatasetDict({"validation": Dataset.from_dict({"labels": gold}, features=features)})
    decode = DECODERS["regression"](splits, "validation", get_task("stsb"), PostProcessing())
    for column in (rng.normal(size=40), np.full(40, 3.0)):  # the second one is constant: NaN
        logits = column.astype(np.float32)[:, None]
        scores, _ = decode({"logits": logits})
        assert _same(scores, glue_metrics("stsb", logits[:, 0], np.asarray(gold)))


def test_span_decoder_scores_as_squad_metrics_did() -> None:
    contexts = ["the cat sat on the mat", "Denver beat Carolina in Santa Clara", "a b c d"]
    golds = [["the mat", "mat"], ["Denver"], ["c d"]]
    offsets = []
    for context in contexts:
        words = [[m.start(), m.end()] for m in re.finditer(r"\S+", context)]
        offsets.append([None, *words, None])  # question/special tokens are not context
    examples = Dataset.from_dict({
        "id": ["q0", "q1", "q2"],
        "context": contexts,
        "answers": [{"text": g, "answer_start": [c.find(t) for t in g]}
                    for c, g in zip(contexts, golds, strict=True)],
    })
    features = Dataset.from_dict({"example_id": ["q0", "q1", "q2"], "offset_mapping": offsets})
    splits = DatasetDict({"validation": features, "validation_examples": examples})
    decode = DECODERS["extractive_qa"](splits, "validation", get_task("squad"), PostProcessing())
    rng = np.random.default_rng(0)
    width = max(len(o) for o in offsets)
    for _ in range(5):
        start, end = rng.normal(size=(2, 3, width)).astype(np.float32)
        scores, predictions = decode({"start_logits": start, "end_logits": end})
        expected = postprocess_predictions(
            {"id": ["q0", "q1", "q2"], "context": contexts},
            {"example_id": ["q0", "q1", "q2"], "offset_mapping": offsets},
            start,
            end,
        )
        assert predictions == expected
        gold = dict(zip(["q0", "q1", "q2"], golds, strict=True))
        assert _same(scores, squad_metrics(expected, gold))


_CHILD = """
import json, socket, sys

def _no_network(*args, **kwargs):
    raise OSError("network access during evaluate.load")

socket.socket.connect = socket.socket.connect_ex = _no_network

import evaluate
import adaopt.metrics as m

assert m.__file__.startswith(sys.argv[1]), m.__file__
mrpc = evaluate.load(m.GLUE_METRIC_PATH, "mrpc")
glue = mrpc.compute(predictions=[0, 1, 1], references=[0, 1, 0])
refs = [{"id": "a", "answers": {"text": ["the cat"], "answer_start": [0]}}]
squad = evaluate.load(m.SQUAD_METRIC_PATH).compute(
    predictions=[{"id": "a", "prediction_text": "cat"}], references=refs
)
print(json.dumps({
    "glue": [glue, m.glue_metrics("mrpc", [0, 1, 1], [0, 1, 0])],
    "squad": [squad, m.squad_metrics({"a": "cat"}, {"a": ["the cat"]})],
}))
"""


def _snapshot(root: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(root)), p.stat().st_mtime_ns) for p in root.rglob("*"))


def test_loads_offline_from_a_fresh_home_and_a_read_only_package(tmp_path: Path) -> None:
    """No network, no pre-filled cache, and nothing written next to the installed package."""
    site = tmp_path / "site"
    shutil.copytree(SRC / "adaopt", site / "adaopt", ignore=shutil.ignore_patterns("__pycache__"))
    for path in site.rglob("*"):
        path.chmod(0o555 if path.is_dir() else 0o444)
    before = _snapshot(site)
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "XDG_", "HUGGINGFACE")) and k != "PYTHONPATH"}
    env |= {"HOME": str(home), "HF_HOME": str(home / "hf"), "PYTHONPATH": str(site),
            "PYTHONDONTWRITEBYTECODE": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    try:
        done = subprocess.run([sys.executable, "-c", _CHILD, str(site)], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert _snapshot(site) == before
    finally:
        for path in site.rglob("*"):
            path.chmod(0o755)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["glue"][0] == result["glue"][1]
    assert result["squad"][0] == result["squad"][1] == {"exact_match": 100.0, "f1": 100.0}
    assert list((home / "hf" / "modules").rglob("glue.py"))  # evaluate's copy, in the fresh cache
