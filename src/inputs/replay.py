"""Replay backend: pulse times from a file, at any speed.

Times in the file are the replay's own clock: they stamp the readings and
drive the meter's intervals and idle timeout, so a replay at speed 0 gives
the same rows as one in real time. The file is streamed, never held whole.
A recorded edge file (`power.py watch --record`) gives each edge's own
monotonic and wall times and kind, so the meter sees what it saw live.
"""

from __future__ import annotations

from typing import Optional, Tuple

from core.meter import NS_PER_S
from core.options import Option
from core.replayfile import ReplayFileError, check_file, read_edges
from inputs.base import Backlog, EdgeCallback, InputBackend, InputError, PacedThread


class ReplayInput(InputBackend):
    OPTIONS = {
        "backend": Option("str"),
        "path": Option("path"),
        "speed": Option("number", 1.0, minimum=0.0, maximum=1_000_000_000.0),
        "meter": Option("str", None, nullable=True),
    }
    finite = True
    exclusive = False  # a file: watch may run beside a daemon

    def __init__(self, options, meter, log) -> None:
        super().__init__(options, meter, log)
        self.path = options["path"]
        self.speed = float(options["speed"])
        self._worker = PacedThread(f"replay-{meter.name}", self.speed)
        self._first: Optional[int] = None  # the first edge's ns
        self._offset = 0.0  # wall minus monotonic seconds
        self._last_ns = 0
        self._due_ns = 0
        self.count = 0
        self._failure: Optional[str] = None

    @classmethod
    def preflight(cls, options: dict) -> None:
        """Check the whole file, so a bad line stops the start (exit 2)."""
        try:
            check_file(options["path"], options["meter"])
        except OSError as exc:
            raise InputError(
                f"cannot read replay file {options['path']}: {exc.strerror}"
            ) from None
        except ReplayFileError as exc:
            raise InputError(str(exc)) from None

    def describe(self) -> str:
        return f"replay of {self.path} at speed {self.speed:g}"

    def start(self, on_edge: EdgeCallback, backlog: Backlog) -> None:
        def run() -> None:
            try:
                for _, t_ns, wall, kind in read_edges(self.path, self.options["meter"]):
                    if self._first is None:
                        self._first = t_ns
                        self._offset = wall - t_ns / NS_PER_S
                    self._due_ns = t_ns  # the clock must not pass it yet
                    if not self._worker.wait_until(
                        (t_ns - self._first) / NS_PER_S, backlog
                    ):
                        return
                    on_edge(t_ns, wall, kind)
                    self._last_ns = t_ns  # only once it is queued
                    self.count += 1
            except (OSError, ReplayFileError) as exc:
                self._failure = (
                    f"replay of {self.path} stopped after {self.count} pulses: {exc}"
                )
                self.finished.set()
                return
            self.log.info("replay of %s done: %d edges", self.path, self.count)
            self.finished.set()

        self._worker.begin(run)

    def failure(self) -> Optional[str]:
        return self._failure or self._worker.error

    def clock(self) -> Tuple[int, float]:
        """The replay's own time: never past an edge not yet queued, so the
        meter's idle timeout cannot fire inside a gap that is not there."""
        last = self._last_ns
        if self._first is None or self.speed == 0 or self.finished.is_set():
            ns = last
        else:
            ns = self._first + int(self._worker.elapsed_virtual() * NS_PER_S)
            if self._due_ns > last:
                ns = min(ns, self._due_ns - 1)
            ns = max(ns, last)
        return ns, ns / NS_PER_S + self._offset

    def stop(self) -> None:
        self._worker.end()
