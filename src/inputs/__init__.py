"""Input backends, one module each behind base.py.

Input backends: one module each behind inputs/base.py, named in
registry.py."""

# The rooms this one may import (tests/test_layout.py holds it to this).
MAY_IMPORT = ("core",)
