"""A start in the foreground (--nodaemon), and the Service both kinds of
start run: logging set up, and the console's line per reading in the
foreground."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Optional

from config.settings import Settings
from core.exits import EXIT_FAILURE, fail
from core.options import StopWhileStarting
from core.version import VERSION
from service import account, logsetup
from service.pidfile import acquire_pidfile, claim_pidfile
from service.runtime import Service, StartError


def logfile_of(args: argparse.Namespace, settings: Settings) -> Optional[str]:
    return os.path.abspath(args.logfile) if args.logfile else settings.logfile


def make_service(
    args: argparse.Namespace,
    settings: Settings,
    foreground: bool,
    pidfile: Optional[str] = None,
) -> Service:
    level = logging.DEBUG if args.verbose else getattr(logging, settings.log_level)
    logfile = os.path.abspath(args.logfile) if args.logfile else settings.logfile
    fallback = os.path.join(settings.data_dir, "power.log")
    log = logsetup.configure(level, foreground, logfile, settings.secrets, fallback)
    # In the foreground with the log in a file, a failing sink is still told
    # on the terminal, once per failure streak.
    tell = (
        (lambda text: print(f"power.py: {text}", file=sys.stderr))
        if (foreground and logfile)
        else None
    )
    # A line per reading, as the meter makes it (the live path), on a
    # terminal or a pipe alike; the commit interval is the settings' own.
    console = foreground and not args.quiet
    return Service(settings, log, console=console, tell=tell, pidfile=pidfile)


def run_foreground(
    args: argparse.Namespace,
    settings: Settings,
    pidfile: Optional[str],
    user: Optional[account.Account] = None,
) -> int:
    from daemon.pidfile import TimeoutPIDLockFile

    if user is not None:  # before any file is opened, as python-daemon does
        account.switch(user)
    service = make_service(args, settings, foreground=True, pidfile=pidfile)
    log = service.log
    lock = None
    try:
        service.take_lock()  # before the pidfile: --kill finds power by it
        if pidfile:
            note = claim_pidfile(pidfile, settings.data_dir)
            if note:
                log.warning("%s", note)
            lock = TimeoutPIDLockFile(pidfile, 1)
            acquire_pidfile(lock, pidfile)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            before = signal.signal(signum, service.handle_signal)
            StopWhileStarting.hand_over(before, service.handle_signal)
        log.info(
            "power %s starting in the foreground (settings %s)", VERSION, settings.path
        )
        service.start()
        return service.wait()
    except StartError as exc:
        log.error("%s", exc)
        if logfile_of(args, settings):  # a refusal always reaches the terminal
            fail(EXIT_FAILURE, str(exc))
        return EXIT_FAILURE
    except Exception as exc:  # lockfile errors and the like
        log.error("cannot start: %s: %s", type(exc).__name__, exc)
        if logfile_of(args, settings):
            fail(EXIT_FAILURE, f"cannot start: {type(exc).__name__}: {exc}")
        return EXIT_FAILURE
    finally:
        service.stop()
        if lock is not None and lock.i_am_locking():
            lock.release()
