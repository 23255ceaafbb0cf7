"""Both GPIO backends on a real kernel GPIO chip: gpio-sim under QEMU.

One VM boot runs tests/vm/guest.py, which drives simulated GPIO lines at
known times and runs the whole daemon and the backends with the real gpiod,
lgpio and rpi-lgpio packages; these tests judge what it recorded. Without a
built kernel they skip, naming the command that builds it; in CI (CI=true)
a missing kernel is a failure.
"""

from __future__ import annotations

import bisect
import json
import os
import re
import statistics
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import guest  # noqa: E402
import vm  # noqa: E402
from conftest import pulse_rows  # noqa: E402

from core.meter import MeterConfig  # noqa: E402

pytestmark = pytest.mark.slow

SCENARIOS = [
    "gpiod_daemon",
    "rpigpio_daemon",
    "timestamps",
    "widths",
    "faults",
    "export",
]
GPIOD_PULSES = 300
RPIGPIO_PULSES = 200

# How far a reported interval may lie outside the interval the driver can
# have produced (it knows each edge only to within its write: the clock read
# before and after it). Both backends use the kernel's edge timestamps (gpiod
# directly, rpi-lgpio through lgpio's callback), so only clock conversion
# and rounding remain.
SLACK_MS = 1.0
ROUNDING_S = 0.0005  # the CSV's interval_s has milliseconds
# The detect LED lights once per pulse unless two pulses come within its
# blink (then it stays lit, by design). Under software emulation on a busy
# host the guest can stall for 100 ms and more, merging blinks: allow 10 %,
# but every pulse must light it (or find it lit) within LED_WITHIN_S.
LED_MERGES = 0.10
LED_WITHIN_S = 0.5


def _missing(what: str) -> None:
    message = f"{what}; the real-chip tests need it"
    if os.environ.get("CI"):
        pytest.fail(message + " (in CI this is a failure, not a skip)")
    pytest.skip(message)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Dict[str, Any]:
    image = vm.kernel_image()
    if not image.exists():
        _missing(f"no test kernel: build it once with {vm.BUILD_COMMAND}")
    if vm.qemu() is None:
        _missing("qemu-system-x86_64 is missing (apt-get install qemu-system-x86)")
    if not guest.GPIO_LIBS.is_dir():
        _missing(f"{guest.GPIO_LIBS} is missing: run 'make venv'")
    out = tmp_path_factory.mktemp("vm")
    program = [sys.executable, str(Path(guest.__file__)), "/run/out", *SCENARIOS]
    took = vm.boot(out, program)
    log = (out / "guest.log").read_text(errors="replace")
    found = out / "results.json"
    assert found.exists(), f"the guest wrote no results; its output:\n{log}"
    data = json.loads(found.read_text())
    data["vm_s"] = took
    data["guest_log"] = log
    return data


def scenario(results: Dict[str, Any], name: str) -> Dict[str, Any]:
    # The guest's clock must resolve well under a millisecond, or timing
    # checks pass on coarse (jiffy) time and the figures mean nothing.
    assert "jiffies" not in results["clocksource"], results["clocksource"]
    found = results[name]
    assert "error" not in found, found.get("error")
    return found


# Comparing readings with the driven train -----------------------------------


