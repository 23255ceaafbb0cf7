"""Bench inputs and checks: a week of realistic pulses, settings files, and
the verification of the CSV each run writes.

The load is the simulated input's own wander (src/inputs/simulated.py
LoadModel, mean 1) times a daily shape (low at night, a morning bump, an
evening peak), scaled to a mean of 1.2 kW and clamped so that no interval is
shorter than the meter's plausibility limit nor longer than its idle timeout:
every edge is a pulse and no 0 W reading is due.
"""

from __future__ import annotations

import math
import os
import random
import sys
from typing import List, Optional, Tuple

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)

from core.csvformat import HEADER  # noqa: E402
from inputs.simulated import LoadModel  # noqa: E402

METER_NAME = "bench"
PULSES_PER_KWH = 1000
IDLE_TIMEOUT_S = 300.0
START_EPOCH = 1714953600.0  # Monday 2024-05-06 00:00:00 UTC
MEAN_W = 1200.0
MIN_W = 60.0  # 60 s between pulses, well inside the idle timeout
MAX_W = 15000.0  # 0.24 s, above debounce (50 ms) and max_power_w (30 kW)
SEED = 3  # simulated daemon runs: 3600 W gives 31 pulses in its first 32 s


def daily_shape(hour: float) -> float:
    """Relative load over a day (not normalised): night, morning, evening."""
    morning = 0.5 * math.exp(-(((hour - 7.5) / 1.5) ** 2))
    evening = 0.9 * math.exp(-(((hour - 19.5) / 2.2) ** 2))
    return 0.6 + morning + evening


def _shape_mean() -> float:
    steps = 24 * 60
    return sum(daily_shape(24.0 * i / steps) for i in range(steps)) / steps


def generate_pulses(path: str, days: float = 7.0, seed: int = 2024) -> int:
    """Write one epoch-seconds pulse time per line; return the count."""
    rng = random.Random(seed)
    wander = LoadModel(1.0, rng)
    scale = MEAN_W / _shape_mean()
    joules = 3_600_000.0 / PULSES_PER_KWH
    end = days * 86400.0
    elapsed = 0.0
    power = MEAN_W
    count = 0
    with open(path, "w") as f:
        while True:
            elapsed += joules / power
            if elapsed >= end:
                break
            f.write(f"{START_EPOCH + elapsed:.3f}\n")
            count += 1
            hour = (elapsed / 3600.0) % 24.0
            load = scale * daily_shape(hour) * wander.step(joules / power)
            power = min(MAX_W, max(MIN_W, load))
    return count


def write_settings(
    path: str,
    data_dir: str,
    csv_path: str,
    replay: Optional[str] = None,
    watts: float = 1000.0,
    leds: bool = True,
) -> None:
    """A settings.py for one bench run: file sink only, everything in tmp.
    The input replays `replay` at speed 0, else simulates `watts` in real
    time with a fixed seed (so a run's pulse count is repeatable)."""
    inp = (
        {"backend": "replay", "path": replay, "speed": 0}
        if replay
        else {"backend": "simulated", "watts": watts, "speed": 1, "seed": SEED}
    )
    led = {"detect": 18, "ready": 23, "blink_ms": 100} if leds else None
    meter = {
        "name": METER_NAME,
        "pulses_per_kwh": PULSES_PER_KWH,
        "idle_timeout_s": IDLE_TIMEOUT_S,
        # Pulses only, as the baseline writes them: no estimates between.
        "estimate_fall": 0,
    }
    with open(path, "w") as f:
        f.write(f"METER = {meter!r}\n")
        f.write(f"INPUT = {inp!r}\n")
        f.write(f"LEDS = {led!r}\n")
        f.write(f"DATA_DIR = {data_dir!r}\n")
        f.write(f"SINKS = [{{'type': 'file', 'path': {csv_path!r}}}]\n")


def csv_rows(path: str) -> List[str]:
    """Data lines of a CSV (header dropped); [] if the file does not exist."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    return lines[1:] if lines and lines[0] == HEADER else lines


def check_csv(
    path: str, edges: Optional[int] = None, reference: Optional[List[str]] = None
) -> List[Tuple[bool, str]]:
    """Check a file sink CSV; return (ok, statement) facts.

    Pulse rows must be numbered 1..edges (default: as many as there are),
    once each and in order; no idle-timeout row may appear (the workload
    leaves no gap that long); with `reference` (the baseline's rows, computed
    independently) the pulse rows must match it byte for byte.
    """
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as exc:
        return [(False, f"cannot read {path}: {exc}")]
    if not lines or lines[0] != HEADER:
        return [(False, f"header is {lines[:1]!r}, expected {HEADER!r}")]
    pulse_lines: List[str] = []
    previous = 0
    idle = 0
    first_idle = ""
    out_of_order = ""
    for number, line in enumerate(lines[1:], 2):
        fields = line.split(",")
        try:
            pulses = int(fields[2])
        except (IndexError, ValueError):
            return [(False, f"line {number} is not a reading: {line!r}")]
        if pulses == previous:
            idle += 1
            first_idle = first_idle or f"line {number}: {line}"
            continue
        if pulses != previous + 1 and not out_of_order:
            out_of_order = f"; line {number} has pulse {pulses} after {previous}"
        previous = pulses
        pulse_lines.append(line)
    n = len(pulse_lines)
    want = n if edges is None else edges
    ok = n == want and previous == want and not out_of_order
    facts = [(ok, f"{n:,} pulse rows, pulses 1..{want:,} once each{out_of_order}")]
    facts.append(
        (
            idle == 0,
            "no idle-timeout row"
            if idle == 0
            else f"{idle} idle-timeout (0 W) rows though no gap reaches "
            f"{IDLE_TIMEOUT_S:g} s; first at {first_idle}",
        )
    )
    if reference is not None:
        if pulse_lines == reference:
            facts.append((True, "pulse rows identical to the baseline's"))
        else:
            diff = next(
                (i for i, (a, b) in enumerate(zip(pulse_lines, reference)) if a != b),
                min(n, len(reference)),
            )
            got = pulse_lines[diff] if diff < n else "<end>"
            exp = reference[diff] if diff < len(reference) else "<end>"
            facts.append(
                (False, f"pulse row {diff + 1} is {got!r}, the baseline's {exp!r}")
            )
    return facts
