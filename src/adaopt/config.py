"""The schema of ``params.yaml``: every stage validates it before it spends any compute.

A typo or an out-of-range value becomes one line that names the key, the value and what is
allowed (``ConfigError``), instead of a traceback an hour into a run.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from adaopt.hparams import CLASS_KEY, REGISTRY, resolve_hparams
from adaopt.tasks import get_task

Ratio = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveInt = Annotated[int, Field(ge=1)]
Precision = Literal["fp32", "bf16", "fp16"]  # adaopt.precision.PRECISIONS, without importing torch


class ConfigError(ValueError):
    """A ``params.yaml`` value that is not allowed; the message is one line."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _canonical_tasks(tasks: list[str]) -> list[str]:
    """Task names in the task table's spelling, each once."""
    canonical = [get_task(name).name for name in tasks]
    if len(set(canonical)) != len(canonical):
        raise ValueError("tasks must not repeat")
    return canonical


class LMDataConfig(_Section):
    """How a language-modeling corpus (task kind ``language_modeling``) is cut and tokenized.

    The text is split contiguously, never shuffled: the training text first, then
    ``selection_chars`` characters (the selection split), then the last ``eval_chars`` characters
    (dev: the reported validation loss); counted in characters, so that where the text is cut
    does not depend on the tokenizer, which is fit on the training text alone. Examples are
    non-overlapping blocks of ``context`` tokens.
    ``corpus`` is a plain-text file to read instead of the task's fetched release file (``None``).
    ``char`` gives one token per character seen in the training text (plus one for characters
    it lacks); ``bpe`` fits a byte-level BPE of ``bpe_vocab_size`` tokens on the training text.
    """

    corpus: str | None = None
    tokenizer: Literal["char", "bpe"] = "char"
    bpe_vocab_size: Annotated[int, Field(ge=257, le=65536)] = 512
    context: Annotated[int, Field(ge=8, le=4096)] = 128
    selection_chars: PositiveInt = 32768
    eval_chars: PositiveInt = 32768


class DataConfig(_Section):
    """What the prepare stage reads and how much of it (``max_*_samples`` for quick runs).

    ``max_*_samples`` count examples per task (SQuAD: questions, before they are cut into
    windows); ``max_eval_samples`` may instead map task names to counts (a task it does not
    name keeps its whole dev set). ``max_length`` is the token limit of the GLUE tasks.
    Extractive QA cuts each question + context into windows of ``qa_max_length`` tokens that
    overlap by ``doc_stride`` context tokens (how its answers are decoded is the task's
    workload's, :class:`DecodingConfig`).
    ``selection_samples`` examples (SQuAD: whole articles, until that many questions) are
    carved out of the cleaned training data with ``seed`` before it is subsampled: the
    selection split, which tuning, early stopping, checkpoint choice and AdaptiveAdam's
    controller read instead of dev. It may map task names to counts, with ``default`` for the
    rest: a small training set (MRPC, RTE) cannot give up as much as SST-2.
    A language-modeling corpus is cut by ``lm`` instead (:class:`LMDataConfig`): the sample
    counts do not apply to it.
    """

    tasks: list[str] = Field(default_factory=list)
    max_train_samples: PositiveInt | None = None
    max_eval_samples: PositiveInt | dict[str, PositiveInt] | None = None
    max_length: Annotated[int, Field(ge=8, le=512)] = 128
    qa_max_length: Annotated[int, Field(ge=32, le=512)] = 384
    doc_stride: PositiveInt = 128
    selection_samples: PositiveInt | dict[str, PositiveInt] = 200
    seed: Annotated[int, Field(ge=0)] = 0
    lm: LMDataConfig = LMDataConfig()

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, tasks: list[str]) -> list[str]:
        return _canonical_tasks(tasks)

    @field_validator("max_eval_samples")
    @classmethod
    def _known_eval_tasks(cls, samples: int | dict[str, int] | None
                          ) -> int | dict[str, int] | None:
        if isinstance(samples, dict):
            return {get_task(name).name: count for name, count in samples.items()}
        return samples

    @field_validator("selection_samples")
    @classmethod
    def _selection_default(cls, samples: int | dict[str, int]) -> int | dict[str, int]:
        if not isinstance(samples, dict):
            return samples
        if "default" not in samples:
            raise ValueError("a mapping needs a default entry for the tasks it does not name, "
                             "e.g. {default: 1000, mrpc: 500}")
        return {name if name == "default" else get_task(name).name: count
                for name, count in samples.items()}

    def selection_for(self, task: str) -> int:
        """How many examples (SQuAD: questions) ``task``'s selection split holds."""
        if isinstance(self.selection_samples, dict):
            return self.selection_samples.get(get_task(task).name,
                                              self.selection_samples["default"])
        return self.selection_samples

    def eval_samples(self, task: str) -> int | None:
        """How many dev examples of ``task`` are scored (None: all of them)."""
        if isinstance(self.max_eval_samples, dict):
            return self.max_eval_samples.get(get_task(task).name)
        return self.max_eval_samples

    @model_validator(mode="after")
    def _windows_advance(self) -> DataConfig:
        # The tokenizer fails where the overlap does not fit beside the question in a window;
        # half a window is a safe bound (SQuAD questions have at most about 40 tokens).
        if 2 * self.doc_stride >= self.qa_max_length:
            raise ValueError(
                f"doc_stride={self.doc_stride} must be less than half of "
                f"qa_max_length={self.qa_max_length}"
            )
        return self