def meter_of(writes: List[List[Any]], config: Any, at: int) -> Tuple[Any, List[int]]:
    """What the meter must make of the driven edges, each taken at its
    write's start (at 0), middle (1) or end (2); and which writes were the
    counted pulses. The driver knows each edge only to within its write,
    and a host stall can stretch a flash, a ghost or a bounce's dark gap
    past a limit: the meter is judged on the edges as they really came."""
    from core.meter import END, START, Meter

    meter, pulses = Meter(config), []
    meter.flash_widths = []  # the width of each flash it judged
    for i, (before, after, up) in enumerate(writes):
        t = (before, (before + after) // 2, after)[at]
        # The write's index as its wall time: each reading names its write.
        for reading in meter.edge(t, float(i), END if up else START):
            if not reading.estimate:
                pulses.append(int(reading.time))
    return meter, pulses


def expected(run: Dict[str, Any], config: Any, counted: int) -> Tuple[Any, List[int]]:
    """The meter's verdict on the driven edges that gives the count the
    daemon reached, if edges taken anywhere inside their writes give it."""
    verdicts = [meter_of(run["writes"], config, at) for at in (1, 0, 2)]
    for meter, pulses in verdicts:
        if len(pulses) == counted:
            return meter, pulses
    return verdicts[0]


def daemon_config() -> Any:
    from core.meter import MeterConfig

    return MeterConfig(
        "house", guest.PULSES_PER_KWH, guest.DEBOUNCE_MS, idle_timeout_s=0
    )


def accepted_edges(run: Dict[str, Any]) -> List[List[int]]:
    """The write windows of the flashes the meter must count as pulses."""
    counted = len(pulse_rows(csv_rows(run["csv"])))
    _, pulses = expected(run, daemon_config(), counted)
    return [run["writes"][i][:2] for i in pulses]


def driven_bounds(edges: List[List[int]], i: int) -> Tuple[float, float]:
    """The shortest and longest the interval before edge i can have been, s."""
    (b0, a0), (b1, a1) = edges[i - 1], edges[i]
    return (b1 - a0) / 1e9, (a1 - b0) / 1e9


def interval_errors(run: Dict[str, Any]) -> List[float]:
    """For each reading after the first: how far its interval lies outside
    the interval the driver can have produced, in ms (0 when inside)."""
    rows = pulse_rows(csv_rows(run["csv"]))
    edges = accepted_edges(run)
    errors = []
    for i, row in enumerate(rows[1:], start=1):
        low, high = driven_bounds(edges, i)
        reported = float(row["interval_s"])
        errors.append(max(low - reported, reported - high, 0.0) * 1000)
    return errors


def power_errors(run: Dict[str, Any]) -> List[float]:
    """Relative error of each reading's power against the driven interval
    (the middle of its bounds), in percent."""
    rows = pulse_rows(csv_rows(run["csv"]))
    edges = accepted_edges(run)
    joules = 3.6e6 / guest.PULSES_PER_KWH
    out = []
    for i, row in enumerate(rows[1:], start=1):
        low, high = driven_bounds(edges, i)
        truth = joules / ((low + high) / 2)
        out.append(abs(float(row["power_w"]) - truth) / truth * 100)
    return out


def csv_rows(text: str) -> List[Dict[str, str]]:
    import csv
    import io

    return list(csv.DictReader(io.StringIO(text)))


# The whole daemon ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "count"),
    [("gpiod_daemon", GPIOD_PULSES), ("rpigpio_daemon", RPIGPIO_PULSES)],
)
def test_daemon_counts_every_pulse_and_no_bounce(results, name, count):
    run = scenario(results, name)
    assert run.get("exit") == 0, run.get("output", "") + run.get("log", "")
    rows = pulse_rows(csv_rows(run["csv"]))
    assert len(run["edges"]) == count
    assert run["bounces"] == len(run["bounce_edges"]) == count // guest.BOUNCE_EVERY
    meter, pulses = expected(run, daemon_config(), len(rows))
    # The train is a real test of bounce rejection only if nearly every
    # bounce came inside the lockout as driven.
    assert count - run["bounces"] // 10 <= len(pulses) <= count + run["bounces"] // 10
    assert [int(r["pulses"]) for r in rows] == list(range(1, len(pulses) + 1))
    # With no kernel filter every bounce reaches the meter, which rejects
    # it on the kernel's edge times and counts it. Once, with the host
    # stalling the guest around a flash's edge, the kernel reported no edge
    # for its bounce at all (neither pulse nor glitch): allow one in ten.
    _, rejected, implausible, ghosts = found(STOP_LINE, run["log"])
    want = meter.glitches + meter.ghosts
    assert want - want // 10 <= rejected + ghosts <= want
    assert implausible == meter.implausible == 0
    assert "Traceback" not in run["log"]


@pytest.mark.parametrize(
    ("name", "count"),
    [("gpiod_daemon", GPIOD_PULSES), ("rpigpio_daemon", RPIGPIO_PULSES)],
)
def test_leds_on_the_same_chip(results, name, count):
    run = scenario(results, name)
    assert run["ready_led_on"], "the ready LED line was not driven high"
    rises, falls = run["led_rises"], run["led_falls"]
    pulses = len(accepted_edges(run))
    assert pulses >= count - run["bounces"] // 10  # nearly all as planned
    assert pulses * (1 - LED_MERGES) <= len(rises) <= pulses, len(rises)
    # Each blink follows a pulse: no blink without a pulse before it.
    first_edge = run["edges"][0][0]
    assert all(t >= first_edge for t in rises)
    # Lit spans as seen by the driver; each pulse lights the LED (or finds
    # it lit) within LED_WITHIN_S.
    spans = list(zip(rises, falls + [rises[-1] + 10**10]))
    within = int(LED_WITHIN_S * 1e9)
    for i, (before, _after) in enumerate(accepted_edges(run)):
        lit = any(on <= before + within and off >= before for on, off in spans)
        assert lit, f"the detect LED did not light after pulse {i + 1}"
    assert run["ready_led_after"] == 0 and run["detect_led_after"] == 0


