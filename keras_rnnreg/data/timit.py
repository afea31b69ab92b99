"""TIMIT phoneme recognition (norm-stabilizer paper, section 2.2, after Graves et al. 2013).

The layout, splits, labels, features and scoring are described in the documentation's "Data
sources and metrics" page. Our reading of the details it leaves open: folding to 39 phones keeps
the repeated symbols it creates (as Kaldi's scoring does); frames every 10 ms while a whole
400-sample window fits; 40 filters on the HTK mel scale ``2595 log10(1 + f / 700)`` from 0 Hz to
Nyquist; natural log of filter and frame energies floored at 1e-10; derivatives by the HTK
regression over ±2 frames, edges repeated. Per frame: 40 log filterbank energies, log energy,
their deltas, their delta-deltas (123 numbers). The features are cached (``.npz``, atomically)
keyed on the corpus' path, file sizes and modification times.
"""

import warnings
from pathlib import Path

import keras
import numpy as np

from keras_rnnreg import metrics as metrics_lib
from keras_rnnreg._api import check_int
from keras_rnnreg.data import _batching, _cache, catalog

PHONES_61 = (
    "aa", "ae", "ah", "ao", "aw", "ax", "ax-h", "axr", "ay", "b", "bcl", "ch", "d", "dcl",
    "dh", "dx", "eh", "el", "em", "en", "eng", "epi", "er", "ey", "f", "g", "gcl", "h#",
    "hh", "hv", "ih", "ix", "iy", "jh", "k", "kcl", "l", "m", "n", "ng", "nx", "ow", "oy",
    "p", "pau", "pcl", "q", "r", "s", "sh", "t", "tcl", "th", "uh", "uw", "ux", "v", "w",
    "y", "z", "zh",
)  # fmt: skip

# Lee & Hon (1989) folding of the 61 phones to the 39 scored ones; None: deleted.
_MERGES = {
    "ao": "aa", "ax": "ah", "ax-h": "ah", "axr": "er", "hv": "hh", "ix": "ih", "el": "l",
    "em": "m", "en": "n", "nx": "n", "eng": "ng", "zh": "sh", "ux": "uw",
    "pcl": "sil", "tcl": "sil", "kcl": "sil", "bcl": "sil", "dcl": "sil", "gcl": "sil",
    "h#": "sil", "pau": "sil", "epi": "sil", "q": None,
}  # fmt: skip
FOLD_39 = {phone: _MERGES.get(phone, phone) for phone in PHONES_61}
PHONES_39 = tuple(sorted({p for p in FOLD_39.values() if p is not None}))
NUM_CLASSES = len(PHONES_61) + 1  # + the CTC blank, id 0
BLANK = 0

# The 24-speaker core test set and the 50-speaker development set (both from TEST/).
CORE_TEST_SPEAKERS = (
    "mdab0", "mwbt0", "felc0", "mtas1", "mwew0", "fpas0", "mjmp0", "mlnt0", "fpkt0", "mlll0",
    "mtls0", "fjlm0", "mbpm0", "mklt0", "fnlp0", "mcmj0", "mjdh0", "fmgd0", "mgrt0", "mnjm0",
    "fdhc0", "mjln0", "mpam0", "fmld0",
)  # fmt: skip
DEV_SPEAKERS = (
    "faks0", "fdac1", "fjem0", "mgwt0", "mjar0", "mmdb1", "mmdm2", "mpdf0", "fcmh0", "fkms0",
    "mbdg0", "mbwm0", "mcsh0", "fadg0", "fdms0", "fedw0", "mgjf0", "mglb0", "mrtk0", "mtaa0",
    "mtdt0", "mthc0", "mwjg0", "fnmr0", "frew0", "fsem0", "mbns0", "mmjr0", "mdls0", "mdlf0",
    "mdvc0", "mers0", "fmah0", "fdrw0", "mrcs0", "mrjm4", "fcal1", "mmwh0", "fjsj0", "majc0",
    "mjsw0", "mreb0", "fgjd0", "fjmg0", "mroa0", "mteb0", "mjfc0", "mrjr0", "fmml0", "mrws1",
)  # fmt: skip

