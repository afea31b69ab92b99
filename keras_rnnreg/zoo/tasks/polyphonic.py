"""Polyphonic music (the noise study, Sec. 10): piano rolls of 88 notes, NLL per timestep."""

import keras
import numpy as np
from keras import ops

from keras_rnnreg import metrics
from keras_rnnreg._api import serializable
from keras_rnnreg.data import polyphonic
from keras_rnnreg.zoo.tasks import SYNTHETIC, Task, register

__all__ = ["FrontPaddingMask", "NoteCrossEntropy", "Polyphonic"]


@serializable
class FrontPaddingMask(keras.layers.Layer):
    """Its input unchanged, with a Keras mask that is False on the leading all-zero steps of each
    sequence (the pipelines' front padding, ``data.mask_padding``): the recurrent layers keep
    their initial state there. A silent frame after the first sounding one stays unmasked; a
    piece that opens with silence has those frames masked too (our reading: harmless, the state
    is the initial one either way up to the bias).

    Why: a layer-normalized recurrence fed all-zero steps from a zero state normalizes the zero
    vector, whose gradient is the gain over sqrt(ε) at every step, and the gradient through ~20
    padded steps overflows (NaN from the first batch of JSB Chorales with ε = 1e-3).
    """

    supports_masking = True

    def call(self, inputs):
        return inputs

    def compute_mask(self, inputs, mask=None):
        sounding = ops.cast(ops.any(ops.not_equal(inputs, 0), axis=-1), "int32")
        started = ops.cumsum(sounding, axis=1) > 0
        return started if mask is None else ops.logical_and(started, mask)


@serializable
class NoteCrossEntropy(keras.losses.Loss):
    """The noise study's loss (Sec. 10.2): binary cross-entropy *summed* over the notes of a
    timestep, averaged over the (weighted) timesteps.

    With the pipelines' per-timestep sample weights (0 on padding) and the
    ``"mean_with_sample_weight"`` reduction, the loss of a batch is exactly its NLL per timestep
    in nats (Table 1's number), and padding does not dilute it.
    """

    def __init__(self, from_logits=False, reduction="mean_with_sample_weight",
                 name="note_cross_entropy", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        notes = ops.shape(y_pred)[-1]
        bce = keras.losses.binary_crossentropy(y_true, y_pred, from_logits=self.from_logits)
        return bce * ops.cast(notes, bce.dtype)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits}


class Polyphonic(Task):
    name = "polyphonic"
    metric = "nll"
    metric_label = "test NLL per timestep (nats)"
    named_sources = (SYNTHETIC, "music21-chorales")

    def inputs(self, config):
        inputs, x = super().inputs(config)
        if config["data"]["mask_padding"]:
            x = FrontPaddingMask(name="front_padding_mask")(x)
        return inputs, x

    def comparable(self, source, data):
        return source not in (SYNTHETIC, polyphonic.CHORALES)

    def load(self, config, source):
        if source == SYNTHETIC:
            return self.synthetic(config)
        if source == polyphonic.CHORALES:
            return polyphonic.load(source, limit=config["data"]["limit"])
        return polyphonic.load(source)

    def pipelines(self, config, data, seed):
        d = config["data"]
        train = polyphonic.make_dataset(data["train"], batch_size=d["batch_size"],
                                        chunk=d["chunk"], seed=seed)
        valid = polyphonic.make_dataset(data["valid"], batch_size=max(d["batch_size"], 100),
                                        chunk=d["chunk"], shuffle=False)
        return train, valid

    def compile_args(self, config):
        return {"loss": NoteCrossEntropy(), "metrics": None,
                "weighted_metrics": [metrics.NLLPerTimestep(), metrics.FrameAccuracy()]}

    def evaluate(self, model, config, data, split="test"):
        return polyphonic.evaluate(model, data[split])

    def synthetic(self, config, seed=0):
        rng = np.random.default_rng(seed)
        n = config["data"]["limit"] or 6
        chord_bank = (rng.random((5, 88)) < 0.05).astype(np.uint8)

        def piece():
            steps = int(rng.integers(12, 30))
            return chord_bank[rng.integers(0, len(chord_bank), size=steps)]

        return {split: [piece() for _ in range(n if split == "train" else max(2, n // 2))]
                for split in ("train", "valid", "test")}

    def batch(self, config, batch_size=2, seed=0):
        rng = np.random.default_rng(seed)
        x = (rng.random((batch_size, 7, 88)) < 0.1).astype("float32")
        y = (rng.random((batch_size, 7, 88)) < 0.1).astype("float32")
        w = np.ones((batch_size, 7), "float32")
        w[0, :2] = 0.0
        return x, y, w


register(Polyphonic())
