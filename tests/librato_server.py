"""A local stand-in for the Librato metrics API (a cloud service that cannot
run here), checking requests as the API documents them:

POST /v1/metrics with HTTP Basic auth of the user's email and API token and
a JSON body {"gauges": [...], "counters": [...], "source"?, "measure_time"?};
each gauge has a "name" and either "value" or "count" and "sum" (with
optional "min", "max", "sum_squares"), and optionally its own "source" and
"measure_time". Success is 200 with an empty body; a malformed request gets
400 and bad credentials 401, as the real API answers; past its rate limit
it answers 429 with a Retry-After header.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional

NAME_RE = re.compile(r"^[A-Za-z0-9.:\-_]{1,255}$")


def check_gauge(g: Any, body: Dict[str, Any]) -> Optional[str]:
    """Why a gauge is invalid, or None."""
    if not isinstance(g, dict):
        return "gauge is not an object"
    if not NAME_RE.match(str(g.get("name", ""))):
        return f"bad metric name {g.get('name')!r}"
    source = g.get("source", body.get("source"))
    if source is not None and not re.match(r"^[A-Za-z0-9.:\-_]{1,255}$", source):
        return f"bad source {source!r}"
    has_value = "value" in g
    has_agg = "count" in g or "sum" in g
    if has_value == has_agg:
        return "a gauge needs either value or count and sum"
    if has_agg:
        if not (isinstance(g.get("count"), int) and g["count"] > 0):
            return "count must be a positive integer"
        if not isinstance(g.get("sum"), (int, float)):
            return "sum must be a number"
        for key in ("min", "max", "sum_squares"):
            if key in g and not isinstance(g[key], (int, float)):
                return f"{key} must be a number"
        if "min" in g and "max" in g and g["min"] > g["max"]:
            return "min is above max"
    elif not isinstance(g["value"], (int, float)):
        return "value must be a number"
    mt = g.get("measure_time", body.get("measure_time"))
    if mt is not None and not isinstance(mt, int):
        return "measure_time must be an integer (epoch seconds)"
    return None


class LibratoAPI:
    """Runs the stand-in on a free loopback port; records accepted gauges."""

    def __init__(self, user: str, token: str) -> None:
        self.user = user
        self.token = token
        self.gauges: List[Dict[str, Any]] = []
        self.requests: List[Dict[str, Any]] = []
        self.fail_next = 0  # answer this many requests with 503
        self.limit_next = 0  # answer this many with 429 and Retry-After
        self.retry_after = "1"
        self.times: List[float] = []  # when each request came (monotonic)
        self.lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                status, answer = api.handle(self.path, self.headers, raw)
                data = json.dumps(answer).encode() if answer else b""
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", api.retry_after)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def handle(self, path: str, headers, raw: bytes):
        with self.lock:
            self.requests.append({"path": path, "body": raw})
            self.times.append(time.monotonic())
            if path != "/v1/metrics":
                return 404, {"errors": {"request": ["not found"]}}
            expected = base64.b64encode(f"{self.user}:{self.token}".encode()).decode()
            if headers.get("Authorization") != f"Basic {expected}":
                return 401, {"errors": {"request": ["Authorization Required"]}}
            if self.limit_next > 0:
                self.limit_next -= 1
                return 429, {"errors": {"request": ["API rate limit exceeded"]}}
            if self.fail_next > 0:
                self.fail_next -= 1
                return 503, {"errors": {"request": ["Service Unavailable"]}}
            if not headers.get("Content-Type", "").startswith("application/json"):
                return 400, {"errors": {"request": ["expected application/json"]}}
            try:
                body = json.loads(raw)
            except ValueError:
                return 400, {"errors": {"request": ["invalid JSON"]}}
            gauges = body.get("gauges", [])
            if not isinstance(gauges, list) or not gauges + body.get("counters", []):
                return 400, {"errors": {"params": {"gauges": ["none given"]}}}
            for g in gauges:
                problem = check_gauge(g, body)
                if problem:
                    return 400, {"errors": {"params": {"gauges": [problem]}}}
            for g in gauges:
                gauge = dict(g)
                gauge.setdefault("source", body.get("source"))
                gauge.setdefault("measure_time", body.get("measure_time"))
                self.gauges.append(gauge)
            return 200, None

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
