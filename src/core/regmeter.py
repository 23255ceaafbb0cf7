"""A meter read from its own register: frames in, readings out.

Where the pulse meter counts flashes, a register input (SML, D0, DSMR P1)
hands over what the meter itself says: its import total, its export total
and its signed power, stamped when the frame arrived. Pure, as the pulse
meter is: no clock reads, no I/O, so the same code serves a live port, a
test and a property check.

The totals are the truth, so the rules are about never publishing a wrong
one:

- a total never goes down: a frame whose import or export is below the last
  good one is kept out and counted implausible (a misread, or a meter
  swapped: the user decides, with METER['energy_offset_kwh']);
- a total never jumps further than max_power_w allows over the time since
  the last good frame (plus the register's last digit): such a frame is
  kept out and counted implausible;
- after a start the first frame is held until the next agrees with it, so
  one bad frame cannot become the base the rest are judged against;
- a frame the input could not use (a CRC error, a cut or garbage frame) is
  counted as a glitch (BAD_FRAME) and changes nothing.

`pulses` is the import register in its smallest whole unit (Wh, or litres
for gas and water: REGISTER_UNITS per kWh or m3), so the journal's count,
the report's energy per period and a file sink's resume work as for pulses.
A reading is made at most every `every_s` seconds, from the newest good
frame (a frame held back is made a reading by the next tick once due), so an
SD card is not written once a second by a meter that sends every second;
what people watch still gets every good frame (take_shown).
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional, Union

from core.meter import NS_PER_S, MeterConfig, Reading

REGISTER_UNITS = 1000.0  # pulses per kWh (Wh) or per m3 (litres)
BAD_FRAME = -1  # handed on in a frame's place: a frame that could not be used
SLACK = 1e-6  # float noise in a register's value, in its unit


class RegisterFrame(NamedTuple):
    """What one frame of the meter said (None: not in this frame)."""

    total: Optional[float]  # import register, kWh (gas, water: m3)
    export: Optional[float] = None  # export register, kWh
    rate: Optional[float] = None  # W, negative while exporting (m3/h)
    resolution: float = 0.0  # the registers' last digit, in their unit


class BadFrame(NamedTuple):
    """A frame the input could not use, and why (a CRC error, a cut frame):
    counted as BAD_FRAME is, the reason kept for the page's sensor view."""

    why: str


Item = Union[RegisterFrame, BadFrame, int]


