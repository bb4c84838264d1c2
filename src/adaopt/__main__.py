"""Command line for the pipeline's non-notebook stage: ``python -m adaopt fetch``.

Errors that a user can fix (a bad ``params.yaml`` value, a missing mirror file) print one line
and exit with status 2 before anything is written.
"""

from __future__ import annotations

import argparse
import sys

from adaopt.config import ConfigError, load_params
from adaopt.data import MIRROR_ENV, MirrorLayoutError, fetch_raw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adaopt")
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser(
        "fetch", help=f"fill the raw data folder from ${MIRROR_ENV} or the Hugging Face hub"
    )
    fetch.add_argument("--params", default="params.yaml")
    fetch.add_argument("--out", default="data/raw")
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params)
        for path in fetch_raw(params.data.tasks, args.out):
            print(path)
    except (ConfigError, MirrorLayoutError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
