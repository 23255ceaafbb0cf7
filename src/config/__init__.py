"""Settings: loading settings.py, option tables, plugins.

Settings: loading settings.py, the option tables of the top-level names,
and loading the input and sink classes the settings name."""

# The rooms this one may import (tests/test_layout.py holds it to this).
MAY_IMPORT = ("core", "inputs", "sinks", "web")
