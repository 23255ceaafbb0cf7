"""The meter's arithmetic: edges in, readings out.

Pure by design: no clock reads and no I/O, so the same code serves a live
GPIO line, a simulated meter and a replay at any speed, and property tests
can drive it directly. Power comes from the interval between accepted pulses
(as ESPHome's pulse_meter does) rather than from pulses per period, which is
exact at low loads and needs no window.

Between pulses the last interval's power would stand until the next pulse.
Once no pulse has come for longer than that interval, less than one pulse's
energy has been used since the last pulse, so the mean power since then is
below one pulse's energy over the time elapsed: that falling upper bound is
published, marked as an estimate, each time it has fallen by `estimate_fall`
(by default a fifth), stamped at the moment it reached that value. The next
pulse gives the exact mean again.

Flash widths: a backend that sees both edges of a flash reports the
configured edge as START and the other as END. The pulse is then decided at
the END: a flash narrower than `min_pulse_ms` or wider than `max_pulse_ms`
is a ghost (ambient light, a reflection, a stuck LED), counted apart and
never a pulse; a dark gap shorter than `min_pulse_ms` inside a flash, or
a restart within `debounce_ms` of its start, is a bounce (a glitch), and
the flash goes on (also when the kernel lost one edge of the bounce). A
narrow flash is judged a ghost at the next flash's start, since a restart
may yet follow it. An accepted flash counts as a
pulse at its START, after the interval debounce and plausibility guard, so
power and energy are as without widths. A PULSE edge (a replay of pulse
times, an input that sees one edge) is a pulse with no width to check.
Edge kinds the kernel read too late are turned back first (edgekinds), and
no estimate is stamped after the start of a flash not yet judged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, NamedTuple, Optional, Tuple

from core.edgekinds import (
    END,
    EXPORT_PULSE,
    EXPORTING,
    IMPORTING,
    PULSE,
    START,
    EdgeKinds,
)
from core.timebounds import LATEST

NS_PER_S = 1_000_000_000

# What an edge is (the third value an input hands on): PULSE, START, END.
__all__ = [
    "END",
    "EXPORTING",
    "EXPORT_PULSE",
    "IMPORTING",
    "NS_PER_S",
    "PULSE",
    "START",
    "Meter",
    "MeterConfig",
    "Reading",
]


class Reading(NamedTuple):
    """One row of the journal and of every sink.

    A named tuple: cheap to build on the hot path, and in the journal's
    column order, so it goes into SQLite as it is.
    """

    time: float  # epoch seconds, UTC
    meter: str
    pulses: int  # cumulative accepted pulses
    energy_kwh: float  # cumulative, offset included
    power_w: Optional[float]  # mean power over interval_s; None when unknown
    interval_s: Optional[float]
    # Not a pulse: power_w is the falling upper bound since the last pulse
    # (interval_s is the time since it), or 0 W after idle_timeout_s.
    estimate: bool = False
    # Cumulative export (kWh), for a meter that sees it; None where it has none.
    export_kwh: Optional[float] = None


# What a meter counts. For gas and water the reading's energy_kwh and
# power_w carry the volume (m3) and the flow (m3/h): every sink names them
# by the meter's kind (UNITS), and pulses_per_kwh is then pulses per m3.
ELECTRICITY = "electricity"
KINDS = (ELECTRICITY, "gas", "water")


@dataclass(frozen=True)
class MeterConfig:
    name: str = "main"
    pulses_per_kwh: float = 1000.0
    debounce_ms: float = 50.0
    max_power_w: float = 30000.0
    idle_timeout_s: float = 0.0  # 0: no 0 W reading (the bound falls instead)
    energy_offset_kwh: float = 0.0
    estimate_fall: float = 0.2  # 0: no estimates between pulses
    min_pulse_ms: float = 5.0  # narrower flashes are ghosts (0: no limit)
    max_pulse_ms: float = 250.0  # wider flashes are ghosts (0: no limit)
    kind: str = ELECTRICITY  # gas, water: per m3, max_power_w is m3/h

    @property
    def rate_scale(self) -> float:
        """W per kW; a flow in m3/h is per hour of the volume itself."""
        return 1000.0 if self.kind == ELECTRICITY else 1.0


def power_from_interval(
    pulses_per_kwh: float, interval_s: float, scale: float = 1000.0
) -> float:
    """Mean power in W when one pulse (1/ppk kWh) took `interval_s` seconds
    (with `scale` 1 and pulses per m3: the flow in m3/h)."""
    return 3600.0 * scale / (pulses_per_kwh * interval_s)


class Meter:
    """Counts pulses of one meter and derives power and energy.

    `pulses` starts from the journal's count so energy is continuous across
    restarts. The first pulse after start has no known interval, so its power
    is unknown (None) rather than a guess.
    """

    def __init__(
        self,
        config: MeterConfig,
        pulses: int = 0,
        export_pulses: Optional[int] = None,
    ) -> None:
        self.config = config
        self.pulses = pulses
        # Pulses counted while exporting (a direction input said so, or an
        # export LED flashed); None until the meter has seen any export.
        self.export_pulses = export_pulses
        self._exporting = False  # the direction input's level
        self._export_last_ns: Optional[int] = None  # the export LED's last pulse
        self.glitches = 0  # edges inside the debounce window
        self.implausible = 0  # edges implying more than max_power_w
        self.ghosts = 0  # flashes narrower or wider than the width limits
        self.last_width_ns: Optional[int] = None  # of the last whole flash
        # Given a list, the width of every flash judged (a bounced flash
        # whole, from its first start), for `power.py watch`.
        self.flash_widths: Optional[List[int]] = None
        self._min_width_ns = int(config.min_pulse_ms * 1_000_000)
        self._max_width_ns = int(config.max_pulse_ms * 1_000_000)
        # The flash in progress (START seen), and a too-narrow flash that
        # may yet be a bounce inside a longer one (start, start wall, end).
        self._flash: Optional[Tuple[int, float]] = None
        self._narrow: Optional[Tuple[int, float, int]] = None
        self._ended_ns: Optional[int] = None  # END of the last accepted flash
        self._kinds = EdgeKinds()  # each edge's kind, from the order of edges
        self._tail = False  # an END due from a bounce after an accepted flash
        self._debounce_ns = int(config.debounce_ms * 1_000_000)
        # The shortest interval a real pulse can have at max_power_w.
        # (At least 1 ns: two edges at one instant are never two pulses.)
        self._min_interval_ns = max(
            1,
            int(
                NS_PER_S
                * 3600.0
                * config.rate_scale
                / (config.pulses_per_kwh * config.max_power_w)
            ),
        )
        self._idle_ns = int(config.idle_timeout_s * NS_PER_S)
        self._last_ns: Optional[int] = None
        self._last_wall = 0.0
        self._idle_reported = True  # nothing to time out before the first pulse
        self.offset_kwh = config.energy_offset_kwh  # may be re-based while running
        # The falling bound: the last pulse's interval (None: unknown), the
        # factor each estimate divides it by, and the time of the next one.
        self._keep = 1.0 - config.estimate_fall
        self._interval_ns: Optional[int] = None
        self._estimates = 0  # published since the last pulse
        self._next_estimate_ns: Optional[int] = None
        # A replay skips pulses at or before this wall time: they are in
        # the journal already.
        self.counted_until: Optional[float] = None
        self.already_counted = 0

    @property
    def energy_kwh(self) -> float:
        return self.offset_kwh + self.pulses / self.config.pulses_per_kwh

    @property
    def export_kwh(self) -> Optional[float]:
        n = self.export_pulses
        return None if n is None else n / self.config.pulses_per_kwh

    def edge(self, t_mono_ns: int, t_wall: float, kind: int = PULSE) -> List[Reading]:
        """Feed one edge; return the readings it produces (possibly none).

        Pending estimates and a pending idle-timeout reading come first, so
        a replay at any speed yields the same rows as a live run.
        """
        if kind >= EXPORT_PULSE:
            return self._export_edge(t_mono_ns, t_wall, kind)
        readings: List[Reading] = []
        for t_ns, wall, decided in self._kinds.feed(t_mono_ns, t_wall, kind):
            readings.extend(self._decided(t_ns, wall, decided))
        readings.extend(self._due(t_mono_ns))
        return readings

    def _export_edge(self, t_ns: int, t_wall: float, kind: int) -> List[Reading]:
        """The direction input changed, or the export LED flashed.

        With a direction input (high while exporting, as vzlogger's S0
        gpio_dir), the LED's pulses count as export while it is high. A
        second sensor on an export LED gives pulses of export of its own,
        debounced and guarded as the import LED's are."""
        readings = self._due(t_ns)
        if self.export_pulses is None:
            self.export_pulses = 0
        if kind != EXPORT_PULSE:
            self._exporting = kind == EXPORTING
            return readings
        last = self._export_last_ns
        if last is not None:
            gap = t_ns - last
            if gap < self._debounce_ns:
                self.glitches += 1
                return readings
            if gap < self._min_interval_ns:
                self.implausible += 1
                return readings
        self._export_last_ns = t_ns
        self.export_pulses += 1
        power = interval = None
        if last is not None:
            interval = (t_ns - last) / NS_PER_S
            c = self.config
            power = -power_from_interval(c.pulses_per_kwh, interval, c.rate_scale)
        readings.append(
            Reading(
                t_wall,
                self.config.name,
                self.pulses,
                self.energy_kwh,
                power,
                interval,
                False,
                self.export_kwh,
            )
        )
        return readings

    @property
    def turned(self) -> int:
        """Edges whose kind the kernel read too late (see edgekinds)."""
        return self._kinds.turned

    def _due(self, t_ns: int) -> List[Reading]:
        """The estimates and idle reading due before t_ns, if any wait."""
        if self._last_ns is not None and (
            (not self._idle_reported and self._idle_ns > 0)
            or self._next_estimate_ns is not None
        ):
            return self.tick(t_ns)
        return []

    def _decided(self, t_mono_ns: int, t_wall: float, kind: int) -> List[Reading]:
        """One edge whose kind is settled."""
        readings = self._due(t_mono_ns)
        last = self._last_ns
        if kind == START:
            flash = self._flash
            if flash is not None and t_mono_ns - flash[0] >= max(self._debounce_ns, 1):
                return self._merged_start(flash, t_mono_ns, t_wall, last, readings)
            self._start(t_mono_ns, t_wall)
            return readings
        if kind == END:
            flash = self._end(t_mono_ns)
            if flash is None:
                return readings
            t_mono_ns, t_wall = flash
        return self._pulse(t_mono_ns, t_wall, last, readings)

    def _undecided_ns(self, now_ns: int) -> Optional[int]:
        """The earliest time a pulse may yet be counted at (None: none).

        Estimates wait until it is decided, so none is stamped after a
        pulse that was on its way. A flash lit longer than max_pulse_ms
        can no longer be a pulse: it holds nothing back (an LED left lit,
        an inverted sensor)."""
        times = [self._kinds.held_since]
        for piece in (self._flash, self._narrow):
            if piece is not None and not (
                self._max_width_ns > 0 and now_ns - piece[0] > self._max_width_ns
            ):
                times.append(piece[0])
        known = [t for t in times if t is not None]
        return min(known) if known else None

    def _merged_start(
        self,
        flash: Tuple[int, float],
        t_ns: int,
        t_wall: float,
        last: Optional[int],
        readings: List[Reading],
    ) -> List[Reading]:
        """A START while lit, debounce_ms or more after the flash began: the
        kernel merged an END into it. Within max_pulse_ms of the flash's
        start that was a bounce at the flash's end (a change too quick to
        see apart): the flash ends here and what follows is its tail. Later
        than that, the flash's END was lost: it is judged by the width it
        can at most have had (too wide: a ghost), and a new flash starts."""
        self.glitches += 1  # the merged edge
        judged = self._end(t_ns)
        if self._max_width_ns <= 0 or t_ns - flash[0] <= self._max_width_ns:
            self._tail = self._narrow is None  # a narrow piece goes on by itself
        else:
            self._ended_ns = None  # when it really ended is unknown
            self._start(t_ns, t_wall)
        if judged is None:
            return readings
        return self._pulse(judged[0], judged[1], last, readings)

    def _start(self, t_ns: int, t_wall: float) -> None:
        """A flash begins, or a bounce inside one resumes it.

        A bounce is a dark gap shorter than min_pulse_ms: an LED does not
        go dark for longer inside a flash, so two spikes further apart are
        two ghosts, not one flash."""
        narrow = self._narrow
        if narrow is not None:
            self._narrow = None
            if t_ns - narrow[2] < self._min_width_ns:
                self.glitches += 1  # the flash goes on
                self._flash = (narrow[0], narrow[1])
                return
            self.ghosts += 1
            self._judged(narrow[2] - narrow[0])
        last, ended = self._last_ns, self._ended_ns
        if (last is not None and t_ns - last < self._debounce_ns) or (
            ended is not None and t_ns - ended < self._min_width_ns
        ):
            self.glitches += 1  # a bounce of the last accepted flash
            self._flash = None
            self._tail = True  # whose END is the flash's, already judged
            return
        if self._flash is not None:
            # Lit already: the end of a bounce was lost (the kernel merges
            # changes it is too late to see apart). The flash goes on.
            self.glitches += 1
            return
        self._flash = (t_ns, t_wall)
        self._tail = False

    def _end(self, t_ns: int) -> Optional[Tuple[int, float]]:
        """A flash ends: its start if it is a pulse by its width, else None."""
        flash = self._flash
        self._flash = None
        if flash is None:
            narrow = self._narrow
            if narrow is None:
                if self._tail:
                    self._tail = False  # the end of a bounce's last piece
                else:
                    self._lone_end(t_ns)
                return None
            # Two ends in a row after a narrow piece: the restart between
            # them was lost; the flash went on from the piece's start.
            self._narrow = None
            self.glitches += 1
            flash = (narrow[0], narrow[1])
        width = t_ns - flash[0]
        if width < self._min_width_ns:
            self._narrow = (flash[0], flash[1], t_ns)
            return None
        self.last_width_ns = width
        self._judged(width)
        if self._max_width_ns > 0 and width > self._max_width_ns:
            self.ghosts += 1
            return None
        self._ended_ns = t_ns
        return flash

    def _judged(self, width_ns: int) -> None:
        if self.flash_widths is not None:
            self.flash_widths.append(width_ns)

    def _lone_end(self, t_ns: int) -> None:
        """An END without a START: both edges came before the kernel read
        the first, so the flash was narrower than that delay. Soon after an
        accepted flash it is the bounce of its end; otherwise a ghost."""
        last, ended = self._last_ns, self._ended_ns
        if last is None and ended is None:
            return  # lit when watching began: no flash of ours
        if (ended is not None and t_ns - ended < self._debounce_ns) or (
            last is not None and t_ns - last < self._debounce_ns
        ):
            self.glitches += 1
        else:
            self.ghosts += 1

    def _pulse(
        self,
        t_mono_ns: int,
        t_wall: float,
        last: Optional[int],
        readings: List[Reading],
    ) -> List[Reading]:
        """A pulse at t_mono_ns, if the interval debounce and guard agree."""
        if last is not None:
            gap = t_mono_ns - last
            if gap < self._debounce_ns:
                self.glitches += 1
                return readings
            if gap < self._min_interval_ns:
                self.implausible += 1
                return readings
        if self.counted_until is not None and t_wall <= self.counted_until:
            self.already_counted += 1  # a replayed pulse the journal has
            self._last_ns = t_mono_ns
            self._last_wall = t_wall
            # Its estimates and idle reading are in the journal too (or were
            # never made): none from here until a new pulse.
            self._next_estimate_ns = None
            self._idle_reported = True
            return readings
        if self._exporting:
            assert self.export_pulses is not None
            self.export_pulses += 1
        else:
            self.pulses += 1
        self._last_ns = t_mono_ns
        self._last_wall = t_wall
        self._idle_reported = False
        self._estimates = 0
        if last is None:
            power = interval = None
            self._interval_ns = self._next_estimate_ns = None
        else:
            interval = (t_mono_ns - last) / NS_PER_S
            power = self._sign * power_from_interval(
                self.config.pulses_per_kwh, interval, self.config.rate_scale
            )
            self._interval_ns = t_mono_ns - last
            self._next_estimate_ns = self._estimate_due()
        readings.append(
            Reading(
                t_wall,
                self.config.name,
                self.pulses,
                self.energy_kwh,
                power,
                interval,
                False,
                self.export_kwh,
            )
        )
        return readings

    @property
    def _sign(self) -> float:
        """Power is negative while the direction input says export."""
        return -1.0 if self._exporting else 1.0

    def _estimate_due(self) -> Optional[int]:
        """When the bound reaches its next published value (None: never)."""
        if self._keep >= 1.0 or self._interval_ns is None or self._last_ns is None:
            return None
        elapsed = self._interval_ns / self._keep ** (self._estimates + 1)
        due = self._last_ns + int(elapsed)
        if self._idle_ns > 0 and due - self._last_ns >= self._idle_ns:
            return None  # the idle timeout's 0 W reading comes first
        return due

    def tick(self, t_mono_ns: int) -> List[Reading]:
        """Advance time; return the estimates (and the idle reading) due.

        Each is stamped when it became due, not when the tick arrived, so
        the readings do not depend on how often ticks come."""
        out: List[Reading] = []
        for t_ns, wall, kind in self._kinds.flush(t_mono_ns):
            out.extend(self._decided(t_ns, wall, kind))
        if self._last_ns is None:
            return out
        undecided = self._undecided_ns(t_mono_ns)
        if undecided is not None:
            t_mono_ns = min(t_mono_ns, undecided - 1)
        due = self._next_estimate_ns
        while due is not None and due <= t_mono_ns:
            interval = (due - self._last_ns) / NS_PER_S
            if self._last_wall + interval >= LATEST:  # a gap of decades
                self._next_estimate_ns = None
                break
            out.append(
                Reading(
                    self._last_wall + interval,
                    self.config.name,
                    self.pulses,
                    self.energy_kwh,
                    self._sign
                    * power_from_interval(
                        self.config.pulses_per_kwh, interval, self.config.rate_scale
                    ),
                    interval,
                    True,
                    self.export_kwh,
                )
            )
            self._estimates += 1
            due = self._next_estimate_ns = self._estimate_due()
        if self._idle_reported or self._idle_ns <= 0:
            return out
        if t_mono_ns - self._last_ns < self._idle_ns:
            return out
        self._idle_reported = True
        self._next_estimate_ns = None
        timeout = self._idle_ns / NS_PER_S
        if self._last_wall + timeout >= LATEST:
            return out
        out.append(
            Reading(
                self._last_wall + timeout,
                self.config.name,
                self.pulses,
                self.energy_kwh,
                0.0,
                timeout,
                True,
                self.export_kwh,
            )
        )
        return out
