"""A stage's executed notebook renders anywhere: no progress-bar widget is kept in it."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat

from adaopt.runner.notebook import WIDGET, run_notebook, without_widgets


def test_widget_outputs_and_their_state_are_dropped_and_the_rest_kept() -> None:
    notebook = nbformat.v4.new_notebook(metadata={"widgets": {"state": {}}})
    notebook.cells.append(nbformat.v4.new_code_cell("x", outputs=[
        nbformat.v4.new_output("display_data", data={WIDGET: {"model_id": "m"},
                                                     "text/plain": "0%|"}),
        nbformat.v4.new_output("stream", name="stdout", text="found: lr 1e-4\n")]))
    assert without_widgets(notebook)
    assert [out.output_type for out in notebook.cells[0].outputs] == ["stream"]
    assert "widgets" not in notebook.metadata
    assert not without_widgets(notebook)  # nothing left to drop


def test_an_executed_notebook_with_a_tqdm_bar_keeps_only_its_text(tmp_path: Path) -> None:
    source = nbformat.v4.new_notebook(metadata={"kernelspec": {
        "name": "python3", "display_name": "Python 3", "language": "python"}})
    source.cells.append(nbformat.v4.new_code_cell(
        "from tqdm.auto import tqdm\nfor _ in tqdm(range(3), desc='run'):\n    pass\n"
        "print('done')", metadata={"tags": ["summary"]}))
    notebook = tmp_path / "in.ipynb"
    nbformat.write(source, str(notebook))
    lines = run_notebook(notebook, tmp_path / "out.ipynb", {})
    assert lines == ["done"]
    text = (tmp_path / "out.ipynb").read_text()
    assert WIDGET not in text
    assert "widgets" not in json.loads(text)["metadata"]
