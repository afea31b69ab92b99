# The two commands of the README: `make demo` (the main job) and `make test` (the whole suite).
# Both create the virtual environment in .venv and install everything on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A CPU build of PyTorch; override with `make TORCH_SPEC=torch==X.Y test` elsewhere.
TORCH_SPEC ?= torch==2.13.0
BACKENDS ?= tensorflow jax torch
# pytest-xdist workers per backend: one per core, at most 4 (a JAX worker holds about 2.5 GiB);
# `make PYTEST_WORKERS=0 test` runs the suite in one process.
PYTEST_WORKERS ?= auto

.PHONY: setup demo test lint docs doctest bench gpu-wheels clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[all,dev]"
	touch $@

# The noise study's plain RNN on JSB-like chorales built from music21's bundled Bach chorales (no
# download; a substitute, asked for by name); each run gets its own folder under runs/.
demo: setup
	$(BIN)/rnnreg train jsb_rnn_plain --data music21-chorales --out runs/demo-$$(date +%Y%m%d-%H%M%S)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports  # the one direction of dependencies and no cycles (.importlinter)

test: setup lint
	@set -e; for b in $(BACKENDS); do \
	  echo "=== KERAS_BACKEND=$$b ==="; \
	  KERAS_BACKEND=$$b $(BIN)/python -m pytest -q -p no:cacheprovider \
	    -n $(PYTEST_WORKERS) --maxprocesses 4 $(PYTEST_ARGS); \
	done

# The API reference (mkdocs.yml, pages in docs/): built offline into build/site, warnings as errors.
$(VENV)/.docs-installed: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install -q -e ".[docs]"
	touch $@

docs: $(VENV)/.docs-installed
	$(BIN)/mkdocs build --strict

# The docstrings' examples as doctests, on one backend (JAX); private modules (_*.py) are skipped.
doctest: setup
	KERAS_BACKEND=jax $(BIN)/python -m pytest -q -p no:cacheprovider --doctest-modules \
	  -o doctest_optionflags="NORMALIZE_WHITESPACE ELLIPSIS" --ignore-glob='*/_[!_]*.py' keras_rnnreg

bench: setup
	@for b in $(BACKENDS); do KERAS_BACKEND=$$b $(BIN)/python -m benchmarks.layers; done

# Keras and the suite's other dependencies that a GPU machine with only PyTorch and JAX lacks, as
# wheels in .whl/ for benchmarks/gpu_check.sh: the versions this venv resolved, built for that
# machine's CPython 3.12 on x86-64 Linux.
GPU_WHEELS := keras namex optree keras-tuner kt-legacy music21 chardet jsonpickle more-itertools \
	webcolors pretty_midi mido soundfile cffi pycparser
GPU_PLATFORMS := manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 \
	manylinux2014_x86_64 manylinux1_x86_64

gpu-wheels: setup
	rm -rf .whl && mkdir .whl
	$(BIN)/pip freeze | grep -i -E '^($(shell echo $(GPU_WHEELS) | tr ' ' '|'))==' >.whl/pins.txt
	$(BIN)/pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  $(addprefix --platform ,$(GPU_PLATFORMS)) -d .whl -r .whl/pins.txt

clean:
	rm -rf $(VENV) build *.egg-info
