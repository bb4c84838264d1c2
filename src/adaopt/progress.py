"""The closing line (:mod:`adaopt.runner.progress`) under the name the tune and train notebooks
import it by; a runner file, like the module it names."""

from adaopt.runner.progress import stage_line, train_found, tune_found

__all__ = ["stage_line", "train_found", "tune_found"]
