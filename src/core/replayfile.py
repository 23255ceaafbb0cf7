"""Reading replay files: pulse times to feed through the monitor again.

Two forms are accepted: the original monitor's file, one pulse per line as
epoch seconds (blank lines and # comments ignored), and the CSV the file
sink writes (recognised by its header, with or without the estimate column),
whose estimate and idle-timeout rows repeat a pulse count and are skipped so
no pulse is counted twice.

A third form holds raw edges as `power.py watch --record` writes them: one
edge per line, `MONO_NS WALL_S KIND`, where MONO_NS is the monotonic time
in integer nanoseconds (the kernel's timestamp where the input has one),
WALL_S the wall clock in epoch seconds and KIND `S` (a flash starts: the
configured edge), `E` (it ends) or `P` (a pulse, width unseen). Replaying
it feeds the meter exactly what the live meter saw, so the counts are the
same, or different only by the settings changed since.
"""

from __future__ import annotations

import os
import stat
from itertools import islice
from operator import le
from typing import IO, Iterator, List, Optional, Tuple

from core.csvformat import HEADER, HEADERS, format_time, parse_time
from core.meter import END, NS_PER_S, PULSE, START
from core.timebounds import EARLIEST, LATEST

MAX_LINE = 4096  # characters; a longer line is not a pulse
CHECK_CHUNK = 1 << 18  # characters the up-front check takes at a time


class ReplayFileError(Exception):
    """A line that is not a pulse; the message names the file and line."""


