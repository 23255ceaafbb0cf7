#!/usr/bin/env python3
"""Install power as a service: an LSB init script or a systemd unit.

Renders the template ``init.d/power`` (or, with ``--systemd``,
``init.d/power.service``) beside this script with the paths of the Python
interpreter (the venv's), ``src/power.py``, the settings file, the pidfile and
the user, and installs it as ``<root>/etc/init.d/power`` (mode 755) or
``<root>/etc/systemd/system/power.service`` (mode 644).

With ``--root /`` (the default) it is a real installation: it needs root, it
enables the service (``update-rc.d power defaults`` or ``systemctl enable
power.service``) and, only when asked with ``--create-user``, creates the
system user (in the ``gpio`` group) and the data and log directories. With
any other ``--root`` it only stages files under that folder, for packaging
and tests: no update-rc.d, systemctl, useradd or chown, nothing outside it.

``--dry-run`` prints every action and changes nothing (it needs no root).
Running it twice changes nothing the second time. ``--uninstall`` removes what
it installed (a file it did not render is never touched); on a real system it
stops and disables the service first, and keeps the user and the data.

Exit codes: 0 done; 1 a command or file operation failed; 2 a usage mistake
(bad option, missing file, not root on /), with one message.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
if os.path.join(HERE, "src") not in sys.path:
    sys.path.insert(0, os.path.join(HERE, "src"))

from installer.actions import Actions  # noqa: E402
from installer.checks import (  # noqa: E402
    check_commands,
    check_privileges,
    check_program,
    check_user,
)
from installer.options import (  # noqa: E402
    DEFAULT_PIDFILE,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    ActionError,
    UsageError,
    check_options,
    default_python,
)
from installer.steps import describe, install, uninstall  # noqa: E402


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a hint after the error (exit 2, as documented)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{PROG}: error: {message} (see {PROG} -h)\n")


def build_parser() -> argparse.ArgumentParser:
    """The command line, as documented in DESIGN.md and docs/service.rst (the
    manual's reference is made from this parser)."""
    p = ArgumentParser(
        prog=PROG,
        description="Install power as a service: /etc/init.d/power (LSB init "
        "script, enabled with update-rc.d) or, with --systemd, a systemd unit "
        "(enabled with systemctl). With --root DIR everything is staged under "
        "DIR and nothing else is touched.",
    )
    p.add_argument(
        "--root",
        metavar="DIR",
        default="/",
        help="install under DIR (default /: a real installation, which needs "
        "root; any other DIR only stages files there)",
    )
    p.add_argument(
        "--python",
        metavar="PATH",
        help="the Python that runs power, normally the venv's (default: the one "
        "running this script if it is a venv's, else .venv/bin/python beside "
        f"this script if there is one; here {default_python()})",
    )
    p.add_argument(
        "--src",
        metavar="DIR",
        default=os.path.join(HERE, "src"),
        help="the directory of power.py (default: %(default)s)",
    )
    p.add_argument(
        "--settings",
        metavar="PATH",
        help="the settings file (default: SRC/settings.py)",
    )
    p.add_argument(
        "--pidfile",
        metavar="PATH",
        default=DEFAULT_PIDFILE,
        help="the daemon's pidfile (default: %(default)s; the service creates "
        "its directory at start, since /run is emptied at boot)",
    )
    p.add_argument(
        "--user",
        metavar="NAME",
        help="run power as this user (in the gpio group) instead of root",
    )
    p.add_argument(
        "--create-user",
        action="store_true",
        help="with --root /: create the user (default name power) as a system "
        "user in the gpio group if it does not exist, and the data and log "
        "directories owned by it if they do not exist; never done unless asked",
    )
    p.add_argument(
        "--systemd",
        action="store_true",
        help="install etc/systemd/system/power.service instead of etc/init.d/power",
    )
    p.add_argument(
        "--uninstall",
        action="store_true",
        help="stop, disable and remove what this script installed (the user "
        "and the data stay)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print every action, change nothing",
    )
    return p


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point: exit 0 done, 1 failure, 2 usage mistake."""
    args = parse_args(argv)
    try:
        cfg = check_options(args)
        check_privileges(cfg)
        check_commands(cfg)
        if not cfg.uninstall:
            check_program(cfg)
            check_user(cfg)
        print(describe(cfg))
        act = Actions(cfg.dry_run)
        if cfg.uninstall:
            uninstall(cfg, act)
        else:
            install(cfg, act)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ActionError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        print(f"{PROG}: cannot change{where}: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
