"""A simulated meter, for trying power without a Pi and for demos.

The load wanders around the chosen mean the way a house does: a slow
mean-reverting walk in log space (an Ornstein-Uhlenbeck process whose
exponential has mean 1), so the long-run average is the mean asked for while
minute to minute the power rises and falls. Pulses come at the interval that
load implies, on a virtual clock running `speed` times real time.
"""

from __future__ import annotations

import math
import random
from typing import Optional, Tuple

from inputs.base import Backlog, EdgeCallback, InputBackend, PacedThread
from meter import NS_PER_S
from options import Option

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
    OPTIONS = {
        "backend": Option("str"),
        "watts": Option("number", 1000.0, minimum=1.0, maximum=1_000_000.0),
        "speed": Option("number", 1.0, minimum=0.0, maximum=1_000_000.0),
        "seed": Option("int", None, nullable=True),
    }

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

        def run() -> None:
            virtual = 0.0
            power = load.mean_w
            while True:
                interval = joules_per_pulse / power
                virtual += interval
                self._due = virtual  # the clock must not pass it yet
                if not self._worker.wait_until(virtual, backlog):
                    return
                on_edge(
                    self._start_ns + int(virtual * NS_PER_S),
                    self._start_wall + virtual,
                )
                self._virtual = virtual  # only once it is queued
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
