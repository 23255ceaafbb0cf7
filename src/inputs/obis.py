"""OBIS data lines as the text protocols (D0, DSMR P1) send them:
``1-0:1.8.0(012345.678*kWh)``, values in brackets, a unit after ``*``.

Shared by the d0 and p1 inputs: one line into its code and values, and the
registers a meter's lines give (import and export totals, the tariffs
summed where there is no total, signed power).
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional, Tuple

from core.regmeter import RegisterFrame

# "1-0:1.8.0", "1.8.0", "1-0:1.8.0*255", "0-1:24.2.1", "C.1.0", "F.F"
LINE_RE = re.compile(
    r"^(?:(\d+)-(\d+):)?([0-9A-Z]+\.[0-9A-Z]+(?:\.[0-9A-Z]+)?)(?:\*\d+|&\d+)?"
    r"((?:\([^()]*\))+)\s*$"
)
VALUE_RE = re.compile(r"\(([^()]*)\)")
NUMBER_RE = re.compile(r"^([-+]?\d+(?:\.\d*)?)(?:\*(.+))?$")

UNIT_KWH = {"kwh": 1.0, "wh": 0.001, "mwh": 1000.0}
UNIT_KW = {"kw": 1000.0, "w": 1.0}


class Line:
    """One data line: its code (C.D.E), channel (B) and values."""

    __slots__ = ("medium", "channel", "code", "values")

    def __init__(self, medium: str, channel: str, code: str, values: List[str]):
        self.medium = medium
        self.channel = channel
        self.code = code
        self.values = values

    def number(self, index: int = -1) -> Optional[Tuple[float, str, float]]:
        """(value, unit lower-case, resolution) of a value, or None."""
        try:
            text = self.values[index]
        except IndexError:
            return None
        m = NUMBER_RE.match(text.strip())
        if not m:
            return None
        digits = m.group(1)
        _, _, decimals = digits.partition(".")
        return float(digits), (m.group(2) or "").strip().lower(), 10.0 ** -len(decimals)


def parse_line(text: str) -> Optional[Line]:
    """A data line, or None for anything else (identification, blank)."""
    m = LINE_RE.match(text.strip())
    if not m:
        return None
    values = VALUE_RE.findall(m.group(4))
    return Line(m.group(1) or "", m.group(2) or "", m.group(3), values)


def electricity(lines: List[Line]) -> Optional[RegisterFrame]:
    """Import, export and signed power from a meter's lines (None: no
    register among them). Totals in kWh (Wh and MWh converted); 1.8.0 or,
    without it, the tariffs 1.8.1 + 1.8.2 (+ .3, .4); power from 16.7.0, or
    1.7.0 (import) less 2.7.0 (export); 1.7.0 alone is taken as it is."""
    found: Dict[str, Tuple[float, str, float]] = {}
    for line in lines:
        if line.medium not in ("", "1") or line.channel not in ("", "0", "1"):
            continue
        value = line.number()
        if value is not None:
            found.setdefault(line.code, value)

    def total(direction: str) -> Tuple[Optional[float], float]:
        whole = found.get(f"{direction}.8.0")
        parts = (
            [whole]
            if whole
            else [
                found[f"{direction}.8.{t}"]
                for t in "1234"
                if f"{direction}.8.{t}" in found
            ]
        )
        if not parts:
            return None, 0.0
        kwh = 0.0
        step = 0.0
        for value, unit, resolution in parts:
            factor = UNIT_KWH.get(unit, 1.0)
            kwh += value * factor
            step = max(step, resolution * factor)
        return kwh, step

    imported, res_in = total("1")
    exported, res_out = total("2")
    if imported is None and exported is None:
        return None
    rate = _power(found.get("16.7.0"))
    if rate is None:
        delivered = _power(found.get("1.7.0"))
        returned = _power(found.get("2.7.0"))
        if delivered is not None or returned is not None:
            rate = (delivered or 0.0) - (returned or 0.0)
    return RegisterFrame(imported, exported, rate, max(res_in, res_out))


def _power(value: Optional[Tuple[float, str, float]]) -> Optional[float]:
    if value is None:
        return None
    return value[0] * UNIT_KW.get(value[1], 1000.0)


def show(line: Line) -> str:
    """A line as `power.py watch` shows it."""
    where = f"{line.medium}-{line.channel}:" if line.medium else ""
    return f"{where}{line.code} = " + " ".join(line.values)
