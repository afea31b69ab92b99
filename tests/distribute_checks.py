"""Subprocess side of tests/test_distribute.py: runs with simulated devices or as one of several
workers, and writes what it measured to a JSON file (the test asserts on it).

    python -m tests.distribute_checks devices OUT.json     # 4 simulated devices vs 1, in-process
    python -m tests.distribute_checks reference OUT.json   # the single-process run of `worker`
    python -m tests.distribute_checks worker OUT.json      # one worker of a loopback cluster
    python -m tests.distribute_checks startup OUT.json     # cluster start-up alone (exit 2: its
                                                           # DistributeError on stderr)

The backend comes from KERAS_BACKEND. Simulated devices need settings made before JAX / TF
start: the test sets XLA_FLAGS=--xla_force_host_platform_device_count=4 for JAX; for TensorFlow
this module splits the CPU into 4 logical devices before anything else. Workers are configured
by KERAS_DISTRIBUTION_* (JAX) or TF_CONFIG (TF), as in production.
"""

import json
import os
import signal
import sys
import tempfile
import time

DEVICES = 4
BACKEND = os.environ.get("KERAS_BACKEND", "tensorflow")


def _simulate_tf_devices():
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * DEVICES
    )


def _data(batch=8, steps=7, uneven=False):
    import numpy as np

    rng = np.random.default_rng(0)
    x = (rng.random((batch, steps, 88)) < 0.1).astype("float32")
    y = (rng.random((batch, steps, 88)) < 0.1).astype("float32")
    w = np.ones((batch, steps), "float32")
    if uneven:  # sequences of unequal lengths: unequal weight sums per replica
        for i in range(batch):
            w[i, 1 + i % steps :] = 0.0
    return x, y, w


def _small(**overrides):
    return {"units": 16, **overrides}


def _numpy(v):
    import keras
    import numpy as np

    return np.asarray(keras.ops.convert_to_numpy(v))


def _replica_values(variable):
    """Every device's copy of a variable (JAX: the addressable shards; TF: the mirrored values)."""
    import numpy as np

    value = variable.value
    if BACKEND == "jax":
        return [np.asarray(s.data) for s in value.addressable_shards]
    if hasattr(value, "values"):
        return [v.numpy() for v in value.values]
    return [_numpy(value)]


def _fit(name, overrides, strategy, data, epochs=2, evaluate=True, via_build=False):
    """Seeded build + fit (+ evaluate on uneven weights) under ``strategy`` (None: one device);
    ``via_build``: through ``zoo.build(..., distribute=strategy)``."""
    import keras

    from keras_rnnreg import distribute, zoo

    keras.utils.set_random_seed(0)
    x, y, w = data
    if via_build:
        model = zoo.build(name, distribute=strategy, **overrides)
    with distribute.scope(strategy):
        if not via_build:
            model = zoo.build(name, **overrides)
        history = model.fit(
            x, y, sample_weight=w, batch_size=len(x), epochs=epochs, verbose=0, shuffle=False
        ).history
        evaluated = {}
        if evaluate:
            ux, uy, uw = _data(uneven=True)
            evaluated = model.evaluate(
                ux, uy, sample_weight=uw, batch_size=len(ux), verbose=0, return_dict=True
            )
    return model, {
        "history": {k: [float(v) for v in vs] for k, vs in history.items()},
        "evaluate_uneven": {k: float(v) for k, v in evaluated.items()},
        "weights": [_numpy(v).tolist() for v in model.weights],
    }


