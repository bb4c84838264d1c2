"""Where the packaged ``evaluate`` modules are, and how to load them offline.

``evaluate.load(GLUE_METRIC_PATH, "mrpc")`` and ``evaluate.load(SQUAD_METRIC_PATH)`` need no
network: a local script is copied into ``HF_MODULES_CACHE`` and imported from there.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evaluate import EvaluationModule

_SCRIPTS = Path(__file__).resolve().parent / "evaluate_scripts"

#: ``evaluate`` GLUE metric (config name = task), computed by :func:`glue_metrics`.
GLUE_METRIC_PATH = str(_SCRIPTS / "glue.py")
#: ``evaluate`` SQuAD v1.1 metric (hub input format), computed by :func:`squad_metrics`.
SQUAD_METRIC_PATH = str(_SCRIPTS / "squad.py")


def load_metric(path: str, config_name: str | None = None) -> EvaluationModule:
    """``evaluate.load`` a packaged module whose ``compute`` keeps its inputs in memory.

    In memory, ``compute`` writes no Arrow file under ``HF_HOME`` and takes no file lock, so
    runs sharing a cache cannot collide. ``evaluate`` is imported here, not at the top, because
    importing it is slow (it pulls in ``transformers.pipelines``).
    """
    import evaluate

    return evaluate.load(path, config_name, keep_in_memory=True)
