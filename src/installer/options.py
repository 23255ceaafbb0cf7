"""What the installer is asked to do: its constants, the checked options
(Config) and the two kinds of refusal."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional

# The source tree this installer came with: src/ and init.d/ are in it.
TREE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEMPLATE_DIR = os.path.join(TREE, "init.d")
PROG = "install_init_script.py"

SERVICE = "power"
INIT_REL = "etc/init.d/power"
UNIT_REL = "etc/systemd/system/power.service"
INIT_TEMPLATE = "power"
UNIT_TEMPLATE = "power.service"
INIT_MODE = 0o755
UNIT_MODE = 0o644
# Every file this script renders carries this line; files without it are
# never overwritten or removed.
MARKER = "Rendered by install_init_script.py"

DEFAULT_PIDFILE = "/run/power/power.pid"
DEFAULT_DATA_DIR = "/var/lib/power"
DEFAULT_USER = "power"
GPIO_GROUP = "gpio"
DATA_DIR_MODE = 0o755
# What to suggest for a relative path in the settings.
SUGGESTED_PATHS = {"DATA_DIR": DEFAULT_DATA_DIR, "LOGFILE": "/var/log/power.log"}
# Directories shared by the system and many programs (besides those at the
# top level): power's user never gets one of these.
SYSTEM_DIRS = frozenset(
    ("/var/lib", "/var/log", "/var/cache", "/var/spool", "/var/tmp", "/usr/local")
)

# What a path may contain to be written into a shell script and a unit file
# without quoting: ordinary file names only.
SAFE_PATH = re.compile(r"^/[A-Za-z0-9/._+@:,=~-]*$")
SAFE_PATH_TEXT = "letters, digits and / . _ + @ : , = ~ -"
USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,30}[$]?$")

# Where systemd keeps per-service directories it creates and hands to User=.
SYSTEMD_DIRS = (
    ("/var/lib/", "StateDirectory"),
    ("/var/log/", "LogsDirectory"),
    ("/run/", "RuntimeDirectory"),
)
HOME_TREES = ("/home", "/root", "/run/user")
SBIN_PATH = "/usr/local/sbin:/usr/sbin:/sbin"
TMP_TREES = ("/tmp", "/var/tmp")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A mistake the user can fix: one message, exit 2."""


class ActionError(Exception):
    """A command or file operation failed: one message, exit 1."""


@dataclass
class Config:
    """The checked options: where to install and what to render."""

    root: str
    real: bool  # root is "/": a real installation
    python: str
    src: str
    power: str
    settings: str
    pidfile: str
    user: Optional[str]  # None: run as whoever starts it (root at boot)
    create_user: bool
    systemd: bool
    uninstall: bool
    dry_run: bool

    def target(self, rel: str) -> str:
        """A path of the installation, under --root."""
        return os.path.join(self.root, rel)


@dataclass
class SettingsPaths:
    """What the service writes, as far as the installer must know it."""

    data_dir: str = DEFAULT_DATA_DIR
    logfile: Optional[str] = None
    sink_files: List[str] = field(default_factory=list)
    # Ports below 1024 it listens on: "WEB['listen']" -> 80
    low_ports: Dict[str, int] = field(default_factory=dict)


def default_python() -> str:
    """The running interpreter if it is a venv's, else the venv beside us.

    ``sudo ./install_init_script.py`` runs the system's python3, which lacks
    python-daemon; the venv made by ``make venv`` is what the service needs.
    """
    in_venv = sys.prefix != getattr(sys, "base_prefix", sys.prefix)
    venv_python = os.path.join(TREE, ".venv", "bin", "python")
    if not in_venv and os.access(venv_python, os.X_OK):
        return venv_python
    return sys.executable


def _expand(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


def check_safe(what: str, path: str) -> str:
    if not SAFE_PATH.match(path):
        raise UsageError(
            f"{what} {path!r}: the service files can only carry paths of "
            f"{SAFE_PATH_TEXT}; move it or choose another path"
        )
    return path


def _resolve_python(value: str) -> str:
    if os.sep not in value:
        found = shutil.which(value)
        if not found:
            raise UsageError(f"--python {value}: no such program on PATH")
        value = found
    # abspath, not realpath: a venv's python is a symlink, and resolving it
    # would lose the venv.
    return _expand(value)


def check_options(args: argparse.Namespace) -> Config:
    """Turn the parsed command line into a Config; UsageError if wrong."""
    root = _expand(args.root)
    if os.path.lexists(root) and not os.path.isdir(root):
        raise UsageError(f"--root {args.root}: not a directory")
    real = os.path.realpath(root) == "/"
    if real:
        root = "/"
    python = check_safe("--python", _resolve_python(args.python or default_python()))
    src = check_safe("--src", _expand(args.src))
    power = os.path.join(src, "power.py")
    settings = check_safe(
        "--settings", _expand(args.settings or os.path.join(src, "settings.py"))
    )
    pidfile = check_safe("--pidfile", _expand(args.pidfile))
    if os.path.isdir(pidfile) or os.path.dirname(pidfile) == "/":
        raise UsageError(
            f"--pidfile {args.pidfile}: expected a file in a directory of its "
            f"own, such as {DEFAULT_PIDFILE}"
        )
    user = args.user
    if user is not None and not USER_NAME.match(user):
        raise UsageError(
            f"--user {user!r}: expected a user name (lower-case letters, digits, "
            "'_' and '-', starting with a letter or '_')"
        )
    if args.create_user:
        if user is None:
            user = DEFAULT_USER
        if user == "root":
            raise UsageError("--create-user --user root: root exists already")
        if not real:
            raise UsageError(
                "--create-user changes the real system (useradd, chown), so it "
                "works only with --root /; a package creates the user in its "
                "maintainer scripts"
            )
    if user == "root":
        user = None  # root is what an init script runs as anyway
    if user == "nobody":
        warn(
            "--user nobody: nobody is shared by unrelated programs (systemd "
            "calls it unsafe); a user of power's own is better (--create-user)"
        )
    return Config(
        root=root,
        real=real,
        python=python,
        src=src,
        power=power,
        settings=settings,
        pidfile=pidfile,
        user=user,
        create_user=args.create_user,
        systemd=args.systemd,
        uninstall=args.uninstall,
        dry_run=args.dry_run,
    )


def warn(message: str) -> None:
    """A warning on stderr; the installation goes on."""
    print(f"warning: {message}", file=sys.stderr)
