"""The CSV form of a reading, shared by the file sink, the console and the
replay reader (which accepts the file sink's CSV back)."""

from __future__ import annotations

import calendar
import functools
import time
from typing import Optional

from core.meter import Reading

# New columns go at the end, so older readers of the file keep working.
# export_kwh: a meter's cumulative export (empty where it has none); a gas
# or water meter's volume (m3) and flow (m3/h) go in volume_m3 and flow_m3h,
# its energy_kwh and power_w empty.
HEADER = (
    "time,meter,pulses,energy_kwh,power_w,interval_s,estimate,export_kwh,"
    "volume_m3,flow_m3h"
)
COLUMNS = HEADER.split(",")
HEADER_V1 = "time,meter,pulses,energy_kwh,power_w,interval_s"  # before estimate
HEADER_V2 = HEADER_V1 + ",estimate"  # before export, gas and water
HEADERS = (HEADER, HEADER_V2, HEADER_V1)  # the files the sink goes on with


def format_time(t: float) -> str:
    """ISO 8601 UTC with milliseconds and Z: 2024-05-01T12:00:00.123Z."""
    minutes, millis = divmod(int(round(t * 1000)), 60_000)
    return f"{minute_text(minutes)}{millis // 1000:02d}.{millis % 1000:03d}Z"


@functools.lru_cache(maxsize=64)
def minute_text(minutes: int) -> str:
    """The start of format_time for a minute since the epoch (cached:
    readings come in time order, most share the minute of the one before)."""
    return time.strftime("%Y-%m-%dT%H:%M:", time.gmtime(minutes * 60))


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
    # The shortest text of the rounded value has at most `places` decimals;
    # repr finds it faster than formatting and stripping zeros.
    text = repr(round(value, places))
    if "e" in text or "n" in text:  # very large or small; inf, nan
        text = f"{value:.{places}f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
    elif text.endswith(".0"):
        text = text[:-2]
    return "0" if text in ("-0", "") else text


# Below this, "%.Nf" (N at most 6) has at most 15 significant digits, so it
# and the shortest text of round(value, N) are one decimal: the fast path.
FAST_BELOW = 1e9


def _number(value: Optional[float], fmt: str, places: int) -> str:
    """format_number for a CSV line, about twice as fast for usual values
    (a quarter of a replay's CPU went into formatting numbers)."""
    if value is None:
        return ""
    if -FAST_BELOW < value < FAST_BELOW:  # False for NaN
        text = fmt % value
        if text[-1] == "0":
            text = text.rstrip("0").rstrip(".")
            if text == "-0":
                return "0"
        return text
    return format_number(value, places)


def csv_line(r: Reading, columns: int = len(COLUMNS), volume: bool = False) -> str:
    """One CSV line (no newline) of the first `columns` columns (a file
    begun by an older version has fewer). Meter names are checked to need
    no quoting. The estimate column is 1 for an estimate, 0 for a pulse.
    `volume`: a gas or water meter's, whose energy_kwh and power_w are m3
    and m3/h (written as volume_m3 and flow_m3h)."""
    t, meter, pulses, energy, power, interval, estimate, export = r
    minutes, millis = divmod(int(round(t * 1000)), 60_000)
    seconds, millis = divmod(millis, 1000)
    if volume:
        amounts = ","
    else:
        amounts = f"{_number(energy, '%.6f', 6)},{_number(power, '%.2f', 2)}"
    line = (
        f"{minute_text(minutes)}{seconds:02d}.{millis:03d}Z,{meter},{pulses},"
        f"{amounts},{_number(interval, '%.3f', 3)}"
    )
    if columns <= 6:
        return line
    line += ",1" if estimate else ",0"
    if columns <= 7:
        return line
    if volume:
        return (
            f"{line},{_number(export, '%.6f', 6)},{_number(energy, '%.6f', 6)},"
            f"{_number(power, '%.4f', 4)}"
        )
    return f"{line},{_number(export, '%.6f', 6)},,"
