"""ZooModel: a saved zoo model reloads with its zoo name and configuration."""

import keras
import numpy as np
import pytest

from keras_rnnreg import zoo
from keras_rnnreg.zoo import ZooModel

TINY = {"units": 4}


def _inputs(model, seed=0):
    rng = np.random.default_rng(seed)
    spec = model.inputs[0]
    if "int" in str(spec.dtype):
        return rng.integers(0, 10, (2, 5)).astype("int32")
    return rng.random((2, 5, spec.shape[-1])).astype("float32")


def _first(outputs):
    return np.asarray(outputs[0] if isinstance(outputs, (list, tuple)) else outputs)


@pytest.mark.parametrize("name", ["jsb_rnn_ns", "jsb_rnn_fd", "ptb_lstm_ns", "timit_blstm_ns"])
def test_load_model_returns_the_zoo_name_configuration_and_weights(name, tmp_path):
    model = zoo.build(name, **TINY)
    assert isinstance(model, ZooModel)
    assert model.zoo_name == name
    assert model.zoo_config == zoo.get_config(name, **TINY)
    path = tmp_path / "model.keras"
    model.save(path)

    again = keras.saving.load_model(path)
    assert isinstance(again, ZooModel)
    assert again.zoo_name == name
    assert again.zoo_config == model.zoo_config
    assert type(again.optimizer) is type(model.optimizer)
    x = _inputs(model)
    np.testing.assert_allclose(_first(again.predict(x, verbose=0)),
                               _first(model.predict(x, verbose=0)), rtol=1e-6, atol=1e-6)


def test_zoo_model_is_the_network_of_build_network():
    config = zoo.get_config("nottingham_rnn_mn", **TINY)
    plain, ours = zoo.build_network(config), ZooModel(config)
    assert [(w.path, tuple(w.shape)) for w in ours.weights] == [
        (w.path, tuple(w.shape)) for w in plain.weights
    ]
    ours.set_weights(plain.get_weights())
    x = _inputs(plain)
    np.testing.assert_allclose(ours.predict(x, verbose=0), plain.predict(x, verbose=0), atol=1e-6)


def test_from_preset_takes_a_name_a_saved_file_or_a_run_folder(tmp_path):
    model = ZooModel.from_preset("jsb_rnn_plain", **TINY)
    assert model.compiled and model.zoo_config["model"]["units"] == 4
    assert not ZooModel.from_preset("jsb_rnn_plain", compile=False, **TINY).compiled

    model.save(tmp_path / "saved.keras")
    assert ZooModel.from_preset(tmp_path / "saved.keras").zoo_name == "jsb_rnn_plain"

    from keras_rnnreg import _runfolder

    # a run folder's model is the checkpoint its commit record names (_runfolder.best_checkpoint)
    checkpoints = tmp_path / "run" / _runfolder.CHECKPOINTS
    checkpoints.mkdir(parents=True)
    model.save(checkpoints / "epoch-0003.keras")
    state = {"version": _runfolder.STATE_VERSION, "epoch": 3, "last_checkpoint": "epoch-0003.keras",
             "best_checkpoint": None, "history": [], "rng": [], "wait": 0, "restarts": 0}
    _runfolder.write_json_atomic(tmp_path / "run" / _runfolder.STATE, state)
    assert ZooModel.from_preset(tmp_path / "run").zoo_config == model.zoo_config
    assert _runfolder.best_checkpoint(tmp_path / "run")[1:] == (_runfolder.LAST, 3)


def test_from_preset_errors_name_what_was_expected(tmp_path):
    with pytest.raises(zoo.UnknownModelError, match="jsb_rnn_ns"):
        ZooModel.from_preset("jsb_rnn_nss")
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        ZooModel.from_preset(tmp_path / "missing.keras")
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        ZooModel.from_preset(tmp_path)
    with pytest.raises(ValueError, match="overrides"):
        ZooModel.from_preset(tmp_path / "x.keras", units=3)
    with pytest.raises(zoo.ConfigError, match="units"):
        ZooModel({"name": "mine", "model": {"units": 0}})


def test_from_config_builds_outside_the_object_sharing_of_load_model():
    """load_model matches objects by id() in a sharing scope; the fresh layers of a zoo build
    (Bidirectional re-creates its layer through serialization) must not enter it, or a reused id()
    can swap one layer for another (seen: a Bidirectional given its forward layer twice)."""
    from keras.src.backend.common import global_state
    from keras.src.saving.serialization_lib import ObjectSharingScope

    config = zoo.build("timit_blstm_ns", **TINY).get_config()
    with ObjectSharingScope():
        model = ZooModel.from_config(config)
        recorded = global_state.get_global_attribute("shared_objects/id_to_config_map")
        assert recorded == {}
    assert model.zoo_name == "timit_blstm_ns"
