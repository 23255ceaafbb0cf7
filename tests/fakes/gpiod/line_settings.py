"""gpiod.line_settings: LineSettings, a plain dataclass of enums and a
timedelta; the conversion for the C layer reads `.value` of each enum and
`debounce_period.total_seconds()`, so a wrong type (an int for an enum, a
number for the period) is an AttributeError when lines are requested, as
with the real bindings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Dict

from .line import Bias, Clock, Direction, Drive, Edge, Value

__all__ = ["LineSettings"]


@dataclass(repr=False)
class LineSettings:
    direction: Direction = Direction.AS_IS
    edge_detection: Edge = Edge.NONE
    bias: Bias = Bias.AS_IS
    drive: Drive = Drive.PUSH_PULL
    active_low: bool = False
    debounce_period: timedelta = timedelta()
    event_clock: Clock = Clock.MONOTONIC
    output_value: Value = Value.INACTIVE

    def __repr__(self) -> str:
        return (
            f"gpiod.LineSettings(direction=gpiod.line.{self.direction}, "
            f"edge_detection=gpiod.line.{self.edge_detection}, "
            f"bias=gpiod.line.{self.bias}, drive=gpiod.line.{self.drive}, "
            f"active_low={self.active_low}, "
            f"debounce_period={self.debounce_period!r}, "
            f"event_clock=gpiod.line.{self.event_clock}, "
            f"output_value=gpiod.line.{self.output_value})"
        )

    def __str__(self) -> str:
        return (
            f"<LineSettings direction={self.direction} "
            f"edge_detection={self.edge_detection} bias={self.bias} "
            f"drive={self.drive} active_low={self.active_low} "
            f"debounce_period={self.debounce_period} "
            f"event_clock={self.event_clock} output_value={self.output_value}>"
        )


def _line_settings_to_ext(settings: LineSettings) -> Dict[str, Any]:
    """What the C layer receives: plain integers (debounce in microseconds)."""
    return {
        "direction": settings.direction.value,
        "edge_detection": settings.edge_detection.value,
        "bias": settings.bias.value,
        "drive": settings.drive.value,
        "active_low": bool(settings.active_low),
        "debounce_period_us": int(settings.debounce_period.total_seconds() * 1000000),
        "event_clock": settings.event_clock.value,
        "output_value": settings.output_value.value,
    }
