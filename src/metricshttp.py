"""The exporter's HTTP side: /metrics, /healthz and a bounded number of
clients at once. A module of its own so that http.server is imported only
when METRICS is set (metrics.Exporter.start imports it).
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from metrics import CLIENT_TIMEOUT_S, MAX_CLIENTS, Exporter, family, health


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address, handler, exporter: Exporter) -> None:
        self.address_family = family(address[0])
        self.exporter = exporter
        self._slots = threading.BoundedSemaphore(MAX_CLIENTS)
        super().__init__(address, handler)

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # too many at once: drop this one
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class Handler(BaseHTTPRequestHandler):
    timeout = CLIENT_TIMEOUT_S
    server: Server

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        exporter = self.server.exporter
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            from prometheus_client.exposition import choose_encoder

            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._reply(200, encoder(exporter.registry), content_type)
        elif path == "/healthz":
            problems = health(exporter.snapshot(), exporter.setup.max_sink_delay_s)
            text = "; ".join(problems) if problems else "ok"
            self._reply(503 if problems else 200, (text + "\n").encode())
        elif path == "/":
            body = b'power exporter: <a href="/metrics">/metrics</a>, /healthz\n'
            self._reply(200, body, "text/html; charset=utf-8")
        else:
            self._reply(404, b"not found: try /metrics or /healthz\n")

    def _reply(
        self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8"
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        self.server.exporter.log.debug("metrics: " + format, *args)
