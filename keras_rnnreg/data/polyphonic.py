"""Polyphonic music: JSB Chorales, Nottingham, MuseData and Piano-midi.de (Boulanger-Lewandowski
et al. 2012), the noise study's benchmarks, as 88-wide binary piano rolls (column 0 is MIDI pitch
21). The documentation's "Data sources and metrics" page describes each source.

Preprocessing (section 10.1): "we split the training and validation samples into chunks of 100
timesteps each ... For samples that are smaller than 100 steps long, we pad them with zeros at
the front. We do no such splitting or prefixing for the test dataset". Our reading: a sequence
``s`` of length T gives T - 1 next-step pairs ``(s[t], s[t + 1])`` (the first timestep is never a
target), cut into consecutive chunks of 100; a shorter chunk is zero-padded at the front with
sample weight 0. Test sequences are run whole (:func:`evaluate`).
"""

import itertools
import math
import operator
import pickle
import warnings
from pathlib import Path

import numpy as np

from keras_rnnreg import metrics as metrics_lib
from keras_rnnreg._api import check_int
from keras_rnnreg.data import _batching, _cache, catalog

N_NOTES = 88
LOWEST_PITCH = 21
HIGHEST_PITCH = 108
SPLITS = ("train", "valid", "test")
CHORALES = "music21-chorales"
GRIDS = {"quarter": 1.0, "eighth": 0.5}  # grid step in quarter notes
CHUNK = 100
_MIDI_SUFFIXES = (".mid", ".midi", ".kar")
_SPLIT_SEED = 0
_CHORALES_VERSION = 1

__all__ = ["CHORALES", "evaluate", "load", "make_chunks", "make_dataset", "music21_chorales",
           "next_step", "read_mat", "read_midi", "read_midi_folder", "read_pickle",
           "roll_from_pitches"]


# Readers


def load(source, *, grid=None, limit=None, cache=True, download=False, data_root=None):
    """Read a polyphonic-music dataset as ``{"train": [...], "valid": [...], "test": [...]}``.

    Each split is a list of (T, 88) uint8 piano rolls. ``source`` is a ``.pickle`` / ``.pkl``
    file, a ``.mat`` file, a folder of MIDI files, ``"music21-chorales"``, or a corpus name of
    :data:`~keras_rnnreg.data.CORPORA` looked up in ``data_root`` (and, with ``download``, fetched
    when missing). ``grid`` (MIDI only): ``"quarter"`` or ``"eighth"``; by default quarter notes
    when the folder's name mentions chorales or JSB. ``limit`` and ``cache`` (music21 only): parse
    just that many chorales; reuse / write the parsed rolls in the cache folder.
    """
    if isinstance(source, str) and source == CHORALES:
        return music21_chorales(limit=limit, cache=cache)
    source = catalog.resolve(source, "polyphonic", download, data_root)
    if limit is not None:
        raise ValueError(f"`limit` applies to {CHORALES!r} only; got source {str(source)!r}")
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"polyphonic-music source {str(path)!r} does not exist; expected a "
                                ".pickle file, a .mat file, a folder of MIDI files, or "
                                f"{CHORALES!r}")
    if path.is_dir():
        return read_midi_folder(path, grid=grid)
    suffix = path.suffix.lower()
    if suffix in (".pickle", ".pkl"):
        return read_pickle(path)
    if suffix == ".mat":
        return read_mat(path)
    if suffix in _MIDI_SUFFIXES:
        raise ValueError(f"{path}: a single MIDI file is not a dataset; pass a folder of MIDI "
                         "files (with train/, valid/, test/ subfolders, or flat for a fixed "
                         "60/20/20 split)")
    raise ValueError(f"{path}: unknown kind of file {suffix or '(no suffix)'!r}; expected .pickle "
                     f"/ .pkl, .mat, a folder of MIDI files, or {CHORALES!r}")


