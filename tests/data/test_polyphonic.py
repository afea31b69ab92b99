"""keras_rnnreg.data.polyphonic: readers, preprocessing, pipelines and evaluation."""

import os
import pickle

import keras
import numpy as np
import pytest

from keras_rnnreg import metrics
from keras_rnnreg.data import _cache, polyphonic

# Counts from ../shared/data/README.md: sequences and timesteps (train / valid / test).
SHARED = {
    "JSB_Chorales": ((229, 76, 77), (13807, 4602, 4725)),
    "Nottingham": ((694, 173, 170), (176561, 45513, 44463)),
    "MuseData": ((524, 135, 124), (245202, 82755, 64339)),
    "Piano_midi": ((87, 12, 25), (75911, 8540, 19036)),
}


def _mat(shared_data, name="JSB_Chorales"):
    return os.path.join(shared_data, "polyphonic", f"{name}.mat")


@pytest.mark.parametrize("name", sorted(SHARED))
def test_mat_split_counts_and_shapes(shared_data, name):
    data = polyphonic.load(_mat(shared_data, name))
    counts, steps = SHARED[name]
    assert tuple(len(data[s]) for s in polyphonic.SPLITS) == counts
    assert tuple(sum(len(r) for r in data[s]) for s in polyphonic.SPLITS) == steps
    for split in polyphonic.SPLITS:
        roll = data[split][0]
        assert roll.ndim == 2 and roll.shape[1] == 88 and roll.dtype == np.uint8
        assert set(np.unique(roll)) <= {0, 1}


def _as_pitch_lists(rolls):
    """Rolls back to the original pickle layout: lists of tuples of MIDI pitches."""
    return [[tuple(int(p) + 21 for p in np.flatnonzero(step)) for step in roll] for roll in rolls]


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_pickle_and_mat_readers_agree(shared_data, tmp_path, protocol):
    mat = polyphonic.load(_mat(shared_data))
    path = tmp_path / "JSB Chorales.pickle"
    with open(path, "wb") as f:
        pickle.dump({s: _as_pitch_lists(mat[s]) for s in polyphonic.SPLITS}, f, protocol=protocol)
    from_pickle = polyphonic.load(path)
    for split in polyphonic.SPLITS:
        assert len(from_pickle[split]) == len(mat[split])
        for a, b in zip(from_pickle[split], mat[split]):
            np.testing.assert_array_equal(a, b)


def test_pickle_with_lists_and_numpy_pitches(tmp_path):
    data = {
        "train": [[[60, 64], [], (np.int64(21), 108), np.array([61, 62])]],
        "valid": [[[61]]],
        "test": [[[62], [62]]],
    }
    path = tmp_path / "small.pkl"
    path.write_bytes(pickle.dumps(data, protocol=5))
    rolls = polyphonic.load(path)
    assert rolls["train"][0].shape == (4, 88)
    assert list(np.flatnonzero(rolls["train"][0][3])) == [61 - 21, 62 - 21]
    assert list(np.flatnonzero(rolls["train"][0][0])) == [60 - 21, 64 - 21]
    assert not rolls["train"][0][1].any()
    assert list(np.flatnonzero(rolls["train"][0][2])) == [0, 87]


class _Evil:
    def __reduce__(self):
        return (os.getcwd, ())


def test_bad_inputs_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pickle"):
        polyphonic.load(tmp_path / "nowhere.pickle")
    corrupt = tmp_path / "corrupt.pickle"
    corrupt.write_bytes(b"\x80\x04not a pickle at all")
    with pytest.raises(ValueError, match="corrupt.pickle.*not a readable piano-roll pickle"):
        polyphonic.load(corrupt)
    evil = tmp_path / "evil.pickle"
    evil.write_bytes(pickle.dumps({"train": _Evil()}))
    with pytest.raises(ValueError, match="evil.pickle.*refusing to load .*getcwd"):
        polyphonic.load(evil)
    wrong = tmp_path / "wrong.pickle"
    wrong.write_bytes(pickle.dumps({"train": [], "test": []}))
    with pytest.raises(ValueError, match="wrong.pickle.*'train', 'valid', 'test'"):
        polyphonic.load(wrong)
    pitch = tmp_path / "pitch.pickle"
    pitch.write_bytes(pickle.dumps({"train": [[[60], [12]]], "valid": [], "test": []}))
    with pytest.raises(ValueError, match=r"pitch.pickle: train\[0\], timestep 1: MIDI pitch 12"):
        polyphonic.load(pitch)
    floats = tmp_path / "floats.pickle"
    floats.write_bytes(pickle.dumps({"train": [[[60.5]]], "valid": [], "test": []}))
    with pytest.raises(ValueError, match="floats.pickle.*integer MIDI pitches"):
        polyphonic.load(floats)
    bad_mat = tmp_path / "bad.mat"
    bad_mat.write_bytes(b"MATLAB 5.0 MAT-file, garbage" + bytes(200))
    with pytest.raises(ValueError, match="bad.mat"):
        polyphonic.load(bad_mat)
    other = tmp_path / "data.csv"
    other.write_text("1,2,3")
    with pytest.raises(ValueError, match="data.csv.*unknown kind of file"):
        polyphonic.load(other)
    with pytest.raises(ValueError, match="limit"):
        polyphonic.load(other, limit=3)


