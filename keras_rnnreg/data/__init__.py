"""Data pipelines for the papers' four benchmark families.

* :mod:`~keras_rnnreg.data.polyphonic` — JSB Chorales, Nottingham, MuseData, Piano-midi.de
  (noise study, section 10.1); embedded default ``"music21-chorales"``.
* :mod:`~keras_rnnreg.data.ptb` — character-level Penn Treebank (norm-stabilizer paper, 2.1).
* :mod:`~keras_rnnreg.data.timit` — TIMIT phoneme recognition (norm-stabilizer paper, 2.2).
* :mod:`~keras_rnnreg.data.adding` — the adding problem (norm-stabilizer paper, 2.3).

Every pipeline is a ``keras.utils.PyDataset`` (any backend). The corpora live under
:func:`data_root` (:mod:`~keras_rnnreg.data.catalog`); parsed corpora and features are cached
under :func:`cache_dir`. Submodules are imported on first use.
"""

import importlib

from keras_rnnreg.data._cache import cache_dir
from keras_rnnreg.data.catalog import CORPORA, DataNotFoundError, data_root, fetch, locate

_SUBMODULES = ("adding", "catalog", "polyphonic", "ptb", "timit")

__all__ = ["CORPORA", "DataNotFoundError", "cache_dir", "data_root", "fetch", "locate",
           *_SUBMODULES]


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'keras_rnnreg.data' has no attribute {name!r}")