def check_regular(path: str) -> None:
    """Refuse what is not a regular file (a FIFO would hang the up-front
    check, /dev/zero would never end); OSError if it cannot be read."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise ReplayFileError(
            f"{path} is not a regular file; replay a file of pulse times "
            "(copy a stream to a file first)"
        )


def _lines(f: IO[str], path: str) -> Iterator[Tuple[int, str]]:
    """Numbered lines, each at most MAX_LINE characters (bounded memory)."""
    number = 0
    while True:
        raw = f.readline(MAX_LINE + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE:
            raise ReplayFileError(
                f"{path} line {number}: longer than {MAX_LINE} characters; "
                "not a pulse time"
            )
        yield number, raw


EDGE_KINDS = {"S": START, "E": END, "P": PULSE}
KIND_LETTER = {v: k for k, v in EDGE_KINDS.items()}
EDGES_HEADER = (
    "# power edges v1: MONO_NS WALL_S KIND (S: a flash starts, E: it ends, P: a pulse)"
)


def edge_line(t_ns: int, wall: float, kind: int) -> str:
    """One line of a recorded edge file (repr keeps the wall time exact)."""
    return f"{t_ns} {wall!r} {KIND_LETTER[kind]}\n"


def read_edges(
    path: str, meter: Optional[str] = None
) -> Iterator[Tuple[int, int, float, int]]:
    """Yield (line number, mono ns, wall, kind) for each edge of any form:
    a pulse time or CSV row is a PULSE at its own time."""
    check_regular(path)
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        yield from _parse_any(f, path, meter)


def _parse_any(
    f: IO[str], path: str, meter: Optional[str]
) -> Iterator[Tuple[int, int, float, int]]:
    previous = None
    pulses = None  # the other forms, parsed line by line as they come

    def lines() -> Iterator[Tuple[int, str]]:
        yield from _lines(f, path)

    source = lines()
    for number, raw in source:
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = stripped.split()
        if len(fields) == 3:
            t_ns, wall, kind = _edge(fields, path, number)
            if meter is not None:
                raise ReplayFileError(
                    f"{path} line {number}: an edge file has no meter column, "
                    f"so it cannot feed meter {meter!r} alone; record one file "
                    "per meter"
                )
            if previous is not None and t_ns < previous[1]:
                raise ReplayFileError(
                    f"{path} line {number}: time {t_ns} ns is earlier than line "
                    f"{previous[0]}'s {previous[1]}; edges must be in time order"
                )
            previous = (number, t_ns)
            yield number, t_ns, wall, kind
            continue
        if pulses is None:
            pulses = _parse(_pushback(number, raw, source), path, meter)
        for n, t in pulses:
            yield n, int(t * NS_PER_S), t, PULSE
        return


def _pushback(number: int, raw: str, rest: Iterator[Tuple[int, str]]):
    yield number, raw
    yield from rest


def _edge(fields, path: str, number: int) -> Tuple[int, float, int]:
    try:
        t_ns = int(fields[0])
        wall = float(fields[1])
        kind = EDGE_KINDS[fields[2]]
    except (ValueError, KeyError):
        raise ReplayFileError(
            f"{path} line {number}: {' '.join(fields)[:60]!r} is not an edge "
            "(MONO_NS WALL_S KIND, like 5188828109908 1714563000.123 S)"
        ) from None
    if t_ns < 0 or not EARLIEST <= wall < LATEST:
        raise ReplayFileError(
            f"{path} line {number}: {' '.join(fields)[:60]!r}: expected a "
            f"monotonic time of 0 ns or more and a wall time from "
            f"{format_time(EARLIEST)} to {format_time(LATEST)}"
        )
    return t_ns, wall, kind


def read_pulses(path: str, meter: Optional[str] = None) -> Iterator[Tuple[int, float]]:
    """Yield (line number, epoch seconds) for each pulse, in file order.

    Raises ReplayFileError for the first bad line or a time going backwards,
    and OSError when the file cannot be read. With `meter`, only that meter's
    rows of a CSV are taken.
    """
    check_regular(path)
    # utf-8-sig: a byte order mark some editors write is not part of line 1.
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        yield from _parse(f, path, meter)


def _parse(f, path: str, meter: Optional[str]) -> Iterator[Tuple[int, float]]:
    """`f`: an open file, or numbered lines."""
    if hasattr(f, "readline"):
        f = _lines(f, path)
    csv = 0  # the CSV's number of columns, once its header was seen
    previous = None
    last_pulses = {}
    for number, raw in f:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("time,"):
            if line not in HEADERS:
                raise ReplayFileError(
                    f"{path} line {number}: CSV header {line!r} is not the file "
                    f"sink's {HEADER!r}"
                )
            csv = line.count(",") + 1
            continue
        if csv:
            t = _csv_pulse(line, path, number, meter, last_pulses, csv)
            if t is None:
                continue
        else:
            if meter is not None:
                raise ReplayFileError(
                    f"{path} line {number}: a plain pulse file has no meter "
                    f"column, so it cannot feed meter {meter!r} alone; replay "
                    "the file sink's CSV, which names each reading's meter"
                )
            try:
                t = float(line)
            except ValueError:
                t = float("nan")
            if not t == t or t <= 0 or t == float("inf"):  # NaN, negative, inf
                raise ReplayFileError(
                    f"{path} line {number}: {line[:40]!r} is not a pulse time "
                    "(epoch seconds, like 1714563000.123)"
                )
        if not EARLIEST <= t < LATEST:
            raise ReplayFileError(
                f"{path} line {number}: time {line[:40]!r} is not a plausible "
                f"pulse time: expected one from {format_time(EARLIEST)} to "
                f"{format_time(LATEST)} (epoch seconds {EARLIEST:.0f} to "
                f"{LATEST:.0f})"
            )
        if previous is not None and t < previous[1]:
            raise ReplayFileError(
                f"{path} line {number}: time {t} is earlier than line "
                f"{previous[0]}'s {previous[1]}; pulses must be in time order"
            )
        previous = (number, t)
        yield number, t


def _csv_pulse(
    line: str,
    path: str,
    number: int,
    meter: Optional[str],
    last_pulses: dict,
    columns: int,
) -> Optional[float]:
    fields = line.split(",")
    if len(fields) != columns:
        raise ReplayFileError(
            f"{path} line {number}: expected {columns} CSV fields "
            f"({next(h for h in HEADERS if h.count(',') + 1 == columns)}), "
            f"found {len(fields)}"
        )
    name = fields[1]
    if meter is not None and name != meter:
        return None
    try:
        t = parse_time(fields[0])
        pulses = int(fields[2])
    except ValueError:
        raise ReplayFileError(
            f"{path} line {number}: {line[:60]!r} is not a reading of the file "
            "sink's CSV (time like 2024-05-01T12:00:00.000Z, integer pulses)"
        ) from None
    if last_pulses.get(name) == pulses or fields[6:7] == ["1"]:
        return None  # an estimate or idle-timeout row: no new pulse
    last_pulses[name] = pulses
    return t


def check_file(path: str, meter: Optional[str] = None) -> None:
    """Check a whole replay file before it is replayed, so a bad line stops
    the start; ReplayFileError names the first one, OSError if unreadable.

    The replay itself then parses the file once, as it streams it. For a
    plain pulse file this check is a bulk pass (float() over whole chunks,
    then order and range: about a third of the parser's cost); whatever it
    cannot vouch for (comments, blank lines, a CSV, a recorded edge file, a
    bad line) goes through the parser line by line, which finds and names
    the problem.
    """
    if meter is None and _plain_and_sound(path):
        return
    for _ in read_edges(path, meter):  # any form: pulses, CSV rows, edges
        pass


def _plain_and_sound(path: str) -> bool:
    """True if every line is one pulse time the parser accepts: in range,
    in time order, shorter than MAX_LINE. Memory stays bounded by
    CHECK_CHUNK, however long the file."""
    check_regular(path)
    previous = EARLIEST
    rest = ""
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        while True:
            chunk = f.read(CHECK_CHUNK)
            if not chunk:
                break
            lines = (rest + chunk).split("\n")
            rest = lines.pop()
            if len(rest) >= MAX_LINE or not _sound(lines, previous):
                return False
            if lines:
                previous = float(lines[-1])
    return _sound([rest], previous) if rest else True


def _sound(lines: List[str], previous: float) -> bool:
    if not lines:
        return True
    try:
        times = list(map(float, lines))  # ValueError for blank lines too
    except ValueError:
        return False
    # NaN fails every comparison, so it is not sound either.
    return (
        max(map(len, lines)) < MAX_LINE
        and previous <= times[0]
        and times[-1] < LATEST
        and all(map(le, times, islice(times, 1, None)))
    )


def count_pulses(path: str, meter: Optional[str] = None) -> int:
    """Check a whole replay file up front; return its number of edges."""
    return sum(1 for _ in read_edges(path, meter))
