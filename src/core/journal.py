"""The journal: the one durable write path between the meter and the sinks.

Every reading is appended to an SQLite database in WAL mode, committed in
groups (at most once per COMMIT_INTERVAL_S, and on stop). The last reading
of each meter carries its cumulative pulse count, so energy stays
continuous across restarts. Each sink reads forward from its own cursor and
moves it only after a successful write, so an outage of any length or a
kill -9 loses nothing that was committed. Cursors are saved with the next
group commit, as a reading sent twice after a crash is harmless to those
sinks; the CSV file finds its own place from its last line. Rows every
sink has passed are pruned after a retention period.

Written for SD cards: 1 KiB pages, no index beyond the sequence number, and
one synced commit per interval at most, whatever the number of sinks.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from core import rejects
from core.meter import Reading
from core.timebounds import LATEST

FILENAME = "journal.sqlite3"
MARK_FILENAME = "journal.mark"  # the high-water mark, beside the journal
# At most one mark write (a sync) every ten minutes, and one at stop: a
# lost journal is told by any mark above it, however old.
MARK_EVERY_S = 600.0

SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS readings (
    seq INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    meter TEXT NOT NULL,
    pulses INTEGER NOT NULL,
    energy_kwh REAL NOT NULL,
    power_w REAL,
    interval_s REAL,
    estimate INTEGER NOT NULL DEFAULT 0,
    export_kwh REAL
);
CREATE TABLE IF NOT EXISTS meters (
    name TEXT PRIMARY KEY,
    pulses INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (
    sink TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS skipped (
    sink TEXT PRIMARY KEY,
    count INTEGER NOT NULL,
    first_seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS flushed (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sink_errors (
    sink TEXT PRIMARY KEY,
    since REAL NOT NULL,
    error TEXT NOT NULL
);
"""
    + rejects.SCHEMA
)

COLUMNS = (
    "seq, time, meter, pulses, energy_kwh, power_w, interval_s, estimate, export_kwh"
)
INSERT_WITH_SEQ = f"INSERT INTO readings ({COLUMNS}) VALUES ({', '.join('?' * 9)})"
INSERT = (  # a Reading, in column order
    f"INSERT INTO readings ({COLUMNS[len('seq, ') :]}) VALUES ({', '.join('?' * 8)})"
)
# Columns added after the first version, with what an older journal reads
# in their place (read-only readers cannot add them).
LATER_COLUMNS = (
    ("estimate", "INTEGER NOT NULL DEFAULT 0", "0"),
    ("export_kwh", "REAL", "NULL"),
)
SAVE_CURSOR = (
    "INSERT INTO cursors (sink, seq) VALUES (?, ?) "
    "ON CONFLICT(sink) DO UPDATE SET seq=excluded.seq"
)
ADD_SKIPPED = (
    "INSERT INTO skipped (sink, count, first_seq) VALUES (?, ?, ?) "
    "ON CONFLICT(sink) DO UPDATE SET count=count+excluded.count"
)
PRUNE_CHUNK = 5000  # rows deleted per transaction
PAGE_SIZE = 1024  # for new journals: a commit of a few readings writes 1 KiB
CACHE_KIB = 256
# The WAL's size once a checkpoint has made SQLite go round in it: about
# 1,000 frames of a 1 KiB page (wal_autocheckpoint), and some room for the
# commit that passes that.
WAL_BYTES = 1216 * 1024

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
        conn.execute(f"PRAGMA page_size={PAGE_SIZE}")  # only takes on a new file
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: each commit (at most one a second) is on disk before any
        # sink sees its rows, so after a power cut no sink holds a reading
        # the journal lost.
        conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=10000")
    # 256 KiB of page cache per connection, not SQLite's 2 MiB: a daemon has
    # one per sink and one to write, rows are appended and read in order,
    # and a Pi's memory is small.
    conn.execute(f"PRAGMA cache_size={-CACHE_KIB}")
    return conn


