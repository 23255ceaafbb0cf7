"""TEST ONLY: the GPIO character device (the kernel's gpiolib-cdev) and
libgpiod's C layer, in place of the real bindings' `_ext` extension.

What is emulated, from drivers/gpio/gpiolib-cdev.c and libgpiod 2.x:

- Opening a chip: a path that does not exist is ENOENT (FileNotFoundError),
  one that exists but is not a character device ENOTTY, a character device
  that is no GPIO chip (/dev/null) ENODEV, no access EACCES
  (PermissionError). Only paths registered with _fake_chip() are chips.
- A request takes its lines exclusively: a line another request holds is
  EBUSY (OSError errno 16), and a request is all or nothing. The flags are
  validated as the kernel does (edge detection and debounce need an
  explicit input, drive an output, bias a direction; one bias only); a bad
  combination is EINVAL, raised by the bindings as ValueError. The HTE
  event clock is EOPNOTSUPP (NotImplementedError), as on kernels built
  without CONFIG_HTE, which includes Raspberry Pi OS.
- Edge events are stamped with the line's event clock at the moment the
  kernel sees the edge: CLOCK_MONOTONIC (time.monotonic_ns()) by default,
  CLOCK_REALTIME on request. Sequence numbers count per line and per
  request (the same for a one-line request).
- The debouncer (a line requested with a debounce period, done in software
  on a Raspberry Pi): every change of the line restarts a timer of one
  period; when it expires the line's level is read and, only if it differs
  from the last debounced level, an event is queued, stamped with the time
  the timer expired. So bounces collapse into one event stamped one period
  after the last bounce, and a pulse shorter than the period produces no
  event at all. (The real timer counts in jiffies, so its stamps are a few
  ms later than here; this fake stamps exactly last change + period.)
- The request's event FIFO holds event_buffer_size events (default 16 per
  requested line, at most 1024); when it is full the OLDEST event is
  dropped to make room (the sequence numbers then show a gap).
  read_edge_events() returns every queued event up to max_events (default
  64) and the bindings' buffer (event_buffer_size, default 64) in one call,
  and blocks when none is queued; wait_edge_events() is poll() with a
  timeout.
- Output values are kept per line; after a release the line keeps its
  direction and the level it last drove (the kernel frees the line but does
  not reset it), its consumer, edge detection, bias and debounce are cleared.

Nothing here is public API: the `_fake_*` helpers play the hardware and are
re-exported by gpiod/__init__.py for tests.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from collections import deque
from datetime import timedelta
from typing import Any, Deque, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from .edge_event import EdgeEvent
from .line import Bias, Clock, Direction, Drive, Edge, Value

LINES_MAX = 64  # GPIO_V2_LINES_MAX: lines in one request
FIFO_PER_LINE = 16  # the kernel's default event FIFO, per requested line
FIFO_MAX = LINES_MAX * 16
BUFFER_DEFAULT = 64  # the bindings' event buffer when event_buffer_size is 0
BUFFER_MAX = LINES_MAX * 16
READ_DEFAULT = 64  # read_edge_events(max_events=None)
CONSUMER_MAX = 31  # GPIO_MAX_NAME_SIZE - 1

_lock = threading.RLock()
_changed = threading.Condition(_lock)  # events queued, a request released


def _error(code: int) -> Exception:
    """The exception the bindings raise for an errno (Py_gpiod_SetErrFromErrno)."""
    message = os.strerror(code)
    if code == errno.EINVAL:
        return ValueError(code, message)
    if code == errno.EOPNOTSUPP:
        return NotImplementedError(code, message)
    return OSError(code, message)  # FileNotFoundError, PermissionError, ...


class _Line:
    def __init__(self, chip: _Chip, offset: int, name: str) -> None:
        self.chip = chip
        self.offset = offset
        self.name = name
        self.driven: Optional[int] = None  # level applied from outside; None: open
        self.out = 0  # physical level an output drives
        self.direction = Direction.INPUT
        self.active_low = False
        self.bias = Bias.UNKNOWN
        self.drive = Drive.PUSH_PULL
        self.edge = Edge.NONE
        self.clock = Clock.MONOTONIC
        self.debounce_us = 0
        self.consumer = ""
        self.request: Optional[KernelRequest] = None
        self.debounced = 0  # the debouncer's last stable (physical) level
        self.deadline_ns: Optional[int] = None  # the debouncer's pending timer
        self.timer: Optional[threading.Timer] = None
        self.last_ns = 0  # nothing may happen on the line before this
        self.seqno = 0
        self.history: List[Tuple[int, Value]] = []  # output values written

    def level(self) -> int:
        """The physical level on the pin."""
        if self.direction is Direction.OUTPUT:
            return self.out
        if self.driven is not None:
            return self.driven
        return 1 if self.bias is Bias.PULL_UP else 0

    def cancel_timer(self) -> None:
        self.deadline_ns = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class _Chip:
    def __init__(
        self,
        path: str,
        num_lines: int,
        name: str,
        label: str,
        line_names: Dict[int, str],
        accessible: bool,
    ) -> None:
        self.path = path
        self.name = name
        self.label = label
        self.accessible = accessible
        self.lines = [_Line(self, i, line_names.get(i, "")) for i in range(num_lines)]
        self.reads: List[int] = []  # sizes of non-empty read_edge_events()
        self.dropped = 0  # events lost to a full FIFO

    # The C layer's chip calls -------------------------------------------------

    def info(self) -> Tuple[str, str, int]:
        return self.name, self.label, len(self.lines)

    def line_name(self, offset: int) -> str:
        return self.lines[offset].name

    def line_offset_from_name(self, name: str) -> int:
        for line in self.lines:
            if line.name and line.name == name:
                return line.offset
        raise _error(errno.ENOENT)

    def line_info(self, offset: int) -> Dict[str, Any]:
        with _lock:
            line = self.lines[offset]
            used = line.request is not None
            return {
                "offset": offset,
                "name": line.name,
                "used": used,
                "consumer": (line.consumer or "?") if used else "",
                "direction": line.direction.value,
                "active_low": line.active_low,
                "bias": line.bias.value,
                "drive": line.drive.value,
                "edge_detection": line.edge.value,
                "event_clock": line.clock.value,
                "debounced": line.debounce_us != 0,
                "debounce_period_us": line.debounce_us,
            }


_chips: Dict[str, _Chip] = {}  # realpath -> chip


def _find(path: str) -> Optional[_Chip]:
    return _chips.get(os.path.realpath(path))


def open_chip(path: Any) -> _Chip:
    """gpiod_chip_open(): only a registered fake chip is a GPIO chip."""
    if not isinstance(path, str):
        raise TypeError(f"argument 1 must be str, not {type(path).__name__}")
    with _lock:
        chip = _find(path)
    if chip is None:
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            raise _error(exc.errno or errno.ENOENT) from None
        raise _error(errno.ENOTTY if not stat.S_ISCHR(mode) else errno.ENODEV)
    if not chip.accessible:
        raise _error(errno.EACCES)
    return chip


def is_gpiochip_device(path: str) -> bool:
    with _lock:
        return _find(path) is not None


# Requests --------------------------------------------------------------------


def _flags_ok(s: Dict[str, Any]) -> None:
    """gpio_v2_line_config_validate() for one line (and libgpiod's setters)."""
    direction = Direction(s["direction"])
    edge = Edge(s["edge_detection"])
    bias = Bias(s["bias"])
    drive = Drive(s["drive"])
    clock = Clock(s["event_clock"])
    Value(s["output_value"])
    if bias is Bias.UNKNOWN:  # gpiod_line_settings_set_bias() refuses it
        raise _error(errno.EINVAL)
    if s["debounce_period_us"] < 0:
        raise OverflowError("can't convert negative int to unsigned")
    if clock is Clock.HTE:  # no CONFIG_HTE
        raise _error(errno.EOPNOTSUPP)
    if edge is not Edge.NONE and direction is not Direction.INPUT:
        raise _error(errno.EINVAL)
    if drive is not Drive.PUSH_PULL and direction is not Direction.OUTPUT:
        raise _error(errno.EINVAL)
    if bias is not Bias.AS_IS and direction is Direction.AS_IS:
        raise _error(errno.EINVAL)
    if s["debounce_period_us"] and direction is not Direction.INPUT:
        raise _error(errno.EINVAL)


class KernelRequest:
    """One request: its lines, its event FIFO and the bindings' buffer size."""

    def __init__(
        self, chip: _Chip, lines: List[_Line], fifo_size: int, buffer_size: int
    ) -> None:
        self.chip = chip
        self.lines = lines
        self.offsets = [line.offset for line in lines]
        self.fifo: Deque[EdgeEvent] = deque()
        self.fifo_size = fifo_size
        self.buffer_size = buffer_size
        self.seqno = 0
        self.released = False

    @property
    def chip_name(self) -> str:
        return self.chip.name

    def _line(self, offset: int) -> _Line:
        if offset not in self.offsets:
            raise _error(errno.EINVAL)
        return self.chip.lines[offset]

    def wait(self, timeout: Union[timedelta, float, None]) -> bool:
        """poll() on the request: True once an event is queued."""
        seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
        if seconds is not None and seconds < 0:
            raise ValueError("timeout must be non-negative")
        with _changed:
            # Closing a file does not wake a poll() on it in another thread:
            # a release during the wait leaves the waiter to its timeout.
            return _changed.wait_for(lambda: bool(self.fifo), seconds)

    def read(self, max_events: Optional[int]) -> List[EdgeEvent]:
        """read() on the request: blocks until an event is queued, then takes
        every queued event up to max_events and the buffer's capacity."""
        if max_events is None:
            wanted = READ_DEFAULT
        else:
            wanted = int(max_events.__index__())
            if wanted < 0:
                raise OverflowError("can't convert negative int to unsigned")
        wanted = min(wanted, self.buffer_size)
        if wanted == 0:
            return []
        with _changed:
            while not self.fifo:
                if self.released:
                    raise _error(errno.EBADF)
                _changed.wait()
            events = [self.fifo.popleft() for _ in range(min(wanted, len(self.fifo)))]
            self.chip.reads.append(len(events))
        return events

    def get_values(self, offsets: Sequence[int]) -> List[Value]:
        with _lock:
            values = []
            for offset in offsets:
                line = self._line(offset)
                if line.direction is Direction.OUTPUT:
                    level = line.out
                elif line.debounce_us:
                    level = line.debounced
                else:
                    level = line.level()
                values.append(Value(level ^ int(line.active_low)))
            return values

    def set_values(self, values: Dict[int, Any]) -> None:
        if len(values) > len(self.offsets):
            raise ValueError("number of offsets exceeds the number of requested lines")
        # The bindings take `.value` of each value (AttributeError otherwise).
        raw = {offset: int(value.value) for offset, value in values.items()}
        with _lock:
            lines = [(self._line(offset), v) for offset, v in raw.items()]
            if any(line.direction is not Direction.OUTPUT for line, _ in lines):
                raise _error(errno.EPERM)
            now = time.monotonic_ns()
            for line, v in lines:
                logical = 1 if v else 0
                line.out = logical ^ int(line.active_low)
                line.history.append((now, Value(logical)))

    def release(self) -> None:
        with _changed:
            if self.released:
                return
            self.released = True
            for line in self.lines:
                line.cancel_timer()
                line.request = None
                line.consumer = ""
                line.edge = Edge.NONE
                line.debounce_us = 0
                line.bias = Bias.UNKNOWN
                line.drive = Drive.PUSH_PULL
                line.clock = Clock.MONOTONIC
                line.active_low = False
            self.fifo.clear()
            _changed.notify_all()


def request_lines(
    chip: _Chip,
    configs: List[Tuple[int, Dict[str, Any]]],
    output_values: Optional[List[int]],
    consumer: Optional[str],
    event_buffer_size: Optional[int],
) -> KernelRequest:
    """gpiod_chip_request_lines() and the kernel's linereq_create()."""
    if consumer is not None and not isinstance(consumer, str):
        raise TypeError(f"consumer must be str or None, not {type(consumer).__name__}")
    size = 0 if event_buffer_size is None else int(event_buffer_size.__index__())
    if size < 0:
        raise OverflowError("can't convert negative int to unsigned")
    if not configs:
        raise _error(errno.EINVAL)
    if len(configs) > LINES_MAX:
        raise _error(errno.E2BIG)
    for _, settings in configs:
        _flags_ok(settings)
    with _changed:
        lines = [chip.lines[offset] for offset, _ in configs]
        if any(line.request is not None for line in lines):
            raise _error(errno.EBUSY)
        request = KernelRequest(
            chip,
            lines,
            fifo_size=min(size or FIFO_PER_LINE * len(lines), FIFO_MAX),
            buffer_size=min(size or BUFFER_DEFAULT, BUFFER_MAX),
        )
        now = time.monotonic_ns()
        for i, (line, (_, s)) in enumerate(zip(lines, configs)):
            line.request = request
            line.consumer = (consumer or "")[:CONSUMER_MAX]
            line.active_low = s["active_low"]
            line.bias = Bias(s["bias"]) if s["bias"] != Bias.AS_IS.value else line.bias
            line.drive = Drive(s["drive"])
            line.clock = Clock(s["event_clock"])
            line.last_ns = max(line.last_ns, now)
            direction = Direction(s["direction"])
            if direction is Direction.OUTPUT:
                line.direction = direction
                v = s["output_value"] if output_values is None else output_values[i]
                logical = 1 if v else 0
                line.out = logical ^ int(line.active_low)
                line.history.append((now, Value(logical)))
            elif direction is Direction.INPUT:
                line.direction = direction
                line.edge = Edge(s["edge_detection"])
                line.debounce_us = s["debounce_period_us"]
                line.debounced = line.level()
        return request


# Edges -----------------------------------------------------------------------


def _emit(line: _Line, physical: int, at_ns: int) -> None:
    """An edge the edge detector (or the debouncer) sees at at_ns: queue it
    if it is of the kind the line watches."""
    request = line.request
    if request is None:
        return
    rising = bool(physical ^ int(line.active_low))
    if line.edge is Edge.NONE:
        return
    if line.edge is Edge.RISING and not rising:
        return
    if line.edge is Edge.FALLING and rising:
        return
    stamp = at_ns
    if line.clock is Clock.REALTIME:
        stamp = at_ns + (time.time_ns() - time.monotonic_ns())
    line.seqno += 1
    if len(request.lines) == 1:
        request.seqno = line.seqno
    else:
        request.seqno += 1
    event = EdgeEvent(1 if rising else 2, stamp, line.offset, request.seqno, line.seqno)
    if len(request.fifo) >= request.fifo_size:
        request.fifo.popleft()  # kfifo_skip(): the oldest event is lost
        line.chip.dropped += 1
    request.fifo.append(event)
    _changed.notify_all()


def _debounce_expired(line: _Line, at_ns: int) -> None:
    """debounce_work_func(): report the line's level if it changed."""
    line.cancel_timer()
    line.last_ns = max(line.last_ns, at_ns)
    level = line.level()
    if level == line.debounced:
        return
    line.debounced = level
    _emit(line, level, at_ns)


def _timer_fired(line: _Line, deadline: int) -> None:
    with _changed:
        if line.deadline_ns == deadline and line.request is not None:
            line.timer = None
            _debounce_expired(line, deadline)
        _changed.notify_all()


def _arm(line: _Line, now: int) -> None:
    """Start (or run, when already due) the debouncer's timer."""
    deadline = line.deadline_ns
    if deadline is None or line.timer is not None:
        return
    if deadline <= now:
        _debounce_expired(line, deadline)
        return
    line.timer = threading.Timer(
        (deadline - now) / 1e9, _timer_fired, args=(line, deadline)
    )
    line.timer.daemon = True
    line.timer.start()


def _change(line: _Line, level: int, t_ns: int) -> None:
    """The pin goes to `level` at t_ns."""
    if line.deadline_ns is not None and line.deadline_ns <= t_ns:
        _debounce_expired(line, line.deadline_ns)
    before = line.level()
    line.driven = level
    line.last_ns = t_ns
    after = line.level()
    if line.request is None or line.direction is not Direction.INPUT:
        return
    if after == before:
        return
    if line.debounce_us:
        if line.timer is not None:  # mod_delayed_work(): restart the timer
            line.timer.cancel()
            line.timer = None
        line.deadline_ns = t_ns + line.debounce_us * 1000
    else:
        _emit(line, after, t_ns)


def _level_of(value: Any) -> int:
    if isinstance(value, Value):
        return value.value
    if value in (0, 1):  # also False/True
        return int(value)
    raise ValueError(f"fake gpiod: a level is 0 or 1, not {value!r}")


def _chip_line(path: str, offset: int) -> _Line:
    chip = _find(path)
    if chip is None:
        raise ValueError(f"fake gpiod: no fake chip at {path}")
    if not 0 <= offset < len(chip.lines):
        raise ValueError(f"fake gpiod: {path} has no line {offset}")
    return chip.lines[offset]


# Test-only helpers: the hardware side ------------------------------------------


def _fake_chip(
    path: str,
    num_lines: int = 54,
    *,
    label: str = "pinctrl-bcm2711",
    line_names: Optional[Dict[int, str]] = None,
    create: bool = True,
    accessible: bool = True,
) -> str:
    """TEST ONLY. Make `path` a GPIO chip with `num_lines` lines (a Pi's
    gpiochip0 has 54). With `create`, an empty file is created there (if
    missing) so that os.path.exists(path) holds, as for a device node; the
    fake, not the file, makes it a chip. `accessible=False`: opening it is
    EACCES, as for a user outside the 'gpio' group. Lines are named
    GPIO<offset> unless `line_names` says otherwise. Returns the path."""
    if create and not os.path.exists(path):
        with open(path, "w"):
            pass
    names = {i: f"GPIO{i}" for i in range(num_lines)}
    names.update(line_names or {})
    chip = _Chip(
        path, num_lines, os.path.basename(path), label, names, accessible=accessible
    )
    with _lock:
        _chips[os.path.realpath(path)] = chip
    return path


def _fake_edges(
    path: str,
    offset: int,
    changes: Iterable[Tuple[Any, int]],
    *,
    settle: bool = True,
) -> int:
    """TEST ONLY. Drive the pin of line `offset` through `changes`, pairs of
    (level 0/1, time.monotonic_ns() of the change), in time order, as the
    sensor would. A change of level is an edge; the kernel queues an event
    for it as described in this module's docstring (edge kind, debounce,
    FIFO).

    A time in the future is waited for, so the event appears when it
    happens. Times in the past (but not before the line was requested or
    before the previous change) are queued at once, as the kernel queues
    edges while the reader is busy elsewhere: such a batch is a burst that
    one read_edge_events() call returns. With `settle`, returns only once a
    pending debounce period has run out. Returns the number of events the
    line produced during the call (including any lost to a full FIFO)."""
    changes = [(_level_of(level), int(t)) for level, t in changes]
    with _lock:
        line = _chip_line(path, offset)
        if line.request is not None and line.direction is Direction.OUTPUT:
            raise ValueError(f"fake gpiod: line {offset} of {path} is an output")
        seqno = line.seqno
        last = line.last_ns
    for _, t in changes:
        if t < last:
            raise ValueError(
                f"fake gpiod: a change at {t} ns is before the line was "
                f"requested or before its previous change ({last} ns)"
            )
        last = t
    i = 0
    while i < len(changes):
        delay = changes[i][1] - time.monotonic_ns()
        if delay > 0:
            time.sleep(delay / 1e9)
        with _changed:
            now = time.monotonic_ns()
            while i < len(changes) and changes[i][1] <= now:
                _change(line, *changes[i])
                i += 1
            _arm(line, now)
            _changed.notify_all()
    if settle:
        with _changed:
            while line.deadline_ns is not None:
                wait = (line.deadline_ns - time.monotonic_ns()) / 1e9
                _changed.wait(max(wait, 0.001) + 0.05)
    with _lock:
        return line.seqno - seqno


def _fake_pulse(
    path: str,
    offset: int,
    at_ns: Optional[int] = None,
    *,
    width_ns: int = 10_000_000,
    settle: bool = True,
) -> int:
    """TEST ONLY. One flash of the meter: the pin leaves its idle level at
    `at_ns` (default now) and comes back `width_ns` later (on a pulled-up
    input: a falling, then a rising edge). Returns _fake_edges()'s count."""
    with _lock:
        idle = _chip_line(path, offset).level()
    start = time.monotonic_ns() if at_ns is None else at_ns
    return _fake_edges(
        path, offset, [(1 - idle, start), (idle, start + width_ns)], settle=settle
    )


def _fake_level(path: str, offset: int) -> int:
    """TEST ONLY. The physical level on the pin now."""
    with _lock:
        return _chip_line(path, offset).level()


def _fake_value_history(path: str, offset: int) -> List[Tuple[int, Value]]:
    """TEST ONLY. (time.monotonic_ns(), logical Value) of every value an
    output request put on the line (its initial value, then set_value[s]),
    oldest first."""
    with _lock:
        return list(_chip_line(path, offset).history)


def _fake_values(path: str, offset: int) -> List[Value]:
    """TEST ONLY. The values written to an output line, oldest first."""
    return [value for _, value in _fake_value_history(path, offset)]


def _fake_line(path: str, offset: int) -> Dict[str, Any]:
    """TEST ONLY. What the kernel holds for a line: LineInfo's fields plus
    the physical level, the holding request's FIFO size and buffer size
    (None when free) and whether a debounce timer is pending."""
    with _lock:
        line = _chip_line(path, offset)
        info = line.chip.line_info(offset)
        request = line.request
        info.update(
            level=line.level(),
            fifo_size=request.fifo_size if request else None,
            buffer_size=request.buffer_size if request else None,
            debounce_pending=line.deadline_ns is not None,
        )
        return info


def _fake_reads(path: str) -> List[int]:
    """TEST ONLY. How many events each non-empty read_edge_events() call on
    the chip returned, oldest first."""
    with _lock:
        chip = _find(path)
        return list(chip.reads) if chip else []


def _fake_dropped(path: str) -> int:
    """TEST ONLY. Events the chip's requests lost to a full FIFO."""
    with _lock:
        chip = _find(path)
        return chip.dropped if chip else 0


def _fake_reset() -> None:
    """TEST ONLY. Forget every chip; release every request (their holders
    then get EBADF from a blocking read)."""
    with _changed:
        for chip in _chips.values():
            for line in chip.lines:
                line.cancel_timer()
                if line.request is not None:
                    line.request.release()
        _chips.clear()
        _changed.notify_all()