@pytest.mark.parametrize(
    ("name", "count"),
    [("gpiod_daemon", GPIOD_PULSES), ("rpigpio_daemon", RPIGPIO_PULSES)],
)
def test_intervals_are_the_kernels_edge_times(results, name, count):
    run = scenario(results, name)
    errors = interval_errors(run)
    assert len(errors) == len(accepted_edges(run)) - 1
    assert len(errors) >= count - 1 - run["bounces"] // 10  # nearly as planned
    assert max(errors) <= SLACK_MS, sorted(errors)[-10:]
    # Power against the middle of what was driven: the driver's own write
    # time is the only uncertainty left.
    assert statistics.median(power_errors(run)) < 2.0


def test_auto_found_gpiod_and_the_header_chip_by_its_label(results):
    run = scenario(results, "gpiod_daemon")
    header = results["chips"]["header"][0]
    assert header != "/dev/gpiochip0"  # the decoy is first, as on a Pi 5
    why = f"auto: gpiod, the GPIO character device {header} (label 'pinctrl-bcm2711'"
    assert f"reads gpiod {header} line {guest.INPUT_LINE} ({why}" in run["log"]
    assert run["status"]["code"] == 0
    said = f"input of meter house: gpiod {header} line {guest.INPUT_LINE} ({why}"
    assert said in run["status"]["output"]  # the daemon's own word


def test_rpigpio_runs_as_a_daemon_through_rpi_lgpio(results):
    run = scenario(results, "rpigpio_daemon")
    assert run["start"]["code"] == 0, run["start"]["output"] + run["log"]
    assert "reads RPi.GPIO (rpi-lgpio) pin 24 (bcm)" in run["log"]
    assert "INPUT['backend'] = 'rpigpio'" in run["status"]["output"]


# Faults ----------------------------------------------------------------------

FAULTS = {
    "busy-gpiod": (1, "in use by another program"),
    "busy-rpigpio": (1, "another program is using it"),
    "perm-gpiod": (1, "no permission to open"),
    "perm-rpigpio": (1, "add this user to the 'gpio' group"),
    "perm-auto": (1, "no permission to open"),
    "nochip-gpiod": (2, "/dev/gpiochip7 does not exist"),
    "nochip-rpigpio": (1, "the chip rpi-lgpio chose does not exist"),
    "nochip-auto": (2, "/dev/gpiochip7 does not exist"),
    "offset-gpiod": (1, "has 8 lines (0 to 7); line 20 is past its end"),
    "offset-rpigpio": (1, "the chip has no such GPIO"),
    "offset-auto": (1, "has 8 lines (0 to 7); line 20 is past its end"),
}


@pytest.mark.parametrize("case", sorted(FAULTS))
def test_fault_gives_message_and_exit_code(results, case):
    found = scenario(results, "faults")[case]
    code, message = FAULTS[case]
    everything = found["output"] + found["log"]
    assert found["code"] == code, everything
    assert message in everything
    assert "Traceback" not in everything


# Timestamps --------------------------------------------------------------------


def lags_ms(run: Dict[str, Any]) -> List[float]:
    """How long after the start of each driving write the kernel stamped it."""
    return [(ts - b) / 1e6 for ts, (b, _a) in zip(run["stamps"], run["edges"])]


def test_kernel_stamps_without_filter_lie_inside_the_write(results):
    run = scenario(results, "timestamps")["0"]
    assert len(run["stamps"]) == len(run["edges"])
    for ts, (before, after) in zip(run["stamps"], run["edges"]):
        assert before <= ts <= after + SLACK_MS * 1e6


