"""The journal: the one durable write path between the meter and the sinks.

Every reading is appended to an SQLite database in WAL mode, committed in
groups (at most once a second, and on stop), together with each meter's
cumulative pulse count so energy stays continuous across restarts. Each sink
reads forward from its own cursor and moves it only after a successful
write, so an outage of any length or a kill -9 loses nothing that was
committed. Rows every sink has passed are pruned after a retention period.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from meter import Reading

FILENAME = "journal.sqlite3"

SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    meter TEXT NOT NULL,
    pulses INTEGER NOT NULL,
    energy_kwh REAL NOT NULL,
    power_w REAL,
    interval_s REAL
);
CREATE INDEX IF NOT EXISTS readings_time ON readings (time);
CREATE TABLE IF NOT EXISTS meters (
    name TEXT PRIMARY KEY,
    pulses INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (
    sink TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
);
"""

COLUMNS = "seq, time, meter, pulses, energy_kwh, power_w, interval_s"

Row = Tuple[int, Reading]


class JournalError(Exception):
    """The journal cannot be used at all (e.g. DATA_DIR not writable)."""


def journal_path(data_dir: str) -> str:
    return os.path.join(data_dir, FILENAME)


def connect(path: str, readonly: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode; transactions are explicit."""
    if readonly:
        uri = "file:" + path + "?mode=ro"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=5.0)
    else:
        # Created by the main thread, then used by one thread at a time.
        conn = sqlite3.connect(
            path, isolation_level=None, timeout=10.0, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL survives a process crash; a power cut may lose the
        # last commit, never corrupt the file.
        conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def _row(values: Sequence) -> Row:
    seq, t, meter, pulses, energy, power, interval = values
    return seq, Reading(t, meter, pulses, energy, power, interval)


def _move_aside(path: str, log: logging.Logger, reason: str) -> None:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    target = f"{path}.corrupt-{stamp}"
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.replace(path + suffix, target + suffix)
    log.error(
        "journal %s is unreadable (%s); moved it aside to %s and started a new "
        "one. Pulse counts restart from 0: set METER['energy_offset_kwh'] to "
        "the meter's register to keep energy totals right",
        path,
        reason,
        target,
    )


class Journal:
    """The writer side, owned by the monitor thread alone."""

    def __init__(self, path: str, log: logging.Logger) -> None:
        self.path = path
        self.log = log
        self._pending: List[Reading] = []
        self._counts: Dict[str, int] = {}
        self.last_seq = 0
        self.conn = self._open()

    def _open(self) -> sqlite3.Connection:
        try:
            return self._open_checked()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and not os.access(
                os.path.dirname(self.path) or ".", os.W_OK
            ):
                raise JournalError(f"cannot write {self.path}: {exc}") from exc
            _move_aside(self.path, self.log, str(exc))
            return self._open_checked()

    def _open_checked(self) -> sqlite3.Connection:
        conn = connect(self.path)
        try:
            conn.executescript(SCHEMA)
            self._counts = dict(conn.execute("SELECT name, pulses FROM meters"))
            row = conn.execute("SELECT max(seq) FROM readings").fetchone()
            seq = conn.execute(
                "SELECT seq FROM sqlite_sequence WHERE name='readings'"
            ).fetchone()
        except sqlite3.DatabaseError:
            conn.close()
            raise
        self.last_seq = max(row[0] or 0, seq[0] if seq else 0)
        return conn

    def pulses(self, meter: str) -> int:
        """The committed cumulative pulse count of a meter (0 if new)."""
        return self._counts.get(meter, 0)

    def append(self, reading: Reading) -> None:
        """Queue a reading for the next group commit."""
        self._pending.append(reading)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def commit(self) -> bool:
        """Write the pending readings in one transaction.

        Returns True when something was committed. On failure (a full disk,
        an I/O error) the readings stay pending and the error is raised for
        the caller to log; the next commit tries again.
        """
        if not self._pending:
            return False
        rows = self._pending
        counts = dict(self._counts)
        for r in rows:
            counts[r.meter] = r.pulses
        conn = self.conn
        try:
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO readings (time, meter, pulses, energy_kwh, power_w,"
                " interval_s) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (r.time, r.meter, r.pulses, r.energy_kwh, r.power_w, r.interval_s)
                    for r in rows
                ],
            )
            seq = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
            conn.executemany(
                "INSERT INTO meters (name, pulses) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET pulses=excluded.pulses",
                counts.items(),
            )
            conn.execute("COMMIT")
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._pending = []
        self._counts = counts
        self.last_seq = seq
        return True

    def prune(self, before: float, sinks: Iterable[str]) -> int:
        """Delete readings older than `before` that every sink has passed."""
        names = list(sinks)
        conn = self.conn
        floor = self.last_seq
        if names:
            marks = ",".join("?" * len(names))
            cursors = dict(
                conn.execute(
                    f"SELECT sink, seq FROM cursors WHERE sink IN ({marks})", names
                )
            )
            floor = min(cursors.get(n, 0) for n in names)
        cur = conn.execute(
            "DELETE FROM readings WHERE seq <= ? AND time < ?", (floor, before)
        )
        return cur.rowcount

    def close(self) -> None:
        try:
            self.conn.close()
        except sqlite3.Error:
            pass


class JournalReader:
    """A sink's view of the journal: its cursor and the rows after it.

    Each sink runner owns one, on its own connection; WAL lets it read while
    the monitor writes.
    """

    def __init__(self, path: str, sink: str, start_at_end: bool = False) -> None:
        self.sink = sink
        self.conn = connect(path)
        self.persistent = not start_at_end
        if start_at_end:
            self._cursor = self.last_seq()
        else:
            row = self.conn.execute(
                "SELECT seq FROM cursors WHERE sink = ?", (sink,)
            ).fetchone()
            self._cursor = row[0] if row else 0

    @property
    def cursor(self) -> int:
        return self._cursor

    def last_seq(self) -> int:
        row = self.conn.execute("SELECT max(seq) FROM readings").fetchone()
        return row[0] or 0

    def backlog(self) -> int:
        row = self.conn.execute(
            "SELECT count(*) FROM readings WHERE seq > ?", (self._cursor,)
        ).fetchone()
        return row[0]

    def read(self, limit: int) -> List[Row]:
        """Up to `limit` committed rows after the cursor, oldest first."""
        rows = self.conn.execute(
            f"SELECT {COLUMNS} FROM readings WHERE seq > ? ORDER BY seq LIMIT ?",
            (self._cursor, limit),
        ).fetchall()
        return [_row(r) for r in rows]

    def advance(self, seq: int) -> None:
        """Record that everything up to `seq` reached the sink."""
        if self.persistent:
            self.conn.execute(
                "INSERT INTO cursors (sink, seq) VALUES (?, ?) "
                "ON CONFLICT(sink) DO UPDATE SET seq=excluded.seq",
                (self.sink, seq),
            )
        self._cursor = seq

    def close(self) -> None:
        try:
            self.conn.close()
        except sqlite3.Error:
            pass


@dataclass(frozen=True)
class JournalStatus:
    last_seq: int
    last: Dict[str, Reading]  # per meter
    backlog: Dict[str, int]  # per sink name


def read_status(path: str, sinks: Sequence[str]) -> Optional[JournalStatus]:
    """What --status shows, read without taking any lock; None if no journal."""
    if not os.path.exists(path):
        return None
    conn = connect(path, readonly=True)
    try:
        last_seq = conn.execute("SELECT max(seq) FROM readings").fetchone()[0] or 0
        last = {}
        for (meter,) in conn.execute("SELECT name FROM meters ORDER BY name"):
            row = conn.execute(
                f"SELECT {COLUMNS} FROM readings WHERE meter = ? "
                "ORDER BY seq DESC LIMIT 1",
                (meter,),
            ).fetchone()
            if row:
                last[meter] = _row(row)[1]
        cursors = dict(conn.execute("SELECT sink, seq FROM cursors"))
        backlog = {}
        for name in sinks:
            row = conn.execute(
                "SELECT count(*) FROM readings WHERE seq > ?", (cursors.get(name, 0),)
            ).fetchone()
            backlog[name] = row[0]
        return JournalStatus(last_seq, last, backlog)
    finally:
        conn.close()
