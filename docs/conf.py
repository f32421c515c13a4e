"""Sphinx configuration: the API reference rendered from the docstrings (autodoc, napoleon); equations as MathML.

The pages load nothing from the network: math is converted to MathML at build time (``_ext/mathml.py``) and the
theme's files are copied beside the pages, so the documentation reads the same offline (checked in headless Chromium
by ``tests/test_offline_pages.py``).
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "docs" / "_ext"))

import jtln  # noqa: E402

project = "jtln"
author = "the jtln authors"
copyright = "2026, the jtln authors"  # noqa: A001 -- Sphinx's name
release = version = jtln.__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "mathml", "sphinx.ext.viewcode", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "_ext"]
html_math_renderer = "mathml"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
autodoc_typehints = "description"
nitpicky = False
html_theme = "alabaster"
html_static_path = []
myst_enable_extensions = ["dollarmath"]
