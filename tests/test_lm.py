"""The language-modeling workload: contiguous corpus splits, vocabularies fit on training text
only, the unigram baseline, and a from-scratch decoder that learns and tells optimizers apart."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from datasets import load_from_disk

from adaopt.config import LMDataConfig, Params, load_params
from adaopt.data import prepare_task
from adaopt.data.lm import (
    VOCABULARY_FILE,
    Vocabulary,
    build_corpus_splits,
    cut_corpus,
    fit_vocabulary,
    unigram_loss,
)
from adaopt.data.prepare import check_targets
from adaopt.experiment import Workload
from adaopt.protocol.splits import DEV, SELECTION, TRAIN

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "fixtures" / "mirror" / "text" / "tinyshakespeare.txt"
SMOKE = load_params(ROOT / "profiles" / "smoke.yaml")


def test_the_corpus_is_cut_into_contiguous_disjoint_tails() -> None:
    text = CORPUS.read_text()
    cut = cut_corpus(text, 1000, 2000)
    assert cut.train + cut.selection + cut.dev == text
    assert (len(cut.selection), len(cut.dev)) == (1000, 2000)
    assert text.index(cut.selection, len(cut.train)) == len(cut.train)
    with pytest.raises(ValueError, match="must be at most half of it"):
        cut_corpus(text, len(text) // 2, 1)


def _decode(vocabulary: Vocabulary, blocks: list[list[int]]) -> str:
    assert vocabulary.chars is not None
    return "".join(vocabulary.chars[i] for block in blocks for i in block)


def test_prepared_blocks_hold_the_train_and_held_out_text_and_nothing_else(tmp_path: Path
                                                                           ) -> None:
    """Decoded back, every split is a stretch of its own part of the corpus, in order."""
    config = SMOKE.data.lm
    prepare_task("lm_pretrain", CORPUS.parents[1], tmp_path, None, max_train_samples=None,
                 max_eval_samples=None, selection_samples=1, max_length=8, seed=0, lm=config)
    splits = load_from_disk(str(tmp_path / "lm_pretrain"))
    vocabulary = Vocabulary.load(tmp_path / "lm_pretrain")
    cut = cut_corpus(CORPUS.read_text(), config.selection_chars, config.eval_chars)
    for name, part in ((TRAIN, cut.train), (SELECTION, cut.selection), (DEV, cut.dev)):
        decoded = _decode(vocabulary, splits[name]["input_ids"])
        assert part.startswith(decoded) and len(part) - len(decoded) < config.context, name
        assert splits[name]["labels"] == splits[name]["input_ids"]  # the model shifts them
    assert (tmp_path / "lm_pretrain" / VOCABULARY_FILE).is_file()


def test_characters_the_training_text_lacks_share_one_unknown_id() -> None:
    vocabulary = fit_vocabulary("abcab", LMDataConfig(tokenizer="char"))
    assert vocabulary.size == 4
    assert vocabulary.encode("cabz?").tolist() == [2, 0, 1, 3, 3]


def test_bpe_is_fit_on_the_training_text_only() -> None:
    """A word that only the held-out tail repeats never becomes a token."""
    train = "the king and the queen walk to the castle.\n" * 200
    held_out = "zyzzyva zyzzyva zyzzyva.\n" * 200
    config = LMDataConfig(tokenizer="bpe", bpe_vocab_size=300, selection_chars=len(held_out) // 2,
                          eval_chars=len(held_out) - len(held_out) // 2, context=8)
    corpus = build_corpus_splits(train + held_out, config)
    splits, tokens = corpus.splits, corpus.vocabulary._tokenizer.get_vocab()
    assert any("king" in token for token in tokens)
    assert not any("zyzz" in token for token in tokens)
    everything = fit_vocabulary(train + held_out, config)._tokenizer.get_vocab()
    assert any("zyzz" in token for token in everything)  # the check above can fail
    assert len(splits[DEV]) > 0


def test_unigram_baseline_is_the_entropy_of_the_token_frequencies() -> None:
    train = np.array([[0, 1, 0, 1], [1, 0, 1, 0]])
    dev = np.array([[0, 0, 1, 1]])
    assert unigram_loss(train, dev, 2) == pytest.approx(math.log(2))  # smoothed counts stay 5:5


def test_a_loss_target_must_lie_below_the_baseline() -> None:
    report = {"lm_pretrain": {"baseline": {"rule": "unigram", "value": 3.3}}}
    check_targets(report, {"lm_pretrain": 2.5})
    with pytest.raises(ValueError, match="is not below the task's trivial baseline"):
        check_targets(report, {"lm_pretrain": 3.5})


def _workload(tmp_path: Path, text: str, params: Params) -> Workload:
    raw = tmp_path / "raw"
    (raw / "text").mkdir(parents=True)
    (raw / "text" / "tinyshakespeare.txt").write_text(text)
    prepare_task("lm_pretrain", raw, tmp_path / "prepared", None, max_train_samples=None,
                 max_eval_samples=None, selection_samples=1, max_length=8, seed=0,
                 lm=params.data.lm)
    return Workload(params, "lm_pretrain", tmp_path / "prepared")


def _held_out_loss(work: Workload, optimizer: str, hparams: dict, steps: int) -> float:
    result, _ = work.train_run(optimizer, hparams, "traditional", seed=0, max_steps=steps,
                               checkpoint=None, progress=False)
    assert result.status == "ok"
    return result.last["loss"]


def test_a_tiny_decoder_learns_a_repeated_text(tmp_path: Path) -> None:
    """A one-layer, 16-wide model falls below 0.5 nats per character in 40 steps (from about
    ln 9 = 2.2 at initialization: 8 characters and the unknown id): the data, model, loss and
    loop fit together."""
    work = _workload(tmp_path, "to be or not to be. " * 300, SMOKE)
    assert _held_out_loss(work, "adamw", {"lr": 1e-2}, 40) < 0.5


def test_adamw_beats_sgd_after_the_same_steps(tmp_path: Path) -> None:
    """Same seed (initialization and batches), 30 steps on the fixture corpus: AdamW at a usual
    rate ends lower than SGD at a sane one; swapped or unapplied optimizers would fail this."""
    work = _workload(tmp_path, CORPUS.read_text(), SMOKE)
    sgd = _held_out_loss(work, "sgd", {"lr": 0.1}, 30)
    adamw = _held_out_loss(work, "adamw", {"lr": 1e-2}, 30)
    assert adamw < sgd - 0.2, (adamw, sgd)
