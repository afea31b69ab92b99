"""What every figure shares: the error class, run folders, writing NAME.png + NAME.csv."""

import csv
import io
import math
from pathlib import Path

import numpy as np

from keras_rnnreg import _runfolder
from keras_rnnreg.zoo.schema import arguments


class FigureError(ValueError):
    """Input a figure cannot draw from (a missing folder, a run without the logged quantity)."""


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save(fig, out_dir, name, columns, rows):
    """Write ``out_dir/name.png`` and ``out_dir/name.csv`` (each atomically); close ``fig``.

    Returns ``{"png", "csv", "columns", "rows"}``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    pyplot().close(fig)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row[c]) for c in columns])
    png, table = out_dir / f"{name}.png", out_dir / f"{name}.csv"
    _runfolder.atomic_write(png, buffer.getvalue())
    _runfolder.atomic_write(table, text.getvalue())
    return {"png": str(png), "csv": str(table), "columns": list(columns), "rows": rows}


def _cell(value):
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    return value


# ----------------------------------------------------------------------------------- run folders
class Run:
    """A finished (or partly trained) run folder of ``rnnreg train``: config, history, model."""

    def __init__(self, path):
        from keras_rnnreg import training

        self.path = Path(path)
        if not self.path.is_dir():
            raise FigureError(f"{self.path}: no such run folder (expected a folder written by "
                              "`rnnreg train`)")
        for name in (training.CONFIG, training.STATE):
            if not (self.path / name).is_file():
                raise FigureError(f"{self.path}: not a run folder of `rnnreg train` with a "
                                  f"finished epoch (missing {name})")
        saved = training.read_json(self.path / training.CONFIG, "run configuration")
        self.config, self.info = saved["config"], saved["run"]
        self.state = training.read_json(self.path / training.STATE, "commit record")
        self.history = list(self.state.get("history", []))
        self._model = None

    @property
    def name(self):
        return self.config["name"]

    @property
    def cell(self):
        return self.config["model"]["cell"]

    def model(self):
        """The best committed checkpoint (else the last), loaded once."""
        if self._model is None:
            from keras_rnnreg import training

            self._model = training.best_model(self.path)[0]
        return self._model

    def column(self, key):
        """(epochs, values) of a history column; FigureError when no epoch logged it."""
        rows = [r for r in self.history if key in r]
        if not rows:
            logged = sorted({k for r in self.history for k in r} - {"epoch"})
            raise FigureError(f"{self.path / 'history.csv'}: no column {key!r} (logged: "
                              f"{', '.join(logged)})")
        return [int(r["epoch"]) + 1 for r in rows], [float(r[key]) for r in rows]

    def label(self):
        """A short description of the run's regularization, e.g. "β=500 (norm_diff on cell)"."""
        reg, model = self.config["regularization"], self.config["model"]
        parts = []
        if ns := arguments(reg.get("norm_stabilizer")):
            parts.append(f"β={ns['beta']:g} ({ns['cost']} on {ns['on']})")
        if wn := arguments(reg.get("weight_noise")):
            parts.append(f"{wn['mode']} noise σ={wn['stddev']:g} per {wn['per']}")
        if dc := arguments(reg.get("dropconnect")):
            parts.append(f"DropConnect p={dc['rate']:g} per {dc['per']}")
        if wp := reg.get("weight_penalty"):
            parts.append(f"{wp['kind'].upper()} λ={wp['strength']:g}")
        if reg.get("fast_dropout"):
            parts.append("fast dropout")
        if not parts:
            parts.append("β=0" if self.config["task"] in ("ptb", "adding") else "no regularizer")
        if model["cell"] == "lstm" and not model["lstm_output_tanh"]:
            parts.append("no output tanh")
        return ", ".join(parts)

    def recurrent_layer(self, model=None):
        from keras_rnnreg import callbacks

        layers = callbacks.recurrent_layers(model or self.model())
        if not layers:
            raise FigureError(f"{self.path}: the model has no recurrent layer")
        return next(iter(layers.values()))


def runs_of(paths, what):
    """:class:`Run` for every path; FigureError when there is none."""
    if not paths:
        raise FigureError(f"{what} draws from run folders: pass --runs DIR [DIR ...] (or --quick)")
    return [Run(p) for p in paths]


def need_cell(run, cells, figure):
    if run.cell not in cells:
        raise FigureError(f"{run.path}: {figure} needs a run with model.cell in {sorted(cells)}; "
                          f"this run's model.cell is {run.cell!r} ({run.name})")


# ------------------------------------------------------------------------------- probe sequences
def long_inputs(run, length, batch=16, seed=0):
    """(x, y) of ``batch`` sequences of ``length`` steps from the run's data (y: None if none).

    PTB: contiguous stretches of the test split (the stream repeated if it is too short); y is
    the next character. Adding problem: freshly generated sequences of that length (y the sums).
    Polyphonic music: the test pieces joined end to end; y the next frame.
    """
    from keras_rnnreg import training
    from keras_rnnreg.data import adding

    task = run.config["task"]
    if task == "adding":
        return adding.generate(batch, length=length, seed=seed)
    if task not in ("ptb", "polyphonic"):
        raise FigureError(f"{run.path}: long probe sequences are made for ptb, polyphonic and "
                          f"adding runs; this run's task is {task!r}")
    _, splits, _, _, _ = training.load_task_data(run.config, run.info["data"])
    test = splits["test"]
    stream = (np.asarray(test, np.int32) if task == "ptb"
              else np.concatenate(test).astype(np.float32))
    stream = np.resize(stream, (max(batch * (length + 1), len(stream)), *stream.shape[1:]))
    starts = np.linspace(0, len(stream) - length - 1, batch).astype(int)
    windows = np.stack([stream[s : s + length + 1] for s in starts])
    return windows[:, :-1], windows[:, 1:]


def hidden_sequences(run, x, cells=False, chunk=8):
    """The recurrent layer's h (and c) sequences on ``x`` as float64 arrays (B, T, units)."""
    from keras_rnnreg import callbacks

    return callbacks.hidden_sequences(run.model(), x, run.recurrent_layer(), cells=cells,
                                      batch_size=chunk)


def float64(tensor):
    """A backend tensor as a float64 NumPy array."""
    import keras

    return np.asarray(keras.ops.convert_to_numpy(tensor), np.float64)


def by_run(rows, descending=False):
    """The rows of each run (a list per run, in the rows' order), runs sorted by ``"beta"``."""
    runs = {}
    for row in rows:
        runs.setdefault(row["run"], []).append(row)
    return sorted(runs.values(), key=lambda points: points[0]["beta"], reverse=descending)


def legend(ax):
    """The legend under the axes (curves of long runs fill the plot area)."""
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
