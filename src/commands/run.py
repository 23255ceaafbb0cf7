"""`power.py` with no command: start the monitor, in the foreground
(--nodaemon) or as a daemon, once every check has passed."""

from __future__ import annotations

import argparse
import os

from config.settings import Settings
from core.exits import EXIT_FAILURE, EXIT_USAGE, fail
from core.options import SettingsError
from service import account
from service.detach import run_daemon
from service.pidfile import refuse_if_running
from service.preflight import create_dirs, give_to, preflight
from service.runtime import StartError
from service.start import run_foreground


def main(args: argparse.Namespace, settings: Settings, pidfile: str) -> int:
    """Check, make DATA_DIR and the pidfile's folder, hand files to --user,
    then run; the exit code."""
    try:
        user = account.resolve(args.user)
        logfile = os.path.abspath(args.logfile) if args.logfile else settings.logfile
        made = [
            d
            for d in (settings.data_dir, os.path.dirname(pidfile))
            if not os.path.isdir(d)
        ]
        # Power running already is the first thing to say (not the port
        # it holds, say, which preflight would find taken).
        refuse_if_running(pidfile, settings.data_dir)
        preflight(settings, logfile, pidfile)
        create_dirs(settings, pidfile)
        if user is not None:
            give_to(user, settings, pidfile, logfile, made)
        if args.nodaemon:  # with a pidfile too, so --status and --kill work
            return run_foreground(args, settings, pidfile, user)
        return run_daemon(args, settings, pidfile, user)
    except SettingsError as exc:
        return fail(EXIT_USAGE, str(exc))
    except StartError as exc:
        return fail(EXIT_FAILURE, str(exc))
