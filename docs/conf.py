"""Sphinx settings for the manual of power (built by ``make docs``)."""

import pathlib
import runpy
import sys

_DOCS = pathlib.Path(__file__).resolve().parent
_SRC = _DOCS.parent / "src"
# Our extensions (docs/_ext) draw and generate what the code can tell.
sys.path.insert(0, str(_DOCS / "_ext"))

project = "power"
author = "the power authors"
copyright = "the power authors"
# One version, the program's own: the manual describes what --version prints.
release = version = runpy.run_path(str(_SRC / "core" / "version.py"))["VERSION"]

extensions = ["schematics", "powerref"]
root_doc = "index"
exclude_patterns = ["_build", "_generated", "requirements.txt"]
# Code blocks name their language; a bare ``::`` block is plain text.
highlight_language = "none"
html_theme = "alabaster"
html_title = f"power {release}"
html_show_sourcelink = False
smartquotes_action = "qe"  # never "--" to a dash: options are copied from the manual