SAMPLE_RATE = 16000
N_FILTERS = 40
FEATURE_DIM = 3 * (N_FILTERS + 1)  # 123
WINDOW_S = 0.025
HOP_S = 0.010
PRE_EMPHASIS = 0.97
DELTA_WIDTH = 2
SPLITS = ("train", "valid", "test")
_FEATURE_VERSION = 1
_PHONE_IDS = {phone: i + 1 for i, phone in enumerate(PHONES_61)}

__all__ = ["CORE_TEST_SPEAKERS", "DEV_SPEAKERS", "FOLD_39", "NUM_CLASSES", "PHONES_39", "PHONES_61",
           "decode", "deltas", "evaluate", "filterbank_features", "find_utterances", "fold", "load",
           "make_dataset", "mel_filterbank", "read_phn", "read_sphere"]


# Reading


def read_sphere(path):
    """``(samples as float64 in [-1, 1), sample_rate)`` of a NIST SPHERE (or any libsndfile)
    file, through soundfile."""
    import soundfile

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file {str(path)!r} does not exist")
    try:
        audio, rate = soundfile.read(str(path), dtype="float64", always_2d=False)
    except Exception as err:
        raise ValueError(f"{path}: libsndfile cannot read this audio ({err}); expected NIST SPHERE "
                         "with uncompressed PCM (decompress 'shorten' files with sph2pipe "
                         "first)") from err
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    if audio.size == 0:
        raise ValueError(f"{path}: the audio file holds no samples")
    return audio, int(rate)


def read_phn(path):
    """The phone labels of a ``.PHN`` file: a list of ``(start_sample, end_sample, phone)``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file {str(path)!r} does not exist")
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not a TIMIT .PHN text file ({err})") from err
    labels = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 3 or not fields[0].isdigit() or not fields[1].isdigit():
            raise ValueError(f"{path}, line {number}: expected 'start end phone'; got {line!r}")
        if fields[2] not in _PHONE_IDS:
            raise ValueError(f"{path}, line {number}: {fields[2]!r} is not one of the 61 TIMIT "
                             "phones")
        labels.append((int(fields[0]), int(fields[1]), fields[2]))
    if not labels:
        raise ValueError(f"{path}: the label file holds no phones")
    return labels


def _children(folder):
    return sorted(folder.iterdir(), key=lambda p: p.name.lower())


def _corpus_root(root):
    """The folder holding TRAIN/ and TEST/: ``root`` itself or a folder up to two levels down."""
    queue = [(root, 0)]
    while queue:
        folder, depth = queue.pop(0)
        names = {p.name.lower(): p for p in folder.iterdir() if p.is_dir()}
        if "train" in names and "test" in names:
            return names["train"], names["test"]
        if depth < 2:
            queue += [(p, depth + 1) for p in _children(folder) if p.is_dir()]
    raise FileNotFoundError(f"{root}: not a TIMIT corpus: expected TRAIN/ and TEST/ folders (each "
                            "holding DR1..DR8/<speaker>/ with .WAV and .PHN files)")


def find_utterances(root):
    """The utterances of a TIMIT tree, SA sentences dropped, by split.

    Returns ``{"train": [...], "valid": [...], "test": [...]}``, each a list of
    ``(utterance_id, wav_path, phn_path)``; ids are ``"<SPEAKER>_<SENTENCE>"`` in capitals.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"TIMIT folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise ValueError(f"{root}: expected the TIMIT folder (with TRAIN/ and TEST/), not a file")
    train_dir, test_dir = _corpus_root(root)
    found = {}
    for name, folder in (("TRAIN", train_dir), ("TEST", test_dir)):
        utterances = []
        speakers = [speaker for region in _children(folder)
                    if region.is_dir() and region.name.lower().startswith("dr")
                    for speaker in _children(region) if speaker.is_dir()]
        for speaker in speakers:
            files = {p.name.lower(): p for p in speaker.iterdir() if p.is_file()}
            for lower, wav in sorted(files.items()):
                stem, _, suffix = lower.partition(".")
                if suffix != "wav" or stem.startswith("sa"):
                    continue  # "x.wav.wav" conversions have suffix "wav.wav": skipped
                phn = files.get(f"{stem}.phn")
                if phn is None:
                    raise FileNotFoundError(f"{wav}: no matching label file {stem.upper()}.PHN in "
                                            f"{speaker}; every TIMIT utterance needs its .PHN "
                                            "phone labels")
                utt_id = f"{speaker.name.upper()}_{stem.upper()}"
                utterances.append((speaker.name.lower(), utt_id, wav, phn))
        if not utterances:
            raise FileNotFoundError(f"{folder}: no utterances (expected "
                                    "DR1..DR8/<speaker>/<sentence>.WAV with .PHN labels beside "
                                    "them)")
        found[name] = utterances
    splits = {"train": [u[1:] for u in found["TRAIN"]]}
    present = {u[0] for u in found["TEST"]}
    missing = {}
    for split, speakers in (("valid", DEV_SPEAKERS), ("test", CORE_TEST_SPEAKERS)):
        splits[split] = [u[1:] for u in found["TEST"] if u[0] in speakers]
        if not splits[split]:
            raise FileNotFoundError(f"{test_dir}: none of the {len(speakers)} speakers of the "
                                    f"{split} split ({', '.join(s.upper() for s in speakers[:3])}, "
                                    "...) is present")
        missing[split] = len(set(speakers) - present)
    if any(missing.values()):
        warnings.warn(f"TIMIT at {root}: {missing['valid']} of the {len(DEV_SPEAKERS)} development "
                      f"speakers and {missing['test']} of the {len(CORE_TEST_SPEAKERS)} core-test "
                      "speakers are missing; the numbers will not be comparable with the paper's",
                      stacklevel=2)
    return splits