class TinyModelConfig(_Section):
    """A small BERT built from a config (smoke profile): no pretrained weights needed.

    ``dropout`` (BERT's hidden and attention dropout) at 0 makes a run independent of how the
    batch is split: data-parallel processes draw other dropout masks than one process.
    """

    hidden_size: PositiveInt = 32
    num_hidden_layers: PositiveInt = 2
    num_attention_heads: PositiveInt = 2
    intermediate_size: PositiveInt = 64
    dropout: Ratio = 0.1


class ModelConfig(_Section):
    """``packaged`` is the MiniLM shipped on PyPI; any hub name or local folder works online."""

    name_or_path: str = "packaged"
    attn_implementation: Literal["eager", "sdpa"] = "eager"
    tiny: TinyModelConfig | None = None


class SettingConfig(_Section):
    """How the learning rate moves and whether gradients are clipped in one comparison setting."""

    schedule: Literal["constant", "linear", "cosine", "exponential"]
    warmup_ratio: Ratio = 0.0
    decay_start_ratio: Ratio = 0.0
    gamma: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    max_grad_norm: Annotated[float, Field(gt=0.0)] | None = None


class TrainConfig(_Section):
    """The loop's knobs, shared by every optimizer so that the comparison is like for like.

    ``batch_size`` is the global batch: with ``nproc`` data-parallel processes each takes its
    ``batch_size / nproc`` examples of every batch, so the learning rate and the loss curve do
    not depend on ``nproc`` (:mod:`adaopt.distributed`).
    """

    batch_size: PositiveInt = 32
    eval_batch_size: PositiveInt = 64
    grad_accum_steps: PositiveInt = 1
    max_steps: PositiveInt = 100
    eval_every: PositiveInt = 20
    early_stopping_patience: PositiveInt | None = None
    # Read the loss, gradient norm and finiteness checks back from the device every log_every
    # steps (and at evaluations and checkpoints): between read-backs a GPU step never waits for
    # the host. The logged values do not depend on it. With 1, a step with a non-finite loss
    # or gradient is not applied; with more, the run ends at the same step, found at the next
    # read-back, and its weights (never scored) took the steps up to it.
    log_every: PositiveInt = 1
    checkpoint_every: PositiveInt | None = None  # None: at every evaluation
    # At a checkpoint step, save only once the run has trained this long since its start or
    # last save: a 16-step run is cheaper to redo than to checkpoint (0: save at every one).
    checkpoint_interval_s: Annotated[float, Field(ge=0.0)] = 60.0
    # fp32; bf16 autocast; fp16 autocast with a gradient scaler (CUDA only: adaopt.precision).
    precision: Precision = "fp32"
    group_by_length: bool = True
    threads: PositiveInt | None = None
    # Data-parallel processes (torchrun, one per GPU or CPU process); batch_size stays global.
    nproc: PositiveInt = 1
    # When every GPU of the machine is held by another run: wait for one, or train on the CPU.
    busy_gpus: Literal["wait", "cpu"] = "wait"
    # TF32 matmuls and convolutions on CUDA (Ampere and later): faster fp32, 10-bit mantissas.
    tf32: bool = False
    # How long a data-parallel process waits in a collective (rank 0 alone scores the
    # selection split while the others wait) before the process group gives up.
    dist_timeout_s: PositiveInt = 3600

    @model_validator(mode="after")
    def _batch_splits_evenly(self) -> TrainConfig:
        if self.batch_size % self.nproc:
            raise ValueError(f"batch_size={self.batch_size} must be a multiple of "
                             f"nproc={self.nproc}: each process takes batch_size / nproc "
                             "examples of every global batch")
        return self


