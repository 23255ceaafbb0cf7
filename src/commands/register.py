"""`power.py register KWH`: record a reading of the meter's register; the
first sets the total, later ones show the drift (core/register.py)."""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import time
from typing import List

from config.settings import default_settings_path, load
from core import register
from core.exits import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, fail
from core.journal import journal_path, open_schema, read_mark
from core.options import SettingsError
from service import pidcheck
from service.preflight import cannot_create

FLUSH_TIMEOUT_S = 10.0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="power.py register",
        description="Record a reading of the meter's register: the first sets "
        "energy_kwh to it, later ones show the drift.",
    )
    p.add_argument(
        "kwh", metavar="KWH", nargs="?", help="the meter's display, e.g. 12345.6"
    )
    p.add_argument("--settings", metavar="PATH", help="settings file, as for power.py")
    p.add_argument("--meter", metavar="NAME", help="the meter (with several)")
    p.add_argument("--at", metavar="TIME", help="local time it was read (default: now)")
    p.add_argument(
        "--rebase",
        action="store_true",
        help="set energy_kwh to this reading even if it is not the first",
    )
    p.add_argument(
        "--replaced",
        action="store_true",
        help="the meter was replaced: take this reading, lower than the one "
        "before, as the start of a new series (energy_kwh is set to it)",
    )
    p.add_argument(
        "--withdraw",
        action="store_true",
        help="take the meter's newest register reading back (a typo); give no KWH",
    )
    return p


def main(argv: List[str]) -> int:
    """`power.py register KWH ...`: a reading of the meter's register."""
    args = build_parser().parse_args(argv)
    try:
        if args.withdraw and (args.kwh is not None or args.rebase or args.replaced):
            raise SettingsError(
                "--withdraw takes the newest reading back: give it no KWH, "
                "--rebase or --replaced"
            )
        if not args.withdraw and args.kwh is None:
            raise SettingsError(
                "give the meter's reading in kWh, like 'power.py register "
                "12345.6', or --withdraw to take the newest one back"
            )
        settings = load(args.settings or default_settings_path())
        names = [m.config.name for m in settings.meters]
        if args.meter is None and len(names) > 1:
            raise SettingsError(
                f"several meters ({', '.join(names)}): name one with --meter"
            )
        name = args.meter or names[0]
        if name not in names:
            raise SettingsError(
                f"--meter {name!r}: no such meter in the settings ({', '.join(names)})"
            )
        meter = settings.meters[names.index(name)].config
        when = register.parse_at(args.at) if args.at else time.time()
        if not args.withdraw:
            register.parse_kwh(args.kwh)  # a bad number is bad usage
        problem = cannot_create(settings.data_dir, directory=True)
        if problem:
            raise SettingsError(f"DATA_DIR = {settings.data_dir!r}: {problem}")
        os.makedirs(settings.data_dir, exist_ok=True)
    except SettingsError as exc:
        return fail(EXIT_USAGE, str(exc))
    journal = journal_path(settings.data_dir)
    try:
        conn = open_schema(journal)
        try:
            if args.withdraw:
                lines = register.withdraw(conn, name)
            else:
                take_live_count(conn, settings.data_dir)
                mark = read_mark(journal)
                lines = register.record(
                    conn,
                    name,
                    args.kwh,
                    when,
                    meter.pulses_per_kwh,
                    meter.energy_offset_kwh,
                    args.rebase,
                    args.replaced,
                    floor=mark.meters.get(name, 0) if mark else 0,
                )
        finally:
            conn.close()
    except register.RegisterError as exc:
        return fail(EXIT_FAILURE, str(exc))
    except SettingsError as exc:
        return fail(EXIT_USAGE, str(exc))
    except (sqlite3.Error, OSError) as exc:
        return fail(EXIT_FAILURE, f"cannot write the journal {journal}: {exc}")
    for line in lines:
        print(line)
    return EXIT_OK


def take_live_count(conn: sqlite3.Connection, data_dir: str) -> None:
    """With power running, have it commit what its meters counted until now
    (SIGUSR1) and wait for that commit: the register is compared with the
    count the meter has at the reading's time, not the last commit's (up to
    COMMIT_INTERVAL_S behind). RegisterError when it does not answer."""
    pid = pidcheck.lock_holder(data_dir)
    if pid is None:
        return  # not running: the journal has every count
    if pid <= 0:
        raise register.RegisterError(
            f"power runs on DATA_DIR {data_dir} but its pid is unknown, so it "
            "cannot be asked for its count; stop it, register, start it again"
        )
    asked = time.time()
    try:
        os.kill(pid, signal.SIGUSR1)
    except PermissionError:
        raise register.RegisterError(
            f"power (pid {pid}) runs as another user and cannot be asked for "
            "its count: run register as root or as that user"
        ) from None
    except ProcessLookupError:
        return  # it stopped just now: it committed everything
    deadline = time.monotonic() + FLUSH_TIMEOUT_S
    while time.monotonic() < deadline:
        row = conn.execute("SELECT at FROM flushed WHERE id = 1").fetchone()
        if row is not None and row[0] >= asked:
            return
        time.sleep(0.05)
    raise register.RegisterError(
        f"power (pid {pid}) did not commit its count within "
        f"{FLUSH_TIMEOUT_S:g} s; try again (its log may say why)"
    )
