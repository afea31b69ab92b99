"""The adding problem (the norm-stabilizer paper, Sec. 2.3): generated sequences, test MSE."""

import keras
import numpy as np

from keras_rnnreg.data import _batching, adding
from keras_rnnreg.zoo.tasks import SYNTHETIC, Task, register

__all__ = ["Adding"]


class Adding(Task):
    name = "adding"
    metric = "mse"
    metric_label = "test mean squared error"
    named_sources = (SYNTHETIC, "generated")

    def load(self, config, source):
        d = config["data"]
        sizes = {"train": d["train_size"], "valid": d["valid_size"], "test": d["test_size"]}
        if source == SYNTHETIC:
            sizes = {k: min(v, d["limit"] or 32) for k, v in sizes.items()}
        seeds = {"train": 0, "valid": 1, "test": 2}
        return {split: adding.generate(n, length=d["length"], seed=1000 + seeds[split])
                for split, n in sizes.items()}

    def pipelines(self, config, data, seed):
        b = config["data"]["batch_size"]
        return (_batching.ArrayBatches(data["train"], b, seed=seed),
                _batching.ArrayBatches(data["valid"], max(b, 256), shuffle=False))

    def compile_args(self, config):
        return {"loss": keras.losses.MeanSquaredError(), "weighted_metrics": None, "metrics": None}

    def evaluate(self, model, config, data, split="test"):
        x, y = data[split]
        pred = np.asarray(model.predict(x, batch_size=256, verbose=0)).reshape(-1)
        mse = float(np.mean((pred - y.reshape(-1)) ** 2))
        base = adding.baselines(x, y)
        return {"mse": mse, "constant_baseline": base["constant"],
                "short_sighted_baseline": base["short_sighted"],
                "beats_short_sighted": mse < base["short_sighted"],
                "beats_constant": mse < base["constant"]}

    def synthetic(self, config, seed=0):
        return self.load(config, SYNTHETIC)

    def batch(self, config, batch_size=2, seed=0):
        x, y = adding.generate(batch_size, length=config["data"]["length"], seed=seed)
        return x, y, None


register(Adding())
