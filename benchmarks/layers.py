"""Training throughput of keras_rnnreg's layers against Keras' built-in layers, and the cost of
each regularizer against our plain layer.

Run once per backend (``KERAS_BACKEND=jax python -m benchmarks.layers``) or for all three with
``make bench``. Same run, same shapes as the noise study's JSB setup: batch 81, length 100,
88 inputs, 200 units, 88 sigmoid outputs, RMSprop, binary cross-entropy. Prints timesteps/s
(batch × length × steps / seconds) of each variant and its ratio to its reference: for
``ours.*`` the Keras layer, for our cells in ``keras.layers.RNN`` Keras' cell in
``keras.layers.RNN`` and our fused layer, for a regularized variant our plain layer (there the
ratio is the *time* ratio, variant time / plain time, the figure the targets are stated in).

``--shapes paper`` measures the papers' four GPU workloads instead (``PAPER_SHAPES``: the JSB
SRNN-200, the 1000-unit PTB LSTM, the 1600-unit SRNN, the 3×500 bidirectional TIMIT LSTM): Keras'
layer, ours, ours with each regularizer, and for the LSTM our loop and (JAX) Keras' cuDNN kernel
forced, with the path each layer takes. Meant for a GPU: ``KERAS_BACKEND=torch python -m
benchmarks.layers --shapes paper`` (docs/benchmarks.md, GPU table).
"""

import argparse
import os
import platform
import statistics
import time

import keras
import numpy as np

import keras_rnnreg


def _model(make, length, features, depth=0):
    """``make()`` gives a recurrent layer, or a (recurrent layer, output layer) pair; ``depth`` > 0
    stacks that many bidirectional layers (Keras' layers in keras.layers.Bidirectional, ours in
    keras_rnnreg.layers.Bidirectional)."""
    inputs = keras.Input((length, features))
    head = keras.layers.Dense(features, activation="sigmoid")
    if depth:
        hidden = inputs
        for _ in range(depth):
            layer = make()
            # Ours in keras_rnnreg's wrapper (one bidirectional cuDNN call where it can).
            wrapper = (
                keras_rnnreg.layers.Bidirectional
                if isinstance(layer, keras_rnnreg.layers.FusedRNN)
                else keras.layers.Bidirectional
            )
            hidden = wrapper(layer)(hidden)
    else:
        layer = make()
        if isinstance(layer, tuple):  # (recurrent layer, output layer)
            layer, head = layer
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
        "keras.GRU": lambda: keras.layers.GRU(units, return_sequences=True),
        "ours.GRU": lambda: L.GRU(units, return_sequences=True),
    }


CELLS = ("SimpleRNN", "LSTM", "GRU")


def _projection_variants(units):
    """Per layer: Keras' layer, and ours with the input projection made before the loop
    (``pre``) and computed in the loop (``in``), whatever ``base.PROJECT_IN_LOOP`` picks: the
    measurement behind that table."""
    L = keras_rnnreg.layers
    variants = {}
    for kind in CELLS:
        keras_cls, ours = getattr(keras.layers, kind), getattr(L, kind)
        variants[f"keras.{kind}"] = lambda c=keras_cls: c(units, return_sequences=True)
        for where, in_loop in (("pre", False), ("in", True)):
            forced = type(f"{kind}_{where}", (ours,), {"_projects_in_loop": lambda s, v=in_loop: v})
            variants[f"ours.{kind} ({where})"] = lambda c=forced: c(units, return_sequences=True)
    return variants


