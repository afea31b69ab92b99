"""KerasTuner hypermodels, search spaces as data, tuner jobs (1-2 tiny trials)."""

import json
from pathlib import Path

import keras_tuner
import pytest

from keras_rnnreg import zoo
from keras_rnnreg.tuning import SPACES, ZooHyperModel, load_job, run_job, spaces
from keras_rnnreg.zoo import tasks

ROOT = Path(__file__).resolve().parents[1]
JOBS = sorted((ROOT / "tuning").glob("*.toml"))


def test_spaces_are_data_tied_to_configuration_keys():
    for name, entries in SPACES.items():
        assert spaces.get(name) == entries
    names = {e["name"] for e in spaces.NOISE_STUDY_TABLE_2}
    assert {
        "sigma_in",
        "sigma_rec",
        "sparsify",
        "rho",
        "lambda",
        "noise_stddev",
        "momentum",
        "step_rate",
        "batch_size",
    } <= names
    with pytest.raises(zoo.ConfigError, match="unknown configuration key"):
        spaces.get([{"name": "x", "key": "model.unitz", "type": "choice", "values": [1]}])
    with pytest.raises(ValueError, match="unknown search space"):
        spaces.get("nothing")


def test_hypermodel_builds_from_hp_and_applies_only_relevant_entries():
    hypermodel = ZooHyperModel("jsb_rnn_ns", overrides={"units": 3})
    active = {e["name"] for e in hypermodel.active_entries()}
    assert "noise_stddev" in active and "lambda" not in active and "dropconnect_rate" not in active
    hp = keras_tuner.HyperParameters()
    config = hypermodel.config(hp)
    assert config["model"]["units"] == 3
    assert zoo.get_value(config, "model.recurrent_init.stddev") in (0.1, 0.01, 0.001)
    assert zoo.get_value(config, "model.kernel_init.connections") == zoo.get_value(
        config, "model.recurrent_init.connections"
    )
    assert 0.01 <= zoo.get_value(config, "regularization.weight_noise.stddev") <= 0.1
    assert "batch_size" not in hp.values  # drawn in fit(), not build()
    model = hypermodel.build(hp)
    assert model.get_layer("recurrent_0").units == 3
    nbr = ZooHyperModel("jsb_rnn_nbr")
    assert {"lambda", "regularizer"} <= {e["name"] for e in nbr.active_entries()}


def test_hypermodel_fit_draws_the_batch_size():
    base = zoo.get_config("jsb_rnn_plain", units=3, limit=4)
    data = tasks.get(base).synthetic(base)
    hypermodel = ZooHyperModel(base, data=data, epochs=1)
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    history = hypermodel.fit(hp, model)
    assert hp.values["batch_size"] in (27, 81)
    assert "val_nll_per_timestep" in history.history


@pytest.mark.parametrize("path", JOBS, ids=[p.stem for p in JOBS])
def test_jobs_load_and_name_registered_models(path):
    job = load_job(path)
    if (
        "column" in job
    ):  # a Table 1 column (Appendix B's protocol): the card's entries of that column
        from keras_rnnreg.tuning import column

        _, entries = column.entries(job, path)
        assert len(entries) == 10 and {e["name"] for e in entries} <= set(zoo.list_models())
    else:
        assert job["model"] in zoo.list_models()
    assert job["quick"]["max_trials"] <= 2


def test_quick_job_runs_two_tiny_trials(tmp_path):
    result = run_job(
        ROOT / "tuning" / "jsb_rnn_ns.toml",
        quick=True,
        out_dir=tmp_path / "tune",
        log=lambda m: None,
    )
    assert result["trials"] == 2 and result["best_score"] is not None
    assert result["train_command"].startswith("rnnreg train jsb_rnn_ns")
    saved = json.loads((tmp_path / "tune" / "best.json").read_text())
    assert saved["best_hyperparameters"] == result["best_hyperparameters"]
    # Every override it proposes is a valid configuration.
    zoo.resolve("jsb_rnn_ns", result["overrides"])


def _trial_values(out):
    trials = sorted(out.glob("trial_*/trial.json"))
    return [json.loads(t.read_text())["hyperparameters"]["values"] for t in trials]


