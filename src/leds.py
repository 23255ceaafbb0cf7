"""Status LEDs: 'ready' lit while running, 'detect' blinks on each pulse.

The original monitor started a thread per flash; here one worker serves
every LED. blink() only records a deadline and sets an event, so a burst of
pulses costs nothing and an LED stays lit through overlapping blinks.
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
                self._off_at[meter] = time.monotonic() + self.blink_s
            self._event.set()

    def _run(self) -> None:
        while not self._stopping:
            with self._lock:
                due = dict(self._off_at)
            now = time.monotonic()
            next_change = None
            for name, off_at in due.items():
                want = off_at > now
                if want != self._lit[name]:
                    self._switch(name, want)
                if want and (next_change is None or off_at < next_change):
                    next_change = off_at
            timeout = None if next_change is None else max(0.0, next_change - now)
            self._event.wait(timeout)
            self._event.clear()

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