def test_kernel_filter_stamps_late(results):
    # With a debounce period the kernel stamps the edge when its debounce
    # work runs, at least that period after the edge (and, when that work
    # runs after the flash has ended, not at all): the reason the gpiod
    # backend's default filter is 0 (the meter debounces instead).
    run = scenario(results, "timestamps")["1"]
    befores = [before for before, _after in run["edges"]]
    assert 0 < len(run["stamps"]) <= len(befores)
    lags = [ts - befores[bisect.bisect_right(befores, ts) - 1] for ts in run["stamps"]]
    assert min(lags) >= 0.9 * 1_000_000


def test_default_filter_is_off():
    from inputs.libgpiod import GpiodInput

    assert GpiodInput.OPTIONS["filter_ms"].default == 0


# Flash widths: ghosts, bounces, an inverted sensor, watch and its record ------

STOP_LINE = re.compile(
    r"house: (\d+) pulses, glitches (\d+), implausible (\d+), ghosts (\d+)"
)
WATCH_LINE = re.compile(
    r"summary: (\d+) edges in [\d.]+ s watched \([\d.]+ s from the first edge "
    r"to the last\): (\d+) pulses, (\d+) glitches, "
    r"(\d+) implausible, (\d+) ghosts"
)
GHOSTS = guest.WIDTH_FLASHES - 1  # one between each pair of flashes
WIDTH_CONFIG = MeterConfig("house", 1000, 20, idle_timeout_s=0)  # as guest's
BOUNCES = guest.WIDTH_FLASHES // guest.WIDTH_BOUNCE_EVERY


def found(pattern: re.Pattern[str], text: str) -> Tuple[int, ...]:
    m = pattern.search(text)
    assert m, text
    return tuple(int(g) for g in m.groups())


def bucket(text: str, name: str) -> int:
    m = re.search(rf"^ +{name} ms +(\d+) #", text, re.M)
    return int(m.group(1)) if m else 0


def judged(
    windows: List[List[Any]], pulses: int, glitches: int, implausible: int, ghosts: int
) -> List[List[int]]:
    """Every flash a pulse, every ghost a ghost, every bounce a glitch, as
    the meter must judge the edges as driven (a host stall can stretch a
    2 ms ghost or a bounce's dark gap past min_pulse_ms): nearly all as
    planned, and exactly what the driven edges make. Returns the counted
    flashes' write windows."""
    meter, want = expected({"writes": windows}, WIDTH_CONFIG, pulses)
    assert abs(len(want) - guest.WIDTH_FLASHES) <= 2
    assert meter.ghosts >= GHOSTS - 2
    assert (pulses, glitches, implausible, ghosts) == (
        len(want),
        meter.glitches,
        meter.implausible,
        meter.ghosts,
    )
    return [windows[i][:2] for i in want]


def test_ghosts_are_rejected_and_counted_live(results):
    run = scenario(results, "widths")
    assert run["daemon_exit"] == 0, run["daemon_output"] + run["daemon_log"]
    # The train as planned (the guest drives it again when the host
    # stretched it), so every ghost and bounce is one.
    attempts = run["daemon_attempts"]
    assert guest.as_planned(run["daemon_windows"], guest.width_train()), attempts
    pulses, glitches, implausible, ghosts = found(STOP_LINE, run["daemon_log"])
    want = judged(run["daemon_windows"], pulses, glitches, implausible, ghosts)
    rows = pulse_rows(csv_rows(run["daemon_csv"]))
    assert len(rows) == pulses
    # Intervals between the flashes' starts (500 ms as planned), whatever
    # the ghosts between them.
    for i, row in enumerate(rows[1:], start=1):
        low, high = driven_bounds(want, i)
        reported = float(row["interval_s"])
        assert low - SLACK_MS / 1000 <= reported <= high + SLACK_MS / 1000
    want = f"{glitches} glitches, {implausible} implausible, {ghosts} ghosts"
    assert f"rejected edges of house: {want} in the last 24 h" in run["daemon_status"]


