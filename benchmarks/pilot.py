"""The real-data pilot that sizes the next reference run (issue #24).

Usage::

    python benchmarks/pilot.py pairs --task sst2 --steps 300 --every 20 [--seeds 0 1 2 3 4]
    python benchmarks/pilot.py curves --task rte --steps 150 --every 15 --lr 3e-5 --lr 1e-4
    python benchmarks/pilot.py summary

``pairs``: AdamW and AdaptiveAdam in the fair setting, each with the values its tune stage
chose in the committed reference run (``tuning/<task>/<optimizer>/fair/choice.json``), trained
with every seed for ``--steps`` steps, the selection split scored every ``--every`` steps, the
selected weights scored once on dev: the pipeline's own train stage (``run_setting``), written
in its layout under ``benchmarks/results/pilot/runs``. ``curves``: selection-split learning
curves (``benchmarks/learning_curves.py``) into ``benchmarks/results/learning_curves.csv``.
``summary``: ``benchmarks/results/pilot.md`` from those files: the controller's cuts, the
paired verdict, and per task the steps at which the best learning rate clears its trivial
baseline. Every part adds its measured wall time to ``benchmarks/results/pilot/timing.csv``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import yaml

from adaopt import io
from adaopt.config import SETTINGS, Params, cell_name, load_params, parse_params

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "pilot"
CURVES = ROOT / "benchmarks" / "results" / "learning_curves.csv"
PAIR = ("adamw", "adaptive_adam")
#: One thread: the pilot keeps one of the machine's two cores, and its timings stay steady
#: while the other core works (two processes of two threads each slow both down several times).
THREADS = 1
SETTING = "fair"


def pilot_params(params: Params, task: str, steps: int, every: int, seeds: list[int]) -> Params:
    """``params`` with the pilot's seeds and ``task``'s budget; checked like any profile."""
    raw = params.model_dump(mode="json")
    raw["sweep"].update(optimizers=list(PAIR), seeds=seeds, cells={
        cell_name(name, optimizer, setting): {"task": name, "optimizer": optimizer,
                                              "setting": setting}
        for name in raw["workloads"] for optimizer in PAIR for setting in SETTINGS})
    raw["train"]["threads"] = THREADS
    raw["workloads"][task]["train"] = {**raw["workloads"][task]["train"], "max_steps": steps,
                                       "eval_every": every}
    return parse_params(raw, "pilot")


def pairs(args: argparse.Namespace) -> None:
    from adaopt.experiment import run_setting
    from adaopt.protocol.controller import controller_problems

    params = pilot_params(load_params(args.params), args.task, args.steps, args.every, args.seeds)
    problems = [p for p in controller_problems(params) if "tuning" not in p]
    if problems:
        raise SystemExit(f"error: {problems[0]}")
    io.write_text(OUT / "params" / f"{args.task}.yaml",
                  yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False))
    for optimizer in args.optimizers:
        started = time.perf_counter()
        choice = ROOT / "tuning" / args.task / optimizer / SETTING / "choice.json"
        run_setting(params, args.task, optimizer, SETTING, args.prepared,
                    OUT / "runs" / args.task / optimizer / SETTING, choice, progress=False)
        record(f"pairs {args.task} {optimizer}", len(args.seeds), args.steps,
               time.perf_counter() - started)


def curves(args: argparse.Namespace) -> None:
    from learning_curves import curve, replace_task_rows  # benchmarks/ is this script's folder

    raw = load_params(args.params).model_dump(mode="json")
    raw["train"]["threads"] = THREADS
    params = parse_params(raw, "pilot")
    started = time.perf_counter()
    rows = pd.concat([curve(params, args.prepared, args.task, args.steps, args.every, lr)
                      for lr in args.lr], ignore_index=True)
    replace_task_rows(rows, CURVES)
    record(f"curves {args.task}", len(args.lr), args.steps, time.perf_counter() - started)


def record(part: str, runs: int, steps: int, seconds: float) -> None:
    """Append one part's measured wall time to ``timing.csv``."""
    path = OUT / "timing.csv"
    table = pd.DataFrame([{"part": part, "runs": runs, "steps": steps,
                           "seconds": round(seconds, 1)}])
    if path.is_file():  # a part run again replaces its row
        earlier = pd.read_csv(path)
        table = pd.concat([earlier[earlier.part != part], table], ignore_index=True)
    io.write_with(path, lambda p: table.to_csv(p, index=False))
    print(f"{part}: {runs} runs of {steps} steps in {seconds:.0f} s", flush=True)


