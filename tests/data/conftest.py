"""Every data test gets its own empty cache folder (``RNNREG_CACHE``)."""

import pytest


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    path = tmp_path_factory.mktemp("rnnreg-cache")
    monkeypatch.setenv("RNNREG_CACHE", str(path))
    return path
