"""Command line for the pipeline: ``python -m adaopt fetch``, ``check``, ``report``, ``plan``...

Every stage starts with one of them, so that errors a user can fix (a bad ``params.yaml``
value, a missing or malformed data file) print one line and exit with status 2 before any
compute is spent or any output is touched.

``python -m adaopt train`` and ``python -m adaopt tune`` run a train or tune stage's runs, as
its notebook does; this is what a stage with ``train.nproc > 1`` starts under torchrun (and what
a user may start under torchrun by hand, e.g. across nodes), each process joining the group.

``python -m adaopt preregister`` writes the active profile's design hash into
``preregistration.yaml`` (:mod:`adaopt.preregistration`), to be committed before a run.

``python -m adaopt plan`` says what the active profile's tune and train stages will cost on this
machine before they run, and how much of it is left (:mod:`adaopt.runner.plan`); no stage runs it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from adaopt.config import ConfigError, Params, load_params
from adaopt.protocol.controller import controller_problems
from adaopt.tasks import get_task

# adaopt.data (datasets, pandas, transformers) is imported only where it is used: the check
# runs at the start of every training stage, where each second counts a hundred times over.


def _fetch(args: argparse.Namespace) -> None:
    from adaopt.data import fetch_raw

    for path in fetch_raw(load_params(args.params).prepared_tasks, args.out):
        print(path)


def _check_nproc(params: Params, source: str) -> None:
    """One process per GPU: on a CUDA machine ``train.nproc`` cannot exceed its GPUs."""
    nproc = max(params.train_for(task).nproc for task in params.sweep.tasks)
    if nproc == 1:
        return
    import torch

    if torch.cuda.is_available() and nproc > torch.cuda.device_count():
        raise ConfigError(f"{source}: train.nproc={nproc} but this machine has "
                          f"{torch.cuda.device_count()} GPUs (one process per GPU)")


def _check(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    _check_nproc(params, args.params)
    problems = controller_problems(params)
    if problems:
        raise ConfigError(f"{args.params}: {problems[0]}")
    fp16 = [where for where, precisions in (
        ("train.precision", [params.train_for(task).precision for task in params.sweep.tasks]),
        ("precision_ablation.precisions", params.precision_ablation.precisions),
    ) if "fp16" in precisions]
    if fp16:
        import torch  # only here: is there a GPU for fp16?

        from adaopt.precision import check_precision

        check_precision("fp16", "cuda" if torch.cuda.is_available() else "cpu",
                        where=f"{args.params}: {fp16[0]}")
    if args.raw is not None:
        from adaopt.data import read_release

        for task in params.prepared_tasks:
            spec = get_task(task)
            for path in (spec.train_path, spec.dev_path):
                if not (args.raw / path).is_file():
                    raise FileNotFoundError(f"{args.raw / path}: missing; run the fetch stage")
            read_release(spec, args.raw)


def _train(args: argparse.Namespace) -> None:
    from adaopt import distributed
    from adaopt.experiment import run_setting

    params = load_params(args.params)
    with distributed.joined(params.train_for(args.task).dist_timeout_s):
        run_setting(params, args.task, args.optimizer, args.setting, args.prepared, args.out,
                    args.choice, checkpoint_dir=args.checkpoint_dir, progress=args.progress)


def _tune(args: argparse.Namespace) -> None:
    from adaopt import distributed
    from adaopt.experiment import tune

    params = load_params(args.params)
    with distributed.joined(params.train_for(args.task).dist_timeout_s):
        tune(params, args.task, args.optimizer, args.setting, args.prepared, args.out,
             checkpoint_dir=args.checkpoint_dir, progress=args.progress)


def _report(args: argparse.Namespace) -> None:
    from adaopt import io
    from adaopt.report import report_text

    params = load_params(args.params)
    io.write_text(args.out, report_text(args.root, params))


def _preregister(args: argparse.Namespace) -> None:
    from adaopt.preregistration import load_preregistration, register_design

    if args.check:  # the evaluate stage's opening check: one line if the file is broken
        load_preregistration(args.preregistration)
        return
    print(register_design(load_params(args.params), args.preregistration))


def _notebook(args: argparse.Namespace) -> None:
    from adaopt.runner.notebook import run_notebook

    for line in run_notebook(args.notebook, args.output, dict(args.parameters or [])):
        print(line)


def _costs(params: Params, calibration: Path | None) -> dict[str, float] | None:
    """A cell's estimated seconds per task from ``calibration``, to deal the slices by."""
    if calibration is None:
        return None
    from adaopt.runner.plan import cell_seconds  # pandas; only where the slices are dealt by it

    return cell_seconds(params, calibration)


def _slice(args: argparse.Namespace) -> None:
    from adaopt.runner.slices import slice_stages

    params = load_params(args.params)
    costs = _costs(params, args.calibration)
    print("\n".join(slice_stages(params, args.of, args.index, base=args.base, costs=costs)))


def _gather(args: argparse.Namespace) -> None:
    from adaopt.runner.slices import gather, slice_stages, sweep_stages

    if len(args.revisions) != args.of:
        raise ValueError(f"--of {args.of} but {len(args.revisions)} revisions: name one per "
                         "slice, in the slices' order")
    params = load_params(args.params)
    costs = _costs(params, args.calibration)
    dealt = [(revision, slice_stages(params, args.of, args.base + k, base=args.base, costs=costs))
             for k, revision in enumerate(args.revisions)]
    gathered, stages = gather(Path("."), dealt), sweep_stages(params)
    missing = len(stages) - len(gathered)
    print(f"gathered {len(gathered)} of the {len(stages)} tune and train stages into dvc.lock"
          + (f"; {missing} are in none of the slices' locks" if missing else ""))


