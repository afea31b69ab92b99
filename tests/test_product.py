"""The package as its users meet it: the frameworks an import loads, the version, ``python -m``."""

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import keras

import keras_rnnreg

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("tensorflow", "jax", "jaxlib", "torch", "keras_tuner", "matplotlib", "music21")

# Prints the frameworks that `import keras_rnnreg` (and its layers and zoo) adds to those that
# `import keras` alone loads.
ADDED = f"""
import sys
import keras
before = {{m.split(".")[0] for m in sys.modules}}
import keras_rnnreg
from keras_rnnreg import layers, zoo
added = {{m.split(".")[0] for m in sys.modules}} - before
print(sorted(added & set({FRAMEWORKS!r})))
"""


def test_import_loads_no_framework_beyond_keras():
    """On every backend: no TensorFlow under JAX or PyTorch (the presets load on first use)."""
    done = subprocess.run([sys.executable, "-c", ADDED], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout


def test_presets_load_on_first_use():
    from keras_rnnreg import zoo
    from keras_rnnreg.zoo import _registry

    recorded = json.loads((ROOT / "tests" / "zoo" / "golden_networks.json").read_text())
    assert zoo.list_models() == sorted(recorded["full"])  # every preset (the golden record's)
    assert all(module in sys.modules for module in _registry.PRESET_MODULES)


def test_version_is_written_once():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert not re.search(r"^version:", (ROOT / "CITATION.cff").read_text(), re.M)
    assert keras_rnnreg.__version__.count(".") == 2


def test_python_m_and_version():
    done = subprocess.run([sys.executable, "-m", "keras_rnnreg", "--version"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.strip() == f"rnnreg {keras_rnnreg.__version__}"
    done = subprocess.run([sys.executable, "-m", "keras_rnnreg", "list", "jsb_rnn_n*"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.split() == ["jsb_rnn_n", "jsb_rnn_nbr",
                                                            "jsb_rnn_ns"], done.stderr
    assert keras.backend.backend()  # the suite's backend is the subprocesses' (KERAS_BACKEND)


def test_the_wheel_lists_every_package_of_the_tree():
    """pyproject's explicit ``packages`` (needed for the cards' and jobs' package-dir mapping)
    names every package folder of keras_rnnreg/: a new one is not left out of the wheel."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for p in (ROOT / "keras_rnnreg").rglob("__init__.py")}
    assert found - listed == set(), f"packages missing from pyproject.toml: {found - listed}"
