"""Scaling out: one way to say "data parallel", "TPU" or "multi-worker" on every backend.

```python
strategy = distribute.get("data-parallel")       # every device of this machine
with strategy.scope():                             # build *and* fit inside it
    model = zoo.build("jsb_rnn_ns")
    model.fit(strategy.shard_data(train_batches), epochs=10)
```

On JAX every kind is ``keras.distribution.DataParallel`` (over the TPU devices for ``"tpu"``,
every process's after ``jax.distributed.initialize`` for ``"multi-worker"``); on TensorFlow
``MirroredStrategy``, ``TPUStrategy`` or ``MultiWorkerMirroredStrategy`` (``TF_CONFIG``). PyTorch
has none: :func:`get` raises :class:`DistributeError` saying what to use instead.

**What is exact and what is not** (checked by ``tests/test_distribute.py`` on 4 simulated devices
and on two processes over 127.0.0.1):

* JAX: a training step is *one* jitted computation over the global batch, sharded over the
  devices with the weights replicated: losses, penalties, metrics and gradients equal one
  device's up to float rounding. :meth:`Strategy.shard_data` pads a batch that does not split
  evenly with rows of sample weight 0 (ignored by the zoo's losses and weighted metrics) and, with
  several processes, gives each its rows; a batch without sample weights that does not split
  raises :class:`DistributeError`. Such inference (the polyphonic whole-sequence test) runs
  without the distribution: ``training.train`` evaluates the best checkpoint on one device.
* TensorFlow: Keras divides each replica's loss by the number of replicas and sums the gradients,
  so the loss is the mean of the replicas' means: the global-batch mean only when every replica
  holds the same sample-weight sum. Metrics are global-batch means in every case. Batches are
  padded here too (with a warning; a replica of padding only adds a loss of 0 to the mean): use
  batch sizes that are multiples of the replica count.
* Randomness: weight noise and DropConnect draw batch-independent matrices, shared by *every
  sequence of the global batch* (``per="sequence"``: one per step; ``per="timestep"``: one per
  timestep); on JAX once for the global step, on TensorFlow by each replica from the same mirrored
  seed-generator state: the same numbers as one device with the same seed. Per-example draws
  (``dropout``, ``recurrent_dropout``, ``sampling="local"``) equal one device's on JAX; on
  TensorFlow each replica draws for its slice from the same seed, so the k-th example of every
  replica gets the same noise (a known limitation).
* :class:`keras_rnnreg.constraints.SpectralRadiusLimit` is applied to the replicated weights after
  the update, so every replica keeps identical weights; a ``.keras`` file saved under a strategy
  reloads on one device.

**Multi-worker.** Create the strategy first thing in the program; every process feeds the same
pipeline; give each its own ``--out``. Keras 3's
``fit`` fails in ``strategy.reduce`` under ``MultiWorkerMirroredStrategy``
(keras-team/keras#20585): the strategy returned here reduces leaf by leaf and scalars without an
axis. Before the framework connects, every process waits in Python, at most ``timeout`` seconds,
until the whole cluster has answered over TCP, then puts back the SIGINT / SIGTERM handlers the
framework replaces (README, "Cluster start-up").
"""

import collections
import contextlib
import json
import math
import os
import re
import signal
import socket
import threading
import time
import warnings

import keras
import numpy as np

from keras_rnnreg import _backend

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
        self.kind, self.backend, self.engine = kind, backend, engine
        self.num_replicas, self.num_processes = int(num_replicas), int(num_processes)
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
        """JAX: ``keras.distribution.set_distribution``; nothing on TensorFlow."""
        if self.backend == "jax":
            keras.distribution.set_distribution(self.engine)

    def build(self, fn):
        """``fn()`` (build and compile a model) in :meth:`scope`, after :meth:`activate`."""
        self.activate()
        with self.scope():
            return fn()

    def shard_data(self, data):
        """``data`` as :class:`ShardedBatches` (on TensorFlow without the cut between processes,
        which ``tf.distribute`` makes by itself)."""
        if data is None:
            return data
        if not isinstance(data, keras.utils.PyDataset):
            raise DistributeError("shard_data expects a keras.utils.PyDataset of (x, y[, "
                                  f"sample_weight]) batches; received {type(data).__name__}")
        if self.backend == "jax":
            return ShardedBatches(data, self.num_replicas, self.num_processes, self.process_id)
        return ShardedBatches(data, self.num_replicas)


