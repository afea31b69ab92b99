"""The noise study's figures: the one-unit loss surface (Figs. 2–3), the spectral radius over
epochs (Figs. 5–7) and test error against λ, σ and p from a tuner search (Figs. 8–10)."""

import json
import math
from pathlib import Path

import numpy as np

from keras_rnnreg.figures._common import FigureError, pyplot, runs_of, save

__all__ = ["noise_loss_surface", "noise_spectral_radius", "noise_sweep", "unit_rnn_loss"]


# ------------------------------------------------------------------------------ Figs. 2 and 3
def unit_rnn_loss(w, b, steps=50, target=0.7, sigma=0.0, per="sequence", samples=1, seed=0):
    """Squared loss (h_T − target)² of a one-unit RNN over a grid of (w, b) (Sec. 5).

    The noise study's "simple regime": Eq. 2 with no input and one unit, h_0 = 0,
    h_t = tanh(w·h_{t−1} + b), T = ``steps``. With ``sigma`` > 0, w and b get additive Gaussian
    noise (Sec. 8.1) drawn once per sequence (``per="sequence"``) or every timestep, and the loss
    is its Monte-Carlo mean over ``samples`` draws (the same at every grid point): the surface
    that noisy training descends (Appendix A).

    Args:
        w, b: arrays of the same shape (e.g. from ``numpy.meshgrid``).

    Returns:
        An array of ``w``'s shape.
    """
    if per not in ("sequence", "timestep"):
        raise ValueError(f"per={per!r}: expected 'sequence' or 'timestep'")
    w = np.asarray(w, np.float64)[..., None]
    b = np.asarray(b, np.float64)[..., None]
    rng = np.random.default_rng(seed)
    k = samples if sigma > 0 else 1
    h = np.zeros(np.broadcast_shapes(w.shape, b.shape)[:-1] + (k,))
    noise = sigma * rng.standard_normal((2, k)) if sigma > 0 else np.zeros((2, k))
    for _ in range(steps):
        if sigma > 0 and per == "timestep":
            noise = sigma * rng.standard_normal((2, k))
        h = np.tanh((w + noise[0]) * h + b + noise[1])
    return ((h - target) ** 2).mean(-1)


def noise_loss_surface(out_dir, *, grid=60, steps=50, target=0.7, sigma=0.3, per="sequence",
                       samples=200, w_range=(-3.0, 3.0), b_range=(-3.0, 3.0), seed=0):
    """Noise study Figs. 2–3: the loss surface of a one-unit RNN without and with weight noise.

    A ``grid`` × ``grid`` set of initial weights (the paper: 100 × 100), loss from
    :func:`unit_rnn_loss`. Columns: w, b, loss (no noise), loss_noisy (mean over the noise).
    """
    W, B = np.meshgrid(np.linspace(*w_range, grid), np.linspace(*b_range, grid))
    plain = unit_rnn_loss(W, B, steps, target)
    noisy = unit_rnn_loss(W, B, steps, target, sigma=sigma, per=per, samples=samples, seed=seed)
    plt = pyplot()
    fig = plt.figure(figsize=(11, 4.6))
    titles = ("Fig. 2: no noise",
              f"Fig. 3: mean over additive noise on (w, b), σ={sigma:g} per {per}")
    for i, (surface, title) in enumerate(zip((plain, noisy), titles)):
        ax = fig.add_subplot(1, 2, i + 1, projection="3d")
        ax.plot_surface(W, B, surface, cmap="viridis", linewidth=0, antialiased=False)
        ax.set(xlabel="w (recurrent weight)", ylabel="b (bias)", zlabel="loss")
        ax.set_title(title, fontsize=10)
        ax.view_init(elev=35, azim=-125)
    fig.suptitle(f"One-unit RNN h_t = tanh(w·h_(t-1) + b), h_0 = 0: loss (h_{steps} - "
                 f"{target:g})² over {grid * grid} initial (w, b)", fontsize=10)
    rows = [{"w": float(W.flat[i]), "b": float(B.flat[i]), "loss": float(plain.flat[i]),
             "loss_noisy": float(noisy.flat[i])} for i in range(W.size)]
    return save(fig, out_dir, "noise_loss_surface", ["w", "b", "loss", "loss_noisy"], rows)


# ------------------------------------------------------------------------------ Figs. 5 to 7
# The panels of Figs. 5-7 by the regularization section a run sets (the first that applies).
_FAMILIES = {"dropconnect": "DropConnect (Fig. 5)", "weight_noise": "weight noise (Fig. 6)",
            "weight_penalty": "norm-based penalty (Fig. 7)"}


def _family(run):
    reg = run.config["regularization"]
    return next((family for key, family in _FAMILIES.items() if reg.get(key)), "other")


