"""What the meter made of each edge, kept for people to look at.

`power.py watch` shows each edge live with its verdict; the web page shows
the same for a running daemon: the last few hundred edges the meter judged
(kind, flash width, interval, verdict and why, implied power) and the
histogram of the widths of the flashes it judged. An EdgeJudge wraps a
Meter: it hands each edge on unchanged and reads the verdict off the
meter's counters before and after, so the judgement is the meter's own,
never a second opinion. Memory is bounded: a ring of the last edges and a
fixed set of histogram buckets. A FrameJudge does the same for a meter
read from its register (sml, d0, p1): the last frames, with the totals and
power each said or why it was not used.
"""

from __future__ import annotations

import collections
import math
import threading
from typing import Deque, Dict, List, NamedTuple, Optional, Tuple

from core.meter import END, NS_PER_S, PULSE, START, Meter, Reading
from core.regmeter import BadFrame, Item, RegisterFrame, RegisterMeter

BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, math.inf)
KIND_NAME = {START: "start", END: "end", PULSE: "pulse"}
KEEP_EDGES = 300


class JudgedEdge(NamedTuple):
    wall: float  # the edge's time, epoch seconds
    kind: str  # start, end or pulse
    width_ms: Optional[float]  # of the flash this edge ends
    interval_s: Optional[float]  # since the previous flash's start
    verdict: str  # pulse, ghost (why), glitch (why), implausible (why), ...
    power_w: Optional[float]  # of the pulse this edge made


class WidthHistogram:
    """Counts of flash widths in BUCKETS_MS; the meter appends each width
    it judged (its `flash_widths` hook), in nanoseconds."""

    def __init__(self) -> None:
        self.counts = [0] * len(BUCKETS_MS)

    def append(self, width_ns: int) -> None:
        ms = width_ns / 1e6
        for i, bound in enumerate(BUCKETS_MS):
            if ms < bound:
                self.counts[i] += 1
                return

    def rows(self) -> List[Tuple[str, int]]:
        out, low = [], 0.0
        for bound, n in zip(BUCKETS_MS, self.counts):
            name = f"{low:g}-{bound:g} ms" if bound != math.inf else f">={low:g} ms"
            out.append((name, n))
            low = bound
        return out


def verdict(cfg, kind: int, before, after, width: Optional[int]) -> str:
    """Why the meter counted an edge, or why not, from its counters before
    and after it (pulses, glitches, implausible, ghosts) and the width of
    the flash it judged: the words the page and watch show."""
    if after[0] > before[0]:
        return "pulse"
    if after[3] > before[3]:
        if width is not None and width < cfg.min_pulse_ms * 1e6:
            return f"ghost (narrower than min_pulse_ms {cfg.min_pulse_ms:g})"
        if width is not None and cfg.max_pulse_ms and width > cfg.max_pulse_ms * 1e6:
            return f"ghost (wider than max_pulse_ms {cfg.max_pulse_ms:g})"
        return "ghost"
    if after[1] > before[1]:
        return f"glitch (bounce, or inside debounce_ms {cfg.debounce_ms:g})"
    if after[2] > before[2]:
        return f"implausible (above max_power_w {cfg.max_power_w:g})"
    if kind == START:
        return "flash starts"
    return "-"