SETTINGS = ("traditional", "fair")


class CellConfig(_Section):
    """One (task, optimizer, setting) of the design: one tune and one train stage.

    ``seeds``: a count (seeds ``0..n-1``), a list, or ``None`` for ``sweep.seeds``; cells differ
    in seeds where a comparison needs more of them than the rest (the pre-registration's).
    """

    task: str
    optimizer: str
    setting: Literal["traditional", "fair"]
    seeds: PositiveInt | list[Annotated[int, Field(ge=0)]] | None = None

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: int | list[int] | None) -> int | list[int] | None:
        if isinstance(seeds, list) and (not seeds or len(set(seeds)) != len(seeds)):
            raise ValueError("seeds must be a count or a non-empty list without repeats")
        return seeds


class Cell(NamedTuple):
    """A cell of the design as the stages see it: ``name`` is its DVC key, ``task-opt-setting``."""

    task: str
    optimizer: str
    setting: str
    seeds: tuple[int, ...]

    @property
    def name(self) -> str:
        return cell_name(self.task, self.optimizer, self.setting)


def cell_name(task: str, optimizer: str, setting: str) -> str:
    """The key of a cell in ``sweep.cells`` and of its stages (``train@<name>``)."""
    return f"{task}-{optimizer}-{setting}"


class SweepConfig(_Section):
    """What the tune and train stages span: one of each per entry of ``cells``, every seed of
    the cell in the train stage.

    ``cells`` is the design, written out (DVC makes a stage per key): a task need not run every
    optimizer in both settings, nor every cell the same seeds. ``optimizers`` is the comparison's
    order (tables, figures); ``seeds`` the seeds of a cell that names none. ``tasks`` is not
    written in params.yaml: it is the keys of ``workloads``, which :class:`Params` fills in.
    """

    tasks: list[str] = Field(default_factory=list)
    optimizers: list[str] = Field(min_length=1)
    seeds: list[Annotated[int, Field(ge=0)]] = Field(min_length=1)
    cells: dict[str, CellConfig] = Field(min_length=1)

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, tasks: list[str]) -> list[str]:
        return _canonical_tasks(tasks)

    @field_validator("optimizers")
    @classmethod
    def _distinct_optimizers(cls, names: list[str]) -> list[str]:
        if len(set(names)) != len(names):
            raise ValueError("optimizers must not repeat")
        return names

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError("seeds must not repeat")
        return seeds

    @field_validator("cells")
    @classmethod
    def _named_cells(cls, cells: dict[str, CellConfig]) -> dict[str, CellConfig]:
        for key, cell in cells.items():
            name = cell_name(get_task(cell.task).name, cell.optimizer, cell.setting)
            if key != name:
                raise ValueError(f"{key}: a cell's key is <task>-<optimizer>-<setting> of its "
                                 f"values ({name})")
        return cells


class LogGrid(_Section):
    """``num`` values spaced evenly on a log scale from ``min`` to ``max`` (both included),
    rounded to three significant digits so that trial tables read cleanly."""

    min: Annotated[float, Field(gt=0.0)]
    max: Annotated[float, Field(gt=0.0)]
    num: Annotated[int, Field(ge=2)]

    @model_validator(mode="after")
    def _ordered(self) -> LogGrid:
        if self.min >= self.max:
            raise ValueError(f"min={self.min} must be less than max={self.max}")
        return self

    def values(self) -> list[float]:
        ratio = (self.max / self.min) ** (1.0 / (self.num - 1))
        return [float(f"{self.min * ratio**i:.3g}") for i in range(self.num)]


def _grid_kind(value: Any) -> str:
    return "log_grid" if isinstance(value, dict | LogGrid) else "values"


#: One hyperparameter's grid: explicit values, or a log-spaced grid (a mapping). Dispatched on
#: the input's shape, so that an error names the grid's own problem, not a union's.
Grid = Annotated[
    Annotated[list[float | int | bool], Field(min_length=1), Tag("values")]
    | Annotated[LogGrid, Tag("log_grid")],
    Discriminator(_grid_kind),
]


