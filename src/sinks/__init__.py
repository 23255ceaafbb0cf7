"""Sinks, one module each behind base.py, and their runner.

Sinks: one module each behind sinks/base.py, the runner that feeds each
from the journal, named in registry.py."""

# The rooms this one may import (tests/test_layout.py holds it to this).
MAY_IMPORT = ("core",)
