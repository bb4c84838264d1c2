"""Tests of adaopt.config: the profiles validate and every bad value is one clear line."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from adaopt.config import ConfigError, Params, load_params, parse_params

ROOT = Path(__file__).resolve().parents[1]
PROFILES = sorted((ROOT / "profiles").glob("*.yaml"))


@pytest.fixture(scope="module")
def smoke_raw() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "profiles" / "smoke.yaml").read_text())


def _set(raw: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, key = dotted.split(".")
    for part in parents:
        raw = raw[part]
    raw[key] = value


def _drop(raw: dict[str, Any], dotted: str) -> None:
    *parents, key = dotted.split(".")
    for part in parents:
        raw = raw[part]
    del raw[key]


def setting(dotted: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda raw: _set(raw, dotted, value)


def settings(values: dict[str, Any], drop: tuple[str, ...] = ()
             ) -> Callable[[dict[str, Any]], None]:
    """Several keys at once (a change that only fails where another key follows it)."""
    def apply(raw: dict[str, Any]) -> None:
        for dotted, value in values.items():
            _set(raw, dotted, value)
        for dotted in drop:
            _drop(raw, dotted)
    return apply


def dropping(dotted: str) -> Callable[[dict[str, Any]], None]:
    return lambda raw: _drop(raw, dotted)


def without_cells(change: Callable[[dict[str, Any]], None], *, task: str | None = None,
                  optimizer: str | None = None) -> Callable[[dict[str, Any]], None]:
    """``change``, with the design's cells of ``task`` (or of ``optimizer``) removed first."""
    def apply(raw: dict[str, Any]) -> None:
        raw["sweep"]["cells"] = {key: cell for key, cell in raw["sweep"]["cells"].items()
                                 if cell["task"] != task and cell["optimizer"] != optimizer}
        change(raw)
    return apply


# ----------------------------------------------------------------------------- good files


def test_profiles_directory_holds_the_four_profiles() -> None:
    assert [path.stem for path in PROFILES] == ["cpu", "full", "quick", "smoke"]


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_every_profile_validates_and_names_itself(path: Path) -> None:
    params = load_params(path)
    assert isinstance(params, Params)
    assert params.profile == path.stem
    assert set(params.sweep.optimizers) <= set(params.optimizers)


def test_params_yaml_is_the_cpu_profile() -> None:
    """The committed results come from the cpu profile, so params.yaml must be that profile."""
    active = yaml.safe_load((ROOT / "params.yaml").read_text())
    cpu = yaml.safe_load((ROOT / "profiles" / "cpu.yaml").read_text())
    assert active == cpu
    assert load_params(ROOT / "params.yaml") == load_params(ROOT / "profiles" / "cpu.yaml")


def test_a_workload_overrides_the_shared_train_settings_for_its_task_only(
        smoke_raw: dict[str, Any]) -> None:
    params = parse_params(copy.deepcopy(smoke_raw))
    lm = smoke_raw["workloads"]["lm_pretrain"]
    assert params.train_for("lm_pretrain").max_steps == lm["train"]["max_steps"]
    assert params.train_for("sst2") == params.train
    assert params.tuning_steps("sst2") == (params.tuning.max_steps or params.train.max_steps)
    assert params.space_for("sst2", "adamw") == params.tuning.spaces["adamw"]


def test_max_eval_samples_may_name_tasks_and_the_others_keep_all_of_dev(
        smoke_raw: dict[str, Any]) -> None:
    raw = copy.deepcopy(smoke_raw)
    raw["data"]["max_eval_samples"] = {"SQuAD": 1000}
    params = parse_params(raw)
    assert params.data.max_eval_samples == {"squad": 1000}
    assert (params.data.eval_samples("squad"), params.data.eval_samples("sst2")) == (1000, None)
    raw["data"]["max_eval_samples"] = 32
    assert parse_params(raw).data.eval_samples("sst2") == 32


