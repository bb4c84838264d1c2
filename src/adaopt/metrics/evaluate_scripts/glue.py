"""GLUE as an ``evaluate`` metric, so that ``evaluate.load`` of it works offline.

Inputs follow the hub's ``glue`` metric (config name = task, ``predictions``/``references``),
except that STS-B scores are read as float64: the hub's float32 would round them and make the
scores differ from :func:`adaopt.metrics.glue_metrics`, which computes everything here.
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

from adaopt.metrics.glue import GLUE_TASKS, canonical_glue_task, glue_metrics

_CITATION = """\
@inproceedings{wang2019glue,
  title={GLUE: A Multi-Task Benchmark and Analysis Platform for Natural Language Understanding},
  author={Wang, Alex and Singh, Amanpreet and Michael, Julian and Hill, Felix and Levy, Omer
          and Bowman, Samuel R.},
  booktitle={ICLR},
  year={2019}
}
"""

_INPUTS = """
Args:
    predictions: class ids (already arg-maxed), or real-valued scores for stsb.
    references: gold labels.
Returns: the task's official metrics as fractions, keyed as the hub's ``glue`` keys them
    (accuracy, f1, matthews_correlation, pearson, spearmanr).
"""


class Glue(evaluate.Metric):
    """The hub's ``glue`` metric, computed by :func:`adaopt.metrics.glue_metrics`."""

    def _info(self) -> evaluate.MetricInfo:
        try:
            task = canonical_glue_task(self.config_name)
        except ValueError:
            raise ValueError(
                f"the GLUE metric's config name must be a GLUE task, got {self.config_name!r}; "
                f"known tasks: {', '.join(GLUE_TASKS)}"
            ) from None
        value = datasets.Value("float64" if task == "stsb" else "int64")
        return evaluate.MetricInfo(
            description="GLUE task metrics (adaopt's offline implementation).",
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features({"predictions": value, "references": value}),
            format="numpy",
        )

    def _compute(self, predictions: np.ndarray, references: np.ndarray) -> dict[str, float]:
        return glue_metrics(self.config_name, predictions, references)