class TuningConfig(_Section):
    """The tuning ruleset's knobs: the same number of trials for every optimizer.

    Each optimizer's search space (``spaces.<optimizer>``) is a grid per hyperparameter; the
    product of its grids must hold exactly ``trials`` points. Trials run ``max_steps`` steps
    (``None``: ``train.max_steps``) with ``seed``, which is not an evaluation seed.
    """

    seed: Annotated[int, Field(ge=0)]
    trials: PositiveInt
    max_steps: PositiveInt | None = None
    eval_every: PositiveInt | None = None  # None: the task's train.eval_every
    spaces: dict[str, dict[str, Grid]]


class GPTConfig(_Section):
    """A GPT-2 style decoder trained from scratch (its context is ``data.lm.context``)."""

    n_layer: PositiveInt = 2
    n_embd: PositiveInt = 128
    n_head: PositiveInt = 4

    @model_validator(mode="after")
    def _heads_divide_width(self) -> GPTConfig:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be a multiple of n_head={self.n_head}")
        return self


class DecodingConfig(_Section):
    """How extractive QA decodes held-out answers: the best span of at most
    ``max_answer_length`` tokens among the ``n_best`` best start and end tokens per window.
    A workload key, so that only the QA task's stages depend on it."""

    n_best: PositiveInt = 20
    max_answer_length: PositiveInt = 30


class WorkloadConfig(_Section):
    """What one task changes in the shared setup: its training budget (any ``train`` key, e.g.
    ``max_steps``, ``batch_size``, ``eval_every``), its tuning trials' length, search spaces
    that replace ``tuning.spaces`` for it (a model trained from scratch wants other learning
    rates than fine-tuning) and, for a language model, the model itself (``gpt``)."""

    train: dict[str, Any] = Field(default_factory=dict)
    tuning_max_steps: PositiveInt | None = None
    tuning_eval_every: PositiveInt | None = None  # None: the task's train.eval_every
    spaces: dict[str, dict[str, Grid]] = Field(default_factory=dict)
    gpt: GPTConfig | None = None
    decoding: DecodingConfig = DecodingConfig()


class EvaluateConfig(_Section):
    """How the summary scores the runs.

    ``targets`` holds a fixed time-to-target line per task, on the task's model-selection
    metric (checked against the task's trivial baseline when the data is prepared). Intervals
    are ``confidence`` intervals; the bootstrap over seeds and dev examples draws
    ``bootstrap_samples`` resamples. What decides a comparison (margins, alpha, the test) is
    not here but in ``preregistration.yaml`` (:mod:`adaopt.preregistration`).
    """

    targets: dict[str, float]
    confidence: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.95
    bootstrap_samples: Annotated[int, Field(ge=100)] = 1000

    @model_validator(mode="before")
    @classmethod
    def _margins_moved(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and "margins" in raw:
            raise ValueError("margins moved to preregistration.yaml (margins), which the "
                             "evaluate stage depends on: the verdict's rule is fixed there")
        return raw

    @field_validator("targets")
    @classmethod
    def _known_tasks(cls, values: dict[str, float]) -> dict[str, float]:
        return {get_task(name).name: value for name, value in values.items()}


Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]


class DistillConfig(_Section):
    """Students are the teacher's first ``layers`` layers (one student per entry), trained
    ``steps`` steps with the distillation loss (``temperature``, ``alpha``: the weight of the
    soft term) and, as the control, the same steps with the task loss alone."""

    layers: list[PositiveInt] = Field(min_length=1)
    steps: PositiveInt = 48
    temperature: Annotated[float, Field(gt=0.0)] = 2.0
    alpha: Ratio = 0.5


class LatencyConfig(_Section):
    """CPU latency: ``warmup`` untimed calls, then ``repeats`` timed ones per batch size."""

    batch_sizes: list[PositiveInt] = Field(min_length=1)
    warmup: Annotated[int, Field(ge=0)] = 3
    repeats: Annotated[int, Field(ge=3)] = 10