def summary(args: argparse.Namespace) -> None:
    io.write_text(ROOT / "benchmarks" / "results" / "pilot.md",
                  pilot_markdown(load_params(args.params), args.prepared))


def _runs(folder: Path | None = None) -> pd.DataFrame:
    """Every pilot run found under ``folder / "runs"`` (default: this pilot's), in the
    summary's row format."""
    from adaopt.summary import load_runs

    runs_dir = (folder or OUT) / "runs"
    cells = [(task.name, optimizer, SETTING, int(seed.name.removeprefix("seed")))
             for task in sorted(runs_dir.iterdir()) for optimizer in PAIR
             for seed in sorted((task / optimizer / SETTING).glob("seed*"))]
    return load_runs(runs_dir, cells)


def _cuts_table(runs: pd.DataFrame) -> str:
    controlled = runs[runs.optimizer == "adaptive_adam"]
    rows = [{"task": task, "runs": len(group), "runs that cut": int((group.cuts > 0).sum()),
             "cuts per run": " ".join(str(int(n)) for n in group.cuts),
             "cut steps (per run)": "; ".join(steps or "—" for steps in group.cut_steps.fillna(""))}
            for task, group in controlled.groupby("task", sort=False)]
    return pd.DataFrame(rows).to_markdown(index=False) + "\n"


def _ran_with(task: str, prepared: str) -> float:
    """The controller's ``min_delta`` on the metric's scale that the pilot's runs of ``task``
    used: given as such, or in standard errors of the selection score (``min_delta_se``)."""
    section = yaml.safe_load((OUT / "params" / f"{task}.yaml").read_text())[
        "optimizers"]["adaptive_adam"]
    if "min_delta" in section:
        return float(section["min_delta"])
    return float(section["min_delta_se"]) * _selection_se(task, prepared)


def _selection_se(task: str, prepared: str) -> float:
    """The selection score's standard error of ``task`` (the unit of ``min_delta_se``)."""
    from datasets import load_from_disk

    from adaopt.data.lm import Vocabulary
    from adaopt.protocol.settings import selection_standard_error
    from adaopt.tasks import get_task

    spec = get_task(task)
    folder = Path(prepared) / task
    vocab = Vocabulary.load(folder).size if spec.kind == "language_modeling" else None
    return selection_standard_error(spec, load_from_disk(str(folder)), vocab)


def _noise_table(runs: pd.DataFrame, prepared: str) -> str:
    """AdamW's step-to-step change of its selection score over the second half of each run:
    the jitter a plateau shows, which the controller's ``min_delta`` should sit above."""
    from adaopt.summary import load_logs

    adamw = runs[runs.optimizer == "adamw"]
    cells = [tuple(cell) for cell in adamw[["task", "optimizer", "setting", "seed"]]
             .itertuples(index=False)]
    evals = load_logs(OUT / "runs", "eval", cells)
    rows = []
    for task, group in evals.groupby("task", sort=False):
        metric = adamw[adamw.task == task].metric.iloc[0]
        changes = []
        for _, run in group.groupby("seed"):
            late = run[run.step > run.step.max() / 2][metric].to_numpy()
            changes.extend(abs(late[1:] - late[:-1]))
        series, min_delta = pd.Series(changes), _ran_with(task, prepared)
        rows.append({"task": task, "metric": metric, "evaluations compared": len(series),
                     "median |change|": f"{series.median():.4f}",
                     "90th percentile": f"{series.quantile(0.9):.4f}",
                     "min_delta the runs used": f"{min_delta:g}",
                     "share below it": f"{(series < min_delta).mean():.0%}"})
    return pd.DataFrame(rows).to_markdown(index=False) + "\n"


