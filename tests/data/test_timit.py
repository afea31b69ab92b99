"""keras_rnnreg.data.timit end to end on a tiny TIMIT-layout corpus built here.

TIMIT is licensed and not in ../shared/data, so the fixture writes a few utterances in the LDC
layout: NIST SPHERE headers with 16-bit PCM audio, and .PHN label files.
"""

import keras
import numpy as np
import pytest

from keras_rnnreg import metrics
from keras_rnnreg.data import _cache, timit


def write_sphere(path, samples, rate=16000):
    """A NIST SPHERE file (1024-byte header, little-endian 16-bit PCM) like TIMIT's .WAV."""
    samples = np.asarray(samples, dtype="<i2")
    fields = [
        "database_id -s5 TIMIT",
        f"sample_count -i {len(samples)}",
        f"sample_rate -i {rate}",
        "channel_count -i 1",
        "sample_n_bytes -i 2",
        "sample_byte_format -s2 01",
        "sample_coding -s3 pcm",
        "sample_sig_bits -i 16",
        "end_head",
    ]
    header = ("NIST_1A\n   1024\n" + "\n".join(fields) + "\n").encode("ascii").ljust(1024)
    path.write_bytes(header + samples.tobytes())


def write_utterance(folder, name, rng, n_phones=None):
    """Random phones (h# at both ends), each a tone of its own pitch plus noise."""
    n_phones = n_phones or int(rng.integers(5, 9))
    inner = [p for p in timit.PHONES_61 if p != "h#"]
    phones = ["h#"] + list(rng.choice(inner, n_phones)) + ["h#"]
    lines, chunks, start = [], [], 0
    for phone in phones:
        length = int(rng.integers(800, 2400))
        t = np.arange(length) / 16000.0
        freq = 200.0 + 60.0 * timit.PHONES_61.index(phone)
        chunks.append(8000 * np.sin(2 * np.pi * freq * t) + 300 * rng.standard_normal(length))
        lines.append(f"{start} {start + length} {phone}")
        start += length
    folder.mkdir(parents=True, exist_ok=True)
    suffix = (".WAV", ".PHN") if name.isupper() else (".wav", ".phn")
    write_sphere(folder / f"{name}{suffix[0]}", np.concatenate(chunks))
    (folder / f"{name}{suffix[1]}").write_text("\n".join(lines) + "\n")
    return phones