def test_mat_with_wrong_variables_or_shapes(tmp_path):
    import scipy.io

    path = tmp_path / "keys.mat"
    scipy.io.savemat(path, {"train": np.zeros((3, 88))})
    with pytest.raises(ValueError, match="keys.mat.*traindata, validdata, testdata"):
        polyphonic.load(path)
    cells = np.empty((1, 1), dtype=object)
    cells[0, 0] = np.zeros((4, 87), np.uint8)
    path = tmp_path / "shape.mat"
    scipy.io.savemat(path, {"traindata": cells, "validdata": cells, "testdata": cells})
    with pytest.raises(ValueError, match=r"shape.mat: traindata\[0\] has shape \(4, 87\)"):
        polyphonic.load(path)


# -------------------------------------------------------------------------------- MIDI


def _write_midi(path, notes, tempo=120.0, drums=()):
    """``notes``: (pitch, start_beat, end_beat) in quarter notes at ``tempo``."""
    import pretty_midi

    midi = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    piano = pretty_midi.Instrument(program=0)
    beat = 60.0 / tempo
    for pitch, start, end in notes:
        piano.notes.append(pretty_midi.Note(80, pitch, start * beat, end * beat))
    midi.instruments.append(piano)
    if drums:
        kit = pretty_midi.Instrument(program=0, is_drum=True)
        for pitch, start, end in drums:
            kit.notes.append(pretty_midi.Note(80, pitch, start * beat, end * beat))
        midi.instruments.append(kit)
    midi.write(str(path))
    return path


def test_midi_sampled_on_the_beat_grid(tmp_path):
    notes = [
        (60, 0.0, 2.0),  # two quarters
        (64, 1.0, 1.4),  # sounds at beat 1 only
        (67, 2.2, 2.4),  # between grid points: never sounding at one
        (72, 2.5, 3.0),  # on the eighth grid only
        (10, 0.0, 3.0),  # below the piano: dropped
    ]
    path = _write_midi(tmp_path / "a.mid", notes)
    quarter = polyphonic.read_midi(path, grid="quarter")
    assert quarter.shape == (3, 88)
    on = [sorted(int(p) + 21 for p in np.flatnonzero(step)) for step in quarter]
    assert on == [[60], [60, 64], []]
    eighth = polyphonic.read_midi(path, grid="eighth")
    on = [sorted(int(p) + 21 for p in np.flatnonzero(step)) for step in eighth]
    assert on == [[60], [60], [60, 64], [60], [], [72]]


def test_midi_errors(tmp_path):
    empty = _write_midi(tmp_path / "empty.mid", [], drums=[(36, 0, 1)])
    with pytest.raises(ValueError, match="empty.mid: the MIDI file has no notes"):
        polyphonic.read_midi(empty)
    garbage = tmp_path / "garbage.mid"
    garbage.write_bytes(b"MThd this is not midi")
    with pytest.raises(ValueError, match="garbage.mid: not a readable MIDI file"):
        polyphonic.read_midi(garbage)
    with pytest.raises(ValueError, match="grid"):
        polyphonic.read_midi(empty, grid="sixteenth")
    with pytest.raises(ValueError, match="single MIDI file is not a dataset"):
        polyphonic.load(empty)
    folder = tmp_path / "nothing"
    folder.mkdir()
    with pytest.raises(FileNotFoundError, match="nothing: no MIDI files"):
        polyphonic.load(folder)


def test_midi_folders(tmp_path):
    split_root = tmp_path / "Piano-midi.de"
    for split, count in (("train", 2), ("valid", 1), ("test", 1)):
        (split_root / split).mkdir(parents=True)
        for i in range(count):
            _write_midi(split_root / split / f"{i}.mid", [(60 + i, 0, 4)])
    data = polyphonic.load(split_root)
    assert [len(data[s]) for s in polyphonic.SPLITS] == [2, 1, 1]
    assert data["train"][0].shape == (8, 88)  # eighth notes by default
    flat = tmp_path / "jsb_chorales_midi"
    flat.mkdir()
    for i in range(5):
        _write_midi(flat / f"c{i}.mid", [(60 + i, 0, 4)])
    data = polyphonic.load(flat)
    assert [len(data[s]) for s in polyphonic.SPLITS] == [3, 1, 1]
    assert data["train"][0].shape == (4, 88)  # quarter notes: the folder is named after chorales
    assert polyphonic.load(flat, grid="eighth")["train"][0].shape == (8, 88)


