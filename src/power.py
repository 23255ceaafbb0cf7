#!/usr/bin/env python3
"""power: read an electricity meter's pulse LED and publish what the house uses.

Runs in the foreground (--nodaemon) or as a classic forking daemon with a
pidfile (python-daemon and lockfile); --kill stops it, --status reports on
it. See README.rst and the manual in docs/.
"""

from __future__ import annotations

import _signal  # built in: no import time before the handler is set
import os  # loaded by the interpreter already: no import time


def _die_by(signum: int, frame: object) -> None:
    """A Ctrl-C while importing: end by the signal, with no traceback. A
    handler, not SIG_DFL: a Ctrl-C the interpreter caught but had not yet
    handled is handled by it (with SIG_DFL set then, Python drops it)."""
    _signal.signal(signum, _signal.SIG_DFL)
    os.kill(os.getpid(), signum)


if __name__ == "__main__":
    _signal.signal(_signal.SIGINT, _die_by)

import argparse  # noqa: E402
import importlib  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from typing import Callable, List, Optional  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from commands import kill, status  # noqa: E402
from commands.cli import (  # noqa: E402
    USAGE,
    ArgumentParser,
    add_options,
    split_command,
    stray_word,
)
from config.settings import Settings, load_for_run  # noqa: E402
from core.exits import EXIT_OK, EXIT_USAGE, fail  # noqa: E402
from core.options import Interrupted, SettingsError, StopWhileStarting  # noqa: E402
from service.account import uid_of  # noqa: E402
from service.pidcheck import PIDFILE_NAME  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """The main parser: running, --kill and --status. Commands have their
    own (SUBCOMMANDS), listed in its epilog."""
    commands = "\n".join(
        f"  {name:<10} {entry[0]}" for name, entry in SUBCOMMANDS.items()
    )
    p = ArgumentParser(
        prog="power.py",
        usage=USAGE,
        description="Read an electricity meter's pulse LED and publish the "
        "readings (CSV file, InfluxDB, Librato, MQTT, ThingsBoard).",
        epilog=f"commands:\n{commands}\n\nGlobal options such as --settings may "
        "stand before or after a command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(p)
    return p


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    p = build_parser()
    args = p.parse_args(argv)
    if args.simulate is not None and not 1 <= args.simulate <= 1_000_000:  # NaN too
        p.error(f"--simulate {args.simulate:g}: expected a mean load from 1 to 1e6 W")
    if args.speed is not None and not 0 <= args.speed <= 1e9:  # NaN too
        p.error(f"--speed {args.speed:g}: expected a factor from 0 to 1e9")
    return args


def pidfile_path(args: argparse.Namespace, settings: Settings) -> str:
    if args.pidfile:
        return os.path.abspath(args.pidfile)
    if settings.pidfile:
        return settings.pidfile
    return os.path.join(settings.data_dir, PIDFILE_NAME)


def _lazy(module: str, name: str) -> Callable:
    """`name` of a command's module, imported only when that command runs."""

    def call(*args):
        return getattr(importlib.import_module(module), name)(*args)

    return call


# Commands: name -> (one line of help, entry point taking its arguments, a
# function returning its argparse parser). The manual's command-line
# reference is made from these parsers, so a command added here appears there.
SUBCOMMANDS = {
    "report": (
        "energy, cost, peak and base load per hour, day or month",
        _lazy("commands.report", "main"),
        _lazy("commands.report", "build_parser"),
    ),
    "register": (
        "record the meter's register reading: set the total, show the drift",
        _lazy("commands.register", "main"),
        _lazy("commands.register", "build_parser"),
    ),
    "watch": (
        "the input live: edges, widths, ghosts, a diagnosis, suggested settings",
        _lazy("commands.watch", "main"),
        _lazy("commands.watch", "build_parser"),
    ),
}


def main(argv: Optional[List[str]] = None) -> int:
    """The command line; a stop signal before the monitor runs ends it
    quietly (the monitor installs handlers of its own)."""
    starting = StopWhileStarting()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, starting)
    # `power.py register` asks a running power to commit with SIGUSR1: never
    # fatal, also before the monitor's own handler is set.
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    try:
        return _main(argv)
    except Interrupted as exc:
        name = signal.Signals(exc.args[0]).name if exc.args else "a signal"
        print(f"power.py: stopped by {name} while starting", file=sys.stderr)
        return EXIT_OK


def _main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = split_command(argv, SUBCOMMANDS)
    if command is not None:
        name, rest = command
        return SUBCOMMANDS[name][1](rest)
    stray = stray_word(argv)
    if stray is not None:
        import difflib

        close = difflib.get_close_matches(stray, list(SUBCOMMANDS), n=1)
        guess = f" (did you mean {close[0]}?)" if close else ""
        return fail(
            EXIT_USAGE,
            f"unknown command {stray!r}{guess}: the commands are "
            f"{', '.join(SUBCOMMANDS)}; power.py alone starts the monitor "
            "(see power.py -h)",
        )
    args = parse_args(argv)
    # The settings file is code: a copy others could change is refused to a
    # daemon (and to root: load's default), only warned about in the
    # foreground.
    start = not (args.nodaemon or args.status or args.kill)
    try:
        settings = load_for_run(
            args.settings,
            args.simulate,
            args.replay,
            args.speed,
            strict=True if start else None,
            service_uid=uid_of(args.user),
        )
    except SettingsError as exc:
        if args.pidfile and (args.kill or args.status):
            # A broken settings file must not keep a running daemon from
            # being stopped or seen (the init script names the pidfile).
            print(f"power.py: warning: {exc}", file=sys.stderr)
            pidfile = os.path.abspath(args.pidfile)
            return kill.main(pidfile) if args.kill else status.main(pidfile, None)
        return fail(EXIT_USAGE, str(exc))
    pidfile = pidfile_path(args, settings)
    if args.status:
        return status.main(pidfile, settings)
    if args.kill:
        return kill.main(pidfile, settings.data_dir)
    from commands import run  # the service's modules: only for a start

    return run.main(args, settings, pidfile)


def run_cli() -> int:
    """main() for the command line: a reader that went away (power.py
    --status | head -1) ends the output quietly, never in a traceback."""
    try:
        code = main()
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # Nothing more can be said on stdout, not even at exit's flush.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(run_cli())
