"""The house rules a reader relies on (README, "Layout"): short functions in the package.

The one direction of imports and the absence of cycles are checked by import-linter
(``.importlinter``, run by ``make lint``), which reads imports inside functions too.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "keras_rnnreg"
LIMIT = 80  # lines of a function (its signature and docstring included)


def test_no_function_in_the_package_is_longer_than_the_limit():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > LIMIT:
                    long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} "
                                f"{node.name} ({length} lines)")
    assert not long, f"functions over {LIMIT} lines: " + "; ".join(long)


def test_private_keras_api_is_reached_only_from_the_backend_adapter():
    """``keras.src`` (Keras' private modules) appears in ``_backend.py`` only, as it promises."""
    import re

    private = re.compile(r"^\s*(from|import)\s+keras\.src\b|keras\.src\.\w+\s*\(", re.M)
    users = [str(path.relative_to(PACKAGE.parent)) for path in sorted(PACKAGE.rglob("*.py"))
             if path.name != "_backend.py" and private.search(path.read_text())]
    assert not users, f"private Keras API outside keras_rnnreg/_backend.py: {users}"
