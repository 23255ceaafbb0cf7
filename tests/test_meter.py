"""The meter's arithmetic (src/core/meter.py): pulses, glitches, the plausibility
guard, power from the interval, energy, restart continuity and the idle
timeout. The meter is pure, so these tests drive it with made-up clocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import List, Optional

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from core.meter import Meter, MeterConfig, Reading, power_from_interval

NS = 1_000_000_000
WALL0 = 1_714_564_800.0  # 2024-05-01T12:00:00Z; deliberately unrelated to mono
MONO0 = 5 * NS


def wall_of(t_ns: int) -> float:
    """The wall clock that goes with monotonic time t_ns in these tests."""
    return WALL0 + (t_ns - MONO0) / NS


# ---------------------------------------------------------------------------
# A reference model written from the specification, not from the code.
# ---------------------------------------------------------------------------

# How close (ns) to a threshold an event may fall before the example is
# discarded: the code rounds its thresholds to whole nanoseconds, the
# specification does not, and a sub-nanosecond disagreement is not a bug.
MARGIN_NS = 2


def min_interval_s(cfg: MeterConfig) -> Fraction:
    """The shortest interval at max_power_w: one pulse is 1/ppk kWh."""
    return Fraction(3600 * 1000) / (
        Fraction(cfg.pulses_per_kwh) * Fraction(cfg.max_power_w)
    )


@dataclass
class Model:
    cfg: MeterConfig
    pulses: int
    glitches: int = 0
    implausible: int = 0
    last_ns: Optional[int] = None
    last_wall: float = 0.0
    idle_pending: bool = False
    log: List[str] = field(default_factory=list)

    def energy(self) -> float:
        return self.cfg.energy_offset_kwh + self.pulses / self.cfg.pulses_per_kwh

    def _near(self, value_ns: Fraction, threshold_ns: Fraction) -> bool:
        return abs(value_ns - threshold_ns) < MARGIN_NS

    def tick(self, t_ns: int) -> List[dict]:
        if not self.idle_pending or self.cfg.idle_timeout_s <= 0:
            return []
        idle_ns = Fraction(self.cfg.idle_timeout_s) * NS
        gap = t_ns - self.last_ns
        assume(not self._near(Fraction(gap), idle_ns))
        if gap < idle_ns:
            return []
        self.idle_pending = False
        return [
            dict(
                time=self.last_wall + self.cfg.idle_timeout_s,
                pulses=self.pulses,
                energy_kwh=self.energy(),
                power_w=0.0,
                interval_s=self.cfg.idle_timeout_s,
                estimate=True,
            )
        ]

    def edge(self, t_ns: int) -> List[dict]:
        out = self.tick(t_ns)
        if self.last_ns is not None:
            gap = Fraction(t_ns - self.last_ns)
            debounce_ns = Fraction(self.cfg.debounce_ms) * 1_000_000
            shortest_ns = min_interval_s(self.cfg) * NS
            assume(not self._near(gap, debounce_ns))
            if gap < debounce_ns:
                self.glitches += 1
                self.log.append("glitch")
                return out
            assume(not self._near(gap, shortest_ns))
            if gap < shortest_ns:
                self.implausible += 1
                self.log.append("implausible")
                return out
        interval = None if self.last_ns is None else (t_ns - self.last_ns) / NS
        self.pulses += 1
        self.last_ns = t_ns
        self.last_wall = wall_of(t_ns)
        self.idle_pending = True
        self.log.append("pulse")
        out.append(
            dict(
                time=self.last_wall,
                pulses=self.pulses,
                energy_kwh=self.energy(),
                power_w=None
                if interval is None
                else 3600.0 * 1000.0 / (self.cfg.pulses_per_kwh * interval),
                interval_s=interval,
                estimate=False,
            )
        )
        return out


def assert_matches(got: List[Reading], want: List[dict], cfg: MeterConfig) -> None:
    assert len(got) == len(want), (got, want)
    for r, w in zip(got, want):
        assert r.meter == cfg.name
        assert r.pulses == w["pulses"]
        assert r.estimate is w["estimate"]
        assert r.energy_kwh == w["energy_kwh"]
        assert r.time == pytest.approx(w["time"], abs=1e-6)
        if w["power_w"] is None:
            assert r.power_w is None
            assert r.interval_s is None
        else:
            assert r.interval_s == pytest.approx(w["interval_s"], rel=1e-9, abs=1e-9)
            assert r.power_w == pytest.approx(w["power_w"], rel=1e-9)


# ---------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------

configs = st.builds(
    MeterConfig,
    name=st.sampled_from(["main", "grid", "heat-pump_2"]),
    pulses_per_kwh=st.one_of(
        st.sampled_from([100.0, 500.0, 800.0, 1000.0, 2000.0, 10000.0]),
        st.floats(1.0, 20000.0),
    ),
    debounce_ms=st.one_of(st.sampled_from([0.0, 5.0, 50.0]), st.floats(0.0, 500.0)),
    max_power_w=st.one_of(
        st.sampled_from([3000.0, 30000.0]), st.floats(100.0, 100000.0)
    ),
    idle_timeout_s=st.one_of(
        st.just(0.0), st.sampled_from([1.0, 300.0]), st.floats(0.01, 3600.0)
    ),
    energy_offset_kwh=st.one_of(st.just(0.0), st.floats(-1e6, 1e6)),
    estimate_fall=st.just(0.0),  # estimates have their own tests below
)


@st.composite
def scenarios(draw):
    """A config, a starting pulse count and a list of (kind, time ns)."""
    cfg = draw(configs)
    start = draw(st.one_of(st.just(0), st.integers(0, 10**9)))
    scales = [
        cfg.debounce_ms * 1e6,
        float(min_interval_s(cfg)) * NS,
        cfg.idle_timeout_s * NS,
        1e9,
    ]
    step = st.tuples(
        st.sampled_from(["edge", "edge", "edge", "tick"]),
        st.sampled_from(scales),
        st.floats(0.0, 2.5),
    )
    steps = draw(st.lists(step, max_size=40))
    t = MONO0
    events = []
    for kind, scale, factor in steps:
        t += int(scale * factor)
        events.append((kind, t))
    return cfg, start, events


FAST = settings(max_examples=150, deadline=None)


@FAST
@given(scenarios())
def test_meter_follows_the_reference_model(scenario):
    """Every reading, every counter, after every event, as specified."""
    cfg, start, events = scenario
    meter = Meter(cfg, pulses=start)
    model = Model(cfg, pulses=start)
    for kind, t in events:
        if kind == "edge":
            want = model.edge(t)
            got = meter.edge(t, wall_of(t))
        else:
            want = model.tick(t)
            got = meter.tick(t)
        assert_matches(got, want, cfg)
        assert meter.pulses == model.pulses
        assert meter.glitches == model.glitches
        assert meter.implausible == model.implausible
        # energy is offset + accepted pulses / ppk, always
        assert meter.energy_kwh == cfg.energy_offset_kwh + (
            model.pulses / cfg.pulses_per_kwh
        )


@FAST
@given(scenarios())
def test_every_edge_is_exactly_one_of_pulse_glitch_implausible(scenario):
    cfg, start, events = scenario
    meter = Meter(cfg, pulses=start)
    edges = 0
    pulse_readings = 0
    for kind, t in events:
        if kind == "edge":
            edges += 1
            out = meter.edge(t, wall_of(t))
        else:
            out = meter.tick(t)
        pulse_readings += sum(1 for r in out if r.power_w != 0.0)
    assert meter.pulses - start + meter.glitches + meter.implausible == edges
    assert pulse_readings == meter.pulses - start
    assert meter.energy_kwh == cfg.energy_offset_kwh + (
        meter.pulses / cfg.pulses_per_kwh
    )


@FAST
@given(scenarios())
def test_pulse_numbers_are_contiguous_and_energy_tracks_them(scenario):
    cfg, start, events = scenario
    meter = Meter(cfg, pulses=start)
    readings: List[Reading] = []
    for kind, t in events:
        if kind == "edge":
            readings += meter.edge(t, wall_of(t))
        else:
            readings += meter.tick(t)
    pulses = [r.pulses for r in readings if r.power_w != 0.0]
    assert pulses == list(range(start + 1, start + 1 + len(pulses)))
    for r in readings:
        assert r.energy_kwh == cfg.energy_offset_kwh + r.pulses / cfg.pulses_per_kwh
        if r.power_w is not None and r.power_w != 0.0:
            assert r.power_w == pytest.approx(
                3600 * 1000 / (cfg.pulses_per_kwh * r.interval_s), rel=1e-12
            )
            # the guard rounds its threshold to whole ns: allow that much
            assert r.power_w <= cfg.max_power_w * (1 + 1e-5)
    # readings come out in time order (to float precision)
    for a, b in zip(readings, readings[1:]):
        assert b.time >= a.time - 1e-6


# ---------------------------------------------------------------------------
# Focused properties
# ---------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    cfg=configs.filter(lambda c: c.debounce_ms >= 1.0),
    offsets=st.lists(st.floats(0.0, 0.999), min_size=1, max_size=30),
)
def test_edges_inside_the_debounce_window_are_glitches(cfg, offsets):
    meter = Meter(replace(cfg, idle_timeout_s=0.0))
    t0 = MONO0
    assert len(meter.edge(t0, wall_of(t0))) == 1
    window_ns = cfg.debounce_ms * 1e6
    for f in sorted(offsets):
        t = t0 + int(f * window_ns)
        assert meter.edge(t, wall_of(t)) == []
    assert meter.pulses == 1
    assert meter.glitches == len(offsets)
    assert meter.implausible == 0
    assert meter.energy_kwh == cfg.energy_offset_kwh + 1 / cfg.pulses_per_kwh


@settings(max_examples=100, deadline=None)
@given(
    ppk=st.floats(10.0, 10000.0),
    max_power_w=st.floats(100.0, 50000.0),
    fractions=st.lists(st.floats(0.0, 0.999), min_size=1, max_size=30),
)
def test_edges_faster_than_max_power_are_implausible(ppk, max_power_w, fractions):
    cfg = MeterConfig(
        pulses_per_kwh=ppk, max_power_w=max_power_w, debounce_ms=0.0, idle_timeout_s=0
    )
    meter = Meter(cfg)
    shortest_ns = float(min_interval_s(cfg)) * NS
    t0 = MONO0
    meter.edge(t0, wall_of(t0))
    for f in sorted(fractions):
        t = t0 + max(1, int(f * shortest_ns) - MARGIN_NS)
        assert meter.edge(t, wall_of(t)) == []
    assert meter.pulses == 1
    assert meter.implausible == len(fractions)
    assert meter.glitches == 0
    # the next edge at twice the shortest interval is a pulse at max_power/2,
    # timed from the last *accepted* pulse
    t = t0 + int(2 * shortest_ns)
    (r,) = meter.edge(t, wall_of(t))
    assert r.pulses == 2
    assert r.power_w == pytest.approx(max_power_w / 2, rel=1e-6)


@settings(max_examples=150, deadline=None)
@given(
    ppk=st.floats(0.001, 1e7),
    interval_ms=st.integers(1, 10**10),
)
def test_power_from_interval_is_3600000_over_ppk_times_interval(ppk, interval_ms):
    interval_s = interval_ms / 1000
    p = power_from_interval(ppk, interval_s)
    assert p == pytest.approx(3600 * 1000 / (ppk * interval_s), rel=1e-12)
    # energy of one pulse (J) = power (W) * interval (s)
    assert p * interval_s == pytest.approx(3.6e6 / ppk, rel=1e-9)


@settings(max_examples=100, deadline=None)
@given(
    cfg=configs,
    start=st.integers(0, 10**12),
    t=st.integers(0, 10**15),
    wall=st.floats(1e9, 4e9),
)
def test_first_pulse_after_start_has_unknown_power_and_continues_count(
    cfg, start, t, wall
):
    meter = Meter(cfg, pulses=start)
    assert meter.energy_kwh == cfg.energy_offset_kwh + start / cfg.pulses_per_kwh
    (r,) = meter.edge(t, wall)
    assert r.power_w is None
    assert r.interval_s is None
    assert r.pulses == start + 1
    assert r.time == wall
    assert r.meter == cfg.name
    assert r.energy_kwh == cfg.energy_offset_kwh + (start + 1) / cfg.pulses_per_kwh


@settings(max_examples=100, deadline=None)
@given(
    cfg=configs,
    ticks=st.lists(st.integers(0, 10**14), max_size=20),
)
def test_no_idle_reading_before_the_first_pulse(cfg, ticks):
    meter = Meter(cfg)
    for t in sorted(ticks):
        assert meter.tick(MONO0 + t) == []
    assert meter.pulses == 0


@settings(max_examples=150, deadline=None)
@given(
    idle_s=st.one_of(st.sampled_from([1.0, 300.0]), st.floats(0.01, 3600.0)),
    before=st.lists(st.floats(0.0, 0.999), max_size=10),
    after=st.lists(st.floats(1.001, 50.0), min_size=1, max_size=10),
)
def test_idle_timeout_emits_one_zero_reading_stamped_at_expiry(idle_s, before, after):
    cfg = MeterConfig(idle_timeout_s=idle_s, debounce_ms=0.0, energy_offset_kwh=2.5)
    meter = Meter(cfg, pulses=41)
    t0 = MONO0 + 123_456_789
    meter.edge(t0, wall_of(t0))
    idle_ns = idle_s * NS
    for f in sorted(before):
        assert meter.tick(t0 + int(f * idle_ns)) == []
    ticks = sorted(after)
    (idle,) = meter.tick(t0 + int(ticks[0] * idle_ns))
    assert idle.power_w == 0.0
    assert idle.pulses == 42
    assert idle.energy_kwh == 2.5 + 42 / 1000
    assert idle.time == pytest.approx(wall_of(t0) + idle_s, abs=1e-6)
    assert idle.interval_s == pytest.approx(idle_s, abs=1e-6)
    for f in ticks[1:]:
        assert meter.tick(t0 + int(f * idle_ns)) == []
    assert meter.pulses == 42


@settings(max_examples=100, deadline=None)
@given(
    idle_s=st.floats(0.5, 3600.0),
    late=st.floats(1.001, 20.0),
)
def test_edge_emits_the_pending_idle_reading_before_its_pulse(idle_s, late):
    cfg = MeterConfig(idle_timeout_s=idle_s)
    meter = Meter(cfg)
    t0 = MONO0
    meter.edge(t0, wall_of(t0))
    t1 = t0 + int(late * idle_s * NS)
    idle, pulse = meter.edge(t1, wall_of(t1))
    assert idle.power_w == 0.0
    assert idle.pulses == 1
    assert idle.time == pytest.approx(wall_of(t0) + idle_s, abs=1e-6)
    assert pulse.pulses == 2
    assert pulse.time == wall_of(t1)
    assert pulse.interval_s == pytest.approx((t1 - t0) / NS, rel=1e-12)
    assert pulse.power_w == pytest.approx(3.6e6 / (1000 * pulse.interval_s))
    assert idle.time < pulse.time
    # after a new pulse, the idle timeout arms again, once
    t2 = t1 + int(idle_s * NS) + 1
    assert len(meter.tick(t2)) == 1
    assert meter.tick(t2 + NS) == []


@settings(max_examples=100, deadline=None)
@given(ticks=st.lists(st.integers(0, 10**16), max_size=20))
def test_idle_timeout_zero_never_emits(ticks):
    meter = Meter(MeterConfig(idle_timeout_s=0))
    meter.edge(MONO0, WALL0)
    for t in sorted(ticks):
        assert meter.tick(MONO0 + t) == []


# ---------------------------------------------------------------------------
# Examples with exact numbers
# ---------------------------------------------------------------------------


def test_example_default_meter_sequence():
    m = Meter(MeterConfig())  # 1000/kWh, 50 ms, 30 kW, 300 s idle
    assert m.edge(10 * NS, 1000.0) == [Reading(1000.0, "main", 1, 0.001, None, None)]
    # 3.6 s later: 1 Wh in 3.6 s = 1000 W
    assert m.edge(13_600_000_000, 1003.6) == [
        Reading(1003.6, "main", 2, 0.002, 1000.0, 3.6)
    ]
    # 20 ms later: a glitch
    assert m.edge(13_620_000_000, 1003.62) == []
    assert (m.pulses, m.glitches, m.implausible) == (2, 1, 0)
    # 100 ms after the last pulse: 36 kW > 30 kW, implausible
    assert m.edge(13_700_000_000, 1003.7) == []
    assert (m.pulses, m.glitches, m.implausible) == (2, 1, 1)
    # 120 ms after the last pulse: exactly 30 kW is plausible
    (r,) = m.edge(13_720_000_000, 1003.72)
    assert r.pulses == 3
    assert r.power_w == pytest.approx(30000.0)
    assert r.interval_s == pytest.approx(0.12)
    assert m.energy_kwh == 0.003


def test_example_implausible_boundary_just_below():
    m = Meter(MeterConfig())
    m.edge(0, 1.0)
    # 119.999 ms: a hair above 30 kW
    assert m.edge(119_999_000, 1.12) == []
    assert m.implausible == 1


def test_example_glitch_boundary():
    m = Meter(MeterConfig(debounce_ms=50, max_power_w=1e6))
    m.edge(0, 1.0)
    assert m.edge(49_999_999, 1.05) == []
    assert m.glitches == 1
    # exactly debounce_ms after the last accepted edge is not a glitch
    (r,) = m.edge(50_000_000, 1.05)
    assert r.pulses == 2
    assert r.power_w == pytest.approx(72000.0)


def test_example_glitch_measured_from_last_accepted_not_last_edge():
    m = Meter(MeterConfig(debounce_ms=50, max_power_w=1e6))
    m.edge(0, 1.0)
    m.edge(30_000_000, 1.03)  # glitch
    # 60 ms after the accepted pulse (30 ms after the glitch): a pulse
    (r,) = m.edge(60_000_000, 1.06)
    assert (m.pulses, m.glitches) == (2, 1)
    assert r.interval_s == pytest.approx(0.06)


def test_example_800_per_kwh_with_offset_and_restart():
    cfg = MeterConfig(name="grid", pulses_per_kwh=800, energy_offset_kwh=12345.5)
    m = Meter(cfg, pulses=8000)  # 10 kWh counted before the restart
    assert m.energy_kwh == 12355.5
    (first,) = m.edge(0, 2000.0)
    assert first == Reading(2000.0, "grid", 8001, 12345.5 + 8001 / 800, None, None)
    # 4.5 s per pulse at 800/kWh: 3600000 / (800 * 4.5) = 1000 W
    (second,) = m.edge(4_500_000_000, 2004.5)
    assert second.power_w == pytest.approx(1000.0)
    assert second.pulses == 8002
    assert second.energy_kwh == 12345.5 + 8002 / 800


def test_example_idle_reading_exact():
    m = Meter(MeterConfig(idle_timeout_s=300))
    m.edge(1 * NS, 1000.0)
    assert m.tick(300 * NS) == []  # 299 s since the pulse
    assert m.tick(301 * NS) == [Reading(1300.0, "main", 1, 0.001, 0.0, 300.0, True)]
    assert m.tick(302 * NS) == []
    assert m.tick(10_000 * NS) == []
    # a pulse 10 min after the first: 1 Wh in 600 s = 6 W, no second idle row
    assert m.edge(601 * NS, 1600.0) == [Reading(1600.0, "main", 2, 0.002, 6.0, 600.0)]


def test_example_late_tick_does_not_move_the_idle_stamp():
    m = Meter(MeterConfig(idle_timeout_s=60))
    m.edge(0, 500.0)
    (r,) = m.tick(3600 * NS)  # the tick comes an hour late
    assert r.time == 560.0
    assert r.interval_s == 60.0


def test_example_edge_after_idle_without_tick():
    m = Meter(MeterConfig(idle_timeout_s=10))
    m.edge(0, 100.0)
    out = m.edge(40 * NS, 140.0)
    assert out == [
        Reading(110.0, "main", 1, 0.001, 0.0, 10.0, True),
        Reading(140.0, "main", 2, 0.002, 90.0, 40.0),
    ]


def test_example_glitch_after_idle_still_emits_idle_reading():
    # debounce longer than the idle timeout: an edge inside the window but
    # after the timeout yields the idle reading and counts a glitch
    m = Meter(MeterConfig(debounce_ms=5000, idle_timeout_s=2, max_power_w=1e6))
    m.edge(0, 10.0)
    out = m.edge(3 * NS, 13.0)
    assert out == [Reading(12.0, "main", 1, 0.001, 0.0, 2.0, True)]
    assert (m.pulses, m.glitches) == (1, 1)


def test_example_debounce_zero_accepts_close_edges():
    m = Meter(MeterConfig(debounce_ms=0, max_power_w=1e9))
    m.edge(0, 1.0)
    (r,) = m.edge(1_000_000, 1.001)  # 1 ms: 3600 kW, below 1 GW
    assert r.power_w == pytest.approx(3_600_000.0)
    assert m.glitches == 0


def test_power_from_interval_examples():
    assert power_from_interval(1000, 3.6) == pytest.approx(1000.0)
    assert power_from_interval(1000, 1.0) == pytest.approx(3600.0)
    assert power_from_interval(500, 7.2) == pytest.approx(1000.0)
    assert power_from_interval(100, 36.0) == pytest.approx(1000.0)
    assert math.isclose(power_from_interval(1, 3600.0), 1000.0)


def test_simultaneous_edges_with_extreme_but_valid_settings_are_implausible():
    m = Meter(MeterConfig(pulses_per_kwh=1e7, max_power_w=1e9, debounce_ms=0))
    m.edge(1000, 1.0)
    assert m.edge(1000, 1.0) == []
    assert m.implausible == 1
    assert m.pulses == 1


# ---------------------------------------------------------------------------
# Estimates between pulses: the falling upper bound
# ---------------------------------------------------------------------------


@st.composite
def loads(draw):
    """A piecewise-constant load (seconds, watts), a meter's constant, the
    fraction the bound falls by, the energy already used at the start (as a
    part of a pulse) and tick times per second of load."""
    steps = draw(
        st.lists(
            st.tuples(st.floats(1.0, 3600.0), st.floats(1.0, 5000.0)),
            min_size=1,
            max_size=8,
        )
    )
    ppk = draw(st.sampled_from([100.0, 800.0, 1000.0, 10000.0]))
    fall = draw(st.sampled_from([0.1, 0.2, 0.5, 0.9]))
    phase = draw(st.floats(0.0, 0.999))
    tick_s = draw(st.sampled_from([0.3, 1.0, 7.0]))
    return steps, ppk, fall, phase, tick_s


def true_pulses(steps, ppk, phase):
    """Pulse times (s from 0) of the load, and its energy (Ws) up to t."""
    per_pulse = 3600.0 * 1000.0 / ppk
    times, used, t = [], phase * per_pulse, 0.0
    for seconds, watts in steps:
        left = seconds
        while used + watts * left >= per_pulse:
            dt = (per_pulse - used) / watts
            t += dt
            left -= dt
            used = 0.0
            times.append(t)
        used += watts * left
        t += left

    def energy(a: float, b: float) -> float:
        """Ws used in [a, b]."""
        total, start = 0.0, 0.0
        for seconds, watts in steps:
            lo, hi = max(a, start), min(b, start + seconds)
            if hi > lo:
                total += watts * (hi - lo)
            start += seconds
        return total

    return times, energy, t


def run_meter(meter: Meter, pulses: List[float], end: float, tick_s: float):
    """Edges at the pulse times, ticks every tick_s; all readings in order."""
    events = [(t, "edge") for t in pulses]
    k = 1
    while k * tick_s < end:
        events.append((k * tick_s, "tick"))
        k += 1
    out = []
    for t, kind in sorted(events):
        ns = MONO0 + int(round(t * NS))
        out += meter.edge(ns, wall_of(ns)) if kind == "edge" else meter.tick(ns)
    return out


@FAST
@given(loads())
def test_the_falling_bound_is_an_upper_bound_and_the_next_pulse_exact(load):
    steps, ppk, fall, phase, tick_s = load
    pulses, energy, end = true_pulses(steps, ppk, phase)
    assume(len(pulses) >= 2)
    cfg = MeterConfig(
        pulses_per_kwh=ppk, debounce_ms=0.0, max_power_w=1e9, estimate_fall=fall
    )
    readings = run_meter(Meter(cfg), pulses, end, tick_s)
    assert [r.pulses for r in readings if not r.estimate] == list(
        range(1, len(pulses) + 1)
    )
    last_exact = None  # the last pulse's reading
    since_pulse = []  # estimates since it
    for r in readings:
        t = r.time - WALL0
        if not r.estimate:
            if since_pulse:
                # The truth at the next pulse: one pulse over its interval,
                # below every bound published before it.
                assert r.power_w == pytest.approx(
                    power_from_interval(ppk, r.interval_s), rel=1e-12
                )
                assert all(r.power_w <= e.power_w * (1 + 1e-9) for e in since_pulse)
            last_exact, since_pulse = r, []
            continue
        assert last_exact is not None and last_exact.power_w is not None
        # Published only after a silence longer than the last interval.
        assert r.interval_s > last_exact.interval_s
        # Never below the true mean power since the last pulse ...
        start = last_exact.time - WALL0
        true_mean = energy(start, t) / (t - start)
        assert r.power_w >= true_mean * (1 - 1e-9)
        # ... and falling: each one a fraction `fall` below the one before.
        before = since_pulse[-1].power_w if since_pulse else last_exact.power_w
        assert r.power_w == pytest.approx(before * (1 - fall), rel=1e-6)
        assert r.pulses == last_exact.pulses
        assert r.energy_kwh == last_exact.energy_kwh
        since_pulse.append(r)


@FAST
@given(loads())
def test_estimates_do_not_depend_on_how_often_ticks_come(load):
    steps, ppk, fall, phase, tick_s = load
    pulses, _, end = true_pulses(steps, ppk, phase)
    assume(len(pulses) >= 2)
    cfg = MeterConfig(
        pulses_per_kwh=ppk, debounce_ms=0.0, max_power_w=1e9, estimate_fall=fall
    )
    ticked = run_meter(Meter(cfg), pulses, end, tick_s)
    edges_only = run_meter(Meter(cfg), pulses, end, end + 1)
    # Without ticks, estimates after the last pulse never come.
    last = max(i for i, r in enumerate(ticked) if not r.estimate)
    assert edges_only == ticked[: last + 1]


def test_example_estimates_fall_by_a_fifth():
    m = Meter(MeterConfig(pulses_per_kwh=1000))
    m.edge(0, 100.0)
    m.edge(60 * NS, 160.0)  # 60 W
    # Due when the silence is 60 s / 0.8 = 75 s long, stamped then.
    assert m.tick(134 * NS) == []
    (r,) = m.tick(136 * NS)
    assert r == Reading(235.0, "main", 2, 0.002, 48.0, 75.0, True)
    out = m.tick(200 * NS)
    assert [round(e.power_w, 3) for e in out] == [38.4, 30.72]
    assert [e.interval_s for e in out] == pytest.approx([93.75, 117.1875])
    out = m.edge(300 * NS, 400.0)  # the rest due, then the truth
    assert [round(e.power_w, 3) for e in out[:-1]] == [24.576, 19.661, 15.729]
    assert out[-1] == Reading(400.0, "main", 3, 0.003, 15.0, 240.0, False)
    assert m.tick(330 * NS) == []


def test_example_idle_timeout_ends_the_estimates_with_0_w():
    m = Meter(MeterConfig(idle_timeout_s=100))
    m.edge(0, 100.0)
    m.edge(60 * NS, 160.0)
    out = m.tick(400 * NS)
    assert [r.power_w for r in out] == pytest.approx([48.0, 38.4, 0.0])
    assert all(r.estimate for r in out)
    assert out[-1].time == 260.0


def test_estimates_off():
    m = Meter(MeterConfig(estimate_fall=0.0))
    m.edge(0, 100.0)
    m.edge(60 * NS, 160.0)
    assert m.tick(100_000 * NS) == []


# ---------------------------------------------------------------------------
# Flash widths: both edges of each flash, ghosts and bounces.
# ---------------------------------------------------------------------------

MS = 1_000_000
WIDTHS = MeterConfig(
    debounce_ms=50.0, min_pulse_ms=5.0, max_pulse_ms=250.0, estimate_fall=0.0
)
GOOD_WIDTH = st.integers(5 * MS, 250 * MS)
NARROW_WIDTH = st.integers(1, 5 * MS - 1)
WIDE_WIDTH = st.integers(250 * MS + 1, 3 * NS)
FLASH = st.tuples(
    # The dark gap before it: at least debounce_ms, so that only the drawn
    # bounces join pieces into one flash.
    st.integers(50 * MS, 4 * NS),
    st.one_of(GOOD_WIDTH, GOOD_WIDTH, NARROW_WIDTH, WIDE_WIDTH),
    st.one_of(st.none(), st.tuples(st.floats(0.01, 0.99), st.integers(1, 5 * MS - 1))),
)


def train(flashes) -> tuple:
    """Edges (t_ns, kind) of flashes, each (dark gap, width, bounce or None);
    and each flash as (start, width, bounced)."""
    from core.meter import END, START

    edges, out, t = [], [], MONO0
    for gap, width, bounce in flashes:
        start = t + gap
        bounced = False
        if bounce is not None and 5 * MS <= width <= 250 * MS:
            at = start + max(1, int(width * bounce[0]))
            if at + bounce[1] < start + width:  # the flash lights again inside
                edges += [(start, START), (at, END), (at + bounce[1], START)]
                bounced = True
        if not bounced:
            edges.append((start, START))
        edges.append((start + width, END))
        out.append((start, width, bounced))
        t = start + width
    return edges, out


def expected_widths(cfg: MeterConfig, flashes) -> dict:
    """The specification: a flash outside [min, max] is a ghost; a dark gap
    shorter than min_pulse_ms inside a flash is a glitch; an accepted flash
    is a pulse at its start unless the interval debounce or the guard
    rejects it. (Flashes here start at least debounce_ms after the last
    one ended: the debounce never fires, the guard does.)"""
    debounce = cfg.debounce_ms * MS
    shortest = (
        Fraction(NS)
        * 3600
        * 1000
        / (Fraction(cfg.pulses_per_kwh) * Fraction(cfg.max_power_w))
    )
    count = {"pulses": [], "ghosts": 0, "glitches": 0, "implausible": 0}
    last = None
    for start, width, bounced in flashes:
        count["glitches"] += bounced
        if width < cfg.min_pulse_ms * MS or width > cfg.max_pulse_ms * MS:
            count["ghosts"] += 1
            continue
        if last is not None and start - last < debounce:
            count["glitches"] += 1
            continue
        if last is not None:
            assume(abs(start - last - shortest) > MARGIN_NS)
            if start - last < shortest:
                count["implausible"] += 1
                continue
        count["pulses"].append(start)
        last = start
    return count


def feed(meter: Meter, edges) -> List[Reading]:
    from core.meter import START

    readings: List[Reading] = []
    for t, kind in edges:
        readings += meter.edge(t, wall_of(t), kind)
    if edges:  # a flash long after: the last narrow one is judged at its start
        readings += meter.edge(edges[-1][0] + 10 * NS, wall_of(edges[-1][0]), START)
    return readings


@settings(max_examples=300, deadline=None)
@given(st.lists(FLASH, min_size=1, max_size=40))
def test_every_ghost_is_counted_and_no_ghost_is_a_pulse(flashes):
    edges, drawn = train(flashes)
    want = expected_widths(WIDTHS, drawn)
    meter = Meter(WIDTHS)
    readings = [r for r in feed(meter, edges) if not r.estimate]
    assert [r.time for r in readings] == [wall_of(t) for t in want["pulses"]]
    assert meter.pulses == len(want["pulses"])
    assert meter.ghosts == want["ghosts"]
    assert meter.glitches == want["glitches"]
    assert meter.implausible == want["implausible"]
    # Power is the interval between accepted flashes' starts, as without widths.
    starts = want["pulses"]
    for r, a, b in zip(readings[1:], starts, starts[1:]):
        assert r.interval_s == (b - a) / NS


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(50 * MS, 4 * NS), GOOD_WIDTH), min_size=1))
def test_widths_off_or_unseen_count_as_pulses_at_the_flash_starts(flashes):
    # Limits at 0 and both edges give exactly the readings of PULSE edges at
    # the starts: a backend that sees one edge loses nothing but the check.
    from core.meter import PULSE

    edges, drawn = train([(g, w, None) for g, w in flashes])
    off = replace(WIDTHS, min_pulse_ms=0.0, max_pulse_ms=0.0)
    both = feed(Meter(off), edges)
    single = feed(Meter(WIDTHS), [(s, PULSE) for s, _, _ in drawn])
    assert both == single


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(50 * MS, 4 * NS), GOOD_WIDTH), min_size=1),
    st.integers(0, 2**32),
)
def test_pulse_edges_never_become_ghosts(flashes, seed):
    # A replay of pulse times has no widths: no limit can reject them.
    import random

    from core.meter import PULSE

    rng = random.Random(seed)
    tight = replace(WIDTHS, min_pulse_ms=rng.uniform(0, 100), max_pulse_ms=101.0)
    edges, drawn = train([(g, w, None) for g, w in flashes])
    pulses = [(s, PULSE) for s, _, _ in drawn]
    a, b = Meter(tight), Meter(replace(WIDTHS, min_pulse_ms=0, max_pulse_ms=0))
    assert feed(a, pulses) == feed(b, pulses)
    assert a.ghosts == 0


def test_ghosts_among_real_flashes_in_numbers():
    # 50 ms flashes every 3.6 s (1 kW), a 2 ms and a 300 ms ghost between
    # each pair, and a contact bounce in every fifth flash.
    from core.meter import END, START

    meter = Meter(WIDTHS)
    edges, t = [], MONO0
    for i in range(20):
        start = t + i * 36 * NS // 10
        edges += [(start, START)]
        if i % 5 == 0:
            edges += [(start + 1 * MS, END), (start + MS + 300_000, START)]
        edges += [(start + 50 * MS, END)]
        edges += [(start + 1 * NS, START), (start + NS + 2 * MS, END)]
        edges += [(start + 2 * NS, START), (start + 2 * NS + 300 * MS, END)]
    readings = [r for r in feed(meter, edges) if not r.estimate]
    assert meter.pulses == 20 and meter.ghosts == 40 and meter.glitches == 4
    assert meter.last_width_ns == 300 * MS
    assert all(r.power_w == pytest.approx(1000.0) for r in readings[1:])


def test_spikes_apart_are_ghosts_not_one_flash():
    # Only a dark gap shorter than min_pulse_ms is a bounce: an LED does not
    # go dark for 8 ms inside a flash. Two 2 ms spikes 40 ms apart are two
    # ghosts (not one 42 ms flash), and a 100 Hz lamp's flicker is no pulse.
    from core.meter import END, START

    meter = Meter(WIDTHS)
    t = MONO0
    edges = [(t, START), (t + 3 * MS, END), (t + 11 * MS, START), (t + 50 * MS, END)]
    t2 = t + 2 * NS
    edges += [(t2, START), (t2 + 2 * MS, END), (t2 + 40 * MS, START)]
    edges += [(t2 + 42 * MS, END)]
    t3 = t + 4 * NS
    edges += [(t3, START), (t3 + 50 * MS, END)]
    readings = feed(meter, edges)
    assert [r.time for r in readings if not r.estimate] == [
        wall_of(t + 11 * MS),
        wall_of(t3),
    ]
    assert (meter.pulses, meter.glitches, meter.ghosts) == (2, 0, 3)
    lamp = Meter(replace(WIDTHS, debounce_ms=0.0))
    flicker = [
        (t + i * 10 * MS + d, k)
        for i in range(300)
        for d, k in ((0, START), (2 * MS, END))
    ]
    feed(lamp, flicker)
    assert lamp.pulses == 0 and lamp.ghosts >= 299


def test_a_bounce_with_an_edge_lost_is_still_one_flash():
    # The kernel may merge a bounce's two changes when it sees them late:
    # an end or a start goes missing. The flash still counts, once, at its
    # first start.
    from core.meter import END, START

    meter = Meter(WIDTHS)
    t, t2 = MONO0, MONO0 + 2 * NS
    edges = [(t, START), (t + 3 * MS, END), (t + 12 * MS, END)]  # start lost
    edges += [(t2, START), (t2 + 5 * MS, START), (t2 + 12 * MS, END)]  # end lost
    readings = feed(meter, edges)
    assert [r.time for r in readings if not r.estimate] == [wall_of(t), wall_of(t2)]
    assert (meter.pulses, meter.glitches, meter.ghosts) == (2, 2, 0)


@settings(max_examples=300, deadline=None)
@given(st.lists(FLASH, min_size=1, max_size=40), st.data())
def test_a_kind_read_too_late_is_turned_back(flashes, data):
    # The kernel names an edge by the level its interrupt thread reads; when
    # the line has changed again by then, the edge comes out with the next
    # one's kind. Any such edges, none next to another and each followed
    # soon by the change that misled it, give exactly the readings and
    # counts of the true kinds.
    from core.edgekinds import HOLD_NS
    from core.meter import END, START

    edges, _ = train(flashes)
    misread, previous = set(), False
    for i in range(1, len(edges) - 1):
        soon = edges[i + 1][0] - edges[i][0] < HOLD_NS
        previous = not previous and soon and data.draw(st.booleans())
        if previous:
            misread.add(i)
    seen = [
        (t, START + END - kind if i in misread else kind)
        for i, (t, kind) in enumerate(edges)
    ]
    truth, meter = Meter(WIDTHS), Meter(WIDTHS)
    assert feed(meter, seen) == feed(truth, edges)
    counts = ("pulses", "ghosts", "glitches", "implausible", "last_width_ns")
    assert [getattr(meter, c) for c in counts] == [getattr(truth, c) for c in counts]
    assert meter.turned == len(misread)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(NS, 4 * NS), GOOD_WIDTH), min_size=2))
def test_no_estimate_is_stamped_inside_a_flash_still_open(flashes):
    # A pulse is known at its flash's end but stamped at its start: the
    # falling bound waits, so readings never go back in time.
    edges, _ = train([(g, w, None) for g, w in flashes])
    meter = Meter(replace(WIDTHS, estimate_fall=0.2))
    readings = []
    for t, kind in edges:
        readings += meter.edge(t, wall_of(t), kind)
        readings += meter.tick(t + 1)  # a tick between any two edges
    times = [r.time for r in readings]
    # (within a float's resolution of a wall time: 2**-22 s)
    assert all(b >= a - 2**-22 for a, b in zip(times, times[1:])), times
    assert sum(not r.estimate for r in readings) == len(flashes)


def test_an_end_alone_is_a_flash_too_narrow_to_see_whole():
    # Both edges of a flash came before the kernel read the first: one END
    # after an END. Far from the last flash it is a ghost; right after it,
    # the bounce of its end; an END first of all is a line lit at start.
    from core.meter import END, START

    meter = Meter(WIDTHS)
    t = MONO0
    edges = [(t - 3 * NS, END)]  # lit when watching began
    edges += [(t, START), (t + 50 * MS, END), (t + 60 * MS, END)]  # end bounce
    edges += [(t + 2 * NS, END)]  # a ghost narrower than the kernel's delay
    edges += [(t + 4 * NS, START), (t + 4 * NS + 50 * MS, END)]
    readings = [r for r in feed(meter, edges) if not r.estimate]
    assert [r.time for r in readings] == [wall_of(t), wall_of(t + 4 * NS)]
    assert (meter.pulses, meter.glitches, meter.ghosts) == (2, 1, 1)


def test_a_start_while_lit_is_a_merged_end_bounce_or_a_lost_end():
    # The kernel merged a bounce at a flash's end into one START: within
    # max_pulse_ms of the flash's start the flash ends there and the rest is
    # its tail (one pulse, not two). Later than that the flash's END was
    # lost: it is judged by the width it can at most have had (400 ms: a
    # ghost) and a new flash starts.
    from core.meter import END, START

    meter = Meter(WIDTHS)
    t = MONO0
    edges = [(t, START), (t + 400 * MS, START), (t + 450 * MS, END)]
    t2 = t + 2 * NS
    edges += [(t2, START), (t2 + 80 * MS, START), (t2 + 80 * MS + 10_000, END)]
    t3 = t + 4 * NS
    edges += [(t3, START), (t3 + 50 * MS, END)]
    readings = [r for r in feed(meter, edges) if not r.estimate]
    assert [r.time for r in readings] == [
        wall_of(t + 400 * MS),
        wall_of(t2),
        wall_of(t3),
    ]
    assert (meter.pulses, meter.ghosts, meter.glitches) == (3, 1, 2)
    assert meter.last_width_ns == 50 * MS


def test_estimates_go_on_while_the_led_stays_lit():
    # A flash lit longer than max_pulse_ms can no longer be a pulse: the
    # falling bound and the idle reading do not wait for its end.
    from core.meter import END, START

    meter = Meter(replace(WIDTHS, idle_timeout_s=60.0))
    t = MONO0
    edges = [(t, START), (t + 50 * MS, END), (t + NS, START), (t + NS + 50 * MS, END)]
    edges += [(t + 2 * NS, START)]  # and lit from here on
    feed_readings = []
    for when, kind in edges:
        feed_readings += meter.edge(when, wall_of(when), kind)
    late = meter.tick(t + 600 * NS)
    assert [r.power_w for r in late] == [0.0]  # the idle reading came
