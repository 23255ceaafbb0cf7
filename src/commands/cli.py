"""The main command line: its options (starting the monitor, --status,
--kill) and how a command word is told among them. power.py assembles the
parser with the commands it hands over to."""

from __future__ import annotations

import argparse
import sys
from typing import Collection, List, Optional, Tuple

from core.exits import EXIT_USAGE
from core.version import VERSION


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # exit 2 with a hint, as documented
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"power.py: error: {message} (see power.py -h)\n")


USAGE = """power.py [--settings PATH] [--pidfile PATH] [--nodaemon] [--kill]
                [--status] [--logfile PATH] [--simulate WATTS | --replay FILE]
                [--speed FACTOR] [--user NAME] [-q] [-v] [--version] [-h]
       power.py [--settings PATH] COMMAND [options]   (COMMAND -h for help)"""


def add_options(p: argparse.ArgumentParser) -> None:
    """The global options, on the main parser."""
    p.add_argument(
        "--settings",
        metavar="PATH",
        help="settings file (default: $POWER_SETTINGS, else settings.py "
        "beside power.py)",
    )
    p.add_argument(
        "--pidfile",
        metavar="PATH",
        help="pidfile (default: PIDFILE from settings, else DATA_DIR/power.pid)",
    )
    p.add_argument(
        "--nodaemon",
        action="store_true",
        help="run in the foreground, printing a line per reading",
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument("--kill", action="store_true", help="stop the running daemon")
    group.add_argument(
        "--status",
        action="store_true",
        help="say whether it runs, the last reading and each sink's backlog",
    )
    p.add_argument(
        "--logfile",
        metavar="PATH",
        help="log here (default: LOGFILE, else stderr in the foreground and "
        "syslog when detached)",
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--simulate",
        metavar="WATTS",
        type=float,
        help="read a simulated meter with this mean load instead of GPIO",
    )
    source.add_argument(
        "--replay", metavar="FILE", help="read pulse times from FILE instead of GPIO"
    )
    p.add_argument(
        "--speed",
        metavar="FACTOR",
        type=float,
        help="time factor for --simulate and --replay; 0 = as fast as possible",
    )
    p.add_argument(
        "--user",
        metavar="NAME",
        help="started as root: run as this user, with its groups (e.g. gpio)",
    )
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="with --nodaemon: no line per reading on stdout",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    p.add_argument("--version", action="version", version=f"power {VERSION}")


# Main options that take a value, so a value is never taken for a command.
VALUE_OPTIONS = frozenset(
    (
        "--settings",
        "--pidfile",
        "--logfile",
        "--simulate",
        "--replay",
        "--speed",
        "--user",
    )
)


def stray_word(argv: List[str]) -> Optional[str]:
    """The first word that is neither an option nor an option's value: a
    mistyped command, most likely."""
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word == "--":
            return None
        elif word in VALUE_OPTIONS:
            skip = True
        elif not word.startswith("-"):
            return word
    return None


def split_command(
    argv: List[str], commands: Collection[str]
) -> Optional[Tuple[str, List[str]]]:
    """(command, its arguments with the global options given before it moved
    after it), or None when the command line names no command."""
    skip = False
    for i, word in enumerate(argv):
        if skip:
            skip = False
        elif word == "--":
            return None
        elif word in VALUE_OPTIONS:
            skip = True
        elif word in commands:
            # The global options go first: after the command's own words a
            # "--" would make them arguments ("register -- -5").
            return word, argv[:i] + argv[i + 1 :]
        elif not word.startswith("-"):
            return None  # a stray word: the main parser says what is wrong
    return None