def test_smoke_profile_round_trips_through_parse_params(smoke_raw: dict[str, Any]) -> None:
    params = parse_params(copy.deepcopy(smoke_raw))
    assert params.train.max_steps == smoke_raw["train"]["max_steps"]
    assert params.settings["fair"].gamma == smoke_raw["settings"]["fair"]["gamma"]


# ----------------------------------------------------------------------------- bad values

# (id, mutation of the smoke profile, fragments the one-line message must contain)
BAD_CASES: list[tuple[str, Callable[[dict[str, Any]], Any], tuple[str, ...]]] = [
    ("unknown_top_level_key", setting("epochs", 3), ("epochs", "(got 3)")),
    ("unknown_nested_key", setting("train.batchsize", 8), ("train.batchsize", "(got 8)")),
    ("list_for_an_int", setting("train.batch_size", [32]), ("train.batch_size", "(got [32])")),
    ("string_for_a_bool", setting("train.group_by_length", "maybe"),
     ("train.group_by_length", "(got 'maybe')")),
    ("unknown_precision", setting("train.precision", "fp8"), ("train.precision", "'fp8'")),
    ("negative_batch_size", setting("train.batch_size", -4), ("train.batch_size", "(got -4)")),
    ("max_length_too_long", setting("data.max_length", 4096), ("data.max_length", "(got 4096)")),
    ("eval_samples_of_an_unknown_task", setting("data.max_eval_samples", {"sqad": 10}),
     ("data.max_eval_samples", "sqad")),
    ("max_length_too_short", setting("data.max_length", 4), ("data.max_length", "(got 4)")),
    ("unknown_task", setting("data.tasks", ["sst2", "imdb"]), ("data.tasks", "'imdb'")),
    ("repeated_task", setting("data.tasks", ["sst2", "SST-2"]), ("data.tasks", "'SST-2'")),
    ("unknown_sweep_optimizer", setting("sweep.optimizers", ["sgd", "adamax"]),
     ("sweep.optimizers", "'adamax'")),
    ("sweep_tasks_written_beside_workloads", setting("sweep.tasks", ["sst2"]),
     ("sweep.tasks", "keys of workloads", "remove sweep.tasks")),
    ("no_task_to_train", setting("workloads", {}), ("workloads", "no task to train")),
    ("repeated_trained_task", setting("workloads.SST-2", {}), ("workloads", "must not repeat")),
    ("repeated_sweep_optimizer", setting("sweep.optimizers", ["sgd", "sgd"]),
     ("sweep.optimizers", "['sgd', 'sgd']")),
    ("repeated_seed", setting("sweep.seeds", [0, 3, 3]), ("sweep.seeds", "[0, 3, 3]")),
    ("negative_seed", setting("sweep.seeds", [0, -1]), ("sweep.seeds.1", "(got -1)")),
    ("missing_fair_setting", dropping("settings.fair"), ("settings.fair", "missing")),
    ("unknown_setting", setting("settings.greedy", {"schedule": "constant"}),
     ("settings.greedy", "'greedy'")),
    ("unknown_schedule", setting("settings.fair.schedule", "step"),
     ("settings.fair.schedule", "'step'")),
    ("warmup_ratio_above_one", setting("settings.fair.warmup_ratio", 1.5),
     ("settings.fair.warmup_ratio", "(got 1.5)")),
    ("gamma_zero", setting("settings.fair.gamma", 0), ("settings.fair.gamma", "(got 0)")),
    ("negative_max_grad_norm", setting("settings.fair.max_grad_norm", -1.0),
     ("settings.fair.max_grad_norm", "(got -1.0)")),
    ("negative_lr", setting("optimizers.momentum.lr", -0.1), ("optimizers.momentum", "lr=-0.1")),
    ("lr_not_a_number", setting("optimizers.momentum.lr", "fast"),
     ("optimizers.momentum", "lr='fast'")),
    ("unknown_hparam", setting("optimizers.adamw.beta1", 0.9),
     ("optimizers.adamw", "'beta1'")),
    ("betas_out_of_range", setting("optimizers.adamw.betas", [0.9, 1.5]),
     ("optimizers.adamw", "betas=[0.9, 1.5]")),
    ("adaptive_adam_patience_zero", setting("optimizers.adaptive_adam.patience", 0),
     ("optimizers.adaptive_adam", "patience=0")),
    ("adaptive_adam_gamma_zero", setting("optimizers.adaptive_adam.gamma", 0),
     ("optimizers.adaptive_adam", "gamma=0")),
    ("unknown_optimizer_section", setting("optimizers.adamax", {"lr": 0.1}),
     ("optimizers.adamax", "unknown optimizer")),
    ("optimizer_section_not_a_mapping", setting("optimizers.sgd", 0.1),
     ("optimizers.sgd", "(got 0.1)")),
    ("sweep_optimizer_without_section", dropping("optimizers.adamw"),
     ("optimizers.adamw", "missing")),
    ("unknown_profile_name", setting("profile", "huge"), ("profile", "(got 'huge')")),
    ("unknown_attention", setting("model.attn_implementation", "flash"),
     ("model.attn_implementation", "'flash'")),
    ("old_target_fraction", setting("evaluate.target_fraction", 0.95),
     ("evaluate.target_fraction", "(got 0.95)")),
    ("target_for_unknown_task", setting("evaluate.targets.imdb", 0.5),
     ("evaluate.targets", "'imdb'")),
    ("confidence_one", setting("evaluate.confidence", 1.0), ("evaluate.confidence", "(got 1.0)")),
    ("tuning_seed_is_an_evaluation_seed", setting("tuning.seed", 1),
     ("tuning.seed=1", "sweep.seeds")),
    ("optimizer_without_space", dropping("tuning.spaces.adamw"),
     ("tuning.spaces.adamw", "missing")),
    ("unequal_trial_counts", setting("tuning.spaces.adamw.lr", [0.1, 0.01, 0.001]),
     ("tuning.spaces.adamw", "3 points", "tuning.trials=2")),
    ("searched_and_fixed", setting("optimizers.adamw.lr", 0.1),
     ("tuning.spaces.adamw.lr", "optimizers.adamw")),
    ("negative_lr_in_a_grid", setting("tuning.spaces.sgd.lr", [0.1, -0.1]),
     ("tuning.spaces.sgd", "lr=-0.1")),
    ("unknown_searched_hparam", setting("tuning.spaces.sgd", {"beta1": [0.1, 0.2]}),
     ("tuning.spaces.sgd", "'beta1'")),
    ("log_grid_upside_down", setting("tuning.spaces.sgd.lr", {"min": 1, "max": 0.1, "num": 2}),
     ("tuning.spaces.sgd.lr", "less than")),
    ("log_grid_of_one_point", setting("tuning.spaces.sgd.lr", {"min": 0.1, "max": 1, "num": 1}),
     ("tuning.spaces.sgd.lr", "num")),
    ("empty_grid", setting("tuning.spaces.sgd.lr", []), ("tuning.spaces.sgd.lr", "(got [])")),
    ("selection_samples_zero", setting("data.selection_samples", 0),
     ("data.selection_samples", "(got 0)")),
    ("selection_samples_without_default", setting("data.selection_samples", {"mrpc": 500}),
     ("data.selection_samples", "default entry")),
    ("margins_in_params", setting("evaluate.margins", {"sst2": 0.01}),
     ("evaluate", "preregistration.yaml")),
    ("min_delta_se_negative", setting("optimizers.adaptive_adam.min_delta_se", -1.0),
     ("optimizers.adaptive_adam", "min_delta_se=-1.0", ">= 0")),
    ("min_delta_se_and_min_delta", setting("optimizers.adaptive_adam.min_delta", 0.01),
     ("optimizers.adaptive_adam", "not both")),
    ("min_delta_se_on_a_baseline", setting("optimizers.adamw.min_delta_se", 1.0),
     ("optimizers.adamw", "adaptive_adam only")),
    ("missing_train_section", dropping("train"), ("train", "required")),
    ("workload_of_an_unknown_task", setting("workloads.imdb", {}), ("workloads", "'imdb'")),
    ("gpt_for_a_pretrained_task", setting("workloads.sst2.gpt", {}),
     ("workloads.sst2.gpt", "language-modeling tasks")),
    ("language_model_without_gpt", dropping("workloads.lm_pretrain.gpt"),
     ("workloads.lm_pretrain.gpt", "language-modeling tasks")),
    ("unknown_workload_train_key", setting("workloads.sst2.train", {"epochs": 3}),
     ("workloads.sst2.train.epochs", "not a train key", "max_steps")),
    ("bad_workload_train_value", setting("workloads.sst2.train", {"max_steps": 0}),
     ("workloads.sst2.train.max_steps", "(got 0)")),
    ("workload_space_with_other_trial_count",
     setting("workloads.lm_pretrain.spaces", {"adamw": {"lr": [0.1, 0.01, 0.001]}}),
     ("workloads.lm_pretrain.spaces.adamw", "3 points", "tuning.trials=2")),
    ("heads_do_not_divide_width", setting("workloads.lm_pretrain.gpt.n_head", 3),
     ("workloads.lm_pretrain.gpt", "multiple of n_head=3")),
    ("lm_context_too_short", setting("data.lm.context", 4), ("data.lm.context", "(got 4)")),
    ("unknown_lm_tokenizer", setting("data.lm.tokenizer", "word"),
     ("data.lm.tokenizer", "'word'")),
    ("ablation_task_not_swept", setting("precision_ablation.task", "mrpc"),
     ("precision_ablation.task='mrpc'", "not trained", "keys of workloads", "sst2")),
    ("ablation_optimizer_not_swept", setting("precision_ablation.optimizers", ["sgd"]),
     ("precision_ablation.optimizers", "'sgd'", "sst2-sgd-fair", "sweep.cells")),
    ("ablation_unknown_precision", setting("precision_ablation.precisions", ["fp32", "fp8"]),
     ("precision_ablation.precisions.1", "'fp8'")),
    ("ablation_one_precision", setting("precision_ablation.precisions", ["fp32"]),
     ("precision_ablation.precisions", "(got ['fp32'])")),
    ("ablation_repeated_precision", setting("precision_ablation.precisions", ["bf16", "bf16"]),
     ("precision_ablation.precisions", "must not repeat")),
    ("compress_a_language_model", setting("compress.tasks", ["sst2", "lm_pretrain"]),
     ("compress.tasks", "lm_pretrain", "not compressed")),
    ("compress_a_task_not_swept", setting("compress.tasks", ["rte"]),
     ("compress.tasks.rte", "not trained", "sst2")),
    ("compress_a_task_prepared_not_swept",
     without_cells(settings({"data.tasks": ["stsb"], "compress.tasks": ["stsb"]},
                            drop=("workloads.stsb",)), task="stsb"),
     ("compress.tasks.stsb", "not trained", "squad")),
    ("compress_sparsity_of_one", setting("compress.sparsities", [0.5, 1.0]),
     ("compress.sparsities.1", "(got 1.0)")),
    ("compress_optimizer_outside_the_sweep", setting("compress.optimizers", ["lamb"]),
     ("compress.optimizers.lamb", "not in sweep.optimizers")),
    ("student_as_deep_as_the_model", setting("compress.distill.layers", [2]),
     ("compress.distill.layers=2", "fewer layers", "2")),
    ("compress_without_adamw", without_cells(settings({
        "sweep.optimizers": ["adaptive_adam"], "precision_ablation.optimizers": ["adaptive_adam"]}),
        optimizer="adamw"),
     ("compress", "the AdamW runs", "sst2-adamw-fair")),
    ("cell_key_not_its_values", setting("sweep.cells.sst2-adamw-fair.setting", "traditional"),
     ("sweep.cells", "sst2-adamw-fair", "sst2-adamw-traditional")),
    ("cell_of_an_untrained_task", setting("sweep.cells.rte-adamw-fair",
                                          {"task": "rte", "optimizer": "adamw", "setting": "fair"}),
     ("sweep.cells.rte-adamw-fair.task='rte'", "not trained", "sst2")),
    ("cell_of_an_optimizer_not_swept", setting("sweep.cells.sst2-sgd-fair",
                                               {"task": "sst2", "optimizer": "sgd",
                                                "setting": "fair"}),
     ("sweep.cells.sst2-sgd-fair.optimizer='sgd'", "not in sweep.optimizers", "adamw")),
    ("workload_without_a_cell", without_cells(lambda raw: None, task="stsb"),
     ("workloads.stsb", "no cell")),
    ("cell_with_repeated_seeds", setting("sweep.cells.sst2-adamw-fair.seeds", [1, 1]),
     ("sweep.cells.sst2-adamw-fair.seeds", "without repeats")),
    ("tuning_seed_in_a_cells_seeds", settings({"sweep.cells.sst2-adamw-fair.seeds": 5,
                                               "tuning.seed": 4}),
     ("tuning.seed=4", "sweep.cells.sst2-adamw-fair")),
    ("no_cell", setting("sweep.cells", {}), ("sweep.cells", "at least 1")),
    ("missing_compress_section", dropping("compress"), ("compress", "required")),
    ("top_level_list", lambda raw: [raw], ("top level", "list")),
    ("top_level_scalar", lambda raw: "smoke", ("top level", "str")),
]


