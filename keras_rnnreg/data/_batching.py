"""Batching shared by the pipelines: ``keras.utils.PyDataset`` subclasses (any backend).

The order of epoch ``e`` is drawn from ``numpy.random.default_rng([seed, e])`` (``fit``'s own
``shuffle=True`` would also permute whole batches). TensorFlow fixes the batch shapes from the
first two batches it reads, so :class:`PaddedBatches` pads the second a few extra steps when it
would otherwise have the first one's length (a variable time axis is then inferred).
"""

import keras
import numpy as np

from keras_rnnreg._api import check_int


class EpochBatches(keras.utils.PyDataset):
    """Base class: ``n`` items cut into batches of ``batch_size``, reshuffled every epoch."""

    def __init__(self, n, batch_size, shuffle=True, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.n = int(n)
        if self.n < 1:
            raise ValueError("the dataset is empty: there is nothing to batch")
        self.batch_size = check_int("batch_size", batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.epoch = 0
        self._plan = self._make_plan()

    # The batches of the current epoch, as a list of index arrays.
    def _make_plan(self):
        order = np.arange(self.n)
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        return [order[i : i + self.batch_size] for i in range(0, self.n, self.batch_size)]

    def __len__(self):
        return len(self._plan)

    def __getitem__(self, index):
        if index < 0:
            index += len(self._plan)
        if not 0 <= index < len(self._plan):
            raise IndexError(f"batch index {index} out of range for {len(self._plan)} batches")
        return self._batch(self._plan[index], index)

    def _batch(self, indices, position):
        raise NotImplementedError

    def on_epoch_end(self):
        if self.shuffle:
            self.epoch += 1
            self._plan = self._make_plan()


class ArrayBatches(EpochBatches):
    """Batches of equally shaped arrays: ``arrays`` is a tuple (inputs, targets[, weights])."""

    def __init__(self, arrays, batch_size, shuffle=True, seed=0, **kwargs):
        self.arrays = tuple(np.asarray(a) for a in arrays)
        lengths = {len(a) for a in self.arrays}
        if len(lengths) != 1:
            raise ValueError(f"the arrays differ in their first dimension: {sorted(lengths)}")
        super().__init__(lengths.pop(), batch_size, shuffle=shuffle, seed=seed, **kwargs)

    def _batch(self, indices, position):
        return tuple(a[indices] for a in self.arrays)


def pad_stack(items, length, padding="post", dtype="float32"):
    """Stack arrays of shape (T_i, ...) into (N, length, ...), zero-padded at the end or front."""
    return keras.utils.pad_sequences(items, maxlen=length, dtype=dtype, padding=padding)


class PaddedBatches(EpochBatches):
    """Batches of variable-length items, each batch padded (at the end) to its longest item.

    ``make_batch(indices, length)`` builds one batch padded to ``length`` timesteps;
    ``lengths`` gives each item's length. Shuffling sorts by length inside pools of ``pool``
    batches. ``pad_multiple`` rounds padded lengths up (fewer distinct shapes, fewer
    recompilations on JAX / TensorFlow).
    """

    def __init__(self, lengths, make_batch, batch_size, shuffle=True, seed=0, pool=50,
                 pad_multiple=1, **kwargs):
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.make_batch = make_batch
        self.pool = check_int("pool", pool)
        self.pad_multiple = check_int("pad_multiple", pad_multiple)
        super().__init__(len(self.lengths), batch_size, shuffle=shuffle, seed=seed, **kwargs)

    def _make_plan(self):
        if not self.shuffle:
            return super()._make_plan()
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.n)
        span = self.batch_size * self.pool
        batches = []
        for start in range(0, self.n, span):
            pool = order[start : start + span]
            pool = pool[np.argsort(self.lengths[pool], kind="stable")]
            batches += [pool[i : i + self.batch_size] for i in range(0, len(pool), self.batch_size)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def _batch(self, indices, position):
        def rounded(batch):
            t = int(self.lengths[batch].max())
            return -(-t // self.pad_multiple) * self.pad_multiple

        length = rounded(indices)
        if (position == 1 and self.lengths.min() != self.lengths.max()
                and length == rounded(self._plan[0])):
            length += self.pad_multiple  # see the module docstring
        return self.make_batch(indices, length)


def predict_batch(model, x, expected, same=2):
    """``model``'s output on one batch as NumPy (``predict_on_batch`` when available); a
    ValueError saying ``expected`` unless it is 3-D with the first ``same`` dimensions of ``x``."""
    out = model.predict_on_batch(x) if hasattr(model, "predict_on_batch") else model(x)
    out = np.asarray(keras.ops.convert_to_numpy(out))
    if out.ndim != 3 or out.shape[:same] != x.shape[:same]:
        raise ValueError(f"the model's output has shape {out.shape} for inputs of shape "
                         f"{x.shape}; expected {expected}")
    return out