def devices():
    import keras
    import numpy as np

    from keras_rnnreg import distribute

    strategy = distribute.get("data-parallel")
    out = {"replicas": strategy.num_replicas, "runs": {}, "seconds": {}}
    started = time.time()
    data = _data()
    configs = {
        # no randomness; the norm-stabilizer penalty is part of the loss
        "deterministic": (
            "jsb_rnn_plain",
            _small(**{"regularization.norm_stabilizer.beta": 2000.0}),
        ),
        # WeightNoise(per="sequence") and DropConnect(per="timestep"): weight-level draws
        "weight_draws": (
            "jsb_rnn_ns",
            _small(
                **{
                    "regularization.dropconnect.rate": 0.3,
                    "regularization.dropconnect.per": "timestep",
                }
            ),
        ),
        "dropout_per_example": ("jsb_rnn_plain", _small(**{"regularization.dropout": 0.3})),
    }
    for key, (name, overrides) in configs.items():
        evaluate = key == "deterministic"
        _, one = _fit(name, overrides, None, data, evaluate=evaluate)
        model, many = _fit(name, overrides, strategy, data, evaluate=evaluate)
        out["runs"][key] = {"one": one, "many": many}
        out["seconds"][key] = round(time.time() - started, 1)
        if key == "deterministic":
            # checkpoint saved under the strategy, reloaded on one device
            path = os.path.join(tempfile.mkdtemp(), "model.keras")
            with strategy.scope():
                model.save(path)
            loaded = keras.saving.load_model(path)
            probe = data[0][:3]  # 3 rows: would not split over 4 devices
            out["checkpoint"] = {
                "weights_equal": all(
                    np.array_equal(_numpy(a), _numpy(b))
                    for a, b in zip(model.weights, loaded.weights)
                ),
                "single_device": all(len(_replica_values(v)) == 1 for v in loaded.weights),
                "predict_max_diff": float(
                    np.max(
                        np.abs(
                            _numpy(loaded.predict(probe, verbose=0))
                            - np.asarray(
                                keras.ops.convert_to_numpy(
                                    _reference_predict(one, name, overrides, probe)
                                )
                            )
                        )
                    )
                ),
            }

    # SpectralRadiusLimit: every replica ends with identical, constrained recurrent kernels
    limit = 0.5
    overrides = _small(
        **{"regularization.spectral_radius_limit": limit, "optimizer.learning_rate": 0.05}
    )
    model, _ = _fit("jsb_rnn_plain", overrides, strategy, data, evaluate=False, via_build=True)
    if BACKEND == "jax":
        keras.distribution.set_distribution(None)  # zoo.build(distribute=) set it process-wide
    kernel = next(v for v in model.weights if v.path.endswith("recurrent_kernel"))
    copies = _replica_values(kernel)
    out["spectral_limit"] = {
        "copies": len(copies),
        "identical": all(np.array_equal(copies[0], c) for c in copies[1:]),
        "all_variables_identical": all(
            all(np.array_equal(c[0], ci) for ci in c[1:])
            for c in map(_replica_values, model.weights)
        ),
        "radius": float(np.max(np.abs(np.linalg.eigvals(copies[0].astype("float64"))))),
        "limit": limit,
    }
    out["seconds"]["spectral_limit"] = round(time.time() - started, 1)

    # the CLI path: `rnnreg train jsb_rnn_plain --data synthetic [--distribute data-parallel]`
    from keras_rnnreg import cli

    root = tempfile.mkdtemp()
    cli_runs = {}
    for label, extra in (("one", []), ("many", ["--distribute", "data-parallel"])):
        run_dir = os.path.join(root, label)
        args = [
            "train",
            "jsb_rnn_plain",
            "--data",
            "synthetic",
            "--epochs",
            "1",
            "--quiet",
            "--set",
            "model.units=16",
            "--out",
            run_dir,
            *extra,
        ]
        with open(os.devnull, "w") as sink:
            status = cli.main(args, out=sink)
        with open(os.path.join(run_dir, "history.csv")) as f:
            header, row = [line.strip().split(",") for line in f.readlines()[:2]]
        cli_runs[label] = {"status": status, **{k: float(v) for k, v in zip(header, row)}}
    out["cli"] = cli_runs
    out["seconds"]["cli"] = round(time.time() - started, 1)
    return out


def _reference_predict(one, name, overrides, probe):
    """Predictions of the one-device trained weights (rebuilt outside any strategy)."""
    import keras
    import numpy as np

    from keras_rnnreg import zoo

    keras.utils.set_random_seed(0)
    model = zoo.build(name, **overrides)
    model.set_weights([np.asarray(w, "float32") for w in one["weights"]])
    return model.predict(probe, verbose=0)


def _cluster_fit(strategy):
    """Two steps on the global batch of 8; JAX workers feed their rows through shard_data."""
    import keras

    from keras_rnnreg import distribute, zoo

    x, y, w = _data()

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 1

        def __getitem__(self, index):
            return x, y, w

    keras.utils.set_random_seed(0)
    overrides = _small(**{"regularization.norm_stabilizer.beta": 10.0})
    with distribute.scope(strategy):
        model = zoo.build("jsb_rnn_plain", **overrides)
        if strategy is not None and strategy.backend == "tensorflow":
            import tensorflow as tf

            data = tf.data.Dataset.from_tensor_slices((x, y, w)).batch(len(x))
        else:
            data = Batches() if strategy is None else strategy.shard_data(Batches())
        history = model.fit(data, epochs=2, verbose=0, shuffle=False).history
    return {
        "processes": 1 if strategy is None else strategy.num_processes,
        "process_id": 0 if strategy is None else strategy.process_id,
        "replicas": 1 if strategy is None else strategy.num_replicas,
        "history": {k: [float(v) for v in vs] for k, vs in history.items()},
        "weights": [_numpy(v).tolist() for v in model.weights],
    }


def main(argv):
    mode, out_path = argv
    if mode == "devices" and BACKEND == "tensorflow":
        _simulate_tf_devices()
    if mode == "worker":
        from keras_rnnreg import distribute

        received = []
        signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
        strategy = distribute.get("multi-worker")  # before any other JAX / TF work
        # the frameworks' SIGTERM "preemption notifiers" must not outlive the start-up
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
        result = {**_cluster_fit(strategy), "sigterm_reaches_python": received == [signal.SIGTERM]}
    elif mode == "startup":
        from keras_rnnreg import distribute

        print("READY", flush=True)  # the test times the start-up (and signals it) from here
        try:
            strategy = distribute.get("multi-worker")
        except distribute.DistributeError as err:
            print(err, file=sys.stderr)
            raise SystemExit(2) from None
        except KeyboardInterrupt:
            raise SystemExit(130) from None
        result = {"processes": strategy.num_processes, "process_id": strategy.process_id}
    elif mode == "reference":
        result = _cluster_fit(None)
    elif mode == "devices":
        result = devices()
    else:
        raise SystemExit(f"unknown mode {mode!r}: expected devices, reference, worker or startup")
    with open(out_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1:])
