"""Prometheus exporter: /metrics and /healthz on one port (METRICS).

Prometheus pulls, so this is not a sink: the daemon's HTTP server
(web/server.py, where an idle or slow client holds only itself) answers
scrapes. Values are gathered when scraped, by a custom collector reading
state the daemon keeps anyway (counters on the meters, the last committed
reading of each meter, the live feed's newest reading, each sink runner's
cursor), so a scrape never touches the pulse path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Dict, Iterator, Optional

from core.options import Option, SettingsError, show, validate
from web.listen import DEFAULT_HOST, check_listen, parse_listen, where
from web.server import Request, Response, Route
from web.state import health

OPTIONS: Dict[str, Option] = {
    "listen": Option("any", f"{DEFAULT_HOST}:9464", check=check_listen),
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
        return where(self.host, self.port)


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
        exported = CounterMetricFamily(
            "power_meter_export_kwh",
            "Energy exported to the grid, as the meter counts it (kWh)",
            labels=["meter"],
        )
        volume = CounterMetricFamily(
            "power_meter_volume_m3",
            "Volume counted by a gas or water meter, offset included (m³)",
            labels=["meter"],
        )
        flow = GaugeMetricFamily(
            "power_meter_flow_m3_per_hour",
            "Mean flow of a gas or water meter before the last reading (m³/h)",
            labels=["meter"],
        )
        drift = GaugeMetricFamily(
            "power_meter_register_drift_pulses_per_day",
            "Pulses the LED missed (positive) or counted extra (negative) "
            "against the meter's register, a day",
            labels=["meter"],
        )
        for m in s.meters:
            if m.drift_per_day is not None:
                drift.add_metric([m.name], m.drift_per_day)
            # A gas or water meter's total and rate are m³ and m³/h.
            volumetric = m.kind != "electricity"
            total = round(m.energy_kwh, 6)  # as every sink
            (volume if volumetric else energy).add_metric([m.name], total)
            if m.export_kwh is not None:
                exported.add_metric([m.name], round(m.export_kwh, 6))
            pulses.add_metric([m.name], m.pulses)
            glitches.add_metric([m.name], m.glitches)
            rejected.add_metric([m.name], m.rejected)
            ghosts.add_metric([m.name], m.ghosts)
            if m.power_w is not None:
                (flow if volumetric else watts).add_metric([m.name], m.power_w)
            if m.last_pulse is not None:
                last_pulse.add_metric([m.name], m.last_pulse)
        yield from (energy, pulses, glitches, rejected, ghosts, watts, last_pulse)
        yield from (exported, volume, flow, drift)

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


class Exporter:
    """The collector and the routes that serve it (the Service puts them on
    a web.server.Server)."""

    def __init__(self, setup: MetricsSetup, snapshot, log: logging.Logger) -> None:
        from prometheus_client import CollectorRegistry
        from prometheus_client.process_collector import ProcessCollector

        self.setup = setup
        self.snapshot = snapshot
        self.log = log
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(PowerCollector(snapshot))
        ProcessCollector(registry=self.registry)

    def routes(self) -> Dict[str, Route]:
        """/metrics, /healthz, and / saying so (a page on the same port
        takes / over)."""
        return {"/metrics": self._metrics, "/healthz": self._healthz, "/": self._index}

    def _metrics(self, request: Request) -> Response:
        from prometheus_client.exposition import choose_encoder

        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(200, encoder(self.registry), content_type)

    def _healthz(self, request: Request) -> Response:
        problems = health(self.snapshot(), self.setup.max_sink_delay_s)
        text = "; ".join(problems) if problems else "ok"
        return Response(503 if problems else 200, (text + "\n").encode())

    def _index(self, request: Request) -> Response:
        body = b'power exporter: <a href="/metrics">/metrics</a>, /healthz\n'
        return Response(200, body, "text/html; charset=utf-8")
