"""The sink interface: open, write(batch), close, as Telegraf's outputs have.

A sink knows only how to deliver a batch of readings somewhere. Batching,
retries, backoff and the journal cursor belong to the runner, so a new sink
is one small file plus one registry entry.
"""

from __future__ import annotations

import logging
import socket
from typing import Callable, ClassVar, Dict, List, Optional, Sequence, Tuple

from core.meter import Reading
from core.options import Option
from core.version import VERSION

PROBE_TIMEOUT_S = 2.0

# Keys every sink understands; the runner uses them, not the sink.
COMMON_OPTIONS: Dict[str, Option] = {
    "type": Option("str"),
    "name": Option("str", None, nullable=True),
    "batch_size": Option("int", 1000, minimum=1, maximum=100000),
    "flush_interval_s": Option("float", 1.0, minimum=0.0, maximum=3600.0),
    "retry_max_s": Option("float", 60.0, minimum=0.1, maximum=86400.0),
}


class SinkError(Exception):
    """A write or open that failed.

    `retry` False marks a failure that will not heal by itself (bad
    credentials): the runner then waits its longest backoff between tries
    instead of hammering the server. `bad_data` marks readings refused for
    what they hold (a 4xx for a point, a time a file cannot show): the
    runner finds them by halving the batch, skips and counts them, and goes
    on with the rest.
    """

    def __init__(
        self,
        message: str,
        retry: bool = True,
        bad_data: bool = False,
        retry_after: Optional[float] = None,
    ):
        super().__init__(message)
        self.retry = retry and not bad_data
        self.bad_data = bad_data
        self.retry_after = retry_after  # seconds the server asked us to wait


def answers(host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Does anything accept a TCP connection there? (The cheapest probe: a
    server that is away costs nothing, one that is there a connection
    opened and closed.)"""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


class Sink:
    """Base class of every sink.

    Subclasses declare OPTIONS (their own keys; COMMON_OPTIONS are added)
    and implement open, write and close. Third-party libraries are imported
    in open(), so validating settings never needs them.
    """

    OPTIONS: ClassVar[Dict[str, Option]] = {}
    # False for sinks whose position is not worth keeping across restarts.
    PERSISTENT: ClassVar[bool] = True
    # True to save the position after every write rather than with the next
    # group commit, for a sink that cannot tell a reading sent twice.
    DURABLE_CURSOR: ClassVar[bool] = False
    # Third-party modules open() imports, with the package that provides
    # each: checked before start, so a Python without them is told at once.
    PACKAGES: ClassVar[Dict[str, str]] = {}
    # True for a sink that also shows readings as the meter makes them,
    # before their commit (the live path): the runner calls live() with
    # the newest reading of each meter as they come.
    LIVE: ClassVar[bool] = False

    def __init__(
        self,
        name: str,
        options: dict,
        log: logging.Logger,
        meters: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.options = options
        self.log = log
        self.meters = list(meters)  # the configured meters' names
        # Each meter's kind where it is not electricity (gas, water: its
        # energy_kwh and power_w are m3 and m3/h), set by the runtime.
        self.kinds: Dict[str, str] = {}
        self.version = VERSION
        # Set by the runner before each write: the batch may not reach the
        # journal's end (it was cut at the batch size).
        self.more_waiting = False
        # Set by the runner when every input has ended (a replay is done):
        # no more readings will come, so nothing is left to wait for.
        self.input_ended = False

    @classmethod
    def check(cls, where: str, options: dict, meters: Sequence[str]) -> None:
        """Checks across keys, or against the meters' names, when settings
        are loaded: raise SettingsError naming the setting and the fix."""

    def open(self) -> None:
        """Connect or open; raise SinkError when it cannot (it is retried)."""

    def write(self, batch: Sequence[Reading]) -> Optional[int]:
        """Deliver the batch or raise SinkError (the batch comes again).

        Return None when all of it was delivered, or how many readings from
        the front were: the rest comes again in the next batch (a sink that
        aggregates per period holds back a period still open). Writing a
        reading twice after a crash must be harmless.
        """
        raise NotImplementedError

    def live(self, readings: Sequence[Reading]) -> None:
        """The newest reading of each meter, not yet committed (LIVE sinks,
        between writes, once open). It may be lost in a power cut, so publish
        only what a later, lower value cannot harm (power, not an energy
        total), without waiting: a slow or absent server skips a value, it
        never holds up the committed readings. Never raises."""

    def probe(self) -> Optional[bool]:
        """Is the server there, asked as cheaply as it can be (a TCP connect,
        an HTTP ping)? None when the sink cannot tell. While it is away, the
        runner asks every few seconds between its long retries, so a
        returned server is written to at once. Never raises."""
        return None

    @classmethod
    def held_counts(cls, options: dict) -> Dict[str, int]:
        """Each meter's highest pulse count the sink's own record holds, read
        before the journal opens: a lost journal must not make the count
        hand out those numbers again."""
        return {}

    @classmethod
    def last_written(cls, options: dict) -> Optional[Tuple[str, int, float]]:
        """(meter, pulse count, time) of the last reading the sink's own
        record holds, for --status (None: it keeps no record of its own)."""
        return None

    def resume_after(
        self, find: Callable[[str, int], List[Tuple[int, Reading]]]
    ) -> Optional[int]:
        """After the first open: the journal sequence of the last reading the
        sink's own record holds, or None to go by the saved cursor. `find`
        gives the journal rows of a meter with a pulse count. A sink that
        keeps its own record (the CSV file) resumes exactly after it, so a
        crash neither repeats nor loses a reading there."""
        return None

    def close(self) -> None:
        """Release what open() took; never raises."""

    def is_volume(self, meter: str) -> bool:
        """Does the meter count m3 (gas, water) rather than kWh?"""
        return self.kinds.get(meter, "electricity") != "electricity"

    def describe(self) -> str:
        """Where the sink writes, for logs and --status; no secrets."""
        return self.name
