"""`power.py report`: energy (and cost) per hour, day or month from the
journal, with peak and base load and a bar chart in the terminal.

Reads the journal through a read-only connection, so it works while the
daemon runs. Periods are in local time, as a bill is. Energy in a period is
the pulses counted in it divided by the meter's pulses_per_kwh; the pulse
that closes an interval belongs to the period it arrived in.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import sqlite3
import sys
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

from journal import connect, journal_path
from options import SettingsError

BAR_WIDTH = 40
DEFAULT_SPAN = {"hour": dt.timedelta(days=2), "day": dt.timedelta(days=14)}


@dataclass
class Period:
    start: dt.datetime
    energy_kwh: float = 0.0
    peak_w: Optional[float] = None


@dataclass
class MeterReport:
    meter: str
    periods: Dict[dt.datetime, Period] = field(default_factory=dict)
    peak: Optional[Tuple[float, float]] = None  # (W, epoch time)
    hourly_kwh: Dict[dt.datetime, float] = field(default_factory=dict)

    @property
    def total_kwh(self) -> float:
        return sum(p.energy_kwh for p in self.periods.values())

    def base_load_w(self) -> Optional[float]:
        """The lowest mean power over a whole hour (the house's standby)."""
        whole = list(self.hourly_kwh.values())[1:-1]  # drop partial ends
        return min(whole) * 1000.0 if whole else None


def parse_when(text: str, option: str) -> dt.datetime:
    for fmt in ("%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m"):
        try:
            return dt.datetime.strptime(text, fmt)
        except ValueError:
            continue
    raise SettingsError(
        f"{option} {text!r}: expected a local date like 2024-05-01, "
        "2024-05-01T18:00 or 2024-05"
    )


def floor(t: dt.datetime, by: str) -> dt.datetime:
    if by == "hour":
        return t.replace(minute=0, second=0, microsecond=0)
    if by == "day":
        return t.replace(hour=0, minute=0, second=0, microsecond=0)
    return t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def label(t: dt.datetime, by: str) -> str:
    return t.strftime(
        {"hour": "%Y-%m-%d %H:00", "day": "%Y-%m-%d", "month": "%Y-%m"}[by]
    )


def default_since(until: dt.datetime, by: str) -> dt.datetime:
    if by == "month":
        year, month = until.year, until.month - 11
        if month <= 0:
            year, month = year - 1, month + 12
        return dt.datetime(year, month, 1)
    return floor(until - DEFAULT_SPAN[by], by)


def build(
    conn: sqlite3.Connection,
    since: float,
    until: float,
    by: str,
    pulses_per_kwh: Dict[str, float],
    meter: Optional[str] = None,
) -> List[MeterReport]:
    """Stream the readings in [since, until) into per-meter reports."""
    reports: Dict[str, MeterReport] = {}
    previous: Dict[str, int] = {}
    known = [r[0] for r in conn.execute("SELECT name FROM meters ORDER BY name")]
    if meter and meter not in known:
        raise SettingsError(
            f"--meter {meter!r}: the journal has no meter of that name; it has "
            + (", ".join(repr(n) for n in known) if known else "none yet")
        )
    names = [meter] if meter else known
    for name in names:
        row = conn.execute(
            "SELECT pulses FROM readings WHERE meter = ? AND time < ? "
            "ORDER BY seq DESC LIMIT 1",
            (name, since),
        ).fetchone()
        if row:
            previous[name] = row[0]
    rows = conn.execute(
        "SELECT time, meter, pulses, power_w FROM readings "
        "WHERE time >= ? AND time < ? ORDER BY seq",
        (since, until),
    )
    for t, name, pulses, power in rows:
        if meter and name != meter:
            continue
        report = reports.get(name)
        if report is None:
            report = reports[name] = MeterReport(name)
        before = previous.get(name, pulses - 1)
        previous[name] = pulses
        kwh = max(0, pulses - before) / pulses_per_kwh.get(name, 1000.0)
        local = dt.datetime.fromtimestamp(t)
        start = floor(local, by)
        period = report.periods.get(start)
        if period is None:
            period = report.periods[start] = Period(start)
        period.energy_kwh += kwh
        hour = floor(local, "hour")
        report.hourly_kwh[hour] = report.hourly_kwh.get(hour, 0.0) + kwh
        if power is not None:
            if period.peak_w is None or power > period.peak_w:
                period.peak_w = power
            if report.peak is None or power > report.peak[0]:
                report.peak = (power, t)
    return [reports[k] for k in sorted(reports)]


def bar(value: float, largest: float) -> str:
    """A bar of eighths of a block, so small differences still show."""
    if largest <= 0:
        return ""
    eighths = int(round(value / largest * BAR_WIDTH * 8))
    full, rest = divmod(eighths, 8)
    return "█" * full + ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")[rest]


def render_text(
    reports: List[MeterReport], by: str, tariff: Optional[float], span: str
) -> str:
    out = io.StringIO()
    if not reports:
        return f"No readings {span}.\n"
    for report in reports:
        out.write(f"Meter {report.meter}: energy by {by}, {span} (local time)\n\n")
        head = f"{'period':<16} {'kWh':>10}"
        if tariff is not None:
            head += f" {'cost':>9}"
        out.write(head + f" {'peak W':>8}\n")
        periods = [report.periods[k] for k in sorted(report.periods)]
        largest = max(p.energy_kwh for p in periods)
        for p in periods:
            line = f"{label(p.start, by):<16} {p.energy_kwh:10.3f}"
            if tariff is not None:
                line += f" {p.energy_kwh * tariff:9.2f}"
            peak = "" if p.peak_w is None else f"{p.peak_w:.0f}"
            out.write(line + f" {peak:>8}  {bar(p.energy_kwh, largest)}\n")
        total = f"{'total':<16} {report.total_kwh:10.3f}"
        if tariff is not None:
            total += f" {report.total_kwh * tariff:9.2f}"
        out.write(total + "\n\n")
        if report.peak is not None:
            when = dt.datetime.fromtimestamp(report.peak[1]).strftime("%Y-%m-%d %H:%M")
            out.write(f"peak load: {report.peak[0]:.0f} W at {when}\n")
        base = report.base_load_w()
        if base is not None:
            out.write(f"base load: {base:.0f} W (the lowest mean over a whole hour)\n")
        out.write("\n")
    return out.getvalue()


def render_csv(reports: List[MeterReport], by: str, tariff: Optional[float]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["period", "meter", "energy_kwh", "cost", "peak_w"])
    for report in reports:
        for key in sorted(report.periods):
            p = report.periods[key]
            cost = "" if tariff is None else f"{p.energy_kwh * tariff:.2f}"
            peak = "" if p.peak_w is None else f"{p.peak_w:.1f}"
            writer.writerow(
                [label(p.start, by), report.meter, f"{p.energy_kwh:.3f}", cost, peak]
            )
    return out.getvalue()


def build_parser() -> argparse.ArgumentParser:
    """The parser of `power.py report` (the manual's reference is made from it)."""
    p = argparse.ArgumentParser(
        prog="power.py report",
        description="Energy per hour, day or month from the journal.",
    )
    p.add_argument("--settings", metavar="PATH", help="settings file, as for power.py")
    p.add_argument("--since", metavar="DATE", help="local start (default: by --by)")
    p.add_argument("--until", metavar="DATE", help="local end, excluded (default: now)")
    p.add_argument("--by", choices=("hour", "day", "month"), default="day")
    p.add_argument(
        "--tariff", metavar="PRICE_PER_KWH", type=float, help="add a cost column"
    )
    p.add_argument("--meter", metavar="NAME", help="only this meter")
    p.add_argument("--csv", action="store_true", help="CSV for spreadsheets")
    return p


def parse_args(argv: Iterable[str]) -> argparse.Namespace:
    p = build_parser()
    args = p.parse_args(list(argv))
    if args.tariff is not None and not 0 <= args.tariff < 1e6:
        p.error(f"--tariff {args.tariff:g}: expected a price per kWh of 0 or more")
    return args


def run(args: argparse.Namespace, data_dir: str, ppk: Dict[str, float]) -> int:
    """Print the report; return the exit code."""
    until = parse_when(args.until, "--until") if args.until else dt.datetime.now()
    since = (
        parse_when(args.since, "--since")
        if args.since
        else default_since(until, args.by)
    )
    if since >= until:
        raise SettingsError(f"--since {since} is not before --until {until}")
    path = journal_path(data_dir)
    try:
        conn = connect(path, readonly=True)
        try:
            reports = build(
                conn, since.timestamp(), until.timestamp(), args.by, ppk, args.meter
            )
        finally:
            conn.close()
    except sqlite3.Error as exc:
        print(
            f"power.py report: cannot read the journal {path}: {exc}", file=sys.stderr
        )
        return 1
    if args.csv:
        sys.stdout.write(render_csv(reports, args.by, args.tariff))
    else:
        span = f"{since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M}"
        sys.stdout.write(render_text(reports, args.by, args.tariff, span))
    return 0
