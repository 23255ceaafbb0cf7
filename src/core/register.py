"""Readings of the meter's own register (`power.py register KWH`), so the
total power reports is the number on the meter, and drift is noticed.

The first reading of a meter sets its offset so that energy_kwh equals the
register at that moment. Later readings are kept and compared: the drift
since the reading before is the register's advance less the pulses counted
in between, in kWh, in per cent of that advance and in pulses missed (or
extra). `--rebase` makes a later reading set the offset again. A reading
below the one before is a typo or a new meter: refused, unless `--replaced`
says the meter was replaced, which starts a new series (the offset is set
again, and drift is compared within a series only). `--withdraw` takes the
newest reading back. Once a meter has a register reading, its offset comes
from the journal and wins over METER['energy_offset_kwh'].

Readings are shown as typed: to the last digit the user gave, never rounded
to a few significant digits (a register of 123456.7 is not 123457).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import sqlite3
import time
from dataclasses import dataclass
from typing import Iterable, List, Optional

from core.csvformat import format_time
from core.options import SettingsError

SCHEMA = """
CREATE TABLE IF NOT EXISTS registers (
    seq INTEGER PRIMARY KEY,
    meter TEXT NOT NULL,
    time REAL NOT NULL,
    register_kwh REAL NOT NULL,
    resolution_kwh REAL NOT NULL,
    pulses INTEGER NOT NULL,
    offset_kwh REAL NOT NULL,
    rebase INTEGER NOT NULL
);
"""


REPLACED = 2  # the rebase column of a new meter's first reading


class RegisterError(Exception):
    """A reading that cannot be recorded; the message says why (exit 1)."""


@dataclass(frozen=True)
class RegisterReading:
    meter: str
    time: float
    register_kwh: float
    resolution_kwh: float  # the last digit the user typed
    pulses: int  # the meter's count at that time
    offset_kwh: float  # in force from this reading on
    rebase: bool
    replaced: bool = False  # a new meter: a new series starts here

    @property
    def shown(self) -> str:
        """The reading as typed: to its last digit."""
        return show_kwh(self.register_kwh, self.resolution_kwh)


@dataclass(frozen=True)
class Drift:
    """A reading against the one before it (or the base it was set from)."""

    reading: RegisterReading
    previous: RegisterReading
    pulses_per_kwh: float

    @property
    def register_advance_kwh(self) -> float:
        return self.reading.register_kwh - self.previous.register_kwh

    @property
    def counted_kwh(self) -> float:
        return (self.reading.pulses - self.previous.pulses) / self.pulses_per_kwh

    @property
    def drift_kwh(self) -> float:
        """Positive: the meter advanced more than power counted."""
        return self.register_advance_kwh - self.counted_kwh

    @property
    def drift_percent(self) -> Optional[float]:
        advance = self.register_advance_kwh
        return None if advance <= 0 else 100.0 * self.drift_kwh / advance

    @property
    def pulses(self) -> int:
        """Pulses missed (positive) or extra (negative)."""
        return int(round(self.drift_kwh * self.pulses_per_kwh))

    @property
    def energy_kwh(self) -> float:
        """What energy_kwh said at the reading, with the offset then."""
        return self.previous.offset_kwh + self.reading.pulses / self.pulses_per_kwh

    @property
    def off_kwh(self) -> float:
        """The register less energy_kwh at the reading."""
        return self.reading.register_kwh - self.energy_kwh

    @property
    def rebase_advised(self) -> bool:
        """energy_kwh is off by more than the register's last digit."""
        return abs(self.off_kwh) > self.reading.resolution_kwh + 1e-9

    def lines(self) -> List[str]:
        r = self.reading
        percent = self.drift_percent
        share = "" if percent is None else f", {percent:+.2f} %"
        kind = "missed" if self.pulses >= 0 else "extra"
        out = [
            f"register {r.meter}: {r.shown} kWh at {format_time(r.time)}; "
            f"since the reading of {format_time(self.previous.time)}: "
            f"drift {self.drift_kwh:+.3f} kWh{share} ({abs(self.pulses)} pulses "
            f"{kind})"
        ]
        if r.rebase:
            out.append(f"register {r.meter}: re-based: energy_kwh was set to it")
        elif self.rebase_advised:
            out.append(
                f"register {r.meter}: energy_kwh was {self.energy_kwh:.3f} kWh, "
                f"off by {self.off_kwh:+.3f} kWh: re-base with "
                f"'power.py register {r.shown} --meter {r.meter} "
                f"--at {format_local(r.time)} --rebase'"
            )
        else:
            digit = show_kwh(r.resolution_kwh, r.resolution_kwh)
            out.append(
                f"register {r.meter}: energy_kwh matches it within the "
                f"register's last digit ({digit} kWh): no need to re-base"
            )
        return out