@pytest.mark.parametrize(("mutate", "fragments"), [case[1:] for case in BAD_CASES],
                         ids=[case[0] for case in BAD_CASES])
def test_bad_value_is_one_line_naming_key_and_value(
    smoke_raw: dict[str, Any],
    mutate: Callable[[dict[str, Any]], Any],
    fragments: tuple[str, ...],
) -> None:
    raw = copy.deepcopy(smoke_raw)
    replaced = mutate(raw)
    with pytest.raises(ConfigError) as caught:
        parse_params(raw if replaced is None else replaced, source="bad.yaml")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("bad.yaml: ")
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_bad_cases_are_many_and_distinct() -> None:
    ids = [case[0] for case in BAD_CASES]
    assert len(set(ids)) == len(ids) >= 15


def test_several_errors_are_counted_on_the_one_line(smoke_raw: dict[str, Any]) -> None:
    raw = copy.deepcopy(smoke_raw)
    raw["train"]["batch_size"] = 0
    raw["train"]["max_steps"] = 0
    with pytest.raises(ConfigError, match=r"\[\+1 more\]$"):
        parse_params(raw)


def test_mistakes_do_not_leak_into_the_loaded_profile(smoke_raw: dict[str, Any]) -> None:
    """Each bad case works on a deep copy: the shared fixture is still a valid profile."""
    parse_params(copy.deepcopy(smoke_raw))
    assert "batchsize" not in smoke_raw["train"]


