"""Sphinx configuration of the asyncecho documentation site.

Built offline (no intersphinx, no remote assets: the furo theme ships its
own), warnings as errors:

    sphinx-build -W -b html docs docs/_build/html

The API reference is autodoc over the installed (or, from a checkout, the
`src/`) package; Google-style docstrings through napoleon, type hints in
the parameter descriptions.
"""

from __future__ import annotations

import sys
from pathlib import Path

_SRC = Path(__file__).resolve().parent.parent / "src"
if _SRC.is_dir():
    sys.path.insert(0, str(_SRC))

from asyncecho._version import __version__  # noqa: E402

project = "asyncecho"
author = "The asyncecho developers"
copyright = "2026, The asyncecho developers (MIT License)"
version = release = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]

# `name` in a docstring is a cross-reference where it names something
# documented, plain code otherwise.
default_role = "py:obj"
exclude_patterns = ["_build"]
nitpicky = False

autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_member_order = "bysource"
autodoc_preserve_defaults = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

html_theme = "furo"
html_title = f"asyncecho {release}"
html_static_path: list[str] = []
html_show_sourcelink = False
