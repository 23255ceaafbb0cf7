"""A simulated meter, for trying power without a Pi and for demos.

The load wanders around the chosen mean the way a house does: a slow
mean-reverting walk in log space (an Ornstein-Uhlenbeck process whose
exponential has mean 1), so the long-run average is the mean asked for while
minute to minute the power rises and falls. Pulses come at the interval that
load implies, on a virtual clock running `speed` times real time.

Each pulse is a flash `width_ms` wide, reported as both its edges like a
GPIO line (0: pulse times only). `ghosts_per_hour` adds stray flashes
between pulses, alternately too narrow and too wide for the meter's width
limits, so the ghost filter and `power.py watch` can be tried without a
meter.
"""

from __future__ import annotations

import math
import random
from typing import Optional, Tuple

from core.meter import END, NS_PER_S, PULSE, START
from core.options import Option
from inputs.base import Backlog, EdgeCallback, InputBackend, PacedThread

SIGMA = 0.35  # spread of the log-load
TAU_S = 120.0  # how fast the load returns to its mean


class LoadModel:
    """Power in W over virtual time; deterministic for a given seed."""

    def __init__(self, mean_w: float, rng: random.Random) -> None:
        self.mean_w = mean_w
        self.rng = rng
        self.x = rng.gauss(-SIGMA * SIGMA / 2, SIGMA)

    def step(self, dt: float) -> float:
        """Advance by dt seconds; return the power for the next interval."""
        decay = math.exp(-dt / TAU_S)
        mean = -SIGMA * SIGMA / 2
        self.x = (
            mean
            + (self.x - mean) * decay
            + SIGMA * math.sqrt(1 - decay * decay) * self.rng.gauss(0, 1)
        )
        return self.mean_w * math.exp(self.x)


class SimulatedInput(InputBackend):
    exclusive = False  # nothing to share: watch may run beside a daemon
    OPTIONS = {
        "backend": Option("str"),
        "watts": Option("number", 1000.0, minimum=1.0, maximum=1_000_000.0),
        "speed": Option("number", 1.0, minimum=0.0, maximum=1_000_000.0),
        "seed": Option("int", None, nullable=True),
        "width_ms": Option("number", 50.0, minimum=0.0, maximum=10000.0),
        "ghosts_per_hour": Option("number", 0.0, minimum=0.0, maximum=1e6),
    }
    NARROW_GHOST_S = 0.001
    WIDE_GHOST_S = 1.0

    def __init__(self, options, meter, log) -> None:
        super().__init__(options, meter, log)
        self.speed = float(options["speed"])
        self._worker = PacedThread(f"simulated-{meter.name}", self.speed)
        self._start_ns = 0
        self._start_wall = 0.0
        self._virtual = 0.0
        self._due = 0.0
        self._rng = random.Random(options["seed"])

    def describe(self) -> str:
        return f"simulated {self.options['watts']:g} W at speed {self.speed:g}"

    def start(self, on_edge: EdgeCallback, backlog: Backlog) -> None:
        self._start_ns, self._start_wall = super().clock()
        load = LoadModel(float(self.options["watts"]), self._rng)
        joules_per_pulse = 3_600_000.0 / self.meter.pulses_per_kwh

        width = float(self.options["width_ms"]) / 1000.0
        ghost_rate = float(self.options["ghosts_per_hour"]) / 3600.0
        rng = self._rng

        def emit(at: float, kind: int) -> bool:
            self._due = at  # the clock must not pass it yet
            if not self._worker.wait_until(at, backlog):
                return False
            on_edge(self._start_ns + int(at * NS_PER_S), self._start_wall + at, kind)
            self._virtual = at  # only once it is queued
            return True

        def flash(at: float, wide: float) -> bool:
            return emit(at, START) and emit(at + wide, END)

        def run() -> None:
            virtual = 0.0
            power = load.mean_w
            wide_ghost = False
            while True:
                interval = joules_per_pulse / power
                start = virtual
                virtual += interval
                if rng.random() < ghost_rate * interval:
                    room = interval - width
                    wide_ghost = not wide_ghost
                    ghost = self.WIDE_GHOST_S if wide_ghost else self.NARROW_GHOST_S
                    if width > 0 and room > ghost + 4 * width:
                        if not flash(start + width + (room - ghost) / 2, ghost):
                            return
                if width <= 0:
                    if not emit(virtual, PULSE):
                        return
                elif not flash(virtual, min(width, interval / 2)):
                    return
                power = load.step(interval)

        self._worker.begin(run)

    def clock(self) -> Tuple[int, float]:
        """Virtual time, never past a pulse not yet queued."""
        last = self._virtual
        if self.speed == 0:
            virtual = last
        else:
            virtual = max(last, min(self._worker.elapsed_virtual(), self._due))
        return self._start_ns + int(virtual * NS_PER_S), self._start_wall + virtual

    def failure(self) -> Optional[str]:
        return self._worker.error

    def stop(self) -> None:
        self._worker.end()
