#!/usr/bin/env bash
# Issue 9's GPU checks as one call on a GPU machine that has PyTorch and JAX but neither Keras nor
# our other dependencies, and no network (docs/benchmarks.md, GPU):
#
#   make gpu-wheels                   # here: Keras and the test dependencies as wheels in .whl/
#   bash benchmarks/gpu_check.sh      # there, carrying .whl/; results in $OUT (default gpu-check/)
#
# 1. The suite on PyTorch and on JAX side by side (pytest-xdist workers where installed), each
#    within TEST_S seconds: pytest-torch.log, pytest-jax.log (the gpu-marked tests run only here).
# 2. Then, alone on the GPU, `python -m benchmarks.layers --shapes paper` on each backend within
#    BENCH_S seconds: bench-torch.md, bench-jax.md (the issue's two LSTM shapes first; rows are
#    printed shape by shape, so a run cut at its limit keeps the shapes it finished).
# At most 9.5 minutes with the defaults (run's 600 s limit): with a machine's start, one call of a
# 15-minute lease.
# device.txt names the GPU, the versions and the commit. Exits 1 when a suite failed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-check}
TEST_S=${TEST_S:-270}
BENCH_S=${BENCH_S:-130}
# xdist workers per backend (16 cores there; JAX's suite is the longer, compile-bound one)
WORKERS_TORCH=${WORKERS_TORCH:-5}
WORKERS_JAX=${WORKERS_JAX:-10}
# PYTEST_ARGS narrows the suite (e.g. tests/layers)
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"

if ls .whl/*.whl >/dev/null 2>&1; then
  $PYTHON -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/rnnreg-site .whl/*.whl || exit 2
  export PYTHONPATH=/tmp/rnnreg-site:$PWD${PYTHONPATH:+:$PYTHONPATH}
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false

{
  nvidia-smi -L 2>/dev/null || echo "nvidia-smi: not found"
  echo "commit: ${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
  $PYTHON -c 'import keras, jax, torch; print("keras", keras.__version__, "| jax", jax.__version__,
    jax.devices(), "| torch", torch.__version__, torch.cuda.is_available())'
} >"$OUT/device.txt" 2>&1
cat "$OUT/device.txt"

xdist=0
$PYTHON -c "import xdist" 2>/dev/null && xdist=1
status=0
for backend in torch jax; do
  workers=$WORKERS_TORCH
  [ "$backend" = jax ] && workers=$WORKERS_JAX
  parallel=()
  [ "$xdist" = 1 ] && parallel=(-n "$workers")
  # SIGINT at the limit: pytest still prints the failures it has seen.
  (
    KERAS_BACKEND=$backend timeout -s INT -k 30 "$TEST_S" $PYTHON -m pytest -q \
      -p no:cacheprovider "${parallel[@]}" -rfE --durations=15 ${PYTEST_ARGS:-} \
      >"$OUT/pytest-$backend.log" 2>&1
    echo $? >"$OUT/pytest-$backend.rc"
  ) &
done
wait
for backend in torch jax; do
  rc=$(cat "$OUT/pytest-$backend.rc")
  [ "$rc" = 0 ] || status=1
  echo "pytest on $backend: exit $rc (124: cut at TEST_S): $(tail -n 1 "$OUT/pytest-$backend.log")"
done

for backend in torch jax; do
  KERAS_BACKEND=$backend timeout "$BENCH_S" $PYTHON -m benchmarks.layers --shapes paper \
    --only ptb_lstm1000,timit_blstm3x500,jsb_srnn200,srnn1600 --steps 10 --repeats 2 \
    >"$OUT/bench-$backend.md" 2>&1
  rc=$?
  echo "benchmark on $backend: exit $rc ($(grep -c "^| $backend |" "$OUT/bench-$backend.md") rows)"
done
exit $status
