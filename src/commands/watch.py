"""`power.py watch`: set up the sensor with the evidence in view.

Opens the configured input (never while the daemon holds it), shows each
edge with its time, width and interval, what the meter made of it and the
power it implies, keeps a histogram of flash widths and the glitches and
ghosts per minute, and at the end diagnoses what it saw (no edges, an
inverted sensor, widths at the filter's limits, lamp flicker) and suggests
settings with the evidence. `--record` keeps the raw edges for `--replay`;
`--kettle WATTS` checks pulses_per_kwh against a known load.

The meter's arithmetic is the daemon's own (meter.Meter), fed the same
edges, so what watch accepts is what the daemon would count.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import queue
import signal
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import IO, Dict, List, Optional, Tuple

from config.settings import load_for_run
from core.exits import EXIT_FAILURE, EXIT_USAGE, fail
from core.judge import verdict
from core.meter import END, NS_PER_S, PULSE, START, Meter, MeterConfig
from core.options import SettingsError
from core.replayfile import EDGES_HEADER, edge_line
from inputs.base import InputError
from service import pidcheck
from service.preflight import cannot_create

# Width histogram buckets (upper bounds, ms): about three to a decade.
BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, math.inf)
BAR = 40
FLICKER_HZ = (100.0, 50.0)  # mains lamps flicker at twice the mains frequency
INVERTED_LIT = 0.5  # lit more than half the time: the edges are swapped
NEAR = 0.2  # a width within 20 % of a limit "straddles" it
KIND_NAME = {START: "start", END: "end", PULSE: "pulse"}
SHOW_EVERY_S = 5.0  # the running histogram, except in --plain


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="power.py watch",
        description="Watch the meter's input live to set up the sensor: each "
        "edge, flash widths, glitches and ghosts, a diagnosis and suggested "
        "settings. Stop it with Ctrl-C (it prints the summary at once).",
    )
    p.add_argument("--settings", metavar="PATH", help="settings file, as for power.py")
    p.add_argument(
        "--seconds",
        type=float,
        metavar="N",
        help="stop after N seconds (of the input's own clock; default: Ctrl-C)",
    )
    p.add_argument(
        "--record",
        metavar="FILE",
        help="write every raw edge to FILE, for --replay (see the manual); an "
        "existing FILE only with --force",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="with --record: overwrite FILE if it exists",
    )
    p.add_argument(
        "--meter", metavar="NAME", help="the meter to watch (default: the first)"
    )
    p.add_argument(
        "--kettle",
        type=float,
        metavar="WATTS",
        help="kettle test: a known load of WATTS is switched on halfway "
        "through --seconds; compare the added power with it",
    )
    p.add_argument(
        "--plain",
        action="store_true",
        help="plain text, one line per edge and the summary (for scripts)",
    )
    p.add_argument(
        "--simulate", type=float, metavar="WATTS", help="watch a simulated meter"
    )
    p.add_argument("--replay", metavar="FILE", help="watch a replayed file")
    p.add_argument("--speed", type=float, metavar="FACTOR", help="for both")
    return p


@dataclass
class Stats:
    """What was seen: raw flashes, and the meter's verdicts."""

    config: MeterConfig
    first_ns: Optional[int] = None
    last_ns: Optional[int] = None
    edges: int = 0
    starts: List[int] = field(default_factory=list)  # every flash start
    widths: List[int] = field(default_factory=list)  # every flash judged (ns)
    lit_ns: int = 0
    pulses: List[Tuple[int, Optional[float]]] = field(default_factory=list)
    minutes: Dict[int, List[int]] = field(default_factory=dict)  # glitch, ghost
    pulse_only: bool = False  # the input reports one edge: no widths

    def histogram(self) -> List[Tuple[str, int]]:
        counts = [0] * len(BUCKETS_MS)
        for w in self.widths:
            ms = w / 1e6
            counts[next(i for i, b in enumerate(BUCKETS_MS) if ms < b)] += 1
        out, low = [], 0.0
        for bound, n in zip(BUCKETS_MS, counts):
            name = f"{low:g}-{bound:g} ms" if bound != math.inf else f">={low:g} ms"
            out.append((name, n))
            low = bound
        return out

    @property
    def span_s(self) -> float:
        if self.first_ns is None or self.last_ns is None:
            return 0.0
        return (self.last_ns - self.first_ns) / NS_PER_S