def noise_spectral_radius(runs, out_dir):
    """Noise study Figs. 5–7: spectral radius of W_hh over epochs, one panel per regularizer.

    From the runs' ``history.csv`` columns ``spectral_radius/<layer>`` (SimpleRNN) or
    ``spectral_radius/<layer>/c`` (the candidate block of an LSTM), which training logs every
    epoch (:class:`keras_rnnreg.callbacks.SpectralRadiusLogger`). Columns: run, name, label,
    family, key, epoch, spectral_radius.
    """
    runs = runs_of(runs, "noise_spectral_radius")
    rows = []
    for run in runs:
        keys = sorted({k for r in run.history for k in r if k.startswith("spectral_radius/")})
        keys = [k for k in keys if k.count("/") == 1 or k.endswith("/c")]
        if not keys:
            raise FigureError(f"{run.path / 'history.csv'}: no spectral_radius/... column "
                              "(training logs it since the figures were added; retrain the run)")
        for key in keys:
            epochs, values = run.column(key)
            rows += [{"run": str(run.path), "name": run.name, "label": run.label(),
                      "family": _family(run), "key": key, "epoch": e, "spectral_radius": v}
                     for e, v in zip(epochs, values)]
    families = [f for f in (*_FAMILIES.values(), "other") if any(r["family"] == f for r in rows)]
    plt = pyplot()
    fig, axes = plt.subplots(1, len(families), figsize=(4.6 * len(families), 3.6), squeeze=False)
    for ax, family in zip(axes[0], families):
        series = {}
        for r in rows:
            if r["family"] == family:
                series.setdefault((r["run"], r["key"]), []).append(r)
        for (_, key), points in series.items():
            label = f"{points[0]['name']}: {points[0]['label']}"
            if len({k for _, k in series}) > 1:
                label += f" [{key.split('/', 1)[1]}]"
            ax.plot([p["epoch"] for p in points], [p["spectral_radius"] for p in points],
                    label=label)
        ax.set_title(family, fontsize=10)
        ax.set(xlabel="epoch", ylabel="spectral radius of W_hh")
        ax.legend(fontsize=7)
    columns = ["run", "name", "label", "family", "key", "epoch", "spectral_radius"]
    return save(fig, out_dir, "noise_spectral_radius", columns, rows)


# ----------------------------------------------------------------------------- Figs. 8 to 10
#: Search-space names (keras_rnnreg.tuning.spaces) of the swept quantities, with their panel.
SWEPT = {
    "lambda": "λ (L1 / L2 penalty, Fig. 8)",
    "noise_stddev": "σ (weight noise, Fig. 9)",
    "dropconnect_rate": "p (DropConnect, Fig. 10)",
}


def _trials(search):
    """(model, trial id, hyperparameter values, score) of every scored trial under ``search``."""
    search = Path(search)
    if not search.is_dir():
        raise FigureError(f"{search}: no such search folder (expected the --out folder of `rnnreg "
                          "tune`)")
    files = sorted(search.rglob("trial.json"))
    if not files:
        raise FigureError(f"{search}: no KerasTuner trial (no trial_*/trial.json below it; "
                          "expected the --out folder of `rnnreg tune`)")
    found = []
    for path in files:
        try:
            trial = json.loads(path.read_text())
        except ValueError as err:
            raise FigureError(f"{path}: not valid JSON ({err})") from None
        score = trial.get("score")
        if score is None or not math.isfinite(float(score)):
            continue
        project = path.parent.parent
        best = project / "best.json"
        model = json.loads(best.read_text()).get("model") if best.is_file() else project.name
        values = trial.get("hyperparameters", {}).get("values", {})
        found.append((model, trial.get("trial_id", path.parent.name), values, float(score)))
    return found


def noise_sweep(searches, out_dir):
    """Noise study Figs. 8–10: the search's score against λ (L1 / L2), σ and p.

    From KerasTuner's ``trial.json`` files below each search folder of ``rnnreg tune`` (a
    single-model job, or a Table 1 column job with one sub-folder per model): every scored trial
    with a ``lambda``, ``noise_stddev`` or ``dropconnect_rate`` hyperparameter is a point. The score
    is the job's objective (validation NLL per timestep for the Table 1 jobs; the paper plots test
    error). Columns: search, model, trial, parameter, value, regularizer, score.
    """
    if not searches:
        raise FigureError("noise_sweep draws from tuner searches: pass --search DIR (or --quick)")
    rows = []
    for search in searches:
        for model, trial_id, values, score in _trials(search):
            for name in SWEPT:
                if name in values:
                    regularizer = values.get("regularizer", "") if name == "lambda" else ""
                    rows.append({"search": str(search), "model": model, "trial": trial_id,
                                 "parameter": name, "value": float(values[name]),
                                 "regularizer": regularizer, "score": score})
    if not rows:
        raise FigureError(f"{', '.join(map(str, searches))}: no scored trial has a "
                          f"{', '.join(SWEPT)} hyperparameter (search RNN-NBR, RNN-N or RNN-DOS "
                          "models with the noise_study_table2 space)")
    present = [name for name in SWEPT if any(r["parameter"] == name for r in rows)]
    plt = pyplot()
    fig, axes = plt.subplots(1, len(present), figsize=(4.4 * len(present), 3.6), squeeze=False)
    for ax, name in zip(axes[0], present):
        groups = {}
        for r in rows:
            if r["parameter"] == name:
                groups.setdefault((r["model"], r["regularizer"]), []).append(r)
        for (model, regularizer), group in sorted(groups.items()):
            label = model + (f" ({regularizer.upper()})" if regularizer else "")
            ax.scatter([r["value"] for r in group], [r["score"] for r in group], s=18, label=label)
        if name == "lambda":
            from matplotlib.ticker import NullFormatter

            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set(xlabel=SWEPT[name], ylabel="trial score (search objective)")
        ax.legend(fontsize=7)
    columns = ["search", "model", "trial", "parameter", "value", "regularizer", "score"]
    return save(fig, out_dir, "noise_sweep", columns, rows)