# -------------------------------------------------------------------------------- chorales


def test_music21_bundles_the_bach_chorales():
    from music21 import corpus

    assert len(corpus.getComposer("bach")) > 300
    split = polyphonic.chorale_split()
    counts = [len(split[s]) for s in polyphonic.SPLITS]
    assert counts == [210, 70, 70]
    names = [n for s in polyphonic.SPLITS for n in split[s]]
    assert len(set(names)) == 350
    small = polyphonic.chorale_split(limit=5)
    for s in polyphonic.SPLITS:
        assert set(small[s]) <= set(split[s])


def test_music21_chorales_small_and_cached(monkeypatch, _private_cache):
    data = polyphonic.load(polyphonic.CHORALES, limit=5)
    assert [len(data[s]) for s in polyphonic.SPLITS] == [3, 1, 1]
    for roll in (r for s in polyphonic.SPLITS for r in data[s]):
        assert roll.shape[1] == 88 and 20 <= len(roll) <= 250
        assert 1.0 <= roll.sum(axis=1).mean() <= 4.0  # four voices, rests and unisons aside
    files = list(_private_cache.glob("music21-chorales-*.npz"))
    assert len(files) == 1 and not list(_private_cache.glob("*.tmp"))

    def no_parsing(name):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(polyphonic, "_chorale_roll", no_parsing)
    again = polyphonic.load(polyphonic.CHORALES, limit=5)
    for s in polyphonic.SPLITS:
        for a, b in zip(again[s], data[s]):
            np.testing.assert_array_equal(a, b)


def test_corrupt_cache_is_rebuilt(monkeypatch, _private_cache):
    first = polyphonic.load(polyphonic.CHORALES, limit=3)
    (path,) = _private_cache.glob("music21-chorales-*.npz")
    path.write_bytes(b"PK\x03\x04 truncated")
    with pytest.warns(UserWarning, match="unreadable"):
        again = polyphonic.load(polyphonic.CHORALES, limit=3)
    np.testing.assert_array_equal(again["train"][0], first["train"][0])


@pytest.mark.slow
def test_music21_chorales_full():
    data = polyphonic.load(polyphonic.CHORALES)
    assert [len(data[s]) for s in polyphonic.SPLITS] == [210, 70, 70]


