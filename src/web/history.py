"""The journal as the web page shows it: energy today and this month, the
last 24 hours and the last 30 days, rejected edges per hour; export where a
meter has it (the rise of its export total over the period, as the report
measures it).

Energy in a period counts the pulses made in it, as `power.py report`
does: the count at its end less the count of the last reading before it
(or, with none before, one less than the first in it). Mean power over a
stretch is the energy in it divided by its length, never an average of
readings. Each answer is cached for a while (the journal is read only when
someone looks, and a Pi 1 pays for every row), and the pulses counted since
the last commit come from the live feed, so the numbers move with each
pulse.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import time
from typing import Dict, List, Optional, Tuple

from core import register, rejects
from core.journal import columns, connect

DAY_BUCKET_S = 300  # the 24 hour chart: 288 buckets of 5 minutes
CACHE_S = 30.0  # a chart is read from the journal at most this often
BASE_CACHE_S = 600.0  # the count before today and this month


def local_midnight(t: float) -> float:
    d = dt.datetime.fromtimestamp(t)
    return d.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def local_month_start(t: float) -> float:
    d = dt.datetime.fromtimestamp(t)
    return d.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()


def month_days(now: float) -> List[float]:
    """The starts of the last 30 local days, today's last."""
    d = dt.datetime.fromtimestamp(local_midnight(now))
    return [(d - dt.timedelta(days=back)).timestamp() for back in range(29, -1, -1)]


