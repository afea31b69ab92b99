"""Overrides: nested and bare keys, type checks, unknown keys, optional sections."""

import copy
import random
import re

import keras
import pytest

from keras_rnnreg import perturbations, zoo
from keras_rnnreg.zoo import schema


def test_bare_and_nested_keys():
    c = zoo.get_config("jsb_rnn_plain", units=8, **{"optimizer.learning_rate": 0.01})
    assert c["model"]["units"] == 8 and c["optimizer"]["config"]["learning_rate"] == 0.01
    c = zoo.get_config(
        "jsb_rnn_plain", optimizer__momentum=0.5, optimizer={"rho": 0.8}, batch_size=5
    )
    assert (
        c["optimizer"]["config"]["momentum"],
        c["optimizer"]["config"]["rho"],
        c["data"]["batch_size"],
    ) == (0.5, 0.8, 5)
    c = zoo.get_config(
        "jsb_rnn_plain", **{"model.recurrent_init.radius": 0.9, "model.recurrent_init.stddev": 0.5}
    )
    assert c["model"]["recurrent_init"]["config"]["radius"] == 0.9
    assert c["model"]["recurrent_init"]["config"]["base"]["config"]["stddev"] == 0.5  # wrapped
    assert zoo.get_value(c, "model.recurrent_init.stddev") == 0.5


def test_keras_objects_are_serialized_configs_built_by_their_constructors():
    c = zoo.get_config("jsb_rnn_ns")
    noise = keras.saving.deserialize_keras_object(c["regularization"]["weight_noise"])
    assert isinstance(noise, perturbations.WeightNoise) and noise.per == "sequence"
    assert isinstance(keras.optimizers.get(c["optimizer"]), keras.optimizers.RMSprop)
    assert zoo.get_value(c, "regularization.weight_noise.sampling") == "weight"  # the default
    with pytest.raises(
        zoo.ConfigError,
        match=r"regularization.weight_noise.stddev=-1: WeightNoise "
        r"refused it: Invalid value for argument stddev=",
    ):
        zoo.get_config("jsb_rnn_ns", **{"regularization.weight_noise.stddev": -1})
    with pytest.raises(zoo.ConfigError, match="DropConnect refused it: .*scale"):
        zoo.resolve("jsb_rnn_do", ["regularization.dropconnect.scale=training"])
    with pytest.raises(
        zoo.ConfigError, match=r"optimizer.momentm=0.5: RMSprop refused it.*momentm"
    ):
        zoo.get_config("jsb_rnn_ns", **{"optimizer.momentm": 0.5})
    # A class swap keeps the arguments the new class accepts.
    c = zoo.resolve("jsb_rnn_do", ["optimizer.class_name=RMSprop"])
    assert c["optimizer"]["class_name"] == "RMSprop"
    assert c["optimizer"]["config"] == {"learning_rate": 1e-4, "momentum": 0.95, "rho": 0.9}
    c = zoo.resolve("ptb_lstm", ["optimizer.class_name=Adam"])
    assert c["optimizer"]["config"] == {"learning_rate": 0.1, "global_clipnorm": 1.0}
    # Checking a config draws nothing from Python's random state (unseeded initializers do).
    random.seed(0)
    zoo.resolve("jsb_rnn_ns", ["model.kernel_init=glorot_uniform", "optimizer.class_name=Adam"])
    drawn = random.random()
    random.seed(0)
    assert random.random() == drawn
    c = zoo.resolve("jsb_rnn_ns", ["optimizer=adam"])  # read-only; Keras' get edits its argument
    assert isinstance(keras.optimizers.get(copy.deepcopy(c["optimizer"])), keras.optimizers.Adam)
    with pytest.raises(TypeError, match="read-only"):
        keras.optimizers.get(c["optimizer"])


def test_int_is_accepted_for_float_but_not_the_reverse():
    assert (
        zoo.get_config("jsb_rnn_plain", learning_rate=1)["optimizer"]["config"]["learning_rate"]
        == 1.0
    )
    with pytest.raises(zoo.ConfigError, match=r"model.units=2.5 \(float\): expected an integer"):
        zoo.get_config("jsb_rnn_plain", units=2.5)
    with pytest.raises(zoo.ConfigError, match=r"model.units='8' \(str\): expected an integer"):
        zoo.build("jsb_rnn_plain", units="8")
    with pytest.raises(zoo.ConfigError, match=r"model.units=True \(bool\)"):
        zoo.get_config("jsb_rnn_plain", units=True)
    with pytest.raises(zoo.ConfigError, match=r"model.units=0 .*>= 1"):
        zoo.get_config("jsb_rnn_plain", units=0)


