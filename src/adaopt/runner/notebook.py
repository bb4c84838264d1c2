"""Run a stage's notebook with papermill, quietly: the log gets the lines the notebook meant
for it (its cells tagged ``summary``), not papermill's banner or the kernel's start-up warning.

The kernel runs on this machine and is reached over local TCP with a connection file only its
user can read; its start-up warning that TCP is unencrypted, printed once per stage, is hidden
by starting it at log level ERROR (its errors still show).

The executed notebook is kept without its progress-bar widgets: they render only in a live
Jupyter session (GitHub's viewer and a reopened JupyterLab show an empty frame or the bar's first
state), and the log already has the runs' progress in lines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SUMMARY_TAG = "summary"
WIDGET = "application/vnd.jupyter.widget-view+json"


def run_notebook(notebook: str | Path, output: str | Path, parameters: dict[str, Any]) -> list[str]:
    """Execute ``notebook`` into ``output`` (its folder made) with ``parameters``; the text the
    cells tagged ``summary`` printed, line by line."""
    import papermill

    Path(output).parent.mkdir(parents=True, exist_ok=True)
    executed = papermill.execute_notebook(
        str(notebook), str(output), parameters=parameters, progress_bar=False,
        extra_arguments=["--IPKernelApp.log_level=ERROR"])
    if without_widgets(executed):
        import nbformat

        nbformat.write(executed, str(output))
    return [line for cell in executed.cells if SUMMARY_TAG in cell.metadata.get("tags", [])
            for out in cell.get("outputs", []) if out.get("output_type") == "stream"
            for line in out["text"].splitlines()]


def without_widgets(notebook: Any) -> bool:
    """Drop every widget output (a tqdm bar in a kernel) and the widgets' saved state from an
    executed notebook; whether there was any."""
    dropped = notebook.metadata.pop("widgets", None) is not None
    for cell in notebook.cells:
        outputs = cell.get("outputs", [])
        kept = [out for out in outputs if WIDGET not in out.get("data", {})]
        if len(kept) != len(outputs):
            cell.outputs, dropped = kept, True
    return dropped


__all__ = ["SUMMARY_TAG", "run_notebook", "without_widgets"]