# Features


def mel_filterbank(n_filters=N_FILTERS, n_fft=512, sample_rate=SAMPLE_RATE, low_hz=0.0,
                   high_hz=None):
    """(n_filters, n_fft // 2 + 1) triangular filters evenly spaced on the HTK mel scale."""
    high_hz = sample_rate / 2.0 if high_hz is None else float(high_hz)
    low_mel, high_mel = 2595.0 * np.log10(1.0 + np.array([low_hz, high_hz]) / 700.0)
    edges = 700.0 * (10.0 ** (np.linspace(low_mel, high_mel, n_filters + 2) / 2595.0) - 1.0)
    freqs = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None] - lower) / (centre - lower)
    falling = (upper - freqs[None]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling))


def deltas(features, width=DELTA_WIDTH):
    """HTK regression derivatives over ±``width`` frames, edge frames repeated."""
    features = np.asarray(features, dtype=np.float64)
    t = len(features)
    padded = np.pad(features, ((width, width), (0, 0)), mode="edge")
    numerator = sum(n * (padded[width + n : width + n + t] - padded[width - n : width - n + t])
                    for n in range(1, width + 1))
    return numerator / (2.0 * sum(n * n for n in range(1, width + 1)))


def filterbank_features(audio, sample_rate=SAMPLE_RATE):
    """(frames, 123) un-normalised features of one utterance (see the module docstring)."""
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"`audio` must be a non-empty 1-D signal; got shape {x.shape}")
    x = np.concatenate([x[:1], x[1:] - PRE_EMPHASIS * x[:-1]])
    window, hop = (int(round(seconds * sample_rate)) for seconds in (WINDOW_S, HOP_S))
    n_fft = 1 << (window - 1).bit_length()
    if len(x) < window:
        x = np.pad(x, (0, window - len(x)))
    n_frames = 1 + (len(x) - window) // hop
    index = np.arange(window)[None, :] + hop * np.arange(n_frames)[:, None]
    frames = x[index] * np.hamming(window)
    power = np.abs(np.fft.rfft(frames, n_fft)) ** 2
    log_fbank = np.log(np.maximum(power @ mel_filterbank(N_FILTERS, n_fft, sample_rate).T, 1e-10))
    log_energy = np.log(np.maximum((frames**2).sum(axis=1), 1e-10))
    static = np.column_stack([log_fbank, log_energy])
    first = deltas(static)
    return np.hstack([static, first, deltas(first)])


