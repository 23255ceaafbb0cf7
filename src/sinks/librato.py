"""Librato sink (`librato-metrics`): per-period aggregates, as the original
monitor sent them.

For each meter (the Librato source) and each `period_s`, one gauge
`<prefix>.power_w` with the count, min and max of the pulses' power and a
sum chosen so that Librato's average (sum / count) is the period's
time-weighted mean power (see aggregates), and one gauge
`<prefix>.energy_kwh` with the period's latest energy, stamped at the start
of the period. A period is submitted once it is closed: a later
reading exists, its end is a few seconds past, or the input has ended (a
replay is done; its last period may lie ahead of the clock when it ran
faster than time). Readings of a period still
open stay in the journal (the runner's cursor stops before them), so every
reading is counted in exactly one aggregate, across retries and restarts; a
resubmitted aggregate has the same time and values and replaces itself.
"""

from __future__ import annotations

import email.utils
import time
import urllib.parse
from typing import Any, Dict, Optional, Sequence, Tuple

from core.meter import Reading
from core.options import Option
from sinks.base import Sink, SinkError, answers

DEFAULT_API_URL = "https://metrics-api.librato.com"
GRACE_S = 5.0  # a reading reaches the journal at most ~1 s after its time
LIVE_S = 3600.0  # readings this close to the clock are taken as live


def _check_url(value: str) -> Optional[str]:
    try:
        parts = urllib.parse.urlsplit(value)
    except ValueError as exc:
        return f"not a URL ({exc}); expected http(s)://host[:port]"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "expected http(s)://host[:port], e.g. " + DEFAULT_API_URL
    try:
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        return "the port must be a number from 1 to 65535"
    return None


def _seconds(header: Optional[str]) -> Optional[float]:
    """Retry-After as seconds (a number of seconds or an HTTP date)."""
    if not header:
        return None
    try:
        return float(header)
    except ValueError:
        pass
    try:
        return email.utils.parsedate_to_datetime(header).timestamp() - time.time()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


class _ServerError(Exception):
    """Raised from inside librato's retry loop to take retries over."""


def _no_internal_retry(backoff: float) -> float:
    # librato-metrics retries a 5xx forever, sleeping in our thread; the
    # runner retries with backoff instead and can stop at once.
    raise _ServerError("the Librato API answered with a server error (5xx)")


