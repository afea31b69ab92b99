"""A griffe extension for the API reference (loaded by mkdocs.yml, mkdocstrings' options).

* The docstrings' Sphinx roles (``:class:`X```, ``:func:`~a.b.f```) become inline code (``X``,
  ``f``) before the Google-style parsing, so the pages show the names, not the role markup.
* Docstring-format warnings are off for the modules of ``QUIET`` only: their ``Args:`` entries
  still name several arguments at once (``a, b, c: ...``), which the Google parser reports.
  Empty this tuple once they name one argument each; every other module builds strictly.
"""

import re

import griffe

QUIET = ("keras_rnnreg.layers.",)
_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):`(~?)([^`]+)`")


def _code(match):
    name = match.group(2)
    return f"`{name.rsplit('.', 1)[-1] if match.group(1) else name}`"


class SphinxRoles(griffe.Extension):
    """Rewrites the roles of every docstring griffe loads (and quiets the QUIET modules)."""

    def on_instance(self, *, obj, **kwargs):
        docstring = obj.docstring
        if docstring is None:
            return
        docstring.value = _ROLE.sub(_code, docstring.value)
        if obj.path.startswith(QUIET):
            docstring.parser_options = {**docstring.parser_options, "warnings": False}
