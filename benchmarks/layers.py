"""Training throughput of keras_rnnreg's layers against Keras' built-in layers.

Run once per backend (``KERAS_BACKEND=jax python -m benchmarks.layers``) or for all three with
``make bench``. Same run, same shapes as the noise study's JSB setup: batch 81, length 100,
88 inputs, 200 units, 88 sigmoid outputs, RMSprop, binary cross-entropy. Prints timesteps/s
(batch × length × steps / seconds) of each variant and its ratio to the reference.
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
    hidden = layer(inputs)
    outputs = keras.layers.Dense(features, activation="sigmoid")(hidden)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.RMSprop(1e-3), loss="binary_crossentropy")
    return model


def _variants(units):
    L = keras_rnnreg.layers
    return {
        "keras.SimpleRNN": lambda: keras.layers.SimpleRNN(units, return_sequences=True),
        "ours.SimpleRNN": lambda: L.SimpleRNN(units, return_sequences=True),
        "keras.LSTM": lambda: keras.layers.LSTM(units, return_sequences=True),
        "ours.LSTM": lambda: L.LSTM(units, return_sequences=True),
    }


REFERENCE = {"ours.SimpleRNN": "keras.SimpleRNN", "ours.LSTM": "keras.LSTM"}


def measure(variants, batch=81, length=100, features=88, steps=20, repeats=3, seed=0):
    """Return {name: median timesteps/s}. Variants are timed round-robin to share drift."""
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
            start = time.perf_counter()
            model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
            rates[name].append(batch * length * steps / (time.perf_counter() - start))
    return {name: statistics.median(r) for name, r in rates.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="training batches per timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--units", type=int, default=200)
    parser.add_argument("--only", nargs="*", help="variant names to run (default: all)")
    args = parser.parse_args(argv)
    variants = _variants(args.units)
    if args.only:
        variants = {k: v for k, v in variants.items() if k in args.only or k in REFERENCE.values()}
    rates = measure(variants, steps=args.steps, repeats=args.repeats)
    backend = keras.backend.backend()
    print(f"# backend={backend} keras={keras.__version__} machine={platform.machine()} "
          f"cpus={os.cpu_count()} batch=81 length=100 inputs=88 units={args.units}")
    print("| backend | layer | timesteps/s | ratio | reference |")
    print("|---|---|---|---|---|")
    for name, rate in rates.items():
        ref = REFERENCE.get(name)
        ratio = f"{rate / rates[ref]:.2f}x" if ref in rates else "1.00x"
        print(f"| {backend} | {name} | {rate:,.0f} | {ratio} | {ref or name} |")


if __name__ == "__main__":
    main()
