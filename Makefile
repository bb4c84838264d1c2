# One entry point per job. Every target creates the pinned virtual environment first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup test lint bench repro plan profile quick

# TORCH_INDEX: where torch comes from, e.g. https://download.pytorch.org/whl/cpu for the small
# CPU build on a plain machine (PyPI's Linux wheel of the pinned torch is the CUDA build).
TORCH_INDEX ?=

$(BIN)/activate: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(if $(TORCH_INDEX),$(BIN)/pip install --quiet --index-url $(TORCH_INDEX) $$(grep '^torch==' requirements.txt))
	$(BIN)/pip install --quiet -r requirements.txt -e .
	touch $(BIN)/activate

setup: $(BIN)/activate

lint: setup
	$(BIN)/ruff check .

test: lint
	$(BIN)/pytest

bench: setup
	$(BIN)/python benchmarks/optimizer_step.py --check
	$(BIN)/pytest -m benchmark

# Select a profile: copies profiles/$(PROFILE).yaml to params.yaml (cpu is the reference).
profile:
	cp profiles/$(PROFILE).yaml params.yaml

# The main job: the whole pipeline on the active profile.
repro: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

# What the active profile's tune and train stages will cost here, and what is left (dvc status).
# The first run calibrates on the prepared data (minutes); later ones read .dvc/tmp/.
plan: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m adaopt plan

# A newcomer's first run: the quick profile in a fresh clone under QUICK_DIR without the
# reference run's outputs, so that the committed ones stay as they are and DVC neither hashes nor
# rewrites them at each stage. Its REPORT.md, results/ and figures/ land there; it prints its
# measured wall time at the end.
QUICK_DIR ?= /tmp/adaopt-quick
quick: setup
	@start=$$(date +%s) && \
	rm -rf $(QUICK_DIR) && git clone --quiet "$(CURDIR)" $(QUICK_DIR) && \
	(cd $(QUICK_DIR) && rm -rf dvc.lock REPORT.md runs tuning results figures) && \
	cp profiles/quick.yaml $(QUICK_DIR)/params.yaml && \
	(cd $(QUICK_DIR) && PATH="$(CURDIR)/$(BIN):$$PATH" PYTHONPATH="$(QUICK_DIR)/src" \
	  $(if $(ADAOPT_DATA_MIRROR),ADAOPT_DATA_MIRROR="$(abspath $(ADAOPT_DATA_MIRROR))") dvc repro) && \
	elapsed=$$(( $$(date +%s) - start )) && \
	echo "quick profile done in $$((elapsed / 60)) min $$((elapsed % 60)) s: $(QUICK_DIR)/REPORT.md, $(QUICK_DIR)/results, $(QUICK_DIR)/figures"