def _pilot_registration(tasks: list[str]):  # adaopt's imports stay lazy in this script
    """The committed pre-registration, with the pilot's one comparison (AdaptiveAdam against
    AdamW, fair) as the family over the pilot's tasks."""
    from adaopt.preregistration import load_preregistration

    registration = load_preregistration(ROOT / "preregistration.yaml")
    primary = {"tasks": tasks, "comparisons": [{"setting": SETTING, "reference": "adamw"}]}
    return registration.model_validate({**registration.model_dump(), "references": ["adamw"],
                                        "primary": primary})


def _paired(runs: pd.DataFrame, runs_dir: Path, prepared: str) -> pd.DataFrame:
    """AdaptiveAdam against AdamW per task, by the registered test and verdict rule."""
    from adaopt.summary import paired_comparisons

    registration = _pilot_registration(list(dict.fromkeys(runs.task)))
    paired = paired_comparisons(runs, runs_dir, prepared, registration, {})
    return paired[paired.optimizer == "adaptive_adam"]


def _verdict_table(paired: pd.DataFrame) -> str:
    from adaopt.summary import format_interval

    shown = pd.DataFrame({
        "task": paired.task, "pairs": paired.pairs,
        "per-seed differences": paired.per_seed,
        "AdaptiveAdam - AdamW": paired.difference.map(lambda v: f"{v:+.4f}"),
        "95% interval": [format_interval(r.low, r.high, signed=True)
                         for r in paired.itertuples(index=False)],
        "p (Holm)": paired.p_adjusted.map(lambda v: f"{v:.2g}"),
        "margin": paired.margin.map(lambda v: f"±{v:g}"),
        "equivalence reachable within": paired.equivalence_bound.map(lambda v: f"±{v:.4f}"),
        "smallest detectable": paired.detectable.map(lambda v: f"{v:.4f}"),
        "verdict": paired.verdict})
    return shown.to_markdown(index=False) + "\n"


def _clearing_table() -> str:
    """Per task, the first step at which a learning rate's selection score clears every
    constant prediction on the selection split by two standard errors of that split."""
    from adaopt.report import best_constant, clear_margin
    from adaopt.tasks import get_task

    curves = pd.read_csv(CURVES)
    rows = []
    for task, curve in curves.groupby("task", sort=False):
        greater = get_task(task).greater_is_better
        first = curve.iloc[0]
        bar = best_constant(task, float(first.baseline))  # the split's better class, if two
        margin = clear_margin(first.metric, bar, int(first.examples))
        clears = {}
        for lr, run in curve.groupby("lr"):
            above = run[run.value > bar + margin] if greater else run[run.value < bar - margin]
            clears[lr] = int(above.step.iloc[0]) if len(above) else None
        best_lr = max(curve.lr.unique(), key=lambda lr: (
            curve[curve.lr == lr].value.max() if greater else -curve[curve.lr == lr].value.min()))
        reached = [step for step in clears.values() if step is not None]
        rows.append({
            "task": task, "metric": first.metric,
            "bar (+ two standard errors)": f"{bar:.3f} (+ {margin:.3f})",
            "learning rates": ", ".join(f"{lr:g}" for lr in sorted(clears)),
            "steps measured": int(curve.step.max()),
            "best lr": f"{best_lr:g}",
            "best score": f"{curve[curve.lr == best_lr].value.max():.3f}",
            "first step clearing the baseline": min(reached) if reached else "not within the curve",
            "s/step": f"{curve.s_per_step.mean():.2f}"})
    return pd.DataFrame(rows).to_markdown(index=False) + "\n"