def roll_from_pitches(steps, where="sequence"):
    """A (T, 88) uint8 roll from T timesteps, each an iterable of MIDI pitches in 21..108."""
    roll = np.zeros((len(steps), N_NOTES), dtype=np.uint8)
    for t, notes in enumerate(steps):
        try:
            pitches = [operator.index(p) for p in notes]
        except TypeError as err:
            raise ValueError(f"{where}, timestep {t}: expected a list or tuple of integer MIDI "
                             f"pitches; got {notes!r}") from err
        for p in pitches:
            if not LOWEST_PITCH <= p <= HIGHEST_PITCH:
                raise ValueError(f"{where}, timestep {t}: MIDI pitch {p} is outside the piano "
                                 f"range {LOWEST_PITCH}..{HIGHEST_PITCH}")
        if pitches:
            roll[t, np.asarray(pitches) - LOWEST_PITCH] = 1
    return roll


class _RestrictedUnpickler(pickle.Unpickler):
    """Rebuilds only plain containers, numbers and NumPy arrays / scalars: a pickle that asks
    for anything else is refused rather than allowed to run code."""

    _ALLOWED = (
        {("builtins", n) for n in ("list", "tuple", "dict", "set", "frozenset", "int", "float")}
        | {(f"numpy.{core}.{module}", name) for core in ("core", "_core")
           for module, name in (("multiarray", "scalar"), ("multiarray", "_reconstruct"),
                                ("numeric", "_frombuffer"))}
        | {("numpy", "dtype"), ("numpy", "ndarray")}
    )

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a piano-roll pickle "
                                         "holds only lists, tuples, dicts and numbers")
        return super().find_class(module, name)