class CompressConfig(_Section):
    """The compress stage (:mod:`adaopt.compression`), one per task in ``tasks``.

    The teacher is the best of ``optimizers`` (``None``: every optimizer of the sweep) in the
    ``setting`` cells by its runs' mean selection-split score; the stage retrains its seed-0 run
    from the tuned values (as the train stage ran it), and AdamW's beside it. Unstructured magnitude
    pruning runs at each of ``sparsities`` (fractions of the encoder's Linear weights), with and
    without ``recovery_steps`` of fine-tuning at ``lr``; structured pruning removes each of
    ``ffn_fractions`` of every layer's FFN neurons (then the same recovery).
    """

    tasks: list[str] = Field(min_length=1)
    setting: Literal["traditional", "fair"] = "fair"
    optimizers: list[str] | None = None
    sparsities: list[Fraction] = Field(min_length=1)
    ffn_fractions: list[Fraction] = Field(default_factory=list)
    recovery_steps: PositiveInt = 16
    lr: Annotated[float, Field(gt=0.0)] = 5e-5
    distill: DistillConfig
    latency: LatencyConfig

    @field_validator("tasks")
    @classmethod
    def _encoder_tasks(cls, tasks: list[str]) -> list[str]:
        canonical = [get_task(name).name for name in tasks]
        for name in canonical:
            if get_task(name).kind == "language_modeling":
                raise ValueError(f"{name}: language-modeling tasks are not compressed (GPT-2's "
                                 "Conv1D layers are not nn.Linear; see README, Compression)")
        return canonical



class PrecisionAblationConfig(_Section):
    """The mixed-precision ablation: each of ``optimizers`` trained on ``task`` in each of
    ``precisions``, with its tuned values of ``setting``, one ``seed``, ``max_steps`` steps.

    Every run of one optimizer starts from the same weights and data order, so the precisions
    differ in nothing else; the stage reports the dev metric, throughput and peak memory side
    by side. fp16 needs a CUDA GPU (:mod:`adaopt.precision`).
    """

    task: str
    optimizers: list[str] = Field(min_length=1)
    precisions: list[Precision] = Field(min_length=2)
    setting: Literal["traditional", "fair"] = "fair"
    seed: Annotated[int, Field(ge=0)] = 0
    max_steps: PositiveInt

    @field_validator("task")
    @classmethod
    def _known_task(cls, task: str) -> str:
        return get_task(task).name

    @field_validator("precisions")
    @classmethod
    def _distinct(cls, precisions: list[str]) -> list[str]:
        if len(set(precisions)) != len(precisions):
            raise ValueError("precisions must not repeat")
        return precisions


