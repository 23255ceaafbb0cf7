"""Counting: the meter, edges, rejects, journal, monitor.

The meter's arithmetic (edges in, readings out), edge
kinds and rejected edges, the reading's CSV form, replay files, the journal,
register readings, the monitor thread, option tables and exit codes; every
other room stands on it."""

# The rooms this one may import (tests/test_layout.py holds it to this).
MAY_IMPORT = ()
