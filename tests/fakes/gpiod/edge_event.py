"""gpiod.edge_event: EdgeEvent, an immutable record of one edge as the
kernel queued it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["EdgeEvent"]


@dataclass(frozen=True, init=False, repr=False)
class EdgeEvent:
    class Type(Enum):
        RISING_EDGE = 1
        FALLING_EDGE = 2

    event_type: EdgeEvent.Type
    timestamp_ns: int  # on the line's event clock (CLOCK_MONOTONIC by default)
    line_offset: int
    global_seqno: int  # per request
    line_seqno: int  # per line

    def __init__(
        self,
        event_type: int,
        timestamp_ns: int,
        line_offset: int,
        global_seqno: int,
        line_seqno: int,
    ) -> None:
        object.__setattr__(self, "event_type", EdgeEvent.Type(event_type))
        object.__setattr__(self, "timestamp_ns", timestamp_ns)
        object.__setattr__(self, "line_offset", line_offset)
        object.__setattr__(self, "global_seqno", global_seqno)
        object.__setattr__(self, "line_seqno", line_seqno)

    def __str__(self) -> str:
        return (
            f"<EdgeEvent type={self.event_type} timestamp_ns={self.timestamp_ns} "
            f"line_offset={self.line_offset} global_seqno={self.global_seqno} "
            f"line_seqno={self.line_seqno}>"
        )