class Watcher:
    """Feeds edges to a meter and to the statistics, printing as it goes."""

    def __init__(self, config: MeterConfig, out: IO[str], plain: bool) -> None:
        self.meter = Meter(replace_idle(config))
        self.stats = Stats(config)
        self.meter.flash_widths = self.stats.widths  # as the meter judged them
        self.out = out
        self.plain = plain
        self._flash: Optional[int] = None
        self._last_start: Optional[int] = None
        self._last_width: Optional[int] = None  # of the last whole flash

    def edge(self, t_ns: int, wall: float, kind: int) -> None:
        s, m = self.stats, self.meter
        s.edges += 1
        if s.first_ns is None:
            s.first_ns = t_ns
        s.last_ns = t_ns
        width = interval = None
        if kind in (START, PULSE):
            if self._last_start is not None:
                interval = (t_ns - self._last_start) / NS_PER_S
            self._last_start = t_ns
            s.starts.append(t_ns)
            self._flash = t_ns if kind == START else None
            if kind == PULSE:
                s.pulse_only = True
        elif self._flash is not None:
            width = self._last_width = t_ns - self._flash
            s.lit_ns += width
            self._flash = None
        before = (m.pulses, m.glitches, m.implausible, m.ghosts)
        readings = [r for r in m.edge(t_ns, wall, kind) if not r.estimate]
        after = (m.pulses, m.glitches, m.implausible, m.ghosts)
        minute = s.minutes.setdefault(
            int((t_ns - s.first_ns) // (60 * NS_PER_S)), [0, 0]
        )
        minute[0] += after[1] - before[1]
        minute[1] += after[3] - before[3]
        verdict = self._verdict(kind, before, after, width)
        power = None
        if readings:
            power = readings[-1].power_w
            s.pulses.append((t_ns, power))
        self._print(t_ns, wall, kind, width, interval, verdict, power)

    def _verdict(self, kind: int, before, after, width: Optional[int]) -> str:
        if width is None:  # judged at this edge: the flash before it
            width = self._last_width
        return verdict(self.stats.config, kind, before, after, width)

    def _print(self, t_ns, wall, kind, width, interval, verdict, power) -> None:
        stamp = (
            time.strftime("%H:%M:%S", time.localtime(wall))
            + f".{int(wall % 1 * 1000):03d}"
        )
        parts = [stamp, f"{KIND_NAME[kind]:<5}"]
        parts.append(f"width {width / 1e6:7.1f} ms" if width is not None else " " * 16)
        parts.append(
            f"interval {interval:8.3f} s" if interval is not None else " " * 19
        )
        parts.append(verdict)
        if power is not None:
            parts.append(f"{power:.0f} W")
        self.out.write("  ".join(parts) + "\n")
        self.out.flush()

    def tick(self, t_ns: int) -> None:
        before = self.meter.ghosts
        self.meter.tick(t_ns)
        if self.meter.ghosts > before and self.stats.first_ns is not None:
            minute = int((t_ns - self.stats.first_ns) // (60 * NS_PER_S))
            self.stats.minutes.setdefault(minute, [0, 0])[1] += (
                self.meter.ghosts - before
            )

    def running(self) -> str:
        """One line for the terminal: the counts, the width histogram so
        far and this minute's glitches and ghosts."""
        s, m = self.stats, self.meter
        hist = " ".join(f"{name}:{n}" for name, n in s.histogram() if n)
        minute = s.minutes.get(max(s.minutes), [0, 0]) if s.minutes else [0, 0]
        return (
            f"-- {m.pulses} pulses, {m.glitches} glitches, {m.ghosts} ghosts; "
            f"widths {hist or 'none yet'}; this minute {minute[0]} glitches, "
            f"{minute[1]} ghosts\n"
        )


def replace_idle(config: MeterConfig) -> MeterConfig:
    """Watch needs no estimates between pulses."""
    from dataclasses import replace

    return replace(config, estimate_fall=0.0, idle_timeout_s=0.0)


def diagnose(
    stats: Stats, meter: Meter, options: dict
) -> Tuple[List[str], Dict[str, object]]:
    """Findings and suggested settings, each with its evidence."""
    cfg = stats.config
    findings: List[str] = []
    suggest: Dict[str, object] = {}
    edge = options.get("edge", "falling")
    pull = options.get("pull", "up")
    other = "rising" if edge == "falling" else "falling"
    if stats.edges == 0:
        findings.append(
            "no edges at all: check the wiring (the sensor's output on the "
            "configured pin), the pull (INPUT['pull'] is "
            f"{pull!r}: 'up' for an open-collector sensor without its own "
            "pull-up, 'off' for the TEPT5700 circuit with its resistor), and "
            "that the meter's LED flashes (switch a load on)"
        )
        return findings, suggest
    span = stats.span_s
    lit = stats.lit_ns / (span * NS_PER_S) if span > 0 else 0.0
    widths_ms = sorted(w / 1e6 for w in stats.widths)
    if not stats.pulse_only and widths_ms and lit > INVERTED_LIT:
        findings.append(
            f"the line is active {lit:.0%} of the time (median 'flash' "
            f"{statistics.median(widths_ms):.0f} ms): the sensor is inverted "
            f"or INPUT['edge'] is the wrong one: set INPUT['edge'] = {other!r}"
        )
        suggest["edge"] = (other, f"active {lit:.0%} of the time")
    else:
        suggest["edge"] = (edge, "flashes are short against the dark between them")
    suggest["pull"] = (pull, "edges were seen")
    # Flicker: flash starts at a lamp's 100 or 50 Hz.
    gaps = [(b - a) / 1e6 for a, b in zip(stats.starts, stats.starts[1:])]
    for hz in FLICKER_HZ:
        period = 1000.0 / hz
        near = sum(1 for g in gaps if abs(g - period) < period * 0.1)
        if gaps and near >= max(5, len(gaps) // 5):
            findings.append(
                f"light flickering at {hz:.0f} Hz: {near} flashes {period:.0f} ms "
                "apart (a mains lamp reaches the sensor): shield it from room light"
            )
            break
    if stats.pulse_only:
        findings.append(
            "this input reports pulse times only: no widths, no ghost filter"
        )
    real = [
        w
        for w in widths_ms
        if (cfg.min_pulse_ms <= w) and (not cfg.max_pulse_ms or w <= cfg.max_pulse_ms)
    ]
    sensing = not stats.pulse_only and "edge" in suggest and suggest["edge"][0] == edge
    limits = [cfg.min_pulse_ms, cfg.max_pulse_ms]
    straddle = [
        w
        for w in widths_ms
        if any(lim and abs(w - lim) <= lim * NEAR for lim in limits)
    ]
    if sensing and straddle:
        findings.append(
            f"{len(straddle)} flash widths lie within {NEAR:.0%} of the "
            f"limits (min_pulse_ms {cfg.min_pulse_ms:g}, max_pulse_ms "
            f"{cfg.max_pulse_ms:g}): the filter is deciding by a hair"
        )
    # The flashes to fit the limits to: those that pass them, or, when none
    # does, the main cluster of all widths (the meter's own flashes, if they
    # come with the load: the user must tell, so the finding says so).
    fit = real or (widths_ms if len(widths_ms) >= 3 else [])
    if sensing and fit:
        mid = statistics.median(fit)
        main = [w for w in fit if mid / 1.5 <= w <= mid * 1.5]
        low, high = min(main), max(main)
        evidence = (
            f"{len(main)} flashes {low:.1f} to {high:.1f} ms wide (median {mid:.1f})"
        )
        if not real:
            findings.append(
                f"no flash passed the width limits (min_pulse_ms "
                f"{cfg.min_pulse_ms:g}, max_pulse_ms {cfg.max_pulse_ms:g}): "
                f"{evidence}; if they come faster with more load they are the "
                "meter's, and the limits suggested below take them"
            )
            evidence = "if they are the meter's: " + evidence
        suggest["min_pulse_ms"] = (max(1, math.floor(low / 2)), evidence)
        suggest["max_pulse_ms"] = (
            max(math.ceil(high * 2), math.floor(low / 2) + 1),
            "twice the widest of them",
        )
    # debounce: below half the shortest interval between accepted pulses.
    accepted = [t for t, _ in stats.pulses]
    intervals = [(b - a) / 1e6 for a, b in zip(accepted, accepted[1:])]
    if intervals:
        shortest = min(intervals)
        debounce = min(cfg.debounce_ms, math.floor(shortest / 2))
        suggest["debounce_ms"] = (
            debounce,
            f"below half the shortest interval between pulses ({shortest:.0f} ms)",
        )
    if meter.ghosts:
        findings.append(f"{meter.ghosts} ghosts rejected (flash width)")
    if meter.glitches:
        findings.append(f"{meter.glitches} glitches (bounces, or inside debounce_ms)")
    if not findings:
        findings.append("all looks well")
    if options.get("backend") == "simulated":  # it has no edge or pull
        suggest.pop("edge", None)
        suggest.pop("pull", None)
    return findings, suggest


def summary(
    w: Watcher,
    options: dict,
    kettle: Optional[Tuple[float, float]],
    watched_s: float = 0.0,
) -> str:
    s, m = w.stats, w.meter
    lines = [
        "",
        f"summary: {s.edges} edges in {max(watched_s, s.span_s):.1f} s watched "
        f"({s.span_s:.1f} s from the first edge to the last): {m.pulses} pulses, "
        f"{m.glitches} glitches, {m.implausible} implausible, {m.ghosts} ghosts",
    ]
    if s.widths:
        lines.append("flash widths:")
        hist = s.histogram()
        most = max(n for _, n in hist)
        for name, n in hist:
            if n:
                lines.append(f"  {name:>12} {n:6d} {'#' * max(1, n * BAR // most)}")
    if s.minutes:
        per = ", ".join(f"{k}: {g}/{x}" for k, (g, x) in sorted(s.minutes.items()))
        lines.append(f"glitches/ghosts per minute: {per}")
    findings, suggest = diagnose(s, m, options)
    lines += [f"diagnosis: {f}" for f in findings]
    for key, (value, why) in suggest.items():
        where = "INPUT" if key in ("edge", "pull") else "METER"
        lines.append(f"suggest: {where}[{key!r}] = {value!r}  ({why})")
    if kettle is not None:
        lines.append(kettle_result(w, *kettle))
    return "\n".join(lines) + "\n"


def mean_power(
    pulses: List[Tuple[int, Optional[float]]], ppk: float
) -> Optional[float]:
    """Energy over time between the first and last pulse (W)."""
    if len(pulses) < 2:
        return None
    span = (pulses[-1][0] - pulses[0][0]) / NS_PER_S
    return (len(pulses) - 1) * 3_600_000.0 / ppk / span if span > 0 else None


def kettle_result(w: Watcher, watts: float, switch_ns: float) -> str:
    ppk = w.stats.config.pulses_per_kwh
    before = [p for p in w.stats.pulses if p[0] < switch_ns]
    after = [p for p in w.stats.pulses if p[0] >= switch_ns]
    base, loaded = mean_power(before, ppk), mean_power(after, ppk)
    if base is None or loaded is None:
        return (
            "kettle test: too few pulses before or after the load went on; "
            "run longer (--seconds)"
        )
    added = loaded - base
    ratio = added / watts
    text = (
        f"kettle test: {base:.0f} W before, {loaded:.0f} W with the load: "
        f"{added:.0f} W added for {watts:.0f} W switched on ({ratio:.0%})"
    )
    if abs(ratio - 1) <= 0.1:
        return text + f"; pulses_per_kwh {ppk:g} agrees"
    return text + (
        f"; METER['pulses_per_kwh'] may be {ppk * ratio:.0f}, not {ppk:g} "
        "(check the meter's label; other loads may have changed meanwhile)"
    )


def run(args, settings, log: logging.Logger, out: IO[str] = sys.stdout) -> int:
    """Watch the meter's input until --seconds, the input's end or Ctrl-C."""
    from core.options import Interrupted

    names = [m.config.name for m in settings.meters]
    pick = (
        settings.meters[names.index(args.meter)] if args.meter else settings.meters[0]
    )
    cfg = pick.config
    if pick.input_class.REGISTER:
        if args.record:
            return fail(
                EXIT_USAGE,
                f"--record: meter {cfg.name} reads its register, not edges; "
                "watch it without --record",
            )
        return watch_register(args, pick, log, out)
    backend = pick.input_class(pick.input_options, cfg, log)
    edges: queue.SimpleQueue = queue.SimpleQueue()

    def on_edge(t_ns: int, wall: float, kind: int = PULSE) -> None:
        edges.put((t_ns, wall, kind))  # the pulse path: one put

    record = Record(args.record, args.force) if args.record else None
    watcher = Watcher(cfg, out, args.plain)
    if record is not None:
        record.write(f"{EDGES_HEADER}\n# meter {cfg.name}: {backend.describe()}\n")
    kettle = None
    anchor = end_ns = switch_ns = None
    half = (args.seconds or 120.0) / 2

    def anchored(t_ns: int) -> None:
        nonlocal end_ns, switch_ns
        if args.seconds is not None:
            end_ns = t_ns + int(args.seconds * NS_PER_S)
        if args.kettle is not None:
            switch_ns = t_ns + int(half * NS_PER_S)

    start_holding_stops(backend, on_edge, edges.qsize)
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPS)
        out.write(  # once the input is open: edges from now on are seen
            f"watching meter {cfg.name}: {backend.describe()}, edge "
            f"{pick.input_options.get('edge', '-')}, pull "
            f"{pick.input_options.get('pull', '-')}; Ctrl-C ends\n"
        )
        out.flush()  # a script may wait for this line before the first flash
        # The input's own clock: a replay's starts at its first edge.
        anchor = None if backend.finite else backend.clock()[0]
        if anchor is not None:
            anchored(anchor)
        if args.kettle is not None:
            out.write(
                f"kettle test: keep other loads steady; switch on the "
                f"{args.kettle:g} W load when told (in {half:g} s)\n"
            )
        shown = time.monotonic()
        while True:
            if not args.plain and time.monotonic() - shown >= SHOW_EVERY_S:
                out.write(watcher.running())
                out.flush()
                shown = time.monotonic()
            try:
                t_ns, wall, kind = edges.get(timeout=0.2)
            except queue.Empty:
                now = backend.clock()[0]
                if anchor is None:
                    if backend.finished.is_set() and edges.empty():
                        break
                    continue
                watcher.tick(now)
                if end_ns is not None and now >= end_ns:
                    break
                if backend.finite and backend.finished.is_set() and edges.empty():
                    break
                if switch_ns is not None and now >= switch_ns and kettle is None:
                    kettle = (args.kettle, switch_ns)
                    out.write(
                        f"kettle test: switch on the {args.kettle:g} W load now\n"
                    )
                continue
            if anchor is None:
                anchor = t_ns
                anchored(anchor)
            if end_ns is not None and t_ns >= end_ns:
                break
            if switch_ns is not None and t_ns >= switch_ns and kettle is None:
                kettle = (args.kettle, switch_ns)
                out.write(f"kettle test: switch on the {args.kettle:g} W load now\n")
            if record is not None:
                record.write(edge_line(t_ns, wall, kind))
            watcher.edge(t_ns, wall, kind)
    except (KeyboardInterrupt, Interrupted):
        out.write("stopped\n")
    finally:
        backend.stop()
        if record is not None:
            record.close()
    if switch_ns is not None and kettle is None:
        kettle = (args.kettle, switch_ns)
    # The time watched, on the input's own clock (a replay's: its edges').
    end = backend.clock()[0] if end_ns is None else min(end_ns, backend.clock()[0])
    watched = max(0.0, (end - anchor) / NS_PER_S) if anchor is not None else 0.0
    out.write(summary(watcher, pick.input_options, kettle, watched))
    if record is not None and record.error:
        log.error(record.error)
        return 1
    return 0


# A Ctrl-C, however soon, must end with the summary and the input stopped:
# held back while the input starts, it comes inside the caller's try, which
# lets it through first.
STOPS = {signal.SIGINT, signal.SIGTERM}


def start_holding_stops(backend, on_edge, backlog) -> None:
    """Start the input with SIGINT and SIGTERM held; the caller unblocks
    them inside the try that ends with the summary."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOPS)
    try:
        backend.start(on_edge, backlog)
    except BaseException:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPS)
        raise


def check_record(path: str, replay: Optional[str], force: bool) -> None:
    """--record must not overwrite what was not meant: the file being
    replayed (it would be emptied before it is read), any regular file
    unless --force, and never a file a link names."""
    if replay is not None and os.path.exists(path) and os.path.exists(replay):
        if os.path.samefile(path, replay):
            raise SettingsError(
                f"--record {path}: that is the file --replay reads; it would be "
                "emptied before it is read. Record to another file"
            )
    if os.path.islink(path):
        raise SettingsError(
            f"--record {path}: a symbolic link (to {os.readlink(path)}); watch "
            "never writes through one: name the file itself"
        )
    if os.path.isfile(path) and not force:
        raise SettingsError(
            f"--record {path}: the file exists; add --force to overwrite it, or "
            "name a new file"
        )


def watch_register(args, pick, log: logging.Logger, out: IO[str]) -> int:
    """A register input (sml, d0, p1): each frame as it comes, with its
    OBIS codes and values, and each frame that could not be used (a CRC
    error, a cut or garbage frame), so a user can tell whether the read
    head sits right."""
    from core.csvformat import format_time
    from core.options import Interrupted

    backend = pick.input_class(pick.input_options, pick.config, log)
    frames: queue.SimpleQueue = queue.SimpleQueue()

    class Show:
        """Told by the reading thread: one put each, nothing more."""

        def frame(self, values, frame) -> None:
            frames.put((time.time(), values, frame, None))

        def bad(self, why: str) -> None:
            frames.put((time.time(), [], None, why))

    backend.observer = Show()  # type: ignore[attr-defined]
    start_holding_stops(backend, lambda *edge: None, lambda: 0)
    good = unusable = 0
    deadline = None if args.seconds is None else time.monotonic() + args.seconds
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPS)
        out.write(
            f"watching meter {pick.config.name}: {backend.describe()}; frames as "
            "they come; Ctrl-C ends\n"
        )
        out.flush()
        while deadline is None or time.monotonic() < deadline:
            try:
                wall, values, frame, why = frames.get(timeout=0.2)
            except queue.Empty:
                continue
            if why is not None:
                unusable += 1
                out.write(f"{format_time(wall)}  {why}: frame dropped\n")
            else:
                good += 1
                out.write(f"{format_time(wall)}  frame: {describe_frame(frame)}\n")
                out.writelines(f"    {v}\n" for v in values)
            out.flush()
    except (KeyboardInterrupt, Interrupted):
        out.write("stopped\n")
    finally:
        backend.stop()
    out.write(f"{good} frames read, {unusable} unusable\n")
    if good == 0 and unusable == 0:
        out.write(
            "no frame came: is the read head on the meter's optical interface "
            "(not its LED), its cable in the port named, and the meter sending? "
            "(a D0 meter in mode C answers a sign-on; check 'mode')\n"
        )
    elif unusable > good:
        out.write(
            "most frames were unusable: move the read head until it sits "
            "straight on the interface, or check 'baud' and 'framing'\n"
        )
    return 0


def describe_frame(frame) -> str:
    """A frame's registers in a few words."""
    if frame is None:
        return "no import or export register in it"
    parts = []
    if frame.total is not None:
        parts.append(f"import {frame.total:.4f} kWh")
    if frame.export is not None:
        parts.append(f"export {frame.export:.4f} kWh")
    parts.append("power unknown" if frame.rate is None else f"power {frame.rate:g} W")
    return ", ".join(parts)


class Record:
    """The --record file. A write that fails (a full disk) ends the
    record, not the watch: the summary still comes, then the error."""

    def __init__(self, path: str, force: bool = False) -> None:
        self.path = path
        self.error = ""
        # Never through a link, never over a file unless asked (--force); a
        # device or a FIFO (/dev/null, a pipe) is written as it is.
        flags = os.O_WRONLY | os.O_NOFOLLOW
        if not os.path.exists(path):
            flags |= os.O_CREAT | os.O_EXCL
        elif os.path.isfile(path) and force:
            flags |= os.O_TRUNC
        fd = os.open(path, flags, 0o644)
        self._file: Optional[IO[str]] = os.fdopen(fd, "w", encoding="utf-8")

    def write(self, text: str) -> None:
        if self._file is not None:
            try:
                self._file.write(text)
            except OSError as exc:
                self._failed(exc)

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError as exc:
                self._failed(exc)
            self._file = None

    def _failed(self, exc: OSError) -> None:
        self.error = (
            f"--record {self.path}: cannot write ({exc.strerror or exc}): the "
            "record holds the edges before that; free some space or record "
            "to another file"
        )
        file, self._file = self._file, None
        try:
            if file is not None:
                file.close()
        except OSError:
            pass


def main(argv: List[str]) -> int:
    """`power.py watch ...`: the input live, for setting up the sensor."""
    args = build_parser().parse_args(argv)
    try:
        if args.seconds is not None and not 0 < args.seconds < 1e7:
            raise SettingsError(
                f"--seconds {args.seconds:g}: expected more than 0 and less "
                "than 1e7 (about 115 days)"
            )
        if args.kettle is not None and not 1 <= args.kettle <= 1e6:
            raise SettingsError(f"--kettle {args.kettle:g}: expected 1 to 1e6 W")
        settings = load_for_run(args.settings, args.simulate, args.replay, args.speed)
        names = [m.config.name for m in settings.meters]
        if args.meter is not None and args.meter not in names:
            raise SettingsError(
                f"--meter {args.meter!r}: no such meter in the settings "
                f"({', '.join(names)})"
            )
        watched = next(
            m for m in settings.meters if args.meter in (None, m.config.name)
        )
        holder = pidcheck.lock_holder(settings.data_dir)
        if holder is not None and watched.input_class.exclusive:
            who = f"pid {holder}" if holder > 0 else "a running power"
            return fail(
                EXIT_FAILURE,
                f"power is running ({who}) and holds the meter's input; stop it "
                "first ('power.py --kill', or 'sudo service power stop' / "
                "'sudo systemctl stop power' for the service), then run watch "
                "again",
            )
        for m in settings.meters:
            if args.meter in (None, m.config.name):
                m.preflight()
                break
        if args.record:
            check_record(args.record, args.replay, args.force)
            problem = cannot_create(args.record, directory=False)
            if problem:
                raise SettingsError(f"--record {args.record}: {problem}")
    except SettingsError as exc:
        return fail(EXIT_USAGE, str(exc))
    log = logging.getLogger("power.watch")
    logging.basicConfig(level=logging.WARNING, format="power.py watch: %(message)s")
    try:
        return run(args, settings, log)
    except InputError as exc:
        return fail(EXIT_FAILURE, str(exc))
    except BrokenPipeError:
        raise  # stdout's reader went away: power.py ends quietly
    except OSError as exc:  # the --record file: taken, or not writable, now
        return fail(EXIT_FAILURE, f"--record {args.record}: {exc.strerror or exc}")