class Params(_Section):
    """The whole ``params.yaml``."""

    profile: Literal["smoke", "quick", "cpu", "full"]
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    sweep: SweepConfig
    settings: dict[Literal["traditional", "fair"], SettingConfig]
    optimizers: dict[str, dict[str, Any]]
    tuning: TuningConfig
    evaluate: EvaluateConfig
    workloads: dict[str, WorkloadConfig]
    precision_ablation: PrecisionAblationConfig
    compress: CompressConfig

    @field_validator("workloads")
    @classmethod
    def _workload_tasks(cls, workloads: dict[str, WorkloadConfig]) -> dict[str, WorkloadConfig]:
        if not workloads:
            raise ValueError("no task to train: list one under workloads (e.g. `sst2: {}`)")
        _canonical_tasks(list(workloads))
        return {get_task(name).name: workload for name, workload in workloads.items()}

    @model_validator(mode="before")
    @classmethod
    def _swept_tasks(cls, raw: Any) -> Any:
        """``sweep.tasks`` is the keys of ``workloads``; writing it too would be a second list
        to keep in step with the first."""
        if isinstance(raw, dict) and isinstance(raw.get("sweep"), dict):
            tasks = list(raw.get("workloads") or {})
            if raw["sweep"].get("tasks", tasks) != tasks:  # a dump of Params carries the same
                raise ValueError("sweep.tasks: the trained tasks are the keys of workloads "
                                 "(`<task>: {}` keeps the shared settings); remove sweep.tasks")
            try:
                _canonical_tasks(tasks)
            except (ValueError, KeyError):
                tasks = []  # the workloads field names the bad key itself
            raw = {**raw, "sweep": {**raw["sweep"], "tasks": tasks}}
        return raw

    @property
    def prepared_tasks(self) -> list[str]:
        """The tasks fetched and prepared: every trained task, then ``data.tasks``' others (a
        task prepared for its baseline only)."""
        return [*self.sweep.tasks, *(t for t in self.data.tasks if t not in self.sweep.tasks)]

    @property
    def cells(self) -> list[Cell]:
        """The design's cells in the comparison's order: task (``workloads``), optimizer
        (``sweep.optimizers``), setting (``SETTINGS``)."""
        order = {"task": self.sweep.tasks, "optimizer": self.sweep.optimizers,
                 "setting": list(SETTINGS)}
        cells = [Cell(get_task(c.task).name, c.optimizer, c.setting, self._seeds(c.seeds))
                 for c in self.sweep.cells.values()]
        return sorted(cells, key=lambda c: tuple(order[k].index(getattr(c, k)) for k in order))

    def _seeds(self, seeds: int | list[int] | None) -> tuple[int, ...]:
        if seeds is None:
            return tuple(self.sweep.seeds)
        return tuple(range(seeds)) if isinstance(seeds, int) else tuple(seeds)

    def cell(self, task: str, optimizer: str, setting: str) -> Cell | None:
        """The design's cell, or None where the design leaves it out."""
        entry = self.sweep.cells.get(cell_name(get_task(task).name, optimizer, setting))
        if entry is None:
            return None
        return Cell(get_task(task).name, optimizer, setting, self._seeds(entry.seeds))

    def seeds_for(self, task: str, optimizer: str, setting: str) -> tuple[int, ...]:
        """The evaluation seeds of a cell of the design."""
        cell = self.cell(task, optimizer, setting)
        if cell is None:
            raise ValueError(f"sweep.cells has no {cell_name(task, optimizer, setting)}; "
                             "allowed: " + ", ".join(self.sweep.cells))
        return cell.seeds

    def workload(self, task: str) -> WorkloadConfig:
        """The task's workload; a task prepared but not trained has the shared settings."""
        return self.workloads.get(get_task(task).name, WorkloadConfig())

    def train_for(self, task: str) -> TrainConfig:
        """``train`` with the task's workload overrides (its steps, batch, evaluations)."""
        overrides = self.workload(task).train
        if not overrides:
            return self.train
        return TrainConfig.model_validate({**self.train.model_dump(), **overrides})

    def space_for(self, task: str, optimizer: str) -> dict[str, Grid]:
        """The search space of ``optimizer`` on ``task``: the workload's, else ``tuning.spaces``."""
        workload = self.workload(task)
        return workload.spaces.get(optimizer) or self.tuning.spaces[optimizer]

    def tuning_steps(self, task: str) -> int:
        """How long a tuning trial of ``task`` runs: the workload's, else ``tuning.max_steps``,
        else the task's full runs."""
        workload = self.workload(task)
        return (workload.tuning_max_steps or self.tuning.max_steps
                or self.train_for(task).max_steps)

    def tuning_eval_every(self, task: str) -> int:
        """How often a tuning trial of ``task`` is evaluated: the workload's, else
        ``tuning.eval_every``, else as the task's runs."""
        workload = self.workload(task)
        return (workload.tuning_eval_every or self.tuning.eval_every
                or self.train_for(task).eval_every)

    @model_validator(mode="after")
    def _cross_checks(self) -> Params:
        for name in SETTINGS:
            if name not in self.settings:
                raise ValueError(f"settings.{name} is missing; both settings are always run")
        for name in self.sweep.optimizers:
            if name not in self.optimizers and name not in REGISTRY:
                raise ValueError(f"sweep.optimizers: unknown optimizer {name!r}; allowed: "
                                 f"{', '.join(REGISTRY)}, or a section with {CLASS_KEY}")
            if name not in self.optimizers:
                raise ValueError(f"optimizers.{name} is missing; sweep.optimizers lists it")
        for name, hparams in self.optimizers.items():
            _check_optimizer(name, hparams)
        self._check_cells()
        self._check_tuning()
        self._check_workloads()
        self._check_ablation()
        self._check_compress()
        return self

    def _check_cells(self) -> None:
        for key, cell in self.sweep.cells.items():
            if get_task(cell.task).name not in self.sweep.tasks:
                raise ValueError(f"sweep.cells.{key}.task={cell.task!r} is not trained; "
                                 f"allowed: the keys of workloads, {', '.join(self.sweep.tasks)}")
            if cell.optimizer not in self.sweep.optimizers:
                raise ValueError(f"sweep.cells.{key}.optimizer={cell.optimizer!r} is not in "
                                 f"sweep.optimizers; allowed: {', '.join(self.sweep.optimizers)}")
        bare = [task for task in self.sweep.tasks if not any(c.task == task for c in self.cells)]
        if bare:
            raise ValueError(f"workloads.{bare[0]} has no cell in sweep.cells: give it one "
                             "(<task>-<optimizer>-<setting>) or remove the workload")

    def _check_ablation(self) -> None:
        ablation = self.precision_ablation
        if ablation.task not in self.sweep.tasks:
            raise ValueError(f"precision_ablation.task={ablation.task!r} is not trained (its "
                             "tuned values come from the sweep); allowed: the keys of "
                             f"workloads, {', '.join(self.sweep.tasks)}")
        for name in ablation.optimizers:
            if self.cell(ablation.task, name, ablation.setting) is None:
                raise ValueError(f"precision_ablation.optimizers: {name!r} has no cell "
                                 f"{cell_name(ablation.task, name, ablation.setting)} in "
                                 "sweep.cells (its tuned values come from the sweep)")

    def teacher_candidates(self, task: str) -> list[str]:
        """The optimizers the compress stage picks ``task``'s teacher from: those with a cell
        in ``compress.setting`` (the sweep's order)."""
        names = self.compress.optimizers or self.sweep.optimizers
        return [name for name in self.sweep.optimizers
                if name in names and self.cell(task, name, self.compress.setting) is not None]

    def _check_compress(self) -> None:
        compress = self.compress
        outside = [task for task in compress.tasks if task not in self.sweep.tasks]
        if outside:
            raise ValueError(f"compress.tasks.{outside[0]} is not trained (the teacher is "
                             "retrained from the sweep's runs); allowed: the keys of "
                             f"workloads, {', '.join(self.sweep.tasks)}")
        no_adamw = [task for task in compress.tasks
                    if self.cell(task, "adamw", compress.setting) is None]
        if no_adamw:
            raise ValueError(f"compress needs the AdamW runs: add the cell "
                             f"{cell_name(no_adamw[0], 'adamw', compress.setting)} to sweep.cells")
        unknown = [name for name in compress.optimizers or [] if name not in self.sweep.optimizers]
        if unknown:
            raise ValueError(f"compress.optimizers.{unknown[0]} is not in sweep.optimizers")
        layers = self.model.tiny.num_hidden_layers if self.model.tiny else None
        too_deep = [k for k in compress.distill.layers if layers is not None and k >= layers]
        if too_deep:
            raise ValueError(f"compress.distill.layers={too_deep[0]}: a student must have fewer "
                             f"layers than the model's {layers}")

    def _check_workloads(self) -> None:
        for task in self.prepared_tasks:
            workload, where = self.workload(task), f"workloads.{task}"
            language_model = get_task(task).kind == "language_modeling"
            if (workload.gpt is not None) != language_model and task in self.workloads:
                raise ValueError(f"{where}.gpt: a model trained from scratch is set for the "
                                 "language-modeling tasks, and only for them")
            unknown = [key for key in workload.train if key not in TrainConfig.model_fields]
            if unknown:
                raise ValueError(f"{where}.train.{unknown[0]}: not a train key; allowed: "
                                 f"{', '.join(TrainConfig.model_fields)}")
            try:
                self.train_for(task)
            except ValidationError as error:
                first = error.errors()[0]
                raise ValueError(f"{where}.train.{'.'.join(map(str, first['loc']))}: "
                                 f"{first['msg']} (got {first.get('input')!r})") from None

    def _check_tuning(self) -> None:
        tuning = self.tuning
        seen = [cell.name for cell in self.cells if tuning.seed in cell.seeds]
        if tuning.seed in self.sweep.seeds or seen:
            where = "sweep.seeds" if tuning.seed in self.sweep.seeds else f"sweep.cells.{seen[0]}"
            raise ValueError(f"tuning.seed={tuning.seed} is also in {where}; tuning must "
                             "not see the evaluation seeds")
        for name in self.sweep.optimizers:
            if not tuning.spaces.get(name):
                raise ValueError(f"tuning.spaces.{name} is missing; every optimizer in "
                                 "sweep.optimizers is tuned")
        spaces = [(f"tuning.spaces.{name}", name, space) for name, space in tuning.spaces.items()]
        spaces += [(f"workloads.{task}.spaces.{name}", name, space)
                   for task, workload in self.workloads.items()
                   for name, space in workload.spaces.items()]
        for where, name, space in spaces:
            if name not in self.optimizers:
                raise ValueError(f"{where}: no optimizers.{name} section")
            fixed = [key for key in space if key in self.optimizers[name]]
            if fixed:
                raise ValueError(f"{where}.{fixed[0]} is also set in optimizers.{name}; a "
                                 "hyperparameter is searched or fixed")
            points = math.prod(len(grid_values(grid)) for grid in space.values())
            if points != tuning.trials:
                raise ValueError(f"{where} has {points} points; every optimizer gets "
                                 f"tuning.trials={tuning.trials}")
            for key, grid in space.items():
                for value in grid_values(grid):
                    _check_optimizer(name, {**self.optimizers[name], key: value}, where=where)


