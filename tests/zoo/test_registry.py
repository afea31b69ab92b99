"""The registry: every name builds and trains one step; names, lookups, structure of big nets."""

import keras
import numpy as np
import pytest

from keras_rnnreg import layers, perturbations, regularizers, zoo
from keras_rnnreg.zoo import tasks

ALL = zoo.list_models()
TINY = {"units": 4}


def test_registry_holds_every_paper_configuration():
    assert len(zoo.list_models("*_rnn_*")) == 40
    for dataset in ("jsb", "nottingham", "pianomidi", "musedata"):
        assert len(zoo.list_models(f"{dataset}_*")) == 10
    for name in (
        "ptb_lstm",
        "ptb_lstm_ns",
        "ptb_lstm_ns_cell",
        "ptb_srnn_tanh",
        "ptb_srnn_relu_ns",
        "ptb_srnn_trec_ns",
        "timit_blstm",
        "timit_blstm_ns",
        "timit_blstm_wn",
        "timit_blstm_dropout",
        "adding_irnn",
        "adding_irnn_ns",
        "ptb_char_lstm_zoneout",
        "ptb_char_lstm_zoneout_baseline",
    ):
        assert name in ALL
    assert zoo.list_models("timit_blstm999_*") == [
        "timit_blstm999_ns1000",
        "timit_blstm999_ns1500",
        "timit_blstm999_ns500",
        "timit_blstm999_wn",
    ]


def _tiny(name):
    """Tiny overrides: 4 units; one layer, except for timit_blstm_ns, which keeps its three."""
    if zoo.get_config(name)["model"]["layers"] > 1 and name != "timit_blstm_ns":
        return {**TINY, "layers": 1}
    return TINY


@pytest.mark.parametrize("name", ALL)
def test_every_name_builds_and_trains_one_step(name):
    config = zoo.get_config(name, **_tiny(name))
    model = zoo.build(name, **_tiny(name))
    # One step: skip tracing the train function on TensorFlow (eager is ~10x faster here); JAX
    # compiles its scans anyway, so jit is the faster choice there.
    model.run_eagerly = keras.backend.backend() == "tensorflow"
    x, y, w = tasks.get(config).batch(config)
    logs = model.train_on_batch(x, y, sample_weight=w, return_dict=True)
    assert np.isfinite(logs["loss"]), logs
    paper = config["paper"]
    assert paper["reference"] and paper["table"] and paper["metric"]
    # a number, or notes that say why there is none (the zoneout paper's baselines)
    assert paper["value"] is not None or "no paper number" in paper["notes"]


@pytest.mark.parametrize("name", ["jsb_rnn_ns", "ptb_lstm_ns", "timit_blstm_wn"])
def test_a_preset_with_a_gru_builds_and_trains_one_step(name):
    """model.cell='gru' swaps the recurrent layers for layers.GRU and keeps their regularizers."""
    overrides = {**TINY, "layers": 1, "cell": "gru"}
    config = zoo.get_config(name, **overrides)
    model = zoo.build(name, **overrides)
    model.run_eagerly = keras.backend.backend() == "tensorflow"
    grus = [layer for layer in _recurrent_layers(model) if isinstance(layer, layers.GRU)]
    assert grus and len(grus) == len(_recurrent_layers(model))
    reference = layers.LSTM if zoo.get_config(name)["model"]["cell"] == "lstm" else layers.SimpleRNN
    original = _recurrent_layers(zoo.build(name, **TINY, layers=1))[0]
    assert isinstance(original, reference)
    assert [repr(p) for p in grus[0].perturbations] == [repr(p) for p in original.perturbations]
    assert (grus[0].state_regularizer is None) == (original.state_regularizer is None)
    x, y, w = tasks.get(config).batch(config)
    before = [keras.ops.convert_to_numpy(v) for v in grus[0].trainable_variables]
    logs = model.train_on_batch(x, y, sample_weight=w, return_dict=True)
    assert np.isfinite(logs["loss"]), logs
    after = [keras.ops.convert_to_numpy(v) for v in grus[0].trainable_variables]
    assert any(np.abs(a - b).max() > 0 for a, b in zip(after, before))


def _recurrent_layers(model):
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Bidirectional):
            found += [layer.forward_layer, layer.backward_layer]
        elif isinstance(layer, layers.FusedRNN):
            found.append(layer)
    return found


