"""Console sink: a line per reading on stdout when running in the foreground.

Added by power.py in --nodaemon mode (not from settings), it starts at the
journal's end and keeps no cursor: it shows what happens now.
"""

from __future__ import annotations

import sys
from typing import Sequence

from csvformat import minute_text
from meter import Reading
from sinks.base import Sink

# A line per reading, filled in with one %-format (faster than an f-string
# here): the time as format_time writes it, power, energy and the count.
LINE = "%s%02d.%03dZ  %s  %s  %12.3f kWh  pulse %d\n"
WATTS = "%8.1f W"
UNKNOWN_WATTS = "       ? W"


class ConsoleSink(Sink):
    PERSISTENT = False

    def write(self, batch: Sequence[Reading]) -> None:
        # The time inline, not by a call per reading: a console line per
        # reading was a sixth of a fast replay's CPU.
        lines = []
        append = lines.append
        for t, meter, pulses, energy, power, _, estimate in batch:
            watts = UNKNOWN_WATTS if power is None else WATTS % power
            if estimate:
                watts = "<" + watts[1:]  # an upper bound, not a pulse's mean
            minutes, millis = divmod(int(round(t * 1000)), 60_000)
            append(
                LINE
                % (
                    minute_text(minutes),
                    millis // 1000,
                    millis % 1000,
                    meter,
                    watts,
                    energy,
                    pulses,
                )
            )
        try:
            sys.stdout.write("".join(lines))
            sys.stdout.flush()
        except (OSError, ValueError):
            pass  # a closed terminal must not stop the monitor
