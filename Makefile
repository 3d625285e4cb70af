# expertlib: two commands do everything on a fresh clone: `make reproduce` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SCALE ?= cpu
CONSTRAINTS := requirements/constraints.txt
STAMP := $(VENV)/.expertlib-stamp

.PHONY: venv browser-deps reproduce reproduce-fresh docs test test-fast gpu-check lab bench lint format clean

# The venv is rebuilt only when pyproject.toml or the constraints change (the stamp records both).
$(STAMP): pyproject.toml $(CONSTRAINTS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c $(CONSTRAINTS) -e '.[dev,lab]'
	@touch $(STAMP)

venv: $(STAMP)

reproduce: $(STAMP)  ## run every notebook at SCALE (default: cpu) and write results/$(SCALE)/
	$(BIN)/python -m expertlib.reproduce --scale $(SCALE)
	$(BIN)/python -m expertlib.pipeline.docs

# The numbers README.md and docs/ state, rewritten from the committed tables (a test fails when they differ).
docs: $(STAMP)
	$(BIN)/python -m expertlib.pipeline.docs

# Steps whose outputs exist are reused (the committed cpu run included): this recomputes everything.
reproduce-fresh: $(STAMP)
	rm -rf results/$(SCALE)
	$(BIN)/python -m expertlib.reproduce --scale $(SCALE) --record-times
	@# notebook 04 again, now that 05's fine-tunes exist: its selection-quality figure needs them (nothing recomputes)
	$(BIN)/python -m expertlib.reproduce --scale $(SCALE) --only 04
	$(BIN)/python -m expertlib.pipeline.docs

# The browser test runs the report in JupyterLab in headless Chromium: Debian's package, installed when missing,
# driven by Playwright (the dev extra, from PyPI), which is pointed at it and never downloads a browser of its own.
browser-deps:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser test (needs root and apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: $(STAMP) browser-deps  ## the whole suite: unit, slow, notebook and browser tests
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q --durations=12 -n 2 --dist loadgroup

test-fast: $(STAMP)  ## unit tests only
	$(BIN)/python -m pytest -q -m "not slow and not notebook and not browser and not cuda"

# On a machine with a GPU, with its own Python and torch, within 6 minutes, goals first: R50x1 throughput beside timm,
# K=64 stacked fine-tunes, the gpu scale (time-boxed), the CUDA tests, released-smoke if time is left
# (tools/gpu_check.sh; --dry-run prints its sections).
gpu-check:
	bash tools/gpu_check.sh

# JupyterLab at the repository root (notebooks/ and results/ both browsable), also as root; prints the URL to open.
# LAB_TOKEN empty: a new random token, in the printed URL. LAB_IP=0.0.0.0 serves other machines too.
LAB_PORT ?= 8888
LAB_IP ?= 127.0.0.1
LAB_TOKEN ?=
lab: $(STAMP)  ## JupyterLab on the project's venv, at the repository root
	$(BIN)/python -m expertlib.lab --port '$(LAB_PORT)' --ip '$(LAB_IP)' $(if $(LAB_TOKEN),--token '$(LAB_TOKEN)')

bench: $(STAMP)  ## every benchmark; CSVs under results/benchmarks/
	@set -e; for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b; done

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
