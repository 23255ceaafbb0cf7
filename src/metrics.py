"""Prometheus exporter: /metrics and /healthz on one port (METRICS).

Prometheus pulls, so this is not a sink: a small HTTP server answers
scrapes. Values are gathered when scraped, by a custom collector reading
state the daemon keeps anyway (counters on the meters, the last committed
reading of each meter, each sink runner's cursor), so a scrape never touches
the pulse path. Each connection has its own thread with a socket timeout and
their number is bounded, so a slow or stuck scraper holds only itself.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Deque, Dict, Iterator, List, Optional, Sequence, Tuple

from meter import Reading
from options import Option, SettingsError, show, validate

DEFAULT_HOST = "127.0.0.1"  # loopback unless another address is named
CLIENT_TIMEOUT_S = 5.0  # a scraper that stalls longer is dropped
MAX_CLIENTS = 8  # connections served at once; more are closed at once
POLL_S = 0.1  # how soon stop() is noticed


def parse_listen(value: Any) -> Tuple[str, int]:
    """'HOST:PORT', '[v6]:PORT', ':PORT', 'PORT' or an int port -> (host, port);
    ValueError with what is expected otherwise."""
    expected = (
        "expected 'HOST:PORT' (e.g. '127.0.0.1:9464', '0.0.0.0:9464', "
        "'[::1]:9464') or a port number"
    )
    if isinstance(value, bool):
        raise ValueError(expected)
    if isinstance(value, int):
        host, port_text = DEFAULT_HOST, str(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            host, sep, port_text = text[1:].partition("]:")
            if not sep:
                raise ValueError(expected)
        elif ":" in text:
            host, _, port_text = text.rpartition(":")
        else:
            host, port_text = "", text
        host = host or DEFAULT_HOST
    else:
        raise ValueError(expected)
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(expected + "; the port must be from 1 to 65535")
    return host, int(port_text)


def _check_listen(value: Any) -> Optional[str]:
    try:
        parse_listen(value)
    except ValueError as exc:
        return str(exc)
    return None


OPTIONS: Dict[str, Option] = {
    "listen": Option("any", f"{DEFAULT_HOST}:9464", check=_check_listen),
    # /healthz fails when a sink has had readings waiting, or kept failing,
    # for longer than this.
    "max_sink_delay_s": Option("number", 300.0, minimum=1.0, maximum=86400.0),
}


@dataclass(frozen=True)
class MetricsSetup:
    host: str
    port: int
    max_sink_delay_s: float

    @property
    def where(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse(given: Any) -> Optional[MetricsSetup]:
    """METRICS from settings.py: None (off) or a dict of OPTIONS."""
    if given is None:
        return None
    if not isinstance(given, dict):
        raise SettingsError(
            f"METRICS = {show(given)}: expected None (off) or a dict such as "
            f"{{'listen': '{DEFAULT_HOST}:9464'}}"
        )
    values = validate("METRICS", given, OPTIONS)
    host, port = parse_listen(values["listen"])
    return MetricsSetup(host, port, float(values["max_sink_delay_s"]))


class PortInUseError(Exception):
    """Another program listens on the port: a runtime failure (exit 1)."""


def family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def check_port(setup: MetricsSetup) -> None:
    """Before forking: bind the address once, as the server will. A port in
    use raises PortInUseError; an address this machine does not have, or a port
    this user may not bind, is a settings mistake (SettingsError)."""
    where = f"METRICS['listen'] = {setup.where!r}"
    try:
        infos = socket.getaddrinfo(
            setup.host, setup.port, family(setup.host), socket.SOCK_STREAM
        )
    except socket.gaierror as exc:
        raise SettingsError(
            f"{where}: unknown host ({exc.strerror}); name an address of this "
            "machine such as 127.0.0.1, or 0.0.0.0 for every interface"
        ) from None
    sock = socket.socket(infos[0][0], socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(infos[0][4])
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(
                f"{where}: port {setup.port} is in use by another program "
                "(another power?); stop it or choose another port"
            ) from None
        if exc.errno == errno.EACCES:
            raise SettingsError(
                f"{where}: this user may not listen on port {setup.port}; "
                "choose a port above 1023"
            ) from None
        raise SettingsError(
            f"{where}: cannot listen there ({exc.strerror}); name an address "
            "of this machine such as 127.0.0.1, or 0.0.0.0 for every interface"
        ) from None
    finally:
        sock.close()


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
        self._pulse_at: Dict[str, float] = {}
        # (last seq of a commit, its monotonic time); rows already in the
        # journal at start count as committed at start.
        self._commits: Deque[Tuple[int, float]] = collections.deque(
            [(last_seq, time.monotonic())], maxlen=self.KEEP
        )

    def update(self, rows: Sequence[Tuple[int, Reading]]) -> None:
        if not rows:
            return
        with self._lock:
            last, pulse_at = self._last, self._pulse_at
            for _, r in rows:
                before = last.get(r.meter)
                # A new pulse count, not an idle reading repeating the last.
                if (r.pulses != before.pulses) if before else r.power_w != 0.0:
                    pulse_at[r.meter] = r.time
                last[r.meter] = r
            self._commits.append((rows[-1][0], time.monotonic()))

    def last(self, meter: str) -> Tuple[Optional[Reading], Optional[float]]:
        """The meter's newest committed reading and the time of its last pulse."""
        with self._lock:
            return self._last.get(meter), self._pulse_at.get(meter)

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


@dataclass(frozen=True)
class Snapshot:
    meters: List[MeterState]
    sinks: List[SinkState]
    journal_bytes: int
    monitor_running: bool


