"""The daemon's HTTP server: one thread, non-blocking sockets.

A home network has a scraper or two and a browser or two; it may also have
a slow phone, a port scanner or a stuck client. A thread per connection
lets a handful of those hold every slot, so this server keeps each
connection as a small state in one `selectors` loop instead:

- a request must arrive whole within HEADER_TIMEOUT_S of the connection (a
  client sending a byte every few seconds is dropped then), and be at most
  MAX_REQUEST_BYTES;
- at MAX_CONNECTIONS the oldest connection still sending its request makes
  room for the new one, so idle and slow clients can never lock a scraper
  or a browser out;
- a reply must be taken within WRITE_TIMEOUT_S;
- event streams (server-sent events) are at most MAX_STREAMS; a stream
  whose client stops reading (more than STREAM_BUFFER_BYTES waiting) or is
  gone (a heartbeat fails) is dropped.

Only GET and HEAD are served, from a fixed table of routes: no file system
path is ever built from a request. Every reply says what it is
(Content-Type, X-Content-Type-Options) and what a page may do
(Content-Security-Policy), and closes the connection.
"""

from __future__ import annotations

import collections
import logging
import selectors
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Callable, Deque, Dict, NamedTuple, Optional, Tuple, Union

from web.listen import family

HEADER_TIMEOUT_S = 5.0
WRITE_TIMEOUT_S = 10.0
MAX_CONNECTIONS = 200
MAX_REQUEST_BYTES = 8192
MAX_STREAMS = 16
STREAM_BUFFER_BYTES = 256 * 1024
HEARTBEAT_S = 15.0
POLL_S = 0.5  # how soon stop() and deadlines are seen, at most

SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        "img-src 'self'; connect-src 'self'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'",
    ),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
)
REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}
TEXT = "text/plain; charset=utf-8"


class Request(NamedTuple):
    method: str
    path: str
    query: Dict[str, str]
    headers: Dict[str, str]  # names in lower case


class Response(NamedTuple):
    status: int
    body: bytes
    content_type: str = TEXT
    cache: str = "no-store"


class Stream(NamedTuple):
    """A route's answer that opens an event stream: `first` goes out at
    once (the current state), then whatever broadcast() sends."""

    first: bytes = b""


Route = Callable[[Request], Union[Response, Stream]]


@dataclass
class _Client:
    sock: socket.socket
    opened: float
    deadline: float
    inbox: bytes = b""
    outbox: bytearray = field(default_factory=bytearray)
    streaming: bool = False
    closing: bool = False  # close once the outbox is sent
    last_sent: float = 0.0