def test_a_seeded_search_repeats_and_seed_zero_is_refused(tmp_path):
    """KerasTuner takes `seed or random.randint(1, 10000)`: the seed is honoured and recorded."""
    from keras_rnnreg.tuning.jobs import JobError

    job = tmp_path / "seeded.toml"
    shipped = (ROOT / "tuning" / "jsb_rnn_ns.toml").read_text()
    job.write_text(shipped.replace("seed = 1", "seed = 7"))
    runs = [run_job(job, quick=True, out_dir=tmp_path / f"t{i}", log=lambda m: None)
            for i in range(2)]
    assert runs[0]["seed"] == runs[1]["seed"] == 7
    assert json.loads((tmp_path / "t0" / "oracle.json").read_text())["seed"] == 7
    first = _trial_values(tmp_path / "t0")
    assert len(first) == 2 and first == _trial_values(tmp_path / "t1")
    job.write_text(job.read_text().replace("seed = 7", "seed = 0"))
    with pytest.raises(JobError, match=r"seed = 0: expected an integer >= 1 \[seed: KerasTuner"):
        load_job(job)


def test_cli_tune_quick(tmp_path):
    import io

    from keras_rnnreg import cli

    out = io.StringIO()
    assert (
        cli.main(
            [
                "tune",
                str(ROOT / "tuning" / "ptb_srnn_trec_ns.toml"),
                "--quick",
                "--out",
                str(tmp_path / "t"),
            ],
            out=out,
        )
        == 0
    )
    text = out.getvalue()
    assert text.startswith(
        "tuning ptb_srnn_trec_ns over 3 hyperparameters (beta, learning_rate, clipping)"
    )
    assert json.loads(text[text.index("{") :])["model"] == "ptb_srnn_trec_ns"


def test_bad_job(tmp_path):
    from keras_rnnreg.tuning.jobs import JobError

    bad = tmp_path / "bad.toml"
    bad.write_text('model = "jsb_rnn_ns"\ntuner = "grid"\n')
    with pytest.raises(JobError, match="tuner = 'grid': expected one of 'random', 'bayesian'"):
        load_job(bad)
    bad.write_text('model = "jsb_rnn_ns"\nmax_trial = 3\n')
    with pytest.raises(JobError, match="unknown key"):
        load_job(bad)


def test_distributed_search_chief_and_two_workers_on_loopback(tmp_path):
    """--workers 2: KerasTuner's chief oracle and two worker processes over gRPC on 127.0.0.1.

    Both workers run trials; a second call continues the same search (the chief reloads its oracle)
    and, with a larger budget, only adds the missing trial.
    """
    import io

    from keras_rnnreg import cli

    job = tmp_path / "job.toml"
    text = (
        (ROOT / "tuning" / "jsb_rnn_ns.toml")
        .read_text()
        .replace("max_trials = 2", "max_trials = 4")
    )
    job.write_text(text)
    out = tmp_path / "tune"
    result = run_job(job, quick=True, out_dir=out, workers=2, log=lambda m: None)
    assert result["trials"] == 4 and result["best_score"] is not None
    assert set(result["trials_by_worker"]) == {"tuner0", "tuner1"}, result["trials_by_worker"]
    assert sum(result["trials_by_worker"].values()) == 4
    assert (
        (out / "chief.log").exists()
        and (out / "tuner1.log").exists()
        and "best_trial_test" not in result
    )
    before = {p.parent.name: p.stat().st_mtime for p in out.glob("trial_*/trial.json")}
    assert len(before) == 4
    job.write_text(text.replace("max_trials = 4", "max_trials = 5"))
    buffer = io.StringIO()
    assert (
        cli.main(["tune", str(job), "--quick", "--out", str(out), "--workers", "1"], out=buffer)
        == 0
    )
    saved = json.loads((out / "best.json").read_text())
    assert saved["trials"] == 5 and sum(saved["trials_by_worker"].values()) == 5
    after = {p.parent.name: p.stat().st_mtime for p in out.glob("trial_*/trial.json")}
    assert after.pop("trial_4") and after == before  # the finished trials were not run again