def test_choices_are_checked_with_suggestions():
    with pytest.raises(zoo.ConfigError, match=r"task='ptv'.*did you mean 'ptb'"):
        zoo.get_config("jsb_rnn_plain", task="ptv")
    with pytest.raises(
        zoo.ConfigError,
        match=r"optimizer.class_name='rmsrop': expected a "
        r"Keras-serialized Optimizer",
    ):
        zoo.get_config("jsb_rnn_plain", **{"optimizer.class_name": "rmsrop"})


def test_unknown_and_ambiguous_keys():
    with pytest.raises(
        zoo.ConfigError, match=r"unknown configuration key 'model.unit'.*model.units"
    ):
        zoo.get_config("jsb_rnn_plain", **{"model.unit": 3})
    with pytest.raises(
        zoo.ConfigError, match="unknown configuration key 'optimiser.learning_rate'"
    ):
        zoo.get_config("jsb_rnn_plain", **{"optimiser.learning_rate": 3})
    with pytest.raises(zoo.ConfigError, match="ambiguous configuration key 'per'"):
        zoo.get_config("jsb_rnn_plain", per="sequence")
    with pytest.raises(zoo.ConfigError, match="read-only"):
        zoo.get_config("jsb_rnn_plain", **{"paper.value": 1.0})


def test_optional_sections_are_created_and_removed():
    c = zoo.get_config("jsb_rnn_plain", **{"regularization.weight_noise.stddev": 0.02})
    assert c["regularization"]["weight_noise"]["config"] == {"stddev": 0.02}
    assert zoo.get_value(c, "regularization.weight_noise.mode") == "additive"  # the default
    c = zoo.get_config("jsb_rnn_ns", **{"regularization.weight_noise": None})
    assert c["regularization"]["weight_noise"] is None
    c = zoo.get_config("jsb_rnn_plain", beta=50)
    assert c["regularization"]["norm_stabilizer"]["config"]["beta"] == 50.0


def test_command_line_values_are_parsed_by_the_expected_type():
    c = zoo.resolve(
        "jsb_rnn_plain",
        [
            "model.units=8",
            "optimizer.global_clipnorm=1e6",
            "regularization.dropconnect.scale=false",
            "regularization.weight_noise.per=sequence",
            "data.source=none",
        ],
    )
    assert c["model"]["units"] == 8 and c["optimizer"]["config"]["global_clipnorm"] == 1e6
    assert c["regularization"]["dropconnect"]["config"]["scale"] is False
    assert c["regularization"]["weight_noise"]["config"]["per"] == "sequence"
    assert c["data"]["source"] is None
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
    assert any(line.startswith("optimizer ") for line in lines)
    assert any(line.startswith("regularization.weight_noise ") for line in lines)
    assert any(line.startswith("data.batch_size ") for line in lines)


