"""The RPi.GPIO input backend and GPIO LEDs, against a fake RPi.GPIO.

RPi.GPIO runs only on a Raspberry Pi, so tests/fakes/RPi/GPIO.py stands in
for it: the library's constants, checks and messages, its callback thread and
its software bouncetime, plus test-only `_fake_*` helpers that play the
hardware (edges on the sensor's input, levels on the LED outputs). The
`gpio` fixture puts it on sys.path for one test; without it, importing
RPi.GPIO fails here as on any machine that is not a Pi.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sqlite3
import sys
import threading
import time
from typing import Optional

import pytest
from conftest import FAKES, forget_package, import_fake

import config.settings
from core.journal import Journal, journal_path
from core.meter import PULSE, Meter, MeterConfig
from core.monitor import Monitor
from core.options import validate
from inputs.base import InputError
from inputs.rpigpio import GpioLed, RpiGpioInput
from service.leds import StatusLeds
from service.runtime import Service, StartError

LOG = logging.getLogger("test_rpigpio")

DEBOUNCE_MS = 5.0  # short, so edges spaced beyond it keep the tests fast
GAP_S = 0.012  # between pulses: beyond DEBOUNCE_MS with room to spare


def _forget_rpi() -> None:
    forget_package("RPi")


@pytest.fixture
def gpio(monkeypatch):
    """The fake RPi.GPIO, importable as `RPi.GPIO` for this test only."""
    fake = import_fake(monkeypatch, "RPi", "RPi.GPIO")
    yield fake
    fake._fake_reset()
    _forget_rpi()


def meter_config(debounce_ms: float = DEBOUNCE_MS) -> MeterConfig:
    # max_power_w high: pulses GAP_S apart would be implausible at 30 kW.
    # Pulses only: no estimates between them (their timing is the host's).
    return MeterConfig(
        name="main",
        debounce_ms=debounce_ms,
        max_power_w=1e9,
        idle_timeout_s=0,
        estimate_fall=0.0,
    )


def make_input(config_: Optional[MeterConfig] = None, **options) -> RpiGpioInput:
    """A backend as settings.py would configure it (defaults filled in)."""
    values = validate("INPUT", {"backend": "rpigpio", **options}, RpiGpioInput.OPTIONS)
    return RpiGpioInput(values, config_ or meter_config(), LOG)


class Edges:
    """An on_edge recorder: arguments and the calling thread of each call."""

    def __init__(self) -> None:
        self.calls = []
        self.threads = []

    def __call__(self, t_mono_ns, t_wall, kind) -> None:
        # RPi.GPIO proper: the configured edge only, its width unseen.
        assert kind == PULSE
        self.calls.append((t_mono_ns, t_wall))
        self.threads.append(threading.current_thread())


def wait_for(predicate, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.002)
    return predicate()


def journal_rows(data_path: str):
    conn = sqlite3.connect(data_path)
    try:
        return conn.execute(
            "SELECT pulses, power_w, interval_s, time FROM readings ORDER BY seq"
        ).fetchall()
    finally:
        conn.close()


# The fake itself: it must be as strict as the library ----------------------


def test_fake_has_the_library_constants(gpio):
    assert (gpio.BCM, gpio.BOARD, gpio.IN, gpio.OUT) == (11, 10, 1, 0)
    assert (gpio.HIGH, gpio.LOW) == (1, 0)
    assert (gpio.PUD_OFF, gpio.PUD_DOWN, gpio.PUD_UP) == (20, 21, 22)
    assert (gpio.RISING, gpio.FALLING, gpio.BOTH) == (31, 32, 33)
    assert gpio.getmode() is None


def test_fake_checks_like_the_library(gpio):
    with pytest.raises(RuntimeError, match=r"GPIO\.setmode\(GPIO\.BOARD\)"):
        gpio.setup(24, gpio.IN)
    gpio.setmode(gpio.BCM)
    gpio.setmode(gpio.BCM)  # the same mode again is fine
    with pytest.raises(ValueError, match="A different mode has already been set!"):
        gpio.setmode(gpio.BOARD)
    with pytest.raises(ValueError, match="invalid on a Raspberry Pi"):
        gpio.setup(54, gpio.IN)
    with pytest.raises(RuntimeError, match="not been set up as an OUTPUT"):
        gpio.output(24, gpio.HIGH)
    with pytest.raises(RuntimeError, match="as an input first"):
        gpio.add_event_detect(24, gpio.FALLING)
    gpio.setup(24, gpio.IN, pull_up_down=gpio.PUD_UP)
    with pytest.raises(ValueError, match="Bouncetime must be greater than 0"):
        gpio.add_event_detect(24, gpio.FALLING, bouncetime=0)
    with pytest.raises(TypeError):  # the C signature takes an int, not None
        gpio.add_event_detect(24, gpio.FALLING, bouncetime=None)
    gpio.add_event_detect(24, gpio.FALLING, bouncetime=5)
    with pytest.raises(RuntimeError, match="Conflicting edge detection"):
        gpio.add_event_detect(24, gpio.FALLING)
    gpio.cleanup()
    assert gpio.getmode() is None
    gpio.setmode(gpio.BOARD)
    for not_a_gpio in (0, 1, 2, 6, 27, 41):
        with pytest.raises(ValueError, match="invalid on a Raspberry Pi"):
            gpio.setup(not_a_gpio, gpio.IN)
    gpio.setup(18, gpio.IN)
    assert gpio._fake_channel(18)["gpio"] == 24


def test_fake_bouncetime_and_callback_thread(gpio):
    gpio.setmode(gpio.BOARD)
    gpio.setup(18, gpio.IN, pull_up_down=gpio.PUD_UP)
    seen = []
    gpio.add_event_detect(
        18,
        gpio.FALLING,
        callback=lambda ch: seen.append((ch, threading.current_thread())),
        bouncetime=20,
    )
    assert gpio._fake_edge(18, [0, 1, 0, 1, 0, 1]) == 1  # contact bounce
    time.sleep(0.03)
    assert gpio._fake_edge(18, [0, 1]) == 1
    assert [ch for ch, _ in seen] == [18, 18]  # the channel, in BOARD numbers
    assert all(t is not threading.main_thread() for _, t in seen)
    assert gpio.event_detected(18) and not gpio.event_detected(18)


# The input backend -----------------------------------------------------------


@pytest.mark.parametrize(("numbering", "mode"), [("bcm", 11), ("board", 10)])
def test_sets_the_configured_numbering(gpio, numbering, mode):
    make_input(numbering=numbering, pin=18)
    assert gpio.getmode() == mode


@pytest.mark.parametrize(("pull", "expected"), [("up", 22), ("down", 21), ("off", 20)])
def test_sets_up_the_pin_as_input_with_the_configured_pull(gpio, pull, expected):
    backend = make_input(pin=17, pull=pull)
    assert gpio._fake_channel(17)["direction"] is None  # not before start
    backend.start(Edges(), lambda: 0)
    state = gpio._fake_channel(17)
    assert state["direction"] == gpio.IN
    assert state["pull"] == expected


@pytest.mark.parametrize(
    ("edge", "debounce_ms", "want_edge", "want_bounce"),
    [
        ("falling", 50, 32, 50),
        ("rising", 50, 31, 50),
        ("falling", 12.7, 32, 12),  # whole ms, as the library takes
        # 0 would be a ValueError in RPi.GPIO: no bouncetime at all
        ("falling", 0, 32, None),
        ("rising", 0.5, 31, None),
    ],
)
def test_registers_edge_detection_with_meter_debounce(
    gpio, edge, debounce_ms, want_edge, want_bounce
):
    backend = make_input(meter_config(debounce_ms), edge=edge)
    backend.start(Edges(), lambda: 0)
    state = gpio._fake_channel(24)
    assert state["edge"] == want_edge
    assert state["bouncetime"] == want_bounce
    assert state["callbacks"] == 1


@pytest.mark.parametrize(("edge", "pull"), [("falling", "up"), ("rising", "down")])
def test_each_edge_calls_on_edge_once_with_both_clocks(gpio, edge, pull):
    backend = make_input(edge=edge, pull=pull)
    edges = Edges()
    backend.start(edges, lambda: 0)
    for i in range(5):
        mono_before, wall_before = time.monotonic_ns(), time.time()
        assert gpio._fake_pulse(24) == 1  # the other edge of the flash: ignored
        mono_after, wall_after = time.monotonic_ns(), time.time()
        assert len(edges.calls) == i + 1
        t_ns, t_wall = edges.calls[-1]
        assert type(t_ns) is int and type(t_wall) is float
        assert mono_before <= t_ns <= mono_after
        assert wall_before - 0.01 <= t_wall <= wall_after + 0.01
        time.sleep(GAP_S)
    # from RPi.GPIO's thread, never the caller's
    assert all(t is not threading.main_thread() for t in edges.threads)
    assert gpio._fake_callback_errors == []


def test_bounces_inside_bouncetime_never_reach_on_edge(gpio):
    backend = make_input(meter_config(debounce_ms=30))
    edges = Edges()
    backend.start(edges, lambda: 0)
    assert gpio._fake_edge(24, [0, 1, 0, 1, 0, 1]) == 1
    assert gpio._fake_pulse(24) == 0  # within 30 ms of the accepted edge
    time.sleep(0.04)
    assert gpio._fake_pulse(24) == 1
    assert len(edges.calls) == 2


def test_stop_removes_event_detection_and_cleans_up(gpio):
    backend = make_input()
    edges = Edges()
    backend.start(edges, lambda: 0)
    gpio._fake_pulse(24)
    backend.stop()
    state = gpio._fake_channel(24)
    assert state["edge"] is None and state["callbacks"] == 0
    assert state["direction"] is None  # cleanup(24): back to unused input
    time.sleep(GAP_S)
    gpio._fake_pulse(24)
    assert len(edges.calls) == 1
    backend.stop()  # twice is harmless


def test_a_second_backend_with_other_numbering_is_refused(gpio):
    make_input(numbering="bcm")
    with pytest.raises(InputError, match="numbering"):
        make_input(numbering="board", pin=18)
    assert gpio.getmode() == gpio.BCM


def test_two_meters_on_two_pins(gpio):
    grid, heat = make_input(pin=24), make_input(pin=25)
    grid_edges, heat_edges = Edges(), Edges()
    grid.start(grid_edges, lambda: 0)
    heat.start(heat_edges, lambda: 0)
    gpio._fake_pulse(24)
    assert (len(grid_edges.calls), len(heat_edges.calls)) == (1, 0)
    gpio._fake_pulse(25)
    assert (len(grid_edges.calls), len(heat_edges.calls)) == (1, 1)


def test_two_meters_on_one_pin_give_input_error(gpio):
    make_input(pin=24).start(Edges(), lambda: 0)
    with pytest.raises(InputError, match="cannot watch GPIO pin 24: Conflicting"):
        make_input(pin=24).start(Edges(), lambda: 0)


@pytest.mark.parametrize("pin", [0, 1, 6, 17])  # BOARD: none is a GPIO
def test_invalid_pin_gives_clear_input_error(gpio, pin):
    backend = make_input(numbering="board", pin=pin)
    with pytest.raises(InputError) as caught:
        backend.start(Edges(), lambda: 0)
    message = str(caught.value)
    assert f"GPIO pin {pin} cannot be used" in message
    assert "invalid on a Raspberry Pi" in message
    backend.stop()


def test_off_a_pi_import_fails_with_input_error():
    _forget_rpi()
    assert FAKES not in sys.path
    if importlib.util.find_spec("RPi") is not None:
        pytest.skip("a real RPi package is installed here")
    for attempt in (
        lambda: make_input(),
        lambda: RpiGpioInput.preflight({"numbering": "bcm", "pin": 24}),
    ):
        with pytest.raises(InputError) as caught:
            attempt()
        message = str(caught.value)
        assert "RPi.GPIO" in message
        assert "--simulate" in message
    assert "RPi.GPIO" not in sys.modules


def test_library_refusing_to_run_here_gives_input_error(monkeypatch):
    # RPi.GPIO installed on a machine that is not a Pi raises RuntimeError
    # on import.
    monkeypatch.syspath_prepend(FAKES)
    monkeypatch.setenv("FAKE_RPI_GPIO_NOT_A_PI", "1")
    _forget_rpi()
    try:
        with pytest.raises(InputError) as caught:
            RpiGpioInput.preflight({"numbering": "bcm", "pin": 24})
        message = str(caught.value)
        assert "can only be run on a Raspberry Pi" in message
        assert "--simulate" in message
    finally:
        _forget_rpi()


# LEDs --------------------------------------------------------------------------


def test_gpio_led_drives_output_high_and_low(gpio):
    led = make_input().led(18)
    assert isinstance(led, GpioLed)
    assert gpio._fake_channel(18)["direction"] == gpio.OUT
    assert gpio._fake_outputs(18) == [gpio.LOW]  # set up dark
    led.set(True)
    assert gpio._fake_channel(18)["level"] == gpio.HIGH
    led.set(False)
    assert gpio._fake_outputs(18) == [gpio.LOW, gpio.HIGH, gpio.LOW]
    led.set(True)
    led.close()  # a lit LED is switched off before its pin is released
    assert gpio._fake_outputs(18) == [gpio.LOW, gpio.HIGH, gpio.LOW, gpio.HIGH, 0]
    assert gpio._fake_channel(18)["direction"] is None


def test_led_on_a_pin_that_is_no_gpio_gives_input_error(gpio):
    backend = make_input(numbering="board", pin=18)
    with pytest.raises(InputError, match="cannot drive LED on GPIO pin 2"):
        backend.led(2)  # BOARD pin 2 is 5 V


def status_leds(gpio, blink_s: float):
    backend = make_input()
    return StatusLeds(backend.led(23), {"main": backend.led(18)}, blink_s, LOG)


def test_ready_led_lit_after_start_and_dark_after_stop(gpio):
    leds = status_leds(gpio, 0.05)
    assert gpio._fake_channel(23)["level"] == gpio.LOW
    leds.start()
    assert gpio._fake_channel(23)["level"] == gpio.HIGH
    leds.stop()
    assert gpio._fake_outputs(23)[-1] == gpio.LOW
    assert gpio._fake_outputs(18)[-1] == gpio.LOW


def test_detect_led_blinks_for_blink_ms(gpio):
    blink_s = 0.05
    leds = status_leds(gpio, blink_s)
    leds.start()
    try:
        leds.blink("main")
        assert wait_for(lambda: gpio._fake_channel(18)["level"] == gpio.HIGH)
        assert wait_for(lambda: gpio._fake_channel(18)["level"] == gpio.LOW)
        history = gpio._fake_output_history(18)
        assert [level for _, level in history] == [0, 1, 0]
        lit = history[2][0] - history[1][0]
        assert blink_s * 0.9 <= lit <= blink_s + 0.5
    finally:
        leds.stop()


def test_a_burst_of_blinks_uses_one_worker(gpio):
    leds = status_leds(gpio, 0.3)
    leds.start()
    try:
        before = threading.active_count()
        most = before
        for _ in range(500):
            leds.blink("main")
            most = max(most, threading.active_count())
        assert most <= before
        assert wait_for(lambda: gpio._fake_outputs(18) == [0, 1, 0])
        # overlapping blinks keep the LED lit: one flash, not 500
        time.sleep(0.05)
        assert gpio._fake_outputs(18) == [0, 1, 0]
        assert threading.active_count() <= before
    finally:
        leds.stop()


# End to end: fake GPIO edges -> monitor -> meter -> journal ------------------


def test_monitor_journals_one_reading_per_pulse(gpio, tmp_path):
    cfg = meter_config()
    backend = make_input(cfg)
    journal = Journal(journal_path(str(tmp_path)), LOG)
    meter = Meter(cfg, journal.pulses("main"))
    leds = StatusLeds(None, {"main": backend.led(18)}, 0.02, LOG)
    monitor = Monitor([meter], [backend], journal, lambda rows: None, leds, LOG)
    monitor.start()
    leds.start()
    backend.start(monitor.edge_callback(0), monitor.backlog)
    n = 8
    for _ in range(n):
        # a flash whose falling edge bounces: RPi.GPIO's bouncetime drops it
        assert gpio._fake_edge(24, [0, 1, 0, 1]) == 1
        time.sleep(GAP_S)
    assert wait_for(lambda: monitor.readings == n)
    backend.stop()
    monitor.stop()
    assert monitor.join(2.0)
    leds.stop()
    journal.close()

    rows = journal_rows(journal_path(str(tmp_path)))
    assert [r[0] for r in rows] == list(range(1, n + 1))
    assert rows[0][1] is None  # the first pulse's power is unknown
    assert all(r[1] is not None and r[2] >= GAP_S * 0.9 for r in rows[1:])
    assert [r[3] for r in rows] == sorted(r[3] for r in rows)
    assert abs(rows[-1][3] - time.time()) < 5
    assert meter.glitches == 0 and meter.implausible == 0
    assert gpio.HIGH in gpio._fake_outputs(18)  # the detect LED flashed
    assert gpio._fake_outputs(18)[-1] == gpio.LOW


def test_edge_queued_when_the_stop_comes_is_journaled(gpio, tmp_path):
    # An edge that RPi.GPIO timestamped just before Service.stop() stopped the
    # input, while the monitor was busy committing, is a real pulse: it must
    # be counted, not lost. (Fails on commit 62cc05f's monitor.py, which
    # left such edges in the queue; Monitor._drain_queue takes them.)
    cfg = meter_config()
    backend = make_input(cfg)
    journal = Journal(journal_path(str(tmp_path)), LOG)
    meter = Meter(cfg)
    monitor = Monitor(
        [meter], [backend], journal, lambda rows: None, None, LOG, commit_interval_s=0
    )
    commit = journal.commit
    stopped = []

    def commit_then_stop_arrives(*args):
        if journal.pending and not stopped:
            time.sleep(GAP_S)
            gpio._fake_pulse(24)  # queued while the monitor commits
            backend.stop()  # then Service.stop(): inputs, then the monitor
            monitor.stop()
            stopped.append(True)
        return commit(*args)

    journal.commit = commit_then_stop_arrives
    monitor.start()
    backend.start(monitor.edge_callback(0), monitor.backlog)
    gpio._fake_pulse(24)
    assert wait_for(lambda: bool(stopped))
    assert monitor.join(2.0)
    journal.close()
    assert [r[0] for r in journal_rows(journal_path(str(tmp_path)))] == [1, 2]


def service_settings(tmp_path, **input_options):
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
        "INPUT": {"backend": "rpigpio", "pin": 24, **input_options},
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


def test_service_end_to_end(gpio, tmp_path):
    settings = service_settings(tmp_path)
    service = Service(settings, LOG)
    try:
        service.start()
        assert gpio.getmode() == gpio.BCM
        assert gpio._fake_channel(23)["level"] == gpio.HIGH  # ready
        assert gpio._fake_channel(24)["edge"] == gpio.FALLING
        n = 6
        for _ in range(n):
            assert gpio._fake_pulse(24) == 1
            time.sleep(GAP_S)
        assert wait_for(lambda: service.monitor.readings == n)
    finally:
        service.stop()

    rows = journal_rows(journal_path(settings.data_dir))
    assert [r[0] for r in rows] == list(range(1, n + 1))
    with open(tmp_path / "power.csv") as f:
        lines = f.read().splitlines()
    assert lines[0].startswith("time,meter,pulses")
    assert [int(line.split(",")[2]) for line in lines[1:]] == list(range(1, n + 1))
    assert gpio._fake_outputs(23)[-1] == gpio.LOW  # ready off after stop
    assert gpio._fake_outputs(18)[-1] == gpio.LOW
    assert gpio.HIGH in gpio._fake_outputs(18)
    state = gpio._fake_channel(24)
    assert state["edge"] is None and state["direction"] is None


def test_service_with_an_invalid_pin_fails_to_start_cleanly(gpio, tmp_path):
    settings = service_settings(tmp_path, numbering="board", pin=1)
    service = Service(settings, LOG)
    try:
        with pytest.raises(StartError, match="GPIO pin 1 cannot be used"):
            service.start()
    finally:
        service.stop()
    assert gpio._fake_outputs(23)[-1] == gpio.LOW
