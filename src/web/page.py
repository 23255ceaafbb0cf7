"""The web page (WEB): live power, the day and the month, the sinks and the
sensor, for a Pi on the meter cupboard that has no screen.

Read-only: every route answers a GET from what the daemon has (the live
feed, the journal, the meters' judgements, the sinks' state) and changes
nothing. The page is plain HTML, CSS and a little JavaScript served from
web/page/ (no CDN, no build step): charts are SVG the page draws. Power
comes as server-sent events from the live path, one per reading; the rest
is fetched now and then. No secret ever goes out: sink errors are masked
as the log masks them, and settings are never shown.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from core.judge import EdgeJudge, FrameJudge
from core.live import LiveFeed, ReadingQueue
from core.meter import ELECTRICITY, MeterConfig, Reading
from core.options import Option, SettingsError, show, validate
from web.history import History, local_midnight, local_month_start
from web.listen import DEFAULT_HOST, check_listen, parse_listen, where
from web.server import Request, Response, Route, Server, Stream
from web.state import StateReader

Judge = Union[EdgeJudge, FrameJudge]  # a pulse meter's, a register meter's
PAGE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "page")
STATIC = {  # path -> (file in PAGE_DIR, content type); nothing else is served
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
}
JSON = "application/json"
EVENT_QUEUE = 1000  # readings waiting for the event streams, at most


def _check_currency(value: str) -> Optional[str]:
    if len(value) > 8 or any(c in value for c in "<>&\"'\\"):
        return "expected a short currency sign or code, such as '€' or 'EUR'"
    return None


OPTIONS: Dict[str, Option] = {
    "listen": Option("any", f"{DEFAULT_HOST}:8080", check=check_listen),
    # Price of a kWh, for today's and this month's cost on the page.
    "tariff": Option("number", None, nullable=True, minimum=0.0, maximum=1000.0),
    "currency": Option("str", "", check=_check_currency),
}


@dataclass(frozen=True)
class WebSetup:
    host: str
    port: int
    tariff: Optional[float]
    currency: str

    @property
    def where(self) -> str:
        return where(self.host, self.port)


def parse(given: Any) -> Optional[WebSetup]:
    """WEB from settings.py: None (off) or a dict of OPTIONS."""
    if given is None:
        return None
    if not isinstance(given, dict):
        raise SettingsError(
            f"WEB = {show(given)}: expected None (off) or a dict such as "
            f"{{'listen': '{DEFAULT_HOST}:8080'}}"
        )
    values = validate("WEB", given, OPTIONS)
    host, port = parse_listen(values["listen"])
    return WebSetup(host, port, values["tariff"], values["currency"])


@dataclass(frozen=True)
class InputInfo:
    """Which backend reads a meter and why it was chosen."""

    meter: str
    backend: str
    why: str
    register: bool = False  # sml, d0, p1 (or fed by one): frames, not edges


class Page:
    """The page's routes over the running daemon's parts."""

    def __init__(
        self,
        setup: WebSetup,
        meters: Sequence[MeterConfig],
        feed: LiveFeed,
        snapshot: StateReader,
        journal_path: str,
        judges: Dict[str, Judge],
        inputs: Sequence[InputInfo],
        redact: Callable[[str], str],
        version: str,
        log: logging.Logger,
    ) -> None:
        self.setup = setup
        self.meters = {m.name: m for m in meters}
        self.feed = feed
        self.snapshot = snapshot
        self.history = History(journal_path)
        self.judges = judges
        self.inputs = list(inputs)
        self.redact = redact
        self.version = version
        self.log = log
        self.started = time.time()
        self.server: Optional[Server] = None
        self.files = {}
        for path, (name, content_type) in STATIC.items():
            with open(os.path.join(PAGE_DIR, name), "rb") as f:
                self.files[path] = (f.read(), content_type)
        self._events = ReadingQueue(EVENT_QUEUE)
        feed.subscribe(self._on_reading)

    # Wiring ----------------------------------------------------------------

    def routes(self) -> Dict[str, Route]:
        out: Dict[str, Route] = {path: self._static for path in STATIC}
        out.update(
            {
                "/api/state": self._state,
                "/api/history": self._history,
                "/api/sensor": self._sensor,
                "/events": self._stream,
            }
        )
        return out

    def attach(self, server: Server) -> None:
        """The server that serves these routes: events go through it."""
        self.server = server
        server.on_wake = self.send_events

    def close(self) -> None:
        self.history.close()

    # The live path (the monitor's thread: only a deque append and a wake) ---

    def _on_reading(self, reading: Reading) -> None:
        server = self.server
        if server is not None and server.streams:  # nobody looks: nothing
            self._events(reading)
            server.wake()

    def send_events(self) -> None:
        """In the server's thread: each reading waiting, as an event."""
        readings = self._events.take()
        if readings and self.server is not None:
            data = b"".join(self._event(r) for r in readings)
            self.server.broadcast(data)

    def _event(self, r: Reading) -> bytes:
        day, month = local_midnight(r.time), local_month_start(r.time)
        payload = {
            "meter": r.meter,
            "time": r.time,
            "power_w": _round(r.power_w, self._digits(r.meter)),
            "estimate": bool(r.estimate),
            "pulses": r.pulses,
            "today_kwh": self._since(r.meter, day, r.pulses),
            "month_kwh": self._since(r.meter, month, r.pulses),
            "today_export_kwh": self._exported(r.meter, day, r.export_kwh),
            "month_export_kwh": self._exported(r.meter, month, r.export_kwh),
        }
        return b"event: reading\ndata: " + _json(payload) + b"\n\n"

    # Numbers ---------------------------------------------------------------

    def _since(self, meter: str, start: float, pulses: int) -> Optional[float]:
        """kWh counted from `start` to a count of `pulses` (report's rule)."""
        base = self.history.base(meter, start)
        config = self.meters.get(meter)
        if base is None or config is None:
            return None
        return round(max(0, pulses - base) / config.pulses_per_kwh, 6)

    def _exported(
        self, meter: str, start: float, export_kwh: Optional[float]
    ) -> Optional[float]:
        """kWh exported from `start` to an export total (report's rule: the
        rise of the total); None where the meter has no export."""
        if export_kwh is None:
            return None
        base = self.history.export_base(meter, start)
        return round(max(0.0, export_kwh - (export_kwh if base is None else base)), 6)

    def _cost(self, config: MeterConfig, kwh: Optional[float]) -> Optional[float]:
        """Import's cost at the tariff: a price per kWh, so never for gas or
        water, and never for export."""
        tariff = self.setup.tariff
        if tariff is None or kwh is None or config.kind != ELECTRICITY:
            return None
        return round(kwh * tariff, 4)

    def _digits(self, meter: str) -> int:
        """Power is shown to 0.1 W; a flow of m³/h needs finer steps."""
        config = self.meters.get(meter)
        return 1 if config is None or config.kind == ELECTRICITY else 4

    # Routes ----------------------------------------------------------------

    def _static(self, request: Request) -> Response:
        body, content_type = self.files[request.path]
        return Response(200, body, content_type, cache="no-cache")

    def _meter(self, request: Request) -> Optional[MeterConfig]:
        name = request.query.get("meter")
        if name is None and len(self.meters) == 1:
            return next(iter(self.meters.values()))
        return self.meters.get(name or "")

    def _state(self, request: Request) -> Response:
        now = time.time()
        snap = self.snapshot()
        meters = []
        for m in snap.meters:
            config = self.meters[m.name]
            live, _ = self.feed.latest(m.name)
            pulses = live.pulses if live is not None else m.pulses
            export = m.export_kwh
            if live is not None and live.export_kwh is not None:
                export = live.export_kwh
            day, month_start = local_midnight(now), local_month_start(now)
            today = self._since(m.name, day, pulses)
            month = self._since(m.name, month_start, pulses)
            info = next((i for i in self.inputs if i.meter == m.name), None)
            unit, rate_unit, _ = units(config)
            digits = self._digits(m.name)
            meters.append(
                {
                    "name": m.name,
                    "kind": config.kind,
                    "unit": unit,  # of energy_kwh, today_kwh, ... (gas: m³)
                    "rate_unit": rate_unit,  # of power_w (gas: m³/h)
                    "register": info is not None and info.register,
                    "power_w": None if live is None else _round(live.power_w, digits),
                    "power_time": None if live is None else live.time,
                    "estimate": bool(live is not None and live.estimate),
                    "pulses": pulses,
                    "energy_kwh": round(m.energy_kwh, 6),  # committed
                    "committed_pulses": m.pulses,
                    "pulses_per_kwh": config.pulses_per_kwh,
                    "today_kwh": today,
                    "month_kwh": month,
                    "today_cost": self._cost(config, today),
                    "month_cost": self._cost(config, month),
                    "export_kwh": _round(export, 6),
                    "today_export_kwh": self._exported(m.name, day, export),
                    "month_export_kwh": self._exported(m.name, month_start, export),
                    "last_pulse": m.last_pulse,
                    "glitches": m.glitches,
                    "implausible": m.rejected,
                    "ghosts": m.ghosts,
                    "input": None if info is None else info.backend,
                    "input_why": None if info is None else info.why,
                    "drift": self._drift(m.name, config),
                }
            )
        sinks = [
            {
                "name": k.name,
                "backlog": k.backlog,
                "failing_for_s": _round(k.failing_for_s, 1),
                "last_error": self.redact(k.last_error) if k.last_error else None,
                "last_write": k.last_write,
            }
            for k in snap.sinks
        ]
        state = {
            "version": self.version,
            "now": now,
            "started": self.started,
            "uptime_s": round(now - self.started, 1),
            "journal_bytes": snap.journal_bytes,
            "monitor_running": snap.monitor_running,
            "tariff": self.setup.tariff,
            "currency": self.setup.currency,
            "meters": meters,
            "sinks": sinks,
        }
        return Response(200, _json(state), JSON)

    def _drift(self, meter: str, config: MeterConfig) -> Optional[Dict[str, Any]]:
        """The newest register reading against the one before (power.py
        register), where there are two."""
        drift = self.history.drift(meter, config.pulses_per_kwh)
        if drift is None:
            return None
        return {
            "at": drift.reading.time,
            "register_kwh": drift.reading.register_kwh,
            "drift_kwh": round(drift.drift_kwh, 6),
            "drift_percent": _round(drift.drift_percent, 3),
            "pulses": drift.pulses,
        }

    def _history(self, request: Request) -> Response:
        config = self._meter(request)
        if config is None:
            return _bad(f"meter: expected one of {', '.join(self.meters)}")
        span = request.query.get("span", "day")
        now = time.time()
        live, _ = self.feed.latest(config.name)
        ppk = config.pulses_per_kwh
        unit, rate_unit, per_hour = units(config)
        mean = "mean_w" if rate_unit == "W" else "mean_m3h"
        if span == "day":
            point = None if live is None else (live.time, live.pulses)
            buckets = self.history.day(config.name, now, point)
            size = buckets[1][0] - buckets[0][0] if len(buckets) > 1 else 300.0
            rows = []
            for start, n in buckets:
                if n is None:  # before the first pulse the journal knows
                    rows.append([start, None, None])
                    continue
                length = min(size, max(1.0, now - start))  # the current one
                kwh = n / ppk
                rows.append([start, round(kwh, 6), round(kwh * per_hour / length, 4)])
            rejected: Dict[float, List[int]] = {}
            for meter, hour, counts in self.history.rejected(now - 86400, now + 3600):
                if meter == config.name:
                    rejected[hour] = list(counts)
            out = {
                "meter": config.name,
                "span": span,
                "unit": unit,
                "rate_unit": rate_unit,
                "bucket_s": size,
                "columns": ["start", "kwh", mean],
                "rows": rows,
                "rejected_columns": ["hour", "glitches", "implausible", "ghosts"],
                "rejected": [[h, *c] for h, c in sorted(rejected.items())],
            }
        elif span == "month":
            days = self.history.month(
                config.name, now, None if live is None else live.pulses
            )
            export = None if live is None else live.export_kwh
            if export is None:
                export = self.history.last_export(config.name)
            exported = (
                None
                if export is None
                else [e for _, e in self.history.month_export(config.name, now, export)]
            )
            rows = []
            for start, n in days:
                if n is None:
                    rows.append([start, None, None])
                    continue
                kwh = n / ppk
                length = min(86400.0, max(1.0, now - start))
                rows.append([start, round(kwh, 6), round(kwh * per_hour / length, 4)])
            if exported is not None:  # export per day beside import
                for row, e in zip(rows, exported):
                    row.append(None if e is None else round(e, 6))
            out = {
                "meter": config.name,
                "span": span,
                "unit": unit,
                "rate_unit": rate_unit,
                "columns": ["start", "kwh", mean]
                + ([] if exported is None else ["export_kwh"]),
                "rows": rows,
            }
        else:
            return _bad("span: expected day or month")
        return Response(200, _json(out), JSON)

    def _sensor(self, request: Request) -> Response:
        config = self._meter(request)
        if config is None:
            return _bad(f"meter: expected one of {', '.join(self.meters)}")
        judge = self.judges.get(config.name)
        if isinstance(judge, FrameJudge):
            return Response(200, _json(self._frames(config, judge)), JSON)
        edges = [] if judge is None else judge.recent()
        out = {
            "meter": config.name,
            "limits": {
                "debounce_ms": config.debounce_ms,
                "min_pulse_ms": config.min_pulse_ms,
                "max_pulse_ms": config.max_pulse_ms,
                "max_power_w": config.max_power_w,
            },
            "columns": ["time", "kind", "width_ms", "interval_s", "verdict", "power_w"],
            "edges": [
                [e.wall, e.kind, _round(e.width_ms, 2), _round(e.interval_s, 3)]
                + [e.verdict, _round(e.power_w, 1)]
                for e in edges
            ],
            "histogram": [] if judge is None else judge.histogram.rows(),
        }
        return Response(200, _json(out), JSON)

    def _frames(self, config: MeterConfig, judge: FrameJudge) -> Dict[str, Any]:
        """A register meter's sensor view: its last frames and their counts."""
        unit, rate_unit, _ = units(config)
        digits = self._digits(config.name)
        return {
            "meter": config.name,
            "register": True,
            "unit": unit,
            "rate_unit": rate_unit,
            "limits": {"max_power_w": config.max_power_w},
            "columns": ["time", "import", "export", "power", "verdict"],
            "frames": [
                [f.wall, _round(f.total, 6), _round(f.export, 6)]
                + [_round(f.rate, digits), f.verdict]
                for f in judge.recent()
            ],
            "counts": judge.counts(),
        }

    def _stream(self, request: Request) -> Stream:
        first = b"retry: 3000\n\n"
        for name in self.meters:
            live, _ = self.feed.latest(name)
            if live is not None:
                first += self._event(live)
        return Stream(first)


def units(config: MeterConfig) -> Tuple[str, str, float]:
    """(unit of energy, unit of power, seconds and scale from one to a mean of
    the other): kWh and W, or for gas and water m³ and m³/h."""
    if config.kind == ELECTRICITY:
        return "kWh", "W", 3.6e6
    return "m³", "m³/h", 3600.0


def _round(value: Optional[float], digits: int) -> Optional[float]:
    return None if value is None else round(value, digits)


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def _bad(text: str) -> Response:
    return Response(400, (text + "\n").encode())
