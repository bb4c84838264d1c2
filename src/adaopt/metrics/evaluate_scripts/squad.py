"""SQuAD v1.1 as an ``evaluate`` metric, so that ``evaluate.load`` of it works offline.

Inputs follow the hub's ``squad`` metric; :func:`adaopt.metrics.squad_metrics` (a replica of
the official script) computes the scores, 0-100.
"""

from __future__ import annotations

from typing import Any

import datasets
import evaluate

from adaopt.metrics.squad import squad_metrics

_CITATION = """\
@inproceedings{rajpurkar2016squad,
  title={SQuAD: 100,000+ Questions for Machine Comprehension of Text},
  author={Rajpurkar, Pranav and Zhang, Jian and Lopyrev, Konstantin and Liang, Percy},
  booktitle={EMNLP},
  year={2016}
}
"""

_INPUTS = """
Args:
    predictions: [{"id": question id, "prediction_text": answer}, ...]
    references: [{"id": question id, "answers": {"text": [...], "answer_start": [...]}}, ...]
Returns: {"exact_match": ..., "f1": ...}, 0-100, averaged over the references.
"""


class Squad(evaluate.Metric):
    """The hub's ``squad`` metric, computed by :func:`adaopt.metrics.squad_metrics`."""

    def _info(self) -> evaluate.MetricInfo:
        if self.config_name != "default":
            raise ValueError(f"the SQuAD metric has no configs, got {self.config_name!r}")
        return evaluate.MetricInfo(
            description="SQuAD v1.1 exact match and F1 (adaopt's offline implementation).",
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features(
                {
                    "predictions": {
                        "id": datasets.Value("string"),
                        "prediction_text": datasets.Value("string"),
                    },
                    "references": {
                        "id": datasets.Value("string"),
                        "answers": {
                            "text": datasets.List(datasets.Value("string")),
                            "answer_start": datasets.List(datasets.Value("int32")),
                        },
                    },
                }
            ),
        )

    def _compute(
        self, predictions: list[dict[str, Any]], references: list[dict[str, Any]]
    ) -> dict[str, float]:
        # The official dataset layout, so that a repeated id counts once per occurrence.
        qas = [
            {"id": ref["id"], "answers": [{"text": text} for text in ref["answers"]["text"]]}
            for ref in references
        ]
        answers = {pred["id"]: pred["prediction_text"] for pred in predictions}
        return squad_metrics(answers, [{"paragraphs": [{"qas": qas}]}])