def test_get_config_is_a_plain_copy():
    config = zoo.get_config("jsb_rnn_ns")
    assert set(config) == {
        "name",
        "task",
        "description",
        "model",
        "regularization",
        "optimizer",
        "data",
        "training",
        "paper",
    }
    config["model"]["units"] = 1
    assert zoo.get_config("jsb_rnn_ns")["model"]["units"] == 200


def test_duplicate_registration_raises():
    with pytest.raises(ValueError, match="already registered"):
        zoo.register("jsb_rnn_plain", {"task": "polyphonic"})
    zoo.register("test_tmp_name", {"task": "adding"})
    try:
        assert "test_tmp_name" in zoo.list_models("test_*")
        with pytest.raises(ValueError, match="already registered"):
            zoo.register("test_tmp_name", {"task": "adding"})
    finally:
        from keras_rnnreg.zoo import _registry

        _registry.unregister("test_tmp_name")


def test_unknown_name_lists_close_matches():
    with pytest.raises(zoo.UnknownModelError, match="jsb_rnn_ns") as err:
        zoo.build("jsb_rnn_nss")
    assert isinstance(err.value, KeyError)
    with pytest.raises(KeyError, match="timit_blstm"):
        zoo.get_config("timit_bltsm_ns")


def test_list_models_patterns():
    assert zoo.list_models("*_ns") == sorted(n for n in ALL if n.endswith("_ns"))
    assert zoo.list_models("nothing*") == []


def _lstm_params(inputs, units):
    return 4 * (inputs * units + units * units + units)


def test_timit_blstm_ns_is_the_papers_network():
    """3 bidirectional LSTM layers of 500 units per direction, 123 in, 62 out (built, not run)."""
    model = zoo.build("timit_blstm_ns")
    bidirectional = [
        layer for layer in model.layers if isinstance(layer, keras.layers.Bidirectional)
    ]
    assert len(bidirectional) == 3
    for layer in bidirectional:
        for direction in (layer.forward_layer, layer.backward_layer):
            assert isinstance(direction, layers.LSTM)
            assert direction.units == 500
            assert isinstance(direction.state_regularizer, regularizers.NormStabilizer)
            assert (
                direction.state_regularizer.beta == 500.0
                and direction.state_regularizer.on == "hidden"
            )
            assert direction.output_activation is not None  # the standard output tanh
    assert model.input_shape == (None, None, 123)
    assert model.output_shape == (None, None, 62)
    expected = 2 * (_lstm_params(123, 500) + 2 * _lstm_params(1000, 500)) + 1000 * 62 + 62
    assert model.count_params() == expected
    assert isinstance(model.loss, keras.losses.CTC)
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert model.optimizer.global_clipnorm == 200.0
    assert np.isclose(float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)), 1e-3)


def test_timit_variants_structure():
    config = zoo.get_config("timit_blstm_wn")
    assert zoo.get_value(config, "regularization.weight_noise.stddev") == 0.05
    model = zoo.build("timit_blstm_dropout_wn", units=3)
    assert sum(isinstance(layer, keras.layers.Dropout) for layer in model.layers) == 3
    assert all(
        layer.rate == 0.5 for layer in model.layers if isinstance(layer, keras.layers.Dropout)
    )
    lstm = model.get_layer("bidirectional_0").forward_layer
    assert [type(p) for p in lstm.perturbations] == [perturbations.WeightNoise]
    assert zoo.get_config("timit_blstm999_ns1000")["model"]["units"] == 999
    assert zoo.get_config("timit_blstm750_ns1500")["training"]["patience"] == 100


def test_ptb_lstm_ns_removes_the_output_tanh():
    model = zoo.build("ptb_lstm_ns", units=4)
    lstm = model.get_layer("recurrent_0")
    assert lstm.output_activation is None and lstm.state_regularizer.beta == 500.0
    assert (
        zoo.build("ptb_lstm_ns_cell", units=4).get_layer("recurrent_0").output_activation
        is not None
    )
    config = zoo.get_config("ptb_lstm")
    assert config["model"]["units"] == 1000
    assert config["optimizer"]["class_name"] == "SGD"
    assert config["optimizer"]["config"] == {
        "learning_rate": 0.1,
        "momentum": 0.99,
        "global_clipnorm": 1.0,
    }
    assert config["data"]["seq_len"] == 50
    srnn = zoo.get_config("ptb_srnn_trec_ns")
    assert srnn["model"]["units"] == 1600
    assert srnn["model"]["recurrent_init"]["class_name"] == "Identity"
    assert (
        zoo.build("ptb_srnn_trec", units=3).get_layer("recurrent_0").bias is None
    )  # zero-bias TRec