def read_pickle(path):
    """Read an original Boulanger-Lewandowski pickle (Python 2 or 3) into 88-wide rolls."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pickle file {str(path)!r} does not exist")
    try:
        with open(path, "rb") as f:
            data = _RestrictedUnpickler(f, encoding="latin1").load()
    except Exception as err:
        raise ValueError(f"{path}: not a readable piano-roll pickle ({err})") from err
    if not isinstance(data, dict) or not all(split in data for split in SPLITS):
        found = sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path}: expected a dict with keys 'train', 'valid', 'test' (lists of "
                         f"sequences); found {found}")
    out = {}
    for split in SPLITS:
        if not isinstance(data[split], (list, tuple)):
            raise ValueError(f"{path}: {split!r} must be a list of sequences; got "
                             f"{type(data[split]).__name__}")
        out[split] = []
        for i, steps in enumerate(data[split]):
            where = f"{path}: {split}[{i}]"
            if not isinstance(steps, (list, tuple)):
                raise ValueError(f"{where} must be a list of timesteps; got {type(steps).__name__}")
            out[split].append(roll_from_pitches(steps, where=where))
    return out


def read_mat(path):
    """Read a ``.mat`` copy (keys ``traindata`` / ``validdata`` / ``testdata``) into rolls."""
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f".mat file {str(path)!r} does not exist")
    try:
        contents = scipy.io.loadmat(str(path))
    except Exception as err:
        raise ValueError(f"{path}: not a readable MATLAB .mat file ({err})") from err
    keys = {split: f"{split}data" for split in SPLITS}
    missing = [key for key in keys.values() if key not in contents]
    if missing:
        found = sorted(k for k in contents if not k.startswith("__"))
        raise ValueError(f"{path}: expected the variables traindata, validdata, testdata (1xN cell "
                         f"arrays of Tx88 piano rolls); missing {missing}, found {found}")
    out = {}
    for split, key in keys.items():
        cells = np.asarray(contents[key])
        if cells.dtype != object:
            raise ValueError(f"{path}: {key} must be a cell array of Tx88 rolls; got {cells.dtype}")
        out[split] = []
        for i, cell in enumerate(cells.ravel()):
            roll = np.asarray(cell)
            if roll.ndim != 2 or roll.shape[1] != N_NOTES:
                raise ValueError(f"{path}: {key}[{i}] has shape {roll.shape}; expected (T, 88)")
            if roll.size and not np.isin(roll, (0, 1)).all():
                raise ValueError(f"{path}: {key}[{i}] is not a binary (0/1) piano roll")
            out[split].append(roll.astype(np.uint8))
    return out


def _grid_step(grid, where):
    if grid not in GRIDS:
        raise ValueError(f"{where}: `grid` must be one of {sorted(GRIDS)}; got {grid!r}")
    return GRIDS[grid]


def _sample_notes(intervals, grid_times, where):
    """Roll of the notes sounding at each grid time; ``intervals``: (pitch, start, end)."""
    roll = np.zeros((len(grid_times), N_NOTES), dtype=np.uint8)
    tolerance = 1e-6
    for pitch, start, end in intervals:
        if not LOWEST_PITCH <= pitch <= HIGHEST_PITCH:
            continue  # outside the piano's range: dropped
        first = np.searchsorted(grid_times, start - tolerance, side="left")
        stop = np.searchsorted(grid_times, end - tolerance, side="left")
        roll[first:stop, pitch - LOWEST_PITCH] = 1
    if not roll.any():
        raise ValueError(f"{where}: no note in MIDI range 21..108 sounds at any grid point")
    return roll


def read_midi(path, grid="eighth"):
    """One MIDI file as a (T, 88) roll sampled every quarter (``grid="quarter"``) or eighth note.

    Grid points are whole multiples of the step in MIDI ticks from the file's start, converted
    to seconds through the file's tempo map; drum tracks and pitches outside 21..108 are dropped.
    """
    import pretty_midi

    path = Path(path)
    step = _grid_step(grid, path)
    if not path.is_file():
        raise FileNotFoundError(f"MIDI file {str(path)!r} does not exist")
    try:
        midi = pretty_midi.PrettyMIDI(str(path))
    except Exception as err:
        raise ValueError(f"{path}: not a readable MIDI file ({type(err).__name__}: {err})") from err
    notes = [n for inst in midi.instruments if not inst.is_drum for n in inst.notes]
    if not notes:
        raise ValueError(f"{path}: the MIDI file has no notes (drum tracks are ignored)")
    ticks_per_step = midi.resolution * step
    end_tick = max(midi.time_to_tick(n.end) for n in notes)
    n_steps = max(1, math.ceil(end_tick / ticks_per_step))
    times = np.array([midi.tick_to_time(round(k * ticks_per_step)) for k in range(n_steps)])
    return _sample_notes([(n.pitch, n.start, n.end) for n in notes], times, path)


def _midi_files(folder):
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _MIDI_SUFFIXES)


def read_midi_folder(path, grid=None):
    """A folder of MIDI files as rolls: ``train/ valid/ test/`` subfolders, or flat (60/20/20).

    The flat split is a fixed permutation of the sorted file names (seed 0): the first 60% for
    training, the next 20% for validation, the rest for test.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"MIDI folder {str(path)!r} does not exist")
    if grid is None:
        name = str(path.resolve()).lower()
        grid = "quarter" if ("chorale" in name or "jsb" in name) else "eighth"
    _grid_step(grid, path)
    subfolders = {p.name.lower(): p for p in path.iterdir() if p.is_dir()}
    aliases = {"train": ("train",), "valid": ("valid", "validation", "val"), "test": ("test",)}
    found = {split: next((subfolders[a] for a in names if a in subfolders), None)
             for split, names in aliases.items()}
    if all(found.values()):
        files = {}
        for split, folder in found.items():
            files[split] = _midi_files(folder)
            if not files[split]:
                raise FileNotFoundError(f"{folder}: no MIDI files (.mid, .midi) in this split")
    else:
        flat = _midi_files(path)
        if not flat:
            raise FileNotFoundError(f"{path}: no MIDI files (.mid, .midi) and no train/, valid/, "
                                    "test/ subfolders")
        files = _fixed_split(flat)
    return {split: [read_midi(f, grid=grid) for f in files[split]] for split in SPLITS}


def _split_counts(n):
    n_train, n_valid = round(0.6 * n), round(0.2 * n)
    return n_train, n_valid, n - n_train - n_valid


def _fixed_split(items):
    """60/20/20 split of the list ``items`` by a fixed permutation (seed 0)."""
    n_train, n_valid, _ = _split_counts(len(items))
    ranked = [items[i] for i in np.random.default_rng(_SPLIT_SEED).permutation(len(items))]
    return {"train": ranked[:n_train], "valid": ranked[n_train : n_train + n_valid],
            "test": ranked[n_train + n_valid :]}