# Keys of the adaptive_adam section that the pipeline turns into controller steps (as fractions
# of train.max_steps, so that one section serves every profile), and the step keys they set.
_RATIO_KEYS = ("warmup_ratio", "decay_start_ratio")
_STEP_KEYS = ("warmup_steps", "decay_start", "decay_steps")
# The controller's smallest improvement in standard errors of the task's selection score, which
# the pipeline turns into AdaptiveLR's min_delta on the metric's own scale
# (adaopt.protocol.controller.selection_standard_error): one value means the same on every task.
MIN_DELTA_SE = "min_delta_se"


def grid_values(grid: Grid) -> list[Any]:
    """The values a grid spans, in order."""
    return grid.values() if isinstance(grid, LogGrid) else list(grid)


def _check_optimizer(name: str, section: dict[str, Any], where: str | None = None) -> None:
    """Run the registry's own checks on a section, so bad hyperparameters fail before training.

    Nothing is built: building an optimizer makes torch import its compiler (seconds).
    """
    where = where or f"optimizers.{name}"
    if name not in REGISTRY and CLASS_KEY not in section:
        raise ValueError(f"{where}: unknown optimizer; allowed: {', '.join(REGISTRY)}, or any "
                         f"name with `{CLASS_KEY}: MODULE.CLASS`")
    for key in _STEP_KEYS:
        if key in section:
            raise ValueError(f"{where}: {key} is derived from max_steps; "
                             f"set {', '.join(_RATIO_KEYS)} instead")
    for key in _RATIO_KEYS:
        if key not in section:
            continue
        value = section[key]
        if name != "adaptive_adam":
            raise ValueError(f"{where}: {key} applies to adaptive_adam only; "
                             "the other optimizers take their schedule from settings")
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ValueError(f"{where}: {key}={value!r} is invalid: must be in [0, 1]")
    if MIN_DELTA_SE in section:
        value = section[MIN_DELTA_SE]
        if name != "adaptive_adam":
            raise ValueError(f"{where}: {MIN_DELTA_SE} applies to adaptive_adam only")
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"{where}: {MIN_DELTA_SE}={value!r} is invalid: must be a number "
                             ">= 0 (standard errors of the selection score)")
        if "min_delta" in section:
            raise ValueError(f"{where}: set {MIN_DELTA_SE} (in standard errors of the selection "
                             "score) or min_delta (on the metric's scale), not both")
    try:
        resolve_hparams(name, optimizer_hparams(section))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: {error}") from None


