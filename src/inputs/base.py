"""The input backend interface: start(on_edge), stop(), clock(), led(pin).

A backend turns meter flashes into calls of on_edge(t_mono_ns, t_wall, kind):
a monotonic timestamp in nanoseconds for intervals, the wall clock for the
reading, and what the edge is (meter.PULSE when only the pulse edge is
seen; meter.START and meter.END for both edges of a flash, so the meter can
check its width). That call is the whole pulse path: it only enqueues. Simulated and
replayed meters run on a clock of their own, which clock() reports so the
meter's idle timeout follows the same time as the edges.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, ClassVar, Dict, List, Optional, Tuple

from core.edgekinds import EdgeCallback
from core.meter import MeterConfig
from core.options import Option

__all__ = ["EdgeCallback"]  # the backends' one call, defined with the edge kinds
Backlog = Callable[[], int]


class InputError(Exception):
    """The input cannot start (missing library, no permission, bad pin)."""


class LedOutput:
    """One status LED. The base class only logs, for machines without GPIO."""

    def __init__(self, pin: int, log: logging.Logger) -> None:
        self.pin = pin
        self.log = log

    def set(self, on: bool) -> None:
        self.log.debug("LED %s %s", self.pin, "on" if on else "off")

    def close(self) -> None:
        """Leave the pin as the system had it."""


class InputBackend:
    """Base class of every input backend.

    `finite` backends (a replay) end by themselves and set `finished`.
    `exclusive` backends read a device only one process may hold (a GPIO
    line, a serial port): `watch` leaves them to a running daemon.
    """

    OPTIONS: ClassVar[Dict[str, Option]] = {}
    finite: ClassVar[bool] = False
    exclusive: ClassVar[bool] = True
    # True for inputs that read the meter's register (sml, d0, p1): they
    # hand on register frames (core/regmeter.py), not edges.
    REGISTER: ClassVar[bool] = False

    def __init__(self, options: dict, meter: MeterConfig, log: logging.Logger):
        self.options = options
        self.meter = meter
        self.log = log
        self.finished = threading.Event()

    @classmethod
    def preflight(cls, options: dict) -> None:
        """Check, before any fork and without touching GPIO, that this backend
        can run here; raise InputError (or ReplayFileError) if not."""

    def start(self, on_edge: EdgeCallback, backlog: Backlog) -> None:
        """Begin calling on_edge. `backlog` tells how many edges wait to be
        processed, for backends that can pause (simulations, replays)."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop promptly; never wait for a pulse."""

    def failure(self) -> Optional[str]:
        """Why the backend stopped delivering edges on its own, or None.
        The monitor stops power (exit 1) on it: a daemon without input must
        not run on as if all were well."""
        return None

    def clock(self) -> Tuple[int, float]:
        """The backend's (monotonic ns, wall) time now."""
        return time.monotonic_ns(), time.time()

    def led(self, pin: int) -> LedOutput:
        """An output for a status LED on this backend's GPIO."""
        return LedOutput(pin, self.log)

    def describe(self) -> str:
        return type(self).__name__

    def feeds(self) -> List[str]:
        """Other meters this input reads as well (P1's gas meter)."""
        return []

    def attach(self, meter: str, on_edge: EdgeCallback) -> None:
        """The pulse path of another meter it feeds (see feeds())."""


class FedInput(InputBackend):
    """The input of a meter another input reads (P1's gas and water): it
    does nothing itself; the other input hands on its frames."""

    OPTIONS = {"backend": Option("str"), "from": Option("str")}
    REGISTER = True

    def start(self, on_edge: EdgeCallback, backlog: Backlog) -> None:
        pass

    def describe(self) -> str:
        return f"the input of meter {self.options['from']}"


class PacedThread:
    """A worker for virtual-time backends: sleeps until each event is due,
    wakes at once on stop, and pauses while the monitor is behind."""

    MAX_BACKLOG = 10000
    MAX_SLEEP_S = 3600.0  # one wait; Event.wait overflows past ~292 years

    def __init__(self, name: str, speed: float) -> None:
        self.speed = speed
        self.stopping = threading.Event()
        self.name = name
        self._thread: Optional[threading.Thread] = None
        self._start_mono = 0.0
        self._count = 0
        self.error: Optional[str] = None  # what ended the worker unexpectedly

    def begin(self, target: Callable[[], None]) -> None:
        def guarded() -> None:
            try:
                target()
            except Exception as exc:  # recorded; the monitor stops power on it
                self.error = f"{type(exc).__name__}: {exc}"

        self._start_mono = time.monotonic()
        self._thread = threading.Thread(target=guarded, name=self.name, daemon=True)
        self._thread.start()

    def elapsed_virtual(self) -> float:
        """Virtual seconds since begin() at this speed (0 speed: undefined)."""
        return (time.monotonic() - self._start_mono) * self.speed

    def wait_until(self, virtual_s: float, backlog: Backlog) -> bool:
        """Sleep until `virtual_s` after begin(); False when stopping."""
        if self.speed > 0:
            due = self._start_mono + virtual_s / self.speed
            while True:  # long gaps and tiny speeds: in bounded waits
                delay = due - time.monotonic()
                if delay <= 0:
                    break
                if self.stopping.wait(min(delay, self.MAX_SLEEP_S)):
                    return False
        else:  # as fast as possible: look at the backlog now and then only
            self._count += 1
            if self._count % 256:
                return True
        while backlog() > self.MAX_BACKLOG:
            if self.stopping.wait(0.001):
                return False
        return not self.stopping.is_set()

    def end(self) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(2.0)
