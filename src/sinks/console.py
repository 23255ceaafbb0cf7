"""Console sink: a line per reading on stdout when running in the foreground.

Added by power.py in --nodaemon mode (not from settings), it starts at the
journal's end and keeps no cursor: it shows what happens now.
"""

from __future__ import annotations

import sys
from typing import Sequence

from core.csvformat import minute_text
from core.meter import Reading
from sinks.base import Sink

# A line per reading, filled in with one %-format (faster than f-strings
# here): the time as format_time writes it, power, energy and the count. A
# pulse of known power takes the first; an unknown power or an estimate
# (an upper bound, marked <) the second.
PULSE_LINE = "%s%02d.%03dZ  %s  %8.1f W  %12.3f kWh  pulse %d\n"
OTHER_LINE = "%s%02d.%03dZ  %s  %s  %12.3f kWh  pulse %d\n"
WATTS = "%8.1f W"
UNKNOWN_WATTS = "       ? W"


class ConsoleSink(Sink):
    PERSISTENT = False

    def write(self, batch: Sequence[Reading]) -> None:
        # The time inline and its minute looked up only when it changes: a
        # console line per reading was a sixth of a fast replay's CPU.
        lines = []
        append = lines.append
        minute = None
        prefix = ""
        for t, meter, pulses, energy, power, _, estimate, _ in batch:
            minutes, millis = divmod(int(round(t * 1000)), 60_000)
            if minutes != minute:
                minute, prefix = minutes, minute_text(minutes)
            seconds, millis = divmod(millis, 1000)
            if power is None or estimate:
                watts = UNKNOWN_WATTS if power is None else WATTS % power
                if estimate:
                    watts = "<" + watts[1:]
                values = (prefix, seconds, millis, meter, watts, energy, pulses)
                append(OTHER_LINE % values)
            else:
                values = (prefix, seconds, millis, meter, power, energy, pulses)
                append(PULSE_LINE % values)
        try:
            sys.stdout.write("".join(lines))
            sys.stdout.flush()
        except (OSError, ValueError):
            pass  # a closed terminal must not stop the monitor