# The embedded default: Bach chorales bundled with music21


def _chorale_names():
    from music21 import corpus

    names = list(dict.fromkeys(corpus.chorales.Iterator(returnType="filename")))
    if not names:
        raise FileNotFoundError("music21's corpus has no Bach chorales "
                                "(music21.corpus.chorales.Iterator is empty); install the full "
                                "music21 package, which bundles them")
    return sorted(names)


def chorale_split(limit=None):
    """The fixed split of the chorale names: ``{"train": [...], "valid": [...], "test": [...]}``.

    The full split is 60/20/20 of a fixed permutation (seed 0) of the sorted distinct names.
    With ``limit``, the first ``round(.6 limit)`` / ``round(.2 limit)`` / rest names of each
    split are kept, so a limited set is a subset of the same split.
    """
    full = _fixed_split(_chorale_names())
    if limit is None:
        return full
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 3:
        raise ValueError(f"`limit` must be an integer >= 3 (one chorale a split); got {limit!r}")
    return {split: full[split][:k] for split, k in zip(SPLITS, _split_counts(limit))}


def _chorale_roll(name):
    from music21 import corpus

    score = corpus.parse(name)
    intervals = [(int(round(p.ps)), float(n.offset), float(n.offset) + float(n.quarterLength))
                 for n in score.flatten().notes for p in n.pitches]
    # Align the quarter-note grid with the beats: an anacrusis of half a beat shifts it by 0.5.
    shift = 0.0
    parts = getattr(score, "parts", None)
    if parts:
        measures = parts[0].getElementsByClass("Measure")
        if len(measures):
            shift = (-float(measures[0].paddingLeft)) % 1.0
    times = np.arange(shift, max((end for *_, end in intervals), default=0.0), GRIDS["quarter"])
    return _sample_notes(intervals, times, f"music21 chorale {name}")


def music21_chorales(limit=None, cache=True):
    """JSB-like rolls (not the benchmark's split) from music21's Bach chorales, split 60/20/20.

    On the quarter-note grid. Parsing all 350 takes about a minute, so the rolls are cached
    (``.npz``) and reused. A chorale music21 cannot parse is skipped with a warning.
    """
    import music21

    names = chorale_split(limit)
    key = _cache.fingerprint(_CHORALES_VERSION, music21.__version__, sorted(names.items()))

    def parse():
        packed, skipped = {}, []
        for split in SPLITS:
            rolls = []
            for name in names[split]:
                try:
                    rolls.append(_chorale_roll(name))
                except Exception as err:  # music21 raises many kinds of errors on odd files
                    skipped.append(f"{name} ({type(err).__name__}: {err})")
            packed[f"{split}_lengths"] = np.array([len(r) for r in rolls], dtype=np.int64)
            packed[f"{split}_rolls"] = np.concatenate([np.zeros((0, N_NOTES), np.uint8), *rolls])
        if skipped:
            warnings.warn(f"skipped {len(skipped)} chorale(s) music21 could not turn into a roll: "
                          + "; ".join(skipped), stacklevel=4)
        return packed

    packed = _cache.cached(f"music21-chorales-{key}.npz", parse, cache)
    return {split: _cache.split(packed[f"{split}_rolls"], packed[f"{split}_lengths"])
            for split in SPLITS}


# Preprocessing and pipelines


def _as_roll(sequence, i):
    roll = np.asarray(sequence)
    if roll.ndim != 2 or roll.shape[1] != N_NOTES:
        raise ValueError(f"sequence {i} has shape {roll.shape}; expected (T, 88)")
    return roll


def _pairs(sequences, what):
    """The :func:`next_step` pairs of the sequences that have at least one."""
    pairs = [next_step(_as_roll(s, i)) for i, s in enumerate(sequences)]
    pairs = [p for p in pairs if len(p[0])]
    if not pairs:
        raise ValueError(f"no sequence has two or more timesteps: nothing to {what}")
    return pairs