def test_table1_column_job_puts_each_best_trials_test_nll_into_the_table(tmp_path):
    """Appendix B's protocol for a column: a search per entry, the best trial evaluated on test."""
    result = run_job(
        ROOT / "tuning" / "noise_table1_jsb.toml",
        quick=True,
        out_dir=tmp_path / "col",
        log=lambda m: None,
    )
    assert set(result["entries"]) == {"jsb_rnn_plain", "jsb_rnn_ns"} and result["column"] == "JSB"
    saved = json.loads((tmp_path / "col" / "results.json").read_text())
    for entry in saved["entries"]:
        best = json.loads((tmp_path / "col" / entry["key"] / "best.json").read_text())
        assert best["trials"] == 2 and entry["ours"] == best["best_trial_test"]["ours"] > 0
    table = (tmp_path / "col" / "noise_table1_jsb.md").read_text()
    assert (
        "| RNN-plain |" in table
        and "/ 8.58 |" in table
        and "best of 2 random-search trials" in table
    )
    # A damaged checkpoint of a best trial (read to evaluate it on test) is one error naming it.
    from keras_rnnreg._runfolder import RunError

    best = json.loads((tmp_path / "col" / "jsb_rnn_ns" / "best.json").read_text())
    weights = tmp_path / "col" / "jsb_rnn_ns" / f"trial_{best['best_trial_test']['trial_id']}" / (
        "checkpoint.weights.h5")
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(RunError, match=r"checkpoint.weights.h5: cannot load the best trial's "
                       r"weights .*the checkpoint is damaged"):
        run_job(ROOT / "tuning" / "noise_table1_jsb.toml", quick=True, out_dir=tmp_path / "col",
                log=lambda m: None)
    from keras_rnnreg.tuning.jobs import JobError

    bad = tmp_path / "bad.toml"
    bad.write_text(f'card = "{ROOT / "zoo" / "noise_table1.toml"}"\ncolumn = "JSC"\n')
    with pytest.raises(JobError, match="column='JSC' is not a column"):
        run_job(bad, log=lambda m: None)


@pytest.mark.parametrize("space", ["beyond_table1", "beyond_table1_rnn"])
def test_the_beyond_table1_space_samples_zoneout_ar_tar_and_the_learning_rate(space):
    cell = "lstm" if space == "beyond_table1" else "simple_rnn"
    base = zoo.resolve("jsb_rnn_plain", [
        f"model.cell={cell}", "model.units=3", "model.kernel_init=GlorotUniform",
        "model.recurrent_init=Orthogonal", "regularization.zoneout.hidden=0.05",
        "regularization.activation_regularization.alpha=2",
        "regularization.temporal_activation_regularization.beta=1"])
    hypermodel = ZooHyperModel(base, space=space)
    names = {e["name"] for e in hypermodel.active_entries()}
    assert {"zoneout_hidden", "ar_alpha", "tar_beta", "learning_rate"} <= names
    assert ("zoneout_cell" in names) == (cell == "lstm")
    hp = keras_tuner.HyperParameters()
    hypermodel.config(hp)  # registers the entries (their defaults)
    for values in ({}, {"zoneout_hidden": 0.3, "ar_alpha": 4.0, "learning_rate": 0.005}):
        hp.values.update(values)
        config = hypermodel.config(hp)
        if values:
            assert config["regularization"]["zoneout"]["hidden"] == 0.3
            assert zoo.get_value(config, "optimizer.learning_rate") == 0.005
        assert 0.0 <= config["regularization"]["zoneout"]["hidden"] <= 0.5
        assert zoo.get_value(config, "regularization.activation_regularization.alpha") in (
            0.0, 0.5, 1.0, 2.0, 4.0)
        assert zoo.get_value(config, "regularization.temporal_activation_regularization.beta") in (
            0.0, 0.5, 1.0, 2.0)
        assert 1e-4 <= zoo.get_value(config, "optimizer.learning_rate") <= 1e-2
        assert hypermodel.build(hp).get_layer("recurrent_0").units == 3
    # a model without the regularizers tunes only the learning rate
    plain = {e["name"] for e in ZooHyperModel("jsb_rnn_plain", space=space).active_entries()}
    assert plain == {"learning_rate"}