def _cell_variants(units):
    """Per cell kind: Keras' cell and ours, each in keras.layers.RNN, and our fused layer."""
    L = keras_rnnreg.layers
    variants = {}
    for kind in CELLS:
        keras_cell = getattr(keras.layers, f"{kind}Cell")
        ours_cell = getattr(L, f"{kind}Cell")
        fused = getattr(L, kind)
        variants[f"keras.RNN({kind}Cell)"] = lambda c=keras_cell: keras.layers.RNN(
            c(units), return_sequences=True
        )
        variants[f"ours.RNN({kind}Cell)"] = lambda c=ours_cell: keras.layers.RNN(
            c(units), return_sequences=True
        )
        variants[f"ours.{kind}"] = lambda c=fused: c(units, return_sequences=True)
    return variants


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
        "SimpleRNN+noise/sequence (RNN-NS)": srnn(perturbations=[P.WeightNoise(0.04,
                                                                               per="sequence")]),
        "SimpleRNN+mult.noise/sequence (RNN-MNS)": srnn(
            perturbations=[P.WeightNoise(0.04, mode="multiplicative", per="sequence")]),
        "SimpleRNN+dropconnect/sequence (RNN-DOS)": srnn(
            perturbations=[P.DropConnect(0.5, per="sequence")]),
        "SimpleRNN+noise/timestep (RNN-N)": srnn(perturbations=[P.WeightNoise(0.04)]),
        "SimpleRNN+mult.noise/timestep (RNN-MN)": srnn(
            perturbations=[P.WeightNoise(0.04, mode="multiplicative")]),
        "SimpleRNN+dropconnect/timestep (RNN-DO)": srnn(perturbations=[P.DropConnect(0.5)]),
        "SimpleRNN+input noise/timestep (RNN-FF)": srnn(
            perturbations=[P.WeightNoise(0.04, target="input")]),
        "SimpleRNN+noise/timestep, local": srnn(perturbations=[P.WeightNoise(0.04,
                                                                             sampling="local")]),
        "SimpleRNN+norm-stabilizer": srnn(state_regularizer=R.NormStabilizer(500.0)),
        "FastDropoutRNN (RNN-FD)": lambda: (
            L.FastDropoutRNN(units, rate=0.2, return_sequences=True, return_variance=True),
            L.FastDropoutDense(88, rate=0.2),
        ),
        "ours.LSTM": lstm(),
        "LSTM+norm-stabilizer/hidden": lstm(state_regularizer=R.NormStabilizer(500.0),
                                            output_activation=None),
        "LSTM+norm-stabilizer/cell": lstm(state_regularizer=R.NormStabilizer(500.0, on="cell")),
        "LSTM+noise/timestep": lstm(perturbations=[P.WeightNoise(0.05)]),
        "LSTM+noise/timestep, local": lstm(perturbations=[P.WeightNoise(0.05, sampling="local")]),
        # beyond the papers: zoneout (our loop), AR / TAR (after the loop), layer normalization
        "SimpleRNN+zoneout 0.1": srnn(zoneout=0.1),
        "LSTM+zoneout (0.5, 0.05)": lstm(zoneout=(0.5, 0.05)),
        "LSTM+AR": lstm(state_regularizer=R.ActivationRegularization(2.0)),
        "LSTM+TAR": lstm(state_regularizer=R.TemporalActivationRegularization(1.0)),
        "LSTM+AR+TAR": lstm(state_regularizer=[R.ActivationRegularization(2.0),
                                               R.TemporalActivationRegularization(1.0)]),
        "LSTM+norm-stabilizer+TAR": lstm(state_regularizer=[
            R.NormStabilizer(50.0), R.TemporalActivationRegularization(1.0)]),
        "LayerNormLSTM": lambda: L.LayerNormLSTM(units, return_sequences=True),
        "LayerNormLSTM+zoneout (0.5, 0.05)": lambda: L.LayerNormLSTM(
            units, return_sequences=True, zoneout=(0.5, 0.05)),
        "ours.GRU": lambda: L.GRU(units, return_sequences=True),
        "GRU+zoneout 0.1": lambda: L.GRU(units, return_sequences=True, zoneout=0.1),
        "LayerNormGRU": lambda: L.LayerNormGRU(units, return_sequences=True),
    }


REFERENCE = {
    "ours.SimpleRNN": "keras.SimpleRNN",
    "ours.LSTM": "keras.LSTM",
    "ours.GRU": "keras.GRU",
}


def _regularizer_reference(name):
    """The plain layer a variant is timed against (None: it is one)."""
    if name.startswith("ours."):
        return None
    for kind in ("LSTM", "GRU"):
        if name.startswith((kind, f"LayerNorm{kind}")):
            return f"ours.{kind}"
    return "ours.SimpleRNN"