# ----------------------------------------------------------------------------- ratio keys


def test_adaptive_adam_negative_warmup_ratio_is_rejected(smoke_raw: dict[str, Any]) -> None:
    raw = copy.deepcopy(smoke_raw)
    raw["optimizers"]["adaptive_adam"]["warmup_ratio"] = -0.5
    with pytest.raises(ConfigError, match=r"optimizers\.adaptive_adam.*warmup_ratio.*-0\.5"):
        parse_params(raw)


def test_adaptive_adam_non_numeric_decay_start_ratio_is_rejected(
    smoke_raw: dict[str, Any],
) -> None:
    raw = copy.deepcopy(smoke_raw)
    raw["optimizers"]["adaptive_adam"]["decay_start_ratio"] = "half"
    with pytest.raises(ConfigError, match="decay_start_ratio"):
        parse_params(raw)


def test_ratio_key_on_a_baseline_optimizer_is_rejected(smoke_raw: dict[str, Any]) -> None:
    raw = copy.deepcopy(smoke_raw)
    raw["optimizers"]["sgd"]["warmup_ratio"] = 0.3
    with pytest.raises(ConfigError, match=r"optimizers\.sgd.*warmup_ratio"):
        parse_params(raw)


# ----------------------------------------------------------------------------- files


def test_load_params_on_a_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(ConfigError) as caught:
        load_params(path)
    assert str(caught.value) == f"{path}: file not found"


