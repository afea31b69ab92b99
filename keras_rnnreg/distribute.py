"""Scaling out: one way to say "data parallel", "TPU" or "multi-worker" on every backend.

```python
from keras_rnnreg import distribute, zoo

strategy = distribute.get("data-parallel")       # every device of this machine
with strategy.scope():                             # build *and* fit inside it
    model = zoo.build("jsb_rnn_ns")
    model.fit(strategy.shard_data(train_batches), epochs=10)

model = zoo.build("jsb_rnn_ns", distribute="data-parallel")   # the same for the zoo
```

``rnnreg train NAME --distribute data-parallel|tpu|multi-worker`` is
``training.train(..., distribute=...)``. Nothing here is a distribution engine of its own; each
kind maps to the one that exists (README, "Data parallel, TPU, multi-worker"): on JAX
``keras.distribution.DataParallel`` over the devices (the TPU ones for ``"tpu"``; every process's
after ``keras.distribution.initialize`` for ``"multi-worker"``), on TensorFlow
``MirroredStrategy`` over the GPUs (else the logical CPU devices), ``TPUStrategy``
(``TPUClusterResolver``) or ``MultiWorkerMirroredStrategy`` (``TF_CONFIG``). PyTorch has none:
:func:`get` raises :class:`DistributeError` saying what to use instead, as it does without a TPU.

**What is exact and what is not** (checked by ``tests/test_distribute.py`` on 4 simulated devices
and on two processes over 127.0.0.1):

* JAX: a training step is *one* jitted computation over the global batch (GSPMD); the batch is
  sharded over the devices, the weights are replicated. Losses, penalties (the norm-stabilizer's
  mean over time and batch), metrics and gradients are those of the global batch: the same as on
  one device up to float rounding. The global batch must split evenly over the devices:
  :meth:`Strategy.shard_data` pads a batch ``(x, y, sample_weight)`` with rows of weight 0 (which
  the zoo's ``mean_with_sample_weight`` losses and weighted metrics ignore; the epoch-mean loss in
  the logs then weights each batch by its padded size), and in a multi-process run gives each
  process its rows of every batch. A batch without sample weights that does not split evenly
  raises :class:`DistributeError`. Inference with a batch that does not split evenly (e.g. the
  polyphonic task's whole-sequence test evaluation) must run without the distribution:
  ``training.train`` evaluates the reloaded best checkpoint on one device.
* TensorFlow: each replica runs the step on its slice of the batch; Keras divides each replica's
  loss (and penalty) by the number of replicas and sums the gradients, so the loss is the mean of
  the replicas' means: the global-batch mean when every replica holds the same sample-weight sum
  (equal slices of an evenly weighted batch), not otherwise (padded sequences of unequal lengths).
  Metrics (NLL per timestep, frame accuracy, ...) keep sums and counts in variables summed over
  replicas, so they are global-batch means in every case; nothing is summed over replicas.
  Keras' ``fit`` reduces the first batch's per-replica slices to build the model, which fails on
  unequal slices, so :meth:`Strategy.shard_data` pads here too (with a warning): a replica that
  holds only padding then adds a loss of 0 to the mean (a batch of 6 on 4 replicas: 3/4 of the
  loss and gradient). Use batch sizes that are multiples of the replica count on TensorFlow.
* Randomness. Weight noise and DropConnect draw weight matrices, ``(rows, cols)`` or
  ``(T, rows, cols)``, whose shape does not depend on the batch. ``per="sequence"`` means one
  draw per training step shared by every timestep and *every sequence of the global batch*;
  ``per="timestep"`` one draw per timestep shared by every sequence of the global batch — on any
  number of devices. On JAX the draw is made once for the global step; on TensorFlow every replica
  draws it itself from a copy of the layer's seed-generator state (a mirrored variable, advanced
  identically on every replica), so all replicas perturb with the same matrix. Both give the same
  numbers as one device with the same seed. Per-example draws (``dropout``, ``recurrent_dropout``,
  ``sampling="local"``) are drawn over the global batch on JAX (the same numbers as on one
  device); on TensorFlow each replica draws for its own slice from the same seed, so the k-th
  example of every replica gets the same noise (correlated across replicas: a known limitation).
* :class:`keras_rnnreg.constraints.SpectralRadiusLimit` is applied to the replicated weights after
  the update (TF: in the cross-replica update of the mirrored variable), so every replica keeps
  identical weights.
* A ``.keras`` file saved under a strategy holds plain arrays and reloads on one device.

**Multi-worker.** JAX: start one process per host (here: per loopback port) with
``KERAS_DISTRIBUTION_JOB_ADDRESSES=host0:port`` (the coordinator),
``KERAS_DISTRIBUTION_NUM_PROCESSES`` and ``KERAS_DISTRIBUTION_PROCESS_ID`` (or pass them to
:func:`get`); :func:`get` must run before any JAX computation. On CPU the cross-process
collectives are JAX's ``gloo`` implementation (its default). Every process feeds the same
pipeline; :meth:`Strategy.shard_data` hands each its rows. TensorFlow: ``TF_CONFIG`` names the
workers and this one's index; create the strategy first thing in the program. Keras 3's
``fit`` under ``MultiWorkerMirroredStrategy`` fails in ``strategy.reduce`` (keras-team/keras#20585:
a tuple of per-replica batches, and ``axis=0`` on scalar logs); the strategy returned here
reduces leaf by leaf and scalars without an axis, nothing else. Every worker runs the same
command with the same seed (the same batches) and writes its own run folder: give each its own
``--out`` (what was checked over 127.0.0.1 is in the README).
"""

