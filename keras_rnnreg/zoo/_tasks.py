"""What each task needs besides the network: data, pipelines, the number to report.

One class per data family of :mod:`keras_rnnreg.data`, used by :mod:`keras_rnnreg.training`
and the tests:

* ``load(config, source)`` -> the splits (``source`` already resolved to a path, or one of the
  named sources ``"synthetic"`` / ``"music21-chorales"``);
* ``pipelines(config, data, seed)`` -> ``(train, validation)`` for ``model.fit``;
* ``evaluate(model, config, data, split)`` -> a dict holding the headline number ``metric``;
* ``synthetic(config, seed)`` -> tiny random splits of the right form (CI, quick cards) and
  ``batch(config)`` -> one ``(x, y[, sample_weight])`` batch for a single training step.

``"synthetic"`` data are random and say nothing about the papers: they exist so that every
configuration and card runs in seconds without downloads.
"""

import os
import warnings
from pathlib import Path

import keras
import numpy as np

SYNTHETIC = "synthetic"
DATA_ROOT_ENV = "RNNREG_DATA"


class DataNotFoundError(FileNotFoundError):
    """A configuration's data could not be found; the message says where we looked."""


class DataError(ValueError):
    """The data was found but cannot be used (unreadable, wrong keys, bad symbols); names the file."""


class FirstBatches(keras.utils.PyDataset):
    """The first ``steps`` batches of every epoch of a pipeline (``training.max_steps_per_epoch``)."""

    def __init__(self, data, steps):
        super().__init__()
        self.data = data
        self.steps = int(steps)

    def __len__(self):
        return min(len(self.data), self.steps)

    @property
    def num_batches(self):
        return len(self)

    def __getitem__(self, index):
        if index >= len(self):
            raise IndexError(f"batch index {index} out of range for {len(self)} batches")
        return self.data[index]

    def on_epoch_end(self):
        self.data.on_epoch_end()


def pipelines(task, config, data, seed):
    """``task.pipelines`` with ``training.max_steps_per_epoch`` applied to the training pipeline."""
    train, valid = task.pipelines(config, data, seed)
    steps = config["training"]["max_steps_per_epoch"]
    return (train if steps is None else FirstBatches(train, steps)), valid


def resolve_source(source, data_root=None, name="", named=(SYNTHETIC,)):
    """The data source as a path string (or a named source), searching the data roots.

    A relative path is looked up in the current folder, then under ``data_root`` and under
    ``$RNNREG_DATA``. Named sources (``"synthetic"``, ``"music21-chorales"``, ``"generated"``)
    pass through.
    """
    if source is None:
        raise DataNotFoundError(
            f"{name or 'this configuration'} has no default data: pass --data PATH "
            "(or data.source) pointing at the corpus"
        )
    if source in named:
        return source
    path = Path(source).expanduser()
    roots = [r for r in (data_root, os.environ.get(DATA_ROOT_ENV)) if r]
    candidates = [path] if path.is_absolute() else [path] + [Path(r).expanduser() / path for r in roots]
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    looked = ", ".join(str(c) for c in candidates)
    raise DataNotFoundError(
        f"data for {name or 'this configuration'} not found: {source!r} (looked at {looked}). "
        f"Pass --data PATH, or --data-root / ${DATA_ROOT_ENV} = the folder holding {source}"
    )


class Task:
    name = ""
    metric = ""  # the headline number of evaluate()
    metric_label = ""
    named_sources = (SYNTHETIC,)  # sources that are not paths

    def comparable(self, source, data):
        return source != SYNTHETIC

    def load(self, config, source):
        raise NotImplementedError

    def pipelines(self, config, data, seed):
        raise NotImplementedError

    def evaluate(self, model, config, data, split="test"):
        raise NotImplementedError

    def synthetic(self, config, seed=0):
        raise NotImplementedError

    def batch(self, config, batch_size=2, seed=0):
        raise NotImplementedError

    def epoch_callbacks(self, config, data):
        """Callbacks that compute validation numbers Keras metrics cannot (TIMIT's PER)."""
        return []

    def adjust(self, config, data):
        """Config changes the data impose (PTB's vocabulary size); returns notes."""
        return []

    def extra_logs(self, config):
        """Epoch-log keys that :meth:`epoch_callbacks` add (possible ``training.monitor`` values)."""
        return ()


