"""Shared test set-up: the backend comes from KERAS_BACKEND (the Makefile runs all three)."""

import os

import keras
import numpy as np
import pytest

SHARED_DATA = os.path.normpath(
    os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
)
# The cards and jobs name no data root: the tests' benchmark data is found through $RNNREG_DATA,
# as a user's is.
if os.path.isdir(SHARED_DATA):
    os.environ.setdefault("RNNREG_DATA", SHARED_DATA)


def pytest_collection_modifyitems(config, items):
    if os.environ.get("RNNREG_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="long run; set RNNREG_SLOW=1 to include it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def on_gpu():
    """Whether the running backend computes on a GPU (tests marked ``gpu`` run only there)."""
    from keras_rnnreg import _backend

    return _backend.gpu_available()


def tolerance(atol=1e-5, cudnn=False):
    """``assert_allclose`` keyword arguments for a float32 comparison of two implementations.

    ``atol`` on CPU. On a GPU, cuDNN's RNN kernels may compute in TF32 (PyTorch's
    ``torch.backends.cudnn.allow_tf32`` is on by default, TensorFlow enables TF32 too) and JAX's
    default float32 matmul precision on GPUs is TF32 as well: about 3 decimal digits. So the
    tolerance is widened on a GPU only where one side is a cuDNN kernel (``cudnn=True``) or the
    backend computes its matmuls in TF32 (JAX, TensorFlow).
    """
    if on_gpu() and (cudnn or keras.backend.backend() in ("jax", "tensorflow")):
        return {"atol": max(atol, 5e-3), "rtol": 1e-2}
    return {"atol": atol}


@pytest.fixture(autouse=True)
def _skip_gpu_tests_without_gpu(request):
    """Tests marked ``gpu`` are skipped where the backend sees no GPU. Checked when such a test
    runs, not at collection, so that collecting the suite initializes no device runtime (tests
    that configure virtual devices or XLA flags first keep working)."""
    if request.node.get_closest_marker("gpu") is not None and not on_gpu():
        pytest.skip(f"needs a GPU with cuDNN visible to the {keras.backend.backend()} backend")


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """On JAX every compiled program keeps its machine code mapped (about 100 memory maps per
    Keras ``fit``) until it is dropped; over the whole suite that passed Linux's
    ``vm.max_map_count`` (65,530) and XLA's compiler segfaulted. Drop them after each module."""
    yield
    if keras.backend.backend() == "jax":
        import gc

        import jax

        keras.backend.clear_session()
        jax.clear_caches()
        gc.collect()


@pytest.fixture(autouse=True)
def _seed_and_policy():
    keras.utils.set_random_seed(1234)
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture
def shared_data():
    """Path of ../shared/data; skips the test with a reason when that folder is absent."""
    if not os.path.isdir(SHARED_DATA):
        pytest.skip(f"shared benchmark data not found at {SHARED_DATA}")
    return SHARED_DATA


def to_numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


_BACKEND_CHATTER = (
    "I0000",
    "W0000",
    "E0000",
    "WARNING: All log messages",
    "To enable the following",
)


def stderr_lines(text):
    """The lines of a process's stderr that are ours (TensorFlow / absl chatter removed)."""
    return [
        line for line in text.splitlines() if line.strip() and not line.startswith(_BACKEND_CHATTER)
    ]
