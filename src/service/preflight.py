"""Everything checked before a start forks or touches GPIO, and what is made
once every check has passed: DATA_DIR, the pidfile's folder, and the files
handed to the service user. A start refused here leaves no trace behind.
"""

from __future__ import annotations

import os
import sys
from typing import List, Optional

from config.settings import Settings
from core.journal import journal_path
from core.options import SettingsError
from service import account
from service.pidcheck import PIDFILE_NAME
from service.runtime import StartError
from web.listen import PortInUseError, check_port

CORE_PACKAGES = {"daemon": "python-daemon", "lockfile": "lockfile"}


def missing_packages(settings: Settings) -> List[str]:
    """The packages power and its configured sinks need that this Python
    lacks (run without the venv, say), without importing them."""
    import importlib.util

    wanted = dict(CORE_PACKAGES)
    for setup in settings.sinks:
        wanted.update(setup.cls.PACKAGES)
    if settings.metrics is not None:
        wanted["prometheus_client"] = "prometheus_client"
    missing = []
    for module, package in wanted.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:  # a parent package is missing
            found = False
        if not found and package not in missing:
            missing.append(package)
    return missing


def check_packages(settings: Settings) -> None:
    missing = missing_packages(settings)
    if missing:
        raise SettingsError(
            f"this Python ({sys.executable}) lacks {', '.join(missing)}: run "
            "'make venv' and start power with .venv/bin/python src/power.py, or "
            "install the requirements: pip install -r src/requirements.txt"
        )


def preflight(settings: Settings, logfile: Optional[str], pidfile: str) -> None:
    """Everything that can be checked before forking or touching GPIO.
    Creates nothing: a start refused here leaves no trace behind."""
    check_packages(settings)
    for m in settings.meters:
        m.preflight()
    if logfile:
        problem = cannot_create(logfile, directory=False) or cannot_append(logfile)
        if problem:
            raise SettingsError(
                f"log file {logfile}: cannot open it ({problem}); create its "
                "directory or name another with --logfile or LOGFILE"
            )
    problem = cannot_create(settings.data_dir, directory=True)
    if problem:
        raise SettingsError(
            f"DATA_DIR = {settings.data_dir!r}: {problem}; create it and let the "
            "user running power write there"
            + (
                f" (sudo chown {os.getuid()} {settings.data_dir})"
                if os.path.isdir(settings.data_dir)
                else ""
            )
        )
    if os.path.isdir(pidfile):
        raise SettingsError(
            f"--pidfile {pidfile}: that is a directory; name a file in it, "
            f"such as {os.path.join(pidfile, PIDFILE_NAME)}"
        )
    folder = os.path.dirname(pidfile)
    problem = cannot_create(folder, directory=True)
    if problem:
        raise SettingsError(
            f"--pidfile {pidfile}: {folder}: {problem}; create it for the user "
            "running power, or name another pidfile"
        )
    if os.path.isdir(folder):  # /proc, /sys: access() says yes, open says no
        problem = cannot_append(pidfile)
        if problem:
            raise SettingsError(
                f"--pidfile {pidfile}: cannot write it ({problem}); name a "
                "pidfile in a directory of power's, such as /run/power"
            )
    listeners = {}
    if settings.web is not None:
        listeners[(settings.web.host, settings.web.port)] = "WEB['listen']"
    if settings.metrics is not None:  # one port for both: checked once
        listeners[(settings.metrics.host, settings.metrics.port)] = "METRICS['listen']"
    for (host, port), setting in listeners.items():
        try:
            check_port(setting, host, port)
        except PortInUseError as exc:
            raise StartError(str(exc)) from None


def cannot_append(path: str) -> Optional[str]:
    """Why a file cannot be opened for appending (where access() says yes
    and the open still fails: /proc, /sys, a read-only mount); None if it
    can. A file made for the test is removed: nothing is left behind."""
    existed = os.path.lexists(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(fd)
    if not existed:
        try:
            os.unlink(path)
        except OSError:
            pass
    return None


def cannot_create(path: str, directory: bool) -> Optional[str]:
    """Why this user could not create or write `path`; None if it can."""
    if os.path.lexists(path):
        if directory and not os.path.isdir(path):
            return "cannot create it: a file of that name is in the way"
        if not directory and os.path.isdir(path):
            return "is a directory"
        mode = os.W_OK | os.X_OK if directory else os.W_OK
        return None if os.access(path, mode) else "not writable by this user"
    parent = os.path.dirname(os.path.abspath(path))
    if not directory and not os.path.isdir(parent):
        return f"no directory {parent}"  # only directories are created
    while not os.path.isdir(parent):
        if os.path.lexists(parent):
            return f"cannot create it: {parent} is not a directory"
        parent = os.path.dirname(parent)
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot create it in {parent} (not writable by this user)"
    return None


def create_dirs(settings: Settings, pidfile: str) -> None:
    """DATA_DIR and the pidfile's directory (/run is empty at boot), once
    every check has passed."""
    for what, folder in (
        (f"DATA_DIR = {settings.data_dir!r}", settings.data_dir),
        (f"--pidfile {pidfile}", os.path.dirname(pidfile)),
    ):
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise SettingsError(
                f"{what}: cannot create {folder} ({exc.strerror}); create it for "
                "the user running power"
            ) from None


def give_to(
    user: account.Account,
    settings: Settings,
    pidfile: str,
    logfile: Optional[str],
    made: List[str],
) -> None:
    """Before switching to `user`: it must be able to write what power
    writes. Directories power just made and power's own files are handed
    over; a directory that was there already must let the user in."""
    own = [journal_path(settings.data_dir) + s for s in ("", "-wal", "-shm")]
    own += [
        os.path.join(settings.data_dir, n)
        for n in ("journal.lock", "journal.mark", "power.pid", "power.log")
    ]
    own += [s.options["path"] for s in settings.sinks if "path" in s.cls.OPTIONS]
    account.hand_over(user, made + own + [pidfile] + ([logfile] if logfile else []))
    for what, folder in (
        ("DATA_DIR", settings.data_dir),
        ("the pidfile's directory", os.path.dirname(pidfile)),
    ):
        if not account.writable_by(user, folder):
            raise SettingsError(
                f"--user {user.name}: {what} {folder} is not writable by "
                f"{user.name}; run 'sudo chown {user.name} {folder}' or choose "
                "a directory of its own"
            )