# --------------------------------------------------------------------------------- polyphonic
class Polyphonic(Task):
    name = "polyphonic"
    metric = "nll"
    metric_label = "test NLL per timestep (nats)"
    named_sources = (SYNTHETIC, "music21-chorales")

    def comparable(self, source, data):
        from keras_rnnreg.data import polyphonic

        return source not in (SYNTHETIC, polyphonic.CHORALES)

    def load(self, config, source):
        from keras_rnnreg.data import polyphonic

        if source == SYNTHETIC:
            return self.synthetic(config)
        if source == polyphonic.CHORALES:
            return polyphonic.load(source, limit=config["data"]["limit"])
        return polyphonic.load(source)

    def pipelines(self, config, data, seed):
        from keras_rnnreg.data import polyphonic

        d = config["data"]
        train = polyphonic.make_dataset(data["train"], batch_size=d["batch_size"], chunk=d["chunk"], seed=seed)
        valid = polyphonic.make_dataset(data["valid"], batch_size=max(d["batch_size"], 100), chunk=d["chunk"],
                                        shuffle=False)
        return train, valid

    def evaluate(self, model, config, data, split="test"):
        from keras_rnnreg.data import polyphonic

        eager = model.run_eagerly
        if keras.backend.backend() == "tensorflow" and any(
            type(layer).__name__.startswith("MarginalFastDropout") for layer in model.layers
        ):
            # Workaround: FastDropoutRNN's moment loop fails to trace on TensorFlow when the time
            # axis is unknown, which predict_on_batch makes it after the first retrace of whole
            # test sequences of varying lengths. Run those predictions eagerly.
            model.run_eagerly = True
        try:
            return polyphonic.evaluate(model, data[split])
        finally:
            model.run_eagerly = eager

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


