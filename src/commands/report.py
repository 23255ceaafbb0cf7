"""`power.py report`: energy (and cost) per hour, day or month from the
journal, with peak and base load and a bar chart in the terminal.

Reads the journal through a read-only connection, so it works while the
daemon runs. Periods are in local time, as a bill is. How each figure is
computed (any mean power is energy over time, never an average of readings):

- energy: the pulses counted in the period over the meter's pulses_per_kwh,
  as the meter's register counts them (the pulse that closes an interval
  belongs to the period it arrived in);
- peak: the highest power of a pulse, i.e. the mean power over its own
  interval (estimates between pulses are bounds, and left out);
- base load: the lowest mean power over a whole clock hour, each pulse's
  energy spread evenly over its interval; only hours that the intervals
  cover completely take part.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import os
import sqlite3
import stat
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

from config.settings import default_settings_path, load
from core import register, rejects
from core.exits import EXIT_USAGE, fail
from core.journal import columns, connect, journal_path, salvage
from core.options import SettingsError

BAR_WIDTH = 40
DEFAULT_SPAN = {"hour": dt.timedelta(days=2), "day": dt.timedelta(days=14)}


@dataclass
class Period:
    start: dt.datetime
    energy_kwh: float = 0.0
    peak_w: Optional[float] = None
    export_kwh: float = 0.0  # energy exported (meters that see it)
    rejected: Tuple[int, int, int] = (0, 0, 0)  # glitches, implausible, ghosts


@dataclass
class MeterReport:
    meter: str
    periods: Dict[dt.datetime, Period] = field(default_factory=dict)
    peak: Optional[Tuple[float, float]] = None  # (W, epoch time)
    # Per clock hour (epoch seconds of its start): energy spread over the
    # pulse intervals, in kWh, and the seconds those intervals covered.
    hourly_kwh: Dict[float, float] = field(default_factory=dict)
    hourly_covered: Dict[float, float] = field(default_factory=dict)
    has_export: bool = False
    kind: str = "electricity"  # gas, water: m³ and m³/h

    @property
    def total_kwh(self) -> float:
        return sum(p.energy_kwh for p in self.periods.values())

    @property
    def total_export_kwh(self) -> float:
        return sum(p.export_kwh for p in self.periods.values())

    @property
    def units(self) -> Tuple[str, str]:
        """(total, rate) as this meter counts them."""
        return ("kWh", "W") if self.kind == "electricity" else ("m³", "m³/h")

    @property
    def rejected(self) -> Tuple[int, int, int]:
        counts = [p.rejected for p in self.periods.values()]
        return (
            sum(c[0] for c in counts),
            sum(c[1] for c in counts),
            sum(c[2] for c in counts),
        )

    def spread(self, start: float, end: float, kwh: float) -> None:
        """Add a pulse's energy, spread evenly over [start, end]."""
        length = end - start
        t = start
        while t < end:
            hour = hour_start(t)
            upto = min(end, hour + 3600.0)
            part = upto - t
            self.hourly_kwh[hour] = self.hourly_kwh.get(hour, 0.0) + kwh * part / length
            self.hourly_covered[hour] = self.hourly_covered.get(hour, 0.0) + part
            t = upto

    def base_load_w(self) -> Optional[float]:
        """The lowest mean power over a whole hour (the house's standby):
        that hour's energy over its length, from hours wholly covered."""
        whole = [
            self.hourly_kwh[h]
            for h, covered in self.hourly_covered.items()
            if covered >= 3600.0 - 1e-6
        ]
        return min(whole) * 1000.0 if whole else None