def _padded(pairs, length, padding="post"):
    """(inputs, targets, weights) of ``pairs`` zero-padded to ``length`` (weight 0 on padding)."""
    return (_batching.pad_stack([x for x, _ in pairs], length, padding),
            _batching.pad_stack([y for _, y in pairs], length, padding),
            _batching.pad_stack([np.ones(len(x)) for x, _ in pairs], length, padding))


def next_step(sequence):
    """``(inputs, targets) = (s[:-1], s[1:])`` as float32: predict each next timestep."""
    roll = np.asarray(sequence, dtype=np.float32)
    return roll[:-1], roll[1:]


def make_chunks(sequences, length=CHUNK):
    """The next-step chunks of ``length`` of section 10.1, as read in the module docstring.

    Returns ``(inputs, targets, weights)`` of shapes (N, length, 88) twice and (N, length),
    ``weights`` 0 on the front padding. Sequences of fewer than two timesteps give no chunk.
    """
    length = check_int("chunk", length)
    chunks = [(x[start : start + length], y[start : start + length])
              for x, y in _pairs(sequences, "predict") for start in range(0, len(x), length)]
    return _padded(chunks, length, padding="pre")


def make_dataset(sequences, batch_size, chunk=CHUNK, shuffle=True, seed=0, **kwargs):
    """A ``keras.utils.PyDataset`` of ``(inputs, targets, sample_weight)`` batches for ``fit``.

    ``chunk=100`` (training and validation, section 10.1): fixed-length chunks, front-padded.
    ``chunk=None``: whole sequences, padded at the *end* to the longest in the batch (exact for a
    causal model). Shuffling is seeded and differs every epoch. ``kwargs`` go to ``PyDataset``.
    """
    if chunk is not None:
        arrays = make_chunks(sequences, chunk)
        return _batching.ArrayBatches(arrays, batch_size, shuffle=shuffle, seed=seed, **kwargs)
    pairs = _pairs(sequences, "predict")

    def make_batch(indices, length):
        return _padded([pairs[i] for i in indices], length)

    return _batching.PaddedBatches([len(x) for x, _ in pairs], make_batch, batch_size,
                                   shuffle=shuffle, seed=seed, **kwargs)


def evaluate(model, sequences, batch_size=32, causal=True, from_logits=False, pad_multiple=64):
    """Whole-split NLL per timestep (nats) and frame accuracy, test sequences run whole.

    Every sequence's T - 1 next-step predictions are scored; the NLL is averaged over all predicted
    timesteps of the split (Table 1's number). With ``causal=True`` sequences are batched by
    length and padded at the end (to a multiple of ``pad_multiple``); with ``causal=False`` only
    sequences of identical length share a batch. The model maps (batch, None, 88) inputs to
    probabilities (``from_logits=True``: logits) of the same shape.

    Returns ``{"nll": ..., "frame_accuracy": ..., "timesteps": ...}``.
    """
    batch_size = check_int("batch_size", batch_size)
    pad_multiple = check_int("pad_multiple", pad_multiple)
    pairs = _pairs(sequences, "evaluate")
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]))
    groups = ([order] if causal else
              [list(g) for _, g in itertools.groupby(order, key=lambda i: len(pairs[i][0]))])
    batches = [g[k : k + batch_size] for g in groups for k in range(0, len(g), batch_size)]
    sums = np.zeros(5)  # NLL, timesteps, TP, FP, FN
    for batch in batches:
        longest = max(len(pairs[i][0]) for i in batch)
        length = -(-longest // pad_multiple) * pad_multiple if causal else longest
        x, y, mask = _padded([pairs[i] for i in batch], length)
        prob = _batching.predict_batch(model, x, "one 88-wide prediction per timestep "
                                       "(return_sequences=True)", same=3)
        sums += (*metrics_lib.nll_sums(y, prob, mask, from_logits=from_logits),
                 *metrics_lib.frame_counts(y, prob, mask, from_logits=from_logits))
    nll, count, tp, fp, fn = map(float, sums)
    denominator = tp + fp + fn
    return {"nll": nll / count, "frame_accuracy": tp / denominator if denominator else 0.0,
            "timesteps": int(count)}