def format_local(t: float) -> str:
    return dt.datetime.fromtimestamp(t).strftime("%Y-%m-%dT%H:%M:%S")


def ensure_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)


def has_table(conn: sqlite3.Connection) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'registers'"
    ).fetchone()
    return row is not None


def readings(conn: sqlite3.Connection, meter: str) -> List[RegisterReading]:
    """A meter's register readings, oldest first (none in an old journal)."""
    if not has_table(conn):
        return []
    rows = conn.execute(
        "SELECT meter, time, register_kwh, resolution_kwh, pulses, offset_kwh, "
        "rebase FROM registers WHERE meter = ? ORDER BY seq",
        (meter,),
    ).fetchall()
    # rebase: 0, 1 (the offset was set again) or REPLACED (a new meter).
    return [RegisterReading(*r[:6], bool(r[6]), r[6] == REPLACED) for r in rows]


def offset(conn: sqlite3.Connection, meter: str) -> Optional[float]:
    """The offset the register readings set (None: none recorded)."""
    if not has_table(conn):
        return None
    row = conn.execute(
        "SELECT offset_kwh FROM registers WHERE meter = ? ORDER BY seq DESC LIMIT 1",
        (meter,),
    ).fetchone()
    return None if row is None else row[0]


def latest_drift(
    conn: sqlite3.Connection, meter: str, pulses_per_kwh: float
) -> Optional[Drift]:
    """The newest reading against the one before it (None: fewer than two)."""
    found = readings(conn, meter)
    if len(found) < 2 or found[-1].replaced:
        return None  # a new meter is not compared with the old one
    return Drift(found[-1], found[-2], pulses_per_kwh)


def status_lines(
    conn: sqlite3.Connection, meters: Iterable[str], ppk: dict
) -> List[str]:
    """What --status and the report say about each meter's register."""
    out = []
    for meter in meters:
        found = readings(conn, meter)
        if not found:
            continue
        if len(found) == 1 or found[-1].replaced:
            r = found[-1]
            new = "a new meter's reading " if r.replaced else ""
            out.append(
                f"register {meter}: {new}{r.shown} kWh at {format_time(r.time)} "
                "set the offset; no later reading to compare yet"
            )
            continue
        out += Drift(found[-1], found[-2], ppk.get(meter, 1000.0)).lines()
    return out


def resolution(text: str) -> float:
    """The value of the last digit typed: '12345.6' -> 0.1, '12345' -> 1."""
    _, _, decimals = text.strip().partition(".")
    return 10.0 ** -len(decimals)


def show_kwh(kwh: float, resolution_kwh: float) -> str:
    """A register value to the last digit it was read to."""
    decimals = max(0, round(-math.log10(resolution_kwh))) if resolution_kwh else 0
    return f"{kwh:.{decimals}f}"


DISPLAY = re.compile(r"\d+(\.\d+)?")
MAX_KWH = 1e10  # more digits than any meter's register shows


