"""adaopt: adaptive optimizers for fine-tuning language models, measured honestly.

Subpackages: ``adaopt.optim`` (optimizer registry, LAMB, the AdaptiveAdam learning-rate
controller) and ``adaopt.metrics`` (GLUE and SQuAD metrics).
"""

__version__ = "0.1.0"