def _edges_table(params: Params) -> tuple[str, int, int]:
    """The committed reference run's tuning trials (selection split) re-chosen with the
    current tie rule: per optimizer, how many choices fall on each edge of the grid."""
    from adaopt.protocol.tuning import Trial, choose
    from adaopt.tasks import get_task

    rows = []
    for path in sorted((ROOT / "tuning").glob("*/*/*/trials.csv")):
        task, optimizer = path.parts[-4:-2]
        if task not in params.sweep.tasks or optimizer not in params.sweep.optimizers:
            continue
        space = json.loads((path.parent / "choice.json").read_text())["space"]  # as tuned
        trials = [Trial(int(r.trial), {name: r[name] for name in space}, r.status,
                        float(r.score), None, 0) for _, r in pd.read_csv(path).iterrows()]
        edges = choose(trials, space, get_task(task).greater_is_better).edges
        rows.append({"optimizer": optimizer, "family": "language model" if task == "lm_pretrain"
                     else "fine-tuning", "edge": edges.get("lr", "inside")})
    table = pd.DataFrame(rows)
    counts = table.groupby(["optimizer", "family"]).edge.value_counts().unstack(fill_value=0)
    edged = int((table.edge != "inside").sum())
    return counts.to_markdown() + "\n", edged, len(table)


def pilot_markdown(params: Params, prepared: str) -> str:
    """``benchmarks/results/pilot.md``: what the pilot measured, from its files."""
    runs = _runs()
    timing = pd.read_csv(OUT / "timing.csv")
    machine = "; ".join(f"{r['machine.device']} ({r['machine.cpu_capability']}), torch "
                        f"{r['machine.torch']}, {r['machine.threads']} thread(s)"
                        for r in runs.filter(like="machine.").drop_duplicates()
                        .to_dict(orient="records"))
    steps = {task: int(group.steps.max()) for task, group in runs.groupby("task", sort=False)}
    edges = _edges_table(params)
    return (
        "# Pilot: does the controller act, and what would a reference run need? (issue #24)\n\n"
        "Generated by `python benchmarks/pilot.py summary` from `benchmarks/results/pilot/` and "
        "`benchmarks/results/learning_curves.csv`; the commands are `benchmarks/pilot.sh`. Real "
        "data (the cpu profile's preparation of `ADAOPT_DATA_MIRROR`), not the reference "
        f"results. Machine: {machine}.\n\n"
        "## AdamW against AdaptiveAdam, fair setting\n\n"
        "Each with the learning rate its tune stage chose in the committed reference run "
        f"(`tuning/<task>/<optimizer>/fair/choice.json`), {runs.seed.nunique()} seeds, "
        + ", ".join(f"{task} {n} steps" for task, n in steps.items())
        + " (selection split scored at every evaluation, dev once with the selected weights); "
        "parameters in `benchmarks/results/pilot/params/`.\n\n"
        "How often the controller cut:\n\n"
        f"{_cuts_table(runs)}\n"
        "The paired comparison (by the registered test, `preregistration.yaml`; Holm over the "
        "pilot's tasks):\n\n"
        f"{_verdict_table(_paired(runs, OUT / 'runs', prepared))}\n"
        "The selection split's jitter on a plateau (AdamW, second half of each run), beside the "
        "controller's `min_delta`:\n\n"
        f"{_noise_table(runs, prepared)}\n"
        "## Where each task leaves its trivial baseline (selection split)\n\n"
        "AdamW, fair setting, one seed (0), the cpu profile's batch and token limits; a score "
        "clears the baseline when it beats the bar by two standard errors of the split. The bar "
        "is every constant prediction on the selection split (on a two-class task the better "
        "class); for SQuAD, whose rule baseline needs the questions the prepared selection "
        "split does not keep, the rule's dev value from `data/prepare_report.json`.\n\n"
        f"{_clearing_table()}\n"
        "## Where the tuning choices fall\n\n"
        f"The committed reference run's tuning trials, re-chosen with the tie rule of #24 (ties "
        f"to the grid's centre): {edges[1]} of {edges[2]} choices lie on a grid edge (the "
        "committed choices, ties to the first point, had more). The grids stay as the "
        "committed run used them, so that its report describes it; a family whose choices "
        "pile on one edge here is where the next reference run's grid should move.\n\n"
        f"{edges[0]}\n"
        "## Cost\n\n"
        f"Measured wall time of each part (one thread, beside other work on the 2-core "
        f"machine); {timing.seconds.sum() / 60:.0f} minutes in all.\n\n"
        + timing.to_markdown(index=False) + "\n"
    )