class RegisterMeter:
    """Turns register frames of one meter into readings (see the module)."""

    def __init__(
        self,
        config: MeterConfig,
        pulses: int = 0,
        export_kwh: Optional[float] = None,
        every_s: float = 10.0,
    ) -> None:
        self.config = config
        self.pulses = pulses  # the import register in Wh (litres)
        self.offset_kwh = config.energy_offset_kwh
        self.glitches = 0  # frames the input could not use
        self.implausible = 0  # frames with a total kept out
        self.ghosts = 0  # (flashes: none here)
        self.turned = 0
        self.frames = 0  # good frames taken
        self.counted_until: Optional[float] = None  # (replays: none here)
        self.already_counted = 0
        self.flash_widths = None
        self.last_width_ns: Optional[int] = None
        # The last good totals; None before the first (from the journal's
        # count at start: the import at Wh resolution).
        self.total: Optional[float] = pulses / REGISTER_UNITS if pulses else None
        self._rounded = True  # self.total is the journal's Wh, not a frame's
        self.export: Optional[float] = export_kwh
        self.power_w: Optional[float] = None
        self._every_ns = int(every_s * NS_PER_S)
        self._good_ns: Optional[int] = None  # when the last good frame came
        self._emitted_ns: Optional[int] = None  # when the last reading was
        self._held: Optional[Reading] = None  # a good frame not yet a reading
        # The newest good frame as a reading for what people watch (the
        # live path), journaled or not: taken once by take_shown().
        self._shown: Optional[Reading] = None
        self._held_ns = 0
        self._candidate: Optional[tuple] = None  # the first frame after start
        # Units per second at max_power_w (W -> kWh/s; m3/h -> m3/s).
        self._max_rate = config.max_power_w / config.rate_scale / 3600.0

    @property
    def energy_kwh(self) -> float:
        return self.offset_kwh + (self.total or 0.0)

    @property
    def export_kwh(self) -> Optional[float]:
        return self.export

    def edge(self, t_mono_ns: int, t_wall: float, item: Item) -> List[Reading]:
        """A frame (or BAD_FRAME, a BadFrame) from the input; the readings
        now due."""
        out = self.tick(t_mono_ns)
        if not isinstance(item, RegisterFrame):
            self.glitches += 1
            return out
        if item.total is None and item.export is None:
            self.glitches += 1  # a frame without a register: unusable
            return out
        if self._good_ns is None:
            return out + self._first(t_mono_ns, t_wall, item)
        if not self._plausible(item, t_mono_ns - self._good_ns):
            self.implausible += 1
            return out
        return out + self._take(t_mono_ns, t_wall, item)

    def _first(self, t_ns: int, t_wall: float, frame: RegisterFrame) -> List[Reading]:
        """The first frames after a start: held until the next agrees."""
        if self._below(frame):
            self.implausible += 1
            return []
        candidate = self._candidate
        self._candidate = (t_ns, t_wall, frame)
        if candidate is None:
            return []
        c_ns, c_wall, c_frame = candidate
        if not self._plausible(frame, t_ns - c_ns, c_frame):
            self.implausible += 1  # one of the two is wrong: wait for a third
            return []
        self._candidate = None
        self._accept(c_frame)
        self._good_ns = c_ns
        return self._take(t_ns, t_wall, frame)

    def _below(self, frame: RegisterFrame) -> bool:
        """A total below the last good one (or the journal's count)."""
        if frame.total is not None:
            if self.total is not None and frame.total < self.total - SLACK:
                # The journal keeps Wh: a register read finer may be below
                # the count it rounded to, but never below its Wh.
                if not self._rounded:
                    return True
                if round(frame.total * REGISTER_UNITS) < self.pulses:
                    return True
        if frame.export is not None and self.export is not None:
            if frame.export < self.export - SLACK:
                return True
        return False

    def _plausible(
        self,
        frame: RegisterFrame,
        elapsed_ns: int,
        before: Optional[RegisterFrame] = None,
    ) -> bool:
        """No total goes down, none rises faster than max_power_w allows."""
        if before is None:
            if self._below(frame):
                return False
            total = self.total
            if self._rounded and total is not None and frame.total is not None:
                total = min(total, frame.total)  # within its Wh (_below)
            pairs = ((frame.total, total), (frame.export, self.export))
        else:
            pairs = ((frame.total, before.total), (frame.export, before.export))
        room = self._max_rate * max(elapsed_ns, 0) / NS_PER_S
        room += max(frame.resolution, 0.0) + SLACK
        for new, old in pairs:
            if new is None or old is None:
                continue
            if new < old - SLACK or new - old > room:
                return False
        return True

    def _accept(self, frame: RegisterFrame) -> None:
        if frame.total is not None:
            self.total = frame.total
            self._rounded = False
            self.pulses = max(self.pulses, int(round(frame.total * REGISTER_UNITS)))
        if frame.export is not None:
            self.export = frame.export
        self.power_w = frame.rate

    def _take(self, t_ns: int, t_wall: float, frame: RegisterFrame) -> List[Reading]:
        """A good frame: a reading now, or held until every_s has passed."""
        self._accept(frame)
        self._good_ns = t_ns
        self.frames += 1
        last = self._emitted_ns
        interval = None if last is None else (t_ns - last) / NS_PER_S
        reading = Reading(
            t_wall,
            self.config.name,
            self.pulses,
            self.energy_kwh,
            frame.rate,
            interval,
            False,
            self.export,
        )
        if last is not None and t_ns - last < self._every_ns:
            self._held, self._held_ns = reading, t_ns
            self._shown = reading
            return []
        self._held = None
        self._emitted_ns = t_ns
        return [reading]

    def take_shown(self) -> Optional[Reading]:
        """The newest frame held back from the journal, once: the live path
        shows each frame's power as it comes, not every every_s."""
        shown, self._shown = self._shown, None
        return shown

    def tick(self, t_mono_ns: int) -> List[Reading]:
        """A frame held back becomes a reading once every_s has passed."""
        held = self._held
        if held is None or self._emitted_ns is None:
            return []
        if t_mono_ns - self._emitted_ns < self._every_ns:
            return []
        self._held = None
        interval = (self._held_ns - self._emitted_ns) / NS_PER_S
        self._emitted_ns = self._held_ns
        return [held._replace(interval_s=interval)]
