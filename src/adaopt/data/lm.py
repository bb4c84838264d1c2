"""A language-modeling corpus cut into contiguous splits and blocks of tokens.

The text is cut by position, never shuffled (:func:`cut_corpus`): the training text first, then
the selection tail, then the dev tail, whose loss is the reported validation loss. Held-out
text is therefore never trained on, and the vocabulary is fit on the training text alone
(:func:`fit_vocabulary`): one token per character it contains, or a byte-level BPE from the
``tokenizers`` library. Examples are non-overlapping blocks of ``context`` tokens; the model
predicts every token of a block from the ones before it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from datasets import Dataset, DatasetDict, Features, List, Value

from adaopt.config import LMDataConfig
from adaopt.protocol.splits import DEV, SELECTION, TRAIN

#: The vocabulary's file inside a prepared language-modeling task (its size sizes the model).
VOCABULARY_FILE = "vocabulary.json"


@dataclass(frozen=True)
class CorpusSplits:
    """The corpus cut at two positions: ``train + selection + dev == text``."""

    train: str
    selection: str
    dev: str


def cut_corpus(text: str, selection_chars: int, eval_chars: int) -> CorpusSplits:
    """The last ``eval_chars`` characters are dev, the ``selection_chars`` before them the
    selection split, everything before that the training text.

    Raises ValueError (one line) when the tails would leave less training text than they hold.
    """
    held_out = selection_chars + eval_chars
    if len(text) < 2 * held_out:
        raise ValueError(
            f"the corpus has {len(text)} characters; data.lm.selection_chars + eval_chars = "
            f"{held_out} must be at most half of it"
        )
    cut = len(text) - held_out
    return CorpusSplits(text[:cut], text[cut:cut + selection_chars], text[cut + selection_chars:])


class Vocabulary:
    """Text to token ids: a character table or a fitted byte-level BPE, saved as JSON."""

    def __init__(self, kind: str, chars: list[str] | None = None, bpe: str | None = None
                 ) -> None:
        self.kind, self.chars, self.bpe = kind, chars, bpe
        if kind == "char":
            assert chars is not None
            self._ids = {char: i for i, char in enumerate(chars)}
        else:
            from tokenizers import Tokenizer

            self._tokenizer = Tokenizer.from_str(bpe)

    @property
    def size(self) -> int:
        """Token ids in use; for characters, one more for any character the fit did not see."""
        if self.kind == "char":
            assert self.chars is not None
            return len(self.chars) + 1
        return self._tokenizer.get_vocab_size()

    def encode(self, text: str) -> np.ndarray:
        if self.kind == "char":
            unknown = len(self._ids)
            return np.fromiter((self._ids.get(c, unknown) for c in text), np.int64, len(text))
        return np.asarray(self._tokenizer.encode(text).ids, dtype=np.int64)

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "size": self.size, "chars": self.chars,
                           "bpe": self.bpe})

    @classmethod
    def load(cls, prepared_task_dir: str | Path) -> Vocabulary:
        saved = json.loads((Path(prepared_task_dir) / VOCABULARY_FILE).read_text())
        return cls(saved["kind"], saved["chars"], saved["bpe"])


def fit_vocabulary(train_text: str, config: LMDataConfig) -> Vocabulary:
    """Characters of the training text, or a byte-level BPE fit on it (``config.tokenizer``)."""
    if config.tokenizer == "char":
        return Vocabulary("char", chars=sorted(set(train_text)))
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=config.bpe_vocab_size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(train_text.splitlines(keepends=True), trainer)
    return Vocabulary("bpe", bpe=tokenizer.to_str())


def blocks(ids: np.ndarray, context: int) -> np.ndarray:
    """Non-overlapping blocks of ``context`` tokens (a last partial block is dropped)."""
    return ids[: len(ids) // context * context].reshape(-1, context)


def block_dataset(block_ids: np.ndarray) -> Dataset:
    """A split of blocks: the model's inputs are its labels (the model shifts them)."""
    rows = block_ids.tolist()
    features = Features({"input_ids": List(Value("int64")), "labels": List(Value("int64")),
                         "length": Value("int64")})
    return Dataset.from_dict(
        {"input_ids": rows, "labels": rows, "length": [block_ids.shape[1]] * len(rows)},
        features=features,
    )


def unigram_block_losses(train_blocks: np.ndarray, blocks: np.ndarray, vocab_size: int
                         ) -> np.ndarray:
    """Per block, the cross-entropy (nats per token) on the tokens a model predicts (all but the
    block's first) of the training tokens' frequencies, add-one smoothed: a model that learns no
    context. Their spread over blocks sizes the noise of a split's mean loss."""
    counts = np.bincount(train_blocks.ravel(), minlength=vocab_size) + 1.0
    log_probs = np.log(counts / counts.sum())
    return -log_probs[blocks[:, 1:]].mean(axis=1)


def unigram_loss(train_blocks: np.ndarray, dev_blocks: np.ndarray, vocab_size: int) -> float:
    """The unigram model's loss on dev (nats per token): :func:`unigram_block_losses`' mean
    (every block has the same length)."""
    return float(unigram_block_losses(train_blocks, dev_blocks, vocab_size).mean())


@dataclass(frozen=True)
class Corpus:
    """A prepared corpus: its splits of blocks, its vocabulary, the counts per split, and the
    unigram baseline on dev (:func:`unigram_loss`, nats per token)."""

    splits: DatasetDict
    vocabulary: Vocabulary
    counts: dict[str, dict[str, int]]
    baseline: float


def build_corpus_splits(text: str, config: LMDataConfig) -> Corpus:
    """The corpus as train / selection / dev blocks, with its vocabulary, counts and baseline."""
    cut = cut_corpus(text, config.selection_chars, config.eval_chars)
    vocabulary = fit_vocabulary(cut.train, config)
    parts = {TRAIN: cut.train, SELECTION: cut.selection, DEV: cut.dev}
    ids = {name: blocks(vocabulary.encode(part), config.context) for name, part in parts.items()}
    for name, split in ids.items():
        if len(split) == 0:
            raise ValueError(f"the {name} text holds fewer than data.lm.context="
                             f"{config.context} tokens; enlarge it or shorten the context")
    return Corpus(
        splits=DatasetDict({name: block_dataset(split) for name, split in ids.items()}),
        vocabulary=vocabulary,
        counts={name: {"characters": len(parts[name]), "blocks": len(ids[name]),
                       "tokens": int(ids[name].size)} for name in parts},
        baseline=unigram_loss(ids[TRAIN], ids[DEV], vocabulary.size),
    )
