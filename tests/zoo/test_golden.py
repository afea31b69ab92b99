"""Every zoo name builds the network it built when ``golden_networks.json`` was recorded: the same
parameter count, layers, weight shapes, layer objects (initializers, regularizers, perturbations),
optimizer, and outputs and losses for the same weights.

Recorded on JAX (``python -m tests.zoo.golden``); checked on every backend. The ``small`` record
(every name at 4 units) runs in CI, the ``full`` one (the registered sizes; minutes) is slow.
"""

import json

import keras
import numpy as np
import pytest

from keras_rnnreg import zoo
from tests.zoo import golden

GOLDEN = json.loads(golden.PATH.read_text())


def _check(expected, actual, rtol):
    close = {"rtol": rtol, "atol": rtol / 10}
    for key in ("params", "layers", "shapes", "loss_class"):
        assert actual[key] == expected[key], key
    objects = [_without_new_neutral(a, e) for a, e in zip(actual["objects"], expected["objects"])]
    assert _unnamed(objects) == _unnamed(expected["objects"])
    for key, value in expected["optimizer"].items():
        if key == "name":  # Keras numbers the automatic names of a session's optimizers
            continue
        if isinstance(value, float):
            np.testing.assert_allclose(actual["optimizer"][key], value, **close, err_msg=key)
        else:
            assert actual["optimizer"][key] == value, key
    assert actual["output"]["shape"] == expected["output"]["shape"]
    for key in ("mean", "abs_mean", "std", "probes"):
        np.testing.assert_allclose(actual["output"][key], expected["output"][key], **close,
                                   err_msg=key)
    np.testing.assert_allclose(actual["loss"], expected["loss"], **close)
    np.testing.assert_allclose(actual["added_losses"], expected["added_losses"], **close)


#: Arguments a layer gained after the record, with the values that leave the network unchanged
#: (FastDropoutRNN on the shared base: perturbations, state regularizer, activity regularizer).
NEW_NEUTRAL = {"activity_regularizer": None, "perturbations": [], "state_regularizer": None}


def _without_new_neutral(actual, expected):
    if not isinstance(actual, dict) or not isinstance(expected, dict):
        return actual
    return {k: v for k, v in actual.items()
            if k in expected or k not in NEW_NEUTRAL or v != NEW_NEUTRAL[k]}


def _unnamed(objects):
    """The objects without the automatic names of the norm-stabilizer (a Keras layer, whose name
    counts the instances made in the session)."""
    if isinstance(objects, list):
        return [_unnamed(o) for o in objects]
    if isinstance(objects, dict):
        return {k: _unnamed(v) for k, v in objects.items()
                if not (k == "name" and objects.get("beta") is not None)}
    return objects


def test_the_golden_record_covers_every_name():
    assert sorted(GOLDEN["small"]) == sorted(GOLDEN["full"]) == zoo.list_models()


@pytest.mark.parametrize("name", zoo.list_models())
def test_every_name_builds_the_recorded_small_network(name):
    _check(GOLDEN["small"][name], golden.record(name, golden.SMALL), rtol=1e-4)
    keras.backend.clear_session()


@pytest.mark.slow
@pytest.mark.parametrize("name", zoo.list_models())
def test_every_name_builds_the_recorded_full_network(name):
    _check(GOLDEN["full"][name], golden.record(name), rtol=1e-3)
    keras.backend.clear_session()