def test_noise_study_presets_follow_appendix_b():
    c = zoo.get_config("jsb_rnn_ns")
    assert c["model"]["units"] == 200
    assert c["model"]["kernel_init"]["class_name"] == "Sparse"
    assert c["model"]["kernel_init"]["config"] == {"connections": 50, "stddev": 0.001}
    assert c["model"]["recurrent_init"]["class_name"] == "SpectralRadius"
    assert zoo.get_value(c, "model.recurrent_init.stddev") == 0.001
    assert zoo.get_value(c, "model.recurrent_init.radius") == 1.0
    assert zoo.get_value(c, "regularization.weight_noise.stddev") == 0.04
    assert zoo.get_value(c, "regularization.weight_noise.per") == "sequence"
    assert zoo.get_value(c, "learning_rate") == 0.001 and zoo.get_value(c, "momentum") == 0.9
    assert c["data"]["batch_size"] == 27
    assert zoo.get_config("pianomidi_rnn_do")["model"]["units"] == 100
    assert zoo.get_config("musedata_rnn_plain")["model"]["units"] == 600
    nbr = zoo.get_config("musedata_rnn_nbr")["regularization"]["weight_penalty"]
    assert nbr["kind"] == "l1" and np.isclose(nbr["strength"], 10**-3.80)
    # "Dropout 0.78" / "0.92": the drop probability, classic scaling, climin's RMSprop.
    dos = zoo.get_config("nottingham_rnn_dos")
    assert dos["regularization"]["dropconnect"]["config"] == {
        "rate": 0.78,
        "per": "sequence",
        "scale": "inference",
    }
    assert dos["optimizer"]["class_name"] == "CliminRMSprop"
    assert zoo.get_value(zoo.get_config("jsb_rnn_do"), "regularization.dropconnect.rate") == 0.92
    assert zoo.get_config("jsb_rnn_ns")["optimizer"]["class_name"] == "RMSprop"
    assert zoo.get_config("jsb_rnn_plain")["paper"]["value"] == 8.58


def test_build_loads_no_data_and_compiles_the_papers_loss():
    model = zoo.build("jsb_rnn_plain", units=3)
    assert isinstance(model.loss, zoo.NoteCrossEntropy)
    assert isinstance(model.optimizer, keras.optimizers.RMSprop)
    rnn = model.get_layer("recurrent_0")
    kernel = keras.ops.convert_to_numpy(rnn.kernel)
    assert ((kernel != 0).sum(axis=0) == 15).all()  # 15 connections per unit


def test_note_cross_entropy_is_nll_per_timestep():
    from keras_rnnreg import metrics

    rng = np.random.default_rng(0)
    y = (rng.random((3, 5, 88)) < 0.2).astype("float32")
    p = rng.uniform(0.05, 0.95, size=(3, 5, 88)).astype("float32")
    w = np.ones((3, 5), "float32")
    w[0, :3] = 0
    loss = float(keras.ops.convert_to_numpy(zoo.NoteCrossEntropy()(y, p, sample_weight=w)))
    assert np.isclose(loss, metrics.nll_per_timestep(y, p, w), rtol=1e-4)


def test_fast_dropout_presets_take_the_perturbations_and_the_norm_stabilizer():
    """FastDropoutRNN sits on the shared base, so the zoo hands it what the configuration sets."""
    model = zoo.build("jsb_rnn_fd", units=4, **{"regularization.weight_noise.stddev": 0.02,
                                                 "regularization.norm_stabilizer.beta": 5.0})
    layer = model.get_layer("recurrent_0")
    assert [type(p).__name__ for p in layer.perturbations] == ["WeightNoise"]
    assert layer.perturbations[0].stddev == 0.02 and layer.state_regularizer.beta == 5.0
    assert layer.inference == "marginal"
    plain = zoo.build("jsb_rnn_fd", units=4).get_layer("recurrent_0")
    assert plain.perturbations == [] and plain.state_regularizer is None


