"""The shipped experiment cards (``zoo/*.toml``) and tuner jobs (``tuning/*.toml``), by name.

In a checkout: the repository's ``zoo/`` and ``tuning/``; in a wheel, the same files as
``keras_rnnreg/_cards`` and ``keras_rnnreg/_jobs`` (``pyproject.toml`` maps them).
"""

from pathlib import Path

__all__ = ["KINDS", "find", "folder", "names"]

_PACKAGE = Path(__file__).resolve().parent

#: kind -> (the folder in an installed package, the folder of a checkout, what the files are)
KINDS = {"card": ("_cards", "zoo", "experiment card"), "job": ("_jobs", "tuning", "tuner job")}


def folder(kind):
    """The folder of the shipped files of ``kind`` (``"card"`` or ``"job"``)."""
    installed, checkout, _ = KINDS[kind]
    path = _PACKAGE / installed
    return path if path.is_dir() else _PACKAGE.parent / checkout


def names(kind):
    """The names of the shipped files of ``kind``, sorted (``noise_table1``, ...)."""
    return sorted(p.stem for p in folder(kind).glob("*.toml"))


def find(kind, name_or_path):
    """The TOML file a user named: an existing path (the user's own file), else a shipped file
    by its name (``noise_table1``, ``noise_table1.toml``, or ``zoo/noise_table1.toml`` as in a
    checkout).

    Raises:
        FileNotFoundError: one line naming what was looked for and the shipped names.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    _, checkout, what = KINDS[kind]
    if path.suffix in ("", ".toml") and str(path.parent) in (".", checkout):
        shipped = folder(kind) / f"{path.stem}.toml"
        if shipped.is_file():
            return shipped
    raise FileNotFoundError(f"{what} {str(name_or_path)!r} not found: no such file, and no "
                            f"shipped {what} of that name (rnnreg list --{kind}s: "
                            f"{', '.join(names(kind))})")