# Loading (with the cache)


def _fingerprint(root, splits):
    stats = []
    for split in SPLITS:
        for utt_id, wav, phn in splits[split]:
            for path in (wav, phn):
                st = path.stat()
                stats.append((split, utt_id, path.name, st.st_size, st.st_mtime_ns))
    return _cache.fingerprint(_FEATURE_VERSION, str(Path(root).resolve()), stats)


def _compute(splits):
    raw = {}
    for split in SPLITS:
        feats, labels, ids = [], [], []
        for utt_id, wav, phn in splits[split]:
            audio, rate = read_sphere(wav)
            feats.append(filterbank_features(audio, rate).astype(np.float32))
            labels.append(np.array([_PHONE_IDS[p] for _, _, p in read_phn(phn)], np.int32))
            ids.append(utt_id)
        raw[split] = (feats, labels, ids)
    # Training-set mean and standard deviation, accumulated in float64 around a shift (the
    # first utterance's mean) so that no second copy of the whole training set is needed.
    train = raw["train"][0]
    shift = train[0].mean(axis=0, dtype=np.float64)
    count = sum(len(f) for f in train)
    total = sum((f - shift).sum(axis=0) for f in train)
    squares = sum(((f - shift) ** 2).sum(axis=0) for f in train)
    mean = shift + total / count
    std = np.maximum(np.sqrt(np.maximum(squares / count - (total / count) ** 2, 0.0)), 1e-8)
    packed = {"mean": mean.astype(np.float32), "std": std.astype(np.float32)}
    scale = (1.0 / std).astype(np.float32)
    for split, (feats, labels, ids) in raw.items():
        packed[f"{split}_features"] = (np.concatenate(feats) - mean.astype(np.float32)) * scale
        packed[f"{split}_frames"] = np.array([len(f) for f in feats], dtype=np.int64)
        packed[f"{split}_labels"] = np.concatenate(labels).astype(np.int16)
        packed[f"{split}_label_lengths"] = np.array([len(a) for a in labels], dtype=np.int64)
        packed[f"{split}_ids"] = np.array(ids, dtype=str)
    return packed


def _unpack(packed):
    out = {}
    for split in SPLITS:
        labels = _cache.split(packed[f"{split}_labels"], packed[f"{split}_label_lengths"])
        out[split] = {"features": _cache.split(packed[f"{split}_features"],
                                               packed[f"{split}_frames"]),
                      "labels": [a.astype(np.int32) for a in labels],
                      "ids": [str(i) for i in packed[f"{split}_ids"]]}
    return {**out, "phones": PHONES_61, "mean": packed["mean"], "std": packed["std"]}


def load(root, cache=True, data_root=None):
    """Read a TIMIT tree into normalised features and 61-phone labels, by split.

    Returns ``{"train": split, "valid": split, "test": split, "phones": PHONES_61,
    "mean": (123,), "std": (123,)}``, each ``split`` a dict of ``"features"`` (list of normalised
    (frames, 123) float32), ``"labels"`` (list of int32 ids 1..61 in :data:`PHONES_61` order) and
    ``"ids"`` (``"<SPEAKER>_<SENTENCE>"``). ``root="timit"`` is the data root's ``TIMIT/``.
    """
    root = catalog.resolve(root, "timit", data_root=data_root)
    splits = find_utterances(root)
    name = f"timit-{_fingerprint(root, splits)}.npz"
    return _unpack(_cache.cached(name, lambda: _compute(splits), cache))


# Pipelines, decoding, evaluation


