"""The running daemon as its HTTP endpoints see it: a Snapshot of the
meters, the sinks and the journal, built with plain attribute reads so that
looking never touches the pulse path, and the health verdict drawn from it.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from dataclasses import dataclass
from typing import Deque, Dict, List, Optional, Sequence, Tuple

from core.live import LiveFeed
from core.meter import Reading


class CommitLog:
    """What the exporter needs from commits, kept from the monitor's commit
    callback (once a second at most, never per pulse): the newest reading of
    each meter, and when recent rows were committed, so a sink's delay is
    measured from when its oldest unwritten reading was committed."""

    KEEP = 4000  # commits remembered (over an hour of steady pulses)

    def __init__(self, last_seq: int, start_pulses: Dict[str, int]) -> None:
        self._lock = threading.Lock()
        self.start_pulses = dict(start_pulses)  # each meter's count at start
        self._last: Dict[str, Reading] = {}
        # (last seq of a commit, its monotonic time); rows already in the
        # journal at start count as committed at start.
        self._commits: Deque[Tuple[int, float]] = collections.deque(
            [(last_seq, time.monotonic())], maxlen=self.KEEP
        )

    def update(self, rows: Sequence[Tuple[int, Reading]]) -> None:
        if not rows:
            return
        with self._lock:
            last = self._last
            for _, r in rows:
                last[r.meter] = r
            self._commits.append((rows[-1][0], time.monotonic()))

    def last(self, meter: str) -> Optional[Reading]:
        """The meter's newest committed reading."""
        with self._lock:
            return self._last.get(meter)

    def waiting_since(self, cursor: int) -> Optional[float]:
        """Monotonic time the oldest row after `cursor` was committed; None
        when there is none."""
        with self._lock:
            if not self._commits or self._commits[-1][0] <= cursor:
                return None
            for last_seq, at in self._commits:
                if last_seq > cursor:
                    return at
        return None


@dataclass(frozen=True)
class SinkState:
    name: str
    backlog: Optional[int]  # None until the sink's position is known
    failing_for_s: Optional[float]  # None while it works
    last_write: Optional[float]  # epoch seconds of its last successful write
    last_error: str  # its failing streak's latest error, unmasked ("" if healthy)
    waiting_for_s: float  # how long its oldest waiting reading has waited


@dataclass(frozen=True)
class MeterState:
    name: str
    energy_kwh: float
    pulses: int
    glitches: int
    rejected: int
    ghosts: int
    power_w: Optional[float]
    last_pulse: Optional[float]
    export_kwh: Optional[float] = None  # where the meter has export
    kind: str = "electricity"
    drift_per_day: Optional[float] = None  # pulses against its register


@dataclass(frozen=True)
class Snapshot:
    meters: List[MeterState]
    sinks: List[SinkState]
    journal_bytes: int
    monitor_running: bool


def health(s: Snapshot, max_delay_s: float) -> List[str]:
    """Why the daemon is unhealthy; empty when it is healthy."""
    problems = []
    if not s.monitor_running:
        problems.append("the monitor has stopped")
    for k in s.sinks:
        if k.failing_for_s is not None and k.failing_for_s > max_delay_s:
            problems.append(
                f"sink {k.name} has been failing for {k.failing_for_s:.0f} s"
            )
        elif k.waiting_for_s > max_delay_s:
            problems.append(
                f"sink {k.name} has {k.backlog} readings waiting, unwritten "
                f"for {k.waiting_for_s:.0f} s"
            )
    return problems


class StateReader:
    """Builds a Snapshot from the running parts, with plain attribute reads:
    the commit log, the live feed, the meters' glitch counters and the
    runners' cursors. Totals (energy, pulses) are the committed ones, so a
    counter never goes back after a crash; power and the last pulse come
    from the live feed, as the meter has them now."""

    def __init__(
        self, monitor, runners, journal, commits: CommitLog, feed: LiveFeed
    ) -> None:
        self.monitor = monitor
        self.runners = list(runners)
        self.journal = journal
        self.commits = commits
        self.feed = feed
        # Pulses a day each LED meter drifts from its register (set by the
        # runtime where METERS name a register_meter).
        self.drift: Dict[str, float] = {}

    def __call__(self) -> Snapshot:
        meters = []
        for m in self.monitor.meters:
            # Energy, pulses and power from one committed reading, so they
            # agree with each other and with what the sinks have.
            c = m.config
            last = self.commits.last(c.name)
            if last is None:
                pulses = self.commits.start_pulses.get(c.name, 0)
                energy = c.energy_offset_kwh + pulses / c.pulses_per_kwh
            else:
                pulses, energy = last.pulses, last.energy_kwh
            now, pulse_at = self.feed.latest(c.name)
            meters.append(
                MeterState(
                    name=c.name,
                    energy_kwh=energy,
                    pulses=pulses,
                    glitches=m.glitches,
                    rejected=m.implausible,
                    ghosts=m.ghosts,
                    power_w=None if now is None else now.power_w,
                    last_pulse=pulse_at,
                    export_kwh=None if last is None else last.export_kwh,
                    kind=c.kind,
                    drift_per_day=self.drift.get(c.name),
                )
            )
        end = self.journal.last_seq
        mono = time.monotonic()
        sinks = []
        for r in self.runners:
            cursor = r.cursor
            since = self.commits.waiting_since(cursor) if cursor >= 0 else None
            sinks.append(
                SinkState(
                    name=r.name,
                    backlog=max(0, end - cursor) if cursor >= 0 else None,
                    failing_for_s=r.failing_for_s,
                    last_write=r.last_write,
                    last_error=r.last_error,
                    waiting_for_s=0.0 if since is None else mono - since,
                )
            )
        running = not self.monitor.stopping.is_set() and not self.monitor.join(0)
        return Snapshot(meters, sinks, file_size(self.journal.path), running)


def file_size(path: str) -> int:
    """Bytes of the journal and its WAL (0 for what is not there)."""
    total = 0
    for suffix in ("", "-wal"):
        try:
            total += os.stat(path + suffix).st_size
        except OSError:
            pass
    return total
