"""gpiod.exception: the library's own errors (everything else is a builtin
OSError subclass or ValueError, mapped from errno as the bindings do)."""

from __future__ import annotations

__all__ = ["ChipClosedError", "RequestReleasedError"]


class ChipClosedError(Exception):
    """A closed Chip was used."""

    def __init__(self) -> None:
        super().__init__("I/O operation on closed chip")


class RequestReleasedError(Exception):
    """A released LineRequest was used."""

    def __init__(self) -> None:
        super().__init__("GPIO lines have been released")