import contextlib
import os
import warnings

import keras
import numpy as np

__all__ = ["KINDS", "DistributeError", "ShardedBatches", "Strategy", "get", "scope"]

KINDS = ("data-parallel", "tpu", "multi-worker")


class DistributeError(RuntimeError):
    """A distribution that cannot be set up here (backend, devices, cluster settings).

    Examples:
        >>> from keras_rnnreg import distribute
        >>> try:
        ...     distribute.get("gpu-cluster")
        ... except distribute.DistributeError as err:
        ...     print(err)
        unknown distribution 'gpu-cluster': expected one of data-parallel, tpu, multi-worker
    """


class Strategy:
    """A kind of distribution bound to the backend's engine; :func:`get` makes one.

    Args:
        kind: one of :data:`KINDS`.
        backend: ``"jax"`` or ``"tensorflow"``.
        engine: the ``keras.distribution.DataParallel`` (JAX) or ``tf.distribute.Strategy`` (TF).
        num_replicas: devices the global batch is split over (all processes together).
        num_processes: processes of a multi-worker run (1 otherwise).
        process_id: this process' index among them.

    Examples:
        >>> import keras
        >>> from keras_rnnreg import distribute, layers
        >>> strategy = distribute.get("data-parallel")  # every device of this machine
        >>> strategy.kind, strategy.num_replicas >= 1
        ('data-parallel', True)
        >>> with strategy.scope():  # build (and, on JAX, fit) inside the scope
        ...     model = keras.Sequential([keras.Input((None, 3)), layers.LSTM(8)])
    """

    def __init__(self, kind, backend, engine, num_replicas, num_processes=1, process_id=0):
        self.kind = kind
        self.backend = backend
        self.engine = engine
        self.num_replicas = int(num_replicas)
        self.num_processes = int(num_processes)
        self.process_id = int(process_id)

    def __repr__(self):
        return (f"Strategy({self.kind!r}, backend={self.backend!r}, replicas={self.num_replicas}, "
                f"processes={self.num_processes})")

    @contextlib.contextmanager
    def scope(self):
        """Build models and call ``fit`` inside this (JAX: ``fit`` needs the distribution too)."""
        with self.engine.scope():
            yield self

    def activate(self):
        """Make the distribution process-wide (JAX: ``keras.distribution.set_distribution``).

        On TensorFlow a model built under :meth:`scope` keeps its strategy, so this does nothing.
        """
        if self.backend == "jax":
            keras.distribution.set_distribution(self.engine)

    def build(self, fn):
        """``fn()`` (which builds and compiles a model) under the strategy; on JAX the
        distribution stays set afterwards (see :meth:`activate`), so that ``fit`` uses it."""
        self.activate()
        with self.scope():
            return fn()

    def shard_data(self, data):
        """The batches this process feeds: each ``(x, y, sample_weight)`` batch padded to a
        multiple of :attr:`num_replicas` with zero-weight rows; on JAX with several processes,
        then this process's rows (``tf.distribute`` shards between workers by itself)."""
        if data is None:
            return data
        if not isinstance(data, keras.utils.PyDataset):
            raise DistributeError("shard_data expects a keras.utils.PyDataset of (x, y[, "
                                  f"sample_weight]) batches; received {type(data).__name__}")
        if self.backend == "jax":
            return ShardedBatches(data, self.num_replicas, self.num_processes, self.process_id)
        return ShardedBatches(data, self.num_replicas)