def hour_start(t: float) -> float:
    """The start of the local clock hour holding epoch time t."""
    local = dt.datetime.fromtimestamp(t)
    return floor(local, "hour").timestamp()


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
    kinds: Optional[Dict[str, str]] = None,
    registers: Iterable[str] = (),
) -> List[MeterReport]:
    """Stream the readings in [since, until) into per-meter reports.
    Export per period is the export total's rise in it."""
    reports: Dict[str, MeterReport] = {}
    previous: Dict[str, int] = {}
    exported: Dict[str, float] = {}
    kinds = kinds or {}
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
    names_of = columns(conn).split(", ")
    estimate, export = names_of[7], names_of[8]
    for name in names:
        row = conn.execute(
            f"SELECT {export} FROM readings WHERE meter = ? AND time < ? AND "
            f"{export} IS NOT NULL ORDER BY seq DESC LIMIT 1",
            (name, since),
        ).fetchone()
        if row:
            exported[name] = row[0]
    rows = conn.execute(
        f"SELECT time, meter, pulses, power_w, interval_s, {estimate}, {export} "
        "FROM readings WHERE time >= ? AND time < ? ORDER BY seq",
        (since, until),
    )
    for t, name, pulses, power, interval, is_estimate, export_kwh in rows:
        if meter and name != meter:
            continue
        if export_kwh is not None and not is_estimate:
            report = reports.get(name)
            if report is None:
                report = reports[name] = MeterReport(
                    name, kind=kinds.get(name, "electricity")
                )
            report.has_export = True
            before_export = exported.get(name, export_kwh)
            exported[name] = export_kwh
            if export_kwh > before_export:
                start = floor(dt.datetime.fromtimestamp(t), by)
                period = report.periods.get(start)
                if period is None:
                    period = report.periods[start] = Period(start)
                period.export_kwh += export_kwh - before_export
        if is_estimate or (power == 0.0 and pulses == previous.get(name)):
            continue  # not a pulse: a bound between pulses, or a 0 W idle row
        if pulses == previous.get(name):
            continue  # no import: an export reading (or a register at rest)
        report = reports.get(name)
        if report is None:
            report = reports[name] = MeterReport(
                name, kind=kinds.get(name, "electricity")
            )
        # A pulse meter's first pulse is one pulse; a register's first
        # reading in the period is where it stood, no energy of its own.
        before = previous.get(name, pulses if name in registers else pulses - 1)
        previous[name] = pulses
        kwh = max(0, pulses - before) / pulses_per_kwh.get(name, 1000.0)
        local = dt.datetime.fromtimestamp(t)
        start = floor(local, by)
        period = report.periods.get(start)
        if period is None:
            period = report.periods[start] = Period(start)
        period.energy_kwh += kwh
        if interval and kwh > 0:
            report.spread(
                max(t - interval, since), t, kwh * min(1.0, (t - since) / interval)
            )
        if power is not None:
            if period.peak_w is None or power > period.peak_w:
                period.peak_w = power
            if report.peak is None or power > report.peak[0]:
                report.peak = (power, t)
    for name, hour, counts in rejects.hourly(conn, since, until):
        if meter and name != meter:
            continue
        report = reports.get(name)
        if report is None:
            report = reports[name] = MeterReport(
                name, kind=kinds.get(name, "electricity")
            )
        start = floor(dt.datetime.fromtimestamp(hour), by)
        period = report.periods.get(start)
        if period is None:
            period = report.periods[start] = Period(start)
        period.rejected = tuple(a + b for a, b in zip(period.rejected, counts))
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
        total_unit, rate_unit = report.units
        what = "energy" if report.kind == "electricity" else report.kind
        out.write(f"Meter {report.meter}: {what} by {by}, {span} (local time)\n\n")
        head = f"{'period':<16} {total_unit:>10}"
        if report.has_export:
            head += f" {'export kWh':>10}"
        if tariff is not None:
            head += f" {'cost':>9}"
        health = any(report.rejected)  # rejected edges: a column for ghosts
        peak = f"peak {rate_unit}"
        out.write(head + f" {peak:>9}" + (f" {'ghosts':>6}" if health else ""))
        out.write("\n")
        periods = [report.periods[k] for k in sorted(report.periods)]
        largest = max(p.energy_kwh for p in periods)
        for p in periods:
            line = f"{label(p.start, by):<16} {p.energy_kwh:10.3f}"
            if report.has_export:
                line += f" {p.export_kwh:10.3f}"
            if tariff is not None:
                line += f" {p.energy_kwh * tariff:9.2f}"
            places = 0 if report.kind == "electricity" else 3
            peak = "" if p.peak_w is None else f"{p.peak_w:.{places}f}"
            line += f" {peak:>9}"
            if health:
                line += f" {p.rejected[2]:>6}"
            out.write(line + f"  {bar(p.energy_kwh, largest)}\n")
        total = f"{'total':<16} {report.total_kwh:10.3f}"
        if report.has_export:
            total += f" {report.total_export_kwh:10.3f}"
        if tariff is not None:
            total += f" {report.total_kwh * tariff:9.2f}"
        out.write(total + "\n\n")
        if report.peak is not None:
            when = dt.datetime.fromtimestamp(report.peak[1]).strftime("%Y-%m-%d %H:%M")
            if report.kind == "electricity":
                out.write(f"peak load: {report.peak[0]:.0f} W at {when}\n")
            else:
                out.write(f"peak flow: {report.peak[0]:.3f} m³/h at {when}\n")
        base = report.base_load_w()
        if base is not None and report.kind == "electricity":
            out.write(f"base load: {base:.0f} W (the lowest mean over a whole hour)\n")
        if health:
            out.write(f"rejected edges: {rejects.describe(report.rejected)}\n")
        out.write("\n")
    return out.getvalue()


