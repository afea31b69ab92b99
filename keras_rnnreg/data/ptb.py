"""Character-level Penn Treebank (norm-stabilizer paper, section 2.1).

Mikolov's "simple-examples" files (character or word level; the documentation's "Data sources
and metrics" page). Our reading of "sequences of length 50 taken without overlap": each sentence
ends with an end-of-sentence symbol (``"\\n"``; ``eos=False`` drops it); the vocabulary is the
sorted symbols of the training split (a symbol outside it is an error; ``<unk>`` is five
characters); a split is one stream cut into consecutive sequences of 50 inputs with the targets
shifted by one (every symbol but the first predicted once), the last padded at the end with
weight 0; every sequence starts from the initial state, in training and :func:`evaluate` alike.
"""

import warnings
from pathlib import Path

import numpy as np

from keras_rnnreg import metrics as metrics_lib
from keras_rnnreg._api import check_int
from keras_rnnreg.data import _batching, catalog

SPLITS = ("train", "valid", "test")
EOS = "\n"
SEQ_LEN = 50
LEVELS = ("auto", "char", "word")
_FILES = {"char": "ptb.char.{}.txt", "word": "ptb.{}.txt"}

__all__ = ["EOS", "chars_from_words", "encode", "evaluate", "load", "make_dataset",
           "make_sequences", "read_sentences"]


def chars_from_words(line):
    """The characters of a word-level line: stripped, spaces replaced by ``_``."""
    return list(line.strip().replace(" ", "_"))