def test_every_task_module_registers_its_task():
    """A new dataset is one module in zoo/tasks/: the package imports each and each registers
    the Task of its name (the schema's task choices come from the registry)."""
    import pkgutil

    from keras_rnnreg.zoo import schema

    modules = {m.name for m in pkgutil.iter_modules(tasks.__path__)}
    assert modules == set(tasks.TASKS) == set(schema.SCHEMA.fields["task"].choices)


def test_the_zoneout_presets_hold_the_reference_codes_settings():
    from keras_rnnreg.zoo import zoneout

    config = zoo.get_config("ptb_char_lstm_zoneout")
    assert config["regularization"]["zoneout"] == {"cell": 0.5, "hidden": 0.05}
    assert (config["model"]["cell"], config["model"]["units"], config["data"]["seq_len"],
            config["data"]["batch_size"], config["training"]["patience"]) == (
                "lstm", 1000, 100, 32, 25)
    assert zoo.get_value(config, "optimizer.learning_rate") == 0.002
    assert zoo.get_value(config, "optimizer.global_clipnorm") == 1.0
    assert config["paper"]["value"] == 1.27
    assert zoneout.REFERENCE_CODE in config["paper"]["notes"]
    for name in ("ptb_char_lstm_zoneout_baseline", "ptb_char_lstm_zoneout_wn",
                 "ptb_char_lstm_zoneout_ns"):
        assert zoo.get_config(name)["paper"]["value"] is None
        assert zoo.get_config(name)["regularization"]["zoneout"] is None
    assert zoo.get_value(zoo.get_config("ptb_char_lstm_zoneout_wn"),
                         "regularization.weight_noise.stddev") == 0.075
    assert zoo.get_value(zoo.get_config("ptb_char_lstm_zoneout_ns"),
                         "regularization.norm_stabilizer.beta") == 50.0
    layer = _recurrent_layers(zoo.build("ptb_char_lstm_zoneout", units=4))[0]
    assert layer.zoneout == (0.5, 0.05)


@pytest.mark.parametrize("cell", ["layer_norm_lstm", "layer_norm_gru", "lstm", "simple_rnn"])
def test_zoneout_ar_tar_and_layer_norm_cells_build_and_train_one_step(cell):
    lstm = cell in ("lstm", "layer_norm_lstm")
    overrides = [f"model.cell={cell}", "model.units=4", "data.mask_padding=true",
                 "model.kernel_init=GlorotUniform", "model.recurrent_init=Orthogonal",
                 "regularization.zoneout.hidden=0.1",
                 "regularization.activation_regularization.alpha=2",
                 "regularization.temporal_activation_regularization.beta=1"]
    if lstm:
        overrides.append("regularization.zoneout.cell=0.5")
    config = zoo.resolve("jsb_rnn_plain", overrides)
    model = zoo.build(config)
    model.run_eagerly = keras.backend.backend() == "tensorflow"
    (layer,) = _recurrent_layers(model)
    expected = {"layer_norm_lstm": layers.LayerNormLSTM, "layer_norm_gru": layers.LayerNormGRU,
                "lstm": layers.LSTM, "simple_rnn": layers.SimpleRNN}[cell]
    assert type(layer) is expected
    assert layer.zoneout == ((0.5, 0.1) if lstm else 0.1)
    assert [type(r) for r in layer.state_regularizer] == [
        regularizers.ActivationRegularization, regularizers.TemporalActivationRegularization]
    assert [r.alpha if i == 0 else r.beta for i, r in enumerate(layer.state_regularizer)] == [2, 1]
    x, y, w = tasks.get(config).batch(config)
    x[:, :3] = 0.0  # front padding: masked (data.mask_padding), the LN recurrence stays finite
    logs = model.train_on_batch(x, y, sample_weight=w, return_dict=True)
    assert np.isfinite(logs["loss"]), logs
    assert all(np.isfinite(keras.ops.convert_to_numpy(v)).all() for v in model.weights)


def test_one_state_penalty_is_passed_alone_as_before():
    (layer,) = _recurrent_layers(zoo.build("jsb_rnn_plain", units=4, beta=5.0))
    assert isinstance(layer.state_regularizer, regularizers.NormStabilizer)
    (layer,) = _recurrent_layers(zoo.build(
        "jsb_rnn_plain", units=4, beta=5.0, alpha=2.0))  # bare alpha: AR's (its default 2)
    assert [type(r).__name__ for r in layer.state_regularizer] == [
        "NormStabilizer", "ActivationRegularization"]
