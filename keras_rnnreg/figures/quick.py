"""Tiny synthetic runs and searches for every figure (``rnnreg figure NAME --quick``), made once
under a work folder and reused."""

import shutil
from pathlib import Path

#: The zoo configurations the quick runs train, by group.
RUNS = {
    "jsb": ["jsb_rnn_do", "jsb_rnn_n", "jsb_rnn_nbr"],
    "lstm": ["ptb_lstm_notanh", "ptb_lstm_ns", "ptb_lstm", "ptb_lstm_ns_cell"],
    "irnn": ["ptb_srnn_relu", "ptb_srnn_relu_ns"],
    "srnn_costs": ["ptb_srnn_trec_ns_first_last"],
}
#: Tiny networks on synthetic data (seconds on a CPU).
SETTINGS = {
    "jsb": (2, ["model.units=8", "data.limit=4"]),
    "ptb": (2, ["model.units=8", "data.limit=4", "data.seq_len=20", "data.batch_size=4"]),
}
#: Models of the quick searches (one per panel of noise_sweep) and their budget.
SEARCH_MODELS = ["jsb_rnn_nbr", "jsb_rnn_n", "jsb_rnn_dos"]
SEARCH_TRIALS = 2


def runs(groups, work):
    """Run folders of the quick runs of ``groups`` under ``work/runs`` (trained if missing)."""
    from keras_rnnreg import training

    paths = []
    for group in groups:
        epochs, overrides = SETTINGS["jsb" if group == "jsb" else "ptb"]
        for name in RUNS[group]:
            path = Path(work) / "runs" / name
            if not (path / training.REPORT).is_file():
                shutil.rmtree(path, ignore_errors=True)  # an unfinished quick run: start again
                path.mkdir(parents=True)
                training.train(name, path, data="synthetic", epochs=epochs, overrides=overrides,
                               verbose=0, log=lambda message: None)
            paths.append(path)
    return paths


def searches(work):
    """Folders of the quick random searches (``SEARCH_MODELS``) under ``work/searches``."""
    from keras_rnnreg.tuning import jobs

    folder = Path(work) / "searches"
    folder.mkdir(parents=True, exist_ok=True)
    for model in SEARCH_MODELS:
        out = folder / model
        if not (out / "best.json").is_file():
            shutil.rmtree(out, ignore_errors=True)
            job = folder / f"{model}.toml"
            job.write_text(f'model = "{model}"\nspace = "noise_study_table2"\ndata = "synthetic"\n'
                           f'tuner = "random"\nmax_trials = {SEARCH_TRIALS}\nepochs = 1\nseed = 1\n'
                           'set = ["model.units=4", "data.limit=4"]\n')
            jobs.run_job(job, out_dir=out, log=lambda message: None)
    return [folder / model for model in SEARCH_MODELS]
