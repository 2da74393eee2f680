# TextSCD course. The two commands of the README: `make demo` and `make test`.
# Both create the environment (.venv, from requirements.txt) when it is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.textscd-installed
# Tests never touch the network; tqdm is silenced so notebook outputs compare cleanly; one thread per
# process (tiny tensors, and 2 threads beside another busy process ran convolutions up to 40x slower).
# The notebooks are executed once per `make test`, by tests/test_series_fast.py (FAST mode, under the session's
# temporary TEXTSCD_HOME); the cells marked `# NBVAL_CHECK_OUTPUT` are compared there with the reference copies in
# tests/notebooks/ (`make nbval-refs` regenerates them; docs/notebook-tests.md).
TEST_ENV := TEXTSCD_FAST=1 OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TQDM_DISABLE=1 PYTHONHASHSEED=0

# pytest-xdist: one worker per core, a test file stays on one worker (the FAST series fixture runs once; each
# worker is its own pytest session with its own temporary TEXTSCD_HOME)
XDIST := -n auto --dist loadfile

.PHONY: help demo test test-unit test-notebooks nbval-refs lint lab env bench clean-results
.DEFAULT_GOAL := help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || { echo "creating $(VENV) (first run: a few minutes)"; $(PYTHON) -m venv $(VENV); }
	@# uv installs the pinned requirements several times faster than pip (parallel downloads); pip is the fallback
	@{ $(PY) -m pip install --quiet --disable-pip-version-check uv==0.13.9 && \
	   $(VENV)/bin/uv pip install --quiet --python $(PY) -r requirements.txt; } || \
	 { echo "uv unavailable or failed: installing the requirements with pip (slower)"; \
	   $(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt; }
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (TextSCD)" >/dev/null
	@touch $(STAMP)

env: $(STAMP)  ## create the environment only, and print what it offers
	$(VENV)/bin/textscd env

demo: $(STAMP)  ## run the whole course on the embedded mini-SECOND into results/demo/
	TEXTSCD_HOME=$(CURDIR) HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VENV)/bin/textscd run --run-name demo

test: $(STAMP)  ## unit + notebook tests (TEXTSCD_FAST=1; each chapter runs once) + import layers + lint; no trace
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PY) tools/no_trace.py snapshot $$tmp/.snapshot && \
	$(TEST_ENV) TEXTSCD_HOME=$$tmp $(PY) -m pytest -q -p no:cacheprovider $(XDIST) --durations=12 tests && \
	$(VENV)/bin/lint-imports && \
	$(VENV)/bin/ruff check . && \
	$(PY) tools/no_trace.py check $$tmp/.snapshot

test-unit: $(STAMP)  ## unit tests only (the notebook series is left out)
	$(TEST_ENV) $(PY) -m pytest -q -p no:cacheprovider $(XDIST) tests --ignore=tests/test_series_fast.py

test-notebooks: $(STAMP)  ## the notebook series once in FAST mode, checked outputs vs tests/notebooks/, solutions
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && $(TEST_ENV) TEXTSCD_HOME=$$tmp $(PY) -m pytest -q \
	-p no:cacheprovider tests/test_series_fast.py tests/test_notebooks.py

nbval-refs: $(STAMP)  ## regenerate tests/notebooks/ (FAST run of every chapter; review the diff, then commit)
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && mkdir -p $$tmp/home && \
	ln -s $(CURDIR)/notebooks $$tmp/home/notebooks && \
	$(TEST_ENV) TEXTSCD_HOME=$$tmp/home $(PY) tests/notebook_refs.py

lint: $(STAMP)  ## import layers (import-linter) and ruff over the library, tests and notebooks
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check .

lab: $(STAMP)  ## JupyterLab with the project kernel
	TEXTSCD_HOME=$(CURDIR) $(VENV)/bin/jupyter lab notebooks/

bench: $(STAMP)  ## CPU benchmarks (256², batch 2) into results/benchmarks/; GPU: see docs/performance.md
	$(VENV)/bin/textscd bench --device cpu --size 256 --batch 2 --warmup 1 --repeats 3 --record

clean-results:  ## remove generated runs (keeps results/demo and benchmarks)
	rm -rf results/fast data/mini-second-fast
