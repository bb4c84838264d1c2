"""A synthetic sweep on disk, in the layout the train stage writes, for the summary and figures.

Two tasks (SST-2, scored on accuracy; SQuAD, on F1), five optimizers, both settings, three
seeds. Each finished run gets right the first ``k`` of the 40 dev examples; its ``dev`` scores
are computed from its ``predictions.json`` by the project's own metrics, so the bootstrap reads
consistent files. Every run records its machine; the eval log counts optimizer steps, examples
(:data:`BATCH` a step) and tokens.

* ``adam`` is a copy of ``adamw`` (bit-identical dev predictions);
* ``lamb`` gets 4, 4 and 5 more dev examples right than ``adamw`` (a planted difference), and
  stops early in the fair setting's seed 1 (finished, not diverged);
* ``adaptive_adam``, the controlled method, makes no cut in the fair setting and is then a copy
  of ``adamw`` (identical); in the traditional one it cuts 1, 2 and 1 times and gets one more
  dev example right than ``adamw`` on every seed (a constant difference, a single example);
* ``sgd`` diverges in seed 2 of the traditional setting (after an evaluation above the target:
  still not reached) and in every seed of the fair one (seed 0 at once: empty logs).

Runs outside the sweep (``adamw`` seed 3, ``rmsprop``) lie in the folder too.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from datasets import Dataset, DatasetDict
from design import full_matrix

from adaopt import io
from adaopt.config import SETTINGS, Params, parse_params
from adaopt.hparams import CONTROLLED
from adaopt.metrics import glue_metrics, squad_metrics
from adaopt.preregistration import Preregistration

ROOT = Path(__file__).resolve().parents[1]
N_DEV = 40
TASKS = ("sst2", "squad")
OPTIMIZERS = ("sgd", "adam", "adamw", "lamb", "adaptive_adam")
SEEDS = (0, 1, 2)
TARGETS = {"sst2": 0.72, "squad": 72.0}
METRIC = {"sst2": "accuracy", "squad": "f1"}
SCALE = {"sst2": 1.0, "squad": 100.0}
BATCH = 8  # examples a step
TOKENS = 20  # tokens an example
LOG_KEYS = ("step", "elapsed_s", "samples", "tokens")  # the eval log's columns besides scores
MACHINE = {"torch": "2.5.1", "device": "cpu", "cpu_capability": "AVX2", "threads": 2}
LABELS = np.arange(N_DEV) % 2
QUESTIONS = [f"q{i}" for i in range(N_DEV)]
GOLD = [[f"answer number {i}", f"number {i} answer"] if i % 4 == 0 else [f"answer number {i}"]
        for i in range(N_DEV)]

# (optimizer, setting) -> dev examples right per seed; None: the run diverged.
CORRECT: dict[tuple[str, str], list[int | None]] = {
    **{(name, setting): [30, 32, 28] for name in ("adamw", "adam") for setting in SETTINGS},
    **{("lamb", setting): [34, 36, 33] for setting in SETTINGS},
    ("adaptive_adam", "fair"): [30, 32, 28],
    ("adaptive_adam", "traditional"): [31, 33, 29],
    ("sgd", "traditional"): [20, 22, None],
    ("sgd", "fair"): [None, None, None],
}
EARLY_STOPPED = {("lamb", "fair", 1)}
# (optimizer, setting, seed) -> the controller's cuts: (step, lr after it) each; others: none.
CUTS: dict[tuple[str, str, int], list[tuple[int, float]]] = {
    ("adaptive_adam", "traditional", 0): [(20, 5e-4)],
    ("adaptive_adam", "traditional", 1): [(20, 5e-4), (30, 2.5e-4)],
    ("adaptive_adam", "traditional", 2): [(30, 5e-4)],
}


def params() -> Params:
    """The CPU profile, narrowed to the synthetic sweep, with the synthetic target lines."""
    raw = yaml.safe_load((ROOT / "profiles" / "cpu.yaml").read_text())
    raw["data"]["tasks"] = []
    raw["workloads"] = {task: raw["workloads"].get(task, {}) for task in TASKS}
    raw["sweep"] = {"optimizers": list(OPTIMIZERS), "seeds": list(SEEDS)}
    full_matrix(raw)
    raw["compress"].update(tasks=list(TASKS), optimizers=None)
    raw["evaluate"] = {"targets": TARGETS, "confidence": 0.95, "bootstrap_samples": 200}
    raw["precision_ablation"].update(task=TASKS[0], optimizers=["adamw", "lamb"])
    return parse_params(raw)


def glue_predictions(correct: int) -> dict[str, int]:
    """Right on the first ``correct`` dev rows, wrong on the others."""
    return {str(i): int(label if i < correct else 1 - label) for i, label in enumerate(LABELS)}


def squad_predictions(correct: int) -> dict[str, str]:
    """The gold answer on the first ``correct`` questions, a partial match (F1 0.5) after."""
    return {qid: gold[0] if i < correct else gold[0].split()[1]
            for i, (qid, gold) in enumerate(zip(QUESTIONS, GOLD, strict=True))}


def dev_scores(task: str, predictions: dict[str, Any]) -> dict[str, float]:
    if task == "squad":
        return squad_metrics(predictions, dict(zip(QUESTIONS, GOLD, strict=True)))
    return glue_metrics(task, [predictions[str(i)] for i in range(N_DEV)], LABELS)


def curve(task: str, correct: int | None, seed: int) -> list[dict[str, float]]:
    """Selection-split evaluations at steps 10, 20, 30: (k-8)/40, (k-4)/40, k/40, with the
    examples and tokens seen by then.

    A diverged run evaluated once, at 0.8, above the target line, before it diverged.
    """
    values = [0.8] if correct is None else [(correct - 8) / N_DEV, (correct - 4) / N_DEV,
                                            correct / N_DEV]
    if correct is None and seed == 0:
        values = []  # diverged at once
    rows = []
    for i, value in enumerate(values):
        step = 10 * (i + 1)
        row = {"step": step, "elapsed_s": round(step * (0.1 + 0.01 * seed), 6),
               "samples": BATCH * step, "tokens": BATCH * TOKENS * step}
        if task == "squad":
            row |= {"exact_match": SCALE[task] * value - 10, "f1": SCALE[task] * value}
        else:
            row |= {"accuracy": value}
        rows.append(row)
    return rows


def write_run(runs: Path, task: str, optimizer: str, setting: str, seed: int,
              correct: int | None) -> None:
    out = runs / task / optimizer / setting / f"seed{seed}"
    evals = curve(task, correct, seed)
    status = ("diverged" if correct is None
              else "early_stopped" if (optimizer, setting, seed) in EARLY_STOPPED else "ok")
    steps = 30 if correct is not None else 10 * len(evals) + 5 if evals else 1
    predictions = {}
    if correct is not None:
        predictions = (squad_predictions if task == "squad" else glue_predictions)(correct)
        io.write_json(out / "predictions.json", predictions)
    best = evals[-1] if correct is not None else None
    io.write_json(out / "metrics.json", {
        "task": task, "optimizer": optimizer, "setting": setting, "seed": seed,
        "metric": METRIC[task], "greater_is_better": True, "hparams": {"lr": 0.001},
        "train_examples": 64, "selection_examples": 32, "dev_examples": N_DEV,
        "status": status, "diverged_on": "loss" if correct is None else None,
        "steps": steps, "best_step": best["step"] if best else None,
        "controlled": optimizer in CONTROLLED,
        "cuts": [{"step": step, "lr": lr}
                 for step, lr in CUTS.get((optimizer, setting, seed), [])],
        "selection": {k: v for k, v in best.items() if k not in LOG_KEYS} if best else {},
        "dev": dev_scores(task, predictions) if predictions else {},
        "last_finite_loss": None if steps == 1 else 0.5, "machine": MACHINE,
    })
    io.write_json(out / "efficiency.json", {"wall_time_s": 10.0 + seed,
                                            "train_samples_per_s": 100.0 + seed,
                                            "train_tokens_per_s": 3000.0 + seed,
                                            "peak_memory_mb": 500.0,
                                            "optimizer_state_mb": 0.0 if optimizer == "sgd"
                                            else 2.0})
    train = "step,loss,lr,grad_norm,elapsed_s\n" + "".join(
        f"{s},{1.0 / s},{0.001 * (1 + s % 3)},{1.0 + s % 5},{0.1 * s}\n"
        for s in range(1, steps if correct is None else steps + 1))
    io.write_text(out / "train.csv", train)
    header = [*LOG_KEYS, *(["exact_match", "f1"] if task == "squad" else ["accuracy"])]
    io.write_text(out / "eval.csv", ",".join(header) + "\n" + "".join(
        ",".join(str(row[key]) for key in header) + "\n" for row in evals))


def write_prepared(prepared: Path) -> None:
    """The dev sets the bootstrap scores the predictions against."""
    DatasetDict({"validation": Dataset.from_dict({
        "sentence": [f"sentence {i}" for i in range(N_DEV)], "labels": LABELS.tolist()})}
    ).save_to_disk(str(prepared / "sst2"))
    DatasetDict({"validation_examples": Dataset.from_dict({
        "id": QUESTIONS,
        "answers": [{"text": gold, "answer_start": [0] * len(gold)} for gold in GOLD]})}
    ).save_to_disk(str(prepared / "squad"))


# (optimizer, setting) -> the chosen lr of its tune stage; sgd's fair space never finished.
CHOSEN_LR = {"sgd": 0.1, "adam": 1e-4, "adamw": 1e-4, "lamb": 0.01, "adaptive_adam": 1e-4}
GRID = {"sgd": [0.01, 0.1], "adam": [1e-4, 1e-3], "adamw": [1e-4, 1e-3], "lamb": [1e-3, 1e-2],
        "adaptive_adam": [1e-4, 1e-3]}


def write_choices(tuning: Path) -> None:
    """What the tune stages would have written: the choice, its grid-edge flags, the trials."""
    for task, optimizer, setting in itertools.product(TASKS, OPTIMIZERS, SETTINGS):
        failed = (optimizer, setting) == ("sgd", "fair")
        lr = GRID[optimizer][0] if failed else CHOSEN_LR[optimizer]
        side = "lower" if lr == GRID[optimizer][0] else "upper"
        io.write_json(tuning / task / optimizer / setting / "choice.json", {
            "task": task, "optimizer": optimizer, "setting": setting, "trials": 2,
            "space": {"lr": GRID[optimizer]}, "hparams": {"lr": lr}, "trial": 0,
            "score": float("nan") if failed else 0.7, "edges": {"lr": side},
            "no_finished_trial": failed,
        })


def write_project(root: Path) -> Path:
    """``runs/``, ``tuning/``, ``data/prepared`` and ``data/prepare_report.json`` under
    ``root``."""
    write_choices(root / "tuning")
    runs = root / "runs"
    for task, (optimizer, setting) in itertools.product(TASKS, CORRECT):
        for seed, correct in zip(SEEDS, CORRECT[optimizer, setting], strict=True):
            write_run(runs, task, optimizer, setting, seed, correct)
    write_run(runs, "sst2", "adamw", "traditional", 3, 10)  # outside the sweep
    write_run(runs, "sst2", "rmsprop", "traditional", 0, 10)
    write_prepared(root / "data" / "prepared")
    io.write_json(root / "data" / "prepare_report.json", {
        task: {"baseline": baseline, "metric": METRIC[task], "rows": {
            "train": {"kept": 80, "subsampled": 64}, "selection": {"carved": 32},
            "validation": {"kept": 2 * N_DEV, "subsampled": N_DEV}}}
        for task, baseline in (("sst2", {"rule": "majority class", "value": 0.5}),
                               ("squad", {"rule": "best-overlap sentence", "value": 10.0}))
    })
    return root


def registration(margins: dict[str, float] | None = None, samples: int = 300
                 ) -> Preregistration:
    """The committed pre-registration with this sweep's references (adamw, adam), a primary
    family of AdaptiveAdam against AdamW (fair) and Adam (traditional) over its tasks,
    ``samples`` dev-set resamples and ``margins``."""
    raw = yaml.safe_load((ROOT / "preregistration.yaml").read_text())
    raw.update(references=["adamw", "adam"], margins=margins or {},
               bootstrap={"samples": samples, "seed": 0},
               primary={"tasks": list(TASKS),
                        "comparisons": [{"setting": "fair", "reference": "adamw"},
                                        {"setting": "traditional", "reference": "adam"}]})
    return Preregistration.model_validate(raw)