def render_csv(reports: List[MeterReport], by: str, tariff: Optional[float]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["period", "meter", "energy_kwh", "cost", "peak_w"]
        + list(rejects.KINDS)
        + ["export_kwh", "volume_m3", "peak_flow_m3h"]
    )
    for report in reports:
        for key in sorted(report.periods):
            p = report.periods[key]
            cost = "" if tariff is None else f"{p.energy_kwh * tariff:.2f}"
            peak = "" if p.peak_w is None else f"{p.peak_w:.1f}"
            export = f"{p.export_kwh:.3f}" if report.has_export else ""
            if report.kind == "electricity":
                amounts = [f"{p.energy_kwh:.3f}", cost, peak]
                volumes = ["", ""]
            else:  # a gas or water meter: its m³ in columns of their own
                flow = "" if p.peak_w is None else f"{p.peak_w:.4f}"
                amounts, volumes = ["", cost, ""], [f"{p.energy_kwh:.3f}", flow]
            writer.writerow(
                [label(p.start, by), report.meter, *amounts]
                + list(p.rejected)
                + [export, *volumes]
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
    p.add_argument(
        "--journal",
        metavar="FILE",
        help="read this journal instead of DATA_DIR's (one moved aside as "
        "damaged: what can still be read)",
    )
    return p


def parse_args(argv: Iterable[str]) -> argparse.Namespace:
    p = build_parser()
    args = p.parse_args(list(argv))
    if args.tariff is not None and not 0 <= args.tariff < 1e6:
        p.error(f"--tariff {args.tariff:g}: expected a price per kWh of 0 or more")
    return args


SQLITE_MAGIC = b"SQLite format 3\x00"


def not_a_journal(path: str) -> Optional[str]:
    """Why `path` cannot be a journal (a moved-aside one included), or None.
    Checked before SQLite opens it: a FIFO would block, /dev/zero never end."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "no such file"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if stat.S_ISDIR(st.st_mode):
        return "is a directory; name the journal file in it (journal.sqlite3)"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file (a FIFO, a device?); name a journal file"
    if st.st_size == 0:
        return "is empty (0 bytes): not a journal"
    try:
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if head != SQLITE_MAGIC:
        return "is not an SQLite file, so not a journal of power's"
    try:
        conn = connect(path, readonly=True)
        try:
            tables = {
                name
                for (name,) in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                )
            }
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return None  # damaged: the report salvages what it can
    if "readings" not in tables:
        return "is an SQLite file but not a journal of power's (no readings table)"
    return None


def _build_from(path: str, since, until, args: argparse.Namespace):
    """The reports and the register lines from the journal at `path`."""
    conn = connect(path, readonly=True)
    try:
        reports = build(
            conn,
            since.timestamp(),
            until.timestamp(),
            args.by,
            args.ppk,
            args.meter,
            getattr(args, "kinds", {}),
            getattr(args, "registers", set()),
        )
        names = [args.meter] if args.meter else sorted(args.ppk)
        try:
            registers = register.status_lines(conn, names, args.ppk)
        except sqlite3.OperationalError:  # a salvaged copy without the table
            registers = []
        return reports, registers
    finally:
        conn.close()


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
    args.ppk = ppk
    path = args.journal or journal_path(data_dir)
    try:
        reports, registers = _build_from(path, since, until, args)
    except sqlite3.DatabaseError as exc:
        if not args.journal:
            print(
                f"power.py report: cannot read the journal {path}: {exc}",
                file=sys.stderr,
            )
            return 1
        # A journal moved aside as damaged: report on what can be read.
        with tempfile.TemporaryDirectory() as tmp:
            copy = os.path.join(tmp, "salvaged.sqlite3")
            try:
                copied, lost = salvage(path, copy)
                reports, registers = _build_from(copy, since, until, args)
            except sqlite3.Error as exc2:
                print(
                    f"power.py report: cannot read the journal {path}: {exc2}",
                    file=sys.stderr,
                )
                return 1
        print(
            f"power.py report: {path} is damaged ({exc}); reporting the "
            f"{copied} readings that could be read ({lost} sequence numbers "
            "unreadable)",
            file=sys.stderr,
        )
    if not args.until:
        later = _after(path, until.timestamp(), args.meter)
        if later:
            # A replay or a simulation at --speed above 1 stamps readings
            # ahead of the clock; the default span ends now.
            latest = dt.datetime.fromtimestamp(_latest(path, args.meter))
            print(
                f"power.py report: left out {later} readings after now (the "
                f"latest at {latest:%Y-%m-%d %H:%M}, from a replay or a "
                "simulation faster than the clock?); give --until to include "
                f"them, e.g. --until {latest + dt.timedelta(days=1):%Y-%m-%d}",
                file=sys.stderr,
            )
    if args.csv:
        sys.stdout.write(render_csv(reports, args.by, args.tariff))
    else:
        span = f"{since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M}"
        sys.stdout.write(render_text(reports, args.by, args.tariff, span))
        sys.stdout.write("".join(line + "\n" for line in registers))
    return 0


def _after(path: str, t: float, meter: Optional[str]) -> int:
    """Readings (pulses, not estimates) stamped at or after `t`."""
    try:
        conn = connect(path, readonly=True)
        try:
            only = "AND meter = ?" if meter else ""
            (n,) = conn.execute(
                f"SELECT count(*) FROM readings WHERE time >= ? {only}",
                (t, meter) if meter else (t,),
            ).fetchone()
            return n
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def _latest(path: str, meter: Optional[str]) -> float:
    conn = connect(path, readonly=True)
    try:
        only = "WHERE meter = ?" if meter else ""
        (t,) = conn.execute(
            f"SELECT max(time) FROM readings {only}", (meter,) if meter else ()
        ).fetchone()
        return t or 0.0
    finally:
        conn.close()


def main(argv: List[str]) -> int:
    """`power.py report ...`: energy per period from the journal."""
    args = parse_args(argv)
    try:
        settings = load(args.settings or default_settings_path())
        ppk = {m.config.name: m.config.pulses_per_kwh for m in settings.meters}
        args.kinds = {m.config.name: m.config.kind for m in settings.meters}
        args.registers = {
            m.config.name for m in settings.meters if m.input_class.REGISTER
        }
        if args.journal:
            problem = not_a_journal(args.journal)
            if problem:
                return fail(EXIT_USAGE, f"--journal {args.journal}: {problem}")
        elif not os.path.exists(journal_path(settings.data_dir)):
            return fail(
                EXIT_USAGE,
                f"no journal in DATA_DIR {settings.data_dir} yet: power has not "
                "run with these settings (or --settings names another file)",
            )
        return run(args, settings.data_dir, ppk)
    except SettingsError as exc:
        return fail(EXIT_USAGE, str(exc))
