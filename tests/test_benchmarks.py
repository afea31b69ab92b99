"""The speed benchmark stays runnable (a smoke run on tiny shapes; timings are not asserted)."""

from benchmarks import layers as bench


def test_measure_runs_every_variant_family():
    keras_variants = bench._keras_variants(4)
    regularizer_variants = bench._regularizer_variants(4)
    chosen = {
        "keras.SimpleRNN": keras_variants["keras.SimpleRNN"],
        "ours.SimpleRNN": keras_variants["ours.SimpleRNN"],
        "FastDropoutRNN (RNN-FD)": regularizer_variants["FastDropoutRNN (RNN-FD)"],
        "LSTM+norm-stabilizer/cell": regularizer_variants["LSTM+norm-stabilizer/cell"],
    }
    rates = bench.measure(chosen, batch=2, length=3, features=88, steps=1, repeats=1)
    assert set(rates) == set(chosen)
    assert all(rate > 0 for rate in rates.values())
    assert bench._regularizer_reference("LSTM+noise/timestep") == "ours.LSTM"


def test_gru_and_cells_run(capsys):
    variants = {**bench._cell_variants(3), "keras.GRU": bench._keras_variants(3)["keras.GRU"],
                "ours.GRU": bench._keras_variants(3)["ours.GRU"]}
    assert set(variants) >= {f"{who}.RNN({kind}Cell)" for who in ("keras", "ours")
                             for kind in bench.CELLS}
    chosen = {name: variants[name] for name in ("keras.RNN(LSTMCell)", "ours.RNN(GRUCell)",
                                                "ours.GRU", "keras.GRU")}
    rates = bench.measure(chosen, batch=2, length=3, features=88, steps=1, repeats=1)
    assert set(rates) == set(chosen) and all(rate > 0 for rate in rates.values())
    assert bench.REFERENCE["ours.GRU"] == "keras.GRU"


def test_paper_shapes_run_every_variant(capsys):
    tiny = {"blstm": (2, 3, 4, 3, "lstm", 1)}
    rates = bench.measure_paper(["blstm"], steps=1, repeats=1, sizes=tiny)
    assert {name for shape, name in rates if shape == "blstm"} >= {
        "keras", "ours", "ours+dropconnect/seq+normstab", "ours, loop (use_cudnn=False)"
    }
    assert all(rate > 0 for rate in rates.values())
    table = capsys.readouterr().out
    assert "| blstm | ours+normstab |" in table and "loop (" in table
    assert set(bench.PAPER_SHAPES) == {
        "jsb_srnn200", "ptb_lstm1000", "srnn1600", "timit_blstm3x500"
    }


def test_projection_suite_forces_each_path():
    variants = bench._projection_variants(3)
    assert set(variants) == {
        f"{name}.{kind}{where}" for kind in bench.CELLS
        for name, where in (("keras", ""), ("ours", " (pre)"), ("ours", " (in)"))
    }
    assert variants["ours.LSTM (in)"]()._projects_in_loop() is True
    assert variants["ours.GRU (pre)"]()._projects_in_loop() is False
    chosen = {name: variants[name] for name in ("keras.LSTM", "ours.LSTM (pre)", "ours.LSTM (in)")}
    rates = bench.measure(chosen, batch=2, length=3, features=88, steps=1, repeats=1)
    assert set(rates) == set(chosen) and all(rate > 0 for rate in rates.values())


def test_gpu_check_script_parses_and_benchmarks_every_paper_shape():
    """benchmarks/gpu_check.sh (one device call) is valid bash and names each of PAPER_SHAPES."""
    import re
    import subprocess
    from pathlib import Path

    script = Path(bench.__file__).with_name("gpu_check.sh")
    subprocess.run(["bash", "-n", str(script)], check=True)
    shapes = re.search(r"--only (\S+)", script.read_text()).group(1).split(",")
    assert sorted(shapes) == sorted(bench.PAPER_SHAPES)


def test_the_regularizers_beyond_the_papers_are_timed_against_their_plain_layer():
    variants = bench._regularizer_variants(4)
    beyond = {name: variants[name] for name in ("LSTM+zoneout (0.5, 0.05)", "LSTM+AR+TAR",
                                               "LayerNormGRU", "SimpleRNN+zoneout 0.1")}
    rates = bench.measure(beyond, batch=2, length=3, features=88, steps=1, repeats=1)
    assert set(rates) == set(beyond) and all(rate > 0 for rate in rates.values())
    assert [bench._regularizer_reference(n) for n in beyond] == [
        "ours.LSTM", "ours.LSTM", "ours.GRU", "ours.SimpleRNN"]
    assert all(bench._regularizer_reference(n) in variants for n in variants
               if not n.startswith("ours."))