def test_load_params_on_invalid_yaml_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("profile: smoke\ntrain: {batch_size: [16\n")
    with pytest.raises(ConfigError) as caught:
        load_params(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: not valid YAML: ")
    assert "\n" not in message


def test_load_params_on_an_empty_file_says_it_is_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    with pytest.raises(ConfigError, match="expected a mapping at the top level, got NoneType"):
        load_params(path)


def test_load_params_reports_the_file_it_read(tmp_path: Path) -> None:
    raw = yaml.safe_load((ROOT / "profiles" / "smoke.yaml").read_text())
    raw["train"]["max_steps"] = 0
    path = tmp_path / "custom.yaml"
    path.write_text(yaml.safe_dump(raw))
    pattern = rf"^{re.escape(str(path))}: train\.max_steps: .*\(got 0\)$"
    with pytest.raises(ConfigError, match=pattern):
        load_params(path)


def test_the_stage_check_validates_without_importing_torch() -> None:
    """`python -m adaopt check` opens every stage: it must not pay torch's import (measured: 1.7 s
    with it, 0.17 s without)."""
    code = (
        "import sys; from adaopt.runner.cli import main; rc = main(['check', '--params', "
        f"{str(ROOT / 'profiles' / 'cpu.yaml')!r}]); "
        "heavy = sorted(m for m in ('torch', 'transformers', 'pandas') if m in sys.modules); "
        "print(rc, heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[0] == "0 []"


@pytest.mark.parametrize(("key", "mutate"), [
    ("train.precision", setting("train.precision", "fp16")),
    ("precision_ablation.precisions",
     setting("precision_ablation.precisions", ["fp32", "bf16", "fp16"])),
])
def test_fp16_on_a_cpu_stops_the_stage_check_with_one_line(
        tmp_path: Path, key: str, mutate: Callable[[dict[str, Any]], None]) -> None:
    """Before any compute: the check that opens every stage names the key and what is allowed."""
    raw = yaml.safe_load((ROOT / "profiles" / "smoke.yaml").read_text())
    mutate(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = subprocess.run([sys.executable, "-m", "adaopt", "check", "--params", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (f"error: {path}: {key}=fp16 needs a CUDA GPU (fp16 "
                             "autocast with a gradient scaler); on cpu use fp32 or bf16\n")


def test_a_task_without_a_time_to_target_line_is_accepted() -> None:
    """Adding a task needs no target: without one it simply has no time to target."""
    raw = yaml.safe_load((ROOT / "profiles" / "smoke.yaml").read_text())
    del raw["evaluate"]["targets"]["stsb"]
    params = parse_params(raw)
    assert "stsb" in params.sweep.tasks and "stsb" not in params.evaluate.targets


def test_a_selection_split_may_be_sized_per_task() -> None:
    params = load_params(ROOT / "profiles" / "cpu.yaml")
    assert [params.data.selection_for(task) for task in ("sst2", "mrpc", "rte", "squad")] == [
        1000, 500, 500, 300]
    assert load_params(ROOT / "profiles" / "smoke.yaml").data.selection_for("mrpc") == 8
