"""Compression for CPU deployment, measured as a Pareto front (the compress stage).

* :mod:`.methods`: dynamic int8 quantization, magnitude pruning (global unstructured, and
  structured over FFN neurons), knowledge distillation into a shallower student, and the short
  fine-tuning that recovery and distillation share;
* :mod:`.measure`: size on disk, CPU latency (median and interquartile range), Pareto fronts;
* :mod:`.stage`: one task's variants, scored and timed side by side, as a table and a figure.
"""