def read_sentences(path, level):
    """The sentences of a PTB file as ``(line number, characters)`` (blank lines are skipped).

    ``level``: ``"char"`` (characters separated by spaces) or ``"word"`` (words separated by
    spaces; converted with :func:`chars_from_words`).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"PTB file {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not a UTF-8 text file ({err})") from err
    sentences = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        if level == "word":
            sentences.append((number, chars_from_words(line)))
            continue
        tokens = line.split()
        long = next((t for t in tokens if len(t) != 1), None)
        if long is not None:
            raise ValueError(f"{path}, line {number}: {long!r} is not a single character; a "
                             "character-level PTB file has characters separated by single spaces "
                             "(is this a word-level file?)")
        sentences.append((number, tokens))
    if not sentences:
        raise ValueError(f"{path}: the file holds no text")
    return sentences


def _find(folder, split, levels):
    """The first file of ``split`` in ``folder`` among ``levels`` and its level, or (None, None)."""
    for level in levels:
        path = folder / _FILES[level].format(split)
        if path.is_file():
            return path, level
    return None, None


def encode(sentences, vocab, path, eos=True, vocab_file="the vocabulary split"):
    """One int32 stream of symbol ids; a symbol outside ``vocab`` is an error naming the line."""
    index = {symbol: i for i, symbol in enumerate(vocab)}
    ids = []
    for number, chars in sentences:
        try:
            ids.extend(index[c] for c in chars)
        except KeyError as err:
            raise ValueError(f"{path}, line {number}: character {err.args[0]!r} is not in the "
                             f"vocabulary ({len(vocab)} symbols built from {vocab_file})") from None
        if eos:
            ids.append(index[EOS])
    return np.asarray(ids, dtype=np.int32)


def load(path, vocab_from="train", level="auto", eos=True, download=False, data_root=None):
    """Read character-level PTB from a folder, or from the data root's ``ptb/`` (``path="ptb"``).

    Returns ``{"train": ids or None, "valid": ids, "test": ids, "vocab": [...],
    "vocab_from": ..., "files": {...}}``, each split one int32 stream of symbol ids.

    The vocabulary comes from ``vocab_from``: a folder without a training split (such as
    ``../shared/data/ptb``) needs ``"valid"`` (or ``"test"``); ``"train"`` is then None and a
    warning says this is not the paper's set-up. ``level``: ``"auto"`` (character file, else word
    file), ``"char"`` or ``"word"``. ``download=True`` (with ``path="ptb"``) fetches missing word
    files (:func:`keras_rnnreg.data.fetch`); ``data_root``: see :func:`keras_rnnreg.data.data_root`.
    """
    folder = Path(catalog.resolve(path, "ptb", download, data_root)).expanduser()
    if level not in LEVELS:
        raise ValueError(f"`level` must be one of {LEVELS}; got {level!r}")
    if vocab_from not in SPLITS:
        raise ValueError(f"`vocab_from` must be one of {SPLITS}; got {vocab_from!r}")
    if not folder.exists():
        raise FileNotFoundError(f"PTB folder {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise ValueError(f"{folder}: expected the folder holding ptb.char.{{train,valid,test}}.txt "
                         "or ptb.{train,valid,test}.txt, not a file")
    levels = ("char", "word") if level == "auto" else (level,)
    found = {split: _find(folder, split, levels) for split in SPLITS}
    for split in SPLITS:
        if found[split][0] is not None:
            continue
        looked = " or ".join(_FILES[k].format(split) for k in levels)
        if split == "train" and vocab_from == "train":
            raise FileNotFoundError(f"{folder}: no training split (looked for {looked}). The "
                                    "vocabulary comes from the training split; to run without one, "
                                    "pass vocab_from='valid' to build it from the validation split "
                                    "instead (a smoke test, not the paper's set-up)")
        if split != "train":
            raise FileNotFoundError(f"{folder}: no {split} split (looked for {looked})")
    sentences = {split: read_sentences(p, kind) if p is not None else None
                 for split, (p, kind) in found.items()}
    symbols = {c for _, chars in sentences[vocab_from] for c in chars}
    vocab = sorted(symbols | ({EOS} if eos else set()))
    vocab_file = found[vocab_from][0].name
    out = {split: None if sentences[split] is None
           else encode(sentences[split], vocab, p, eos, vocab_file=vocab_file)
           for split, (p, _) in found.items()}
    if vocab_from != "train":
        missing = "no training split; " if out["train"] is None else ""
        warnings.warn(f"PTB at {folder}: {missing}vocabulary built from the {vocab_from} split "
                      f"({vocab_file}), not the training split: this is a smoke-test set-up, not "
                      "the paper's", stacklevel=2)
    files = {split: (str(p) if p is not None else None) for split, (p, _) in found.items()}
    return {**out, "vocab": vocab, "vocab_from": vocab_from, "files": files}


def make_sequences(ids, seq_len=SEQ_LEN):
    """Non-overlapping next-symbol sequences: ``(inputs, targets, weights)``, each (N, seq_len).

    The last sequence is padded at the end (ids 0, weight 0) when the stream does not divide.
    """
    seq_len = check_int("seq_len", seq_len)
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"`ids` must be a 1-D stream of integer ids; got {ids.dtype} {ids.shape}")
    if len(ids) < 2:
        raise ValueError("the stream has fewer than two symbols: nothing to predict")
    inputs, targets = ids[:-1], ids[1:]
    n = -(-len(inputs) // seq_len)
    pad = n * seq_len - len(inputs)
    weights = np.concatenate([np.ones(len(inputs), np.float32), np.zeros(pad, np.float32)])

    def shape(a):
        return np.pad(a, (0, pad)).astype(np.int32).reshape(n, seq_len)

    return shape(inputs), shape(targets), weights.reshape(n, seq_len)


def make_dataset(ids, batch_size, seq_len=SEQ_LEN, shuffle=True, seed=0, **kwargs):
    """A ``keras.utils.PyDataset`` of ``(inputs, targets, sample_weight)`` batches.

    Inputs and targets are int32 ids of shape (batch, seq_len) (targets for
    ``sparse_categorical_crossentropy``); ``sample_weight`` is 0 on the padded tail.
    """
    arrays = make_sequences(ids, seq_len)
    return _batching.ArrayBatches(arrays, batch_size, shuffle=shuffle, seed=seed, **kwargs)


def evaluate(model, ids, seq_len=SEQ_LEN, batch_size=128, from_logits=False):
    """Bits per character over a whole split (every symbol but the first predicted once).

    The model maps (batch, seq_len) int ids to (batch, seq_len, V) probabilities
    (``from_logits=True``: logits). Returns ``{"bpc": ..., "nll": nats per symbol,
    "characters": ...}``.
    """
    x, y, w = make_sequences(ids, seq_len)
    batch_size = check_int("batch_size", batch_size)
    sums = np.zeros(2)  # bits, characters
    for start in range(0, len(x), batch_size):
        sl = slice(start, start + batch_size)
        prob = _batching.predict_batch(model, x[sl], "(batch, seq_len, vocabulary size)")
        sums += metrics_lib.bpc_sums(y[sl], prob, w[sl], from_logits=from_logits)
    bits, count = map(float, sums)
    return {"bpc": bits / count, "nll": bits / count * np.log(2.0), "characters": int(count)}
