"""Real InfluxDB and Mosquitto servers for tests, on free loopback ports.

Each server runs from the Debian package's binary with its own temporary
directory and config. Locally a missing binary skips the test with the
install command; with CI set it fails the run, as a missing server in CI is
a broken setup, not a reason to pass.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest


def require(binary: str, package: str) -> str:
    path = shutil.which(binary) or (
        f"/usr/sbin/{binary}" if os.path.exists(f"/usr/sbin/{binary}") else None
    )
    if path:
        return path
    message = f"{binary} not found: sudo apt-get install {package}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0, proc=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


class Server:
    """A server process that can be stopped and started again on its port."""

    def __init__(self, argv: List[str], port: int, log: Path) -> None:
        self.argv = argv
        self.port = port
        self.log_path = log
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()
        self.wait_ready()

    def wait_ready(self) -> None:
        wait_port(self.port, proc=self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class Influx(Server):
    """influxd 1.x with HTTP on a free port and everything under one dir."""

    def __init__(self, tmp: Path, auth: bool = False) -> None:
        binary = require("influxd", "influxdb")
        port, rpc = free_port(), free_port()
        tmp.mkdir(parents=True, exist_ok=True)
        conf = tmp / "influxdb.conf"
        conf.write_text(
            f"""reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{tmp}/meta"
[data]
  dir = "{tmp}/data"
  wal-dir = "{tmp}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:{port}"
  auth-enabled = {"true" if auth else "false"}
  log-enabled = false
[continuous_queries]
  enabled = false
"""
        )
        super().__init__([binary, "-config", str(conf)], port, tmp / "influxd.log")
        self.url = f"http://127.0.0.1:{port}"

    def wait_ready(self) -> None:
        super().wait_ready()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/ping", timeout=1) as r:
                    if r.status == 204:
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("influxd did not answer /ping")

    def query(
        self, q: str, db: str = "power", auth: Optional[tuple] = None
    ) -> Dict[str, Any]:
        params = {"q": q, "db": db, "epoch": "ms"}
        if auth:
            params.update(u=auth[0], p=auth[1])
        url = self.url + "/query?" + urllib.parse.urlencode(params)
        read_only = q.upper().startswith(("SELECT", "SHOW"))
        req = urllib.request.Request(url, data=None if read_only else b"")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def series(self, q: str, db: str = "power") -> List[Dict[str, Any]]:
        """Rows of a SELECT as dicts (column -> value), all series together."""
        result = self.query(q, db)["results"][0]
        rows = []
        for s in result.get("series", []):
            for values in s["values"]:
                row = dict(zip(s["columns"], values))
                row.update(s.get("tags") or {})
                rows.append(row)
        return rows

    def count(self, db: str = "power", measurement: str = "power") -> int:
        rows = self.series(f'SELECT count("pulses") FROM "{measurement}"', db)
        return rows[0]["count"] if rows else 0


class Mosquitto(Server):
    """mosquitto without persistence, plain or with TLS, on a free port."""

    def __init__(
        self,
        tmp: Path,
        tls: Optional[Dict[str, str]] = None,
        port: int = 0,
        verbose: bool = False,
        persistence: bool = False,
        extra: List[str] = (),
    ) -> None:
        """verbose: log every connect (with its username) and publish;
        persistence: sessions and queued messages survive a restart;
        extra: more lines for mosquitto.conf."""
        binary = require("mosquitto", "mosquitto")
        port = port or free_port()
        tmp.mkdir(parents=True, exist_ok=True)
        conf = tmp / "mosquitto.conf"
        lines = [
            f"listener {port} 127.0.0.1",
            "allow_anonymous true",
            "persistence true" if persistence else "persistence false",
            "log_dest stdout",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if persistence:
            lines.append(f"persistence_location {tmp}/")
        if verbose:
            lines += ["log_type information", "log_type debug"]
        lines += list(extra)
        if os.geteuid() == 0:
            # Started as root, mosquitto would become user 'mosquitto' and
            # lose access to the test's private temp directory.
            lines.append("user root")
        if tls:
            lines += [
                f"cafile {tls['ca']}",
                f"certfile {tls['cert']}",
                f"keyfile {tls['key']}",
            ]
        conf.write_text("\n".join(lines) + "\n")
        super().__init__([binary, "-c", str(conf)], port, tmp / "mosquitto.log")


class Prometheus(Server):
    """Debian's prometheus, scraping the given targets every second, its
    TSDB in a temporary directory and its web API on a free port."""

    def __init__(self, tmp: Path, targets: List[str]) -> None:
        binary = require("prometheus", "prometheus")
        port = free_port()
        tmp.mkdir(parents=True, exist_ok=True)
        conf = tmp / "prometheus.yml"
        quoted = ", ".join(f'"{t}"' for t in targets)
        conf.write_text(
            f"""global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: power
    static_configs:
      - targets: [{quoted}]
"""
        )
        super().__init__(
            [
                binary,
                f"--config.file={conf}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            port,
            tmp / "prometheus.log",
        )
        self.url = f"http://127.0.0.1:{port}"

    def wait_ready(self) -> None:
        super().wait_ready()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("prometheus did not become ready")

    def query(self, promql: str, at: Optional[float] = None) -> List[Dict[str, Any]]:
        """An instant query over the HTTP API: the result vector (or matrix)."""
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        url = self.url + "/api/v1/query?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as r:
            answer = json.loads(r.read())
        assert answer["status"] == "success", answer
        return answer["data"]["result"]
