"""keras_rnnreg.data._cache: where the cache lives and how it is written."""

from pathlib import Path

import numpy as np

from keras_rnnreg import data
from keras_rnnreg.data import _cache


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNREG_CACHE", str(tmp_path / "here"))
    assert data.cache_dir() == tmp_path / "here" and (tmp_path / "here").is_dir()
    monkeypatch.delenv("RNNREG_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.cache_dir(create=False) == Path(tmp_path / "home" / ".cache" / "keras-rnnreg")


def test_atomic_save_and_load(tmp_path):
    path = _cache.atomic_save_npz(tmp_path / "a" / "x.npz", a=np.arange(3), b=np.array(["u"]))
    loaded = _cache.load_npz(path)
    np.testing.assert_array_equal(loaded["a"], [0, 1, 2])
    assert list(loaded["b"]) == ["u"]
    assert [p.name for p in path.parent.iterdir()] == ["x.npz"]
    assert _cache.load_npz(tmp_path / "missing.npz") is None
    assert _cache.fingerprint("a", 1) == _cache.fingerprint("a", 1) != _cache.fingerprint("a", 2)
