"""The layer that runs and reports stages: the command line (``python -m adaopt``, :mod:`.cli`),
the papermill runner (:mod:`.notebook`), the progress lines (:mod:`.logbar`), the closing line
(:mod:`.progress`), the plan (:mod:`.plan`), slices (:mod:`.slices`) and GPU claims
(:mod:`.devices`).

None of it computes a stage's outputs, so none of it is in any stage's ``deps`` (``dvc.yaml``):
editing it outdates no tune or train stage. The computing code never imports it; it asks for what
it needs through :mod:`adaopt.hooks`, which :mod:`.hooks` implements. The runner imports the
computing code freely (the subcommands run it).
"""