# The papers' GPU workloads (docs/benchmarks.md, GPU table): name -> (batch, length, inputs, units,
# layer kind, bidirectional depth). jsb_srnn200: the noise study's JSB net; ptb_lstm1000 and
# srnn1600: the norm-stabilizer paper's char-level PTB nets (Tables 1-3); timit_blstm3x500: its
# TIMIT net (three bidirectional LSTM layers of 500, Tables 4-5; 123 filterbank inputs).
PAPER_SHAPES = {
    "jsb_srnn200": (81, 100, 88, 200, "srnn", 0),
    "ptb_lstm1000": (32, 100, 50, 1000, "lstm", 0),
    "srnn1600": (32, 100, 50, 1600, "srnn", 0),
    "timit_blstm3x500": (32, 300, 123, 500, "lstm", 3),
}


def _paper_variants(kind, units):
    """Keras' layer, ours, and ours with each regularizer of the papers at one shape. For the
    LSTM also our loop forced (use_cudnn=False) and, on JAX, Keras' cuDNN kernel forced
    (use_cudnn=True: jax.experimental.rnn), to settle which path "auto" should take."""
    L = keras_rnnreg.layers
    P = keras_rnnreg.perturbations
    R = keras_rnnreg.regularizers
    cls = L.SimpleRNN if kind == "srnn" else L.LSTM

    def ours(**kw):
        return lambda: cls(units, return_sequences=True, **kw)

    keras_cls = keras.layers.SimpleRNN if kind == "srnn" else keras.layers.LSTM
    variants = {
        "keras": lambda: keras_cls(units, return_sequences=True),
        "ours": ours(),
        "ours+noise/step": ours(perturbations=[P.WeightNoise(0.04)]),
        "ours+dropconnect/seq": ours(perturbations=[P.DropConnect(0.5, per="sequence")]),
        "ours+normstab": ours(state_regularizer=R.NormStabilizer(50.0)),
        "ours+dropconnect/seq+normstab": ours(perturbations=[P.DropConnect(0.5, per="sequence")],
                                              state_regularizer=R.NormStabilizer(50.0)),
    }
    if kind == "lstm":
        variants["ours, loop (use_cudnn=False)"] = ours(use_cudnn=False)
        if keras.backend.backend() == "jax" and _has_gpu():
            variants["ours, cuDNN (use_cudnn=True)"] = ours(use_cudnn=True)
    return variants


def _path(make):
    """Which path a variant's recurrent layer takes (keras_rnnreg.layers.cudnn_path)."""
    layer = make()
    if isinstance(layer, tuple):
        layer = layer[0]
    if not isinstance(layer, keras_rnnreg.layers.FusedRNN):
        return "keras"
    taken, why = keras_rnnreg.layers.cudnn_path(layer)
    return "cuDNN" if taken else f"loop ({why.split(' (')[0]})"


def measure_paper(shapes=None, steps=20, repeats=3, clock="wall", sizes=None):
    """Print one markdown row per (shape, variant): timesteps/s, time ratio to Keras' layer and
    to our plain layer, and the path taken. ``sizes`` overrides PAPER_SHAPES (smoke tests)."""
    backend = keras.backend.backend()
    sizes = sizes or PAPER_SHAPES
    print("| backend | shape | variant | timesteps/s | speed vs Keras | time vs ours | path |")
    print("|---|---|---|---|---|---|---|")
    results = {}
    for shape in shapes or list(sizes):
        batch, length, features, units, kind, depth = sizes[shape]
        variants = _paper_variants(kind, units)
        rates = measure(variants, batch=batch, length=length, features=features, steps=steps,
                        repeats=repeats, clock=clock, depth=depth)
        for name, rate in rates.items():
            vs_keras = f"{rate / rates['keras']:.2f}x"
            vs_ours = "" if name in ("keras", "ours") else f"{rates['ours'] / rate:.2f}x"
            print(f"| {backend} | {shape} | {name} | {rate:,.0f} | {vs_keras} | {vs_ours} | "
                  f"{_path(variants[name])} |", flush=True)
            results[(shape, name)] = rate
        keras.backend.clear_session()
    return results


