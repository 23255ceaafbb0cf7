"""Each edge's kind (a flash starts or ends) restored from the order of edges.

The kernel stamps an edge's time in its interrupt handler but reads the
line's level, which names the edge rising or falling, later, when the
interrupt's thread runs. If the line has changed again by then, the edge
comes out with the next one's kind; if two changes come before the thread
runs, only the later is reported, with the level after it. A line can only
alternate, so a repeated kind is the sign of one of the two:

- ``START START START`` or ``END END END``: the middle edge was read too
  late (the fewest mistakes that explain three in a row: one misread kind
  rather than two lost edges); it is handed on with its kind turned;
- two of a kind between other kinds: an edge between them was lost; both
  stand, and the meter treats the second as the trace of a lost edge.

A repeated edge is therefore held until the next edge says which (or until
``HOLD_NS`` has passed on the edges' clock: a misread needs the next change
to come within the kernel's delay, and a third edge later than that is an
edge of its own, the held one standing). Decisions depend only on the
edges' kinds and times, so a replay of recorded edges gives what the live
run gave. Edges that only say
"a pulse" (one edge watched) pass straight through.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Tuple

# The pulse path: an input backend calls it with (t_mono_ns, t_wall[, kind])
# for each edge, and it only hands the edge on (core/monitor.py).
EdgeCallback = Callable[..., None]

PULSE = 0  # a pulse, width unknown (one edge seen)
START = 1  # the configured edge: a flash begins
END = 2  # the other edge: the flash ends
# Export, from a second input of the same meter (never through EdgeKinds):
EXPORT_PULSE = 3  # a flash of the export LED
EXPORTING = 4  # the direction input went high: pulses are export
IMPORTING = 5  # the direction input went low: pulses are import

# A misread edge's successor came before the kernel's thread read the line:
# within its delay, microseconds to a few milliseconds on a real board.
HOLD_NS = 5_000_000

Edge = Tuple[int, float, int]  # (monotonic ns, wall s, kind)


class EdgeKinds:
    """Turns the kinds the kernel reports into the kinds the line had."""

    def __init__(self) -> None:
        self._last: Optional[int] = None  # the kind last handed on
        self._held: Optional[Edge] = None  # a repeat awaiting the next edge
        self.turned = 0  # edges handed on with their kind turned

    @property
    def held_since(self) -> Optional[int]:
        """The time of an edge not yet handed on (None: none held)."""
        return None if self._held is None else self._held[0]

    def feed(self, t_ns: int, t_wall: float, kind: int) -> List[Edge]:
        """One edge in; the edges now decided out, in order."""
        if kind == PULSE:
            return [(t_ns, t_wall, kind)]
        held = self._held
        if held is not None:
            self._held = None
            if kind == held[2] and t_ns - held[0] < HOLD_NS:
                # Three of a kind: the middle one was read too late.
                self.turned += 1
                self._last = kind
                return [(held[0], held[1], START + END - kind), (t_ns, t_wall, kind)]
            out = [held]  # it stands: an edge before it was lost
            self._last = held[2]
            return out + self.feed(t_ns, t_wall, kind)
        if kind == self._last:
            self._held = (t_ns, t_wall, kind)
            return []
        self._last = kind
        return [(t_ns, t_wall, kind)]

    def flush(self, now_ns: int) -> List[Edge]:
        """The held edge, once HOLD_NS has passed without a successor."""
        held = self._held
        if held is None or now_ns - held[0] < HOLD_NS:
            return []
        self._held = None
        return [held]
