"""TIMIT phone recognition (the norm-stabilizer paper, Sec. 2.2): CTC, phone error rate."""

import keras
import numpy as np

from keras_rnnreg.data import timit
from keras_rnnreg.zoo.tasks import SYNTHETIC, Task, register

__all__ = ["TIMIT", "ValidationPER"]


class ValidationPER(keras.callbacks.Callback):
    """Adds ``val_per`` (phone error rate on the validation split, in %) to the epoch logs, for
    early stopping on the development set as the norm-stabilizer paper does (Sec. 2.2)."""

    def __init__(self, split):
        super().__init__()
        self.split = split

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["val_per"] = 100.0 * timit.evaluate(self.model, self.split)["per"]


class TIMIT(Task):
    name = "timit"
    metric = "per"
    metric_label = "test phone error rate (%)"

    def load(self, config, source):
        if source == SYNTHETIC:
            return self.synthetic(config)
        return timit.load(source)

    def pipelines(self, config, data, seed):
        b = config["data"]["batch_size"]
        return (timit.make_dataset(data["train"], b, seed=seed),
                timit.make_dataset(data["valid"], b, shuffle=False))

    def compile_args(self, config):
        return {"loss": keras.losses.CTC(), "weighted_metrics": None, "metrics": None}

    def epoch_callbacks(self, config, data):
        return [ValidationPER(data["valid"])] if config["training"]["monitor"] == "val_per" else []

    def extra_logs(self, config):
        return ("val_per",)

    def evaluate(self, model, config, data, split="test"):
        out = timit.evaluate(model, data[split])
        return {**out, "per": 100.0 * out["per"]}

    def synthetic(self, config, seed=0):
        rng = np.random.default_rng(seed)
        n = config["data"]["limit"] or 4
        dim = config["model"]["input_dim"]

        def split(k):
            frames = [int(rng.integers(16, 28)) for _ in range(k)]
            return {
                "features": [rng.normal(size=(f, dim)).astype("float32") for f in frames],
                "labels": [rng.integers(1, 62, size=int(rng.integers(2, 5))).astype("int32")
                           for _ in frames],
                "ids": [f"SYN{i}" for i in range(k)],
            }

        return {"train": split(n), "valid": split(max(2, n // 2)), "test": split(max(2, n // 2))}

    def batch(self, config, batch_size=2, seed=0):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(batch_size, 12, config["model"]["input_dim"])).astype("float32")
        y = np.zeros((batch_size, 4), "int32")
        y[:, :3] = rng.integers(1, 62, size=(batch_size, 3))
        return x, y, None


register(TIMIT())
