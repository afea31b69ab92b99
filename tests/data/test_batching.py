"""keras_rnnreg.data._batching: the padding of variable-length items."""

import numpy as np
import pytest

from keras_rnnreg.data import _batching


@pytest.mark.parametrize("padding", ["post", "pre"])
def test_pad_stack(padding):
    """keras.utils.pad_sequences does what the hand-written padding did."""
    rng = np.random.default_rng(0)
    for shape in [(), (3,), (2, 4)]:
        items = [rng.integers(0, 5, (t, *shape)).astype(np.uint8) for t in (4, 0, 7, 1)]
        expected = np.zeros((4, 9, *shape), np.float32)
        for i, item in enumerate(items):
            t = len(item)
            expected[i, slice(0, t) if padding == "post" else slice(9 - t, 9)] = item
        got = _batching.pad_stack(items, 9, padding=padding)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, expected)
    assert _batching.pad_stack([np.arange(3)], 5, dtype="int32").dtype == np.int32
