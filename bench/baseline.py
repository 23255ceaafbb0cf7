"""Baseline shaped like the original monitor: per pulse, compute power from
the interval, open the CSV, append one line, close it, and start a thread
that flashes the detect LED.

Usage: baseline.py REPLAY CSV [BLINK_S]. Prints {"edges": N} as JSON.

The original LED thread slept the whole flash (about 0.1 s); at replay speed
that would keep thousands of threads alive, so the flash here lasts BLINK_S
(default 1 ms): the cost measured is the thread per pulse, not the sleep.
The row is formatted with the project's csv_line so both CSVs can be
compared line for line; power and energy are computed here, independently
of src/core/meter.py.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)

from core.csvformat import HEADER, csv_line  # noqa: E402
from core.meter import Reading  # noqa: E402

NS_PER_S = 1_000_000_000
METER_NAME = "bench"
PULSES_PER_KWH = 1000.0
BLINK_S = 0.001


def set_led(on: bool) -> None:
    """Off a Pi the LED is a no-op, as in the monitor's debug LED."""


def flash(seconds: float) -> None:
    set_led(True)
    time.sleep(seconds)
    set_led(False)


def run(replay: str, csv_path: str, blink_s: float = BLINK_S) -> int:
    """Process every pulse of `replay` the original way; return the count."""
    with open(csv_path, "w") as out:
        out.write(HEADER + "\n")
    pulses = 0
    last_ns = None
    with open(replay) as f:
        for raw in f:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            t = float(line)
            t_ns = int(t * NS_PER_S)
            pulses += 1
            if last_ns is None:
                power = interval = None
            else:
                interval = (t_ns - last_ns) / NS_PER_S
                power = 3_600_000.0 / (PULSES_PER_KWH * interval)
            last_ns = t_ns
            row = Reading(
                t, METER_NAME, pulses, pulses / PULSES_PER_KWH, power, interval
            )
            with open(csv_path, "a") as out:
                out.write(csv_line(row) + "\n")
            threading.Thread(target=flash, args=(blink_s,)).start()
    for thread in threading.enumerate():
        if thread is not threading.main_thread():
            thread.join()
    return pulses


def main() -> None:
    blink = float(sys.argv[3]) if len(sys.argv) > 3 else BLINK_S
    print(json.dumps({"edges": run(sys.argv[1], sys.argv[2], blink)}))


if __name__ == "__main__":
    main()
