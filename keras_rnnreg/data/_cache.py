"""The on-disk cache of parsed corpora and computed features.

``$RNNREG_CACHE``, else ``~/.cache/keras-rnnreg``; every file is written atomically (a temporary
file in the same folder, then ``os.replace``).
"""

import hashlib
import os
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np

ENV_VAR = "RNNREG_CACHE"


def cache_dir(create=True):
    """The cache folder: ``$RNNREG_CACHE`` or ``~/.cache/keras-rnnreg``."""
    path = Path(os.environ.get(ENV_VAR) or Path.home() / ".cache" / "keras-rnnreg").expanduser()
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def fingerprint(*parts):
    """A short stable hash of ``parts`` (strings or numbers), used in cache file names."""
    return hashlib.sha256("".join(f"{part!r}\0" for part in parts).encode()).hexdigest()[:16]


def atomic_save_npz(path, **arrays):
    """Write ``arrays`` to ``path`` (.npz) atomically: temporary file, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def cached(name, build, use=True):
    """The arrays of cache file ``name``; when it is absent or unreadable, or ``use`` is False,
    those of ``build()``, saved under ``name`` when ``use``."""
    path = cache_dir() / name
    stored = load_npz(path) if use else None
    if stored is None:
        stored = build()
        if use:
            atomic_save_npz(path, **stored)
    return stored


def split(flat, lengths):
    """``flat`` cut into consecutive pieces of ``lengths`` (the inverse of concatenating them)."""
    return np.split(flat, np.cumsum(lengths)[:-1]) if len(lengths) else []


def load_npz(path):
    """The arrays of the cache file ``path`` as a dict, or None when it is absent or unreadable.

    An unreadable (corrupt, truncated) cache file is reported with a warning and treated as
    absent, so the caller rebuilds it.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        warnings.warn(f"cache file {path} is unreadable ({err}); rebuilding it", stacklevel=4)
        return None
