"""The commands: run, status, kill, report, watch, register.

What the command line does: start (run), --status, --kill, report, watch
and register, one module each with its parser."""

# The rooms this one may import (tests/test_layout.py holds it to this).
MAY_IMPORT = ("core", "inputs", "sinks", "web", "config", "service")