def measure(variants, batch=81, length=100, features=88, steps=20, repeats=3, seed=0, clock="wall",
            depth=0):
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
        models[name] = _model(make, length, features, depth=depth)
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
        "--suite", choices=["keras", "cells", "regularizers", "projection", "all"], default="all",
        help="keras: ours vs Keras' layers; cells: our cells in keras.layers.RNN vs Keras' cells "
        "and vs our fused layers; regularizers: each regularizer vs our plain layer; projection: "
        "ours with the input projection before / in the loop vs Keras' layers (not in 'all')",
    )
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall time, or process CPU time (steadier on a shared machine)")
    parser.add_argument(
        "--shapes", choices=["jsb", "paper"], default="jsb",
        help="jsb: the noise study's JSB setup (default, the CPU table); paper: the papers' four "
        "GPU workloads (" + ", ".join(PAPER_SHAPES) + ") with every regularizer",
    )
    parser.add_argument(
        "--only", default=None,
        help="with --shapes paper: a comma-separated subset of the shapes; with --suite "
        "regularizers: comma-separated prefixes of the variants to time (and the plain layers)",
    )
    args = parser.parse_args(argv)
    backend, opts = keras.backend.backend(), {
        "steps": args.steps, "repeats": args.repeats, "clock": args.clock}
    head = (f"# backend={backend} device={_device_name()} keras={keras.__version__} "
            f"steps={args.steps} repeats={args.repeats} clock={args.clock}")
    if args.shapes == "paper":
        print(head)
        if not _has_gpu():
            print("# no GPU: these are the GPU workloads measured on a CPU; the GPU figures are "
                  "to be taken on a GPU machine")
        measure_paper(args.only.split(",") if args.only else None, **opts)
        return
    print(f"{head} machine={platform.machine()} cpus={os.cpu_count()} batch=81 length=100 "
          f"inputs=88 units={args.units}")
    for suite, (variants, columns, ratio) in _SUITES.items():
        if args.suite == suite or (args.suite == "all" and suite != "projection"):
            variants = variants(args.units)
            if suite == "regularizers" and args.only:
                prefixes = ("ours.", *args.only.split(","))
                variants = {name: v for name, v in variants.items() if name.startswith(prefixes)}
            rates = measure(variants, **opts)
            print(f"| backend | {columns} |\n" + "|---" * (columns.count("|") + 2) + "|")
            for name, rate in rates.items():
                print(f"| {backend} | {name} | {rate:,.0f} | {ratio(name, rate, rates)} |",
                      flush=True)


def _ratio(rate, ref, rates, inverse=False):
    if ref is None:
        return "(reference)"
    return f"{rates[ref] / rate if inverse else rate / rates[ref]:.2f}x"


def _cell_ratios(name, rate, rates):
    kind = name.split("(")[-1].removesuffix("Cell)") if "(" in name else name[5:]
    return (f"{_ratio(rate, f'keras.RNN({kind}Cell)', rates)} | "
            f"{_ratio(rate, f'ours.{kind}', rates)}")


# suite -> (variants(units), its columns after the backend, the ratio column(s) of a row)
_SUITES = {
    "keras": (_keras_variants, "layer | timesteps/s | speed-up vs Keras",
              lambda name, rate, rates: _ratio(rate, REFERENCE.get(name), rates)),
    "cells": (_cell_variants, "layer | timesteps/s | speed vs Keras' cell | speed vs our fused "
              "layer", _cell_ratios),
    "projection": (_projection_variants, "layer | timesteps/s | speed vs Keras",
                   lambda name, rate, rates: _ratio(
                       rate, f"keras.{name.split('.')[1].split(' ')[0]}", rates)),
    "regularizers": (_regularizer_variants, "variant | timesteps/s | time vs our plain layer",
                     lambda name, rate, rates: _ratio(rate, _regularizer_reference(name), rates,
                                                      inverse=True)),
}


def _device_name():
    if not _has_gpu():
        return "cpu"
    backend = keras.backend.backend()
    try:
        if backend == "torch":
            import torch

            return torch.cuda.get_device_name(0).replace(" ", "_")
        if backend == "jax":
            import jax

            return jax.devices()[0].device_kind.replace(" ", "_")
    except Exception:  # the name is informative only
        pass
    return "gpu"


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
