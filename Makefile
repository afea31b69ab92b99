# The two commands of the README: `make demo` (the main job) and `make test` (the whole suite).
# Both create the virtual environment in .venv and install everything on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A CPU build of PyTorch; override with `make TORCH_SPEC=torch==X.Y test` elsewhere.
TORCH_SPEC ?= torch==2.13.0
BACKENDS ?= tensorflow jax torch

.PHONY: setup demo test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[torch,dev]"
	touch $@

demo: setup
	$(BIN)/python -m keras_rnnreg.demo

lint: setup
	$(BIN)/ruff check .

test: setup lint
	@set -e; for b in $(BACKENDS); do \
	  echo "=== KERAS_BACKEND=$$b ==="; \
	  KERAS_BACKEND=$$b $(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS); \
	done

bench: setup
	@for b in $(BACKENDS); do KERAS_BACKEND=$$b $(BIN)/python -m benchmarks.layers; done

clean:
	rm -rf $(VENV) build *.egg-info
