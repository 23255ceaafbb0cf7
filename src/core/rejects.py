"""The journal's record of rejected edges: per meter and clock hour, how
many were glitches (debounce), implausible (max_power_w) and ghosts (flash
width).

Kept so a sensor's health can be seen over time (--status, the report, the
metrics): a rising ghost rate shows before the totals drift. The daemon
adds the counts in its group commit, so they cost no extra sync; one row a
meter an hour stays small for years.
"""

from __future__ import annotations

import sqlite3
from typing import Dict, Iterable, List, Tuple

Counts = Tuple[int, int, int]  # glitches, implausible, ghosts
KINDS = ("glitches", "implausible", "ghosts")
HOUR_S = 3600

SCHEMA = """
CREATE TABLE IF NOT EXISTS rejects (
    meter TEXT NOT NULL,
    hour INTEGER NOT NULL,
    glitches INTEGER NOT NULL,
    implausible INTEGER NOT NULL,
    ghosts INTEGER NOT NULL,
    PRIMARY KEY (meter, hour)
);
"""
ADD = (
    "INSERT INTO rejects (meter, hour, glitches, implausible, ghosts) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT(meter, hour) DO UPDATE SET "
    "glitches=glitches+excluded.glitches, "
    "implausible=implausible+excluded.implausible, ghosts=ghosts+excluded.ghosts"
)


def hour_of(t_wall: float) -> int:
    """The start of the UTC clock hour of t_wall, in epoch seconds."""
    return int(t_wall // HOUR_S) * HOUR_S


class Pending:
    """Counts waiting for the next commit, per (meter, hour)."""

    def __init__(self) -> None:
        self._counts: Dict[Tuple[str, int], List[int]] = {}

    def add(self, meter: str, t_wall: float, counts: Counts) -> None:
        if not any(counts):
            return
        slot = self._counts.setdefault((meter, hour_of(t_wall)), [0, 0, 0])
        for i, n in enumerate(counts):
            slot[i] += n

    def __bool__(self) -> bool:
        return bool(self._counts)

    def write(self, conn: sqlite3.Connection) -> None:
        """Inside the caller's transaction."""
        conn.executemany(ADD, [(m, h, *c) for (m, h), c in self._counts.items()])

    def clear(self) -> None:
        self._counts = {}


def totals(
    conn: sqlite3.Connection, since: float = 0.0, until: float = 1e18
) -> Dict[str, Counts]:
    """Per meter, the counts of the hours that start in [since, until).
    Empty for a journal written before the table existed."""
    try:
        rows: Iterable = conn.execute(
            "SELECT meter, sum(glitches), sum(implausible), sum(ghosts) "
            "FROM rejects WHERE hour >= ? AND hour < ? GROUP BY meter ORDER BY meter",
            (hour_of(since), until),
        ).fetchall()
    except sqlite3.OperationalError:
        return {}
    return {m: (g, i, h) for m, g, i, h in rows}


def hourly(
    conn: sqlite3.Connection, since: float, until: float
) -> List[Tuple[str, int, Counts]]:
    """(meter, hour, counts) of the hours in [since, until), in order."""
    try:
        rows = conn.execute(
            "SELECT meter, hour, glitches, implausible, ghosts FROM rejects "
            "WHERE hour >= ? AND hour < ? ORDER BY meter, hour",
            (hour_of(since), until),
        ).fetchall()
    except sqlite3.OperationalError:
        return []
    return [(m, h, (g, i, x)) for m, h, g, i, x in rows]


def describe(counts: Counts) -> str:
    return ", ".join(f"{n} {k}" for k, n in zip(KINDS, counts))
