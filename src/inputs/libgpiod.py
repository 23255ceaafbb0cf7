"""libgpiod v2 backend (`gpiod` package): the GPIO character device.

Works on every Raspberry Pi including the 5 (where RPi.GPIO does not) and on
other Linux boards. The kernel debounces the line and timestamps each edge
on CLOCK_MONOTONIC as it happens, so intervals do not depend on how quickly
Python gets to the event. One reader thread waits for events with a short
timeout (so stop is prompt), reads every queued event in one call and hands
each on; there is no callback thread per edge.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from datetime import timedelta
from typing import Any, Optional

from core.meter import END, EXPORT_PULSE, EXPORTING, IMPORTING, START
from core.options import Option
from inputs.base import Backlog, EdgeCallback, InputBackend, InputError, LedOutput

WAIT_S = 0.1  # the longest stop() waits for the reader
EVENT_BUFFER = 1024  # the kernel's most: edges wait there if we are held up
CONSUMER = "power"


def import_gpiod() -> Any:
    try:
        import gpiod
        import gpiod.line  # noqa: F401 (the enums)
    except ImportError as exc:
        raise InputError(
            f"INPUT backend 'gpiod' needs the gpiod module, libgpiod v2 ({exc}). "
            "Install it with 'pip install gpiod' (on a Raspberry Pi; to try "
            "power without a meter use --simulate WATTS)"
        ) from None
    return gpiod


def chip_path(chip: str) -> str:
    """'0', 'gpiochip0' or '/dev/gpiochip0' -> '/dev/gpiochip0'."""
    if chip.isdigit():
        return f"/dev/gpiochip{chip}"
    if "/" not in chip:
        return f"/dev/{chip}"
    return chip


def _lines(gpiod: Any, path: str) -> Optional[int]:
    """How many lines the chip has, or None if it cannot be asked."""
    try:
        with gpiod.Chip(path) as chip:
            return chip.get_info().num_lines
    except (OSError, ValueError):
        return None


def _request_error(
    gpiod: Any, exc: Exception, what: str, path: str, line: int
) -> InputError:
    """A refused line request explained; a line past the chip's end named."""
    if isinstance(exc, ValueError) or getattr(exc, "errno", None) == errno.EINVAL:
        count = _lines(gpiod, path)
        if count is not None and line >= count:
            return InputError(
                f"{what}: {path} has {count} lines (0 to {count - 1}); line "
                f"{line} is past its end. Check the line number, or the chip "
                "('gpioinfo' lists each chip's lines)"
            )
    return _explain(exc, what, path)


def _explain(exc: Exception, what: str, path: str) -> InputError:
    if isinstance(exc, FileNotFoundError):
        return InputError(
            f"{what}: {path} does not exist; list the chips with 'gpiodetect' "
            "(Debian package gpiod) and set INPUT['chip']"
        )
    if isinstance(exc, PermissionError):
        return InputError(
            f"{what}: no permission to open {path}; add this user to the "
            "'gpio' group ('sudo adduser $USER gpio', then log in again)"
        )
    if isinstance(exc, OSError) and exc.errno == errno.EBUSY:
        return InputError(
            f"{what}: the line is in use by another program ('gpioinfo' shows which)"
        )
    return InputError(f"{what}: {type(exc).__name__}: {exc}")


class GpiodLed(LedOutput):
    def __init__(self, gpiod: Any, path: str, pin: int, log) -> None:
        super().__init__(pin, log)
        from gpiod.line import Direction, Value

        self._value = Value
        try:
            self.request = gpiod.request_lines(
                path,
                consumer=f"{CONSUMER}-led",
                config={
                    pin: gpiod.LineSettings(
                        direction=Direction.OUTPUT, output_value=Value.INACTIVE
                    )
                },
            )
        except (OSError, ValueError) as exc:
            what = f"LED on {path} line {pin}"
            raise _request_error(gpiod, exc, what, path, pin) from None

    def set(self, on: bool) -> None:
        value = self._value.ACTIVE if on else self._value.INACTIVE
        self.request.set_value(self.pin, value)

    def close(self) -> None:
        try:
            self.request.set_value(self.pin, self._value.INACTIVE)
        finally:
            self.request.release()