def parse_kwh(text: str) -> float:
    """The register as its display shows it; SettingsError saying why not."""
    typed = text.strip()
    example = "give the reading in kWh as the meter's display shows it, like 12345.6"
    if DISPLAY.fullmatch(typed):
        value = float(typed)
        if value < MAX_KWH:
            return value
        raise SettingsError(
            f"register {text!r}: more digits than a meter's register has "
            f"(below {MAX_KWH:,.0f} kWh); {example}"
        )
    if re.fullmatch(r"-\s*\d+([.,]\d+)?", typed):
        raise SettingsError(
            f"register {text!r}: a register reading is never negative; {example}"
        )
    if re.fullmatch(r"\d+,\d+", typed):
        raise SettingsError(
            f"register {text!r}: write the decimal point as a point: "
            f"{typed.replace(',', '.')}"
        )
    try:
        value = float(typed)
    except ValueError:
        raise SettingsError(f"register {text!r}: not a number; {example}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise SettingsError(f"register {text!r}: not a number; {example}")
    raise SettingsError(
        f"register {text!r}: not as a display shows it (digits, a point, more "
        f"digits); {example}"
    )


def parse_at(text: str) -> float:
    """A local time (the meter's clock is the wall's) as epoch seconds."""
    for fmt in (
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ):
        try:
            return dt.datetime.strptime(text, fmt).timestamp()
        except ValueError:
            continue
    raise SettingsError(
        f"--at {text!r}: expected a local time like 2024-05-01T18:30 or "
        "2024-05-01T18:30:15"
    )


def pulses_at(conn: sqlite3.Connection, meter: str, when: float, floor: int = 0) -> int:
    """The meter's cumulative count at `when`, from the journal; `floor`
    when it has none of the meter's readings (a lost journal whose mark
    kept the count: the daemon goes on from it)."""
    row = conn.execute(
        "SELECT pulses FROM readings WHERE meter = ? AND time <= ? "
        "ORDER BY seq DESC LIMIT 1",
        (meter, when),
    ).fetchone()
    if row is not None:
        return row[0]
    first = conn.execute(
        "SELECT min(time) FROM readings WHERE meter = ?", (meter,)
    ).fetchone()[0]
    if first is not None:
        raise RegisterError(
            f"no reading of meter {meter} at or before {format_time(when)} in the "
            f"journal (it starts at {format_time(first)}); give a later --at"
        )
    return floor  # nothing counted yet here: the reading is the start


FUTURE_S = 60.0  # a clock a little ahead is fine; a date next year is a typo


def record(
    conn: sqlite3.Connection,
    meter: str,
    text: str,
    when: float,
    pulses_per_kwh: float,
    settings_offset: float,
    rebase: bool,
    replaced: bool = False,
    floor: int = 0,
) -> List[str]:
    """Store a register reading; return what to tell the user. Raises
    SettingsError for bad usage, RegisterError when the journal cannot
    answer."""
    kwh = parse_kwh(text)
    if when > time.time() + FUTURE_S:
        raise SettingsError(
            f"--at {format_time(when)} is in the future; give the time the "
            "register was read"
        )
    ensure_schema(conn)
    conn.execute("BEGIN IMMEDIATE")  # one writer against the daemon's commits
    try:
        found = readings(conn, meter)
        if found and when < found[-1].time:
            raise SettingsError(
                f"--at {format_time(when)} is before the newest register reading "
                f"of meter {meter} ({format_time(found[-1].time)}): readings "
                "are compared in time order; give a later time"
            )
        if found and kwh < found[-1].register_kwh and not replaced:
            last = found[-1]
            raise SettingsError(
                f"register {text}: below the reading before, {last.shown} kWh at "
                f"{format_time(last.time)}, and a register never goes back. A "
                "typo? Give the right reading. A new meter? Add --replaced: "
                "its reading then starts a new series. A wrong reading before? "
                f"Take it back with 'power.py register --withdraw --meter {meter}'"
            )
        pulses = pulses_at(conn, meter, when, floor)
        before = found[-1].offset_kwh if found else settings_offset
        sets = rebase or replaced or not found
        new_offset = kwh - pulses / pulses_per_kwh if sets else before
        reading = RegisterReading(
            meter, when, kwh, resolution(text), pulses, new_offset, sets, replaced
        )
        flag = REPLACED if replaced else int(sets)
        conn.execute(
            "INSERT INTO registers (meter, time, register_kwh, resolution_kwh, "
            "pulses, offset_kwh, rebase) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (meter, when, kwh, reading.resolution_kwh, pulses, new_offset, flag),
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    if not found or replaced:
        new = "a new meter at " if replaced else ""
        return [
            f"register {meter}: {new}{reading.shown} kWh at {format_time(when)}: "
            f"energy_kwh now equals it (offset {new_offset:.3f} kWh, was "
            f"{before:.3f}; it wins over METER['energy_offset_kwh'])"
        ]
    return Drift(reading, found[-1], pulses_per_kwh).lines()


def withdraw(conn: sqlite3.Connection, meter: str) -> List[str]:
    """Take the meter's newest register reading back (a typo): the offset
    and the drift are those of the reading before it again. RegisterError
    when there is none."""
    ensure_schema(conn)
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = readings(conn, meter)
        if not found:
            raise RegisterError(f"register {meter}: no register reading to withdraw")
        conn.execute(
            "DELETE FROM registers WHERE seq = (SELECT max(seq) FROM registers "
            "WHERE meter = ?)",
            (meter,),
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    gone = found[-1]
    out = [f"register {meter}: withdrew {gone.shown} kWh at {format_time(gone.time)}"]
    if len(found) > 1:
        back = found[-2]
        out.append(
            f"register {meter}: the reading before, {back.shown} kWh at "
            f"{format_time(back.time)}, stands again (offset {back.offset_kwh:.3f} "
            "kWh)"
        )
    else:
        out.append(
            f"register {meter}: no register reading left; the offset is "
            "METER['energy_offset_kwh'] again"
        )
    return out
