"""Overrides: nested and bare keys, type checks, unknown keys, optional sections."""

import pytest

from keras_rnnreg import zoo
from keras_rnnreg.zoo import schema


def test_bare_and_nested_keys():
    c = zoo.get_config("jsb_rnn_plain", units=8, **{"optimizer.learning_rate": 0.01})
    assert c["model"]["units"] == 8 and c["optimizer"]["learning_rate"] == 0.01
    c = zoo.get_config("jsb_rnn_plain", optimizer__momentum=0.5, optimizer={"rho": 0.8}, batch_size=5)
    assert (c["optimizer"]["momentum"], c["optimizer"]["rho"], c["data"]["batch_size"]) == (0.5, 0.8, 5)
    c = zoo.get_config("jsb_rnn_plain", **{"model.recurrent_init.spectral_radius": 0.9})
    assert c["model"]["recurrent_init"]["spectral_radius"] == 0.9


def test_int_is_accepted_for_float_but_not_the_reverse():
    assert zoo.get_config("jsb_rnn_plain", learning_rate=1)["optimizer"]["learning_rate"] == 1.0
    with pytest.raises(zoo.ConfigError, match=r"model.units=2.5 \(float\): expected an integer"):
        zoo.get_config("jsb_rnn_plain", units=2.5)
    with pytest.raises(zoo.ConfigError, match=r"model.units='8' \(str\): expected an integer"):
        zoo.build("jsb_rnn_plain", units="8")
    with pytest.raises(zoo.ConfigError, match=r"model.units=True \(bool\)"):
        zoo.get_config("jsb_rnn_plain", units=True)
    with pytest.raises(zoo.ConfigError, match=r"model.units=0 .*>= 1"):
        zoo.get_config("jsb_rnn_plain", units=0)


def test_choices_are_checked_with_suggestions():
    with pytest.raises(zoo.ConfigError, match=r"optimizer.name='rmsrop'.*did you mean 'rmsprop'"):
        zoo.get_config("jsb_rnn_plain", **{"optimizer.name": "rmsrop"})


def test_unknown_and_ambiguous_keys():
    with pytest.raises(zoo.ConfigError, match=r"unknown configuration key 'model.unit'.*model.units"):
        zoo.get_config("jsb_rnn_plain", **{"model.unit": 3})
    with pytest.raises(zoo.ConfigError, match="unknown configuration key 'optimiser.learning_rate'"):
        zoo.get_config("jsb_rnn_plain", **{"optimiser.learning_rate": 3})
    with pytest.raises(zoo.ConfigError, match="ambiguous configuration key 'stddev'"):
        zoo.get_config("jsb_rnn_plain", stddev=0.1)
    with pytest.raises(zoo.ConfigError, match="read-only"):
        zoo.get_config("jsb_rnn_plain", **{"paper.value": 1.0})


def test_optional_sections_are_created_and_removed():
    c = zoo.get_config("jsb_rnn_plain", **{"regularization.weight_noise.stddev": 0.02})
    assert c["regularization"]["weight_noise"]["stddev"] == 0.02
    assert c["regularization"]["weight_noise"]["mode"] == "additive"  # the section's defaults
    c = zoo.get_config("jsb_rnn_ns", **{"regularization.weight_noise": None})
    assert c["regularization"]["weight_noise"] is None
    c = zoo.get_config("jsb_rnn_plain", beta=50)
    assert c["regularization"]["norm_stabilizer"]["beta"] == 50.0


def test_command_line_values_are_parsed_by_the_expected_type():
    c = zoo.resolve("jsb_rnn_plain", ["model.units=8", "optimizer.global_clipnorm=1e6",
                                      "regularization.dropconnect.scale=never", "data.source=none"])
    assert c["model"]["units"] == 8 and c["optimizer"]["global_clipnorm"] == 1e6
    assert c["regularization"]["dropconnect"]["scale"] == "never" and c["data"]["source"] is None
    with pytest.raises(zoo.ConfigError, match=r"model.units='eight': expected an integer"):
        zoo.resolve("jsb_rnn_plain", ["model.units=eight"])
    with pytest.raises(zoo.ConfigError, match="expected true or false"):
        zoo.resolve("jsb_rnn_plain", ["model.bidirectional=maybe"])
    with pytest.raises(zoo.ConfigError, match="cannot be none"):
        zoo.resolve("jsb_rnn_plain", ["model.units=none"])
    with pytest.raises(zoo.ConfigError, match="key=value"):
        zoo.resolve("jsb_rnn_plain", ["model.units"])


def test_every_preset_is_complete_and_valid():
    for name in zoo.list_models():
        config = zoo.get_config(name)
        assert schema.validate(config) == config
        assert config["name"] == name


def test_describe_keys_covers_the_schema():
    lines = zoo.describe_keys()
    assert any(line.startswith("optimizer.learning_rate") for line in lines)
    assert len(lines) == len(schema.leaf_paths())