class ShardedBatches(keras.utils.PyDataset):
    """A PyDataset's batches padded to split over ``replicas`` and cut to one process's rows.

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
        self.dataset, self.replicas = dataset, int(replicas)
        self.processes, self.process_id = int(processes), int(process_id)
        self._warned = False

    def __len__(self):
        return len(self.dataset)

    def on_epoch_end(self):
        self.dataset.on_epoch_end()

    def __getitem__(self, index):
        batch = self.dataset[index]
        arrays = [np.asarray(a) for a in (batch if isinstance(batch, tuple) else (batch,))]
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
                    "on TensorFlow the loss is the mean of the replicas' means, so zero-weight "
                    "rows scale it down: for exact global-batch losses use a batch size that is a "
                    f"multiple of {self.replicas} (metrics stay exact)", stacklevel=2)
            arrays = [np.concatenate([a, np.repeat(a[-1:], extra, axis=0)]) for a in arrays[:2]] + [
                np.concatenate([w, np.zeros((extra,) + w.shape[1:], w.dtype)]) for w in arrays[2:]
            ]
        if self.processes > 1:
            rows = padded // self.processes
            arrays = [a[self.process_id * rows : (self.process_id + 1) * rows] for a in arrays]
        return tuple(arrays)


# ----------------------------------------------------------------------------------------- get
def get(kind, *, devices=None, tpu=None, job_addresses=None, num_processes=None, process_id=None,
        timeout=None):
    """A :class:`Strategy` for ``kind`` on the current Keras backend.

    Args:
        kind: ``"data-parallel"``, ``"tpu"`` or ``"multi-worker"`` (or a :class:`Strategy`,
            returned as is).
        devices: data-parallel only: the devices to use (JAX devices or names; TF device
            strings); default every device of the machine.
        tpu: TensorFlow TPU name or address for ``TPUClusterResolver`` (default: from the
            environment).
        job_addresses: JAX multi-worker: the coordinator's ``host:port`` (default:
            ``$KERAS_DISTRIBUTION_JOB_ADDRESSES``; likewise for the next two).
        num_processes: JAX multi-worker: the number of processes (``..._NUM_PROCESSES``).
        process_id: JAX multi-worker: this process' index (``..._PROCESS_ID``).
        timeout: multi-worker: seconds to wait for the cluster (default
            ``$RNNREG_CLUSTER_TIMEOUT``, else :data:`DEFAULT_TIMEOUT`).

    Raises:
        DistributeError: not available here, bad cluster settings, or a process that did not
            answer within the timeout (the message names its address).
    """
    if isinstance(kind, Strategy):
        return kind
    if kind not in KINDS:
        raise DistributeError(f"unknown distribution {kind!r}: expected one of {', '.join(KINDS)}")
    backend = keras.backend.backend()
    multi = kind == "multi-worker"
    if backend == "jax" and multi:
        return _jax_multi_worker(job_addresses, num_processes, process_id, timeout)
    if backend == "jax":
        return _jax(kind, devices)
    if backend == "tensorflow":
        return _tf_multi_worker(timeout) if multi else _tensorflow(kind, devices, tpu)
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


# ------------------------------------------------------------------------------------- JAX
def _jax(kind, devices):
    import jax

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


def _jax_multi_worker(job_addresses, num_processes, process_id, timeout):
    import jax

    if not jax.distributed.is_initialized():  # (jax.process_count() would start the backend)
        addresses, labels, n, pid = _jax_settings(job_addresses, num_processes, process_id)
        seconds = _timeout(timeout)
        where = f"{addresses[0]} ({labels[0]})"
        if n > 1 and pid == 0:
            _gather(addresses[0], where, addresses, n, seconds)
        elif n > 1:
            _join(addresses[0], where, n, pid, seconds)
        try:
            with _own_signal_handlers():
                # keras.distribution.initialize without its timeout: what it does, with one
                jax.distributed.initialize(addresses[0], n, pid,
                                           initialization_timeout=max(1, math.ceil(seconds)))
                _backend.keras_after_jax_distributed_initialize()
        except RuntimeError as err:
            raise DistributeError(f"jax.distributed.initialize failed ({err}); it must run "
                                  "before any JAX computation: create the multi-worker "
                                  "strategy first thing in the program") from err
    engine = keras.distribution.DataParallel(devices=jax.devices(), auto_shard_dataset=False)
    return Strategy("multi-worker", "jax", engine, len(jax.devices()), jax.process_count(),
                    jax.process_index())


def _jax_settings(job_addresses, num_processes, process_id):
    """``([coordinator, ...], [label, ...], num_processes, process_id)`` from the arguments or
    ``KERAS_DISTRIBUTION_*``, checked; a label names the argument or variable a value came from."""
    given = {"job_addresses": job_addresses, "num_processes": num_processes,
             "process_id": process_id}
    labels = [k if v is not None else f"KERAS_DISTRIBUTION_{k.upper()}" for k, v in given.items()]
    values = [os.environ.get(label) if v is None else v for v, label in zip(given.values(), labels)]
    if any(v is None or str(v).strip() == "" for v in values):
        raise DistributeError(
            "distribute='multi-worker' on JAX needs the coordinator address, the number of "
            "processes and this process's id: set KERAS_DISTRIBUTION_JOB_ADDRESSES "
            "(e.g. 10.0.0.1:1234), KERAS_DISTRIBUTION_NUM_PROCESSES and "
            "KERAS_DISTRIBUTION_PROCESS_ID, or pass them to distribute.get")
    n = _whole(labels[1], values[1], 1)
    pid = _whole(labels[2], values[2], 0, n - 1, f" ({labels[1]}={n})")
    addresses = [a.strip() for a in str(values[0]).split(",")]
    for address in addresses:
        _address(labels[0], address)
    if len(addresses) > 1 and len(addresses) != n:  # Keras' reading: one address per process
        raise DistributeError(f"{labels[0]}={values[0]!r} lists {len(addresses)} addresses for "
                              f"{labels[1]}={n}: expected the coordinator's host:port alone, or "
                              "one per process (the coordinator first)")
    return addresses, labels, n, pid


def _gather(coordinator, where, addresses, n, seconds):
    """Process 0: wait until processes 1 .. n-1 have said hello on the coordinator's port (the
    port JAX's coordination service will use), then tell each to go on."""
    deadline = time.monotonic() + seconds
    joined = {}
    server = _listen(coordinator, f"the coordinator {where}")
    server.settimeout(0.5)
    try:
        with server:
            while len(joined) < n - 1:
                if time.monotonic() >= deadline:
                    missing = ", ".join(f"process {i}" + (f" ({addresses[i]})" if addresses[1:]
                                                          else "")
                                        for i in range(1, n) if i not in joined)
                    raise DistributeError(
                        f"cluster start-up: {missing} of {n} did not connect to this coordinator "
                        f"{where} within {seconds:g} s: start every process, or allow longer "
                        f"with {TIMEOUT_VARIABLE}")
                try:
                    conn = server.accept()[0]
                except TimeoutError:
                    continue
                hello = (_read_line(conn, min(deadline, time.monotonic() + 5)) or "").split()
                if len(hello) != 3 or hello[0] != _HELLO or not hello[2].isdigit():
                    conn.close()  # not one of ours
                    continue
                their_n, their_pid = hello[1], int(hello[2])
                if their_n != str(n) or not 0 < their_pid < n:
                    conn.sendall(f"no: this coordinator has {n} processes (ids 0 to {n - 1}); "
                                 f"this process says {their_n} and {their_pid}\n".encode())
                    conn.close()
                    continue
                if their_pid in joined:  # the same id again (restarted): the newest one counts
                    joined.pop(their_pid).close()
                joined[their_pid] = conn
            for conn in joined.values():
                conn.sendall(b"go\n")
            for conn in joined.values():  # each closes first: no TIME_WAIT on the port JAX binds
                _read_line(conn, time.monotonic() + 2)
    finally:
        for conn in joined.values():
            conn.close()


