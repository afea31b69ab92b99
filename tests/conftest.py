"""Shared test set-up: the backend comes from KERAS_BACKEND (the Makefile runs all three)."""

import os

import keras
import numpy as np
import pytest

SHARED_DATA = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))


def pytest_collection_modifyitems(config, items):
    if os.environ.get("RNNREG_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="long run; set RNNREG_SLOW=1 to include it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


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


_BACKEND_CHATTER = ("I0000", "W0000", "E0000", "WARNING: All log messages", "To enable the following")


def stderr_lines(text):
    """The lines of a process's stderr that are ours (TensorFlow / absl start-up chatter removed)."""
    return [line for line in text.splitlines() if line.strip() and not line.startswith(_BACKEND_CHATTER)]
