"""One runner thread per sink: journal cursor, batching, retry with backoff.

The runner reads committed readings after its sink's cursor, hands them to
the sink in batches (when a batch is full or the flush interval has passed)
and moves the cursor only after the sink accepted them. A failing sink is
retried with exponential backoff and full jitter and logged once per failure
streak; it never holds up the pulse path or another sink.
"""

from __future__ import annotations

import collections
import logging
import random
import sqlite3
import threading
import time
from typing import Callable, Deque, List, Optional

from core.journal import JournalReader, Row
from core.live import LatestReadings, LiveFeed, ReadingQueue
from sinks.base import Sink, SinkError

MAX_BATCH = 1_000_000
INBOX_ROWS = 200_000  # committed rows kept at hand per sink
# How far a paused input (a replay) may run ahead of the slowest healthy
# sink; with the monitor's COMMIT_ROWS it bounds the readings in memory.
AHEAD_ROWS = 2_000
IDLE_POLL_S = 5.0
# While a server is away, between the long retries, ask it every 2 to 4 s
# whether it is back (Sink.probe): its return is found within 5 s, and a
# server that is away takes only a refused connection.
PROBE_EVERY_S = (2.0, 4.0)


class Backoff:
    """Exponential backoff with full jitter, capped at `cap` seconds."""

    def __init__(self, rng: random.Random, base: float = 0.5, cap: float = 60.0):
        self.rng = rng
        self.base = base
        self.cap = cap
        self.failures = 0

    def next_delay(self, permanent: bool = False) -> float:
        self.failures += 1
        if permanent:
            return self.cap
        ceiling = min(self.cap, self.base * (2 ** min(self.failures - 1, 30)))
        return self.rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.failures = 0


