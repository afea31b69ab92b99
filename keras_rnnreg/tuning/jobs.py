"""Tuner jobs (top-level ``tuning/*.toml``), run by ``rnnreg tune JOB`` (a shipped job's name or
a TOML path).

A job names a zoo configuration, a search space (:mod:`keras_rnnreg.tuning.spaces`), the tuner
and its budget::

    model = "jsb_rnn_ns"
    space = "noise_study_table2"          # or [[param]] tables (search-space entries)
    data = "polyphonic/JSB_Chorales.mat"  # default: the configuration's data.source
    data_root = "~/corpora"               # optional (default: --data-root, $RNNREG_DATA, ...)
    tuner = "random"                      # random | bayesian | hyperband
    max_trials = 50
    epochs = 200                          # per trial (hyperband: the maximum)
    objective = "val_nll_per_timestep"    # default: training.monitor
    direction = "min"                     # default: training.mode
    patience = 20                         # early stopping in a trial (default training.patience)
    seed = 1                              # default 1; KerasTuner draws a random one for 0
    set = ["training.patience=20"]        # fixed overrides

    [quick]                               # seconds, for CI
    data = "synthetic"
    max_trials = 2
    epochs = 1
    set = ["model.units=4", "data.limit=4"]

The tuner writes into ``OUT`` (``runs/tune-<job>`` by default; an existing search is continued);
``OUT/best.json`` holds the best hyperparameters, their score and the overrides to train them with
``rnnreg train NAME --set ...``. The spec, the folder and the search are
:mod:`~keras_rnnreg.tuning.specs`, :mod:`~keras_rnnreg.tuning.folder` and
:mod:`~keras_rnnreg.tuning.search`.
"""

from pathlib import Path

from keras_rnnreg.tuning import column, distributed, folder, search, specs
from keras_rnnreg.tuning.specs import DEFAULT_SEED, JobError, load_job

__all__ = ["DEFAULT_SEED", "JobError", "load_job", "run_job"]


def run_job(path, quick=False, out_dir=None, data_root=None, log=print, workers=0, entry=None):
    """Run a tuner job; returns ``{"best_hyperparameters", "best_score", "overrides", ...}``.

    ``workers > 0``: KerasTuner's distributed mode, a chief oracle and ``workers`` worker processes
    on 127.0.0.1 (:mod:`keras_rnnreg.tuning.distributed`); the result also says which worker ran
    each trial. A column job (``card`` and ``column``) runs :func:`keras_rnnreg.tuning.column.run`;
    ``entry`` (a key of that column) runs the search of that entry alone.
    """
    job = load_job(path)
    if "column" in job and entry is None:
        return column.run(job, quick=quick, out_dir=out_dir, data_root=data_root, log=log,
                          workers=workers)
    spec = specs.plan(job, quick=quick, entry=entry)
    out = Path(out_dir or specs.default_out(job, quick))
    with folder.claim(out, spec, workers) as lock:
        if workers:
            return distributed.search(spec, out, workers, data_root=data_root, log=log, lock=lock)
        return search.search(spec, out, data_root=data_root, log=log)