def _join(coordinator, where, n, pid, seconds):
    """Process ``pid`` > 0: say hello to the coordinator (retrying until it listens) and wait for
    its go-ahead, which comes when every process has said hello."""
    deadline = time.monotonic() + seconds
    hint = f"this is process {pid} of {n}: start process 0 there, or allow longer with " \
           f"{TIMEOUT_VARIABLE}"
    while True:  # short blocking calls: SIGINT / SIGTERM act at once
        try:
            conn = socket.create_connection(_address("", coordinator), timeout=1.0)
            break
        except OSError as err:
            if time.monotonic() >= deadline:
                raise DistributeError(f"cluster start-up: the JAX coordinator {where} did not "
                                      f"answer within {seconds:g} s ({err.strerror or err}); "
                                      f"{hint}") from None
        time.sleep(0.25)
    with conn:
        conn.sendall(f"{_HELLO} {n} {pid}\n".encode())
        reply = _read_line(conn, deadline)
    if reply == "go":
        return
    if reply and reply.startswith("no: "):
        raise DistributeError(f"cluster start-up: the coordinator {where} refused this process: "
                              f"{reply[4:]}")
    raise DistributeError(f"cluster start-up: the coordinator {where} answered, but not every one "
                          f"of the {n} processes joined within {seconds:g} s"
                          + (" (it gave up: see its log)" if reply == "" else f"; {hint}"))


