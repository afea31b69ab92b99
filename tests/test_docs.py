"""The public classes' docstrings: an ``Args:`` section and an example that runs (``make doctest``
runs the examples on JAX; ``make docs`` renders them). Exceptions take their message as any
exception does, so they need the example only."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "keras_rnnreg"
# The modules whose classes are held to this; add a module here once its docstrings comply.
MODULES = ["activations.py", "callbacks", "constraints.py", "data", "distribute.py",
           "initializers.py", "metrics.py", "optimizers.py"]


def _public_classes():
    for entry in MODULES:
        root = PACKAGE / entry
        for path in sorted(root.rglob("*.py") if root.is_dir() else [root]):
            if path.name.startswith("_") and path.name != "__init__.py":
                continue
            tree = ast.parse(path.read_text())
            exported = next(({e.value for e in node.value.elts if isinstance(e, ast.Constant)}
                             for node in tree.body if isinstance(node, ast.Assign)
                             and any(getattr(t, "id", "") == "__all__" for t in node.targets)),
                            None)
            for node in tree.body:
                if isinstance(node, ast.ClassDef) and not node.name.startswith("_") and (
                        exported is None or node.name in exported):
                    yield f"{path.relative_to(PACKAGE)}:{node.name}", node


CLASSES = dict(_public_classes())


def test_the_census_finds_the_classes():
    assert len(CLASSES) == 20 and "data/catalog.py:Corpus" in CLASSES


@pytest.mark.parametrize("where", sorted(CLASSES))
def test_args_and_example(where):
    node = CLASSES[where]
    doc = ast.get_docstring(node) or ""
    exception = any(getattr(b, "id", "").endswith(("Error", "Exception")) for b in node.bases)
    assert exception or "\nArgs:\n" in doc, where
    assert "Examples:\n" in doc and "\n    >>> " in doc, where
