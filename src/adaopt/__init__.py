"""adaopt: adaptive optimizers for fine-tuning language models, measured honestly.

Subpackages: ``adaopt.optim`` (optimizer registry, LAMB, the AdaptiveAdam learning-rate
controller), ``adaopt.metrics`` (GLUE and SQuAD metrics) and ``adaopt.runner`` (the layer that
runs and reports stages, which no stage depends on: docs/scaling.md).
"""

__version__ = "0.1.0"