def _controller_table(runs: pd.DataFrame, prepared: str) -> str:
    """Per task, the controller's smallest improvement: in standard errors of the selection
    score, and on the metric's own scale."""
    rows = []
    for task, group in runs[runs.optimizer == "adaptive_adam"].groupby("task", sort=False):
        se = _selection_se(task, prepared)
        rows.append({"task": task, "metric": group.metric.iloc[0],
                     "selection examples": int(group.selection_examples.iloc[0]),
                     "selection standard error": f"{se:.4f}",
                     "min_delta_se": f"{_ran_with(task, prepared) / se:g}",
                     "min_delta": f"{_ran_with(task, prepared):.4f}"})
    return pd.DataFrame(rows).to_markdown(index=False) + "\n"


def _selected_before_cut(runs: pd.DataFrame) -> str:
    """Per task, how many controlled runs kept weights from before their first cut."""
    controlled = runs[(runs.optimizer == "adaptive_adam") & (runs.cuts > 0)]
    rows = []
    for task, group in controlled.groupby("task", sort=False):
        first = group.cut_steps.map(lambda steps: int(str(steps).split()[0]))
        rows.append({"task": task, "runs that cut": len(group),
                     "selected step (per run)": " ".join(str(int(s)) for s in group.best_step),
                     "selected before the first cut": int((group.best_step < first).sum())})
    return pd.DataFrame(rows).to_markdown(index=False) + "\n" if rows else "No run cut.\n"


def _reachable_margins(paired: pd.DataFrame, size: int, alpha: float, planned: list[int]
                       ) -> str:
    """Per task, the smallest equivalence margin the registered test could reach at zero true
    difference with the pilot's spread, at each planned seed count, tested at the primary
    family's strictest level (``alpha`` over its ``size``)."""
    from scipy import stats

    rows = []
    for row in paired.itertuples(index=False):
        shown = {"task": row.task, "pilot pairs": row.pairs, "pilot s.e.": f"{row.se:.4f}",
                 "registered margin": f"±{row.margin:g}"}
        for seeds in planned:
            se = row.se * (row.pairs / seeds) ** 0.5
            shown[f"reachable at {seeds} seeds"] = \
                f"±{stats.t(seeds - 1).ppf(1 - alpha / size) * se:.4f}"
        rows.append(shown)
    return pd.DataFrame(rows).to_markdown(index=False) + "\n"