def test_optimizers_are_checked_without_being_built():
    """Making and checking configurations builds no optimizer: on TensorFlow that would start the
    runtime, after which a multi-worker strategy can no longer be set up."""
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("checks TensorFlow's runtime, and TensorFlow is not installed")

    code = (
        "from keras_rnnreg import zoo\n"
        "zoo.resolve('jsb_rnn_do', ['optimizer=adam', 'optimizer.learning_rate=0.01'])\n"
        "zoo.resolve('ptb_lstm_ns', ['optimizer.class_name=CliminRMSprop'])\n"
        "from tensorflow.python.eager import context\n"
        "print('started' if context.context()._initialized else 'not started')\n"
    )
    env = {**__import__("os").environ, "KERAS_BACKEND": "tensorflow"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip().splitlines()[-1] == "not started"


def test_optimizer_arguments_are_checked_against_the_signature():
    with pytest.raises(zoo.ConfigError, match="SGD refused it: unexpected argument.*bogus"):
        zoo.resolve("ptb_lstm_ns", ["optimizer.bogus=1"])
    with pytest.raises(zoo.ConfigError, match="no optimizer class 'Nonesuch'"):
        zoo.resolve("ptb_lstm_ns", {"optimizer": {"class_name": "Nonesuch", "config": {}}})
    swapped = zoo.resolve("ptb_lstm_ns", ["optimizer.class_name=CliminRMSprop"])["optimizer"]
    assert swapped["registered_name"] == "keras_rnnreg>CliminRMSprop"
    assert swapped["config"]["global_clipnorm"] == 1.0  # a base-optimizer argument is kept
    assert zoo.get_value({"optimizer": swapped}, "optimizer.epsilon") == 1e-8
    built = zoo.build("ptb_lstm_ns", units=2, **{"optimizer.class_name": "CliminRMSprop"})
    assert type(built.optimizer).__name__ == "CliminRMSprop"
    assert built.optimizer.global_clipnorm == 1.0


def test_a_combination_the_network_cannot_honour_is_an_error_naming_the_keys():
    # fast dropout without its rates: no silent rate 0 (the section is created only when asked)
    with pytest.raises(zoo.ConfigError, match=r"model\.cell and regularization\.fast_dropout"):
        zoo.resolve("jsb_rnn_plain", ["model.cell=fast_dropout"])
    # relu / trec are for simple RNNs: an LSTM or GRU is never quietly given tanh
    for cell in ("lstm", "gru"):
        with pytest.raises(zoo.ConfigError, match=r"model\.cell and model\.activation.*'relu'"):
            zoo.resolve("jsb_rnn_plain", [f"model.cell={cell}", "model.activation=relu"])
    with pytest.raises(zoo.ConfigError, match="model.bidirectional"):
        zoo.resolve("jsb_rnn_fd", ["model.bidirectional=true"])


def test_fast_dropout_defaults_are_the_layers_and_the_preset_sets_its_own():
    import inspect

    from keras_rnnreg import layers
    from keras_rnnreg.zoo import noise_study

    made = zoo.resolve("jsb_rnn_plain", ["model.cell=fast_dropout",
                                         "regularization.fast_dropout.moments=probit"])
    fd, rnn = made["regularization"]["fast_dropout"], inspect.signature(layers.FastDropoutRNN)
    assert fd["input_rate"] == rnn.parameters["rate"].default
    assert fd["inference"] == rnn.parameters["inference"].default
    dense = inspect.signature(layers.FastDropoutDense)
    assert fd["output_rate"] == dense.parameters["rate"].default
    preset = zoo.get_config("jsb_rnn_fd")["regularization"]["fast_dropout"]
    assert {k: preset[k] for k in noise_study.FAST_DROPOUT_RATES} == noise_study.FAST_DROPOUT_RATES
    assert preset["inference"] == noise_study.FAST_DROPOUT_INFERENCE
    network = zoo.build_network(made)
    assert network.get_layer("recurrent_0").rate == fd["input_rate"]


def test_model_defaults_and_cell_choices_come_from_the_layers():
    import inspect

    from keras_rnnreg import layers

    model = schema.SCHEMA.fields["model"].fields
    assert model["cell"].choices == tuple(schema.CELLS)
    for cls in schema.CELLS.values():
        named = schema._named_arguments(cls)
        assert named["activation"] == model["activation"].default
        for key, argument in (("kernel_init", "kernel_initializer"),
                              ("recurrent_init", "recurrent_initializer")):
            default = type(keras.initializers.get(named[argument]))
            assert model[key].default == (default, {})
    output = inspect.signature(layers.LSTM).parameters["output_activation"].default
    assert model["lstm_output_tanh"].default is (output == "same")
    mask = "data.mask_padding=true"
    needs = {"layer_norm_lstm": mask, "layer_norm_gru": mask,
             "fast_dropout": "regularization.fast_dropout.moments=probit"}
    for name, cls in schema.CELLS.items():  # the builder dispatches through the table
        config = zoo.resolve("jsb_rnn_plain", [f"model.cell={name}", "model.units=3",
                                               *([needs[name]] if name in needs else [])])
        assert type(zoo.build_network(config).get_layer("recurrent_0")) is cls


def test_card_and_job_tables_use_the_schema_fields():
    card = schema.Section("t", {"seeds": schema.Field(list, item=int, minimum=0, distinct=True),
                                "set": schema.Field(list, item=str),
                                "paper": schema.Field(str, also=(False,))})
    assert schema.check_table({"seeds": [0, 1], "set": ["a=1"], "paper": False}, card, "f.toml")
    for bad, shown in (({"seeds": []}, "seeds = []"), ({"seeds": [1, 1]}, "seeds = [1, 1]"),
                       ({"seeds": [-1]}, "seeds = [-1]"), ({"seeds": [True]}, "seeds = [True]"),
                       ({"set": ["a", 1]}, "set = ['a', 1]: expected a list of strings"),
                       ({"paper": True}, "paper = True: expected a string"),
                       ({"sed": 1}, "unknown key(s) ['sed']")):
        with pytest.raises(zoo.ConfigError, match=f"^f.toml: {re.escape(shown)}"):
            schema.check_table(bad, card, "f.toml")


def test_zoneout_ar_tar_and_layer_norm_keys():
    c = zoo.resolve("jsb_rnn_plain", ["regularization.zoneout.cell=0.5", "model.cell=lstm",
                                      "regularization.zoneout.hidden=0.05"])
    assert c["regularization"]["zoneout"] == {"cell": 0.5, "hidden": 0.05}
    c = zoo.resolve("jsb_rnn_plain", ["regularization.zoneout.hidden=0.1"])
    assert c["regularization"]["zoneout"] == {"cell": 0.0, "hidden": 0.1}  # the layers' default
    c = zoo.resolve("jsb_rnn_plain", ["hidden=0.2"])  # bare hidden: unambiguous
    assert c["regularization"]["zoneout"]["hidden"] == 0.2
    assert zoo.get_config("jsb_rnn_plain", cell="gru")["model"]["cell"] == "gru"  # bare: model's
    c = zoo.resolve("jsb_rnn_plain", ["regularization.activation_regularization.alpha=3",
                                      "regularization.temporal_activation_regularization.beta=2"])
    assert c["regularization"]["activation_regularization"]["config"] == {"alpha": 3.0}
    assert c["regularization"]["temporal_activation_regularization"]["config"] == {"beta": 2.0}
    c = zoo.get_config("jsb_rnn_plain", **{"regularization.activation_regularization.on": "hidden"})
    assert zoo.get_value(c, "regularization.activation_regularization.alpha") == 2.0  # AWD-LSTM's
    c = zoo.get_config("jsb_rnn_plain", **{"regularization.temporal_activation_regularization.on":
                                           "hidden"})
    assert zoo.get_value(c, "regularization.temporal_activation_regularization.beta") == 1.0
    assert zoo.get_config("jsb_rnn_plain", beta=5)["regularization"]["norm_stabilizer"]  # bare
    for cell in ("layer_norm_lstm", "layer_norm_gru"):
        c = zoo.resolve("jsb_rnn_plain", [f"model.cell={cell}", "data.mask_padding=true"])
        assert c["model"]["cell"] == cell
    with pytest.raises(zoo.ConfigError, match=r"regularization\.zoneout\.hidden=1\.5"):
        zoo.resolve("jsb_rnn_plain", ["regularization.zoneout.hidden=1.5"])
    with pytest.raises(zoo.ConfigError, match="Activation.*refused it"):
        zoo.resolve("jsb_rnn_plain", ["regularization.activation_regularization.alpha=-1"])
    lines = zoo.describe_keys()
    for key in ("regularization.zoneout.cell ", "regularization.zoneout.hidden ",
                "regularization.activation_regularization ",
                "regularization.activation_regularization.alpha ",
                "regularization.temporal_activation_regularization "):
        assert any(line.startswith(key) for line in lines), key
    assert any("layer_norm_lstm" in line for line in lines if line.startswith("model.cell "))


def test_zoneout_conflicts_name_the_keys():
    for cell in ("simple_rnn", "gru", "layer_norm_gru"):
        with pytest.raises(zoo.ConfigError,
                           match=r"model\.cell and regularization\.zoneout\.cell: .*no memory"):
            zoo.resolve("jsb_rnn_plain", [f"model.cell={cell}", "data.mask_padding=true",
                                          "regularization.zoneout.cell=0.5"])
    with pytest.raises(zoo.ConfigError, match=r"model\.cell and regularization\.zoneout: "):
        zoo.resolve("jsb_rnn_fd", ["regularization.zoneout.hidden=0.1"])
    with pytest.raises(zoo.ConfigError, match=r"model\.cell and data\.mask_padding"):
        zoo.resolve("jsb_rnn_plain", ["model.cell=layer_norm_lstm"])
    for cell in ("layer_norm_lstm", "layer_norm_gru"):
        with pytest.raises(zoo.ConfigError, match=r"model\.cell and model\.activation"):
            zoo.resolve("jsb_rnn_plain", [f"model.cell={cell}", "data.mask_padding=true",
                                          "model.activation=relu"])
    # unset, or zero: no conflict (a GRU with zoneout on h only)
    zoo.resolve("jsb_rnn_plain", ["model.cell=gru", "regularization.zoneout.hidden=0.1"])
    assert zoo.resolve("jsb_rnn_fd", ["regularization.zoneout=none"])
