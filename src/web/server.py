"""The daemon's small HTTP server: a fixed table of routes, one thread per
connection with a socket timeout, and a bounded number of connections, so a
slow or stuck client holds only itself. A module of its own so that
http.server is imported only when a server is configured.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Dict, Tuple

from web.listen import family

CLIENT_TIMEOUT_S = 5.0  # a client that stalls longer is dropped
MAX_CLIENTS = 8  # connections served at once; more are closed at once

# A route: the request's headers -> (status, body, content type).
Route = Callable[..., Tuple[int, bytes, str]]


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(
        self,
        address: Tuple[str, int],
        routes: Dict[str, Route],
        log: logging.Logger,
        name: str,
    ) -> None:
        self.address_family = family(address[0])
        self.routes = routes
        self.log = log
        self.name = name  # in debug log lines
        self._slots = threading.BoundedSemaphore(MAX_CLIENTS)
        super().__init__(address, Handler)

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
        path = self.path.split("?", 1)[0]
        route = self.server.routes.get(path)
        if route is None:
            known = " or ".join(p for p in self.server.routes if p != "/")
            body = f"not found: try {known}\n".encode()
            self._reply(404, body, "text/plain; charset=utf-8")
            return
        self._reply(*route(self.headers))

    def _reply(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        self.server.log.debug(self.server.name + ": " + format, *args)