def _check_split(split):
    if not isinstance(split, dict) or "features" not in split or "labels" not in split:
        raise ValueError("expected a split of timit.load(...) (a dict with 'features' and "
                         f"'labels'); got {type(split).__name__}")
    if len(split["features"]) != len(split["labels"]) or not split["features"]:
        raise ValueError("the split must hold as many label sequences as feature sequences (>0)")
    return split["features"], split["labels"]


def make_dataset(split, batch_size, shuffle=True, seed=0, pad_multiple=8, **kwargs):
    """A ``keras.utils.PyDataset`` of ``(features, labels)`` batches for a CTC model.

    ``features``: (batch, frames, 123) float32, zero-padded at the end; ``labels``: (batch, L)
    int32 phone ids 1..61, padded with 0 (``keras.losses.CTC``'s blank) to the split's longest.
    """
    features, labels = _check_split(split)
    label_length = max(len(a) for a in labels)

    def make_batch(indices, length):
        return (_batching.pad_stack([features[i] for i in indices], length),
                _batching.pad_stack([labels[i] for i in indices], label_length, dtype="int32"))

    return _batching.PaddedBatches([len(f) for f in features], make_batch, batch_size,
                                   shuffle=shuffle, seed=seed, pad_multiple=pad_multiple, **kwargs)


def decode(outputs, lengths=None):
    """Greedy CTC decoding (``keras.ops.ctc_decode``, blank 0) of (batch, frames, 62) outputs.

    Returns a list of int arrays of phone ids 1..61, one per utterance; ``lengths`` gives each
    utterance's number of valid frames (all frames when None).
    """
    outputs = keras.ops.convert_to_tensor(outputs, dtype="float32")
    if outputs.shape[-1] != NUM_CLASSES:
        raise ValueError(f"expected outputs with {NUM_CLASSES} classes (blank + 61 phones) on the "
                         f"last axis; got shape {tuple(outputs.shape)}")
    if lengths is None:
        lengths = [outputs.shape[1]] * outputs.shape[0]
    lengths = keras.ops.convert_to_tensor(np.asarray(lengths, dtype=np.int32))
    decoded, _ = keras.ops.ctc_decode(outputs, lengths, strategy="greedy", mask_index=BLANK)
    decoded = np.asarray(keras.ops.convert_to_numpy(decoded))[0]
    return [row[row > 0].astype(np.int32) for row in decoded]


def fold(sequence):
    """61-phone labels (ids 1..61 or phone names) folded to the 39 scored phones, ``q`` deleted."""
    out = []
    for item in sequence:
        phone = PHONES_61[int(item) - 1] if not isinstance(item, str) else item
        if phone not in FOLD_39:
            raise ValueError(f"{phone!r} is not one of the 61 TIMIT phones")
        if FOLD_39[phone] is not None:
            out.append(FOLD_39[phone])
    return out


def evaluate(model, split, batch_size=1):
    """Phone error rate of ``model`` on a split, after folding to 39 phones.

    The model maps (batch, frames, 123) features to (batch, frames, 62) CTC outputs (logits or
    probabilities). ``batch_size=1`` runs each utterance alone (exact for any model); larger
    batches pad at the end, which changes an unmasked bidirectional model's outputs. Returns
    ``{"per": ..., "edits": ..., "reference_phones": ..., "utterances": ...}``.
    """
    features, labels = _check_split(split)
    batch_size = check_int("batch_size", batch_size)
    order = sorted(range(len(features)), key=lambda i: len(features[i]))
    references, hypotheses = [], []
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        lengths = [len(features[i]) for i in batch]
        x = _batching.pad_stack([features[i] for i in batch], max(lengths))
        out = _batching.predict_batch(model, x, f"(batch, frames, {NUM_CLASSES})")
        for i, ids in zip(batch, decode(out, lengths)):
            hypotheses.append(fold(ids))
            references.append(fold(labels[i]))
    edits = sum(metrics_lib.edit_distance(r, h) for r, h in zip(references, hypotheses))
    total = sum(len(r) for r in references)
    return {"per": metrics_lib.phone_error_rate(references, hypotheses), "edits": int(edits),
            "reference_phones": int(total), "utterances": len(references)}