def verdict(args: argparse.Namespace) -> None:
    """``<out>.md``: the pilot run on the controller's and the verdict's current rules."""
    from adaopt.preregistration import load_preregistration

    runs = _runs()
    registration = load_preregistration(ROOT / "preregistration.yaml")
    timing = pd.read_csv(OUT / "timing.csv")
    paired = _paired(runs, OUT / "runs", args.prepared)
    first = ROOT / "benchmarks" / "results" / "pilot"
    earlier = _paired(_runs(first), first / "runs", args.prepared)
    steps = {task: int(group.steps.max()) for task, group in runs.groupby("task", sort=False)}
    seeds = {task: group.seed.nunique() for task, group in runs.groupby("task", sort=False)}
    machine = "; ".join(f"{r['machine.device']} ({r['machine.cpu_capability']}), torch "
                        f"{r['machine.torch']}, {r['machine.threads']} thread(s)"
                        for r in runs.filter(like="machine.").drop_duplicates()
                        .to_dict(orient="records"))
    text = (
        "# Pilot on the current rules: the controller and the verdict (issue #31)\n\n"
        f"Generated by `python benchmarks/pilot.py --out benchmarks/results/{OUT.name} --prepared "
        "PREPARED verdict` from the runs under that folder; the commands are "
        "`benchmarks/pilot_rules.sh`. Real data (the cpu profile's preparation of "
        "`ADAOPT_DATA_MIRROR`, selection splits of 1,000), not the reference results. "
        f"Machine: {machine}. The first pilot's summary is `benchmarks/results/pilot.md`.\n\n"
        "AdamW against AdaptiveAdam in the fair setting, each with the learning rate its tune "
        "stage chose in the committed reference run, "
        + ", ".join(f"{task} {seeds[task]} seeds of {n} steps" for task, n in steps.items())
        + ". The controller ignores evaluations made during warmup and needs an improvement of "
        "`min_delta_se` standard errors of the selection score:\n\n"
        f"{_controller_table(runs, args.prepared)}\n"
        "## How often and when the controller cut\n\n"
        f"{_cuts_table(runs)}\n"
        "Where the selected weights (the best selection score) come from:\n\n"
        f"{_selected_before_cut(runs)}\n"
        "## The verdict, by the registered test\n\n"
        f"{registration.test.name}, version {registration.test.version} "
        "(`preregistration.yaml`), Holm over the pilot's tasks; margins as registered.\n\n"
        f"{_verdict_table(paired)}\n"
        "The first pilot's runs (`benchmarks/results/pilot/`: 200 selection examples, "
        "`min_delta` 0.005, warmup evaluations read) under the same rule:\n\n"
        f"{_verdict_table(earlier)}\n"
        "## Which margins equivalence can reach\n\n"
        "The smallest margin within which the registered test calls a true difference of zero "
        "equivalent, from this pilot's standard error scaled to the seeds of a run (as if all "
        "of it shrank with the seeds; the dev set's part does not, so it is a lower bound "
        "where that part is large), at the "
        f"primary family's strictest level ({registration.alpha:g} over its "
        f"{registration.primary.size} members):\n\n"
        f"{_reachable_margins(paired, registration.primary.size, registration.alpha, [5, 10])}\n"
        "## Cost\n\n"
        "Measured wall time of each part, run as two one-thread processes side by side on "
        f"the 2-core machine, one per optimizer; {timing.seconds.sum() / 60:.0f} minutes of "
        "runs in all.\n\n"
        + timing.to_markdown(index=False) + "\n")
    io.write_text(OUT.with_suffix(".md"), text)


def main() -> None:
    global OUT
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--out", type=Path, default=OUT,
                        help="where the runs, parameters and timings go (a later pilot beside "
                             "an earlier one)")
    parts = parser.add_subparsers(dest="part", required=True)
    pair = parts.add_parser("pairs")
    pair.add_argument("--task", required=True)
    pair.add_argument("--steps", type=int, required=True)
    pair.add_argument("--every", type=int, required=True)
    pair.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    pair.add_argument("--optimizers", nargs="+", choices=PAIR, default=list(PAIR),
                      help="a subset, to run the pair's two halves as two processes")
    pair.set_defaults(run=pairs)
    curve_parser = parts.add_parser("curves")
    curve_parser.add_argument("--task", required=True)
    curve_parser.add_argument("--steps", type=int, required=True)
    curve_parser.add_argument("--every", type=int, required=True)
    curve_parser.add_argument("--lr", type=float, action="append", required=True)
    curve_parser.set_defaults(run=curves)
    parts.add_parser("summary").set_defaults(run=summary)
    parts.add_parser("verdict", help="<out>.md: a pilot on the current rules").set_defaults(
        run=verdict)
    args = parser.parse_args()
    OUT = args.out
    args.run(args)


if __name__ == "__main__":
    main()
