"""The body of install_init_script.py.

The installer's options, the settings it reads, the
service files it renders, the checks, the user and the install and
uninstall steps."""

# The rooms this one may import (tests/test_layout.py holds it to this).
MAY_IMPORT = ("core", "inputs", "sinks", "web", "config", "service")
