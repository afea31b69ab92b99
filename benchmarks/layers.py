"""Training throughput of keras_rnnreg's layers against Keras' built-in layers, and the cost of
each regularizer against our plain layer.

Run once per backend (``KERAS_BACKEND=jax python -m benchmarks.layers``) or for all three with
``make bench``. Same run, same shapes as the noise study's JSB setup: batch 81, length 100,
88 inputs, 200 units, 88 sigmoid outputs, RMSprop, binary cross-entropy. Prints timesteps/s
(batch × length × steps / seconds) of each variant and its ratio to its reference: for
``ours.*`` the Keras layer, for a regularized variant our plain layer (there the ratio is the
*time* ratio, variant time / plain time, the figure the targets are stated in).
"""

import argparse
import os
import platform
import statistics
import time

import keras
import numpy as np

import keras_rnnreg


def _model(layer, length, features):
    inputs = keras.Input((length, features))
    if isinstance(layer, tuple):  # (recurrent layer, output layer)
        layer, head = layer
    else:
        head = keras.layers.Dense(features, activation="sigmoid")
    hidden = layer(inputs)
    outputs = head(hidden)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.RMSprop(1e-3), loss="binary_crossentropy")
    return model


def _keras_variants(units):
    L = keras_rnnreg.layers
    return {
        "keras.SimpleRNN": lambda: keras.layers.SimpleRNN(units, return_sequences=True),
        "ours.SimpleRNN": lambda: L.SimpleRNN(units, return_sequences=True),
        "keras.LSTM": lambda: keras.layers.LSTM(units, return_sequences=True),
        "ours.LSTM": lambda: L.LSTM(units, return_sequences=True),
    }


def _regularizer_variants(units):
    L = keras_rnnreg.layers
    P = keras_rnnreg.perturbations
    R = keras_rnnreg.regularizers

    def srnn(**kw):
        return lambda: L.SimpleRNN(units, return_sequences=True, **kw)

    def lstm(**kw):
        return lambda: L.LSTM(units, return_sequences=True, **kw)

    return {
        "ours.SimpleRNN": srnn(),
        "SimpleRNN+noise/sequence (RNN-NS)": srnn(perturbations=[P.WeightNoise(0.04, per="sequence")]),
        "SimpleRNN+mult.noise/sequence (RNN-MNS)": srnn(
            perturbations=[P.WeightNoise(0.04, mode="multiplicative", per="sequence")]),
        "SimpleRNN+dropconnect/sequence (RNN-DOS)": srnn(perturbations=[P.DropConnect(0.5, per="sequence")]),
        "SimpleRNN+noise/timestep (RNN-N)": srnn(perturbations=[P.WeightNoise(0.04)]),
        "SimpleRNN+mult.noise/timestep (RNN-MN)": srnn(perturbations=[P.WeightNoise(0.04, mode="multiplicative")]),
        "SimpleRNN+dropconnect/timestep (RNN-DO)": srnn(perturbations=[P.DropConnect(0.5)]),
        "SimpleRNN+input noise/timestep (RNN-FF)": srnn(perturbations=[P.WeightNoise(0.04, target="input")]),
        "SimpleRNN+noise/timestep, local": srnn(perturbations=[P.WeightNoise(0.04, sampling="local")]),
        "SimpleRNN+norm-stabilizer": srnn(state_regularizer=R.NormStabilizer(500.0)),
        "FastDropoutRNN (RNN-FD)": lambda: (
            L.FastDropoutRNN(units, rate=0.2, return_sequences=True, return_variance=True),
            L.FastDropoutDense(88, rate=0.2),
        ),
        "ours.LSTM": lstm(),
        "LSTM+norm-stabilizer/hidden": lstm(state_regularizer=R.NormStabilizer(500.0), output_activation=None),
        "LSTM+norm-stabilizer/cell": lstm(state_regularizer=R.NormStabilizer(500.0, on="cell")),
        "LSTM+noise/timestep": lstm(perturbations=[P.WeightNoise(0.05)]),
        "LSTM+noise/timestep, local": lstm(perturbations=[P.WeightNoise(0.05, sampling="local")]),
    }


REFERENCE = {"ours.SimpleRNN": "keras.SimpleRNN", "ours.LSTM": "keras.LSTM"}


def _regularizer_reference(name):
    if name in ("ours.SimpleRNN", "ours.LSTM"):
        return None
    return "ours.LSTM" if name.startswith("LSTM") else "ours.SimpleRNN"


def measure(variants, batch=81, length=100, features=88, steps=20, repeats=3, seed=0, clock="wall"):
    """Return {name: median timesteps/s}. Variants are timed round-robin to share drift.

    ``clock="cpu"`` divides by the process's CPU time (all threads) instead of wall time: on a
    machine shared with other jobs it is the steadier measure of the work done.
    """
    timer = time.process_time if clock == "cpu" else time.perf_counter
    rng = np.random.default_rng(seed)
    x = rng.random((batch * steps, length, features)).astype("float32")
    y = (rng.random((batch * steps, length, features)) < 0.1).astype("float32")
    models = {}
    for name, make in variants.items():
        keras.utils.set_random_seed(seed)
        models[name] = _model(make(), length, features)
        models[name].fit(x[: batch * 2], y[: batch * 2], batch_size=batch, epochs=1, verbose=0)
    rates = {name: [] for name in variants}
    for _ in range(repeats):
        for name, model in models.items():
            start = timer()
            model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
            rates[name].append(batch * length * steps / (timer() - start))
    return {name: statistics.median(r) for name, r in rates.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="training batches per timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--units", type=int, default=200)
    parser.add_argument(
        "--suite", choices=["keras", "regularizers", "all"], default="all",
        help="keras: ours vs Keras' layers; regularizers: each regularizer vs our plain layer",
    )
    parser.add_argument(
        "--clock", choices=["wall", "cpu"], default="wall",
        help="wall time, or process CPU time (steadier on a shared machine)",
    )
    args = parser.parse_args(argv)
    backend = keras.backend.backend()
    device = "gpu" if _has_gpu() else "cpu"
    print(f"# backend={backend} device={device} keras={keras.__version__} "
          f"machine={platform.machine()} cpus={os.cpu_count()} batch=81 length=100 inputs=88 "
          f"units={args.units} steps={args.steps} repeats={args.repeats} clock={args.clock}")
    if args.suite in ("keras", "all"):
        rates = measure(
            _keras_variants(args.units), steps=args.steps, repeats=args.repeats, clock=args.clock
        )
        print("| backend | layer | timesteps/s | speed-up vs Keras |")
        print("|---|---|---|---|")
        for name, rate in rates.items():
            ref = REFERENCE.get(name)
            ratio = f"{rate / rates[ref]:.2f}x" if ref else "(reference)"
            print(f"| {backend} | {name} | {rate:,.0f} | {ratio} |", flush=True)
    if args.suite in ("regularizers", "all"):
        rates = measure(
            _regularizer_variants(args.units), steps=args.steps, repeats=args.repeats,
            clock=args.clock,
        )
        print("| backend | variant | timesteps/s | time vs our plain layer |")
        print("|---|---|---|---|")
        for name, rate in rates.items():
            ref = _regularizer_reference(name)
            ratio = f"{rates[ref] / rate:.2f}x" if ref else "(reference)"
            print(f"| {backend} | {name} | {rate:,.0f} | {ratio} |", flush=True)


def _has_gpu():
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return any(d.platform == "gpu" for d in jax.devices())
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))

if __name__ == "__main__":
    main()
