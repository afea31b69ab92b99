"""``rnnreg figure``: every figure draws from its quick variant (PNG + CSV), the CSVs hold what
the runs / searches / models say, and bad inputs give one-line errors."""

import csv
import io
import json
import math
import shutil

import keras
import numpy as np
import pytest

from keras_rnnreg import cli, figures, training
from keras_rnnreg.figures import noise_study, norm_stabilizer, quick
from tests.test_cli_errors import fails

NAMES = [
    "noise_loss_surface",
    "noise_spectral_radius",
    "noise_sweep",
    "ns_learning_curves",
    "ns_norm_horizon",
    "ns_irnn_lognorm",
    "ns_forget_gates",
    "ns_irnn_eigenvalues",
]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("figure-inputs")


@pytest.fixture(scope="module")
def drawn(work, tmp_path_factory):
    """Every figure drawn once from the quick inputs (the tiny runs are shared)."""
    out = tmp_path_factory.mktemp("figures")
    return {name: figures.draw_quick(name, out, work=work) for name in NAMES}


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def _run(work, name):
    return work / "runs" / name


def test_list_names_every_figure():
    assert list(figures.FIGURES) == NAMES
    out = io.StringIO()
    assert cli.main(["figure", "--list"], out=out) == 0
    listed = [line.split()[0] for line in out.getvalue().splitlines()]
    assert listed == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_quick_variant_writes_png_and_csv(drawn, name):
    result = drawn[name]
    with open(result["png"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    rows = _csv(result["csv"])
    assert rows[0] == result["columns"]
    assert len(rows) - 1 == len(result["rows"]) > 0
    assert all(len(row) == len(result["columns"]) for row in rows)


# ------------------------------------------------------------------------------- noise study
def test_loss_surface_minimum_valley_and_wall():
    target = 0.7
    w = np.array([-1.0, 0.0, 0.5])
    valley = noise_study.unit_rnn_loss(w, np.arctanh(target) - target * w, target=target)
    assert np.all(valley < 1e-6)  # h* = 0.7 is a stable fixed point there
    assert noise_study.unit_rnn_loss(0.0, 0.0, target=target) == pytest.approx(target**2)
    # the wall: for w > 1 the sign of b picks the branch h* > 0 or h* < 0
    jump = noise_study.unit_rnn_loss(2.0, -0.05) - noise_study.unit_rnn_loss(2.0, 0.05)
    assert jump > 1.0
    # per-sequence noise blurs it (the expected loss is a Gaussian average of the surface)
    noisy = [noise_study.unit_rnn_loss(2.0, b, sigma=0.3, samples=4000) for b in (-0.05, 0.05)]
    assert abs(noisy[0] - noisy[1]) < 0.2 * jump
    with pytest.raises(ValueError, match="per="):
        noise_study.unit_rnn_loss(0.0, 0.0, sigma=0.1, per="epoch")


def test_loss_surface_csv(drawn):
    rows = drawn["noise_loss_surface"]["rows"]
    assert len(rows) == 25 * 25
    assert all(0.0 <= r[k] <= 1.7**2 for r in rows for k in ("loss", "loss_noisy"))
    assert min(r["loss"] for r in rows) < 0.05


def test_training_logs_the_spectral_radius(drawn, work):
    run_dir = _run(work, "jsb_rnn_do")
    state = json.loads((run_dir / training.STATE).read_text())
    last = state["history"][-1]["spectral_radius/recurrent_0"]
    model = keras.saving.load_model(run_dir / training.CHECKPOINTS / state["last_checkpoint"])
    kernel = keras.ops.convert_to_numpy(model.get_layer("recurrent_0").recurrent_kernel)
    assert last == pytest.approx(np.max(np.abs(np.linalg.eigvals(kernel))), rel=1e-6)
    assert "spectral_radius/recurrent_0" in _csv(run_dir / training.HISTORY)[0]


def test_spectral_radius_figure_is_the_runs_history(drawn, work):
    rows = drawn["noise_spectral_radius"]["rows"]
    assert {r["family"] for r in rows} == {
        "DropConnect (Fig. 5)", "weight noise (Fig. 6)", "norm-based penalty (Fig. 7)"
    }
    for name in quick.RUNS["jsb"]:
        history = json.loads((_run(work, name) / training.STATE).read_text())["history"]
        mine = [r["spectral_radius"] for r in rows if r["name"] == name]
        assert mine == [h["spectral_radius/recurrent_0"] for h in history]


def test_sweep_points_are_the_trials(drawn, work):
    rows = drawn["noise_sweep"]["rows"]
    assert {r["parameter"] for r in rows} == {"lambda", "noise_stddev", "dropconnect_rate"}
    from keras_rnnreg.tuning.spaces import NOISE_STUDY_TABLE_2

    ranges = {h["name"]: (h["min"], h["max"]) for h in NOISE_STUDY_TABLE_2 if h["type"] == "float"}
    for r in rows:
        low, high = ranges[r["parameter"]]
        assert low <= r["value"] <= high
        assert (r["regularizer"] in ("l1", "l2")) == (r["parameter"] == "lambda")
        trial = json.loads((work / "searches" / r["model"] / f"trial_{r['trial']}" /
                            "trial.json").read_text())
        assert r["score"] == trial["score"]


# --------------------------------------------------------------------------- norm-stabilizer
def test_learning_curves_are_the_runs_history(drawn, work):
    rows = drawn["ns_learning_curves"]["rows"]
    panels = {r["name"]: r["panel"] for r in rows}
    assert panels == {"ptb_lstm_notanh": "hidden", "ptb_lstm_ns": "hidden", "ptb_lstm": "cell",
                      "ptb_lstm_ns_cell": "cell"}
    history = json.loads((_run(work, "ptb_lstm_ns") / training.STATE).read_text())["history"]
    valid = [r["value"] for r in rows if r["name"] == "ptb_lstm_ns" and r["split"] == "valid"]
    assert valid == [h["val_bits_per_character"] for h in history]


def test_norm_horizon_rows(drawn, work):
    result = drawn["ns_norm_horizon"]
    rows = result["curves"]
    table = _csv(result["csv"])
    column = f"{_run(work, 'ptb_lstm_ns')}:c"
    assert table[0][0] == "t" and column in table[0]
    assert [float(line[table[0].index(column)]) for line in table[1:]] == pytest.approx(
        [r["mean_norm"] for r in rows if r["name"] == "ptb_lstm_ns" and r["quantity"] == "c"],
        rel=1e-5)
    lstm = {(r["name"], r["quantity"]) for r in rows if r["cell"] == "lstm"}
    assert lstm == {(n, q) for n in quick.RUNS["lstm"] for q in ("h", "c")}
    for key in lstm:
        ts = [r["t"] for r in rows if (r["name"], r["quantity"]) == key]
        assert ts == list(range(1, 121))  # 120 probe steps, training length 20
    assert {r["name"] for r in rows if r["cell"] == "simple_rnn/relu"} == set(quick.RUNS["irnn"])
    assert {r["name"] for r in rows if r["cell"] == "simple_rnn/trec"} == set(
        quick.RUNS["srnn_costs"])
    assert {r["cost"] for r in rows if r["name"] == "ptb_srnn_trec_ns_first_last"} == {
        "first_last"}


def test_norm_horizon_matches_hidden_norms(drawn, work):
    """The figure's curve is callbacks.hidden_norms of the best checkpoint on the same inputs."""
    from keras_rnnreg import callbacks
    from keras_rnnreg.figures._common import Run, long_inputs

    run = Run(_run(work, "ptb_lstm_ns_cell"))
    x, _ = long_inputs(run, 120, 4)
    hidden, cell = callbacks.hidden_norms(run.model(), x, cells=True)
    rows = drawn["ns_norm_horizon"]["curves"]
    for quantity, expected in (("h", hidden), ("c", cell)):
        mine = [r["mean_norm"] for r in rows if r["name"] == run.name and r["quantity"] == quantity]
        np.testing.assert_allclose(mine, expected, rtol=1e-5, atol=1e-6)


def test_norm_horizon_on_music(work, tmp_path):
    """Polyphonic runs probe the test pieces joined end to end (y: the next frame)."""
    from keras_rnnreg import callbacks
    from keras_rnnreg.figures._common import Run, long_inputs

    run = Run(quick.runs(("jsb",), work)[0])
    x, y = long_inputs(run, 60, 2)
    assert x.shape == (2, 60, 88) and np.array_equal(x[:, 1:], y[:, :-1])
    result = norm_stabilizer.ns_norm_horizon([run.path], tmp_path, length=60, batch=2)
    np.testing.assert_allclose([r["mean_norm"] for r in result["curves"]],
                               callbacks.hidden_norms(run.model(), x), rtol=1e-5, atol=1e-6)


def test_irnn_penalty_bounds_the_norms_past_the_horizon(drawn):
    """Fig. 4's claim in the tiny runs: an identity-initialized ReLU RNN's activations grow past
    the training length without the penalty and stay bounded with β = 500."""
    rows = drawn["ns_irnn_lognorm"]["rows"]
    last = {r["name"]: r["mean_log_norm"] for r in rows if r["t"] == 120}
    assert last["ptb_srnn_relu_ns"] < last["ptb_srnn_relu"] - math.log(10)
    assert all(r["cost_bits"] > 0 for r in rows if r["name"] == "ptb_srnn_relu_ns")


def _numpy_lstm_forget_gates(layer, inputs):
    n = layer.units
    kernel, recurrent, bias = (np.asarray(keras.ops.convert_to_numpy(v), np.float64)
                               for v in (layer.kernel, layer.recurrent_kernel, layer.bias))
    h = np.zeros((inputs.shape[0], n))
    c = np.zeros_like(h)
    gates = []
    sigmoid = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    for t in range(inputs.shape[1]):
        z = inputs[:, t] @ kernel + h @ recurrent + bias
        i, f, g, o = (z[:, k * n : (k + 1) * n] for k in range(4))
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * (np.tanh(c) if layer.output_activation is not None else c)
        gates.append(sigmoid(f))
    return np.mean(gates, axis=(0, 1))


@pytest.mark.parametrize("name", ["ptb_lstm", "ptb_lstm_notanh"])
def test_forget_gate_means_match_a_numpy_lstm(drawn, work, name):
    from keras_rnnreg.figures._common import Run, long_inputs

    run = Run(_run(work, name))
    x, _ = long_inputs(run, 20, 4)
    layer = run.recurrent_layer()
    inputs = np.eye(layer.kernel.shape[0])[x]  # the model's one-hot characters
    expected = _numpy_lstm_forget_gates(layer, inputs)
    np.testing.assert_allclose(norm_stabilizer.forget_gate_means(run, x), expected, atol=1e-5)
    sorted_rows = [r["forget_gate"] for r in drawn["ns_forget_gates"]["rows"] if r["name"] == name]
    np.testing.assert_allclose(sorted_rows, np.sort(expected)[::-1], atol=1e-5)


def test_eigenvalues_are_the_best_checkpoints(drawn, work):
    rows = drawn["ns_irnn_eigenvalues"]["rows"]
    for name in quick.RUNS["irnn"]:
        model, _, _ = training.best_model(_run(work, name))
        kernel = keras.ops.convert_to_numpy(model.get_layer("recurrent_0").recurrent_kernel)
        expected = np.sort(np.abs(np.linalg.eigvals(kernel)))[::-1]
        mine = [r["abs_eigenvalue"] for r in rows if r["name"] == name]
        np.testing.assert_allclose(mine, expected, rtol=1e-6)


# ------------------------------------------------------------------------------------ errors
def test_cli_quick_draws(tmp_path):
    out = io.StringIO()
    argv = ["figure", "noise_loss_surface", "--quick", "--out", str(tmp_path)]
    assert cli.main(argv, out=out) == 0
    assert (tmp_path / "noise_loss_surface.png").is_file()
    assert (tmp_path / "noise_loss_surface.csv").is_file()


def test_bad_inputs(capsys, drawn, work, tmp_path):
    fails(capsys, ["figure", "nope"], "unknown figure 'nope'", "noise_loss_surface")
    fails(capsys, ["figure"], "--list")
    fails(capsys, ["figure", "noise_spectral_radius"], "pass --runs")
    fails(capsys, ["figure", "noise_sweep"], "pass --search")
    missing = tmp_path / "missing"
    fails(capsys, ["figure", "ns_forget_gates", "--runs", missing], str(missing), "no such run")
    empty = tmp_path / "empty"
    empty.mkdir()
    fails(capsys, ["figure", "ns_learning_curves", "--runs", empty], str(empty), "config.json")
    fails(capsys, ["figure", "noise_sweep", "--search", empty], str(empty), "no KerasTuner trial")
    fails(capsys, ["figure", "noise_loss_surface", "--runs", _run(work, "ptb_lstm")],
          "does not draw from run folders")
    fails(capsys, ["figure", "ns_forget_gates", "--runs", _run(work, "ptb_srnn_relu")],
          "model.cell", "'simple_rnn'")
    fails(capsys, ["figure", "ns_irnn_eigenvalues", "--runs", _run(work, "ptb_lstm")],
          "model.cell", "'lstm'")
    fails(capsys, ["figure", "ns_irnn_lognorm", "--runs", _run(work, "jsb_rnn_do")],
          "task 'ptb'", "'polyphonic'")
    fails(capsys, ["figure", "noise_loss_surface", "--length", "50"], "no option length")
    fails(capsys, ["figure", "ns_norm_horizon", "--quick", "--runs", _run(work, "ptb_lstm")],
          "--quick")
    # a run trained before the spectral radius was logged
    old = tmp_path / "old"
    shutil.copytree(_run(work, "jsb_rnn_n"), old)
    state = json.loads((old / training.STATE).read_text())
    for row in state["history"]:
        row.pop("spectral_radius/recurrent_0")
    (old / training.STATE).write_text(json.dumps(state))
    fails(capsys, ["figure", "noise_spectral_radius", "--runs", old], "history.csv",
          "spectral_radius")
    # a learning-curve run without its monitor in the history
    for row in state["history"]:
        row.pop("val_nll_per_timestep")
    (old / training.STATE).write_text(json.dumps(state))
    fails(capsys, ["figure", "ns_learning_curves", "--runs", old], "val_nll_per_timestep")


def test_out_naming_a_file_is_a_one_line_error(tmp_path, capsys):
    from keras_rnnreg import cli

    (tmp_path / "taken").write_text("not a folder")
    assert cli.main(["figure", "noise_loss_surface", "--out", str(tmp_path / "taken")]) == 2
    err = capsys.readouterr().err.strip()
    assert "taken is a file; expected a folder" in err and len(err.splitlines()) == 1
    assert (tmp_path / "taken").read_text() == "not a folder"
