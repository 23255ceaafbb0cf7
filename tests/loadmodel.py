"""A known varying load and the pulses a meter would give for it, so tests
can hold time-weighted figures against the truth.

The load is constant within each whole second, so its energy (and the mean
power over any span of whole seconds) is known exactly, and each pulse falls
where the cumulative energy crosses a whole number of pulses.
"""

from __future__ import annotations

import math
from typing import List


def varying_load(seconds: int, low: float = 2000.0) -> List[float]:
    """Watts per second: a slow swell, a kettle every 47 minutes and an oven
    for 10 minutes every 3 hours, never below `low`. Steps inside buckets are
    what make a plain average of readings wrong."""
    watts = []
    for s in range(seconds):
        w = low + 1500.0 * math.sin(2 * math.pi * s / 5400.0) ** 2
        if s % 2820 < 180:
            w += 2500.0  # kettle
        if s % 10800 < 600:
            w += 4000.0  # oven
        watts.append(w)
    return watts


def pulse_times(
    watts: List[float], start: float, pulses_per_kwh: float, phase: float = 0.37
) -> List[float]:
    """Epoch times of the pulses; `phase` is the part of a pulse's energy
    already used at `start`."""
    per_pulse_ws = 3600.0 * 1000.0 / pulses_per_kwh  # watt-seconds
    used = phase * per_pulse_ws
    times = []
    for s, w in enumerate(watts):
        t = 0.0
        while used + w * (1.0 - t) >= per_pulse_ws:
            t += (per_pulse_ws - used) / w
            used = 0.0
            times.append(start + s + t)
        used += w * (1.0 - t)
    return times


def bucket_means(watts: List[float], bucket_s: int) -> List[float]:
    """The true time-weighted mean power of each whole bucket."""
    n = len(watts) // bucket_s
    return [sum(watts[i * bucket_s : (i + 1) * bucket_s]) / bucket_s for i in range(n)]
