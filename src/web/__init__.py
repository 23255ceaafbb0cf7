"""The HTTP side: /metrics, /healthz and their server.

The HTTP side: where a server listens, the daemon's state as endpoints see
it, the Prometheus exporter (/metrics, /healthz) and its server."""

# The rooms this one may import (tests/test_layout.py holds it to this).
MAY_IMPORT = ("core",)
