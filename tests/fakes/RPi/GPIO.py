# ruff: noqa: N999, N802 (the library's own module and function names)
"""A fake RPi.GPIO for tests off a Raspberry Pi (40-pin header, Pi 1 B+ to 4).

It implements the part of RPi.GPIO 0.7.x that power uses, as the library
documents and behaves, written from its documentation and behaviour:

- the constants (BCM=11, BOARD=10, IN=1, OUT=0, HIGH=1, LOW=0, PUD_OFF=20,
  PUD_DOWN=21, PUD_UP=22, RISING=31, FALLING=32, BOTH=33);
- setmode/getmode/setwarnings, setup, output, input, add_event_detect,
  add_event_callback, remove_event_detect, event_detected and cleanup, with
  the library's argument checks, exception types and messages;
- channel numbers: BCM 0..53 (the library checks only the SoC's range) and
  BOARD only the header pins wired to a usable GPIO (not 3V3, 5V, GND or
  the ID EEPROM pins 27/28);
- edge detection as the library's poll thread does it: the callbacks of a
  channel run one after another on one background thread, each called with
  the channel number in the current numbering; with a bouncetime, an edge
  within bouncetime ms of the previous *accepted* edge is dropped; an
  exception in a callback is printed and the thread goes on.

Not implemented (AttributeError): wait_for_edge, gpio_function, PWM.

Everything whose name starts with `_fake` is test-only: it plays the part of
the hardware (edges on an input, levels written to outputs) and is not part
of RPi.GPIO. Setting FAKE_RPI_GPIO_NOT_A_PI=1 in the environment makes the
import fail as the real library fails on a machine that is not a Pi.
"""

from __future__ import annotations

import os
import queue
import threading
import time
import traceback
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple

if os.environ.get("FAKE_RPI_GPIO_NOT_A_PI"):
    raise RuntimeError("This module can only be run on a Raspberry Pi!")

VERSION = "0.7.1"
RPI_INFO = {
    "P1_REVISION": 3,
    "REVISION": "c03111",
    "TYPE": "Pi 4 Model B",
    "MANUFACTURER": "Sony",
    "PROCESSOR": "BCM2711",
    "RAM": "4G",
}
RPI_REVISION = 3

# The library's constants (py_gpio.c / constants.c).
OUT = 0
IN = 1
LOW = 0
HIGH = 1
BOARD = 10
BCM = 11
PUD_OFF = 20
PUD_DOWN = 21
PUD_UP = 22
RISING = 31
FALLING = 32
BOTH = 33
UNKNOWN = -1
SERIAL = 40
SPI = 41
I2C = 42
HARD_PWM = 43

# BOARD pin -> BCM GPIO on a 40-pin header; -1: not a usable GPIO.
_BOARD_TO_BCM = (
    -1, -1, -1, 2, -1, 3, -1, 4, 14, -1,
    15, 17, 18, 27, -1, 22, 23, -1, 24, 10,
    -1, 9, 25, 11, 8, -1, 7, -1, -1, 5,
    -1, 6, 12, 13, -1, 19, 16, 26, 20, -1, 21,
)  # fmt: skip
_GPIO_COUNT = 54

_NO_BOUNCE = -666  # the library's "no bouncetime given"

_MODE_MSG = (
    "Please set pin numbering mode using GPIO.setmode(GPIO.BOARD) or "
    "GPIO.setmode(GPIO.BCM)"
)
_INVALID_CHANNEL = "The channel sent is invalid on a Raspberry Pi"
_CHANNEL_TYPE = "Channel must be an integer or list/tuple of integers"


class _Detect:
    """Edge detection on one GPIO."""

    def __init__(self, edge: int, bouncetime: int) -> None:
        self.edge = edge
        self.bouncetime = bouncetime
        self.callbacks: List[Callable[[int], Any]] = []
        self.lastcall_us = 0
        self.occurred = False


_lock = threading.RLock()
_mode: Optional[int] = None
_warnings = True
_direction: Dict[int, int] = {}  # gpio -> IN/OUT, for channels set up
_pull: Dict[int, int] = {}  # gpio -> PUD_* given to setup()
_level: Dict[int, int] = {}  # gpio -> the line's level (in or out)
_detects: Dict[int, _Detect] = {}
_outputs: Dict[int, List[Tuple[float, int]]] = {}  # gpio -> (monotonic, level)