# ---------------------------------------------------------------------------------- TensorFlow
def _tensorflow(kind, devices, tpu):
    import tensorflow as tf

    if kind == "data-parallel":
        if devices is None:
            gpus = tf.config.list_logical_devices("GPU")
            devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        engine = tf.distribute.MirroredStrategy(devices=list(devices))
    else:
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
    return Strategy(kind, "tensorflow", engine, engine.num_replicas_in_sync)


def _tf_multi_worker(timeout):
    tasks, own = _tf_settings()
    seconds = _timeout(timeout)
    name = f"{tasks[own][0]} {tasks[own][1]}"
    if len(tasks) > 1:
        _probe(tasks, own, seconds)
    import tensorflow as tf

    jobs = collections.Counter(job for job, _, _ in tasks)
    # tasks[0] leads: the chief, else worker 0 (as TensorFlow picks it)
    _backend.tf_bound_cluster_registration(f"/job:{tasks[0][0]}/replica:0/task:0", jobs, seconds)
    try:
        with _own_signal_handlers():
            engine = _multi_worker_strategy()
    except tf.errors.OpError as err:  # a task answered the probe, then did not register
        named = set(re.findall(r"/job:(\w+)/replica:\d+/task:(\d+)", str(err)))
        late = [t for k, t in enumerate(tasks) if (t[0], str(t[1])) in named and k != own]
        late = late or ([t for k, t in enumerate(tasks) if k != own] if own == 0 else tasks[:1])
        who = ", ".join(f"{job} {index} ({address})" for job, index, address in late)
        first = str(err).splitlines()[0]
        raise DistributeError(f"cluster start-up: TF_CONFIG's {who} answered but did not join "
                              f"TensorFlow's coordination service within {seconds:g} s (this is "
                              f"{name}; {type(err).__name__}: {first})") from None
    return Strategy("multi-worker", "tensorflow", engine, engine.num_replicas_in_sync, len(tasks),
                    own)


