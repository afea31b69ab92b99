"""The registry of zoo names (after timm's ``_registry.py``, but a duplicate name raises)."""

import copy
import difflib
import fnmatch
import importlib

from keras_rnnreg.zoo import schema

__all__ = ["UnknownModelError", "get_config", "list_models", "register", "resolve", "unregister"]

_PRESETS = {}
# The papers' presets, imported on the registry's first use rather than with the package: building
# them serializes Keras objects, and keras.saving.serialize_keras_object imports TensorFlow
# whenever it is installed (also on JAX and PyTorch), which `import keras_rnnreg` must not do.
PRESET_MODULES = ("keras_rnnreg.zoo.noise_study", "keras_rnnreg.zoo.norm_stabilizer",
                  "keras_rnnreg.zoo.zoneout")
_loaded = False


def _presets():
    global _loaded
    if not _loaded:
        _loaded = True  # set first: the preset modules call register() while they load
        for module in PRESET_MODULES:
            importlib.import_module(module)
    return _PRESETS


class UnknownModelError(KeyError):
    """An unknown zoo name; the message lists the closest registered names."""

    def __str__(self):  # KeyError would quote the message
        return self.args[0] if self.args else ""


def register(name, config):
    """Register a preset: ``config`` is a (partial) config dict; the rest comes from the defaults.

    The config is completed and validated at once, so a broken preset fails on import, not at
    training time. Registering a name twice raises ``ValueError``.
    """
    if not isinstance(name, str) or not name or name != name.strip():
        raise ValueError(f"invalid zoo name {name!r}")
    if name in _presets():
        raise ValueError(f"zoo name {name!r} is already registered; names must be unique")
    _PRESETS[name] = schema.validate(schema.complete({**config, "name": name}))
    return name


def unregister(name):
    """Remove a name (for tests of user registrations)."""
    _PRESETS.pop(name, None)


def list_models(pattern="*"):
    """Sorted registered names matching a shell-style ``pattern`` (``"jsb_*"``, ``"*_ns"``)."""
    return sorted(n for n in _presets() if fnmatch.fnmatchcase(n, pattern))


def _lookup(name):
    if name in _presets():
        return _PRESETS[name]
    close = difflib.get_close_matches(str(name), list(_PRESETS), n=5, cutoff=0.5)
    if not close:  # prefix / substring matches help with names like "jsb" or "blstm"
        close = [n for n in sorted(_PRESETS) if str(name) in n][:5]
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownModelError(f"unknown zoo name {name!r}{hint} (`rnnreg list` or "
                            f"keras_rnnreg.zoo.list_models() show all {len(_PRESETS)})")


def get_config(name, **overrides):
    """The resolved configuration of ``name`` as a plain dict (a copy), with ``overrides`` applied.

    Sections: ``model`` (architecture), ``regularization``, ``optimizer``, ``data``, ``training``
    (schedule) and ``paper`` (the reference, the table, the paper's number, our readings).
    """
    config = copy.deepcopy(_lookup(name))
    if overrides:
        config = schema.apply_overrides(config, overrides)
    return config


def resolve(name_or_config, overrides=None):
    """The resolved :class:`~keras_rnnreg.zoo.schema.Config` of a zoo name or a config dict,
    with overrides (dict or ``key=value`` list); a ``Config`` without overrides is returned as it
    is (it was checked when it was made)."""
    if isinstance(name_or_config, schema.Config):
        config = name_or_config
    elif isinstance(name_or_config, dict):
        config = schema.validate(schema.complete(name_or_config))
    else:
        config = _lookup(name_or_config)
    return schema.apply_overrides(config, overrides) if overrides else config