class LibratoSink(Sink):
    OPTIONS = {
        "user": Option("str"),
        "token": Option("str", secret=True),
        "prefix": Option("str", "power"),
        "period_s": Option("int", 60, minimum=1, maximum=86400),
        "api_url": Option("str", DEFAULT_API_URL, check=_check_url),
        "timeout_s": Option("number", 10.0, minimum=0.1, maximum=600.0),
    }
    PACKAGES = {"librato": "librato-metrics"}

    def __init__(self, name, options, log, meters=()) -> None:
        super().__init__(name, options, log, meters)
        self.conn: Any = None
        self.clock = time.time
        self._retry_after: Optional[str] = None

    def describe(self) -> str:
        return f"{self.name} ({self.options['api_url']})"

    def probe(self) -> bool:
        url = urllib.parse.urlsplit(self.options["api_url"])
        default = 443 if url.scheme == "https" else 80
        return answers(url.hostname or "", url.port or default)

    def open(self) -> None:
        import librato

        url = urllib.parse.urlsplit(self.options["api_url"])
        conn = librato.connect(
            self.options["user"],
            self.options["token"],
            hostname=url.netloc,
            base_path=url.path.rstrip("/") + "/v1/",
            protocol=url.scheme,
        )
        conn.set_timeout(self.options["timeout_s"])
        conn.backoff_logic = _no_internal_retry
        # The library drops response headers; keep Retry-After (HTTP 429).
        process = conn._process_response

        def keep_retry_after(resp, backoff):
            self._retry_after = resp.getheader("Retry-After")
            return process(resp, backoff)

        conn._process_response = keep_retry_after
        self.conn = conn

    def closed_prefix(self, batch: Sequence[Reading], now: float) -> int:
        """How many readings from the front belong to closed periods."""
        if not batch:
            return 0
        period = self.options["period_s"]
        last_start = batch[-1].time - batch[-1].time % period
        # The clock may close the last period only for live readings; a
        # replay's readings lie in the past, and only a later reading (or
        # the replay's end) tells that their period is complete.
        live = abs(now - batch[-1].time) < max(LIVE_S, 2 * period)
        if not self.more_waiting and (
            self.input_ended or (live and last_start + period + GRACE_S <= now)
        ):
            return len(batch)
        for i, r in enumerate(batch):
            if r.time - r.time % period >= last_start:
                return i  # 0 when one period fills the batch: the runner
                # then reads a larger one
        return len(batch)

    def aggregates(
        self, batch: Sequence[Reading]
    ) -> Dict[Tuple[str, int], Dict[str, Any]]:
        """(meter, period start) -> power aggregate and latest energy.

        Librato shows a gauge's average as sum / count. A plain sum of
        readings would weight busy stretches by their pulse count, so the
        sum sent is count times the time-weighted mean: each pulse's power
        weighted by the part of its interval inside the period. Min and max
        stay the extreme readings; estimates between pulses are left out
        (they are bounds, and add no energy)."""
        period = self.options["period_s"]
        out: Dict[Tuple[str, int], Dict[str, Any]] = {}
        for r in batch:
            start = int(r.time - r.time % period)
            agg = out.setdefault((r.meter, start), {"power": None, "energy": 0.0})
            agg["energy"] = r.energy_kwh
            if r.power_w is None or r.estimate or not r.interval_s:
                continue
            covered = min(r.time, start + period) - max(r.time - r.interval_s, start)
            p = agg["power"]
            if p is None:
                p = agg["power"] = {
                    "count": 0,
                    "min": r.power_w,
                    "max": r.power_w,
                    "energy": 0.0,
                    "time": 0.0,
                }
            p["count"] += 1
            p["min"] = min(p["min"], r.power_w)
            p["max"] = max(p["max"], r.power_w)
            p["energy"] += r.power_w * max(covered, 0.0)
            p["time"] += max(covered, 0.0)
        for agg in out.values():
            p = agg["power"]
            if p is not None:
                mean = p.pop("energy") / p["time"] if p["time"] > 0 else p["max"]
                del p["time"]
                # Within [min, max] despite rounding: Librato checks it.
                mean = min(max(mean, p["min"]), p["max"])
                p["sum"] = mean * p["count"]
        return out

    def write(self, batch: Sequence[Reading]) -> Optional[int]:
        if self.conn is None:
            raise SinkError("not connected")
        taken = self.closed_prefix(batch, self.clock())
        if taken == 0:
            return 0
        from librato.aggregator import Aggregator

        prefix = self.options["prefix"]
        queue = self.conn.new_queue()
        for (meter, start), agg in self.aggregates(batch[:taken]).items():
            aggregator = Aggregator(self.conn, source=meter, measure_time=start)
            # A gas or water meter's flow and volume, by their names.
            rate, total = (
                ("flow_m3h", "volume_m3")
                if self.is_volume(meter)
                else ("power_w", "energy_kwh")
            )
            if agg["power"] is not None:
                aggregator.measurements[f"{prefix}.{rate}"] = dict(agg["power"])
            aggregator.add(f"{prefix}.{total}", round(agg["energy"], 6))
            queue.add_aggregator(aggregator)
        self._submit(queue)
        return taken

    def _submit(self, queue: Any) -> None:
        from librato import exceptions

        where = self.describe()
        try:
            queue.submit()
        except exceptions.ClientError as exc:
            if exc.code == 429:  # rate limited: transient, wait as asked
                raise SinkError(
                    f"{where}: 429 Too Many Requests; waiting as the API asks",
                    retry_after=_seconds(self._retry_after),
                ) from None
            if isinstance(exc, exceptions.Unauthorized):
                raise SinkError(
                    f"{where}: 401 Unauthorized; check 'user' and 'token'",
                    retry=False,
                ) from None
            raise SinkError(f"{where}: request rejected: {exc}", retry=False) from None
        except _ServerError as exc:
            raise SinkError(f"{where}: {exc}") from None
        except (OSError, ValueError) as exc:
            raise SinkError(f"{where}: cannot connect ({exc})") from None
        except Exception as exc:  # http.client errors
            raise SinkError(f"{where}: {type(exc).__name__}: {exc}") from None

    def close(self) -> None:
        self.conn = None