class ShardedBatches(keras.utils.PyDataset):
    """A PyDataset's batches, padded to split evenly over ``replicas`` devices and cut to one
    process's rows (see :meth:`Strategy.shard_data`). ``on_epoch_end`` is forwarded.

    Args:
        dataset: a ``keras.utils.PyDataset`` of ``(x, y[, sample_weight])`` batches.
        replicas: the devices of the global batch; each batch is padded to a multiple of it with
            rows of sample weight 0.
        processes: the processes of a multi-worker run; each gets its share of every batch.
        process_id: this process' index among them.

    Examples:
        >>> import numpy as np
        >>> from keras_rnnreg.data import ptb
        >>> from keras_rnnreg.distribute import ShardedBatches
        >>> batches = ptb.make_dataset(np.arange(301) % 7, batch_size=6, shuffle=False)
        >>> x, y, weights = ShardedBatches(batches, replicas=4)[0]
        >>> x.shape, weights[:, 0]  # 6 sequences padded to 8, the padding with weight 0
        ((8, 50), array([1., 1., 1., 1., 1., 1., 0., 0.], dtype=float32))
    """

    def __init__(self, dataset, replicas, processes=1, process_id=0):
        super().__init__()
        self.dataset = dataset
        self.replicas = int(replicas)
        self.processes = int(processes)
        self.process_id = int(process_id)
        self._warned = False

    def __len__(self):
        return len(self.dataset)

    @property
    def num_batches(self):
        return len(self.dataset)

    def on_epoch_end(self):
        self.dataset.on_epoch_end()

    def __getitem__(self, index):
        batch = self.dataset[index]
        if not isinstance(batch, tuple):
            batch = (batch,)
        arrays = [np.asarray(a) for a in batch]
        size = arrays[0].shape[0]
        padded = -(-size // self.replicas) * self.replicas
        if padded != size:
            if len(arrays) < 3:
                raise DistributeError(f"a batch of {size} rows does not split over {self.replicas} "
                                      "devices and has no sample weights to pad it with: use a "
                                      f"batch size that is a multiple of {self.replicas} (e.g. "
                                      f"--set data.batch_size={padded})")
            extra = padded - size
            if self.processes == 1 and keras.backend.backend() == "tensorflow" and not self._warned:
                self._warned = True
                warnings.warn(
                    f"a batch of {size} rows is padded to {padded} for {self.replicas} replicas; "
                    "on "
                    "TensorFlow the loss is the mean of the replicas' means, so zero-weight rows "
                    "scale it down: for exact global-batch losses use a batch size that is a "
                    f"multiple of {self.replicas} (metrics stay exact)",
                    stacklevel=2,
                )
            arrays = [np.concatenate([a, np.repeat(a[-1:], extra, axis=0)]) for a in arrays[:2]] + [
                np.concatenate([w, np.zeros((extra,) + w.shape[1:], w.dtype)]) for w in arrays[2:]
            ]
        if self.processes > 1:
            rows = padded // self.processes
            arrays = [a[self.process_id * rows : (self.process_id + 1) * rows] for a in arrays]
        return tuple(arrays)


# ----------------------------------------------------------------------------------------- get
def get(kind, *, devices=None, tpu=None, job_addresses=None, num_processes=None, process_id=None):
    """A :class:`Strategy` for ``kind`` on the current Keras backend.

    Args:
        kind: ``"data-parallel"``, ``"tpu"`` or ``"multi-worker"`` (or a :class:`Strategy`,
            returned as is).
        devices: data-parallel only: the devices to use (JAX device objects or
            ``"cpu:0"``-style names; TF device strings); default every device of the machine.
        tpu: TensorFlow TPU name or address for ``TPUClusterResolver`` (default: from the
            environment, e.g. a Cloud TPU VM).
        job_addresses: JAX multi-worker: the coordinator's ``host:port`` (default:
            ``$KERAS_DISTRIBUTION_JOB_ADDRESSES``).
        num_processes: JAX multi-worker: the number of processes (default:
            ``$KERAS_DISTRIBUTION_NUM_PROCESSES``).
        process_id: JAX multi-worker: this process' index (default:
            ``$KERAS_DISTRIBUTION_PROCESS_ID``).
    """
    if isinstance(kind, Strategy):
        return kind
    if kind not in KINDS:
        raise DistributeError(f"unknown distribution {kind!r}: expected one of {', '.join(KINDS)}")
    backend = keras.backend.backend()
    if backend == "jax":
        return _jax(kind, devices, job_addresses, num_processes, process_id)
    if backend == "tensorflow":
        return _tensorflow(kind, devices, tpu)
    raise DistributeError(f"distribute={kind!r} is not available on the {backend} backend: Keras "
                          "has no distribution API for it. Use KERAS_BACKEND=jax "
                          "(keras.distribution) or KERAS_BACKEND=tensorflow (tf.distribute), or "
                          "torch.distributed / DistributedDataParallel in a training loop of your "
                          "own.")


def scope(strategy):
    """``strategy.scope()``, or a context that does nothing for ``None`` (or a kind string)."""
    if strategy is None:
        return contextlib.nullcontext()
    return get(strategy).scope()


# ----------------------------------------------------------------------------------------- JAX
def _jax(kind, devices, job_addresses, num_processes, process_id):
    import jax

    if kind == "multi-worker":
        if not jax.distributed.is_initialized():  # (jax.process_count() would start the backend)
            env = {k: os.environ.get(f"KERAS_DISTRIBUTION_{k.upper()}")
                   for k in ("job_addresses", "num_processes", "process_id")}
            job_addresses = job_addresses or env["job_addresses"]
            num_processes = num_processes if num_processes is not None else env["num_processes"]
            process_id = process_id if process_id is not None else env["process_id"]
            if not job_addresses or num_processes is None or process_id is None:
                raise DistributeError(
                    "distribute='multi-worker' on JAX needs the coordinator address, the number of "
                    "processes and this process's id: set KERAS_DISTRIBUTION_JOB_ADDRESSES "
                    "(e.g. 10.0.0.1:1234), KERAS_DISTRIBUTION_NUM_PROCESSES and "
                    "KERAS_DISTRIBUTION_PROCESS_ID, or pass them to distribute.get")
            try:
                keras.distribution.initialize(job_addresses, int(num_processes), int(process_id))
            except RuntimeError as err:
                raise DistributeError(f"jax.distributed.initialize failed ({err}); it must run "
                                      "before any JAX computation: create the multi-worker "
                                      "strategy first thing in the program") from err
        engine = keras.distribution.DataParallel(devices=jax.devices(), auto_shard_dataset=False)
        return Strategy(kind, "jax", engine, len(jax.devices()), jax.process_count(),
                        jax.process_index())
    if kind == "tpu":
        try:
            devices = jax.devices("tpu")
        except RuntimeError as err:
            raise DistributeError(f"distribute='tpu': JAX finds no TPU here ({err}). On a Cloud "
                                  "TPU VM install jax[tpu]; elsewhere use "
                                  "distribute='data-parallel' (GPUs or CPU devices)") from err
    elif devices is None:
        devices = jax.local_devices() if jax.process_count() == 1 else jax.devices()
    engine = keras.distribution.DataParallel(devices=list(devices))
    return Strategy(kind, "jax", engine, len(devices))


# ---------------------------------------------------------------------------------- TensorFlow
def _tensorflow(kind, devices, tpu):
    import tensorflow as tf

    if kind == "data-parallel":
        if devices is None:
            gpus = tf.config.list_logical_devices("GPU")
            devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        engine = tf.distribute.MirroredStrategy(devices=list(devices))
    elif kind == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as err:
            raise DistributeError(f"distribute='tpu': no TPU found ({type(err).__name__}: {err}). "
                                  "On a Cloud TPU VM the resolver finds it by itself; elsewhere "
                                  "pass tpu=NAME_OR_ADDRESS, or use distribute='data-parallel' "
                                  "(GPUs or CPU devices)") from err
        engine = tf.distribute.TPUStrategy(resolver)
    else:
        if not os.environ.get("TF_CONFIG"):
            raise DistributeError("distribute='multi-worker' on TensorFlow needs TF_CONFIG, e.g. "
                                  '{"cluster": {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]}, '
                                  '"task": {"type": "worker", "index": 0}} on the first worker')
        engine = _multi_worker_strategy()
    workers, task = 1, 0
    if kind == "multi-worker":
        resolver = engine.cluster_resolver
        workers = max(1, len(resolver.cluster_spec().as_dict().get("worker", [])))
        task = resolver.task_id or 0
    return Strategy(kind, "tensorflow", engine, engine.num_replicas_in_sync, workers, task)


def _multi_worker_strategy():
    import tensorflow as tf

    class MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        """tf.distribute's strategy; ``reduce`` goes leaf by leaf and reduces scalars without an
        axis, which Keras 3's ``fit`` needs (keras-team/keras#20585)."""

        def reduce(self, reduce_op, value, axis):
            parent = super()

            def one(v):
                local = self.experimental_local_results(v)[0]
                leaf_axis = None if axis is not None and local.shape.rank == 0 else axis
                return parent.reduce(reduce_op, v, leaf_axis)

            return tf.nest.map_structure(one, value)

    return MultiWorkerMirroredStrategy()
