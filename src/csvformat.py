"""The CSV form of a reading, shared by the file sink, the console and the
replay reader (which accepts the file sink's CSV back)."""

from __future__ import annotations

import calendar
import functools
import time
from typing import Optional

from meter import Reading

HEADER = "time,meter,pulses,energy_kwh,power_w,interval_s"
COLUMNS = HEADER.split(",")


def format_time(t: float) -> str:
    """ISO 8601 UTC with milliseconds and Z: 2024-05-01T12:00:00.123Z."""
    seconds, millis = divmod(int(round(t * 1000)), 1000)
    return _second(seconds) + f".{millis:03d}Z"


@functools.lru_cache(maxsize=256)
def _second(seconds: int) -> str:
    # Readings come in time order, so a small cache spares most strftime calls.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def parse_time(text: str) -> float:
    """The inverse of format_time (also without fraction); ValueError if bad."""
    text = text.strip()
    if not text.endswith("Z"):
        raise ValueError("time must end in Z (UTC)")
    body = text[:-1]
    whole, _, frac = body.partition(".")
    parsed = time.strptime(whole, "%Y-%m-%dT%H:%M:%S")
    fraction = float("0." + frac) if frac else 0.0
    if frac and not frac.isdigit():
        raise ValueError("bad fraction of a second")
    return calendar.timegm(parsed) + fraction


def format_number(value: Optional[float], places: int) -> str:
    """Fixed places without trailing zeros; an unknown value is empty."""
    if value is None:
        return ""
    text = f"{value:.{places}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def csv_line(r: Reading) -> str:
    """One CSV line (no newline). Meter names are checked to need no quoting."""
    t, meter, pulses, energy, power, interval = r
    return (
        f"{format_time(t)},{meter},{pulses},{format_number(energy, 6)},"
        f"{format_number(power, 2)},{format_number(interval, 3)}"
    )
