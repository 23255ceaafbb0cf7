"""`power.py --status`: whether power runs (found by its lock, not by a
pidfile's text), each meter's input, the last reading, rejected edges, each
sink's backlog and failure streak, and the register's drift."""

from __future__ import annotations

import time
from typing import List, Optional

from config.settings import Settings
from core import register, rejects
from core.csvformat import format_time
from core.exits import EXIT_NOT_RUNNING, EXIT_OK
from core.journal import connect, journal_path, read_status
from service import pidcheck, runstate, sinkstate


def main(pidfile: str, settings: Optional[Settings]) -> int:
    pid = pidcheck.running_pid(pidfile, settings.data_dir if settings else None)
    running = (
        runstate.of_pid(journal_path(settings.data_dir), pid) if settings else None
    )
    if pid is not None and pidcheck.read_pid(pidfile) != pid:
        its = f"pidfile {running.pidfile}" if running and running.pidfile else "another"
        print(
            f"power is running (pid {pid}, found by its lock on DATA_DIR "
            f"{settings.data_dir if settings else ''}; it was started with "
            f"{its}, not {pidfile})"
        )
    elif pid is not None:
        print(f"power is running (pid {pid}, pidfile {pidfile})")
    else:
        print(f"power is not running (pidfile {pidfile})")
    code = EXIT_OK if pid is not None else EXIT_NOT_RUNNING
    if settings is None:
        return code  # no settings: no journal to read
    for m in settings.meters:
        if running is not None and m.config.name in running.inputs:
            what, why = running.inputs[m.config.name]  # the daemon's own word
            print(f"input of meter {m.config.name}: {what} ({why})")
        elif pid is not None:
            print(
                f"input of meter {m.config.name}: {m.input_note} (from the "
                "settings: the running power did not say which it reads)"
            )
        else:
            print(f"input of meter {m.config.name}: {m.input_note}")
    sinks = [s.name for s in settings.sinks]
    try:
        status = read_status(journal_path(settings.data_dir), sinks)
    except Exception as exc:  # any SQLite trouble: report, do not crash
        print(
            f"journal: {journal_path(settings.data_dir)} cannot be read ({exc}); "
            "power moves a damaged journal aside at its next start"
        )
        return code
    if status is None:
        print(f"last reading: none (no journal in DATA_DIR {settings.data_dir})")
    else:
        if not status.last:
            print("last reading: none yet")
        kinds = {m.config.name: m.config.kind for m in settings.meters}
        registers = {m.config.name for m in settings.meters if m.input_class.REGISTER}
        for name, r in status.last.items():
            volume = kinds.get(name, "electricity") != "electricity"
            rate, total = ("m³/h", "m³") if volume else ("W", "kWh")
            power = "unknown" if r.power_w is None else f"{r.power_w:.1f} {rate}"
            if r.estimate:
                bound = (
                    "0 W after the idle timeout"
                    if r.power_w == 0
                    else f"at most {power}"
                )
                power = f"{bound} (estimate: no pulse for {r.interval_s:.0f} s)"
            export = "" if r.export_kwh is None else f", export {r.export_kwh:.3f} kWh"
            count = (
                f"register {r.pulses} {'L' if volume else 'Wh'}"
                if name in registers
                else f"pulse {r.pulses}"
            )
            print(
                f"last reading: {name} at {format_time(r.time)}: {power}, "
                f"{r.energy_kwh:.3f} {total}{export}, {count}"
            )
        for name, counts in status.rejected.items():
            day = status.rejected_day.get(name, (0, 0, 0))
            if name in registers:  # frames, not edges
                print(
                    f"frames of {name} kept out: {frame_counts(day)} in the last "
                    f"24 h; {frame_counts(counts)} in all"
                )
                continue
            print(
                f"rejected edges of {name}: {rejects.describe(day)} in the last "
                f"24 h; {rejects.describe(counts)} in all"
            )
        errors = sink_errors(settings)
        for setup in settings.sinks:
            name = setup.name
            line = f"sink {name}: {backlog(settings, setup, status, pid)}"
            if name in errors:
                since, error = errors[name]
                if pid is not None:
                    age = describe_age(time.time() - since)
                    line += f"; failing since {format_time(since)} ({age}): {error}"
                else:
                    line += (
                        f"; was failing when power stopped (since "
                        f"{format_time(since)}): {error}"
                    )
            if name in status.skipped:
                count, first = status.skipped[name]
                line += (
                    f"; {count} refused as bad data and skipped (first at "
                    f"sequence {first}; see the log)"
                )
            print(line)
        for line in register_status(settings):
            print(line)
    return code


def backlog(settings: Settings, setup, status, pid: Optional[int]) -> str:
    """The sink's backlog: exact where the sink's own record says what it
    holds (the CSV's last line); else from its saved position, which a
    running daemon saves with its next commit, so then at most that."""
    counted = status.backlog[setup.name]
    last = setup.cls.last_written(setup.options)
    if last is not None:
        meter, pulses, at = last
        try:
            conn = connect(journal_path(settings.data_dir), readonly=True)
            try:
                row = conn.execute(
                    "SELECT max(seq) FROM readings WHERE meter = ? AND pulses = ? "
                    "AND abs(time - ?) < 0.0006",
                    (meter, pulses, at),
                ).fetchone()
                if row and row[0] is not None:
                    (counted,) = conn.execute(
                        "SELECT count(*) FROM readings WHERE seq > ?", (row[0],)
                    ).fetchone()
                    return f"backlog {counted} readings"
            finally:
                conn.close()
        except Exception:  # any SQLite trouble: fall back to the position
            pass
    if pid is not None and counted:
        return (
            f"backlog at most {counted} readings (its position is saved with "
            "the journal's next commit)"
        )
    return f"backlog {counted} readings"


def frame_counts(counts) -> str:
    """A register input's rejects: unusable frames and implausible totals."""
    return (
        f"{counts[0]} unusable (CRC errors, cut or garbage frames), "
        f"{counts[1]} with an implausible total"
    )


def sink_errors(settings: Settings):
    """Each failing sink's streak (since, error), as the daemon saved it."""

    try:
        conn = connect(journal_path(settings.data_dir), readonly=True)
        try:
            return sinkstate.read(conn)
        finally:
            conn.close()
    except Exception:  # read_status already said what is wrong with it
        return {}


def describe_age(seconds: float) -> str:
    """A duration as people say it: 45 s, 12 min, 3 h, 2 days."""
    if seconds < 90:
        return f"{max(seconds, 0):.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


def register_status(settings: Settings) -> List[str]:
    """Each meter's last register reading and its drift, for --status."""

    ppk = {m.config.name: m.config.pulses_per_kwh for m in settings.meters}
    try:
        conn = connect(journal_path(settings.data_dir), readonly=True)
        try:
            return register.status_lines(conn, list(ppk), ppk)
        finally:
            conn.close()
    except Exception as exc:  # any SQLite trouble: report, do not crash
        return [f"register readings: cannot be read ({exc})"]
