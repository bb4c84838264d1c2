"""``python -m adaopt``: the runner's command line (:mod:`adaopt.runner.cli`), a runner file."""

import sys

from adaopt.runner.cli import main

sys.exit(main())
