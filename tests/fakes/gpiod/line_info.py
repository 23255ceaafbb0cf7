"""gpiod.line_info: LineInfo, a snapshot of a line as the kernel reports it
(what `gpioinfo` prints)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from .line import Bias, Clock, Direction, Drive, Edge

__all__ = ["LineInfo"]


@dataclass(frozen=True, init=False, repr=False)
class LineInfo:
    offset: int
    name: str
    used: bool
    consumer: str
    direction: Direction
    active_low: bool
    bias: Bias
    drive: Drive
    edge_detection: Edge
    event_clock: Clock
    debounced: bool
    debounce_period: timedelta

    def __init__(
        self,
        offset: int,
        name: str,
        used: bool,
        consumer: str,
        direction: int,
        active_low: bool,
        bias: int,
        drive: int,
        edge_detection: int,
        event_clock: int,
        debounced: bool,
        debounce_period_us: int,
    ) -> None:
        set_ = object.__setattr__
        set_(self, "offset", offset)
        set_(self, "name", name)
        set_(self, "used", used)
        set_(self, "consumer", consumer)
        set_(self, "direction", Direction(direction))
        set_(self, "active_low", active_low)
        set_(self, "bias", Bias(bias))
        set_(self, "drive", Drive(drive))
        set_(self, "edge_detection", Edge(edge_detection))
        set_(self, "event_clock", Clock(event_clock))
        set_(self, "debounced", debounced)
        set_(self, "debounce_period", timedelta(microseconds=debounce_period_us))

    def __str__(self) -> str:
        return (
            f'<LineInfo offset={self.offset} name="{self.name}" used={self.used} '
            f'consumer="{self.consumer}" direction={self.direction} '
            f"active_low={self.active_low} bias={self.bias} drive={self.drive} "
            f"edge_detection={self.edge_detection} event_clock={self.event_clock} "
            f"debounced={self.debounced} debounce_period={self.debounce_period}>"
        )
