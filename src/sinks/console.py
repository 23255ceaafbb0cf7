"""Console sink: a line per reading on stdout when running in the foreground.

Added by power.py in --nodaemon mode (not from settings), it starts at the
journal's end and keeps no cursor: it shows what happens now.
"""

from __future__ import annotations

import sys
from typing import Sequence

from csvformat import format_time
from meter import Reading
from sinks.base import Sink


class ConsoleSink(Sink):
    PERSISTENT = False

    def write(self, batch: Sequence[Reading]) -> None:
        lines = []
        for r in batch:
            power = "       ? W" if r.power_w is None else f"{r.power_w:8.1f} W"
            if r.estimate:
                power = f"<{power[1:]}"  # an upper bound, not a pulse's mean
            lines.append(
                f"{format_time(r.time)}  {r.meter}  {power}  "
                f"{r.energy_kwh:12.3f} kWh  pulse {r.pulses}\n"
            )
        try:
            sys.stdout.write("".join(lines))
            sys.stdout.flush()
        except (OSError, ValueError):
            pass  # a closed terminal must not stop the monitor