class PowerCollector:
    """A prometheus_client custom collector over the daemon's snapshot."""

    def __init__(self, snapshot) -> None:
        self.snapshot = snapshot  # () -> Snapshot

    def describe(self) -> list:
        return []  # names are not known before the first snapshot; no checks

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        s = self.snapshot()
        energy = CounterMetricFamily(
            "power_meter_energy_kwh",
            "Energy counted by the meter, offset included (kWh)",
            labels=["meter"],
        )
        pulses = CounterMetricFamily(
            "power_meter_pulses", "Pulses counted", labels=["meter"]
        )
        glitches = CounterMetricFamily(
            "power_meter_glitches",
            "Edges ignored inside the debounce window",
            labels=["meter"],
        )
        rejected = CounterMetricFamily(
            "power_meter_rejected",
            "Edges rejected as implausible (above max_power_w)",
            labels=["meter"],
        )
        ghosts = CounterMetricFamily(
            "power_meter_ghosts",
            "Flashes rejected by their width (min_pulse_ms, max_pulse_ms)",
            labels=["meter"],
        )
        watts = GaugeMetricFamily(
            "power_meter_power_watts",
            "Mean power over the interval before the last reading (W)",
            labels=["meter"],
        )
        last_pulse = GaugeMetricFamily(
            "power_meter_last_pulse_timestamp_seconds",
            "Time of the last reading with a new pulse (Unix time)",
            labels=["meter"],
        )
        for m in s.meters:
            energy.add_metric([m.name], m.energy_kwh)
            pulses.add_metric([m.name], m.pulses)
            glitches.add_metric([m.name], m.glitches)
            rejected.add_metric([m.name], m.rejected)
            ghosts.add_metric([m.name], m.ghosts)
            if m.power_w is not None:
                watts.add_metric([m.name], m.power_w)
            if m.last_pulse is not None:
                last_pulse.add_metric([m.name], m.last_pulse)
        yield from (energy, pulses, glitches, rejected, ghosts, watts, last_pulse)

        backlog = GaugeMetricFamily(
            "power_sink_backlog_readings",
            "Committed readings the sink has not written yet",
            labels=["sink"],
        )
        failing = GaugeMetricFamily(
            "power_sink_failing",
            "1 while the sink's writes fail (it retries with backoff), else 0",
            labels=["sink"],
        )
        last_write = GaugeMetricFamily(
            "power_sink_last_write_timestamp_seconds",
            "Time of the sink's last successful write (Unix time)",
            labels=["sink"],
        )
        for k in s.sinks:
            if k.backlog is not None:
                backlog.add_metric([k.name], k.backlog)
            failing.add_metric([k.name], 0 if k.failing_for_s is None else 1)
            if k.last_write is not None:
                last_write.add_metric([k.name], k.last_write)
        yield from (backlog, failing, last_write)

        yield GaugeMetricFamily(
            "power_journal_size_bytes",
            "Size of the journal on disk, write-ahead log included",
            value=s.journal_bytes,
        )
        yield GaugeMetricFamily(
            "power_monitor_up",
            "1 while the monitor thread takes pulses, else 0",
            value=1 if s.monitor_running else 0,
        )


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
    the commit log, the meters' glitch counters and the runners' cursors."""

    def __init__(self, monitor, runners, journal, commits: CommitLog) -> None:
        self.monitor = monitor
        self.runners = list(runners)
        self.journal = journal
        self.commits = commits

    def __call__(self) -> Snapshot:
        meters = []
        for m in self.monitor.meters:
            # Energy, pulses and power from one committed reading, so they
            # agree with each other and with what the sinks have.
            c = m.config
            last, pulse_at = self.commits.last(c.name)
            if last is None:
                pulses = self.commits.start_pulses.get(c.name, 0)
                energy = c.energy_offset_kwh + pulses / c.pulses_per_kwh
            else:
                pulses, energy = last.pulses, last.energy_kwh
            meters.append(
                MeterState(
                    name=c.name,
                    energy_kwh=energy,
                    pulses=pulses,
                    glitches=m.glitches,
                    rejected=m.implausible,
                    ghosts=m.ghosts,
                    power_w=None if last is None else last.power_w,
                    last_pulse=pulse_at,
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
                    waiting_for_s=0.0 if since is None else mono - since,
                )
            )
        running = not self.monitor.stopping.is_set() and not self.monitor.join(0)
        return Snapshot(meters, sinks, file_size(self.journal.path), running)


class Exporter:
    """The HTTP server and its collector; start() raises OSError if the
    address cannot be bound."""

    def __init__(self, setup: MetricsSetup, snapshot, log: logging.Logger) -> None:
        from prometheus_client import CollectorRegistry
        from prometheus_client.process_collector import ProcessCollector

        self.setup = setup
        self.snapshot = snapshot
        self.log = log
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(PowerCollector(snapshot))
        ProcessCollector(registry=self.registry)
        self._server: Any = None  # a metricshttp.Server once started
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        # http.server is imported only here: a run without METRICS does not
        # pay for it at start (a twentieth of a second here, more on a Pi).
        from metricshttp import Handler, Server

        self._server = Server((self.setup.host, self.setup.port), Handler, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": POLL_S},
            name="metrics",
            daemon=True,
        )
        self._thread.start()
        self.log.info("serving /metrics and /healthz on http://%s", self.setup.where)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def file_size(path: str) -> int:
    """Bytes of the journal and its WAL (0 for what is not there)."""
    total = 0
    for suffix in ("", "-wal"):
        try:
            total += os.stat(path + suffix).st_size
        except OSError:
            pass
    return total
