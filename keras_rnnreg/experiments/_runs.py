"""One run of a card (an entry x seed): its folder and its training, shared by the sequential loop
of :func:`keras_rnnreg.experiments.cards.reproduce` and the child processes of
:mod:`keras_rnnreg.experiments._parallel`."""

import time
from pathlib import Path

from keras_rnnreg import _runfolder, training


def run_folder(out, run):
    """The folder of a run (see :func:`keras_rnnreg.experiments.cards.plan`) in ``out``."""
    return Path(out) / run["key"] / f"seed{run['seed']}"


def train_run(run, run_dir, resume, verbose=0, log=print, callbacks=()):
    """Train (or resume) a run of a card's plan; its report (with ``wall_s``) is saved too."""
    started = time.time()
    report = training.train(
        run["name"], run_dir, data=run["data"], data_root=run["data_root"], epochs=run["epochs"],
        seed=run["seed"], overrides=run["overrides"] or None, resume=resume, verbose=verbose,
        callbacks=callbacks, log=log)
    report["wall_s"] = round(time.time() - started, 1)
    _runfolder.write_json_atomic(Path(run_dir) / _runfolder.REPORT, report)
    return report