def _tf_settings():
    """TF_CONFIG's tasks ``[(job, index, "host:port"), ...]`` (chief first, then the workers: the
    order of TensorFlow's ids in the cluster) and this task's position in that list, checked."""
    text = os.environ.get("TF_CONFIG", "")
    if not text.strip():
        raise DistributeError(f"distribute='multi-worker' on TensorFlow needs TF_CONFIG, e.g. "
                              f"{TF_CONFIG_EXAMPLE} on the first worker")
    try:
        config = json.loads(text)
    except ValueError as err:
        raise DistributeError(f"TF_CONFIG={text!r} is not JSON ({err}): expected e.g. "
                              f"{TF_CONFIG_EXAMPLE}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not cluster:
        raise DistributeError(f"TF_CONFIG={text!r}: expected a 'cluster' naming the workers' "
                              f"addresses, e.g. {TF_CONFIG_EXAMPLE}")
    tasks, seen = [], {}
    for job in sorted(cluster, key=lambda j: (j != "chief", j)):
        addresses = cluster[job]
        if job not in ("chief", "worker"):
            raise DistributeError(f"TF_CONFIG cluster job {job!r}: expected 'worker' (and at most "
                                  "one 'chief'): MultiWorkerMirroredStrategy runs no other task")
        if not isinstance(addresses, list) or not addresses or (job == "chief" and
                                                                  len(addresses) > 1):
            raise DistributeError(f"TF_CONFIG cluster.{job}={addresses!r}: expected a list of "
                                  + ("one host:port" if job == "chief" else "host:port addresses"))
        for index, address in enumerate(addresses):
            where = _address(f"TF_CONFIG cluster.{job}[{index}]", address)
            if where in seen:
                raise DistributeError(f"TF_CONFIG: cluster.{job}[{index}] and {seen[where]} are "
                                      f"both {address!r}: expected one address per task")
            seen[where] = f"cluster.{job}[{index}]"
            tasks.append((job, index, address))
    task = config.get("task")
    if not isinstance(task, dict) or task.get("type") not in cluster:
        raise DistributeError(f"TF_CONFIG task={task!r}: expected {{'type': one of "
                              f"{', '.join(map(repr, cluster))}, 'index': N}} (this task)")
    n = len(cluster[task["type"]])
    index = _whole(f"TF_CONFIG task.index (a {task['type']})", task.get("index"), 0, n - 1)
    return tasks, next(k for k, t in enumerate(tasks) if t[:2] == (task["type"], index))


def _probe(tasks, own, seconds):
    """Listen on this task's port and connect to every other task's until each has answered:
    every task is up (listening here, or TensorFlow's server there) before TensorFlow waits."""
    deadline = time.monotonic() + seconds
    job, index, address = tasks[own]
    pending, why = {k: t for k, t in enumerate(tasks) if k != own}, {}
    with _listen(address, f"TF_CONFIG's {job} {index} (this task)") as server:
        server.setblocking(False)
        while pending:
            with contextlib.suppress(BlockingIOError):
                while True:  # answer the others' probes
                    server.accept()[0].close()
            for k, (_, _, peer) in list(pending.items()):
                try:
                    socket.create_connection(_address("", peer), timeout=0.5).close()
                    del pending[k]
                except OSError as err:
                    why[k] = err.strerror or str(err)
            if pending and time.monotonic() >= deadline:
                who = ", ".join(f"{j} {i} at {a} ({why[k]})" for k, (j, i, a) in pending.items())
                raise DistributeError(
                    f"cluster start-up: TF_CONFIG's {who} did not answer within {seconds:g} s "
                    f"(this is {job} {index}): start every task of the cluster, or allow longer "
                    f"with {TIMEOUT_VARIABLE}")
            time.sleep(0.2 if pending else 0)


# --------------------------------------------------------------------- settings and sockets
TIMEOUT_VARIABLE = "RNNREG_CLUSTER_TIMEOUT"
DEFAULT_TIMEOUT = 300.0  # seconds: JAX's own default initialization_timeout
TF_CONFIG_EXAMPLE = ('{"cluster": {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]}, '
                     '"task": {"type": "worker", "index": 0}}')
_HELLO = "rnnreg-cluster"  # the JAX processes' hello to the coordinator: "rnnreg-cluster N ID"


def _timeout(timeout):
    label = "timeout" if timeout is not None else TIMEOUT_VARIABLE
    value = timeout if timeout is not None else os.environ.get(TIMEOUT_VARIABLE, "")
    if isinstance(value, str) and not value.strip():
        return DEFAULT_TIMEOUT
    try:
        seconds = math.nan if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise DistributeError(f"{label}={value!r}: expected a number of seconds > 0 (the "
                              f"cluster start-up timeout; default {DEFAULT_TIMEOUT:g})")
    return seconds


def _whole(label, value, low, high=None, why=""):
    text = str(value).strip()
    if isinstance(value, (bool, float)) or not text.isdigit() or not low <= int(text) <= (
            high if high is not None else math.inf):
        expected = f"from {low} to {high}" if high is not None else f">= {low}"
        raise DistributeError(f"{label}={value!r}: expected a whole number {expected}{why}")
    return int(text)


def _address(label, address):
    """``(host, port)`` of ``"host:port"`` (IPv6 hosts in brackets or not)."""
    host, _, port = address.strip().rpartition(":") if isinstance(address, str) else ("", "", "")
    if not host.strip("[]") or not port.isdigit() or not 0 < int(port) < 65536:
        raise DistributeError(f"{label}={address!r}: expected host:port with a port from 1 to "
                              "65535 (e.g. 10.0.0.1:1234)")
    return host.strip("[]"), int(port)


def _listen(address, what):
    port = _address("", address)[1]
    try:
        if socket.has_dualstack_ipv6():
            return socket.create_server(("", port), family=socket.AF_INET6, dualstack_ipv6=True)
        return socket.create_server(("", port))
    except OSError as err:
        raise DistributeError(f"cluster start-up: cannot listen on port {port} for {what}: "
                              f"{err.strerror or err}") from None


def _read_line(conn, deadline):
    """The first line ``conn`` sends before ``deadline``: ``None`` at the deadline, ``""`` when
    the peer closes first."""
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        conn.settimeout(min(remaining, 1.0))
        try:
            chunk = conn.recv(256)
        except TimeoutError:
            continue
        except OSError:
            return ""
        if not chunk:
            return ""
        data += chunk
    return data.split(b"\n", 1)[0].decode(errors="replace").strip()


@contextlib.contextmanager
def _own_signal_handlers():
    """Put back the SIGINT / SIGTERM handlers after the frameworks' connection calls.

    Both install a SIGTERM "preemption notifier" that swallows the signal for the rest of the
    process (a ``timeout 60`` could not stop a waiting TensorFlow worker). Main thread only.
    """
    main = threading.current_thread() is threading.main_thread()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
    try:
        yield
    finally:
        for s, handler in handlers.items():
            if handler is not None:  # None: not set from Python; nothing to put back
                signal.signal(s, handler)


def _multi_worker_strategy():
    import tensorflow as tf

    class MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        """``reduce`` for Keras 3's ``fit`` (the module docstring, keras-team/keras#20585)."""

        def reduce(self, reduce_op, value, axis):
            parent = super()

            def one(v):
                local = self.experimental_local_results(v)[0]
                leaf_axis = None if axis is not None and local.shape.rank == 0 else axis
                return parent.reduce(reduce_op, v, leaf_axis)

            return tf.nest.map_structure(one, value)

    return MultiWorkerMirroredStrategy()