# The callback thread (the library's poll thread) and its work.
_events: queue.SimpleQueue[Optional[int]] = queue.SimpleQueue()
_thread: Optional[threading.Thread] = None
_idle = threading.Condition(threading.Lock())
_queued = 0

_fake_callback_errors: List[BaseException] = []  # test-only: what callbacks raised


# Numbering -------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int)  # bool too, as PyLong_Check accepts it


def _gpio(channel: Any) -> int:
    """The library's get_gpio_number: mode, range, then BOARD mapping."""
    if not _is_int(channel):
        raise TypeError(f"an integer is required (got type {type(channel).__name__})")
    if _mode is None:
        raise RuntimeError(_MODE_MSG)
    if _mode == BCM:
        if not 0 <= channel < _GPIO_COUNT:
            raise ValueError(_INVALID_CHANNEL)
        return channel
    if not 1 <= channel <= 40 or _BOARD_TO_BCM[channel] == -1:
        raise ValueError(_INVALID_CHANNEL)
    return _BOARD_TO_BCM[channel]


def _channel(gpio: int) -> int:
    """The library's chan_from_gpio: what a callback is called with."""
    if _mode == BOARD:
        return _BOARD_TO_BCM.index(gpio) if gpio in _BOARD_TO_BCM else -1
    return gpio


def _channels(chanlist: Any) -> List[int]:
    if isinstance(chanlist, (list, tuple)):
        for c in chanlist:
            if not _is_int(c):
                raise ValueError("Channel must be an integer")
        return list(chanlist)
    if _is_int(chanlist):
        return [chanlist]
    raise ValueError(_CHANNEL_TYPE)


# Setup -----------------------------------------------------------------------


def setmode(mode: int) -> None:
    """Set up numbering mode to use for channels (BOARD or BCM)."""
    global _mode
    with _lock:
        if _mode is not None and mode != _mode:
            raise ValueError("A different mode has already been set!")
        if mode not in (BOARD, BCM):
            raise ValueError("An invalid mode was passed to setmode()")
        _mode = mode


def getmode() -> Optional[int]:
    """BOARD, BCM or None."""
    return _mode


def setwarnings(state: Any) -> None:
    global _warnings
    _warnings = bool(state)


def setup(
    channel: Any, direction: int, pull_up_down: int = PUD_OFF, initial: int = -1
) -> None:
    """Set up a channel or a list/tuple of channels as IN or OUT."""
    chans = _channels(channel)
    if direction not in (IN, OUT):
        raise ValueError("An invalid direction was passed to setup()")
    if direction == OUT and pull_up_down != PUD_OFF:
        raise ValueError("pull_up_down parameter is not valid for outputs")
    if direction == IN and initial != -1:
        raise ValueError("initial parameter is not valid for inputs")
    if pull_up_down not in (PUD_OFF, PUD_DOWN, PUD_UP):
        raise ValueError(
            "Invalid value for pull_up_down - should be either PUD_OFF, "
            "PUD_UP or PUD_DOWN"
        )
    with _lock:
        for c in chans:
            gpio = _gpio(c)
            if _warnings and gpio in (2, 3) and pull_up_down != PUD_OFF:
                warnings.warn(
                    "A physical pull up resistor is fitted on this channel!",
                    RuntimeWarning,
                    stacklevel=2,
                )
            if direction == OUT and initial in (LOW, HIGH):
                _write(gpio, initial)
            _direction[gpio] = direction
            _pull[gpio] = pull_up_down
            if direction == IN:
                if pull_up_down == PUD_UP:
                    _level[gpio] = HIGH
                elif pull_up_down == PUD_DOWN:
                    _level[gpio] = LOW
                else:
                    _level.setdefault(gpio, LOW)


def _write(gpio: int, value: int) -> None:
    level = HIGH if value else LOW
    _level[gpio] = level
    _outputs.setdefault(gpio, []).append((time.monotonic(), level))


def output(channel: Any, value: Any) -> None:
    """Output to a channel (or lists of channels and values)."""
    chans = _channels(channel)
    if isinstance(value, (list, tuple)):
        values = list(value)
        if not isinstance(channel, (list, tuple)) or len(values) != len(chans):
            raise RuntimeError("Number of channels != number of values")
    elif _is_int(value):
        values = [value] * len(chans)
    else:
        raise ValueError(
            "Value must be an integer/boolean or a list/tuple of integers/booleans"
        )
    with _lock:
        for c, v in zip(chans, values):
            gpio = _gpio(c)
            if _direction.get(gpio) != OUT:
                raise RuntimeError("The GPIO channel has not been set up as an OUTPUT")
            _write(gpio, v)


