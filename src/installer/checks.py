"""Checks before anything changes: privileges, programs, the interpreter,
the user, what is installed already."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from typing import List, Optional

from installer.options import (
    GPIO_GROUP,
    INIT_REL,
    MARKER,
    SBIN_PATH,
    UNIT_REL,
    Config,
    UsageError,
    warn,
)


def check_privileges(cfg: Config, euid: Optional[int] = None) -> None:
    """A real installation needs root; staging and dry runs do not."""
    euid = os.geteuid() if euid is None else euid
    if cfg.real and euid != 0 and not cfg.dry_run:
        what = "uninstalling from" if cfg.uninstall else "installing into"
        raise UsageError(
            f"{what} / needs root: run it with sudo, stage it into a folder "
            "with --root DIR, or preview it with --dry-run"
        )
    if not cfg.real and not cfg.dry_run:
        # A missing --root is created, as DESTDIR staging does: the first
        # folder that exists on the way must let this user in.
        folder = cfg.root
        while not os.path.isdir(folder):
            folder = os.path.dirname(folder)
        if not os.access(folder, os.W_OK | os.X_OK):
            where = "" if folder == cfg.root else f" (cannot create it in {folder})"
            raise UsageError(f"--root {cfg.root}: not writable by this user{where}")


def required_commands(cfg: Config) -> List[str]:
    """The programs a real (un)installation runs."""
    if not cfg.real:
        return []
    if cfg.uninstall:
        commands = []
        if installed_file(cfg, INIT_REL):
            commands.append("update-rc.d")
        if installed_file(cfg, UNIT_REL):
            commands.append("systemctl")
        return commands
    commands = ["systemctl"] if cfg.systemd else ["update-rc.d"]
    if cfg.create_user:
        commands.append("useradd")
    return commands


def find_program(name: str) -> Optional[str]:
    """A program's path, also in the sbin directories (often not on a user's
    PATH, nor on sudo's on some systems)."""
    return shutil.which(name) or shutil.which(name, path=SBIN_PATH)


def program(name: str) -> str:
    """A program's path for a command line (its bare name if not found)."""
    return find_program(name) or name


def check_commands(cfg: Config) -> None:
    """Stop before changing anything if a needed program is missing."""
    for command in required_commands(cfg):
        if find_program(command) is None:
            hint = {
                "update-rc.d": "it enables init.d scripts the Debian way; use "
                "--systemd, or enable /etc/init.d/power by hand",
                "systemctl": "this system has no systemd; install the init.d "
                "script instead (leave out --systemd)",
                "useradd": "create the user by hand and leave out --create-user",
            }[command]
            raise UsageError(f"{command} not found: {hint}")


def check_program(cfg: Config) -> None:
    """The interpreter and power.py exist (a warning only when staging)."""
    problems = []
    if not (os.path.isfile(cfg.python) and os.access(cfg.python, os.X_OK)):
        problems.append(
            f"--python {cfg.python}: not an executable file (make the venv first: "
            "make venv)"
        )
    elif not python_has_dependencies(cfg.python):
        problems.append(
            f"--python {cfg.python} cannot import python-daemon and lockfile: "
            "name the venv's python (make venv; --python .venv/bin/python)"
        )
    if not os.path.isfile(cfg.power):
        problems.append(f"--src {cfg.src}: there is no power.py in it")
    for problem in problems:
        if cfg.real:
            raise UsageError(problem)
        warn(problem + " (on this machine)")


def python_has_dependencies(python: str) -> bool:
    """True if python can import what the daemon needs before it forks."""
    try:
        result = subprocess.run(
            [python, "-c", "import daemon, daemon.pidfile, lockfile"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def check_user(cfg: Config) -> None:
    """On a real system the user must exist, unless --create-user."""
    if not cfg.real or not cfg.user or cfg.create_user:
        return
    try:
        pwd.getpwnam(cfg.user)
    except KeyError:
        raise UsageError(
            f"--user {cfg.user}: no such user; add --create-user to create it "
            f"as a system user in the {GPIO_GROUP} group, or create it yourself "
            f"(sudo adduser --system --group {cfg.user}; sudo adduser "
            f"{cfg.user} {GPIO_GROUP})"
        ) from None


def installed_file(cfg: Config, rel: str) -> Optional[bool]:
    """None: absent; True: rendered by this script; False: someone else's."""
    path = cfg.target(rel)
    if not os.path.lexists(path):
        return None
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return MARKER in f.read()
    except OSError:
        return False


def systemd_booted() -> bool:
    """True if systemd is the running init (sd_booted())."""
    return os.path.isdir("/run/systemd/system")
