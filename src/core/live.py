"""The live path: each reading as the meter makes it, before its commit.

Readings are committed to the journal in groups (COMMIT_INTERVAL_S) to
spare the SD card; what people watch (the console, the power Home Assistant
shows, the Prometheus gauges, the web page) must not wait for that. The
monitor hands every reading to a LiveFeed right after the meter made it;
the feed keeps the newest of each meter and passes the reading to its
subscribers. Publishing never blocks and never allocates per subscriber
more than a bounded queue: a slow watcher loses old readings, never the
monitor's time.

What goes out live may be lost with the uncommitted tail in a power cut,
so only values a later, lower one cannot harm go out live (power, flow);
energy totals published to others follow the commit.
"""

from __future__ import annotations

import collections
import threading
from typing import Callable, Deque, Dict, List, Optional, Tuple

from core.meter import Reading

Subscriber = Callable[[Reading], None]


class LiveFeed:
    """Fans each reading out to its subscribers, on the monitor's thread.

    Subscribers are added before the monitor starts and must return at
    once (set a value, append to a bounded deque, set an event)."""

    def __init__(self) -> None:
        self._latest: Dict[str, Reading] = {}
        self._pulse_at: Dict[str, float] = {}
        self._subscribers: Tuple[Subscriber, ...] = ()

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers = self._subscribers + (subscriber,)

    def publish(self, reading: Reading) -> None:
        """A reading the meter just made (the monitor's thread)."""
        before = self._latest.get(reading.meter)
        if not reading.estimate and (before is None or reading.pulses != before.pulses):
            self._pulse_at[reading.meter] = reading.time
        self._latest[reading.meter] = reading
        for subscriber in self._subscribers:
            subscriber(reading)

    def latest(self, meter: str) -> Tuple[Optional[Reading], Optional[float]]:
        """The meter's newest reading and the time of its last pulse, as the
        meter has them now (plain reads: safe from any thread)."""
        return self._latest.get(meter), self._pulse_at.get(meter)

    @property
    def active(self) -> bool:
        return bool(self._subscribers)


class LatestReadings:
    """A subscriber keeping the newest reading of each meter until taken,
    for a watcher that shows a current value (a gauge, a power topic):
    in between, newer readings replace older ones."""

    def __init__(self, wake: Optional[threading.Event] = None) -> None:
        self.wake = wake if wake is not None else threading.Event()
        self._waiting: Dict[str, Reading] = {}
        self._lock = threading.Lock()

    def __call__(self, reading: Reading) -> None:
        with self._lock:
            self._waiting[reading.meter] = reading
        self.wake.set()

    def take(self) -> List[Reading]:
        """The newest reading of each meter that has one waiting."""
        with self._lock:
            if not self._waiting:
                return []
            taken = list(self._waiting.values())
            self._waiting = {}
        return taken


class ReadingQueue:
    """A subscriber keeping every reading, up to `limit`, for a watcher that
    shows each one (the console, an event stream). When it is full the
    oldest go and are counted in `dropped`."""

    def __init__(self, limit: int, wake: Optional[threading.Event] = None) -> None:
        self.limit = limit
        self.wake = wake if wake is not None else threading.Event()
        self.dropped = 0
        self._queue: Deque[Reading] = collections.deque()
        self._lock = threading.Lock()

    def __call__(self, reading: Reading) -> None:
        with self._lock:
            if len(self._queue) >= self.limit:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(reading)
        self.wake.set()

    def __len__(self) -> int:
        return len(self._queue)

    def take(self) -> List[Reading]:
        """Every reading waiting, oldest first."""
        with self._lock:
            taken = list(self._queue)
            self._queue.clear()
        return taken