def input(channel: int) -> int:
    """HIGH (1) or LOW (0)."""
    with _lock:
        gpio = _gpio(channel)
        if _direction.get(gpio) not in (IN, OUT):
            raise RuntimeError("You must setup() the GPIO channel first")
        return _level.get(gpio, LOW)


# Events ----------------------------------------------------------------------


def add_event_detect(
    channel: int,
    edge: int,
    callback: Optional[Callable[[int], Any]] = None,
    bouncetime: int = _NO_BOUNCE,
) -> None:
    """Enable edge detection; `bouncetime` in ms (the library's C signature
    takes an int: None or a float is a TypeError)."""
    if not _is_int(channel) or not _is_int(edge):
        raise TypeError("an integer is required")
    if not _is_int(bouncetime):
        raise TypeError(
            f"'{type(bouncetime).__name__}' object cannot be interpreted as an integer"
        )
    if callback is not None and not callable(callback):
        raise TypeError("Parameter must be callable")
    with _lock:
        gpio = _gpio(channel)
        if _direction.get(gpio) != IN:
            raise RuntimeError("You must setup() the GPIO channel as an input first")
        if edge not in (RISING, FALLING, BOTH):
            raise ValueError("The edge must be set to RISING, FALLING or BOTH")
        if bouncetime <= 0 and bouncetime != _NO_BOUNCE:
            raise ValueError("Bouncetime must be greater than 0")
        if gpio in _detects:
            raise RuntimeError(
                "Conflicting edge detection already enabled for this GPIO channel"
            )
        detect = _Detect(edge, bouncetime)
        if callback is not None:
            detect.callbacks.append(callback)
        _detects[gpio] = detect
        _start_thread()


def add_event_callback(channel: int, callback: Callable[[int], Any]) -> None:
    if not callable(callback):
        raise TypeError("Parameter must be callable")
    with _lock:
        gpio = _gpio(channel)
        if _direction.get(gpio) != IN:
            raise RuntimeError("You must setup() the GPIO channel as an input first")
        if gpio not in _detects:
            raise RuntimeError(
                "Add event detection using add_event_detect first before adding "
                "a callback"
            )
        _detects[gpio].callbacks.append(callback)


def remove_event_detect(channel: int) -> None:
    """Remove edge detection and its callbacks (no error if there is none)."""
    with _lock:
        _detects.pop(_gpio(channel), None)


def event_detected(channel: int) -> bool:
    with _lock:
        detect = _detects.get(_gpio(channel))
        if detect is None or not detect.occurred:
            return False
        detect.occurred = False
        return True


def cleanup(channel: Any = None) -> None:
    """Reset channels set up by this program to inputs without pull and
    without edge detection; without a channel, all of them and the mode."""
    global _mode
    found = False
    with _lock:
        if channel is None:
            gpios = list(_direction)
            _detects.clear()
            found = bool(gpios)
            for gpio in gpios:
                del _direction[gpio]
                _pull.pop(gpio, None)
            _mode = None
        else:
            for c in _channels(channel):
                gpio = _gpio(c)
                _detects.pop(gpio, None)
                if gpio in _direction:
                    del _direction[gpio]
                    _pull.pop(gpio, None)
                    found = True
    if not found and _warnings:
        warnings.warn(
            "No channels have been set up yet - nothing to clean up!  Try "
            "cleaning up at the end of your program instead!",
            RuntimeWarning,
            stacklevel=2,
        )


# The callback thread ---------------------------------------------------------


def _start_thread() -> None:
    global _thread
    if _thread is None or not _thread.is_alive():
        _thread = threading.Thread(
            target=_run_callbacks, name="fake-RPi.GPIO-events", daemon=True
        )
        _thread.start()


def _run_callbacks() -> None:
    global _queued
    while True:
        gpio = _events.get()
        if gpio is None:
            return
        try:
            with _lock:
                detect = _detects.get(gpio)
                callbacks = list(detect.callbacks) if detect else []
                channel = _channel(gpio)
            for cb in callbacks:
                try:
                    cb(channel)
                except Exception as exc:  # the library prints and goes on
                    traceback.print_exc()
                    _fake_callback_errors.append(exc)
        finally:
            with _idle:
                _queued -= 1
                _idle.notify_all()