def test_watch_shows_the_ghosts_and_suggests_limits(results):
    run = scenario(results, "widths")["watch"]
    assert run["exit"] == 0, run["stderr"]
    assert guest.as_planned(run["windows"], guest.width_train()), run["attempts"]
    text = run["output"]
    edges, pulses, glitches, implausible, ghosts = found(WATCH_LINE, text)
    judged(run["windows"], pulses, glitches, implausible, ghosts)
    assert edges == 2 * (guest.WIDTH_FLASHES + GHOSTS + BOUNCES)
    # The histogram: the widths the meter judged, as driven (2 ms ghosts,
    # 50 ms flashes, 300 ms ghosts, unless a host stall stretched one), each
    # in its range of buckets.
    meter, _ = expected({"writes": run["windows"]}, WIDTH_CONFIG, pulses)
    widths = [w / 1e6 for w in meter.flash_widths]
    ranges = {
        ("0-1", "1-2", "2-5"): (0, 5),
        ("5-10", "10-20", "20-50", "50-100", "100-200"): (5, 200),
        ("200-500", "500-1000"): (200, 1000),
    }
    for names, (low, high) in ranges.items():
        shown = sum(bucket(text, name) for name in names)
        assert shown == sum(low <= w < high for w in widths), (names, text)
    # The suggested limits: from the flashes that passed (half the narrowest
    # and twice the widest of their main cluster), to within a rounding.
    passed = [w for w in widths if 5 <= w <= 250]
    mid = statistics.median(passed)
    main = [w for w in passed if mid / 1.5 <= w <= mid * 1.5]
    low, high = min(main), max(main)
    shown_min = re.search(r"suggest: METER\['min_pulse_ms'\] = (\d+) ", text)
    shown_max = re.search(r"suggest: METER\['max_pulse_ms'\] = (\d+) ", text)
    assert shown_min and abs(int(shown_min.group(1)) - low / 2) <= 1, text
    assert shown_max and abs(int(shown_max.group(1)) - 2 * high) <= 1, text
    assert "ghost (narrower than min_pulse_ms 5)" in text
    assert "ghost (wider than max_pulse_ms 250)" in text
    assert f"diagnosis: {ghosts} ghosts rejected (flash width)" in text
    assert "suggest: INPUT['edge'] = 'falling'" in text
    assert "inverted" not in text


def test_the_recorded_edges_replay_to_the_live_counts(results):
    run = scenario(results, "widths")
    live = found(WATCH_LINE, run["watch"]["output"])[1:]
    edges = [x for x in run["watch"]["record"].splitlines() if not x.startswith("#")]
    assert len(edges) == found(WATCH_LINE, run["watch"]["output"])[0]
    replay = run["replay"]
    assert replay["exit"] == 0, replay["output"] + replay["log"]
    assert found(STOP_LINE, replay["log"]) == live


def test_watch_finds_an_inverted_sensor(results):
    run = scenario(results, "widths")["inverted"]
    assert run["exit"] == 0, run["stderr"]
    text = run["output"]
    assert "the sensor is inverted or INPUT['edge'] is the wrong one" in text
    assert "suggest: INPUT['edge'] = 'rising'" in text
    pulses = found(WATCH_LINE, text)[1]
    assert pulses == 0  # every "flash" is the dark between flashes: a ghost


# Export on an LED meter ---------------------------------------------------------


def test_direction_line_and_export_led_count_export(results):
    """gpiod with a direction line (an open collector, low while
    exporting) and a sensor on the export LED: the import count takes only
    the flashes while importing, export_kwh the flashes while exporting and
    the export LED's, and power is negative while exporting."""
    run = scenario(results, "export")
    assert run.get("exit") == 0, run.get("output", "") + run.get("log", "")
    rows = [r for r in csv_rows(run["csv"]) if r["estimate"] == "0"]  # flashes
    imported, exported, led = guest.EXPORT_FLASHES
    assert [len(run[k]) for k in ("import", "export", "export_led")] == [
        imported,
        exported,
        led,
    ]
    last = rows[-1]
    assert int(last["pulses"]) == imported
    assert float(last["energy_kwh"]) == pytest.approx(imported / guest.PULSES_PER_KWH)
    assert float(last["export_kwh"]) == pytest.approx(
        (exported + led) / guest.PULSES_PER_KWH
    )
    # Each flash one reading, in order: import (power positive after the
    # first), then export (negative; the export LED's first has none), the
    # export total never going down.
    totals = [float(r["export_kwh"] or 0) for r in rows]
    assert totals == sorted(totals)
    powers = [float(r["power_w"]) for r in rows if r["power_w"]]
    assert len(rows) == imported + exported + led, run["csv"]
    assert all(p > 0 for p in powers[: imported - 1]), powers
    assert all(p < 0 for p in powers[imported - 1 :]), powers