def preallocate_wal(path: str) -> bool:
    """Give a journal that has no WAL file one of the size it keeps, in
    zeros, before SQLite opens it; True if it did.

    SQLite deletes the WAL when the last connection closes, and a new one
    grows a few KiB per commit for its first WAL_BYTES (an hour and more at
    one pulse a second): every commit then allocates blocks, so its sync
    also commits ext4's journal (bitmaps, extents), which doubled what a
    commit writes to the card. Zeros are no WAL to SQLite (no header), so it
    starts one at the beginning of the file and then goes round in it. An
    existing WAL is never touched: it may hold committed readings."""
    wal = path + "-wal"
    try:
        mode = os.stat(path).st_mode & 0o777 if os.path.exists(path) else 0o644
        fd = os.open(wal, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except OSError:
        return False  # there is one (or none can be made: SQLite will say)
    try:
        zeros = bytes(64 * 1024)
        for _ in range(WAL_BYTES // len(zeros)):
            os.write(fd, zeros)
    except OSError:  # a full disk: let SQLite grow it as it goes
        os.ftruncate(fd, 0)
        return False
    finally:
        os.close(fd)
    return True


def _row(values: Sequence) -> Row:
    return values[0], Reading(*values[1:7], bool(values[7]), values[8])


def columns(conn: sqlite3.Connection) -> str:
    """COLUMNS for a SELECT, also from a journal older than the estimate
    or export column (read-only readers cannot add them)."""
    names = {r[1] for r in conn.execute("PRAGMA table_info(readings)")}
    first = COLUMNS.split(", ")[: -len(LATER_COLUMNS)]
    return ", ".join(
        first
        + [name if name in names else stand_in for name, _, stand_in in LATER_COLUMNS]
    )


def open_schema(path: str) -> sqlite3.Connection:
    """A read-write connection with the schema in place (creating the
    journal if need be), for commands beside a running daemon."""
    conn = connect(path)
    conn.executescript(SCHEMA)
    _add_estimate_column(conn)
    return conn


def _add_estimate_column(conn: sqlite3.Connection) -> None:
    """Journals written before estimates (or export) existed get the column
    (estimate 0: pulses, as every row then was, bar 0 W idle rows; export
    NULL: none seen)."""
    names = {r[1] for r in conn.execute("PRAGMA table_info(readings)")}
    for name, kind, _ in LATER_COLUMNS:
        if name not in names:
            conn.execute(f"ALTER TABLE readings ADD COLUMN {name} {kind}")


def mark_path(path: str) -> str:
    return os.path.join(os.path.dirname(path), MARK_FILENAME)


@dataclass(frozen=True)
class Mark:
    """The highest sequence and each meter's highest count ever committed,
    kept apart from the journal so that losing the journal is never silent."""

    seq: int
    meters: Dict[str, int]


# A sequence or count this large is no count of pulses (2**62: a million a
# second for 146,000 years), and at 2**63 SQLite's integers end.
MARK_LIMIT = 1 << 62


def inspect_mark(path: str) -> Tuple[Optional[Mark], Optional[str]]:
    """The mark beside journal `path`, or why it cannot be used (None, None:
    there is none)."""
    try:
        with open(mark_path(path), encoding="utf-8") as f:
            text = f.read(1 << 20)
    except FileNotFoundError:
        return None, None
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot be read ({exc})"
    if not text.strip():
        return None, "is empty"
    try:
        data = json.loads(text)
        seq, meters = data["seq"], data["meters"]
    except (ValueError, KeyError, TypeError):
        return None, "is not a mark (not its JSON)"
    numbers = [seq] + (list(meters.values()) if isinstance(meters, dict) else [])
    if not isinstance(meters, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in numbers
    ):
        return None, "holds something else than whole numbers"
    if not all(isinstance(k, str) for k in meters):
        return None, "holds a meter that is not a name"
    if any(v < 0 for v in numbers):
        return None, "holds a negative number"
    if any(v >= MARK_LIMIT for v in numbers):
        return None, "holds a number beyond any count (2**62 or more)"
    return Mark(seq, dict(meters)), None


def read_mark(path: str) -> Optional[Mark]:
    """The mark beside journal `path`; None if there is none or it is bad."""
    return inspect_mark(path)[0]


def write_mark(path: str, mark: Mark) -> None:
    """Replace the mark atomically and durably (OSError if it cannot)."""
    target = mark_path(path)
    tmp = target + ".tmp"
    if os.path.lexists(tmp):  # left by a crash, or a link put there: never followed
        os.unlink(tmp)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    with os.fdopen(os.open(tmp, flags, 0o644), "w", encoding="utf-8") as f:
        json.dump({"seq": mark.seq, "meters": mark.meters}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)


def _damaged_backlog(path: str) -> Dict[str, int]:
    """Per sink, the readings a damaged journal held that the sink had not
    written, as far as it can still be read."""
    try:
        conn = connect(path, readonly=True)
        try:
            cursors = dict(conn.execute("SELECT sink, seq FROM cursors"))
            return {
                sink: conn.execute(
                    "SELECT count(*) FROM readings WHERE seq > ?", (seq,)
                ).fetchone()[0]
                for sink, seq in cursors.items()
            }
        finally:
            conn.close()
    except sqlite3.Error:
        return {}


def _move_aside(path: str, log: logging.Logger, reason: str) -> None:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    target = f"{path}.corrupt-{stamp}"
    backlog = _damaged_backlog(path)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.replace(path + suffix, target + suffix)
    waiting = ", ".join(f"sink {k}: {v}" for k, v in sorted(backlog.items()))
    log.error(
        "journal %s is damaged (%s); moved it aside to %s and started a new "
        "one. Readings the sinks had not yet written stay only there (%s). "
        "Energy per period from what it holds: power.py report --journal %s; "
        "pulse counts go on from the journal's mark",
        path,
        reason,
        target,
        waiting or "how many cannot be read",
        target,
    )


class Cursors:
    """Sink positions waiting for the next group commit (any thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dirty: Dict[str, int] = {}

    def advance(self, sink: str, seq: int) -> None:
        with self._lock:
            self._dirty[sink] = seq

    def take(self) -> Dict[str, int]:
        with self._lock:
            dirty, self._dirty = self._dirty, {}
        return dirty

    def restore(self, dirty: Dict[str, int]) -> None:
        """Put back positions a failed commit did not save (newer ones win)."""
        with self._lock:
            for sink, seq in dirty.items():
                self._dirty.setdefault(sink, seq)


class Journal:
    """The writer side, owned by the monitor thread alone."""

    def __init__(
        self,
        path: str,
        log: logging.Logger,
        held: Optional[Dict[str, int]] = None,
    ) -> None:
        """`held`: each meter's highest count a sink's own record holds (the
        CSV's last line); the count never goes back below it."""
        self.path = path
        self.log = log
        self._pending: List[Reading] = []
        self._counts: Dict[str, int] = {}
        self._last_of: Dict[str, int] = {}  # each meter's newest row
        self.cursors = Cursors()
        self.rejects = rejects.Pending()  # rejected edges, for the next commit
        self.committed: List[Row] = []
        self.last_seq = 0
        self._seq_floor = 0  # sequence numbers go on above the mark's
        self._mark_at = 0.0
        self._mark_failing = False
        self._data_version = None
        existed = os.path.exists(path)
        self.conn = self._open(existed)
        self._reconcile(held or {}, existed)
        self._write_mark()

    def _reconcile(self, held: Dict[str, int], existed: bool) -> None:
        """Compare with the mark and the sinks' records: a journal deleted,
        cut or rolled back must be said loudly, and its pulse numbers and
        sequence numbers must never be handed out again."""
        mark, problem = inspect_mark(self.path)
        if problem:
            self.log.warning(
                "the journal's mark %s %s; it is ignored and written anew from "
                "the journal, which holds sequence %d and counts %s",
                mark_path(self.path),
                problem,
                self.last_seq,
                ", ".join(f"{k} {v}" for k, v in sorted(self._counts.items()))
                or "none",
            )
        elif mark is not None and (
            mark.seq < self.last_seq
            or any(mark.meters.get(k, 0) < v for k, v in self._counts.items())
        ):
            self.log.warning(
                "the journal's mark %s is behind the journal (sequence %d, the "
                "journal %d): written anew from the journal",
                mark_path(self.path),
                mark.seq,
                self.last_seq,
            )
        lost: List[str] = []
        if mark is not None and self.last_seq < mark.seq:
            lost.append(f"sequence {mark.seq} before, {self.last_seq} now")
            self._seq_floor = mark.seq
        sources = [("journal mark", mark.meters if mark else {}), ("sinks", held)]
        raised: Dict[str, int] = {}
        for what, counts in sources:
            for name, pulses in counts.items():
                if pulses > max(self._counts.get(name, 0), raised.get(name, 0)):
                    lost.append(
                        f"meter {name}: pulse {pulses} in the {what}, "
                        f"{self._counts.get(name, 0)} in the journal"
                    )
                    raised[name] = pulses
        if not lost:
            return
        self._counts.update(raised)
        self.conn.executemany(
            "INSERT INTO meters (name, pulses) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET pulses=excluded.pulses",
            raised.items(),
        )
        if not existed and mark is None:
            # No journal and no mark: a new DATA_DIR (or a first start) with
            # a CSV an earlier one wrote. Nothing is lost here.
            self.log.warning(
                "journal %s is new, but a sink's own record (the CSV file) "
                "already holds readings up to %s, from an earlier DATA_DIR or "
                "journal: counts go on from there, so no pulse number is used "
                "twice. To keep the earlier journal (its sinks' backlog), stop "
                "power and move its journal.sqlite3 and journal.mark here; to "
                "count from 0, start a new CSV file as well",
                self.path,
                ", ".join(f"{k} pulse {v}" for k, v in sorted(raised.items())),
            )
            return
        self.log.error(
            "journal %s %s: it holds less than was committed (%s). Readings "
            "the sinks had not written by then are lost; counts go on from "
            "%s, so no pulse number is used twice. (To start counting from 0 "
            "on purpose, delete %s and start a new CSV file as well.)",
            self.path,
            "was cut or rolled back" if existed else "is gone",
            "; ".join(lost),
            ", ".join(f"{k} {v}" for k, v in sorted(raised.items())) or "the mark",
            mark_path(self.path),
        )

    def _write_mark(self) -> None:
        """Save the high-water mark (at start, every MARK_EVERY_S, at stop)."""
        mark = Mark(max(self.last_seq, self._seq_floor), dict(self._counts))
        try:
            write_mark(self.path, mark)
        except OSError as exc:
            if not self._mark_failing:
                self.log.warning("cannot save the journal's mark: %s", exc)
            self._mark_failing = True
            return
        self._mark_failing = False
        self._mark_at = time.monotonic()

    def _open(self, existed: bool) -> sqlite3.Connection:
        try:
            return self._open_checked(existed)
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and not os.access(
                os.path.dirname(self.path) or ".", os.W_OK
            ):
                raise JournalError(f"cannot write {self.path}: {exc}") from exc
            if "full" in str(exc) or "I/O error" in str(exc):  # not damage
                raise JournalError(
                    f"cannot open the journal {self.path} ({exc}); is the disk "
                    "full? Free some space and start again"
                ) from None
            _move_aside(self.path, self.log, str(exc))
            return self._open_checked(False)

    def _open_checked(self, existed: bool) -> sqlite3.Connection:
        if not os.path.exists(self.path):
            # SQLite drops a WAL it finds beside an empty database: create
            # the schema first (closing removes the WAL it used).
            first = connect(self.path)
            first.executescript(SCHEMA)
            first.close()
        preallocate_wal(self.path)
        conn = connect(self.path)
        try:
            if existed:  # a damaged page would jam every sink later
                problem = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
                if problem != "ok":
                    raise sqlite3.DatabaseError(f"integrity check: {problem}")
            conn.executescript(SCHEMA)
            _add_estimate_column(conn)
            saved = dict(conn.execute("SELECT name, pulses FROM meters"))
            for name, pulses in saved.items():
                row = conn.execute(
                    "SELECT seq, pulses FROM readings WHERE meter = ? "
                    "ORDER BY seq DESC LIMIT 1",
                    (name,),
                ).fetchone()
                # The newest reading wins: the table is saved only at stop.
                self._counts[name] = max(pulses, row[1] if row else 0)
                if row:
                    self._last_of[name] = row[0]
            row = conn.execute("SELECT max(seq) FROM readings").fetchone()
            # A journal left by root (a restore) may be read-only to us: find
            # out now, not with the first commit.
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        except sqlite3.OperationalError as exc:
            conn.close()
            if "readonly" in str(exc) or "read-only" in str(exc):
                raise JournalError(
                    f"cannot write the journal {self.path} ({exc}); give it to "
                    "the user running power: sudo chown USER "
                    f"{self.path}*"
                ) from None
            raise
        except sqlite3.DatabaseError:
            conn.close()
            raise
        self.last_seq = row[0] or 0
        return conn

    def changed_elsewhere(self) -> bool:
        """Has another connection (a sink's cursor, `power.py register`)
        committed since the last call?"""
        version = self.conn.execute("PRAGMA data_version").fetchone()[0]
        changed = version != self._data_version
        self._data_version = version
        return changed

    def pulses(self, meter: str) -> int:
        """The committed cumulative pulse count of a meter (0 if new)."""
        return self._counts.get(meter, 0)

    def last_pulse_time(self, meter: str) -> Optional[float]:
        """The time of the meter's newest counted pulse (None if none): a
        replay must not count a pulse at or before it again."""
        # The latest, not the last written: a clock stepped back inside a
        # recording wrote later pulses with earlier times, and a replay of it
        # must count none of them again. A time no pulse can have (a row left
        # by an older version that accepted it) is not the newest pulse.
        row = self.conn.execute(
            "SELECT max(time) FROM readings WHERE meter = ? AND NOT estimate "
            "AND time < ?",
            (meter, LATEST),
        ).fetchone()
        if row is None or row[0] is None:  # pruned to an estimate, or none
            row = self.conn.execute(
                "SELECT min(time) FROM readings WHERE meter = ?", (meter,)
            ).fetchone()
        return None if row is None else row[0]

    def last_export(self, meter: str) -> Optional[float]:
        """The meter's newest export total (None: it never had one): export
        goes on from it after a restart, as the pulse count does."""
        row = self.conn.execute(
            "SELECT export_kwh FROM readings WHERE meter = ? AND export_kwh IS NOT "
            "NULL ORDER BY seq DESC LIMIT 1",
            (meter,),
        ).fetchone()
        return None if row is None else row[0]

    def append(self, reading: Reading) -> None:
        """Queue a reading for the next group commit."""
        self._pending.append(reading)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def commit(self, flushed_at: Optional[float] = None) -> bool:
        """Write the pending readings and sink positions in one transaction.

        Returns True when readings were committed. On failure (a full disk,
        an I/O error) they stay pending and the error is raised for the
        caller to log; the next commit tries again. `flushed_at` (a wall
        time) is saved with it, for `power.py register`, which asked for
        this commit and waits to see everything counted until then.
        """
        cursors = self.cursors.take()
        if (
            not self._pending
            and not cursors
            and not self.rejects
            and flushed_at is None
        ):
            return False
        rows = self._pending
        new = sorted({r.meter for r in rows} - set(self._counts))
        conn = self.conn
        try:
            conn.execute("BEGIN")
            seq = self.last_seq
            if rows and self.last_seq < self._seq_floor:
                # A lost journal: sequence numbers go on above the mark.
                conn.execute(
                    INSERT_WITH_SEQ,
                    (self._seq_floor + 1, *rows[0]),
                )
                rows_after = rows[1:]
            else:
                rows_after = rows
            if rows:
                conn.executemany(
                    INSERT,
                    rows_after,  # Readings are tuples in column order
                )
                seq = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
            conn.executemany(
                "INSERT INTO meters (name, pulses) VALUES (?, 0)", [(n,) for n in new]
            )
            self._save_cursors(cursors)
            if flushed_at is not None:
                conn.execute(
                    "INSERT INTO flushed (id, at) VALUES (1, ?) "
                    "ON CONFLICT(id) DO UPDATE SET at=excluded.at",
                    (flushed_at,),
                )
            if self.rejects:
                self.rejects.write(conn)
            conn.execute("COMMIT")
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self.cursors.restore(cursors)
            raise
        self.rejects.clear()
        first = seq - len(rows) + 1
        for i, r in enumerate(rows):
            self._counts[r.meter] = r.pulses
            self._last_of[r.meter] = first + i
        self._pending = []
        self.last_seq = seq
        # What was just committed, for handing to the sinks without a read
        # (take_committed: the journal keeps no reference once handed on).
        self.committed = list(zip(range(first, seq + 1), rows))
        if rows and time.monotonic() - self._mark_at >= MARK_EVERY_S:
            self._write_mark()
        return bool(rows)

    def take_committed(self) -> List[Row]:
        """The rows of the last commit, once: held no longer than needed."""
        rows, self.committed = self.committed, []
        return rows

    def _save_cursors(self, cursors: Dict[str, int]) -> None:
        self.conn.executemany(SAVE_CURSOR, cursors.items())

    def prune(
        self, before: float, sinks: Iterable[str], until: float = float("inf")
    ) -> int:
        """Delete readings older than `before` that every sink has passed.
        A reading dated `until` or later (a clock that was decades ahead, a
        replayed future) is no sign that the rows after it are young."""
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
        # Rows are in time order, so the first young row bounds what may go;
        # finding it reads only the old rows, not the whole journal.
        young = conn.execute(
            "SELECT seq FROM readings WHERE time >= ? AND time < ? "
            "ORDER BY seq LIMIT 1",
            (before, until),
        ).fetchone()
        bound = min(floor + 1, young[0] if young else floor + 1)
        # Each meter's newest row stays: it holds the meter's count, and
        # keeps sequence numbers from ever being handed out again.
        keep = sorted(set(self._last_of.values()) | {self.last_seq})
        marks = ",".join("?" * len(keep))
        first = conn.execute("SELECT min(seq) FROM readings").fetchone()[0] or bound
        removed = 0
        for lo in range(first, bound, PRUNE_CHUNK):  # short write locks
            cur = conn.execute(
                "DELETE FROM readings WHERE seq >= ? AND seq < ? AND time < ? "
                f"AND seq NOT IN ({marks})",
                (lo, min(lo + PRUNE_CHUNK, bound), before, *keep),
            )
            removed += cur.rowcount
        return removed

    def close(self) -> None:
        """Commit what is left, save each meter's count, and close."""
        try:
            self.commit()
            self.conn.executemany(
                "UPDATE meters SET pulses = ? WHERE name = ?",
                [(pulses, name) for name, pulses in self._counts.items()],
            )
        except sqlite3.Error as exc:
            self.log.error(
                "cannot save the journal on stop: %s; %d readings held in "
                "memory are lost",
                exc,
                len(self._pending),
            )
        self._write_mark()
        try:
            self.conn.close()
        except sqlite3.Error:
            pass


class JournalReader:
    """A sink's view of the journal: its cursor and the rows after it.

    Each sink runner owns one, on its own connection; WAL lets it read while
    the monitor writes.
    """

    def __init__(
        self,
        path: str,
        sink: str,
        cursors: Optional[Cursors] = None,
        start_at_end: bool = False,
    ) -> None:
        self.sink = sink
        self.conn = connect(path)
        self.cursors = cursors
        self.persistent = not start_at_end
        self._columns = columns(self.conn)
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

    def find(self, meter: str, pulses: int) -> List[Row]:
        """The rows of `meter` with count `pulses` (a pulse and the idle rows
        after it), oldest first. A meter's count never falls along the
        sequence, so a bisection finds them in a few short reads, however
        long the journal."""
        first = self.conn.execute("SELECT min(seq) FROM readings").fetchone()[0]
        if first is None:
            return []
        probe = (
            "SELECT seq, pulses FROM readings WHERE seq >= ? AND meter = ? "
            "ORDER BY seq LIMIT 1"
        )
        lo, hi = first, self.last_seq() + 1
        while lo < hi:  # the first seq whose next row of meter has >= pulses
            mid = (lo + hi) // 2
            row = self.conn.execute(probe, (mid, meter)).fetchone()
            if row is None or row[1] >= pulses:
                hi = mid
            else:
                lo = row[0] + 1
        found: List[Row] = []
        while True:
            rows = self.conn.execute(
                f"SELECT {COLUMNS} FROM readings WHERE seq >= ? AND meter = ? "
                "ORDER BY seq LIMIT 100",
                (lo, meter),
            ).fetchall()
            for values in rows:
                if values[3] != pulses:
                    return found
                found.append(_row(values))
            if len(rows) < 100:
                return found
            lo = rows[-1][0] + 1

    def read(self, limit: int) -> List[Row]:
        """Up to `limit` committed rows after the cursor, oldest first."""
        rows = self.conn.execute(
            f"SELECT {self._columns} FROM readings WHERE seq > ? ORDER BY seq LIMIT ?",
            (self._cursor, limit),
        ).fetchall()
        return [_row(r) for r in rows]

    def advance(self, seq: int, durable: bool = False) -> None:
        """Record that everything up to `seq` reached the sink: saved now if
        `durable`, else with the journal's next commit."""
        if self.persistent and durable:
            self.conn.execute(SAVE_CURSOR, (self.sink, seq))
        elif self.persistent and self.cursors is not None:
            self.cursors.advance(self.sink, seq)
        self._cursor = seq

    def skip(self, seqs: Sequence[int]) -> None:
        """Count readings the sink refused as bad data, at once: --status
        shows them. The cursor passes them with the rest of the batch."""
        if seqs:
            self.conn.execute(ADD_SKIPPED, (self.sink, len(seqs), min(seqs)))

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
    skipped: Dict[str, Tuple[int, int]]  # per sink name: count, first seq
    # Per meter: rejected edges ever, and in the last 24 hours.
    rejected: Dict[str, rejects.Counts] = field(default_factory=dict)
    rejected_day: Dict[str, rejects.Counts] = field(default_factory=dict)


def read_status(path: str, sinks: Sequence[str]) -> Optional[JournalStatus]:
    """What --status shows, read without taking any lock; None if no journal."""
    if not os.path.exists(path):
        return None
    conn = connect(path, readonly=True)
    try:
        last_seq = conn.execute("SELECT max(seq) FROM readings").fetchone()[0] or 0
        last = {}
        select = columns(conn)
        for (meter,) in conn.execute("SELECT name FROM meters ORDER BY name"):
            row = conn.execute(
                f"SELECT {select} FROM readings WHERE meter = ? "
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
        try:
            skipped = {
                name: (count, first)
                for name, count, first in conn.execute(
                    "SELECT sink, count, first_seq FROM skipped"
                )
            }
        except sqlite3.OperationalError:  # a journal of an older version
            skipped = {}
        return JournalStatus(
            last_seq,
            last,
            backlog,
            skipped,
            rejects.totals(conn),
            rejects.totals(conn, time.time() - 86400),
        )
    finally:
        conn.close()


def salvage(src: str, dst: str) -> Tuple[int, int]:
    """Copy what a damaged journal still holds into a new one at `dst`:
    readings in sequence ranges, halving around ranges that cannot be
    read. Returns (readings copied, sequence numbers lost in unreadable
    ranges, an upper bound)."""
    source = connect(src, readonly=True)
    target = sqlite3.connect(dst, isolation_level=None)
    try:
        target.executescript(SCHEMA)
        _add_estimate_column(target)
        try:
            wanted = columns(source)  # an older journal has no estimate column
        except sqlite3.DatabaseError:
            wanted = COLUMNS
        for table in ("meters", "cursors"):
            try:
                rows = source.execute(f"SELECT * FROM {table}").fetchall()
            except sqlite3.DatabaseError:
                continue
            marks = ",".join("?" * len(rows[0])) if rows else ""
            target.executemany(f"INSERT OR REPLACE INTO {table} VALUES ({marks})", rows)
        try:
            lo, hi = source.execute(
                "SELECT min(seq), max(seq) FROM readings"
            ).fetchone()
        except sqlite3.DatabaseError:
            # Bounds unreadable: look everywhere a row could be, no further
            # than the file's size allows (a row takes more than 16 bytes).
            lo, hi = 1, max(1, os.path.getsize(src) // 16)
        copied = lost = 0
        pending = [(lo or 1, (hi or 0) + 1)] if lo is not None else []
        while pending:
            a, b = pending.pop()
            try:
                rows = source.execute(
                    f"SELECT {wanted} FROM readings WHERE seq >= ? AND seq < ?",
                    (a, b),
                ).fetchall()
            except sqlite3.DatabaseError:
                if b - a <= 1:
                    lost += 1
                else:
                    mid = (a + b) // 2
                    pending += [(mid, b), (a, mid)]
                continue
            target.execute("BEGIN")
            target.executemany(
                INSERT_WITH_SEQ,
                rows,
            )
            target.execute("COMMIT")
            copied += len(rows)
        target.execute(
            "INSERT OR IGNORE INTO meters (name, pulses) "
            "SELECT meter, max(pulses) FROM readings GROUP BY meter"
        )
        return copied, lost
    finally:
        source.close()
        target.close()