class EdgeJudge:
    """A meter's edges with the meter's verdict on each (see the module)."""

    def __init__(self, meter: Meter, keep: int = KEEP_EDGES) -> None:
        self.meter = meter
        self.histogram = WidthHistogram()
        meter.flash_widths = self.histogram  # as the meter judged them
        self._edges: Deque[JudgedEdge] = collections.deque(maxlen=keep)
        self._lock = threading.Lock()
        self._flash: Optional[int] = None
        self._last_start: Optional[int] = None
        self._last_width: Optional[int] = None  # of the last whole flash

    def edge(self, t_ns: int, wall: float, kind: int = PULSE) -> List[Reading]:
        """Meter.edge, judged: the same readings, and a JudgedEdge kept."""
        m = self.meter
        width = interval = None
        if kind in (START, PULSE):
            if self._last_start is not None:
                interval = (t_ns - self._last_start) / NS_PER_S
            self._last_start = t_ns
            self._flash = t_ns if kind == START else None
        elif self._flash is not None:
            width = self._last_width = t_ns - self._flash
            self._flash = None
        before = (m.pulses, m.glitches, m.implausible, m.ghosts)
        readings = m.edge(t_ns, wall, kind)
        after = (m.pulses, m.glitches, m.implausible, m.ghosts)
        pulses = [r for r in readings if not r.estimate]
        judged = JudgedEdge(
            wall,
            KIND_NAME[kind],
            None if width is None else width / 1e6,
            interval,
            self.verdict(kind, before, after, width),
            pulses[-1].power_w if pulses else None,
        )
        with self._lock:
            self._edges.append(judged)
        return readings

    def verdict(self, kind: int, before, after, width: Optional[int]) -> str:
        """Why the meter counted an edge, or why not, from its counters."""
        if width is None:  # judged at this edge: the flash before it
            width = self._last_width
        return verdict(self.meter.config, kind, before, after, width)

    def recent(self) -> List[JudgedEdge]:
        """The last edges judged, oldest first (from any thread)."""
        with self._lock:
            return list(self._edges)


class JudgedFrame(NamedTuple):
    wall: float  # when the frame arrived, epoch seconds
    total: Optional[float]  # its import register (gas, water: m3)
    export: Optional[float]  # its export register, kWh
    rate: Optional[float]  # its power, W (gas, water: m3/h)
    verdict: str  # good, held (why), unusable (why), implausible (why)


class FrameJudge:
    """A register meter's frames with the meter's verdict on each, as
    EdgeJudge has a pulse meter's edges: each frame is handed on unchanged
    (in the monitor's thread, never the input's) and the verdict read off
    the meter's counters before and after. A ring of the last frames."""

    def __init__(self, meter: RegisterMeter, keep: int = KEEP_EDGES) -> None:
        self.meter = meter
        self._frames: Deque[JudgedFrame] = collections.deque(maxlen=keep)
        self._lock = threading.Lock()

    def edge(self, t_ns: int, wall: float, item: Item) -> List[Reading]:
        """RegisterMeter.edge, judged: the same readings, a JudgedFrame kept."""
        m = self.meter
        last = (m.total, m.export)
        before = (m.frames, m.glitches, m.implausible)
        readings = m.edge(t_ns, wall, item)
        after = (m.frames, m.glitches, m.implausible)
        if isinstance(item, RegisterFrame):
            judged = JudgedFrame(
                wall,
                item.total,
                item.export,
                item.rate,
                self.verdict(item, before, after, last),
            )
        else:
            why = item.why if isinstance(item, BadFrame) else "not a frame"
            judged = JudgedFrame(wall, None, None, None, f"unusable ({why})")
        with self._lock:
            self._frames.append(judged)
        return readings

    def verdict(self, frame: RegisterFrame, before, after, last) -> str:
        """Why the meter took a frame, or why not, from its counters."""
        if after[0] > before[0]:
            return "good"
        if after[1] > before[1]:
            return "unusable (no register in it)"
        if after[2] > before[2]:
            for new, old in zip((frame.total, frame.export), last):
                if new is not None and old is not None and new < old:
                    return "implausible (a total below the last good one)"
            limit = self.meter.config.max_power_w
            return f"implausible (a total rising beyond max_power_w {limit:g})"
        return "held (the first after a start waits for the next to agree)"

    def counts(self) -> Dict[str, int]:
        """Frames taken, unusable and implausible since the start."""
        m = self.meter
        return {"good": m.frames, "unusable": m.glitches, "implausible": m.implausible}

    def recent(self) -> List[JudgedFrame]:
        """The last frames judged, oldest first (from any thread)."""
        with self._lock:
            return list(self._frames)