class Server:
    """The routes on one address, served by one thread (start, stop)."""

    def __init__(
        self,
        address: Tuple[str, int],
        routes: Dict[str, Route],
        log: logging.Logger,
        name: str,
        on_wake: Optional[Callable[[], None]] = None,
    ) -> None:
        self.routes = dict(routes)
        self.log = log
        self.name = name
        self.on_wake = on_wake  # run in the server's thread after wake()
        self._listener = socket.socket(family(address[0]), socket.SOCK_STREAM)
        try:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind(address)
            self._listener.listen(64)
        except OSError:
            self._listener.close()
            raise
        self._listener.setblocking(False)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._clients: Dict[int, _Client] = {}
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._pending: Deque[bytes] = collections.deque()  # to broadcast
        self._pending_lock = threading.Lock()
        self._woken = False
        self.streams = 0  # open event streams; read by any thread

    @property
    def port(self) -> int:
        return self._listener.getsockname()[1]

    # From any thread ----------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(2.0)

    def wake(self) -> None:
        """Have the server's thread run on_wake() and send what broadcast()
        queued; cheap to call often (one byte while a wake is pending)."""
        if self._woken:
            return
        self._woken = True
        try:
            self._wake_w.send(b"x")
        except OSError:  # the pipe is full: a wake is pending anyway
            pass

    def broadcast(self, data: bytes) -> None:
        """Send `data` to every open event stream (from any thread)."""
        with self._pending_lock:
            self._pending.append(data)
        self.wake()

    # The server's thread ------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                for key, events in self._selector.select(POLL_S):
                    sock = key.fileobj
                    if sock is self._listener:
                        self._accept()
                    elif sock is self._wake_r:
                        self._drain_wake()
                    else:
                        client = self._clients.get(sock.fileno())
                        if client is None:
                            continue
                        if events & selectors.EVENT_READ:
                            self._read(client)
                        if events & selectors.EVENT_WRITE and client.sock.fileno() >= 0:
                            self._write(client)
                self._expire()
        except Exception:  # a bug must not pass silently, nor kill the daemon
            self.log.exception("%s: the HTTP server stopped", self.name)
        finally:
            for client in list(self._clients.values()):
                self._close(client)
            self._selector.close()
            self._listener.close()
            self._wake_r.close()
            self._wake_w.close()

    def _accept(self) -> None:
        for _ in range(64):  # what is waiting, not forever
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of file descriptors, say
                self.log.debug("%s: accept: %s", self.name, exc)
                return
            if len(self._clients) >= MAX_CONNECTIONS and not self._make_room():
                sock.close()
                continue
            sock.setblocking(False)
            now = time.monotonic()
            client = _Client(sock, now, now + HEADER_TIMEOUT_S)
            self._clients[sock.fileno()] = client
            self._selector.register(sock, selectors.EVENT_READ, None)

    def _make_room(self) -> bool:
        """Drop the oldest connection still sending its request."""
        waiting = [
            c for c in self._clients.values() if not c.streaming and not c.outbox
        ]
        if not waiting:
            return False
        self._close(min(waiting, key=lambda c: c.opened))
        return True

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        self._woken = False
        if self.on_wake is not None:
            try:
                self.on_wake()
            except Exception:
                self.log.exception("%s: preparing events", self.name)
        with self._pending_lock:
            pending = list(self._pending)
            self._pending.clear()
        if pending:
            data = b"".join(pending)
            for client in list(self._clients.values()):
                if client.streaming:
                    self._queue(client, data)

    def _read(self, client: _Client) -> None:
        try:
            data = client.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(client)  # gone (a stream's client closed its tab)
            return
        if client.streaming or client.outbox:
            return  # nothing more is read from a client being answered
        client.inbox += data
        end = client.inbox.find(b"\r\n\r\n")
        if end < 0:
            if len(client.inbox) > MAX_REQUEST_BYTES:
                self._reply(client, Response(431, b"request too large\n"))
            return
        self._handle(client, client.inbox[:end].decode("latin-1"))

    def _handle(self, client: _Client, head: str) -> None:
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            self._reply(client, Response(400, b"bad request\n"))
            return
        method, target, _ = parts
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        url = urllib.parse.urlsplit(target)
        query = dict(urllib.parse.parse_qsl(url.query))
        request = Request(method, url.path, query, headers)
        route = self.routes.get(url.path)
        if route is None:
            known = ", ".join(p for p in self.routes if p != "/")
            body = f"not found: try / or {known}\n".encode()
            self._reply(client, Response(404, body), method == "HEAD")
            return
        if method not in ("GET", "HEAD"):
            self._reply(client, Response(405, b"only GET and HEAD\n"))
            return
        try:
            answer = route(request)
        except Exception:
            self.log.exception("%s: %s", self.name, url.path)
            answer = Response(503, b"cannot answer now; see the log\n")
        if isinstance(answer, Stream) and method == "GET":
            self._open_stream(client, answer)
        elif isinstance(answer, Stream):
            self._reply(client, Response(200, b"", "text/event-stream"), True)
        else:
            self._reply(client, answer, method == "HEAD")

    def _headers(self, status: int, content_type: str, extra) -> bytes:
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}"]
        lines.append(f"Content-Type: {content_type}")
        lines += [f"{k}: {v}" for k, v in SECURITY_HEADERS]
        lines += [f"{k}: {v}" for k, v in extra]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _reply(self, client: _Client, response: Response, head: bool = False) -> None:
        extra = [
            ("Content-Length", str(len(response.body))),
            ("Cache-Control", response.cache),
            ("Connection", "close"),
        ]
        data = self._headers(response.status, response.content_type, extra)
        client.closing = True
        client.deadline = time.monotonic() + WRITE_TIMEOUT_S
        self._queue(client, data if head else data + response.body)

    def _open_stream(self, client: _Client, stream: Stream) -> None:
        if self.streams >= MAX_STREAMS:
            body = b"too many event streams open; close one and reload\n"
            self._reply(client, Response(503, body))
            return
        extra = [("Cache-Control", "no-store"), ("Connection", "keep-alive")]
        client.streaming = True
        client.deadline = float("inf")
        client.last_sent = time.monotonic()
        self.streams += 1
        self._queue(
            client, self._headers(200, "text/event-stream", extra) + stream.first
        )

    def _queue(self, client: _Client, data: bytes) -> None:
        if client.streaming and len(client.outbox) + len(data) > STREAM_BUFFER_BYTES:
            self.log.debug("%s: dropping an event stream that does not read", self.name)
            self._close(client)
            return
        client.outbox += data
        self._write(client)

    def _write(self, client: _Client) -> None:
        if client.sock.fileno() < 0:
            return
        if client.outbox:
            try:
                sent = client.sock.send(client.outbox)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._close(client)
                return
            del client.outbox[:sent]
            if sent:
                client.last_sent = time.monotonic()
        if not client.outbox and client.closing:
            self._close(client)
            return
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.outbox else 0)
        self._selector.modify(client.sock, want, None)

    def _expire(self) -> None:
        now = time.monotonic()
        for client in list(self._clients.values()):
            if client.streaming:
                if now - client.last_sent >= HEARTBEAT_S:
                    self._queue(client, b": keep-alive\n\n")  # finds gone clients
            elif now >= client.deadline:
                self._close(client)

    def _close(self, client: _Client) -> None:
        fd = client.sock.fileno()
        if fd < 0:
            return
        if self._clients.get(fd) is client:
            del self._clients[fd]
        if client.streaming:
            client.streaming = False
            self.streams -= 1
        try:
            self._selector.unregister(client.sock)
        except (KeyError, ValueError):
            pass
        try:
            client.sock.close()
        except OSError:
            pass
