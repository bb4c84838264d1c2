"""The comparison policy, kept apart from the training loop (as AlgoPerf keeps workload,
tuning ruleset and scoring apart).

* :mod:`adaopt.protocol.splits` - the selection split: carved out of the training data, the
  only data that tuning, early stopping, checkpoint choice and AdaptiveAdam's adaptation read.
* :mod:`adaopt.protocol.settings` - what each comparison setting does to an optimizer
  (schedule, clipping, AdaptiveAdam's controller).
* :mod:`adaopt.protocol.tuning` - the tuning ruleset: grids, trials, the choice.

The training loop (:mod:`adaopt.training`) knows no optimizer, setting or split names.
"""