class SinkRunner:
    """Drives one sink from the journal in its own thread."""

    def __init__(
        self,
        sink: Sink,
        open_reader: Callable[[], JournalReader],
        batch_size: int,
        flush_interval_s: float,
        backoff: Backoff,
        log: logging.Logger,
        feed: Optional[LiveFeed] = None,
    ) -> None:
        self.sink = sink
        self.name = sink.name
        self._open_reader = open_reader
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.backoff = backoff
        self.log = log
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._reopen = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"sink-{self.name}", daemon=True
        )
        self.cursor = -1  # -1 until the reader is open
        self.last_write: Optional[float] = None  # epoch s, for /metrics
        self._opened = False
        self._streak_started: Optional[float] = None
        self._streak_error = ""
        self._permanent = False
        self._limit = batch_size
        self._draining = False
        self.skipped = 0  # readings refused as bad data since start
        self._reader: Optional[JournalReader] = None
        self._resumed = False
        self._retry_after: Optional[float] = None
        # Rows just committed, handed over by the monitor so that a sink
        # keeping up needs no journal read; bounded, the journal has it all.
        self._inbox: Deque[List[Row]] = collections.deque()
        self._inbox_rows = 0
        self._inbox_lock = threading.Lock()
        # A LIVE sink's newest reading of each meter, before its commit: it
        # wakes this thread, which hands them over between writes.
        self._live: Optional[LatestReadings] = None
        if sink.LIVE and feed is not None:
            self._live = LatestReadings(self._wake)
            feed.subscribe(self._live)

    # Called from other threads -------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def offer(self, rows: List[Row]) -> None:
        """Rows were committed (the monitor's thread): keep them at hand."""
        with self._inbox_lock:
            if self.failing:  # the backlog lives in the journal, not here
                self._inbox.clear()
                self._inbox_rows = 0
            else:
                self._inbox.append(rows)
                self._inbox_rows += len(rows)
                while self._inbox_rows > INBOX_ROWS:  # behind: use the journal
                    self._inbox_rows -= len(self._inbox.popleft())
        self._wake.set()

    def drain(self) -> None:
        """The input has ended: write what is left without batching delays."""
        self._draining = True
        self.sink.input_ended = True
        self._wake.set()

    def _from_inbox(self, cursor: int, limit: int) -> Optional[List[Row]]:
        """Up to `limit` rows after `cursor` from the inbox; None when the
        inbox does not start right after the cursor."""
        with self._inbox_lock:
            inbox = self._inbox
            while inbox and inbox[0][-1][0] <= cursor:  # already written
                self._inbox_rows -= len(inbox.popleft())
            if not inbox or inbox[0][0][0] > cursor + 1:
                return None
            rows: List[Row] = []
            for chunk in inbox:
                start = max(0, cursor + 1 - chunk[0][0])
                rows.extend(chunk[start : start + limit - len(rows)])
                if len(rows) >= limit:
                    break
                cursor = chunk[-1][0]
            return rows

    def request_reopen(self) -> None:
        """SIGHUP: reopen the sink's file or connection before the next write."""
        self._reopen.set()
        self._wake.set()

    def stop(self) -> None:
        """Finish the rows already committed if the sink is healthy, then end."""
        self._stopping.set()
        self._wake.set()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def inbox_rows(self) -> int:
        """Committed rows handed over but not yet written (roughly)."""
        return self._inbox_rows

    @property
    def failing(self) -> bool:
        return self._streak_started is not None

    @property
    def last_error(self) -> str:
        """The failing streak's latest error ("" if healthy)."""
        return self._streak_error

    @property
    def failing_for_s(self) -> Optional[float]:
        """Seconds since the current failure streak began; None if healthy."""
        started = self._streak_started
        return None if started is None else time.monotonic() - started

    # The runner thread ------------------------------------------------------

    def _run(self) -> None:
        reader = None
        try:
            reader = self._open_reader()
            self._reader = reader
            self.cursor = reader.cursor
            self._loop(reader)
        except Exception:  # a bug must not pass silently, nor kill the daemon
            self.log.exception("sink %s stopped on an unexpected error", self.name)
        finally:
            if self._opened:
                self.sink.close()
            if reader is not None:
                reader.close()

    def _loop(self, reader: JournalReader) -> None:
        last_write = 0.0
        limit = self.batch_size
        while True:
            stopping = self._stopping.is_set()
            if stopping and self.failing:
                return  # what is left stays in the journal for next time
            if self._reopen.is_set() and self._opened:
                self._reopen.clear()
                self.log.info("sink %s: reopening", self.name)
                self.sink.close()
                self._opened = False
            # Open before any reading comes, and retry with backoff: an MQTT
            # sink announces the meter online while no pulse comes.
            if not stopping and not self._open():
                self._wait_to_retry(self._next_delay())
                continue
            if self._live is not None:
                self._publish_live()
            self._limit = limit
            try:
                rows = self._from_inbox(reader.cursor, limit)
                if rows is None:
                    rows = reader.read(limit)
            except sqlite3.Error as exc:  # one streak, like a failing write
                self._failed(f"cannot read the journal: {exc}")
                self._wait(self.backoff.next_delay())
                continue
            if not rows:
                if stopping:
                    return
                # offer() wakes it on each commit; this is only a fallback.
                self._wake.wait(max(self.flush_interval_s, IDLE_POLL_S))
                self._wake.clear()
                continue
            if len(rows) < limit and not stopping and not self._draining:
                delay = last_write + self.flush_interval_s - time.monotonic()
                if delay > 0:  # gather a batch; drain() or stop() cut it short
                    self._wake.wait(delay)
                    self._wake.clear()
                    continue
            if self._deliver(rows, reader):
                last_write = time.monotonic()
                limit = self.batch_size
            elif stopping:
                return
            elif self.failing:
                self._wait_to_retry(self._next_delay())
            elif len(rows) == limit:
                # The sink held back a whole batch (one open period fills
                # it): read a larger one rather than wait forever.
                limit = min(limit * 2, MAX_BATCH)
            else:  # the sink held everything back (an open period)
                self._wake.wait(max(self.flush_interval_s, 0.5))
                self._wake.clear()

    def _publish_live(self) -> None:
        """Hand the sink the live readings waiting; a failure here is not
        the sink's streak (the committed readings say whether it works)."""
        readings = self._live.take() if self._live is not None else []
        if not readings or not self._opened:
            return
        try:
            self.sink.live(readings)
        except Exception as exc:  # live() should not raise; never let it stop us
            self.log.debug("sink %s: live readings: %s", self.name, exc)

    def _next_delay(self) -> float:
        """The backoff, or what the server asked for (HTTP 429 Retry-After)."""
        delay = self.backoff.next_delay(self._permanent)
        asked, self._retry_after = self._retry_after, None
        if asked is not None:
            return min(max(asked, 0.0), 3600.0)
        return delay

    def _wait(self, seconds: float) -> None:
        """Sleep, but wake at once on stop."""
        self._stopping.wait(seconds)

    def _wait_to_retry(self, seconds: float) -> None:
        """The backoff, cut short when the server comes back: while the
        sink's probe finds it away, probe now and then, and retry at once
        (on a fresh connection) when it answers again. A server that
        answers but fails the writes gets the whole backoff."""
        deadline = time.monotonic() + seconds
        if seconds <= PROBE_EVERY_S[1] or self._probe() is not False:
            self._wait(seconds)
            return
        while not self._stopping.is_set():
            step = self.backoff.rng.uniform(*PROBE_EVERY_S)
            left = deadline - time.monotonic()
            if left <= step:
                self._wait(left)
                return
            self._wait(step)
            if not self._stopping.is_set() and self._probe():
                self.log.info("sink %s: the server answers again", self.name)
                if self._opened:  # a connection retrying on its own timer
                    self.sink.close()
                    self._opened = False
                return

    def _probe(self) -> Optional[bool]:
        try:
            return self.sink.probe()
        except Exception as exc:  # probe() should not raise; never let it stop us
            self.log.debug("sink %s: probe: %s", self.name, exc)
            return None

    def _open(self) -> bool:
        """Open the sink if it is not; False (and logged) when it fails."""
        if self._opened:
            return True
        self._permanent = False
        try:
            self.sink.open()
        except SinkError as exc:
            self._permanent = not exc.retry
            self._failed(str(exc))
            return False
        except Exception as exc:  # a library raising something unexpected
            self._failed(f"{type(exc).__name__}: {exc}")
            self.sink.close()
            return False
        self._opened = True
        if not self._resumed and self._reader is not None:
            self._resumed = True
            self._resume(self._reader)
        return True

    def _resume(self, reader: JournalReader) -> None:
        """Start after what the sink's own record holds, when it keeps one:
        later than the cursor after a crash, earlier after a lost tail."""
        try:
            seq = self.sink.resume_after(reader.find)
        except sqlite3.Error as exc:
            self.log.warning(
                "sink %s: cannot look up its last reading in the journal (%s); "
                "going by its saved position",
                self.name,
                exc,
            )
            return
        if seq is None or seq == reader.cursor:
            return
        if seq < reader.cursor:
            self.log.warning(
                "sink %s: its record ends at journal sequence %d, before its "
                "saved position %d (readings lost there); writing them again "
                "from the journal",
                self.name,
                seq,
                reader.cursor,
            )
        else:
            self.log.info(
                "sink %s: already holds readings up to journal sequence %d "
                "(saved position %d); going on after them",
                self.name,
                seq,
                reader.cursor,
            )
        self._advance(reader, seq)

    def _deliver(self, rows, reader: JournalReader) -> bool:
        if not self._open():
            return False
        self._permanent = False
        try:
            self.sink.more_waiting = len(rows) >= self._limit
            taken = self.sink.write([reading for _, reading in rows])
        except SinkError as exc:
            if exc.bad_data:
                return self._deliver_bisecting(rows, reader)
            self._permanent = not exc.retry
            self._retry_after = exc.retry_after
            self._failed(str(exc))
            return False
        except Exception as exc:  # a library raising something unexpected
            self._permanent = False
            self._failed(f"{type(exc).__name__}: {exc}")
            if self._opened:
                self.sink.close()
                self._opened = False
            return False
        if taken is not None and taken < len(rows):
            if taken <= 0:
                self._recovered()
                return False  # nothing ready yet: not a failure
            rows = rows[:taken]
        self._advance(reader, rows[-1][0])
        self._recovered()
        return True

    def _deliver_bisecting(self, rows: List[Row], reader: JournalReader) -> bool:
        """The sink refused the batch for what some readings hold: find those
        by halving, write the rest, skip and count them, and go on. One bad
        reading must never stop a sink."""
        skipped: List[int] = []
        reason = ""
        done = 0  # rows[:done] are written or skipped
        error: Optional[str] = None
        pending = [(0, len(rows))]  # a stack: the front half on top
        known_bad = True  # the whole batch was just refused
        while pending:
            lo, hi = pending.pop()
            part = rows[lo:hi]
            try:
                if known_bad:
                    known_bad = False
                    raise SinkError("", bad_data=True)
                self.sink.more_waiting = True
                taken = self.sink.write([reading for _, reading in part])
            except SinkError as exc:
                if not exc.bad_data:
                    error = str(exc)
                    break
                if hi - lo == 1:
                    skipped.append(part[0][0])
                    reason = str(exc) or reason
                    done = hi
                else:
                    mid = (lo + hi) // 2
                    pending += [(mid, hi), (lo, mid)]
                continue
            except Exception as exc:  # a library raising something unexpected
                error = f"{type(exc).__name__}: {exc}"
                break
            if taken is not None and taken < len(part):
                done = lo + max(taken, 0)  # the rest comes again
                break
            done = hi
        if skipped:
            try:
                reader.skip(skipped)
            except sqlite3.Error as exc:
                self.log.warning(
                    "sink %s: cannot count skipped readings: %s", self.name, exc
                )
            self.skipped += len(skipped)
            self.log.error(
                "sink %s: skipped %d readings it refused as bad data (first at "
                "journal sequence %d): %s",
                self.name,
                len(skipped),
                skipped[0],
                reason,
            )
        if done:
            self._advance(reader, rows[done - 1][0])
        if error is not None:
            self._permanent = False
            self._failed(error)
            return False
        self._recovered()
        return done > 0

    def _advance(self, reader: JournalReader, seq: int) -> None:
        try:
            reader.advance(seq, durable=self.sink.DURABLE_CURSOR)
        except sqlite3.Error as exc:
            # The sink has the rows: move on (never write them twice now) and
            # save the position with the next group commit instead.
            self.log.warning(
                "sink %s: cannot save its position now (%s); saved with the "
                "next journal commit",
                self.name,
                exc,
            )
            reader.advance(seq)
        self.cursor = seq
        self.last_write = time.time()

    def _recovered(self) -> None:
        if self._streak_started is not None:
            took = time.monotonic() - self._streak_started
            self.log.warning(
                "sink %s: recovered after %d failed tries in %.0f s",
                self.name,
                self.backoff.failures,
                took,
            )
            self._streak_started = None
            self._streak_error = ""
        self.backoff.reset()

    def _failed(self, error: str) -> None:
        if self._streak_started is None:
            self._streak_started = time.monotonic()
            self._streak_error = error
            self.log.error(
                "sink %s: %s; readings stay in the journal and will be retried",
                self.name,
                error,
            )
        elif error != self._streak_error:
            self._streak_error = error
            self.log.error("sink %s: still failing: %s", self.name, error)
        else:
            self.log.debug("sink %s: retry failed: %s", self.name, error)


class LiveRunner:
    """Drives a sink from the live path rather than the journal: every
    reading as the meter makes it, in order (the console's line per
    reading). Its queue is bounded (the oldest go when it is full); a
    paused input (a replay) waits for it as for a sink, so none goes there.
    """

    def __init__(self, sink: Sink, queue: ReadingQueue, log: logging.Logger) -> None:
        self.sink = sink
        self.name = sink.name
        self.queue = queue
        self.log = log
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"live-{self.name}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Show what is waiting, then end."""
        self._stopping.set()
        self.queue.wake.set()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        wake = self.queue.wake
        while True:
            stopping = self._stopping.is_set()
            wake.clear()
            batch = self.queue.take()
            if batch:
                try:
                    self.sink.write(batch)
                except Exception as exc:  # a closed terminal must not stop us
                    self.log.debug("%s: %s", self.name, exc)
            elif stopping:
                return
            else:
                wake.wait(IDLE_POLL_S)
