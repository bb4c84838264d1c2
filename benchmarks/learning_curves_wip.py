"""Sizing for #14: AdamW (lr 1e-4, fair schedule over the run, batch 32) learning curves on the
real data with the cpu profile's token limits, full dev sets (SQuAD: 1,000 questions), dev scored
every `every` steps; seconds per training step. Measurement only (dev is not a selection split)."""
import sys, time, json
from pathlib import Path
import yaml, torch
from adaopt.config import parse_params
from adaopt.data import prepare_task
from adaopt.experiment import Workload
from adaopt.modeling import load_tokenizer, new_model
from adaopt.protocol.settings import build_optimization
from adaopt.protocol.splits import TRAIN
from adaopt.training import make_loader, seed_everything, train

task, steps, every = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
lr = float(sys.argv[4]) if len(sys.argv) > 4 else 1e-4
root = Path("/tmp/cm/curves") / task
raw = yaml.safe_load(Path("/work/main/profiles/cpu.yaml").read_text())
raw["data"].update(max_train_samples=None, max_eval_samples=1000 if task == "squad" else None)
raw["train"].update(batch_size=32, eval_batch_size=64)
params = parse_params(raw)
d = params.data
t0 = time.perf_counter()
prepare_task(task, "/tmp/fresh5/data/raw", root, load_tokenizer(params.model), max_train_samples=None,
             max_eval_samples=d.max_eval_samples, max_length=d.max_length, seed=d.seed,
             selection_samples=d.selection_samples, qa_max_length=d.qa_max_length,
             doc_stride=d.doc_stride)
print(f"{task}: prepared in {time.perf_counter() - t0:.0f} s", flush=True)
work = Workload(params, task, root)
cfg = work.train_config.model_copy(update={"max_steps": steps, "eval_every": every})
seed_everything(0)
model = new_model(params, work.task, work.prepared)
opt = build_optimization(model, "adamw", {**params.optimizers["adamw"], "lr": lr}, "fair",
                         params.settings["fair"], steps, work.task.greater_is_better)
loader = make_loader(work.splits[TRAIN], work.tokenizer, cfg.batch_size, train=True,
                     group_by_length=True, seed=0)
result = train(model, opt.optimizer, opt.scheduler, loader, work.dev, cfg, metric=work.task.metric,
               greater_is_better=work.task.greater_is_better, max_grad_norm=1.0, progress=False)
print(json.dumps({"task": task, "train_examples": len(work.splits[TRAIN]),
                  "dev_examples": work.dev.examples,
                  "s_per_step": result.wall_time_s / result.steps,
                  "scoring_s_per_eval": result.scoring_time_s / len(result.eval_log),
                  "curve": [{k: round(v, 4) for k, v in row.items()} for row in result.eval_log]}))

# Measured 2026-11-26 (session 5), idle 2-core machine, AdamW fair, batch 32, cpu token limits,
# all training data, full dev sets (SQuAD 1,000 questions), raw dir from a fetch stage:
#   rte   lr 1e-4: 0.84 s/step, dev acc 0.49-0.51 over 25..150 steps (chance; majority 0.527)
#   cola  lr 1e-4 150 steps and 3e-4 300 steps: 0.24-0.29 s/step, MCC 0.0 throughout
#   mrpc  lr 1e-4: 0.85 s/step, acc 0.684 (25) 0.711 (100) 0.770 (150), F1 0.812 -> 0.849
#   stsb  lr 1e-4: 0.53 s/step, pearson 0.06 (25) 0.28 (50) 0.72 (75) 0.79 (150)
#   squad lr 1e-4: 1.87 s/step, F1 11.9 (50) 42.7 (100) 47.6 (150), EM 32.5; 42 s per dev eval
#   cola  lr 5e-5 400 steps: 0.28 s/step, MCC 0.0 (100) 0.033 (200) 0.205 (300) 0.213 (400)
#   rte   lr 3e-5 300 steps: 0.88 s/step, acc 0.477 (100) 0.520 (200) 0.556 (300)