# ---------------------------------------------------------------------------------------- ptb
class PTB(Task):
    name = "ptb"
    metric = "bpc"
    metric_label = "test bits per character"

    def comparable(self, source, data):
        return source != SYNTHETIC and not data.get("smoke", False)

    def load(self, config, source):
        from keras_rnnreg.data import ptb

        if source == SYNTHETIC:
            return self.synthetic(config)
        folder = Path(source)
        has_train = any((folder / f).exists() for f in ("ptb.char.train.txt", "ptb.train.txt"))
        if has_train:
            data = ptb.load(folder)
            data["smoke"] = False
            return data
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
        notes = []
        if config["model"]["input_dim"] != size or config["model"]["output_dim"] != size:
            notes.append(f"vocabulary of {size} symbols: model.input_dim = model.output_dim = {size}")
            config["model"]["input_dim"] = config["model"]["output_dim"] = size
        if data.get("smoke"):
            notes.append("no PTB training split: trained on 90% of the validation split, validated on "
                         "the other 10%, tested on the test split (a smoke test, not the paper's set-up)")
        return notes

    def pipelines(self, config, data, seed):
        from keras_rnnreg.data import ptb

        d = config["data"]
        train = ptb.make_dataset(data["train"], batch_size=d["batch_size"], seq_len=d["seq_len"], seed=seed)
        valid = ptb.make_dataset(data["valid"], batch_size=max(d["batch_size"], 128), seq_len=d["seq_len"],
                                 shuffle=False)
        return train, valid

    def evaluate(self, model, config, data, split="test"):
        from keras_rnnreg.data import ptb

        return ptb.evaluate(model, data[split], seq_len=config["data"]["seq_len"])

    def synthetic(self, config, seed=0):
        rng = np.random.default_rng(seed)
        vocab_size = config["model"]["input_dim"]
        n = (config["data"]["limit"] or 4) * config["data"]["seq_len"]
        # A repetitive stream (learnable), ids in [0, vocab_size).
        base = rng.integers(0, vocab_size, size=17)
        stream = lambda k: np.resize(base, k).astype(np.int32)  # noqa: E731
        return {"train": stream(n + 1), "valid": stream(n // 2 + 1), "test": stream(n // 2 + 1),
                "vocab": [chr(65 + i % 60) for i in range(vocab_size)], "smoke": False}

    def batch(self, config, batch_size=2, seed=0):
        rng = np.random.default_rng(seed)
        v = config["model"]["input_dim"]
        x = rng.integers(0, v, size=(batch_size, 6)).astype("int32")
        y = rng.integers(0, v, size=(batch_size, 6)).astype("int32")
        return x, y, np.ones((batch_size, 6), "float32")


# -------------------------------------------------------------------------------------- timit
class ValidationPER(keras.callbacks.Callback):
    """Adds ``val_per`` (phone error rate on the validation split, in %) to the epoch logs, for
    early stopping on the development set as the norm-stabilizer paper does (Sec. 2.2)."""

    def __init__(self, split):
        super().__init__()
        self.split = split

    def on_epoch_end(self, epoch, logs=None):
        from keras_rnnreg.data import timit

        if logs is not None:
            logs["val_per"] = 100.0 * timit.evaluate(self.model, self.split)["per"]


class TIMIT(Task):
    name = "timit"
    metric = "per"
    metric_label = "test phone error rate (%)"

    def load(self, config, source):
        from keras_rnnreg.data import timit

        if source == SYNTHETIC:
            return self.synthetic(config)
        return timit.load(source)

    def pipelines(self, config, data, seed):
        from keras_rnnreg.data import timit

        b = config["data"]["batch_size"]
        return timit.make_dataset(data["train"], b, seed=seed), timit.make_dataset(data["valid"], b, shuffle=False)

    def epoch_callbacks(self, config, data):
        if config["training"]["monitor"] == "val_per":
            return [ValidationPER(data["valid"])]
        return []

    def extra_logs(self, config):
        return ("val_per",)

    def evaluate(self, model, config, data, split="test"):
        from keras_rnnreg.data import timit

        out = timit.evaluate(model, data[split])
        out["per"] = 100.0 * out["per"]
        return out

    def synthetic(self, config, seed=0):
        rng = np.random.default_rng(seed)
        n = config["data"]["limit"] or 4
        dim = config["model"]["input_dim"]

        def split(k):
            frames = [int(rng.integers(16, 28)) for _ in range(k)]
            return {
                "features": [rng.normal(size=(f, dim)).astype("float32") for f in frames],
                "labels": [rng.integers(1, 62, size=int(rng.integers(2, 5))).astype("int32") for _ in frames],
                "ids": [f"SYN{i}" for i in range(k)],
            }

        return {"train": split(n), "valid": split(max(2, n // 2)), "test": split(max(2, n // 2))}

    def batch(self, config, batch_size=2, seed=0):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(batch_size, 12, config["model"]["input_dim"])).astype("float32")
        y = np.zeros((batch_size, 4), "int32")
        y[:, :3] = rng.integers(1, 62, size=(batch_size, 3))
        return x, y, None


# ------------------------------------------------------------------------------------- adding
class Adding(Task):
    name = "adding"
    metric = "mse"
    metric_label = "test mean squared error"
    named_sources = (SYNTHETIC, "generated")

    def load(self, config, source):
        from keras_rnnreg.data import adding

        d = config["data"]
        small = source == SYNTHETIC
        sizes = {"train": d["train_size"], "valid": d["valid_size"], "test": d["test_size"]}
        if small:
            sizes = {k: min(v, d["limit"] or 32) for k, v in sizes.items()}
        seeds = {"train": 0, "valid": 1, "test": 2}
        return {split: adding.generate(n, length=d["length"], seed=1000 + seeds[split]) for split, n in sizes.items()}

    def pipelines(self, config, data, seed):
        from keras_rnnreg.data import _batching

        b = config["data"]["batch_size"]
        return _batching.ArrayBatches(data["train"], b, seed=seed), _batching.ArrayBatches(data["valid"], max(b, 256),
                                                                                           shuffle=False)

    def evaluate(self, model, config, data, split="test"):
        from keras_rnnreg.data import adding

        x, y = data[split]
        pred = np.asarray(model.predict(x, batch_size=256, verbose=0)).reshape(-1)
        mse = float(np.mean((pred - y.reshape(-1)) ** 2))
        base = adding.baselines(x, y)
        return {"mse": mse, "constant_baseline": base["constant"], "short_sighted_baseline": base["short_sighted"],
                "beats_short_sighted": mse < base["short_sighted"], "beats_constant": mse < base["constant"]}

    def synthetic(self, config, seed=0):
        return self.load(config, SYNTHETIC)

    def batch(self, config, batch_size=2, seed=0):
        from keras_rnnreg.data import adding

        x, y = adding.generate(batch_size, length=config["data"]["length"], seed=seed)
        return x, y, None


TASKS = {t.name: t for t in (Polyphonic(), PTB(), TIMIT(), Adding())}


def get(config):
    return TASKS[config["task"]]
