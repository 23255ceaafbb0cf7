"""InfluxDB sink (1.x HTTP API; 2.x and 3.x through their v1-compatible
endpoints), over the standard library's http.client (influxhttp.py).

Each reading becomes a point at the pulse's own time (ms precision), tagged
with the meter name. The sink writes InfluxDB line protocol itself (the
`influxdb` client's encoder of point dicts was an eighth of a replay's CPU,
and the package with requests a third of a three-sink daemon's memory); the
lines are those that client made of the points, so the stored series,
tags, fields and types are the same. An
estimate between pulses becomes a point with `power_w` and `estimate` =
true only, as it adds no energy. Writing a point again after a crash is
harmless: same series and time means the same point.
Connection failures, timeouts and 5xx are retried by the runner; a 4xx that
cannot heal (bad credentials) is reported with the server's words and
retried only at the longest backoff; a 400 for the points themselves (a
time out of range) has the runner skip just the refused points, but a field
type conflict, which every point with that field hits, is a failing sink
that names the conflict and the fix, and keeps the readings.
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
from typing import Any, Dict, List, Optional, Sequence

from core.meter import Reading
from core.options import Option
from sinks.base import PROBE_TIMEOUT_S, Sink, SinkError
from sinks.influxhttp import InfluxHTTP, InfluxHTTPError, NotInfluxDBError

# What a point carries (the manual lists them from here): the meter's name as
# a tag, and fields named as the reading's attributes, with their types.
TAG = "meter"
FIELDS = {
    "power_w": float,
    "energy_kwh": float,
    "pulses": int,
    "estimate": bool,
    "export_kwh": float,
}
# An estimate between pulses adds no energy: its point has power_w and
# estimate = true only, so queries of energy (the dashboard's power panels)
# see pulses only.
PULSE_FIELDS = ("energy_kwh", "pulses", "export_kwh")
# A gas or water meter's volume and flow, under the names they have there.
VOLUME_FIELDS = {"energy_kwh": "volume_m3", "power_w": "flow_m3h"}
# Line protocol: in a measurement, tag key, tag value or field key a
# backslash, space, comma or equals sign is escaped with a backslash (and a
# newline, which the protocol cannot carry, written as \n), as the client's
# encoder does, so series keep the names they had.
KEY_ESCAPES = str.maketrans(
    {"\\": "\\\\", " ": "\\ ", ",": "\\,", "=": "\\=", "\n": "\\n"}
)


def _not_empty(value: str) -> Optional[str]:
    return None if value.strip() else "expected a non-empty string"


def _check_tags(tags: Dict[Any, Any]) -> Optional[str]:
    for key, value in tags.items():
        if not isinstance(key, str) or not isinstance(value, str) or not key:
            return "expected a dict of non-empty string keys to string values"
        if key in (TAG, "time"):
            return f"tag {key!r} is reserved"
    return None


class InfluxDBSink(Sink):
    OPTIONS = {
        "host": Option("str", "localhost", check=_not_empty),
        "port": Option("int", 8086, minimum=1, maximum=65535),
        "database": Option("str", "power", check=_not_empty),
        "username": Option("str", None, nullable=True),
        "password": Option("str", None, nullable=True, secret=True),
        "ssl": Option("bool", False),
        "verify_ssl": Option("bool", True),
        "path": Option("str", ""),
        "retention_policy": Option("str", None, nullable=True),
        "measurement": Option("str", "power", check=_not_empty),
        "tags": Option("dict", {}, check=_check_tags),
        "timeout_s": Option("number", 10.0, minimum=0.1, maximum=600.0),
        "create_database": Option("bool", True),
    }

    def __init__(self, name, options, log, meters=()) -> None:
        super().__init__(name, options, log, meters)
        self.client: Optional[InfluxHTTP] = None
        self._keys: Dict[str, str] = {}  # meter -> its series key
        self._newest_ok = -1  # ms of the newest point written without a conflict

    def describe(self) -> str:
        o = self.options
        scheme = "https" if o["ssl"] else "http"
        return f"{self.name} ({scheme}://{o['host']}:{o['port']} db {o['database']})"

    def open(self) -> None:
        o = self.options
        self.client = InfluxHTTP(
            host=o["host"],
            port=o["port"],
            username=o["username"],
            password=o["password"],
            use_ssl=o["ssl"],
            verify_ssl=o["verify_ssl"],
            timeout=o["timeout_s"],
            path=o["path"],
        )
        self._ping()
        if o["create_database"]:
            self._create_database()

    def probe(self) -> bool:
        """GET /ping on a connection of its own: any HTTP answer is a
        server there (the write says whether it takes points)."""
        o = self.options
        client = InfluxHTTP(
            host=o["host"],
            port=o["port"],
            username=None,
            password=None,
            use_ssl=o["ssl"],
            verify_ssl=o["verify_ssl"],
            timeout=min(o["timeout_s"], PROBE_TIMEOUT_S),
            path=o["path"],
        )
        try:
            client.ping()
        except ssl.SSLError:
            return True  # a server there, whose TLS the write will judge
        except (OSError, http.client.HTTPException):
            return False
        except Exception:  # it answered, if not as hoped
            return True
        finally:
            client.close()
        return True

    def _create_database(self) -> None:
        """CREATE DATABASE is idempotent in 1.x; where it is not permitted
        (a read-write user, or 2.x/3.x) the database must already exist."""
        assert self.client is not None
        try:
            self.client.create_database(self.options["database"])
        except InfluxHTTPError as exc:
            self.log.debug(
                "sink %s: cannot create database %s (%s); assuming it exists",
                self.name,
                self.options["database"],
                exc,
            )
        except Exception as exc:  # transport trouble: open() is retried
            raise self._translate(exc) from None

    def points(self, batch: Sequence[Reading]) -> List[Dict[str, Any]]:
        o = self.options
        out = []
        for r in batch:
            fields: Dict[str, Any] = {}
            volume = self.is_volume(r.meter)
            for name, kind in FIELDS.items():
                value = getattr(r, name)
                if value is None or (r.estimate and name in PULSE_FIELDS):
                    continue  # an unknown power; an estimate's energy
                if name != "estimate" or value:
                    key = VOLUME_FIELDS.get(name, name) if volume else name
                    fields[key] = kind(value)
            out.append(
                {
                    "measurement": o["measurement"],
                    "tags": {**o["tags"], TAG: r.meter},
                    "time": int(round(r.time * 1000)),
                    "fields": fields,
                }
            )
        return out

    def series_key(self, meter: str) -> str:
        """The measurement and tags of a meter's points in line protocol:
        escaped, tags sorted by key, an empty tag left out."""
        o = self.options
        tags = {**o["tags"], TAG: meter}
        key = o["measurement"].translate(KEY_ESCAPES)
        for name in sorted(tags):
            k, v = name.translate(KEY_ESCAPES), tags[name].translate(KEY_ESCAPES)
            if k and v:
                key += f",{k}={v}"
        return key

    def lines(self, batch: Sequence[Reading]) -> List[str]:
        """The points() of the batch in line protocol, fields sorted by name:
        floats as repr gives them, integers with an i, booleans as True,
        times in ms (the precision the write names)."""
        keys = self._keys
        out = []
        append = out.append
        kinds = self.kinds
        for t, meter, pulses, energy, power, _, estimate, export in batch:
            key = keys.get(meter)
            if key is None:
                key = keys[meter] = self.series_key(meter)
            ms = int(round(t * 1000))
            if export is not None or meter in kinds:
                append(
                    self._line(key, ms, meter, pulses, energy, power, estimate, export)
                )
            elif estimate:  # power_w and estimate only: no energy of its own
                if power is None:
                    append(f"{key} estimate=True {ms}")
                else:
                    append(f"{key} estimate=True,power_w={float(power)!r} {ms}")
            elif power is None:
                append(f"{key} energy_kwh={float(energy)!r},pulses={int(pulses)}i {ms}")
            else:
                append(
                    f"{key} energy_kwh={float(energy)!r},power_w={float(power)!r},"
                    f"pulses={int(pulses)}i {ms}"
                )
        return out

    def _line(
        self,
        key: str,
        ms: int,
        meter: str,
        pulses: int,
        energy: float,
        power: Optional[float],
        estimate: bool,
        export: Optional[float],
    ) -> str:
        """A point with export, or of a gas or water meter (as lines())."""
        fields: Dict[str, str] = {}
        if power is not None:
            fields["power_w"] = repr(float(power))
        if estimate:
            fields["estimate"] = "True"
        else:
            fields["energy_kwh"] = repr(float(energy))
            fields["pulses"] = f"{int(pulses)}i"
            if export is not None:
                fields["export_kwh"] = repr(float(export))
        if self.is_volume(meter):
            fields = {VOLUME_FIELDS.get(k, k): v for k, v in fields.items()}
        body = ",".join(f"{k}={fields[k]}" for k in sorted(fields))
        return f"{key} {body} {ms}"

    def write(self, batch: Sequence[Reading]) -> Optional[int]:
        if self.client is None:
            raise SinkError("not connected")
        lines = self.lines(batch)
        try:
            self._write(lines)
        except SinkError as exc:
            if "database not found" in str(exc) and self.options["create_database"]:
                self._create_database()
                self._write(lines)
            else:
                conflict = TYPE_CONFLICT.search(str(exc))
                if conflict is None:
                    raise
                raise self._conflict(conflict, lines, exc) from None
        if lines:
            self._newest_ok = max(self._newest_ok, _line_ms(lines[-1]))
        return None

    def _conflict(self, conflict, lines: List[str], exc: SinkError) -> SinkError:
        """A field type conflict is InfluxDB's per shard (a week, by
        default): in an old shard it refuses those points only (bad data:
        the runner skips them), but where new points go it refuses every
        point with that field, and the sink fails (once, with the fix)
        keeping every reading. The newest such point, written alone, tells
        which, unless a newer one went through already."""
        field, measurement, ours, theirs = conflict.groups()
        mine = [line for line in lines if f",{field}=" in line or f" {field}=" in line]
        if mine:
            newest = mine[-1]
            if _line_ms(newest) > self._newest_ok:
                try:
                    self._write([newest])
                except SinkError as again:
                    if TYPE_CONFLICT.search(str(again)):
                        return SinkError(
                            f"{self.describe()}: measurement {measurement!r} "
                            f"already holds field {field!r} as {theirs}, and "
                            f"power writes it as {ours}, so InfluxDB refuses "
                            "every such point; give the sink another "
                            "'measurement' (or 'database'), or drop that "
                            "measurement if nothing in it is needed; the "
                            "readings wait in the journal"
                        )
                    return again
                self._newest_ok = _line_ms(newest)
        return exc

    def _write(self, lines: List[str]) -> None:
        assert self.client is not None
        try:
            self.client.write(
                self.options["database"],
                lines,
                precision="ms",
                retention_policy=self.options["retention_policy"],
            )
        except InfluxHTTPError as exc:
            if "points beyond retention policy dropped" in str(exc):
                # The rest was written; those points can never be.
                self.log.warning("sink %s: %s", self.name, exc.content)
                return
            raise self._translate(exc) from None
        except Exception as exc:
            raise self._translate(exc) from None

    def _ping(self) -> None:
        """Is the server there? 1.x and 2.x answer /ping with 204, 3.x with
        200 (the client library expects 204 only)."""
        assert self.client is not None
        try:
            self.client.ping()
        except Exception as exc:
            raise self._translate(exc) from None

    def _translate(self, exc: Exception) -> Exception:
        """A SinkError saying what went wrong, retryable or not."""
        where = self.describe()
        if isinstance(exc, InfluxHTTPError) and exc.code < 500:
            content = exc.content
            if exc.code in (401, 403):
                return SinkError(
                    f"{where}: authentication failed ({exc.code} {content}); "
                    "check username and password",
                    retry=False,
                )
            if exc.code == 404 and "database not found" in content:
                return SinkError(f"{where}: database not found: {content}")

            if exc.code in (400, 413, 422) and not _settings_problem(content):
                # Refused for what the points hold (a field type conflict, a
                # time out of range): the runner finds and skips those.
                return SinkError(
                    f"{where}: the server refused the points ({exc.code} {content})",
                    bad_data=True,
                )
            if 400 <= exc.code < 500:
                return SinkError(
                    f"{where}: the server rejected the write ({exc.code} {content})",
                    retry=False,
                )
            return SinkError(f"{where}: {exc}")
        if isinstance(exc, NotInfluxDBError):
            return SinkError(
                f"{where}: the server there answers HTTP but is not InfluxDB (no "
                "X-Influxdb-Version header); check 'host', 'port' and 'path'",
                retry=False,
            )
        if isinstance(exc, InfluxHTTPError):
            return SinkError(f"{where}: server error: {exc}")
        if isinstance(exc, ssl.SSLError):
            return SinkError(f"{where}: TLS failed: {exc}")
        if isinstance(exc, (socket.timeout, TimeoutError)):
            return SinkError(f"{where}: timed out")
        if isinstance(exc, OSError):
            return SinkError(f"{where}: cannot connect ({_reason(exc)})")
        if isinstance(exc, http.client.HTTPException):
            return SinkError(f"{where}: the connection broke ({type(exc).__name__})")
        return SinkError(f"{where}: {type(exc).__name__}: {exc}")

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            except Exception:  # closing must never fail the stop
                pass
            self.client = None


# InfluxDB 1.x: 'partial write: field type conflict: input field "pulses" on
# measurement "power" is type integer, already exists as type float dropped=1'
TYPE_CONFLICT = re.compile(
    r'field type conflict: input field "([^"]*)" on measurement "([^"]*)" is '
    r"type (\w+), already exists as type (\w+)"
)


def _line_ms(line: str) -> int:
    """The time of a line of line protocol (ms, its last field)."""
    return int(line.rsplit(" ", 1)[1])


def _settings_problem(content: str) -> bool:
    """A 4xx that names our settings, not the points: never skip for it."""
    text = content.lower()
    return any(
        words in text
        for words in ("not found", "authoriz", "authenticat", "permission")
    )


def _reason(exc: OSError) -> str:
    """Why a connection failed, in the system's words."""
    return exc.strerror or str(exc)[:200] or type(exc).__name__
