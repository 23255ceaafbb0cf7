"""The three calls of the InfluxDB 1.x HTTP API the sink needs (/ping,
/query for CREATE DATABASE, /write of line protocol), on http.client.

The `influxdb` client package did the same through requests and urllib3,
which cost a Pi about 8 MiB of memory (a third of a daemon with three
sinks) for three HTTP calls. One keep-alive connection, opened again after
any failure; credentials go in an Authorization header, never in a URL
that an error message could show.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import urllib.parse
from typing import Dict, Optional, Sequence, Tuple

VERSION_HEADER = "X-Influxdb-Version"
# How a kept-alive connection the server has closed fails on its next use.
STALE = (
    BrokenPipeError,
    ConnectionResetError,
    ConnectionAbortedError,
    http.client.RemoteDisconnected,
)


class InfluxHTTPError(Exception):
    """The server answered, with a status that is not success."""

    def __init__(self, code: int, content: str) -> None:
        super().__init__(f"{code}: {content}")
        self.code = code
        self.content = content


class NotInfluxDBError(Exception):
    """Something answers HTTP there, but not as InfluxDB does."""


class InfluxHTTP:
    """A client for one server; not thread-safe (one sink runner uses it)."""

    def __init__(
        self,
        host: str,
        port: int,
        username: Optional[str],
        password: Optional[str],
        use_ssl: bool,
        verify_ssl: bool,
        timeout: float,
        path: str = "",
    ) -> None:
        self.host = host
        self.port = port
        self.use_ssl = use_ssl
        self.verify_ssl = verify_ssl
        self.timeout = timeout
        self.prefix = "/" + path.strip("/") if path.strip("/") else ""
        self.headers: Dict[str, str] = {}
        if username is not None or password is not None:
            pair = f"{username or ''}:{password or ''}".encode()
            self.headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        self._conn: Optional[http.client.HTTPConnection] = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self.use_ssl:
                context = ssl.create_default_context()
                if not self.verify_ssl:
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                self._conn = http.client.HTTPSConnection(
                    self.host, self.port, timeout=self.timeout, context=context
                )
            else:
                self._conn = http.client.HTTPConnection(
                    self.host, self.port, timeout=self.timeout
                )
        return self._conn

    def request(
        self,
        method: str,
        endpoint: str,
        params: Dict[str, str],
        body: Optional[bytes] = None,
    ) -> Tuple[int, http.client.HTTPMessage, str]:
        """Status, headers and text of one request; OSError (and
        http.client.HTTPException) when there is no answer, InfluxHTTPError
        for a status of 400 or more."""
        url = self.prefix + endpoint
        if params:
            url += "?" + urllib.parse.urlencode(params)
        headers = dict(self.headers)
        if body is not None:
            headers["Content-Type"] = "application/octet-stream"
        while True:
            reused = self._conn is not None
            conn = self._connection()
            try:
                conn.request(method, url, body=body, headers=headers)
                response = conn.getresponse()
                text = response.read().decode("utf-8", "replace")
                break
            except STALE:
                self.close()
                if not reused:
                    raise
                # A kept-alive connection the server dropped since (a
                # restart, an idle timeout): once more on a fresh one. A
                # write sent twice stores the same points.
            except (OSError, http.client.HTTPException):
                self.close()  # a fresh connection for the next try
                raise
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        if response.status >= 400:
            raise InfluxHTTPError(response.status, _error_text(text))
        return response.status, response.headers, text

    def ping(self) -> str:
        """The server's version; NotInfluxDBError if it does not say one (1.x
        and 2.x answer /ping with 204, 3.x with 200)."""
        _, headers, _ = self.request("GET", "/ping", {})
        version = headers.get(VERSION_HEADER)
        if version is None:
            raise NotInfluxDBError(f"no {VERSION_HEADER} header")
        return version

    def create_database(self, name: str) -> None:
        """CREATE DATABASE (idempotent in 1.x); InfluxHTTPError if refused."""
        quoted = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        _, _, text = self.request("POST", "/query", {"q": f"CREATE DATABASE {quoted}"})
        try:
            results = json.loads(text).get("results", [])
        except (ValueError, AttributeError):
            return
        for result in results:
            if isinstance(result, dict) and result.get("error"):
                raise InfluxHTTPError(200, str(result["error"]))

    def write(
        self,
        database: str,
        lines: Sequence[str],
        precision: str,
        retention_policy: Optional[str] = None,
    ) -> None:
        """POST line protocol to /write (204 when every point is stored)."""
        params = {"db": database, "precision": precision}
        if retention_policy:
            params["rp"] = retention_policy
        body = ("\n".join(lines) + "\n").encode("utf-8")
        self.request("POST", "/write", params, body)

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
            self._conn = None


def _error_text(text: str) -> str:
    """The "error" of InfluxDB's JSON answer, else the answer itself."""
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return data["error"]
    return text.strip()
