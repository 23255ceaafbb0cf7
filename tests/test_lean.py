"""Bounded memory: a replay at full speed pauses while a sink stalls, rather
than piling readings up in memory (counts asserted, not timings)."""

from __future__ import annotations

import logging
import threading
import time

from conftest import read_csv, steady_pulses, write_replay

import config.settings
from core.monitor import COMMIT_ROWS, RUN
from inputs.base import PacedThread
from service.runtime import Service
from sinks.file import FileSink
from sinks.runner import AHEAD_ROWS

LOG = logging.getLogger("test_lean")


def settled(value, timeout: float = 60.0):
    """Wait until value() stops changing; its last value."""
    deadline = time.monotonic() + timeout
    last = value()
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = value()
        if now == last:
            return now
        last = now
    raise AssertionError(f"still moving after {timeout} s: {last}")


def test_replay_pauses_while_a_sink_stalls(tmp_path, monkeypatch):
    n = 120_000
    replay = write_replay(tmp_path / "pulses.txt", steady_pulses(n))
    csv = tmp_path / "power.csv"
    values = {
        "METER": {"name": "main", "pulses_per_kwh": 1000, "estimate_fall": 0},
        "INPUT": {"backend": "replay", "path": str(replay), "speed": 0},
        "DATA_DIR": str(tmp_path / "data"),
        "SINKS": [{"type": "file", "path": str(csv)}],
    }
    (tmp_path / "data").mkdir()
    settings = config.settings.parse(values, str(tmp_path / "settings.py"))
    gate, stalled = threading.Event(), threading.Event()
    write = FileSink.write

    def stalling_write(self, batch):
        stalled.set()
        gate.wait(120)  # the sink hangs (a slow disk), without failing
        return write(self, batch)

    monkeypatch.setattr(FileSink, "write", stalling_write)
    service = Service(settings, LOG)
    try:
        service.start()
        assert stalled.wait(30)
        replay_input = service.inputs[0]
        read = settled(lambda: replay_input.count)
        journal, runner = service.journal, service.runners[0]
        assert not runner.failing
        # Held back well before the end of the file ...
        assert read < n // 2
        # ... with what waits in memory bounded by the back-pressure: edges
        # queued, readings pending for the next commit, rows handed to the
        # stalled sink.
        assert journal.pending < COMMIT_ROWS + RUN
        queued = service.monitor.backlog()
        assert queued <= PacedThread.MAX_BACKLOG + 256
        bound = AHEAD_ROWS + PacedThread.MAX_BACKLOG + COMMIT_ROWS + RUN + 256
        assert runner.inbox_rows + journal.pending + queued <= bound
        assert journal.committed == []  # handed on, not kept
        gate.set()
        assert service.wait() == 0  # the replay goes on to the end and drains
    finally:
        gate.set()
        service.stop()
    assert [int(r["pulses"]) for r in read_csv(csv)] == list(range(1, n + 1))
