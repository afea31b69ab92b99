"""The norm-stabilizer paper's figures: learning curves (Fig. 1), norms far past the training
horizon (Figs. 3 and 5), log-norm and cost per timestep of an IRNN (Fig. 4), forget gates and
|eigenvalues| of W_hh (Fig. 6). Quantities after training come from each run's best checkpoint.
"""

import math

import numpy as np

from keras_rnnreg.figures._common import (
    FigureError,
    by_run,
    float64,
    hidden_sequences,
    legend,
    long_inputs,
    need_cell,
    pyplot,
    runs_of,
    save,
)
from keras_rnnreg.zoo.schema import arguments

__all__ = ["LENGTH", "forget_gate_means", "ns_forget_gates", "ns_irnn_eigenvalues",
           "ns_irnn_lognorm", "ns_learning_curves", "ns_norm_horizon"]

#: Probe length of the norm figures (the paper trains on 50 steps and runs 1,000 and more).
LENGTH = 1000


def _row(run):
    """The columns every CSV here starts with: run, name, label, beta."""
    ns = arguments(run.config["regularization"].get("norm_stabilizer"))
    return {"run": str(run.path), "name": run.name, "label": run.label(),
            "beta": 0.0 if not ns else float(ns["beta"])}


def _panel(run):
    """"hidden" or "cell": where a run's penalty sits (β = 0 LSTMs: by their output tanh)."""
    ns = arguments(run.config["regularization"].get("norm_stabilizer"))
    if ns and ns["beta"] > 0:
        return ns["on"]
    if run.cell == "lstm" and run.config["model"]["lstm_output_tanh"]:
        return "cell"
    return "hidden"


# ------------------------------------------------------------------------------------ Fig. 1
def ns_learning_curves(runs, out_dir):
    """Norm-stabilizer Fig. 1: learning curves for several β, penalty on h (left), on c (right).

    The monitored metric per epoch and its training value (dashed). A β = 0 LSTM goes beside the
    hidden-state penalties when it has no output tanh (as the paper's), else beside the
    memory-cell ones. Columns: run, name, label, beta, panel, split, epoch, value, metric.
    """
    runs = runs_of(runs, "ns_learning_curves")
    rows = []
    for run in runs:
        monitor = run.config["training"]["monitor"]
        splits = [("valid", monitor)]
        train_key = monitor[4:] if monitor.startswith("val_") else None
        if train_key and any(train_key in r for r in run.history):
            splits.append(("train", train_key))
        first = {**_row(run), "panel": _panel(run)}
        for split, key in splits:
            epochs, values = run.column(key)
            rows += [{**first, "split": split, "epoch": e, "value": v, "metric": monitor}
                     for e, v in zip(epochs, values)]
    panels = [p for p in ("hidden", "cell") if any(r["panel"] == p for r in rows)]
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        _curves(ax, [r for r in rows if r["panel"] == panel])
        ax.set_title(f"penalty on the {'hidden states' if panel == 'hidden' else 'memory cells'}",
                     fontsize=10)
        ax.set(xlabel="epoch", ylabel=rows[0]["metric"] + " (solid) / training (dashed)")
    columns = ["run", "name", "label", "beta", "panel", "split", "epoch", "value", "metric"]
    return save(fig, out_dir, "ns_learning_curves", columns, rows)


def _curves(ax, rows):
    for mine in by_run(rows):
        color = None
        for split, style in (("valid", "-"), ("train", "--")):
            points = [r for r in mine if r["split"] == split]
            if not points:
                continue
            line = ax.plot([p["epoch"] for p in points], [p["value"] for p in points], style,
                           color=color,
                           label=f"{points[0]['name']}: {points[0]['label']}" if split == "valid"
                           else None)
            color = line[0].get_color()
    legend(ax)


