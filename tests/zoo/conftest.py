"""Zoo tests: on JAX, share XLA compilations between configurations with identical graphs.

Many zoo names differ only in values that live in variables (initial weights, learning rates), so
with the tiny test overrides their train steps lower to identical XLA programs. JAX's in-memory
cache is keyed by the Python function, which every model makes anew; its persistent cache is keyed
by the program, so it lets those models reuse one compilation. The cache lives in a temporary
folder for the session.
"""

import keras
import pytest


@pytest.fixture(scope="session", autouse=True)
def _jax_compilation_cache(tmp_path_factory):
    if keras.backend.backend() != "jax":
        yield
        return
    import jax

    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
             "jax_persistent_cache_min_entry_size_bytes")
    before = {name: getattr(jax.config, name) for name in names}
    jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax-cache")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    yield
    for name, value in before.items():
        jax.config.update(name, value)
