"""Where a server of the daemon listens ('HOST:PORT' settings such as
METRICS['listen']), and the check before forking that it can listen there.
"""

from __future__ import annotations

import errno
import socket
from typing import Any, Optional, Tuple

from core.options import SettingsError

DEFAULT_HOST = "127.0.0.1"  # loopback unless another address is named


def parse_listen(value: Any) -> Tuple[str, int]:
    """'HOST:PORT', '[v6]:PORT', ':PORT', 'PORT' or an int port -> (host, port);
    ValueError with what is expected otherwise."""
    expected = (
        "expected 'HOST:PORT' (e.g. '127.0.0.1:9464', '0.0.0.0:9464', "
        "'[::1]:9464') or a port number"
    )
    if isinstance(value, bool):
        raise ValueError(expected)
    if isinstance(value, int):
        host, port_text = DEFAULT_HOST, str(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            host, sep, port_text = text[1:].partition("]:")
            if not sep:
                raise ValueError(expected)
        elif ":" in text:
            host, _, port_text = text.rpartition(":")
        else:
            host, port_text = "", text
        host = host or DEFAULT_HOST
    else:
        raise ValueError(expected)
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(expected + "; the port must be from 1 to 65535")
    return host, int(port_text)


def check_listen(value: Any) -> Optional[str]:
    try:
        parse_listen(value)
    except ValueError as exc:
        return str(exc)
    return None


class PortInUseError(Exception):
    """Another program listens on the port: a runtime failure (exit 1)."""


def family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def where(host: str, port: int) -> str:
    """'HOST:PORT' as a user writes it ('[::1]:9464' for IPv6)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_port(setting: str, host: str, port: int) -> None:
    """Before forking: bind the address once, as the server will. A port in
    use raises PortInUseError; an address this machine does not have, or a port
    this user may not bind, is a settings mistake (SettingsError). `setting`
    names it in messages, e.g. "METRICS['listen']"."""
    where_text = f"{setting} = {where(host, port)!r}"
    try:
        infos = socket.getaddrinfo(host, port, family(host), socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise SettingsError(
            f"{where_text}: unknown host ({exc.strerror}); name an address of this "
            "machine such as 127.0.0.1, or 0.0.0.0 for every interface"
        ) from None
    sock = socket.socket(infos[0][0], socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(infos[0][4])
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(
                f"{where_text}: port {port} is in use by another program "
                "(another power?); stop it or choose another port"
            ) from None
        if exc.errno == errno.EACCES:
            raise SettingsError(
                f"{where_text}: this user may not listen on port {port}; "
                "choose a port above 1023"
            ) from None
        raise SettingsError(
            f"{where_text}: cannot listen there ({exc.strerror}); name an address "
            "of this machine such as 127.0.0.1, or 0.0.0.0 for every interface"
        ) from None
    finally:
        sock.close()
