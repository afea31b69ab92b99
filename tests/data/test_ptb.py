"""keras_rnnreg.data.ptb: reading, vocabulary, sequences, bits-per-character evaluation."""

import os

import keras
import numpy as np
import pytest

from keras_rnnreg import metrics
from keras_rnnreg.data import ptb


def _ptb(shared_data):
    return os.path.join(shared_data, "ptb")


@pytest.mark.parametrize("split", ["valid", "test"])
def test_char_files_match_word_files(shared_data, split):
    folder = _ptb(shared_data)
    chars = ptb.read_sentences(os.path.join(folder, f"ptb.char.{split}.txt"), "char")
    words = ptb.read_sentences(os.path.join(folder, f"ptb.{split}.txt"), "word")
    assert [c for _, c in chars] == [c for _, c in words]
    assert len(chars) == {"valid": 3370, "test": 3761}[split]


def test_shared_folder_needs_vocab_from(shared_data):
    with pytest.raises(FileNotFoundError, match="no training split.*vocab_from='valid'"):
        ptb.load(_ptb(shared_data))


def test_shared_folder_with_vocab_from_valid(shared_data):
    with pytest.warns(UserWarning, match="no training split; vocabulary built from the valid"):
        data = ptb.load(_ptb(shared_data), vocab_from="valid")
    assert data["train"] is None and data["vocab_from"] == "valid"
    assert len(data["vocab"]) == 50 and data["vocab"][0] == ptb.EOS
    assert "_" in data["vocab"] and " " not in data["vocab"]
    # characters + one end-of-sentence symbol per line
    assert len(data["valid"]) == 393042 and len(data["test"]) == 442423
    assert data["valid"].dtype == np.int32
    with pytest.warns(UserWarning):
        words = ptb.load(_ptb(shared_data), vocab_from="valid", level="word")
    np.testing.assert_array_equal(words["test"], data["test"])
    decoded = "".join(data["vocab"][i] for i in data["valid"][:40])
    assert decoded.startswith("consumers_may_want_to_move_their_telepho")


def _folder(tmp_path, files):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def test_full_layout_and_oov_error(tmp_path):
    folder = _folder(
        tmp_path,
        {
            "ptb.train.txt": " the cat \n a dog \n",
            "ptb.valid.txt": " the dog \n",
            "ptb.char.test.txt": "t h e _ c a t \n a _ c o g \n",
        },
    )
    data = ptb.load(folder)
    assert data["vocab"] == sorted(set("thecat_adog") | {"\n"})
    assert data["files"]["test"].endswith("ptb.char.test.txt")
    decoded = "".join(data["vocab"][i] for i in data["train"])
    assert decoded == "the_cat\na_dog\n"
    (folder / "ptb.valid.txt").write_text(" the dog \n the zebra \n")
    with pytest.raises(ValueError, match=r"ptb.valid.txt, line 2: character 'z' is not in the"):
        ptb.load(folder)


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ptb.load(tmp_path / "missing")
    with pytest.raises(ValueError, match="vocab_from"):
        ptb.load(tmp_path, vocab_from="dev")
    folder = _folder(tmp_path, {"ptb.char.valid.txt": "a b\n", "ptb.char.test.txt": "ab c\n"})
    with pytest.raises(FileNotFoundError, match="no training split"):
        ptb.load(folder)
    with pytest.raises(ValueError, match=r"ptb.char.test.txt, line 1: 'ab' is not a single"):
        ptb.load(folder, vocab_from="valid")
    (folder / "ptb.char.test.txt").unlink()
    with pytest.raises(FileNotFoundError, match="no test split"):
        ptb.load(folder, vocab_from="valid")


def test_make_sequences_by_hand():
    ids = np.arange(11, dtype=np.int32)
    x, y, w = ptb.make_sequences(ids, seq_len=4)
    np.testing.assert_array_equal(x, [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 0]])
    np.testing.assert_array_equal(y, [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 0, 0]])
    np.testing.assert_array_equal(w, [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 0, 0]])
    with pytest.raises(ValueError, match="fewer than two"):
        ptb.make_sequences(np.array([3]))


def test_evaluate_uniform_model_is_log2_vocab():
    vocab = 8

    def uniform(x):
        return np.full(np.shape(x) + (vocab,), 1.0 / vocab, np.float32)

    result = ptb.evaluate(uniform, np.arange(130) % vocab, seq_len=50, batch_size=2)
    assert result["characters"] == 129
    assert result["bpc"] == pytest.approx(3.0)


def test_pipeline_feeds_fit_and_evaluate_matches(shared_data):
    with pytest.warns(UserWarning):
        data = ptb.load(_ptb(shared_data), vocab_from="valid")
    vocab = len(data["vocab"])
    model = keras.Sequential(
        [
            keras.Input((None,), dtype="int32"),
            keras.layers.Embedding(vocab, 8),
            keras.layers.SimpleRNN(16, return_sequences=True),
            keras.layers.Dense(vocab, activation="softmax"),
        ]
    )
    model.compile(
        optimizer="adam",
        loss="sparse_categorical_crossentropy",
        weighted_metrics=[metrics.BitsPerCharacter()],
    )
    train = ptb.make_dataset(data["valid"][:3001], batch_size=16, seed=0)
    model.fit(train, epochs=1, verbose=0)
    test_ids = data["test"][:1234]
    ours = ptb.evaluate(model, test_ids, batch_size=8)
    assert ours["characters"] == 1233
    assert 1.0 < ours["bpc"] < 6.0
    keras_eval = model.evaluate(
        ptb.make_dataset(test_ids, batch_size=8, shuffle=False), return_dict=True, verbose=0
    )
    assert keras_eval["bits_per_character"] == pytest.approx(ours["bpc"], rel=1e-4)