def _plan(args: argparse.Namespace) -> None:
    from adaopt.runner.plan import CALIBRATION, plan

    if args.gpu_tokens_per_s is not None and args.gpu_tokens_per_s <= 0:
        raise ValueError(f"--gpu-tokens-per-s={args.gpu_tokens_per_s:g}: must be a positive "
                         "number of training tokens per second")
    print(plan(load_params(args.params), args.params, args.prepared,
               args.calibration or CALIBRATION,
               force=args.calibrate, gpu_tokens_per_s=args.gpu_tokens_per_s))


def _stage_parser(commands: Any, name: str, help: str) -> argparse.ArgumentParser:
    """The options of a stage's notebook parameters, shared by ``train`` and ``tune``."""
    stage = commands.add_parser(name, help=help)
    stage.add_argument("--params", default="params.yaml")
    stage.add_argument("--task", required=True)
    stage.add_argument("--optimizer", required=True)
    stage.add_argument("--setting", required=True)
    stage.add_argument("--prepared", default="data/prepared")
    stage.add_argument("--out", required=True)
    stage.add_argument("--checkpoint-dir", default=None, help="resume an interrupted stage")
    stage.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    return stage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adaopt")
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser(
        "fetch", help="fill the raw data folder from $ADAOPT_DATA_MIRROR or the Hugging Face hub"
    )
    fetch.add_argument("--params", default="params.yaml")
    fetch.add_argument("--out", default="data/raw")
    fetch.set_defaults(run=_fetch)
    check = commands.add_parser("check", help="validate params.yaml (and the raw data files)")
    check.add_argument("--params", default="params.yaml")
    check.add_argument("--raw", type=Path, default=None, help="also read every raw data file")
    check.set_defaults(run=_check)
    train = _stage_parser(commands, "train", "train one (task, optimizer, setting), every seed")
    train.add_argument("--choice", required=True, help="the tune stage's choice.json")
    train.set_defaults(run=_train)
    _stage_parser(commands, "tune", "tune one (task, optimizer, setting)").set_defaults(run=_tune)
    report = commands.add_parser("report", help="write REPORT.md from the pipeline's outputs")
    report.add_argument("--params", default="params.yaml")
    report.add_argument("--root", type=Path, default=Path("."), help="the project's root")
    report.add_argument("--out", type=Path, default=Path("REPORT.md"))
    report.set_defaults(run=_report)
    register = commands.add_parser("preregister", help="write the design hash of --params "
                                   "into the pre-registration (then commit it, before the runs)")
    register.add_argument("--params", default="params.yaml")
    register.add_argument("--preregistration", type=Path, default=Path("preregistration.yaml"))
    register.add_argument("--check", action="store_true",
                          help="only validate the file (what the evaluate stage opens with)")
    register.set_defaults(run=_preregister)
    notebook = commands.add_parser("notebook", help="run a stage's notebook with papermill and "
                                   "print what its cells tagged `summary` printed")
    notebook.add_argument("notebook", type=Path)
    notebook.add_argument("output", type=Path, help="the executed notebook (its folder is made)")
    notebook.add_argument("-p", dest="parameters", nargs=2, action="append",
                          metavar=("NAME", "VALUE"), help="a notebook parameter (a string)")
    notebook.set_defaults(run=_notebook)
    slicing = commands.add_parser("slice", help="the tune and train stages of one machine's "
                                  "slice of the sweep, for `dvc repro` (docs/scaling.md)")
    slicing.add_argument("--params", default="params.yaml")
    slicing.add_argument("--of", type=int, required=True, help="how many slices")
    slicing.add_argument("--index", type=int, required=True, help="this slice, from --base")
    slicing.add_argument("--base", type=int, default=0, help="the first slice's index: 1 for "
                         "SLURM's --array=1-K ($SLURM_ARRAY_TASK_MIN)")
    slicing.add_argument("--calibration", type=Path, default=None,
                         help="a calibration `python -m adaopt plan` wrote, the same file on "
                         "every machine: deal the longest cells first (default: round-robin)")
    slicing.set_defaults(run=_slice)
    gather = commands.add_parser("gather", help="take from each slice's git revision the lock "
                                 "entries and outputs of the stages it was dealt, and nothing "
                                 "else (docs/scaling.md)")
    gather.add_argument("revisions", nargs="+", help="each slice's git revision (a branch or "
                        "commit), in the slices' order from --base")
    gather.add_argument("--params", default="params.yaml")
    gather.add_argument("--of", type=int, required=True, help="how many slices, as `slice` had")
    gather.add_argument("--base", type=int, default=0, help="the first slice's index, as "
                        "`slice` had")
    gather.add_argument("--calibration", type=Path, default=None,
                        help="the calibration `slice` dealt by, if any")
    gather.set_defaults(run=_gather)
    plan = commands.add_parser("plan", help="what the profile's tune and train stages will "
                               "cost on this machine, and what is left")
    plan.add_argument("--params", default="params.yaml")
    plan.add_argument("--prepared", default="data/prepared", help="what the calibration reads")
    plan.add_argument("--calibration", type=Path, default=None,
                      help="the measured rates, read if there and written when measured "
                      "(default: .dvc/tmp/plan_calibration.json)")
    plan.add_argument("--calibrate", action="store_true", help="measure the rates again")
    plan.add_argument("--gpu-tokens-per-s", type=float, default=None,
                      help="a GPU's training throughput: adds a GPU column")
    plan.set_defaults(run=_plan)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (ConfigError, FileNotFoundError, ValueError) as error:  # MirrorLayoutError included
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0