class History:
    """Read-only questions to the journal at `path`, cached (any thread)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.RLock()  # month() asks base() inside
        self._conn: Optional[sqlite3.Connection] = None
        self._cache: Dict[Tuple, Tuple[float, object]] = {}

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = connect(self.path, readonly=True)
            names = columns(self._conn)
            self._estimate = "estimate" if "estimate" in names else "0"
            self._export = "export_kwh" if "export_kwh" in names else "NULL"
        return self._conn

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except sqlite3.ProgrammingError:  # made in the server's thread
                pass

    def _cached(self, key: Tuple, ttl: float, compute):
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and now - hit[0] < ttl:
                return hit[1]
            value = compute()
            self._cache[key] = (now, value)
            return value

    # The count a period starts from ---------------------------------------

    def base(self, meter: str, since: float) -> Optional[int]:
        """The pulse count a period from `since` is measured from: the last
        reading before it, else one less than the first reading in it, as
        the report counts. None while the journal has no reading of it."""

        def compute() -> Optional[int]:
            db = self._db()
            row = db.execute(
                "SELECT pulses FROM readings WHERE meter = ? AND time < ? "
                "ORDER BY seq DESC LIMIT 1",
                (meter, since),
            ).fetchone()
            if row is not None:
                return row[0]
            row = db.execute(
                "SELECT pulses FROM readings WHERE meter = ? AND time >= ? "
                "ORDER BY seq LIMIT 1",
                (meter, since),
            ).fetchone()
            return None if row is None else row[0] - 1

        # A count before an earlier day never changes: keep it for a day.
        recent = since >= local_midnight(time.time()) - 86400
        ttl = BASE_CACHE_S if recent else 86400.0
        value = self._cached(("base", meter, since), ttl, compute)
        if value is None:  # nothing yet: ask again next time
            with self._lock:
                self._cache.pop(("base", meter, since), None)
        return value

    def export_base(self, meter: str, since: float) -> Optional[float]:
        """The export total a period from `since` is measured from, as the
        report measures it: the last one before it, else the first in it.
        None while the journal has no export total of the meter."""

        def compute() -> Optional[float]:
            db = self._db()
            known = f"{self._export} IS NOT NULL AND {self._estimate} = 0"
            row = db.execute(
                f"SELECT {self._export} FROM readings WHERE meter = ? AND "
                f"time < ? AND {known} ORDER BY seq DESC LIMIT 1",
                (meter, since),
            ).fetchone()
            if row is None:
                row = db.execute(
                    f"SELECT {self._export} FROM readings WHERE meter = ? AND "
                    f"time >= ? AND {known} ORDER BY seq LIMIT 1",
                    (meter, since),
                ).fetchone()
            return None if row is None else row[0]

        recent = since >= local_midnight(time.time()) - 86400
        ttl = BASE_CACHE_S if recent else 86400.0
        value = self._cached(("export", meter, since), ttl, compute)
        if value is None:
            with self._lock:
                self._cache.pop(("export", meter, since), None)
        return value

    def last_export(self, meter: str) -> Optional[float]:
        """The meter's newest committed export total (None: it has none)."""

        def compute() -> Optional[float]:
            db = self._db()  # knows the export column from here on
            row = db.execute(
                f"SELECT {self._export} FROM readings WHERE meter = ? AND "
                f"{self._export} IS NOT NULL ORDER BY seq DESC LIMIT 1",
                (meter,),
            ).fetchone()
            return None if row is None else row[0]

        return self._cached(("last_export", meter), CACHE_S, compute)

    # Charts ---------------------------------------------------------------

    def _pulse_points(self, meter: str, since: float) -> List[Tuple[float, int]]:
        """(time, count) of the meter's pulses from the last one before
        `since` to the newest committed, oldest first (estimates left out:
        they repeat a count)."""
        db = self._db()
        points: List[Tuple[float, int]] = []
        rows = db.execute(
            "SELECT time, pulses FROM readings WHERE meter = ? AND "
            f"{self._estimate} = 0 ORDER BY seq DESC",
            (meter,),
        )
        for t, pulses in rows:
            points.append((t, pulses))
            if t < since:
                break
        points.reverse()
        return points

    def day(self, meter: str, now: float, live: Optional[Tuple[float, int]]):
        """The last 24 hours in DAY_BUCKET_S buckets: [(bucket start, kWh
        counted in it as pulses, spread evenly over each pulse's interval)];
        the pulses since the last commit (`live`: the newest reading's time
        and count) are added to the newest buckets."""
        end = (int(now) // DAY_BUCKET_S + 1) * DAY_BUCKET_S
        start = end - 86400

        def compute():
            return self._pulse_points(meter, start - DAY_BUCKET_S)

        points = list(self._cached(("day", meter, start), CACHE_S, compute))
        if live is not None and (not points or live[0] > points[-1][0]):
            points.append(live)
        return spread(points, start, end, DAY_BUCKET_S)

    def month(self, meter: str, now: float, live_pulses: Optional[int]):
        """The last 30 local days: [(day start, pulses counted in it)]."""
        today = local_midnight(now)
        starts = month_days(now)

        def compute():
            bases = [self.base(meter, s) for s in starts]
            return bases

        bases = self._cached(("month", meter, today), CACHE_S, compute)
        out = []
        for i, s in enumerate(starts):
            first = bases[i]
            last = bases[i + 1] if i + 1 < len(bases) else live_pulses
            if first is None or last is None:  # before the journal's first
                out.append((s, None))
            else:
                out.append((s, max(0, last - first)))
        return out

    def month_export(self, meter: str, now: float, live_export: Optional[float]):
        """The last 30 local days: [(day start, kWh exported in it)], None
        before the journal's first export total."""
        starts = month_days(now)

        def compute():
            return [self.export_base(meter, s) for s in starts]

        bases = self._cached(("month_export", meter, starts[-1]), CACHE_S, compute)
        out: List[Tuple[float, Optional[float]]] = []
        for i, s in enumerate(starts):
            first = bases[i]
            last = bases[i + 1] if i + 1 < len(bases) else live_export
            if first is None or last is None:
                out.append((s, None))
            else:
                out.append((s, max(0.0, last - first)))
        return out

    def drift(self, meter: str, pulses_per_kwh: float) -> Optional[register.Drift]:
        """The newest register reading against the one before it."""

        def compute():
            try:
                return register.latest_drift(self._db(), meter, pulses_per_kwh)
            except sqlite3.OperationalError:  # no register reading yet
                return None

        return self._cached(("drift", meter), CACHE_S, compute)

    def rejected(self, since: float, until: float) -> List[Tuple[str, int, tuple]]:
        """(meter, hour, (glitches, implausible, ghosts)) per hour."""

        def compute():
            db = self._db()
            try:
                return list(rejects.hourly(db, since, until))
            except sqlite3.OperationalError:  # a journal without the table
                return []

        key = ("rejected", int(since) // 3600)
        return self._cached(key, CACHE_S, compute)


def spread(
    points: List[Tuple[float, int]], start: float, end: float, size: float
) -> List[Tuple[float, Optional[float]]]:
    """Pulses counted per bucket of `size` seconds in [start, end), each
    pulse spread evenly over its interval (from the pulse before it): the
    count at a time between two pulses grows linearly from one to the next.
    Returns (bucket start, pulses in it), None for a bucket that ends
    before the first pulse known."""
    edges = [start + i * size for i in range(int((end - start) // size) + 1)]

    def count_at(t: float, i: int) -> Tuple[float, int]:
        """(count at t, index of the first point after t) from index i."""
        while i < len(points) and points[i][0] <= t:
            i += 1
        if i == 0:
            return (points[0][1] - 1 if points else 0.0), i
        if i == len(points):
            return float(points[-1][1]), i
        (t0, p0), (t1, p1) = points[i - 1], points[i]
        if t1 <= t0:
            return float(p0), i
        return p0 + (p1 - p0) * (t - t0) / (t1 - t0), i

    counts = []
    i = 0
    for t in edges:
        value, i = count_at(t, max(i - 1, 0))
        counts.append(value)
    newest = points[-1][0] if points else start
    first = points[0][0] if points else end
    out: List[Tuple[float, Optional[float]]] = []
    for k in range(len(edges) - 1):
        if edges[k + 1] <= first:  # before the journal's first pulse: unknown
            out.append((edges[k], None))
        elif edges[k] >= newest:  # nothing counted yet from here on
            out.append((edges[k], 0.0))
        else:
            out.append((edges[k], max(0.0, counts[k + 1] - counts[k])))
    return out