# Test-only: the hardware side -------------------------------------------------


def _fake_edge(
    channel: int,
    level_changes: List[int],
    *,
    interval_s: float = 0.0,
    wait: bool = True,
) -> int:
    """TEST ONLY. Drive the line of an input `channel` (current numbering)
    through `level_changes` (0/1 levels, `interval_s` apart), as a sensor
    would. Each change of level is an edge; it is detected when edge
    detection is on and matches its edge type, and dropped when within
    bouncetime ms of the previous accepted edge, as the library does.
    Callbacks run on the background thread. Returns the number of accepted
    edges; with `wait`, returns once their callbacks have run."""
    global _queued
    accepted = 0
    for i, value in enumerate(level_changes):
        if i and interval_s > 0:
            time.sleep(interval_s)
        level = HIGH if value else LOW
        with _lock:
            gpio = _gpio(channel)
            if _direction.get(gpio) == OUT:
                raise RuntimeError(f"fake: channel {channel} is an output")
            previous = _level.get(gpio, LOW)
            _level[gpio] = level
            if level == previous:
                continue
            detect = _detects.get(gpio)
            if detect is None:
                continue
            kind = RISING if level == HIGH else FALLING
            if detect.edge not in (kind, BOTH):
                continue
            now_us = time.monotonic_ns() // 1000
            if (
                detect.bouncetime != _NO_BOUNCE
                and detect.lastcall_us != 0
                and now_us - detect.lastcall_us <= detect.bouncetime * 1000
            ):
                continue
            detect.lastcall_us = now_us
            detect.occurred = True
            accepted += 1
            with _idle:
                _queued += 1
            _events.put(gpio)
    if wait:
        _fake_wait_callbacks()
    return accepted


def _fake_pulse(channel: int, *, width_s: float = 0.0, wait: bool = True) -> int:
    """TEST ONLY. One flash of the meter's LED: the line leaves its idle
    level and comes back (falling then rising on a pulled-up input)."""
    with _lock:
        idle = _level.get(_gpio(channel), LOW)
    return _fake_edge(channel, [1 - idle, idle], interval_s=width_s, wait=wait)


def _fake_wait_callbacks(timeout: float = 5.0) -> None:
    """TEST ONLY. Wait until every accepted edge's callbacks have run."""
    with _idle:
        if not _idle.wait_for(lambda: _queued == 0, timeout):
            raise TimeoutError(f"fake RPi.GPIO: callbacks still busy after {timeout}s")


def _fake_output_history(channel: int) -> List[Tuple[float, int]]:
    """TEST ONLY. (time.monotonic(), level) of every write to a channel's
    output latch (setup(initial=...) and output()), oldest first."""
    with _lock:
        return list(_outputs.get(_gpio(channel), []))


def _fake_outputs(channel: int) -> List[int]:
    """TEST ONLY. The levels written to a channel, oldest first."""
    return [level for _, level in _fake_output_history(channel)]


def _fake_channel(channel: int) -> Dict[str, Any]:
    """TEST ONLY. What the library holds for a channel: direction (IN, OUT or
    None when not set up), pull, level, and edge/bouncetime/callbacks of its
    edge detection (None and 0 when off)."""
    with _lock:
        gpio = _gpio(channel)
        detect = _detects.get(gpio)
        return {
            "gpio": gpio,
            "direction": _direction.get(gpio),
            "pull": _pull.get(gpio),
            "level": _level.get(gpio, LOW),
            "edge": detect.edge if detect else None,
            "bouncetime": (
                None
                if not detect or detect.bouncetime == _NO_BOUNCE
                else detect.bouncetime
            ),
            "callbacks": len(detect.callbacks) if detect else 0,
        }


def _fake_reset() -> None:
    """TEST ONLY. Forget everything, as a fresh process would; stop the
    callback thread."""
    global _mode, _warnings, _thread, _queued
    thread = _thread
    if thread is not None and thread.is_alive():
        _events.put(None)
        thread.join(5.0)
    with _lock:
        _thread = None
        _mode = None
        _warnings = True
        _direction.clear()
        _pull.clear()
        _level.clear()
        _detects.clear()
        _outputs.clear()
        _fake_callback_errors.clear()
    with _idle:
        _queued = 0