def optimizer_hparams(section: dict[str, Any]) -> dict[str, Any]:
    """The hyperparameters ``build_optimizer`` takes, without the pipeline's own keys."""
    return {key: value for key, value in section.items()
            if key not in (*_RATIO_KEYS, MIN_DELTA_SE)}


def _one_line(error: ValidationError, source: str) -> str:
    first = error.errors()[0]
    location = ".".join(map(str, first["loc"]))
    where = f"{location}: " if location else ""
    message = first["msg"].removeprefix("Value error, ")
    value = first.get("input")
    shown = "" if isinstance(value, dict) else f" (got {value!r})"
    more = f" [+{error.error_count() - 1} more]" if error.error_count() > 1 else ""
    return f"{source}: {where}{message}{shown}{more}"


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    """Validate an already loaded mapping; raise ``ConfigError`` with a one-line message."""
    if not isinstance(raw, dict):
        kind = type(raw).__name__
        raise ConfigError(f"{source}: expected a mapping at the top level, got {kind}")
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_one_line(error, source)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``params.yaml`` (or a profile file)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {str(error).splitlines()[0]}") from None
    return parse_params(raw, str(path))


__all__ = [
    "MIN_DELTA_SE",
    "SETTINGS",
    "Cell",
    "CellConfig",
    "CompressConfig",
    "ConfigError",
    "DataConfig",
    "DistillConfig",
    "EvaluateConfig",
    "GPTConfig",
    "Grid",
    "LMDataConfig",
    "LatencyConfig",
    "LogGrid",
    "ModelConfig",
    "Params",
    "PrecisionAblationConfig",
    "SettingConfig",
    "SweepConfig",
    "TrainConfig",
    "TuningConfig",
    "WorkloadConfig",
    "cell_name",
    "grid_values",
    "load_params",
    "optimizer_hparams",
    "parse_params",
]
