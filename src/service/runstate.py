"""What the running daemon is, kept in the journal for --status and for a
second start: its pid and pidfile, and the input each meter reads and why
that one. --status must say what the daemon uses, not work it out again
from the settings (a daemon started with --simulate reads no GPIO). Written
once at start; a crashed daemon's record is told from a live one by the
lock on DATA_DIR, whose holder's pid must match."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from core.journal import connect

SCHEMA = """
CREATE TABLE IF NOT EXISTS running (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class RunState:
    pid: int
    pidfile: str
    started: float
    inputs: Dict[str, Tuple[str, str]]  # meter -> (what it reads, why)


def record(
    path: str,
    pid: int,
    pidfile: Optional[str],
    inputs: List[Tuple[str, str, str]],
) -> None:
    """At start: who runs, and each (meter, input, why)."""
    rows = [
        ("pid", str(pid)),
        ("pidfile", pidfile or ""),
        ("started", repr(time.time())),
    ]
    rows += [(f"input:{meter}", f"{what}\n{why}") for meter, what, why in inputs]
    conn = connect(path)
    try:
        conn.executescript(SCHEMA)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DELETE FROM running")
        conn.executemany("INSERT INTO running (key, value) VALUES (?, ?)", rows)
        conn.execute("COMMIT")
    finally:
        conn.close()


def read(path: str) -> Optional[RunState]:
    """The last start's record (None: none, or a journal without it)."""
    try:
        conn = connect(path, readonly=True)
    except sqlite3.Error:
        return None
    try:
        values = dict(conn.execute("SELECT key, value FROM running"))
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    try:
        inputs = {}
        for key, value in values.items():
            if key.startswith("input:"):
                what, _, why = value.partition("\n")
                inputs[key[len("input:") :]] = (what, why)
        return RunState(
            int(values["pid"]), values["pidfile"], float(values["started"]), inputs
        )
    except (KeyError, ValueError):
        return None


def of_pid(path: str, pid: Optional[int]) -> Optional[RunState]:
    """The record of the daemon running as `pid`, if it is that one's."""
    state = read(path) if pid else None
    return state if state is not None and state.pid == pid else None