@pytest.fixture
def corpus(tmp_path):
    """TRAIN (upper case, two speakers) and test (lower case: dev, core and other speakers)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "TIMIT"
    phones = {}
    for speaker, names in (
        ("TRAIN/DR1/FCJF0", ("SA1", "SI1027", "SX37")),
        ("TRAIN/DR2/MABC0", ("SA2", "SI100", "SX10")),
    ):
        for name in names:
            phones[f"{speaker.split('/')[-1]}_{name}"] = write_utterance(root / speaker, name, rng)
    for speaker, names in (
        ("test/dr1/faks0", ("sa1", "si1573")),  # development set
        ("test/dr3/mdab0", ("si1039", "sx139")),  # core test set
        ("test/dr4/mxyz9", ("sx1",)),  # neither
    ):
        for name in names:
            key = f"{speaker.split('/')[-1].upper()}_{name.upper()}"
            phones[key] = write_utterance(root / speaker, name, rng)
    (root / "README.DOC").write_text("not part of the tree")
    return tmp_path, phones


def test_constants():
    assert len(timit.PHONES_61) == len(set(timit.PHONES_61)) == 61
    assert len(timit.PHONES_39) == 39 and "sil" in timit.PHONES_39 and "q" not in timit.PHONES_39
    assert timit.NUM_CLASSES == 62
    assert len(set(timit.CORE_TEST_SPEAKERS)) == 24
    assert len(set(timit.DEV_SPEAKERS)) == 50
    assert not set(timit.CORE_TEST_SPEAKERS) & set(timit.DEV_SPEAKERS)
    assert timit.fold(["h#", "q", "ix", "pcl", "p", "zh", "ux", "ax-h"]) == [
        "sil",
        "ih",
        "sil",
        "p",
        "sh",
        "uw",
        "ah",
    ]
    assert timit.fold([timit.PHONES_61.index("ao") + 1]) == ["aa"]


def test_features():
    bank = timit.mel_filterbank()
    assert bank.shape == (40, 257)
    assert (bank.max(axis=1) > 0).all()
    assert (np.diff(bank.argmax(axis=1)) >= 0).all()
    rng = np.random.default_rng(1)
    feats = timit.filterbank_features(rng.standard_normal(16000))
    assert feats.shape == (1 + (16000 - 400) // 160, timit.FEATURE_DIM) == (98, 123)
    assert np.isfinite(feats).all()
    ramp = np.arange(10.0)[:, None] * np.array([[1.0, -2.0]])
    np.testing.assert_allclose(timit.deltas(ramp)[2:-2], [[1.0, -2.0]] * 6)
    assert timit.filterbank_features(np.zeros(100)).shape == (1, 123)  # shorter than a window


def test_read_sphere(tmp_path):
    samples = (np.arange(500) * 37 % 2000 - 1000).astype(np.int16)
    write_sphere(tmp_path / "x.WAV", samples)
    audio, rate = timit.read_sphere(tmp_path / "x.WAV")
    assert rate == 16000
    np.testing.assert_allclose(audio, samples / 32768.0)


def test_pipeline_end_to_end(corpus, monkeypatch, _private_cache):
    root, phones = corpus
    with pytest.warns(UserWarning, match="49 of the 50 development speakers and 23 of the 24"):
        data = timit.load(root)
    assert [len(data[s]["features"]) for s in timit.SPLITS] == [4, 1, 2]
    assert data["train"]["ids"] == ["FCJF0_SI1027", "FCJF0_SX37", "MABC0_SI100", "MABC0_SX10"]
    assert data["valid"]["ids"] == ["FAKS0_SI1573"]
    assert data["test"]["ids"] == ["MDAB0_SI1039", "MDAB0_SX139"]
    for split in timit.SPLITS:
        for utt, feats, labels in zip(
            data[split]["ids"], data[split]["features"], data[split]["labels"]
        ):
            assert feats.dtype == np.float32 and feats.shape[1] == 123
            assert [timit.PHONES_61[i - 1] for i in labels] == phones[utt]
    train = np.concatenate(data["train"]["features"])
    np.testing.assert_allclose(train.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(train.std(axis=0), 1.0, atol=1e-3)
    assert len(list(_private_cache.glob("timit-*.npz"))) == 1

    def no_features(splits):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(timit, "_compute", no_features)
    with pytest.warns(UserWarning):
        cached = timit.load(root)
    np.testing.assert_array_equal(cached["test"]["features"][1], data["test"]["features"][1])
    np.testing.assert_array_equal(cached["valid"]["labels"][0], data["valid"]["labels"][0])

    # fit with Keras' CTC loss, then the phone error rate after folding
    model = keras.Sequential(
        [
            keras.Input((None, 123)),
            keras.layers.SimpleRNN(16, return_sequences=True),
            keras.layers.Dense(timit.NUM_CLASSES),
        ]
    )
    model.compile(optimizer="adam", loss=keras.losses.CTC())
    ds = timit.make_dataset(data["train"], batch_size=2, seed=0)
    x, y = ds[0]
    assert x.shape[0] == 2 and x.shape[2] == 123 and y.dtype == np.int32
    assert y.shape[1] == max(len(a) for a in data["train"]["labels"])
    history = model.fit(ds, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    result = timit.evaluate(model, data["test"])
    refs = [timit.fold(a) for a in data["test"]["labels"]]
    assert result["utterances"] == 2
    assert result["reference_phones"] == sum(len(r) for r in refs)
    assert result["per"] == pytest.approx(result["edits"] / result["reference_phones"])
    assert result["per"] >= 0.0
    batched = timit.evaluate(model, data["test"], batch_size=2)  # causal model: same numbers
    assert batched["edits"] == result["edits"]


def _oracle_outputs(labels, frames):
    """Logits spelling ``labels`` (2 frames a label, then a blank), blank to the end."""
    out = np.full((frames, timit.NUM_CLASSES), -5.0, np.float32)
    out[:, timit.BLANK] = 5.0
    for k, label in enumerate(labels):
        out[3 * k : 3 * k + 2] = -5.0
        out[3 * k : 3 * k + 2, label] = 5.0
    return out


def test_decode_and_oracle_per():
    labels = [np.array([28, 5, 5, 47, 28]), np.array([10, 11])]
    outputs = np.stack([_oracle_outputs(labels[0], 20), _oracle_outputs(labels[1], 20)])
    decoded = timit.decode(outputs, lengths=[20, 3])  # the second cut after its first label
    np.testing.assert_array_equal(decoded[0], labels[0])  # repeats kept across a blank
    np.testing.assert_array_equal(decoded[1], [10])
    split = {"features": [np.zeros((20, 123)), np.zeros((17, 123))], "labels": labels}

    def oracle(x):
        frames = np.shape(x)[1]
        return _oracle_outputs(labels[0] if frames == 20 else labels[1], frames)[None]

    assert timit.evaluate(oracle, split)["per"] == 0.0

    def blanks(x):
        return _oracle_outputs([], np.shape(x)[1])[None]

    # q (id 47) is deleted by folding: 4 + 2 reference phones, all missed
    result = timit.evaluate(blanks, split)
    assert result["reference_phones"] == 6 and result["per"] == 1.0
    with pytest.raises(ValueError, match="62 classes"):
        timit.decode(np.zeros((1, 5, 61)))


def test_bad_trees(corpus, tmp_path):
    root, _ = corpus
    with pytest.raises(FileNotFoundError, match="does not exist"):
        timit.load(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="expected TRAIN/ and TEST/"):
        timit.load(empty)
    phn = root / "TIMIT" / "TRAIN" / "DR2" / "MABC0" / "SX10.PHN"
    phn.write_text("0 100 h#\n100 200 xx\n")
    with pytest.raises(ValueError, match=r"SX10.PHN, line 2: 'xx' is not one of the 61"):
        with pytest.warns(UserWarning):
            timit.load(root)
    phn.unlink()
    with pytest.raises(FileNotFoundError, match=r"MABC0/SX10.WAV: no matching label file SX10.PHN"):
        timit.load(root)


def test_corrupt_audio_and_missing_core_speakers(corpus):
    root, _ = corpus
    wav = root / "TIMIT" / "TRAIN" / "DR1" / "FCJF0" / "SX37.WAV"
    wav.write_bytes(b"NIST_1A\n garbage")
    with pytest.raises(ValueError, match="SX37.WAV: libsndfile cannot read this audio"):
        with pytest.warns(UserWarning):
            timit.load(root)
    for f in (root / "TIMIT" / "test" / "dr3" / "mdab0").iterdir():
        f.unlink()
    with pytest.raises(FileNotFoundError, match="none of the 24 speakers of the test split"):
        timit.load(root)


def test_interrupted_feature_cache_leaves_nothing(corpus, monkeypatch, _private_cache):
    root, _ = corpus
    real_savez = _cache.np.savez

    def interrupted(f, **arrays):
        f.write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(_cache.np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt), pytest.warns(UserWarning):
        timit.load(root)
    assert list(_private_cache.iterdir()) == []
    monkeypatch.setattr(_cache.np, "savez", real_savez)
    with pytest.warns(UserWarning):
        data = timit.load(root)
    assert len(data["train"]["features"]) == 4
    assert len(list(_private_cache.iterdir())) == 1


def test_make_dataset_and_per_metric_helpers():
    split = {
        "features": [np.ones((t, 123), np.float32) for t in (5, 9, 10, 5)],
        "labels": [np.array([1, 2]), np.array([3]), np.array([4, 5, 6]), np.array([7])],
    }
    ds = timit.make_dataset(split, batch_size=2, shuffle=False, pad_multiple=4)
    (x0, y0), (x1, y1) = ds[0], ds[1]
    np.testing.assert_array_equal(y1, [[4, 5, 6], [7, 0, 0]])
    assert x0.shape == (2, 12, 123) and x1.shape == (2, 12 + 4, 123)  # batch 1 made to differ
    np.testing.assert_array_equal(y0, [[1, 2, 0], [3, 0, 0]])
    assert not x0[0, 5:].any() and x0[0, :5].all()
    assert metrics.phone_error_rate([["sil", "ah"]], [["sil"]]) == 0.5
