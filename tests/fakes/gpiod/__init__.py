# ruff: noqa: F401 (re-exports, as the real package makes them)
"""A fake `gpiod` (libgpiod v2 Python bindings) for tests off GPIO hardware.

It implements the part of the gpiod 2.x API that power uses, as the
bindings document and behave, written from their documentation and the
kernel's GPIO character device (see _fake_kernel.py for the kernel side):

- the package layout: gpiod.request_lines(), gpiod.is_gpiochip_device(),
  gpiod.Chip, ChipInfo, LineInfo, LineSettings, LineRequest, EdgeEvent,
  ChipClosedError, RequestReleasedError at the top; the enums Value,
  Direction, Bias, Drive, Edge and Clock only in gpiod.line (the real
  package does not re-export them either);
- request_lines(path, config, consumer=None, event_buffer_size=None,
  output_values=None): config maps offsets, names or tuples of them to a
  LineSettings (or None for the defaults); the errors of the real bindings:
  FileNotFoundError for a missing chip, OSError ENOTTY/ENODEV for a path
  that is no GPIO chip, PermissionError without access, ValueError for an
  offset beyond the chip, a repeated offset or an invalid combination of
  settings, OSError EBUSY for a line already requested (by anyone), and
  AttributeError when a setting has the wrong type;
- LineRequest: wait_edge_events(timeout), read_edge_events(max_events)
  (every queued event at once, up to the buffer), get_value(s),
  set_value(s), release(), context manager; RequestReleasedError after
  release;
- edge events stamped by the "kernel" on CLOCK_MONOTONIC, its software
  debouncer, its FIFO that drops the oldest event when full.

Everything whose name starts with `_fake` is test-only: it plays the
hardware (a chip at a path, levels on a pin, what outputs were driven to)
and is not part of gpiod.
"""

from __future__ import annotations

from typing import Dict, Iterable, Optional, Union

from . import (
    chip,
    chip_info,
    edge_event,
    exception,
    line,
    line_info,
    line_request,
    line_settings,
)
from ._fake_kernel import (
    _fake_chip,
    _fake_dropped,
    _fake_edges,
    _fake_level,
    _fake_line,
    _fake_pulse,
    _fake_reads,
    _fake_reset,
    _fake_value_history,
    _fake_values,
)
from .chip import Chip
from .chip_info import ChipInfo
from .edge_event import EdgeEvent
from .exception import ChipClosedError, RequestReleasedError
from .line_info import LineInfo
from .line_request import LineRequest
from .line_settings import LineSettings

__version__ = "2.5.0"  # the bindings' API this fake follows
api_version = "2.2.1"  # libgpiod's, as the C library reports it

__all__ = [
    "chip",
    "chip_info",
    "edge_event",
    "exception",
    "line",
    "line_info",
    "line_request",
    "line_settings",
    "Chip",
    "ChipInfo",
    "EdgeEvent",
    "ChipClosedError",
    "RequestReleasedError",
    "LineInfo",
    "LineRequest",
    "LineSettings",
    "__version__",
    "api_version",
    "is_gpiochip_device",
    "request_lines",
]


def is_gpiochip_device(path: str) -> bool:
    """True if `path` is a GPIO chip's character device."""
    from ._fake_kernel import is_gpiochip_device as check

    return check(path)


def request_lines(
    path: str,
    config: Dict[Union[Iterable[Union[int, str]], int, str], Optional[LineSettings]],
    consumer: Optional[str] = None,
    event_buffer_size: Optional[int] = None,
    output_values: Optional[Dict[Union[int, str], line.Value]] = None,
) -> LineRequest:
    """Open the chip at `path`, request lines, close the chip and return the
    request."""
    with Chip(path) as opened:
        return opened.request_lines(
            config=config,
            consumer=consumer,
            event_buffer_size=event_buffer_size,
            output_values=output_values,
        )