def test_interrupted_cache_write_leaves_nothing(monkeypatch, tmp_path):
    def interrupted(f, **arrays):
        f.write(b"half of a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(_cache.np, "savez", interrupted)
    target = tmp_path / "cache" / "x.npz"
    with pytest.raises(KeyboardInterrupt):
        _cache.atomic_save_npz(target, a=np.zeros(3))
    assert list(target.parent.iterdir()) == []


# -------------------------------------------------------------------------------- preprocessing


def _ramp(t):
    """A (t, 88) roll whose timestep i has note i % 88 on (easy to trace)."""
    roll = np.zeros((t, 88), np.uint8)
    roll[np.arange(t), np.arange(t) % 88] = 1
    return roll


def test_make_chunks_front_pads_and_masks():
    x, y, w = polyphonic.make_chunks([_ramp(6), _ramp(2), _ramp(1)], length=3)
    # ramp(6): 5 pairs -> chunks of 3 and 2 (front-padded); ramp(2): 1 pair; ramp(1): none.
    assert x.shape == (3, 3, 88) and y.shape == (3, 3, 88) and w.shape == (3, 3)
    np.testing.assert_array_equal(w, [[1, 1, 1], [0, 1, 1], [0, 0, 1]])
    assert [int(np.argmax(s)) for s in x[0]] == [0, 1, 2]
    assert [int(np.argmax(s)) for s in y[0]] == [1, 2, 3]
    assert not x[1, 0].any() and not y[1, 0].any()
    assert [int(np.argmax(s)) for s in x[1, 1:]] == [3, 4]
    assert [int(np.argmax(s)) for s in y[1, 1:]] == [4, 5]
    assert int(np.argmax(x[2, 2])) == 0 and int(np.argmax(y[2, 2])) == 1


def test_paper_chunking_of_jsb(shared_data):
    train = polyphonic.load(_mat(shared_data))["train"]
    x, y, w = polyphonic.make_chunks(train)
    assert x.shape[1:] == (100, 88)
    assert w.sum() == sum(len(s) - 1 for s in train)  # every next-step target counted once
    assert len(x) == sum(-(-(len(s) - 1) // 100) for s in train)


def test_make_dataset_seeded_shuffling():
    seqs = [_ramp(5 + i) for i in range(20)]
    a = polyphonic.make_dataset(seqs, 4, chunk=3, seed=7)
    b = polyphonic.make_dataset(seqs, 4, chunk=3, seed=7)
    c = polyphonic.make_dataset(seqs, 4, chunk=3, seed=8)
    first = [a[i][0] for i in range(len(a))]
    np.testing.assert_array_equal(
        np.concatenate(first), np.concatenate([b[i][0] for i in range(len(b))])
    )
    assert not np.array_equal(first[0], c[0][0])
    a.on_epoch_end()
    assert not np.array_equal(first[0], a[0][0])
    ordered = polyphonic.make_dataset(seqs, 4, chunk=3, shuffle=False)
    ordered.on_epoch_end()
    x, _, _ = polyphonic.make_chunks(seqs, 3)
    np.testing.assert_array_equal(ordered[0][0], x[:4])


def test_whole_sequence_batches_pad_at_the_end():
    seqs = [_ramp(t) for t in (4, 9, 6, 4, 12)]
    ds = polyphonic.make_dataset(seqs, 2, chunk=None, shuffle=False)
    lengths = [ds[i][0].shape[1] for i in range(len(ds))]
    assert lengths[0] != lengths[1]  # TensorFlow then infers a variable time axis
    x, y, w = ds[0]
    np.testing.assert_array_equal(w.sum(axis=1), [3, 8])
    assert not x[0, 3:].any() and w[0, :3].all()
    shuffled = polyphonic.make_dataset(seqs, 2, chunk=None, seed=3)
    total = sum(shuffled[i][2].sum() for i in range(len(shuffled)))
    assert total == sum(len(s) - 1 for s in seqs)


class _ConstantModel:
    """A 'model' predicting probability ``p`` for every note (a plain callable)."""

    def __init__(self, p):
        self.p = p

    def __call__(self, x):
        return np.full(np.shape(x), self.p, np.float32)


def test_evaluate_by_hand():
    seqs = [_ramp(5), _ramp(2), _ramp(1)]
    result = polyphonic.evaluate(_ConstantModel(0.5), seqs, batch_size=2)
    assert result["timesteps"] == 5
    assert result["nll"] == pytest.approx(88 * np.log(2.0))
    assert result["frame_accuracy"] == 0.0
    result = polyphonic.evaluate(_ConstantModel(0.9), seqs, causal=False)
    expected = -np.log(0.9) - 87 * np.log(0.1)
    assert result["nll"] == pytest.approx(expected, rel=1e-6)
    assert result["frame_accuracy"] == pytest.approx(1 / 88)
    with pytest.raises(ValueError, match="nothing to evaluate"):
        polyphonic.evaluate(_ConstantModel(0.5), [_ramp(1)])


def _rnn(units=8):
    return keras.Sequential(
        [
            keras.Input((None, 88)),
            keras.layers.SimpleRNN(units, return_sequences=True),
            keras.layers.Dense(88, activation="sigmoid"),
        ]
    )


def test_pipeline_feeds_fit_and_evaluate_matches(shared_data):
    data = polyphonic.load(_mat(shared_data))
    model = _rnn()
    model.compile(
        optimizer="adam",
        loss="binary_crossentropy",
        weighted_metrics=[metrics.NLLPerTimestep(), metrics.FrameAccuracy()],
    )
    train = polyphonic.make_dataset(data["train"][:24], batch_size=8, seed=1)
    valid = polyphonic.make_dataset(data["valid"][:8], batch_size=8, shuffle=False)
    history = model.fit(train, validation_data=valid, epochs=2, verbose=0)
    assert np.isfinite(history.history["val_nll_per_timestep"]).all()
    test = data["test"][:10]
    ours = polyphonic.evaluate(model, test)
    exact = polyphonic.evaluate(model, test, causal=False)
    assert ours["nll"] == pytest.approx(exact["nll"], rel=1e-5)
    assert ours["frame_accuracy"] == pytest.approx(exact["frame_accuracy"], abs=1e-6)
    assert ours["timesteps"] == sum(len(s) - 1 for s in test)
    keras_eval = model.evaluate(
        polyphonic.make_dataset(test, batch_size=4, chunk=None, shuffle=False),
        return_dict=True,
        verbose=0,
    )
    assert keras_eval["nll_per_timestep"] == pytest.approx(ours["nll"], rel=1e-4)
    assert keras_eval["frame_accuracy"] == pytest.approx(ours["frame_accuracy"], abs=1e-5)