# ------------------------------------------------------------------------------ Figs. 3 and 5
def ns_norm_horizon(runs, out_dir, *, length=LENGTH, batch=16):
    """Norm-stabilizer Figs. 3 and 5: mean ‖h_t‖₂ (and ‖c_t‖₂ of LSTMs) per timestep, far past
    the training horizon.

    Each run's best checkpoint runs over ``batch`` sequences of ``length`` steps of its data.
    Panels: LSTM hidden states and memory cells (Fig. 3); one per cost of simple RNNs, with the
    β = 0 runs in each (Fig. 5); the dotted line is the training length. The CSV is wide: ``t``
    and one column per curve (``<run folder>:h`` or ``:c``); the returned ``"curves"`` holds the
    same points in long form (name, label, beta, cost, quantity, cell).
    """
    runs = runs_of(runs, "ns_norm_horizon")
    rows = []
    for run in runs:
        x, _ = long_inputs(run, length, batch)
        cells = run.cell == "lstm"
        out = hidden_sequences(run, x, cells=cells)
        seqs = dict(zip("hc", out)) if cells else {"h": out}
        ns = arguments(run.config["regularization"].get("norm_stabilizer"))
        cost = ns["cost"] if ns and ns["beta"] > 0 else ""
        network = "lstm" if cells else f"{run.cell}/{run.config['model']['activation']}"
        first = {**_row(run), "cost": cost}
        for quantity, seq in seqs.items():
            with np.errstate(over="ignore", invalid="ignore"):
                norms = np.linalg.norm(seq, axis=-1).mean(0)
            rows += [{**first, "quantity": quantity, "cell": network, "t": t + 1,
                      "mean_norm": float(v)} for t, v in enumerate(norms)]
    panels = []  # (cell, quantity, cost): LSTM h and c; simple RNNs one panel per cost
    for cell in sorted({r["cell"] for r in rows}):
        mine = [r for r in rows if r["cell"] == cell]
        costs = sorted({r["cost"] for r in mine if r["cost"]}) if cell != "lstm" else []
        for quantity in [q for q in ("h", "c") if any(r["quantity"] == q for r in mine)]:
            panels += [(cell, quantity, cost) for cost in costs or [None]]
    horizon = max(r.config["data"]["seq_len"] for r in runs)
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    for ax, (cell, quantity, cost) in zip(axes[0], panels):
        chosen = [r for r in rows if r["cell"] == cell and r["quantity"] == quantity
                  and (cost is None or r["cost"] in (cost, ""))]
        for points in by_run(chosen):
            ax.plot([p["t"] for p in points], [p["mean_norm"] for p in points], lw=1,
                    label=f"{points[0]['name']}: {points[0]['label']}")
        values = [r["mean_norm"] for r in chosen if math.isfinite(r["mean_norm"])]
        if values and min(values) > 0 and max(values) / min(values) > 100:
            ax.set_yscale("log")
        ax.axvline(horizon, color="gray", ls=":", lw=1)
        name = {"h": "‖h_t‖", "c": "‖c_t‖"}[quantity]
        ax.set_title(f"{cell}: mean {name}" + (f", cost {cost}" if cost else ""), fontsize=10)
        ax.set(xlabel="timestep (dotted: training length)", ylabel=f"mean {name}")
        legend(ax)
    curves = list(dict.fromkeys(f"{r['run']}:{r['quantity']}" for r in rows))
    wide = {}
    for r in rows:
        wide.setdefault(r["t"], {"t": r["t"]})[f"{r['run']}:{r['quantity']}"] = r["mean_norm"]
    table = [{c: row.get(c, math.nan) for c in ["t", *curves]} for _, row in sorted(wide.items())]
    return {**save(fig, out_dir, "ns_norm_horizon", ["t", *curves], table), "curves": rows}


# ------------------------------------------------------------------------------------ Fig. 4
def ns_irnn_lognorm(runs, out_dir, *, length=LENGTH, batch=16):
    """Norm-stabilizer Fig. 4: average log ‖h_t‖₂ (top) and average cost (bottom) per timestep
    of IRNNs (ReLU, W_hh = I at the start) with and without the penalty, past the horizon.

    PTB runs: the cost at step t is the next character's cross-entropy in bits, averaged over
    ``batch`` test sequences of ``length`` steps; non-finite values stay inf / nan in the CSV.
    Columns: run, name, label, beta, t, mean_log_norm, cost_bits.
    """
    runs = runs_of(runs, "ns_irnn_lognorm")
    rows = []
    for run in runs:
        need_cell(run, {"simple_rnn"}, "ns_irnn_lognorm")
        if run.config["task"] != "ptb":
            raise FigureError(f"{run.path}: ns_irnn_lognorm needs a character-level run (task "
                              "'ptb', a cost at every timestep); this run's task is "
                              f"{run.config['task']!r}")
        x, y = long_inputs(run, length, batch)
        h = hidden_sequences(run, x)
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            lognorm = np.log(np.linalg.norm(h, axis=-1)).mean(0)
        probs = np.concatenate([float64(run.model()(x[i : i + 8], training=False))
                                for i in range(0, len(x), 8)])
        picked = np.take_along_axis(probs, y[..., None].astype(int), axis=-1)[..., 0]
        with np.errstate(divide="ignore", invalid="ignore"):
            cost = (-np.log2(picked)).mean(0)
        first = _row(run)
        rows += [{**first, "t": t + 1, "mean_log_norm": float(a), "cost_bits": float(c)}
                 for t, (a, c) in enumerate(zip(lognorm, cost))]
    plt = pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 6), sharex=True)
    horizon = max(r.config["data"]["seq_len"] for r in runs)
    for points in by_run(rows, descending=True):
        style = "-" if points[0]["beta"] > 0 else "--"
        label = f"{points[0]['name']}: {points[0]['label']}"
        if all(p["mean_log_norm"] == -math.inf for p in points):
            label += " [log ‖h_t‖ = −inf: h_t = 0, not drawn]"
        top.plot([p["t"] for p in points], [p["mean_log_norm"] for p in points], style, lw=1,
                 label=label)
        bottom.plot([p["t"] for p in points], [p["cost_bits"] for p in points], style, lw=1)
    for ax in (top, bottom):
        ax.axvline(horizon, color="gray", ls=":", lw=1)
    top.set_ylabel("mean log ‖h_t‖")
    top.legend(fontsize=7)
    bottom.set(ylabel="cost (bits per character)", xlabel="timestep (dotted: training length)")
    columns = ["run", "name", "label", "beta", "t", "mean_log_norm", "cost_bits"]
    return save(fig, out_dir, "ns_irnn_lognorm", columns, rows)


