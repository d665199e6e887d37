"""Sphinx configuration of the API reference (``make docs``; warnings are errors there)."""
from __future__ import annotations

import importlib.metadata
import os
import sys
from pathlib import Path

# the package from this checkout, also when it is not installed
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("MPLBACKEND", "Agg")

project = "threeregime"
author = "The threeregime contributors"
copyright = "2026, The threeregime contributors"
try:
    release = importlib.metadata.version("threeregime")
except importlib.metadata.PackageNotFoundError:
    release = "unknown"
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
]
autosummary_generate = True
autodoc_default_options = {"members": True, "undoc-members": False}
autodoc_typehints = "none"          # signatures show them; numpydoc's sections say the rest
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
templates_path: list[str] = []
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path: list[str] = []
nitpicky = False
