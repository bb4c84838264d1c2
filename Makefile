# One entry point per job. Every target creates the pinned virtual environment first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup test lint bench repro profile

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
