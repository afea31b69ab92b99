"""A golden record of every zoo network: what ``test_golden.py`` checks the zoo still builds.

For each zoo name: the parameter count, the layer classes, the weight shapes, the Keras objects
of every layer (initializers, regularizers, perturbations, ...), the optimizer, and, for weights
set by a fixed rule (no RNG) and a fixed small input, a summary of the outputs, the task's loss
and the added losses (penalties, norm-stabilizer). ``small`` records every name with
``model.units=4`` (cheap: checked in CI on every backend); ``full`` every name as registered
(minutes: a slow test).

Regenerate only when a network is meant to change, from the code that builds the reference::

    KERAS_BACKEND=jax python -m tests.zoo.golden            # writes tests/zoo/golden_networks.json
"""

import json
import math
import sys
from pathlib import Path

import keras
import numpy as np

from keras_rnnreg import zoo

PATH = Path(__file__).with_name("golden_networks.json")
SMALL = {"model.units": 4}
BATCH, STEPS = 2, 5
PROBES = (0, 1, 7, 31, 100, 333)  # flat output indices recorded (mod the output size)


def deterministic_weights(model):
    """Every weight from a fixed rule: a sine of its flat index, scaled by 1/sqrt(fan-in)."""
    for k, weight in enumerate(model.weights):
        shape = tuple(weight.shape)
        n = int(np.prod(shape)) if shape else 1
        scale = 2.0 / math.sqrt(shape[-2]) if len(shape) >= 2 else 0.3
        values = scale * np.sin(0.9 * np.arange(n) + k)
        weight.assign(values.reshape(shape).astype(weight.dtype))


def batch(config):
    """A fixed ``(x, y, sample_weight)`` for the config's task (no RNG)."""
    m, task = config["model"], config["task"]
    t = np.arange(BATCH * STEPS).reshape(BATCH, STEPS)
    weights = np.ones((BATCH, STEPS), "float32")
    weights[0, :2] = 0.0
    if task == "ptb":
        return (t * 7 + 3) % m["input_dim"], (t * 5 + 1) % m["output_dim"], weights
    grid = np.arange(BATCH * STEPS * m["input_dim"]).reshape(BATCH, STEPS, m["input_dim"])
    x = np.sin(0.37 * grid).astype("float32")
    if task == "polyphonic":
        x = (x > 0.6).astype("float32")
        y = (np.cos(0.53 * grid[..., : m["output_dim"]]) > 0.6).astype("float32")
        return x, y, weights
    if task == "timit":
        return x, np.array([[3, 17, 0], [5, 9, 44]], "int32"), None
    return x, np.array([[0.25], [1.5]], "float32"), None


def record(name, overrides=None):
    """The golden entry of ``name`` as built today."""
    config = zoo.get_config(name, **(overrides or {}))
    model = zoo.build(config)
    deterministic_weights(model)
    x, y, w = batch(config)
    out = keras.ops.convert_to_numpy(model(x, training=False)).astype("float64")
    loss = model.loss(y, out.astype("float32"), sample_weight=w)
    added = sum(float(keras.ops.convert_to_numpy(v)) for v in model.losses)
    flat = out.reshape(-1)
    return {
        "params": int(model.count_params()),
        "layers": [_class_name(layer) for layer in model.layers],
        "shapes": [list(v.shape) for v in model.weights],
        "objects": [_objects(layer) for layer in model.layers],
        "output": {
            "shape": list(out.shape),
            "mean": float(flat.mean()),
            "abs_mean": float(np.abs(flat).mean()),
            "std": float(flat.std()),
            "probes": [float(flat[i % flat.size]) for i in PROBES],
        },
        "loss": float(keras.ops.convert_to_numpy(loss)),
        "loss_class": type(model.loss).__name__,
        "optimizer": _optimizer(model.optimizer),
        "added_losses": added,
    }


def _objects(layer):
    """The Keras objects a layer was built with (initializers, regularizers, constraints,
    perturbations), serialized: what the configuration's objects became."""
    if isinstance(layer, keras.layers.Bidirectional):
        return [_objects(layer.forward_layer), _objects(layer.backward_layer)]
    config = layer.get_config()
    keys = sorted(k for k in config if k.endswith(("initializer", "regularizer", "constraint"))
                  or k in ("perturbations", "activation", "output_activation", "rate",
                           "recurrent_rate", "moments", "depth", "units", "return_sequences"))
    return {k: config[k] for k in keys}


def _optimizer(optimizer):
    """The optimizer's class and its hyperparameters (plain numbers)."""
    config = {k: (float(v) if isinstance(v, (float, np.floating)) else v)
              for k, v in optimizer.get_config().items()}
    return {"class": type(optimizer).__name__, **config}


def _class_name(layer):
    """The layer's class; the zoo's inference-mode subclasses of the fast-dropout layers count as
    the layers themselves (their behaviour is checked by the outputs)."""
    if isinstance(layer, keras.layers.Bidirectional):
        return f"Bidirectional({_class_name(layer.forward_layer)})"
    return type(layer).__name__.removeprefix("Marginal")


def main(argv=()):
    names = list(argv) or zoo.list_models()
    golden = {"small": {}, "full": {}}
    for name in names:
        golden["small"][name] = record(name, SMALL)
        golden["full"][name] = record(name)
        keras.backend.clear_session()
        print(name, golden["full"][name]["params"], flush=True)
    PATH.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
