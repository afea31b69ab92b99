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

# The noise study's plain RNN on JSB-like chorales built from music21's bundled Bach chorales (no
# data needed); each run gets its own folder under runs/.
demo: setup
	$(BIN)/rnnreg train jsb_rnn_plain --out runs/demo-$$(date +%Y%m%d-%H%M%S)

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
