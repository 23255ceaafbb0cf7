"""Status LEDs: 'ready' lit while running, 'detect' blinks on each pulse.

The original monitor started a thread per flash; here one worker serves
every LED. blink() only records a deadline; it wakes the worker only when
the LED has to be switched on, so at 120 pulses a second the worker wakes
no more than it switches (an LED lit by the blink before stays lit, and the
worker, waking at the old deadline, finds the new one and sleeps on).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Dict, Optional

from inputs.base import LedOutput


class StatusLeds:
    def __init__(
        self,
        ready: Optional[LedOutput],
        detect: Dict[str, LedOutput],
        blink_s: float,
        log: logging.Logger,
    ) -> None:
        self.ready = ready
        self.detect = detect
        self.blink_s = blink_s
        self.log = log
        self._off_at: Dict[str, float] = {}
        self._lit: Dict[str, bool] = {name: False for name in detect}
        self._event = threading.Event()
        self._stopping = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="leds", daemon=True)

    def start(self) -> None:
        if self.ready is not None:
            self.ready.set(True)
        if self.detect:
            self._thread.start()

    def blink(self, meter: str) -> None:
        """Light a meter's detect LED for blink_s; cheap and never blocks."""
        if meter in self.detect:
            with self._lock:
                lit = meter in self._off_at
                self._off_at[meter] = time.monotonic() + self.blink_s
            if not lit:  # else the worker sees the new deadline when due
                self._event.set()

    def _run(self) -> None:
        while not self._stopping:
            now = time.monotonic()
            with self._lock:
                # A deadline passed is dropped here, under the lock, so the
                # next blink() sees an unlit LED and wakes this worker.
                for name in [n for n, t in self._off_at.items() if t <= now]:
                    del self._off_at[name]
                due = dict(self._off_at)
                self._event.clear()
            for name in self.detect:
                want = name in due
                if want != self._lit[name]:
                    self._switch(name, want)
            timeout = min(due.values()) - now if due else None
            self._event.wait(timeout)

    def _switch(self, name: str, on: bool) -> None:
        self._lit[name] = on
        try:
            self.detect[name].set(on)
        except (RuntimeError, OSError, ValueError) as exc:
            self.log.debug("detect LED of %s: %s", name, exc)

    def stop(self) -> None:
        self._stopping = True
        self._event.set()
        if self._thread.is_alive():
            self._thread.join(1.0)
        for led in list(self.detect.values()) + [self.ready]:
            if led is None:
                continue
            try:
                led.set(False)
                led.close()
            except (RuntimeError, OSError, ValueError) as exc:
                self.log.debug("LED %s: %s", led.pin, exc)
