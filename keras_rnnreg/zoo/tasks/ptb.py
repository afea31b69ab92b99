"""Character-level Penn Treebank (the norm-stabilizer paper, Sec. 2.1): bits per character."""

import warnings
from pathlib import Path

import keras
import numpy as np
from keras import ops

from keras_rnnreg import metrics
from keras_rnnreg._api import serializable
from keras_rnnreg.data import ptb
from keras_rnnreg.zoo.tasks import SYNTHETIC, Task, register

__all__ = ["OneHot", "PTB"]


@serializable
class OneHot(keras.layers.Layer):
    """Integer ids (batch, time) -> one-hot floats (batch, time, depth); character-level PTB."""

    def __init__(self, depth, **kwargs):
        super().__init__(**kwargs)
        self.depth = int(depth)

    def call(self, inputs):
        return ops.one_hot(ops.cast(inputs, "int32"), self.depth, dtype=self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.depth,)

    def get_config(self):
        return {**super().get_config(), "depth": self.depth}


class PTB(Task):
    name = "ptb"
    metric = "bpc"
    metric_label = "test bits per character"

    def comparable(self, source, data):
        return source != SYNTHETIC and not data.get("smoke", False)

    def load(self, config, source):
        if source == SYNTHETIC:
            return self.synthetic(config)
        folder = Path(source)
        if any((folder / f).exists() for f in ("ptb.char.train.txt", "ptb.train.txt")):
            return {**ptb.load(folder), "smoke": False}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = ptb.load(folder, vocab_from="valid")
        # Smoke set-up (no training split): train on 90% of valid, validate on the rest, test on
        # test. Not the paper's set-up; the report says so.
        valid = data["valid"]
        cut = int(len(valid) * 0.9)
        data["train"], data["valid"] = valid[:cut], valid[cut:]
        data["smoke"] = True
        return data

    def adjust(self, config, data):
        size = len(data["vocab"])
        notes, changes = [], {}
        if config["model"]["input_dim"] != size or config["model"]["output_dim"] != size:
            notes.append(f"vocabulary of {size} symbols: model.input_dim = model.output_dim = "
                         f"{size}")
            changes = {"model.input_dim": size, "model.output_dim": size}
        if data.get("smoke"):
            notes.append("no PTB training split: trained on 90% of the validation split, "
                         "validated on the other 10%, tested on the test split (a smoke test, not "
                         "the paper's set-up)")
        return changes, notes

    def pipelines(self, config, data, seed):
        d = config["data"]
        train = ptb.make_dataset(data["train"], batch_size=d["batch_size"], seq_len=d["seq_len"],
                                 seed=seed)
        valid = ptb.make_dataset(data["valid"], batch_size=max(d["batch_size"], 128),
                                 seq_len=d["seq_len"], shuffle=False)
        return train, valid

    def inputs(self, config):
        """Character ids ``(batch, time)``, one-hot encoded by :class:`OneHot`."""
        inputs = keras.Input((None,), dtype="int32", name="characters")
        return inputs, OneHot(config["model"]["input_dim"], name="one_hot")(inputs)

    def compile_args(self, config):
        loss = keras.losses.SparseCategoricalCrossentropy(reduction="mean_with_sample_weight")
        return {"loss": loss, "weighted_metrics": [metrics.BitsPerCharacter()], "metrics": None}

    def evaluate(self, model, config, data, split="test"):
        return ptb.evaluate(model, data[split], seq_len=config["data"]["seq_len"])

    def synthetic(self, config, seed=0):
        rng = np.random.default_rng(seed)
        vocab_size = config["model"]["input_dim"]
        n = (config["data"]["limit"] or 4) * config["data"]["seq_len"]
        # A repetitive stream (learnable), ids in [0, vocab_size).
        base = rng.integers(0, vocab_size, size=17)

        def stream(k):
            return np.resize(base, k).astype(np.int32)

        return {"train": stream(n + 1), "valid": stream(n // 2 + 1), "test": stream(n // 2 + 1),
                "vocab": [chr(65 + i % 60) for i in range(vocab_size)], "smoke": False}

    def batch(self, config, batch_size=2, seed=0):
        rng = np.random.default_rng(seed)
        v = config["model"]["input_dim"]
        x = rng.integers(0, v, size=(batch_size, 6)).astype("int32")
        y = rng.integers(0, v, size=(batch_size, 6)).astype("int32")
        return x, y, np.ones((batch_size, 6), "float32")


register(PTB())
