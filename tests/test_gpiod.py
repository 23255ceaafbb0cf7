"""The libgpiod v2 input backend (src/inputs/libgpiod.py) and its LEDs,
against a fake `gpiod` package.

The real bindings need a GPIO character device, so tests/fakes/gpiod stands
in for them: the v2 API as documented (request_lines, LineSettings, the
gpiod.line enums, LineRequest, EdgeEvent), the errors the bindings raise,
and the kernel's side of it — events stamped on CLOCK_MONOTONIC, the
software debouncer, the event FIFO — plus test-only `_fake_*` helpers that
play the hardware. The `gpiod` fixture puts it on sys.path for one test;
without it, importing gpiod fails here as on a machine without libgpiod.

Kernel timestamps are exact integers here, so the tests can demand that
intervals equal the injected differences to the nanosecond.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import pytest
from conftest import FAKES, forget_package, import_fake, read_csv, write_settings

import config.settings
from core.journal import journal_path
from core.meter import END, START, MeterConfig
from core.options import validate
from inputs.base import InputError
from inputs.libgpiod import GpiodInput, GpiodLed, chip_path
from service.leds import StatusLeds
from service.runtime import Service, StartError

POWER = Path(__file__).resolve().parent.parent / "src" / "power.py"
LOG = logging.getLogger("test_gpiod")

MS = 1_000_000  # ns
DEBOUNCE_MS = 5.0  # the meter's lockout, and the kernel filter where set
FLASH_NS = 12 * MS  # a flash of the meter's LED: longer than DEBOUNCE_MS
LINE = 24  # the input line
STOP_LIMIT_S = 1.0  # DESIGN: a stop within one second

_started: List[GpiodInput] = []  # stopped by the fixture, whatever a test did


def _forget_gpiod() -> None:
    forget_package("gpiod")


@pytest.fixture
def gpiod(monkeypatch):
    """The fake gpiod, importable as `gpiod` for this test only."""
    fake = import_fake(monkeypatch, "gpiod", "gpiod")
    yield fake
    for backend in _started:
        backend.stop()
    _started.clear()
    fake._fake_reset()
    _forget_gpiod()


@pytest.fixture
def chip(gpiod, tmp_path) -> str:
    """A 54-line chip (a Pi's gpiochip0) at a real path under tmp_path."""
    return gpiod._fake_chip(str(tmp_path / "gpiochip0"), 54)


def meter_config(debounce_ms: float = DEBOUNCE_MS) -> MeterConfig:
    # max_power_w high: flashes tens of ms apart would be implausible at 30 kW.
    # Pulses only: no estimates between them (their timing is the host's).
    return MeterConfig(
        name="main",
        debounce_ms=debounce_ms,
        max_power_w=1e9,
        idle_timeout_s=0,
        estimate_fall=0.0,
    )


def make_input(
    chip_: str, config_: Optional[MeterConfig] = None, **options
) -> GpiodInput:
    """A backend as settings.py would configure it (defaults filled in)."""
    values = validate(
        "INPUT", {"backend": "gpiod", "chip": chip_, "line": LINE, **options},
        GpiodInput.OPTIONS,
    )  # fmt: skip
    backend = GpiodInput(values, config_ or meter_config(), LOG)
    _started.append(backend)
    return backend


class Edges:
    """An on_edge recorder: each call's arguments, the clocks when it came
    and the calling thread."""

    def __init__(self) -> None:
        self.calls: List[Tuple[int, float]] = []
        self.clocks: List[Tuple[int, float]] = []
        self.threads: List[threading.Thread] = []
        self.ends: List[int] = []  # END edges' stamps (calls: the STARTs)

    def __call__(self, t_mono_ns, t_wall, kind) -> None:
        if kind == END:
            self.ends.append(t_mono_ns)
            return
        assert kind == START
        self.clocks.append((time.monotonic_ns(), time.time()))
        self.calls.append((t_mono_ns, t_wall))
        self.threads.append(threading.current_thread())

    @property
    def stamps(self) -> List[int]:
        return [t for t, _ in self.calls]


def wait_for(predicate, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.002)
    return predicate()


def flashes(
    start_ns: int, gaps_ns: Sequence[int], width_ns: int = FLASH_NS
) -> Tuple[List[Tuple[int, int]], List[int]]:
    """Level changes of flashes on a pulled-up input (low for width_ns), the
    first at start_ns and each next one gaps_ns[i] later; and their starts."""
    starts = [start_ns]
    for gap in gaps_ns:
        starts.append(starts[-1] + gap)
    changes = []
    for t in starts:
        changes += [(0, t), (1, t + width_ns)]
    return changes, starts


def past_window(duration_ns: int) -> int:
    """Let `duration_ns` pass and return its start: edges stamped inside it
    are in the past when injected, so the kernel queues them all at once
    (as while the reader is busy) and one read returns them: a burst."""
    start = time.monotonic_ns()
    time.sleep(duration_ns / 1e9 + 0.01)
    return start


def kernel_period_ns(gpiod, chip_: str) -> int:
    """The debounce period the kernel applies to the input line."""
    period = gpiod.Chip(chip_).get_line_info(LINE).debounce_period
    return period // timedelta(microseconds=1) * 1000


def assert_wall_matches_kernel_stamp(edges: Edges) -> None:
    """Each wall time is the wall clock when the kernel stamped the edge:
    now - (monotonic now - timestamp_ns), read just before the call."""
    for (t_ns, t_wall), (mono_c, wall_c) in zip(edges.calls, edges.clocks):
        assert type(t_ns) is int and type(t_wall) is float
        expected = wall_c - (mono_c - t_ns) / 1e9
        assert abs(t_wall - expected) < 0.05, (t_wall, expected)


def journal_rows(data_dir: str, meter: str = "main"):
    conn = sqlite3.connect(journal_path(data_dir))
    try:
        return conn.execute(
            "SELECT pulses, power_w, interval_s, time FROM readings "
            "WHERE meter = ? ORDER BY seq",
            (meter,),
        ).fetchall()
    finally:
        conn.close()


# The fake itself: it must be as strict as the library -----------------------


def test_fake_mirrors_the_package_layout(gpiod):
    from gpiod.line import Bias, Clock, Direction, Drive, Edge, Value

    for name in ("request_lines", "is_gpiochip_device", "Chip", "LineSettings",
                 "LineRequest", "EdgeEvent", "LineInfo", "ChipInfo",
                 "RequestReleasedError", "ChipClosedError"):  # fmt: skip
        assert hasattr(gpiod, name), name
    assert not hasattr(gpiod, "Value")  # the enums live in gpiod.line only
    assert [v.name for v in Value] == ["INACTIVE", "ACTIVE"]
    assert bool(Value.ACTIVE) and not bool(Value.INACTIVE)
    assert [d.name for d in Direction] == ["AS_IS", "INPUT", "OUTPUT"]
    assert [b.name for b in Bias] == [
        "AS_IS", "UNKNOWN", "DISABLED", "PULL_UP", "PULL_DOWN"
    ]  # fmt: skip
    assert [e.name for e in Edge] == ["NONE", "RISING", "FALLING", "BOTH"]
    assert [c.name for c in Clock] == ["MONOTONIC", "REALTIME", "HTE"]
    assert Drive.PUSH_PULL in Drive
    settings = gpiod.LineSettings()
    assert (settings.direction, settings.edge_detection, settings.bias) == (
        Direction.AS_IS, Edge.NONE, Bias.AS_IS
    )  # fmt: skip
    assert settings.debounce_period == timedelta(0)
    assert (settings.event_clock, settings.output_value) == (
        Clock.MONOTONIC, Value.INACTIVE
    )  # fmt: skip
    assert [t.name for t in gpiod.EdgeEvent.Type] == ["RISING_EDGE", "FALLING_EDGE"]
    event = gpiod.EdgeEvent(2, 123, 24, 7, 3)
    assert event.event_type is gpiod.EdgeEvent.Type.FALLING_EDGE
    assert (event.timestamp_ns, event.line_offset) == (123, 24)
    assert (event.global_seqno, event.line_seqno) == (7, 3)


def test_fake_request_errors_are_the_library_errors(gpiod, chip, tmp_path):
    from gpiod.line import Clock, Direction, Edge

    def request(path=chip, offset=5, **settings):
        return gpiod.request_lines(
            path, consumer="t", config={offset: gpiod.LineSettings(**settings)}
        )

    with pytest.raises(FileNotFoundError):
        request("/nonexistent/gpiochip9")
    plain = tmp_path / "not-a-chip"
    plain.write_text("")
    with pytest.raises(OSError) as caught:
        request(str(plain))
    assert caught.value.errno == 25  # ENOTTY: not a character device
    if os.path.exists("/dev/null"):
        with pytest.raises(OSError) as caught:
            request("/dev/null")
        assert caught.value.errno == 19  # ENODEV: no GPIO chip
    locked = gpiod._fake_chip(str(tmp_path / "gpiochip1"), accessible=False)
    with pytest.raises(PermissionError):
        request(locked)
    with pytest.raises(ValueError, match="line offset of out range"):  # sic
        request(offset=54)
    with pytest.raises(ValueError, match="exactly once"):
        gpiod.request_lines(chip, config={(5, 6): None, 5: None})
    with pytest.raises(ValueError):  # edge detection needs an explicit input
        request(direction=Direction.OUTPUT, edge_detection=Edge.FALLING)
    with pytest.raises(ValueError):  # so does debounce
        request(debounce_period=timedelta(milliseconds=5))
    with pytest.raises(AttributeError):  # a period is a timedelta
        request(direction=Direction.INPUT, debounce_period=0.005)
    with pytest.raises(AttributeError):  # settings are enums
        request(direction=2)
    with pytest.raises(NotImplementedError):  # no HTE in a Pi's kernel
        request(direction=Direction.INPUT, event_clock=Clock.HTE)

    held = request(direction=Direction.INPUT)
    assert held and held.offsets == [5] and held.chip_name == "gpiochip0"
    with pytest.raises(OSError) as caught:
        request(direction=Direction.INPUT)
    assert caught.value.errno == 16  # EBUSY
    with pytest.raises(OSError) as caught:  # all or nothing: 6 stays free
        gpiod.request_lines(chip, config={(6, 5): None})
    assert caught.value.errno == 16
    assert not gpiod.Chip(chip).get_line_info(6).used
    held.release()
    held.release()  # twice is harmless
    assert not held
    for use in (
        lambda: held.wait_edge_events(0),
        lambda: held.read_edge_events(),
        lambda: held.get_value(5),
        lambda: held.set_value(5, gpiod.line.Value.ACTIVE),
    ):
        with pytest.raises(gpiod.RequestReleasedError):
            use()
    with request(direction=Direction.INPUT) as again:  # 5 is free again
        assert gpiod.Chip(chip).get_line_info(5).consumer == "t"
    assert not again
    assert not gpiod.Chip(chip).get_line_info(5).used


def test_fake_events_bursts_and_full_fifo(gpiod, chip):
    from gpiod.line import Direction, Edge

    Type = gpiod.EdgeEvent.Type  # noqa: N806
    both = gpiod.LineSettings(direction=Direction.INPUT, edge_detection=Edge.BOTH)
    req = gpiod.request_lines(chip, consumer="t", config={7: both})
    assert req.wait_edge_events(timedelta(milliseconds=10)) is False
    assert req.wait_edge_events(0.01) is False
    t0 = past_window(5 * MS)
    changes = [(1, t0), (0, t0 + MS), (0, t0 + 2 * MS), (1, t0 + 3 * MS)]
    assert gpiod._fake_edges(chip, 7, changes) == 3  # no change at +2 ms
    assert req.wait_edge_events(0) is True
    events = req.read_edge_events()
    assert [e.event_type for e in events] == [
        Type.RISING_EDGE, Type.FALLING_EDGE, Type.RISING_EDGE
    ]  # fmt: skip
    assert [e.timestamp_ns for e in events] == [t0, t0 + MS, t0 + 3 * MS]
    assert [e.line_offset for e in events] == [7, 7, 7]
    assert [(e.global_seqno, e.line_seqno) for e in events] == [(1, 1), (2, 2), (3, 3)]
    assert gpiod._fake_reads(chip) == [3]  # one read took the burst
    assert req.wait_edge_events(0) is False

    # The kernel's FIFO (16 per line by default) drops the OLDEST when full.
    t0 = past_window(20 * MS)
    changes = [(i % 2, t0 + (i + 1) * MS) for i in range(20)]
    assert gpiod._fake_edges(chip, 7, changes) == 20
    assert gpiod._fake_dropped(chip) == 4
    assert len(req.read_edge_events(max_events=5)) == 5
    rest = req.read_edge_events()
    assert len(rest) == 11
    assert rest[-1].line_seqno == 23 and rest[-1].timestamp_ns == t0 + 20 * MS
    req.release()

    big = gpiod.request_lines(chip, config={7: both}, event_buffer_size=64)
    assert gpiod._fake_line(chip, 7)["fifo_size"] == 64
    t0 = past_window(40 * MS)
    changes = [(i % 2, t0 + (i + 1) * MS) for i in range(40)]  # from high
    assert gpiod._fake_edges(chip, 7, changes) == 40
    assert len(big.read_edge_events()) == 40
    assert gpiod._fake_dropped(chip) == 4  # none more
    big.release()


def test_fake_debouncer_is_the_kernels(gpiod, chip):
    from gpiod.line import Bias, Direction, Edge

    period = 50 * MS
    settings = gpiod.LineSettings(
        direction=Direction.INPUT,
        edge_detection=Edge.FALLING,
        bias=Bias.PULL_UP,
        debounce_period=timedelta(microseconds=period // 1000),
    )
    req = gpiod.request_lines(chip, consumer="t", config={LINE: settings})
    assert gpiod._fake_level(chip, LINE) == 1  # pulled up
    t0 = past_window(250 * MS)
    # A bouncing fall: one event, stamped one period after the last bounce.
    bouncing = [(0, t0), (1, t0 + MS), (0, t0 + 2 * MS), (1, t0 + 80 * MS)]
    # A flash shorter than the period: the level never holds, no event.
    short = [(0, t0 + 150 * MS), (1, t0 + 160 * MS)]
    assert gpiod._fake_edges(chip, LINE, bouncing + short) == 1
    events = req.read_edge_events()
    assert [e.timestamp_ns for e in events] == [t0 + 2 * MS + period]
    # A future edge appears when its period has run out, not before.
    t1 = time.monotonic_ns() + 20 * MS
    gpiod._fake_edges(chip, LINE, [(0, t1)], settle=False)
    assert gpiod._fake_line(chip, LINE)["debounce_pending"]
    assert req.wait_edge_events(0) is False
    assert req.wait_edge_events(1.0) is True
    assert time.monotonic_ns() >= t1 + period
    assert [e.timestamp_ns for e in req.read_edge_events()] == [t1 + period]
    assert req.get_value(LINE) == gpiod.line.Value.INACTIVE
    req.release()


def test_fake_outputs_keep_their_level_after_release(gpiod, chip):
    from gpiod.line import Direction, Value

    out = gpiod.LineSettings(direction=Direction.OUTPUT, output_value=Value.ACTIVE)
    req = gpiod.request_lines(
        chip, config={(17, 18): out}, output_values={18: Value.INACTIVE}
    )
    # output_values override every line's output_value (INACTIVE if absent)
    assert gpiod._fake_values(chip, 17) == [Value.INACTIVE]
    assert gpiod._fake_values(chip, 18) == [Value.INACTIVE]
    req.set_value(18, Value.ACTIVE)
    assert req.get_value(18) is Value.ACTIVE
    with pytest.raises(ValueError):
        req.set_value(19, Value.ACTIVE)  # not in the request
    with pytest.raises(AttributeError):
        req.set_value(18, True)  # a Value, not a bool
    req.release()
    assert gpiod._fake_level(chip, 18) == 1  # the kernel does not reset a line
    inp = gpiod.request_lines(chip, config={20: gpiod.LineSettings(Direction.INPUT)})
    with pytest.raises(PermissionError):
        inp.set_value(20, Value.ACTIVE)
    inp.release()


# The backend: import, request, events ----------------------------------------


def test_without_the_gpiod_module_the_input_error_says_what_to_do():
    _forget_gpiod()
    assert FAKES not in sys.path
    if importlib.util.find_spec("gpiod") is not None:
        pytest.skip("a real gpiod package is installed here")
    options = {"backend": "gpiod", "chip": "gpiochip0", "line": 5}
    for attempt in (
        lambda: GpiodInput.preflight(options),
        lambda: GpiodInput(options, meter_config(), LOG),
    ):
        with pytest.raises(InputError) as caught:
            attempt()
        message = str(caught.value)
        assert "needs the gpiod module" in message
        assert "pip install gpiod" in message and "--simulate" in message
    assert "gpiod" not in sys.modules


@pytest.mark.parametrize(
    "edge, pull, want_edge, want_bias",
    [  # both edges always: the configured one starts a flash
        ("falling", "up", "BOTH", "PULL_UP"),
        ("rising", "down", "BOTH", "PULL_DOWN"),
        ("falling", "off", "BOTH", "DISABLED"),
    ],
)
def test_start_requests_the_line_as_configured(
    gpiod, chip, edge, pull, want_edge, want_bias
):
    from gpiod.line import Bias, Clock, Direction, Edge

    backend = make_input(chip, edge=edge, pull=pull)
    assert backend.describe() == f"gpiod {chip} line {LINE}"
    assert not gpiod.Chip(chip).get_line_info(LINE).used  # nothing before start
    backend.start(Edges(), lambda: 0)
    info = gpiod.Chip(chip).get_line_info(LINE)
    assert info.used and info.consumer == "power"
    assert info.direction is Direction.INPUT
    assert info.edge_detection is Edge[want_edge]
    assert info.bias is Bias[want_bias]
    assert info.event_clock is Clock.MONOTONIC and not info.active_low
    # only this line is taken
    assert [o for o in range(54) if gpiod.Chip(chip).get_line_info(o).used] == [LINE]


@pytest.mark.parametrize(
    "debounce_ms, period",
    [(30, timedelta(milliseconds=30)), (0.5, timedelta(0, 0, 500))],
)
def test_the_kernel_debounce_period_is_filter_ms(gpiod, chip, debounce_ms, period):
    # The kernel's debounce period, set apart from METER debounce_ms (see
    # test_a_flash_shorter_than_debounce_ms_is_counted).
    make_input(chip, meter_config(), filter_ms=debounce_ms).start(Edges(), lambda: 0)
    info = gpiod.Chip(chip).get_line_info(LINE)
    assert info.debounced and info.debounce_period == period


def test_no_debounce_requests_no_debouncer(gpiod, chip):
    make_input(chip, meter_config(), filter_ms=0).start(Edges(), lambda: 0)
    info = gpiod.Chip(chip).get_line_info(LINE)
    assert not info.debounced and info.debounce_period == timedelta(0)


def test_each_edge_reaches_on_edge_with_the_kernel_timestamp(gpiod, chip):
    # No debouncer: the kernel stamps each edge when it happens, so on_edge
    # must see exactly the injected times (edges arriving as they happen).
    backend = make_input(chip, meter_config(0), filter_ms=0)
    edges = Edges()
    backend.start(edges, lambda: 0)
    gaps = [31 * MS + 123, 29 * MS + 4567, 35 * MS + 1]
    changes, starts = flashes(time.monotonic_ns() + 20 * MS, gaps)
    assert gpiod._fake_edges(chip, LINE, changes) == 2 * len(starts)  # both edges
    assert wait_for(lambda: len(edges.ends) == len(starts))
    assert edges.stamps == starts
    assert edges.ends == [t + FLASH_NS for t in starts]
    assert_wall_matches_kernel_stamp(edges)
    assert all(t is not threading.main_thread() for t in edges.threads)


def test_a_burst_read_in_one_call_arrives_whole_and_in_order(gpiod, chip):
    backend = make_input(chip, meter_config(2))
    edges = Edges()
    backend.start(edges, lambda: 0)
    period = kernel_period_ns(gpiod, chip)
    n = 8  # 16 edges: the kernel's default FIFO for one line holds 16
    gaps = [10 * MS + i * 1000 for i in range(n - 1)]
    start = past_window(sum(gaps) + 10 * MS)
    changes, starts = flashes(start, gaps, width_ns=5 * MS)
    assert gpiod._fake_edges(chip, LINE, changes) == 2 * n
    assert wait_for(lambda: len(edges.ends) == n)
    time.sleep(0.05)  # and nothing more
    assert gpiod._fake_reads(chip) == [2 * n]  # all in one read_edge_events()
    assert edges.stamps == [t + period for t in starts]  # stamped when stable
    assert_wall_matches_kernel_stamp(edges)
    walls = [w for _, w in edges.calls]
    assert walls == sorted(walls)
    assert gpiod._fake_dropped(chip) == 0


def test_a_burst_beyond_the_kernels_default_fifo_is_not_lost(gpiod, chip):
    backend = make_input(chip, meter_config(1), filter_ms=1)
    edges = Edges()
    backend.start(edges, lambda: 0)
    period = kernel_period_ns(gpiod, chip)
    n = 40
    gaps = [6 * MS] * (n - 1)
    start = past_window(sum(gaps) + 6 * MS)
    changes, starts = flashes(start, gaps, width_ns=2 * MS)
    gpiod._fake_edges(chip, LINE, changes)
    wait_for(lambda: len(edges.ends) >= n, timeout=2.0)
    assert gpiod._fake_dropped(chip) == 0
    assert edges.stamps == [t + period for t in starts]


def test_bounces_inside_the_debounce_period_are_dropped_by_the_kernel(gpiod, chip):
    backend = make_input(chip, meter_config(DEBOUNCE_MS), filter_ms=DEBOUNCE_MS)
    edges = Edges()
    backend.start(edges, lambda: 0)
    period = kernel_period_ns(gpiod, chip)
    assert period > 2 * MS  # longer than the bounces
    start = past_window(200 * MS)
    changes, last_bounces = [], []
    for k in range(3):
        t = start + k * 60 * MS
        # falling edge bouncing 3 times within 2 ms, then a bouncing rise
        changes += [(0, t), (1, t + MS // 2), (0, t + MS), (1, t + MS + MS // 2)]
        changes += [(0, t + 2 * MS), (1, t + 20 * MS), (0, t + 20 * MS + 300_000)]
        changes += [(1, t + 21 * MS)]
        last_bounces.append(t + 2 * MS)
    assert gpiod._fake_edges(chip, LINE, changes) == 6
    assert wait_for(lambda: len(edges.ends) == 3)
    time.sleep(0.05)
    assert edges.stamps == [t + period for t in last_bounces]


def test_a_flash_shorter_than_debounce_ms_is_counted(gpiod, chip):
    # docs/settings.rst: debounce_ms drops an edge "sooner than this after
    # the last accepted pulse"; with the default 50 ms a 10 ms flash 2 s apart from
    # the next is a pulse (rpigpio counts it). The kernel's debouncer waits
    # for the level to hold a whole period, so it never reports this flash.
    backend = make_input(chip, meter_config(30))
    edges = Edges()
    backend.start(edges, lambda: 0)
    start = past_window(450 * MS)
    changes, starts = flashes(start, [200 * MS, 200 * MS], width_ns=10 * MS)
    gpiod._fake_edges(chip, LINE, changes)
    wait_for(lambda: len(edges.ends) >= 3, timeout=2.0)
    assert len(edges.calls) == 3 and len(edges.ends) == 3


def test_stop_is_prompt_without_events_and_releases_the_line(gpiod, chip):
    backend = make_input(chip)
    edges = Edges()
    backend.start(edges, lambda: 0)
    time.sleep(0.05)  # the reader is waiting for events
    t = time.monotonic()
    backend.stop()
    assert time.monotonic() - t < STOP_LIMIT_S
    assert not backend._thread.is_alive()
    info = gpiod.Chip(chip).get_line_info(LINE)
    assert not info.used and info.edge_detection is gpiod.line.Edge.NONE
    assert gpiod._fake_pulse(chip, LINE) == 0  # nobody watches the line now
    assert edges.calls == []
    backend.stop()  # twice is harmless
    # and the line can be taken again
    make_input(chip).start(Edges(), lambda: 0)
    assert gpiod.Chip(chip).get_line_info(LINE).consumer == "power"


def test_stop_is_prompt_with_a_debounced_edge_pending(gpiod, chip):
    # A filter far longer than stop() takes: the edge must never come out.
    backend = make_input(chip, meter_config(200), filter_ms=1000)
    edges = Edges()
    backend.start(edges, lambda: 0)
    gpiod._fake_edges(chip, LINE, [(0, time.monotonic_ns())], settle=False)
    assert gpiod._fake_line(chip, LINE)["debounce_pending"]
    t = time.monotonic()
    backend.stop()
    assert time.monotonic() - t < STOP_LIMIT_S
    assert not gpiod._fake_line(chip, LINE)["used"]
    time.sleep(0.25)
    assert edges.calls == []


# Chips and errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    "given, path",
    [
        ("0", "/dev/gpiochip0"),
        ("gpiochip0", "/dev/gpiochip0"),
        ("/dev/gpiochip0", "/dev/gpiochip0"),
        ("4", "/dev/gpiochip4"),
        ("gpiochip4", "/dev/gpiochip4"),
    ],
)
def test_chip_as_number_name_or_path(gpiod, given, path):
    assert chip_path(given) == path
    # a chip the fake kernel shows at /dev/gpiochipN (no file is made there)
    gpiod._fake_chip(path, 54, create=False)
    backend = make_input(given)
    assert backend.describe() == f"gpiod {path} line {LINE}"
    backend.start(Edges(), lambda: 0)
    assert gpiod.Chip(path).get_line_info(LINE).consumer == "power"


def test_chip_as_a_path_passes_preflight(gpiod, chip):
    options = validate(
        "INPUT", {"backend": "gpiod", "chip": chip, "line": 5}, GpiodInput.OPTIONS
    )
    GpiodInput.preflight(options)  # no error


@pytest.mark.parametrize(
    "given, path", [("/nonexistent/gpiochip9", "/nonexistent/gpiochip9"),
                    ("97", "/dev/gpiochip97")]
)  # fmt: skip
def test_a_missing_chip_fails_preflight_naming_gpiodetect(gpiod, given, path):
    if os.path.exists(path):
        pytest.skip(f"{path} exists here")
    options = validate(
        "INPUT", {"backend": "gpiod", "chip": given, "line": 5}, GpiodInput.OPTIONS
    )
    with pytest.raises(InputError) as caught:
        GpiodInput.preflight(options)
    message = str(caught.value)
    assert "INPUT['chip']" in message and path in message
    assert "does not exist" in message and "gpiodetect" in message


def test_a_chip_gone_after_preflight_gives_input_error_at_start(gpiod, tmp_path):
    backend = make_input(str(tmp_path / "gpiochip3"))
    with pytest.raises(InputError) as caught:
        backend.start(Edges(), lambda: 0)
    assert "gpiodetect" in str(caught.value)
    assert backend._thread is None
    backend.stop()


def test_a_busy_line_names_another_program(gpiod, chip):
    other = gpiod.request_lines(
        chip, consumer="other", config={LINE: gpiod.LineSettings()}
    )
    backend = make_input(chip)
    with pytest.raises(InputError) as caught:
        backend.start(Edges(), lambda: 0)
    message = str(caught.value)
    assert f"line {LINE}" in message and chip in message
    assert "another program" in message and "gpioinfo" in message
    assert backend._thread is None and backend.request is None
    assert gpiod.Chip(chip).get_line_info(LINE).consumer == "other"  # untouched
    backend.stop()
    other.release()
    backend = make_input(chip)
    backend.start(Edges(), lambda: 0)
    assert gpiod.Chip(chip).get_line_info(LINE).consumer == "power"


def test_no_permission_names_the_gpio_group(gpiod, tmp_path):
    locked = gpiod._fake_chip(str(tmp_path / "gpiochip0"), accessible=False)
    backend = make_input(locked)
    with pytest.raises(InputError) as caught:
        backend.start(Edges(), lambda: 0)
    assert "no permission" in str(caught.value) and "'gpio' group" in str(caught.value)


def test_a_line_beyond_the_chip_gives_input_error(gpiod, chip):
    backend = make_input(chip, line=60)  # the chip has 54
    with pytest.raises(InputError) as caught:
        backend.start(Edges(), lambda: 0)
    message = str(caught.value)
    assert "has 54 lines (0 to 53); line 60 is past its end" in message


def test_a_path_that_is_no_gpio_chip_gives_input_error(gpiod, tmp_path):
    plain = tmp_path / "gpiochip0"
    plain.write_text("")
    backend = make_input(str(plain))
    with pytest.raises(InputError) as caught:
        backend.start(Edges(), lambda: 0)
    assert str(plain) in str(caught.value)


def _cli(settings: Path, pythonpath: Optional[str]) -> subprocess.CompletedProcess:
    """The real CLI in the foreground; the fake gpiod only with `pythonpath`."""
    env = {**os.environ, "POWER_SETTINGS": "/nonexistent/settings.py"}
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return subprocess.run(
        [sys.executable, str(POWER), "--settings", str(settings), "--nodaemon"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def _missing_chip_settings(tmp_path: Path) -> Path:
    return write_settings(
        tmp_path / "settings.py",
        METER={"name": "main", "pulses_per_kwh": 1000},
        INPUT={"backend": "gpiod", "chip": "/nonexistent/gpiochip9", "line": 5},
        DATA_DIR=str(tmp_path / "data"),
        SINKS=[{"type": "file", "path": str(tmp_path / "data" / "power.csv")}],
    )


def test_cli_without_the_gpiod_module_exits_2(tmp_path):
    if importlib.util.find_spec("gpiod") is not None:
        pytest.skip("a real gpiod package is installed here")
    proc = _cli(_missing_chip_settings(tmp_path), None)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("power.py: ")
    assert "needs the gpiod module" in lines[0]


def test_cli_with_gpiod_and_a_missing_chip_exits_2_naming_gpiodetect(tmp_path):
    # The subprocess gets the fake through PYTHONPATH: preflight then finds
    # the module and checks the chip path before forking or touching GPIO.
    proc = _cli(_missing_chip_settings(tmp_path), FAKES)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("power.py: ")
    assert "/nonexistent/gpiochip9 does not exist" in lines[0]
    assert "gpiodetect" in lines[0]
    assert not (tmp_path / "data" / "journal.sqlite3").exists()


# LEDs ------------------------------------------------------------------------------


def test_gpiod_led_is_an_output_set_active_and_inactive_then_released(gpiod, chip):
    from gpiod.line import Direction, Value

    led = make_input(chip).led(18)
    assert isinstance(led, GpiodLed)
    info = gpiod.Chip(chip).get_line_info(18)
    assert info.used and info.direction is Direction.OUTPUT
    assert info.consumer == "power-led"
    assert gpiod._fake_values(chip, 18) == [Value.INACTIVE]  # requested dark
    led.set(True)
    assert gpiod._fake_level(chip, 18) == 1
    led.set(False)
    assert gpiod._fake_values(chip, 18) == [
        Value.INACTIVE,
        Value.ACTIVE,
        Value.INACTIVE,
    ]
    led.set(True)
    led.close()  # a lit LED is switched off before its line is released
    assert gpiod._fake_values(chip, 18)[-2:] == [Value.ACTIVE, Value.INACTIVE]
    assert not gpiod.Chip(chip).get_line_info(18).used
    assert gpiod._fake_level(chip, 18) == 0  # and stays dark after exit


def test_led_on_a_busy_or_missing_line_gives_input_error(gpiod, chip):
    backend = make_input(chip)
    other = gpiod.request_lines(chip, consumer="other", config={18: None})
    with pytest.raises(InputError, match="another program"):
        backend.led(18)
    other.release()
    with pytest.raises(InputError, match="line 99"):
        backend.led(99)


def test_status_leds_ready_lit_and_detect_blinks(gpiod, chip):
    from gpiod.line import Value

    backend = make_input(chip)
    blink_s = 0.05
    leds = StatusLeds(backend.led(23), {"main": backend.led(18)}, blink_s, LOG)
    leds.start()
    try:
        assert gpiod._fake_values(chip, 23)[-1] is Value.ACTIVE
        leds.blink("main")
        assert wait_for(lambda: len(gpiod._fake_values(chip, 18)) == 3)
        history = gpiod._fake_value_history(chip, 18)
        assert [v for _, v in history] == [Value.INACTIVE, Value.ACTIVE, Value.INACTIVE]
        lit_s = (history[2][0] - history[1][0]) / 1e9
        assert blink_s * 0.9 <= lit_s <= blink_s + 0.5
    finally:
        leds.stop()
    for offset in (18, 23):
        assert gpiod._fake_values(chip, offset)[-1] is Value.INACTIVE
        assert not gpiod.Chip(chip).get_line_info(offset).used


# End to end: fake kernel events -> backend -> monitor -> meter -> journal, CSV --


def service_settings(tmp_path: Path, chip_: str):
    data = tmp_path / "data"
    data.mkdir()
    values = {
        "METER": {
            "name": "main",
            "pulses_per_kwh": 1000,
            "debounce_ms": DEBOUNCE_MS,
            "max_power_w": 1e9,
            "idle_timeout_s": 0,
            "estimate_fall": 0,  # pulses only: no estimates between them
        },
        "INPUT": {
            "backend": "gpiod",
            "chip": chip_,
            "line": LINE,
            "filter_ms": DEBOUNCE_MS,
        },
        "LEDS": {"detect": 18, "ready": 23, "blink_ms": 20},
        "DATA_DIR": str(data),
        "SINKS": [
            {
                "type": "file",
                "path": str(tmp_path / "power.csv"),
                "flush_interval_s": 0.05,
            }
        ],
    }
    return config.settings.parse(values, str(tmp_path / "settings.py"))


def check_intervals(rows, starts: Sequence[int]) -> None:
    """Journal rows (pulses, power_w, interval_s, time) against flash start
    times: pulses 1..n, and each interval exactly the difference of the
    kernel's timestamps, which is the difference of the starts."""
    assert [r[0] for r in rows] == list(range(1, len(starts) + 1))
    assert rows[0][1] is None and rows[0][2] is None  # first pulse: unknown
    for row, before, t in zip(rows[1:], starts, starts[1:]):
        assert row[2] == (t - before) / 1_000_000_000
        assert row[1] == pytest.approx(3_600_000 / (1000 * row[2]))
    times = [r[3] for r in rows]
    for row, earlier, later in zip(rows[1:], times, times[1:]):
        assert abs((later - earlier) - row[2]) < 0.02  # wall times agree
    assert abs(times[-1] - time.time()) < 10


def test_service_end_to_end_uses_the_kernels_timestamps(gpiod, chip, tmp_path):
    from gpiod.line import Bias, Edge, Value

    settings = service_settings(tmp_path, chip)
    service = Service(settings, LOG)
    try:
        service.start()
        info = gpiod.Chip(chip).get_line_info(LINE)
        assert info.consumer == "power" and info.edge_detection is Edge.BOTH
        assert info.bias is Bias.PULL_UP
        assert info.debounce_period == timedelta(milliseconds=DEBOUNCE_MS)
        assert gpiod._fake_values(chip, 23)[-1] is Value.ACTIVE  # ready
        # First a burst, read at once: only kernel timestamps can give
        # these intervals; then flashes arriving live.
        gaps = [61 * MS + 234_567, 72 * MS + 345_678, 58 * MS + 765_431]
        first = past_window(sum(gaps) + 30 * MS)
        changes, starts = flashes(first, gaps)
        assert gpiod._fake_edges(chip, LINE, changes) == 8
        live, live_starts = flashes(
            time.monotonic_ns() + 40 * MS, [45 * MS + 999, 52 * MS + 7, 66 * MS + 1]
        )
        assert gpiod._fake_edges(chip, LINE, live) == 8
        starts += live_starts
        assert wait_for(lambda: service.monitor.readings == len(starts))
    finally:
        service.stop()

    n = len(starts)
    check_intervals(journal_rows(settings.data_dir), starts)
    rows = read_csv(tmp_path / "power.csv")
    assert [int(r["pulses"]) for r in rows] == list(range(1, n + 1))
    assert rows[0]["interval_s"] == ""
    for row, before, t in zip(rows[1:], starts, starts[1:]):
        assert abs(float(row["interval_s"]) - (t - before) / 1e9) <= 0.0005
    for offset in (LINE, 18, 23):  # every line given back
        assert not gpiod.Chip(chip).get_line_info(offset).used
    assert Value.ACTIVE in gpiod._fake_values(chip, 18)  # detect flashed
    assert gpiod._fake_values(chip, 18)[-1] is Value.INACTIVE
    assert gpiod._fake_values(chip, 23)[-1] is Value.INACTIVE  # ready off


def test_two_meters_on_two_lines_of_one_chip(gpiod, chip, tmp_path):
    def meter(name: str, line: int, led: int) -> dict:
        return {
            "name": name,
            "pulses_per_kwh": 1000,
            "debounce_ms": DEBOUNCE_MS,
            "max_power_w": 1e9,
            "idle_timeout_s": 0,
            "estimate_fall": 0,  # pulses only: no estimates between them
            "detect_led": led,
            "input": {"backend": "gpiod", "chip": chip, "line": line},
        }

    data = tmp_path / "data"
    data.mkdir()
    settings = config.settings.parse(
        {
            "METERS": [meter("grid", 24, 18), meter("heat", 25, 17)],
            "LEDS": {"ready": 23, "blink_ms": 20},
            "DATA_DIR": str(data),
            "SINKS": [
                {
                    "type": "file",
                    "path": str(tmp_path / "power.csv"),
                    "flush_interval_s": 0.05,
                }
            ],
        },
        str(tmp_path / "settings.py"),
    )
    service = Service(settings, LOG)
    try:
        service.start()
        for line in (24, 25):
            assert gpiod.Chip(chip).get_line_info(line).consumer == "power"
        start = past_window(400 * MS)
        grid, grid_starts = flashes(start, [130 * MS + 17, 140 * MS + 3])
        heat, heat_starts = flashes(
            start + 20 * MS, [70 * MS + 1, 80 * MS + 2, 75 * MS + 3, 90 * MS + 4]
        )
        assert gpiod._fake_edges(chip, 24, grid) == 6
        assert gpiod._fake_edges(chip, 25, heat) == 10
        assert wait_for(lambda: service.monitor.readings == 8)
    finally:
        service.stop()

    check_intervals(journal_rows(settings.data_dir, "grid"), grid_starts)
    check_intervals(journal_rows(settings.data_dir, "heat"), heat_starts)
    rows = read_csv(tmp_path / "power.csv")
    for name, n in (("grid", 3), ("heat", 5)):
        pulses = [int(r["pulses"]) for r in rows if r["meter"] == name]
        assert pulses == list(range(1, n + 1))
    for offset in (24, 25, 17, 18, 23):
        assert not gpiod.Chip(chip).get_line_info(offset).used
    assert gpiod.line.Value.ACTIVE in gpiod._fake_values(chip, 17)
    assert gpiod.line.Value.ACTIVE in gpiod._fake_values(chip, 18)


def test_service_on_a_busy_line_fails_to_start_cleanly(gpiod, chip, tmp_path):
    from gpiod.line import Value

    other = gpiod.request_lines(chip, consumer="other", config={LINE: None})
    service = Service(service_settings(tmp_path, chip), LOG)
    try:
        with pytest.raises(StartError, match="another program"):
            service.start()
    finally:
        service.stop()
    other.release()
    for offset in (18, 23):  # the LEDs dark and given back
        assert gpiod._fake_values(chip, offset)[-1] is Value.INACTIVE
        assert not gpiod.Chip(chip).get_line_info(offset).used


def test_direction_line_and_export_led_give_export(gpiod, chip):
    """A direction input active while exporting (vzlogger's gpio_dir) makes
    the LED's pulses export, with negative power; a second sensor on the
    export LED counts export pulses of its own."""
    from core.meter import EXPORT_PULSE, EXPORTING, IMPORTING, Meter

    backend = make_input(
        chip, direction_line=25, direction_active="low", export_line=26, pull="up"
    )
    calls: List[Tuple[int, float, int]] = []
    backend.start(lambda t, wall, kind: calls.append((t, wall, kind)), lambda: 0)
    assert [c[2] for c in calls] == [IMPORTING]  # the level read at start
    base = time.monotonic_ns()
    for i in range(3):  # importing: 2 pulses a second
        gpiod._fake_pulse(chip, LINE, base + (i + 1) * 500 * MS)
    gpiod._fake_edges(chip, 25, [(0, base + 1800 * MS)])  # exporting from here
    for i in range(3):
        gpiod._fake_pulse(chip, LINE, base + (4 + i) * 500 * MS)
    gpiod._fake_edges(chip, 25, [(1, base + 3800 * MS)])
    for i in range(2):  # the export LED, a second apart
        gpiod._fake_pulse(chip, 26, base + (4 + i) * 1000 * MS)
    wait_for(lambda: sum(c[2] == EXPORT_PULSE for c in calls) == 2, timeout=5)
    assert [c[2] for c in calls if c[2] in (EXPORTING, IMPORTING)] == [
        IMPORTING,
        EXPORTING,
        IMPORTING,
    ]
    meter = Meter(meter_config())
    readings = []
    for t, wall, kind in sorted(calls):
        readings += meter.edge(t, wall, kind)
    assert (meter.pulses, meter.export_pulses) == (3, 5), [c[2] for c in sorted(calls)]
    assert readings[-1].export_kwh == pytest.approx(0.005)
    assert readings[4].power_w < 0  # an exported pulse: negative power