# ------------------------------------------------------------------------------------ Fig. 6
def forget_gate_means(run, x):
    """Mean forget-gate activation σ(z_f) per memory cell over the sequences ``x`` (B, T, ...).

    z_f = x_t W_f + h_{t−1} U_f + b_f with the LSTM's weights (gate order i, f, c, o) and the
    h sequence the layer computes (h_0 = 0); the layer's input is what the model feeds it.
    """
    import keras

    model = run.model()
    layer = run.recurrent_layer(model)
    inputs = float64(keras.Model(model.input, layer.input)(x, training=False))
    h = hidden_sequences(run, x)
    f = slice(layer.units, 2 * layer.units)  # the forget gate's columns
    kernel, recurrent = float64(layer.kernel)[:, f], float64(layer.recurrent_kernel)[:, f]
    bias = float64(layer.bias)[f] if layer.bias is not None else 0.0
    previous = np.concatenate([np.zeros_like(h[:, :1]), h[:, :-1]], axis=1)
    z = inputs @ kernel + previous @ recurrent + bias
    return float64(layer.recurrent_activation(z)).mean(axis=(0, 1))


def ns_forget_gates(runs, out_dir, *, batch=16):
    """Norm-stabilizer Fig. 6 (left): sorted mean forget-gate activation per memory cell.

    :func:`forget_gate_means` on ``batch`` sequences of the training length from each LSTM run's
    test data, sorted in decreasing order. Columns: run, name, label, beta, rank, forget_gate.
    """
    def means(run):
        x, _ = long_inputs(run, run.config["data"]["seq_len"], batch)
        return forget_gate_means(run, x)

    return _sorted_figure(runs, out_dir, "ns_forget_gates", {"lstm"}, means, "forget_gate",
                          "mean forget gate (sorted)",
                          "LSTM: mean forget-gate activation per memory cell")


def ns_irnn_eigenvalues(runs, out_dir):
    """Norm-stabilizer Fig. 6 (right): sorted |eigenvalues| of W_hh of simple RNNs (IRNNs).

    NumPy's eigenvalues of each run's best recurrent kernel, sorted in decreasing order.
    Columns: run, name, label, beta, rank, abs_eigenvalue.
    """
    def eigenvalues(run):
        w = float64(run.recurrent_layer().recurrent_kernel)
        if not np.isfinite(w).all():
            raise FigureError(f"{run.path}: the best checkpoint's W_hh has non-finite entries")
        return np.abs(np.linalg.eigvals(w))

    return _sorted_figure(runs, out_dir, "ns_irnn_eigenvalues", {"simple_rnn"}, eigenvalues,
                          "abs_eigenvalue", "|eigenvalue| of W_hh (sorted)",
                          "IRNN: sorted |eigenvalues| of W_hh")


def _sorted_figure(runs, out_dir, name, cells, values_of, key, ylabel, title):
    """Every run's ``values_of(run)`` sorted in decreasing order, one curve per run."""
    rows = []
    for run in runs_of(runs, name):
        need_cell(run, cells, name)
        first = _row(run)
        rows += [{**first, "rank": i + 1, key: float(v)}
                 for i, v in enumerate(np.sort(values_of(run))[::-1])]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    for points in by_run(rows):
        ax.plot([p["rank"] for p in points], [p[key] for p in points], lw=1.2,
                label=f"{points[0]['name']}: {points[0]['label']}")
    ax.set(xlabel="unit (sorted)", ylabel=ylabel)
    ax.set_title(title, fontsize=10)
    legend(ax)
    columns = ["run", "name", "label", "beta", "rank", key]
    return save(fig, out_dir, name, columns, rows)
