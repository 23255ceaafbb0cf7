"""Running: starts, the Service, pidfile and lock, logs, LEDs.

Running: the Service that wires journal, meters, inputs, LEDs and sinks;
checks before a start, foreground and detached starts, pidfile and lock,
logging, the service user, status LEDs, sink failure streaks."""

# The rooms this one may import (tests/test_layout.py holds it to this).
MAY_IMPORT = ("core", "inputs", "sinks", "web", "config")
