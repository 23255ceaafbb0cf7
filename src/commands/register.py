"""`power.py register KWH`: record a reading of the meter's register; the
first sets the total, later ones show the drift (core/register.py)."""

from __future__ import annotations

import argparse
import os
import sqlite3
import time
from typing import List

from config.settings import default_settings_path, load
from core import register
from core.exits import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, fail
from core.journal import journal_path, open_schema
from core.options import SettingsError
from service.preflight import cannot_create


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="power.py register",
        description="Record a reading of the meter's register: the first sets "
        "energy_kwh to it, later ones show the drift.",
    )
    p.add_argument("kwh", metavar="KWH", help="the meter's display, e.g. 12345.6")
    p.add_argument("--settings", metavar="PATH", help="settings file, as for power.py")
    p.add_argument("--meter", metavar="NAME", help="the meter (with several)")
    p.add_argument("--at", metavar="TIME", help="local time it was read (default: now)")
    p.add_argument(
        "--rebase",
        action="store_true",
        help="set energy_kwh to this reading even if it is not the first",
    )
    return p


def main(argv: List[str]) -> int:
    """`power.py register KWH ...`: a reading of the meter's register."""
    args = build_parser().parse_args(argv)
    try:
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
            lines = register.record(
                conn,
                name,
                args.kwh,
                when,
                meter.pulses_per_kwh,
                meter.energy_offset_kwh,
                args.rebase,
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
