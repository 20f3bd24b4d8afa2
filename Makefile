# AInnoFace on Detectron2: the two set-up-free commands are `make quickstart` and `make test`.
# Both create .venv/ (Python 3.11+) and install everything into it the first time; a second run
# reinstalls nothing (the stamp file below is newer than the files that define the install).
#
# Variables a user may set:
#   PYTHON       the interpreter that creates the venv            (default: python3)
#   VENV         where the venv lives                             (default: .venv)
#   TORCH_SPEC   the torch/torchvision requirement to install     (default: pinned below)
#   PYTEST_ARGS  extra pytest arguments for `make test`           (e.g. -k evaluator)

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ainnoface-installed

.PHONY: install quickstart test lint format clean-venv

$(STAMP): setup.py tools/install_detectron2.py Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) tools/install_detectron2.py
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# The main job on the built-in dataset: build it, train the small CPU config, evaluate, draw.
quickstart: $(STAMP)
	$(PY) tools/quickstart.py

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q $(PYTEST_ARGS) tests

lint: test

format: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

clean-venv:
	rm -rf $(VENV)
