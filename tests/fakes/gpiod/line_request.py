"""gpiod.line_request: LineRequest, the lines a program holds.

Not implemented (AttributeError): fd, fileno() (there is no file
descriptor behind the fake) and reconfigure_lines().
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Dict, Iterable, List, Optional, Union

from .exception import RequestReleasedError
from .line import Value

if TYPE_CHECKING:
    from ._fake_kernel import KernelRequest
    from .edge_event import EdgeEvent

__all__ = ["LineRequest"]


class LineRequest:
    """Made by Chip.request_lines() (or gpiod.request_lines()) only."""

    def __init__(self, req: KernelRequest) -> None:
        self._req: Optional[KernelRequest] = req
        self._chip_name: str = ""
        self._offsets: List[int] = []
        self._name_map: Dict[str, int] = {}
        self._lines: List[Union[int, str]] = []

    def __bool__(self) -> bool:
        return self._req is not None

    def __enter__(self) -> LineRequest:
        self._check_released()
        return self

    def __exit__(self, exc_type, exc_value, traceback) -> None:
        self.release()

    def _check_released(self) -> KernelRequest:
        if self._req is None:
            raise RequestReleasedError()
        return self._req

    def release(self) -> None:
        """Free the lines; using the request afterwards raises
        RequestReleasedError. Releasing twice is harmless."""
        if self._req is not None:
            self._req.release()
            self._req = None

    def _line_to_offset(self, line: Union[int, str]) -> int:
        if isinstance(line, int):
            return line
        offset = self._name_map.get(line)
        if offset is None:
            raise ValueError(f"unknown line name: {line}")
        return offset

    def get_value(self, line: Union[int, str]) -> Value:
        return self.get_values([line])[0]

    def get_values(
        self, lines: Optional[Iterable[Union[int, str]]] = None
    ) -> List[Value]:
        req = self._check_released()
        wanted = list(lines or self._lines)
        return req.get_values([self._line_to_offset(line) for line in wanted])

    def set_value(self, line: Union[int, str], value: Value) -> None:
        self.set_values({line: value})

    def set_values(self, values: Dict[Union[int, str], Value]) -> None:
        req = self._check_released()
        req.set_values({self._line_to_offset(k): v for k, v in values.items()})

    def wait_edge_events(self, timeout: Union[timedelta, float, None] = None) -> bool:
        """True once events are queued; False after `timeout` (a timedelta or
        seconds; 0 returns at once, None waits for ever)."""
        return self._check_released().wait(timeout)

    def read_edge_events(self, max_events: Optional[int] = None) -> List[EdgeEvent]:
        """Every queued event up to `max_events` (default 64) and the
        request's event_buffer_size (default 64), oldest first, in one call;
        blocks while none is queued."""
        return self._check_released().read(max_events)

    @property
    def chip_name(self) -> str:
        self._check_released()
        return self._chip_name

    @property
    def num_lines(self) -> int:
        self._check_released()
        return len(self._offsets)

    @property
    def offsets(self) -> List[int]:
        self._check_released()
        return self._offsets

    @property
    def lines(self) -> List[Union[int, str]]:
        self._check_released()
        return self._lines

    def __str__(self) -> str:
        if self._req is None:
            return "<LineRequest RELEASED>"
        return (
            f'<LineRequest chip="{self._chip_name}" num_lines={len(self._offsets)} '
            f"offsets={self._offsets}>"
        )