class GpiodInput(InputBackend):
    OPTIONS = {
        "backend": Option("str"),
        "chip": Option("str", "gpiochip0"),
        "line": Option("int", 24, minimum=0, maximum=1023),
        "edge": Option("str", "falling", choices=("falling", "rising")),
        "pull": Option("str", "up", choices=("up", "down", "off")),
        # The kernel's debounce: a level must hold this long to count. Off by
        # default: with a period set the kernel stamps each edge when its
        # debounce work runs on the jiffy timer, not when it happened
        # (measured on gpio-sim: 6 ms late on median, up to 21 ms, with 1 ms),
        # and a period near the flash length loses flashes. The meter's
        # debounce_ms rejects bounces on the exact edge times, and counts them.
        "filter_ms": Option("number", 0.0, minimum=0.0, maximum=1000.0),
        # Export: a direction input that is high (direction_active) while the
        # meter exports, as vzlogger's S0 gpio_dir, which makes the LED's
        # pulses export; or a second sensor on the meter's export LED.
        "direction_line": Option("int", None, nullable=True, minimum=0, maximum=1023),
        "direction_active": Option("str", "high", choices=("high", "low")),
        "export_line": Option("int", None, nullable=True, minimum=0, maximum=1023),
    }

    @classmethod
    def preflight(cls, options: dict) -> None:
        gpiod = import_gpiod()
        path = chip_path(options["chip"])
        if not os.path.exists(path):
            raise _explain(FileNotFoundError(path), "INPUT['chip']", path)
        if not gpiod.is_gpiochip_device(path):
            raise InputError(
                f"INPUT['chip'] = {options['chip']!r}: {path} is not a GPIO chip; "
                "list the chips with 'gpiodetect'"
            )

    def __init__(self, options, meter, log) -> None:
        super().__init__(options, meter, log)
        self.gpiod = import_gpiod()
        self.path = chip_path(options["chip"])
        self.line: int = options["line"]
        # Export (options made by hand, as the VM tests make them, may lack
        # these keys: no direction or export line then).
        self.direction: Optional[int] = options.get("direction_line")
        self.direction_high = options.get("direction_active", "high") == "high"
        self.export: Optional[int] = options.get("export_line")
        self.request: Any = None
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def describe(self) -> str:
        text = f"gpiod {self.path} line {self.line}"
        if self.direction is not None:
            text += f", direction line {self.direction}"
        if self.export is not None:
            text += f", export LED line {self.export}"
        return text

    def start(self, on_edge: EdgeCallback, backlog: Backlog) -> None:
        from gpiod.line import Bias, Direction, Edge

        bias = {"up": Bias.PULL_UP, "down": Bias.PULL_DOWN, "off": Bias.DISABLED}
        settings = self.gpiod.LineSettings(
            direction=Direction.INPUT,
            edge_detection=Edge.BOTH,  # both ends of a flash: its width
            bias=bias[self.options["pull"]],
            debounce_period=timedelta(milliseconds=self.options["filter_ms"]),
        )
        config = {self.line: settings}
        direction, export = self.direction, self.export
        if export is not None:
            config[export] = settings  # a sensor like the import LED's
        if direction is not None:
            config[direction] = self.gpiod.LineSettings(
                direction=Direction.INPUT,
                edge_detection=Edge.BOTH,
                bias=bias[self.options["pull"]],
            )
        try:
            self.request = self.gpiod.request_lines(
                self.path,
                consumer=CONSUMER,
                config=config,
                event_buffer_size=EVENT_BUFFER,
            )
        except (OSError, ValueError) as exc:
            what = f"input {self.path} line {self.line}"
            raise _request_error(self.gpiod, exc, what, self.path, self.line) from None
        if direction is not None:  # which way energy flows as we start
            from gpiod.line import Value

            high = self.request.get_value(direction) == Value.ACTIVE
            exporting = high == self.direction_high
            on_edge(
                time.monotonic_ns(), time.time(), EXPORTING if exporting else IMPORTING
            )
        self._thread = threading.Thread(
            target=self._read, args=(on_edge,), name=f"gpiod-{self.line}", daemon=True
        )
        self._thread.start()

    def _read(self, on_edge: EdgeCallback) -> None:
        """Hand each kernel-stamped edge on, with the wall time it happened
        and whether it starts a flash (the configured edge) or ends it."""
        from gpiod.edge_event import EdgeEvent

        falling = EdgeEvent.Type.FALLING_EDGE
        rising = EdgeEvent.Type.RISING_EDGE
        starts_on_falling = self.options["edge"] == "falling"
        line, direction, export = self.line, self.direction, self.export
        # The direction line's edge that starts an export.
        exports_on = rising if self.direction_high else falling
        request = self.request
        wait = timedelta(seconds=WAIT_S)
        monotonic_ns, wall = time.monotonic_ns, time.time
        while not self._stopping.is_set():
            try:
                if not request.wait_edge_events(wait):
                    continue
                events = request.read_edge_events()
            except (OSError, ValueError) as exc:
                if not self._stopping.is_set():
                    self.log.error("gpiod %s line %s: %s", self.path, self.line, exc)
                    self._stopping.wait(1.0)
                continue
            now_ns, now_wall = monotonic_ns(), wall()
            for event in events:
                ts = event.timestamp_ns
                starts = (event.event_type == falling) == starts_on_falling
                offset = event.line_offset
                if offset == line:
                    kind = START if starts else END
                elif offset == direction:
                    kind = EXPORTING if event.event_type == exports_on else IMPORTING
                elif offset == export and starts:
                    kind = EXPORT_PULSE  # the export LED's flash begins
                else:
                    continue
                on_edge(ts, now_wall - (now_ns - ts) / 1e9, kind)

    def led(self, pin: int) -> LedOutput:
        return GpiodLed(self.gpiod, self.path, pin, self.log)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(WAIT_S * 2 + 0.5)
        if self.request is not None:
            try:
                self.request.release()
            except (OSError, ValueError) as exc:
                self.log.debug("gpiod release: %s", exc)
            self.request = None
