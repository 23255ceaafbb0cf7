"""The monitor thread: edges from the queue into meters, journal and LEDs.

Input callbacks only put (meter index, t_mono_ns, t_wall, kind) on a
SimpleQueue (kind: a pulse, or the start or end of a flash; see meter). This
thread takes them in order, lets each meter turn them into readings, hands
each at once to the live path (core/live.py: what people watch), appends it
to the journal, commits in groups and wakes the sink runners after each
commit (the durable path). A reading is committed at once when the previous
commit is older than the commit interval (so the first reading after start
or a quiet spell lands at once), else when the interval has passed since
that commit, or as soon as COMMIT_ROWS wait (a replay at full speed): what
is held in memory stays bounded. It ticks at least once a second so an idle
meter's estimates appear and a stop is seen promptly.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from typing import Callable, List, Optional, Protocol, Sequence, Tuple, Union

from core.edgekinds import EdgeCallback
from core.journal import Journal, Row
from core.judge import EdgeJudge, FrameJudge
from core.meter import PULSE, Meter, Reading
from core.register import offset as register_offset

TICK_S = 1.0  # estimates are stamped when due, so a tick may be late
FINITE_TICK_S = 0.05
WAKE = None  # put on the queue by stop() so the loop sees it at once
PRUNE_EVERY_S = 3600.0
# The first prune waits until each sink has surely found its place from its
# own record (a CSV whose tail a power cut lost goes back before its saved
# position, to rows a prune at once could take).
PRUNE_FIRST_S = 60.0
# Edges taken in one go before commits and ticks get a look, and pending
# readings that make a commit without waiting: with the runners' AHEAD_ROWS,
# what a fast replay holds in memory (a 1M-pulse replay with three sinks
# stays under 40 MiB).
RUN = 2000
COMMIT_ROWS = 2000
# Sink positions are saved with the next commit of readings; alone (a sync
# of their own) only when no reading came for this long. A position lost to
# a crash only sends a few readings again to sinks where that is harmless.
CURSOR_SAVE_S = 60.0
# A reading dated more than this ahead of the clock is from a clock gone
# wrong, not a young one: retention prunes past it.
FUTURE_S = 86400.0


class EdgeSource(Protocol):
    """What the monitor asks of an input backend (inputs/base.py): whether
    it ends by itself, and its clock (a replay's is its own)."""

    finite: bool

    def clock(self) -> Tuple[int, float]: ...


class Blinker(Protocol):
    """What the monitor asks of the status LEDs (service/leds.py)."""

    def blink(self, meter: str) -> None: ...


class Monitor:
    def __init__(
        self,
        meters: Sequence[Meter],
        inputs: Sequence[EdgeSource],
        journal: Journal,
        on_commit: Callable[[List[Row]], None],
        leds: Optional[Blinker],
        log: logging.Logger,
        commit_interval_s: float = 1.0,
        retention_s: float = 0.0,
        sink_names: Sequence[str] = (),
        on_done: Callable[[], None] = lambda: None,
        live: Optional[Callable[[Reading], None]] = None,
        judges: Sequence[Optional[Union[EdgeJudge, FrameJudge]]] = (),
    ) -> None:
        self.meters = list(meters)
        self.inputs = list(inputs)
        self.journal = journal
        self.on_commit = on_commit
        self.leds = leds
        self.log = log
        self.commit_interval_s = commit_interval_s
        self.retention_s = retention_s
        self.sink_names = list(sink_names)
        self.on_done = on_done  # told when the inputs ran out or it failed
        # Each reading as the meter makes it, before its commit (core/live.py):
        # what people watch follows the meter, not the commit interval.
        self.live = live
        # Where someone looks at the edges (the web page's sensor view), a
        # meter's edges go through its EdgeJudge (a register meter's frames
        # through its FrameJudge), which keeps the verdicts.
        judges = list(judges) + [None] * (len(self.meters) - len(judges))
        self._edge = [j.edge if j else m.edge for j, m in zip(judges, self.meters)]
        # A register meter journals a frame every every_s but shows each one.
        self._shown = [getattr(m, "take_shown", None) for m in self.meters]
        self._last_live: List[Optional[Reading]] = [None] * len(self.meters)
        self.edges: queue.SimpleQueue = queue.SimpleQueue()
        self.stopping = threading.Event()
        self.exhausted = threading.Event()  # every finite input consumed
        self._flush = threading.Event()  # power.py register asked for a commit
        self.readings = 0
        self._commit_failing = False
        self._rejected = [(0, 0, 0)] * len(self.meters)  # counted in the journal
        self._thread = threading.Thread(target=self._run, name="monitor", daemon=True)

    def edge_callback(self, index: int) -> EdgeCallback:
        """The pulse path for meter `index`: one queue put, nothing else."""
        put = self.edges.put

        def on_edge(t_mono_ns: int, t_wall: float, kind: int = PULSE) -> None:
            put((index, t_mono_ns, t_wall, kind))

        return on_edge

    def backlog(self) -> int:
        return self.edges.qsize()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.edges.put(WAKE)

    def request_commit(self) -> None:
        """Commit what the meters counted so far at once, and say when (for
        `power.py register`, which needs the count the meter has now, not
        the last commit's)."""
        self._flush.set()
        self.edges.put(WAKE)

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:
            self.log.exception("monitor stopped on an unexpected error")
            self.stopping.set()
            self.on_done()
        finally:
            self._drain_queue()
            self._commit()

    def _drain_queue(self) -> None:
        """Take edges queued before the inputs stopped: they are pulses."""
        while True:
            try:
                item = self.edges.get_nowait()
            except queue.Empty:
                return
            if item is WAKE:
                continue
            try:
                self._take(item[0], item[1], item[2], item[3])
            except Exception:
                self.log.exception("cannot take a queued edge")
                return

    def _loop(self) -> None:
        get = self.edges.get
        meters = self.meters
        journal = self.journal
        blink = self.leds.blink if self.leds is not None else None
        # A run ends by itself only when every input does (replays); a
        # replay beside a live meter just stops adding pulses.
        finite = self.inputs if all(i.finite for i in self.inputs) else []
        interval = self.commit_interval_s
        last_commit = -interval  # the first reading is committed at once
        last_save = last_offsets = 0.0
        last_prune = time.monotonic() - PRUNE_EVERY_S + PRUNE_FIRST_S
        get_nowait = self.edges.get_nowait
        no_pulse = [False] * len(meters)
        while not self.stopping.is_set():
            # Clocks first: a virtual clock covers only edges already queued.
            clocks = [backend.clock()[0] for backend in self.inputs]
            # While a replay runs, look often whether it has ended; readings
            # waiting for their commit wake it when it is due.
            timeout = FINITE_TICK_S if finite else TICK_S
            if journal.pending:
                due = last_commit + interval - time.monotonic()
                timeout = min(timeout, max(due, 0.0))
            try:
                item = get(timeout=timeout)
            except queue.Empty:
                item = WAKE
            # Take what is queued, a bounded run so commits still come. Each
            # meter with a pulse in the run blinks once, after it: the LED
            # lights for blink_s after its newest pulse, as a blink per pulse
            # would have it, for one call instead of one per pulse.
            behind = False
            pulsed = no_pulse[:]
            for taken in range(RUN):
                if item is not WAKE:
                    index = item[0]
                    if self._take(index, item[1], item[2], item[3]):
                        pulsed[index] = True
                if taken == RUN - 1:
                    behind = True  # more may wait; the next round takes them
                    break
                try:
                    item = get_nowait()
                except queue.Empty:
                    break
            if blink is not None and pulsed != no_pulse:
                for meter, lit in zip(meters, pulsed):
                    if lit:
                        blink(meter.config.name)
            if not behind:
                # Caught up: every edge before those clocks has been seen, so
                # a silence that long is real.
                for i, (meter, now_ns) in enumerate(zip(meters, clocks)):
                    for reading in meter.tick(now_ns):
                        journal.append(reading)
                        self._show(i, reading)
            now = time.monotonic()
            if self.retention_s > 0 and now - last_prune >= PRUNE_EVERY_S:
                self._prune()
                last_prune = now
            pending = journal.pending
            if self._flush.is_set():
                self._flush.clear()
                self._commit(flushed_at=time.time())
                last_commit = now
            elif pending and (now - last_commit >= interval or pending >= COMMIT_ROWS):
                self._commit()  # sink positions ride along: one sync
                last_commit = now
            elif now - max(last_commit, last_save) >= CURSOR_SAVE_S:
                self._commit()  # sink positions alone, after a quiet spell
                last_save = now
            if now - last_offsets >= TICK_S:  # a cheap look, once a second
                self.load_offsets()
                last_offsets = now
            for backend in self.inputs:
                problem = backend.failure()
                if problem:
                    self.log.error(
                        "input %s stopped: %s; power stops (what was read is "
                        "in the journal)",
                        backend.describe(),
                        problem,
                    )
                    self.stopping.set()
                    self.on_done()
                    return
            if finite and all(i.finished.is_set() for i in finite):
                if self.edges.empty():
                    self._commit()
                    self.exhausted.set()
                    self.on_done()
                    finite = []

    def _take(self, index: int, t_ns: int, t_wall: float, kind: int) -> bool:
        """Turn an edge into readings for the journal; True if it was a pulse."""
        readings = self._edge[index](t_ns, t_wall, kind)
        shown = self._shown[index]
        if readings:
            append = self.journal.append
            for reading in readings:
                append(reading)
                self._show(index, reading)
            self.readings += len(readings)
        if shown is not None:
            held = shown()
            if held is not None:
                self._show(index, held)
        return bool(readings) and not readings[-1].estimate

    def _show(self, index: int, reading: Reading) -> None:
        """To the live path, once: a register frame shown when it came is
        not shown again when the journal takes it."""
        if self.live is not None and reading != self._last_live[index]:
            self._last_live[index] = reading
            self.live(reading)

    def _count_rejects(self) -> None:
        """Hand the edges each meter rejected since the last commit to the
        journal, stamped with the input's own clock (a replay's time)."""
        for i, meter in enumerate(self.meters):
            now = (meter.glitches, meter.implausible, meter.ghosts)
            before = self._rejected[i]
            if now != before:
                inputs = self.inputs
                wall = inputs[i].clock()[1] if i < len(inputs) else time.time()
                delta = (now[0] - before[0], now[1] - before[1], now[2] - before[2])
                self.journal.rejects.add(meter.config.name, wall, delta)
                self._rejected[i] = now

    def _commit(self, flushed_at: Optional[float] = None) -> None:
        self._count_rejects()
        try:
            committed = self.journal.commit(flushed_at)
        except sqlite3.Error as exc:
            if not self._commit_failing:
                self.log.error(
                    "cannot write the journal %s: %s; %d readings kept in memory, "
                    "retrying every second (is the disk full?)",
                    self.journal.path,
                    exc,
                    self.journal.pending,
                )
                self._commit_failing = True
            return
        if self._commit_failing:
            self.log.warning("journal writable again; readings saved")
            self._commit_failing = False
        if committed:
            self.on_commit(self.journal.take_committed())

    def load_offsets(self) -> None:
        """Take up offsets set by `power.py register` (also while running)."""
        try:
            if not self.journal.changed_elsewhere():
                return
            for meter in self.meters:
                value = register_offset(self.journal.conn, meter.config.name)
                if value is None:  # none, or the last one withdrawn
                    value = meter.config.energy_offset_kwh
                if value != meter.offset_kwh:
                    meter.offset_kwh = value
                    self.log.info(
                        "meter %s: offset %.6f kWh from a register reading; "
                        "energy now %.3f kWh",
                        meter.config.name,
                        value,
                        meter.energy_kwh,
                    )
        except sqlite3.Error as exc:
            self.log.warning("cannot read register offsets: %s", exc)

    def _prune(self) -> None:
        now = time.time()
        try:
            removed = self.journal.prune(
                now - self.retention_s, self.sink_names, until=now + FUTURE_S
            )
        except sqlite3.Error as exc:
            self.log.warning("cannot prune the journal: %s", exc)
            return
        if removed:
            self.log.info("pruned %d old readings from the journal", removed)

    def stats(self) -> List[str]:
        # Edges whose kind the kernel read too late show how busy it was.
        return [
            f"{m.config.name}: {m.pulses} pulses, glitches {m.glitches}, "
            f"implausible {m.implausible}, ghosts {m.ghosts}"
            + (f", edge kinds restored {m.turned}" if m.turned else "")
            for m in self.meters
        ]
