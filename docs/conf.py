"""Sphinx configuration: the API reference rendered from the docstrings (autodoc, napoleon, MathJax)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jtln  # noqa: E402

project = "jtln"
author = "the jtln authors"
copyright = "2026, the jtln authors"  # noqa: A001 -- Sphinx's name
release = version = jtln.__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax", "sphinx.ext.viewcode", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
autodoc_typehints = "description"
nitpicky = False
html_theme = "alabaster"
html_static_path = []
myst_enable_extensions = ["dollarmath"]
