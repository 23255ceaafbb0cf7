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
import grp
import os
import pwd
import re
import runpy
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATE_DIR = os.path.join(HERE, "init.d")
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


# Options --------------------------------------------------------------------------


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


def default_python() -> str:
    """The running interpreter if it is a venv's, else the venv beside us.

    ``sudo ./install_init_script.py`` runs the system's python3, which lacks
    python-daemon; the venv made by ``make venv`` is what the service needs.
    """
    in_venv = sys.prefix != getattr(sys, "base_prefix", sys.prefix)
    venv_python = os.path.join(HERE, ".venv", "bin", "python")
    if not in_venv and os.access(venv_python, os.X_OK):
        return venv_python
    return sys.executable


def _expand(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


def _check_safe(what: str, path: str) -> str:
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
    python = _check_safe("--python", _resolve_python(args.python or default_python()))
    src = _check_safe("--src", _expand(args.src))
    power = os.path.join(src, "power.py")
    settings = _check_safe(
        "--settings", _expand(args.settings or os.path.join(src, "settings.py"))
    )
    pidfile = _check_safe("--pidfile", _expand(args.pidfile))
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


# Reading the settings -------------------------------------------------------------


def _settings_path(value: object, name: str, settings: str) -> Optional[str]:
    """A path from the settings, as the daemon (started in /) resolves it."""
    if not isinstance(value, str) or not value.strip():
        return None
    path = os.path.expanduser(value)
    if not os.path.isabs(path):
        # A service starts in /, where 'var' would mean the system's /var.
        raise UsageError(
            f"{name} = {value!r} in {settings} is a relative path, which a "
            "service cannot use (it starts in /); write an absolute path, such "
            f"as {SUGGESTED_PATHS.get(name, DEFAULT_DATA_DIR + '/power.csv')!r}"
        )
    return os.path.normpath(path)


def read_settings(path: str, required: bool) -> SettingsPaths:
    """DATA_DIR, LOGFILE and the file sinks' paths from the settings file.

    The daemon checks every setting when it starts; the installer only needs
    the paths the service writes to (for the systemd unit's ReadWritePaths
    and for --create-user). A missing file is an error on a real system and
    a warning (defaults assumed) when staging.
    """
    if not os.path.isfile(path):
        message = (
            f"settings file {path} not found: copy src/settings.py.example "
            "there and edit it, or name another with --settings PATH"
        )
        if required:
            raise UsageError(message)
        warn(message + f"; assuming DATA_DIR = {DEFAULT_DATA_DIR!r}")
        return SettingsPaths()
    try:
        names = runpy.run_path(path, run_name="power_settings")
    except SyntaxError as exc:
        raise UsageError(
            f"settings file {path} line {exc.lineno}: {exc.msg}; fix the Python "
            "syntax there"
        ) from None
    except (Exception, SystemExit) as exc:
        raise UsageError(
            f"settings file {path} failed to run: {type(exc).__name__}: {exc}"
        ) from None
    found = SettingsPaths()
    data_dir = _settings_path(names.get("DATA_DIR"), "DATA_DIR", path)
    if data_dir:
        found.data_dir = data_dir
    found.logfile = _settings_path(names.get("LOGFILE"), "LOGFILE", path)
    sinks = names.get("SINKS")
    if isinstance(sinks, (list, tuple)):
        for i, sink in enumerate(sinks):
            if isinstance(sink, dict) and sink.get("type") == "file":
                where = f"SINKS[{i}]['path']"
                sink_path = _settings_path(sink.get("path"), where, path)
                if sink_path:
                    found.sink_files.append(sink_path)
    _check_safe("DATA_DIR", found.data_dir)
    if found.logfile:
        _check_safe("LOGFILE", found.logfile)
    for sink_path in found.sink_files:
        _check_safe("a file sink's path", sink_path)
    return found


# Rendering -------------------------------------------------------------------------


def read_template(name: str) -> str:
    """A template from init.d/ beside this script."""
    path = os.path.join(TEMPLATE_DIR, name)
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise UsageError(
            f"template {path} cannot be read ({exc.strerror}); run this script "
            "from power's source tree"
        ) from None


def render(
    template: str,
    values: Dict[str, str],
    blocks: Optional[Dict[str, List[str]]] = None,
) -> str:
    """Replace @NAME@ by values[NAME]; a line that is only @BLOCK@ by lines.

    A placeholder left over (an edited template) is a UsageError.
    """
    blocks = blocks or {}
    out: List[str] = []
    for line in template.splitlines():
        word = line.strip()
        if len(word) > 2 and word[0] == word[-1] == "@" and word[1:-1] in blocks:
            out.extend(blocks[word[1:-1]])
            continue
        for name, value in values.items():
            line = line.replace(f"@{name}@", value)
        out.append(line)
    text = "\n".join(out) + "\n"
    leftover = re.search(r"@[A-Z_]+@", text)
    if leftover:
        raise UsageError(
            f"a template in {TEMPLATE_DIR} has the unknown placeholder "
            f"{leftover.group(0)}; restore it from git"
        )
    return text


def render_init_script(cfg: Config) -> str:
    """etc/init.d/power for this configuration."""
    return render(
        read_template(INIT_TEMPLATE),
        {
            "PYTHON": cfg.python,
            "POWER": cfg.power,
            "SETTINGS": cfg.settings,
            "PIDFILE": cfg.pidfile,
            "USER": cfg.user or "",
        },
    )


def _under(path: str, tree: str) -> bool:
    tree = tree.rstrip("/")
    return path == tree or path.startswith(tree + "/")


def _inside_any(path: str, trees: Sequence[str]) -> bool:
    return any(_under(path, t) for t in trees)


def primary_group(user: str) -> str:
    """The user's primary group name; the user's name if it is not known here."""
    try:
        gid = pwd.getpwnam(user).pw_gid
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return user


def group_exists(name: str) -> bool:
    """True if the group exists on this system."""
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


@dataclass
class UnitPlan:
    """The variable part of the systemd unit, with the reasons for it."""

    identity: List[str]
    directories: List[str]
    read_write: List[str]
    private_tmp: str
    protect_home: str
    notes: List[str]


def plan_unit(cfg: Config, paths: SettingsPaths) -> UnitPlan:
    """User, writable directories and the relaxations the paths call for."""
    notes: List[str] = []
    identity: List[str] = []
    if cfg.user:
        identity = [f"User={cfg.user}", f"Group={primary_group(cfg.user)}"]
        if not cfg.real or group_exists(GPIO_GROUP):
            identity.append(f"SupplementaryGroups={GPIO_GROUP}")
        else:
            notes.append(
                f"there is no {GPIO_GROUP} group here (not Raspberry Pi OS?): "
                "SupplementaryGroups= left out, the service would not start "
                "with it"
            )

    writable = [paths.data_dir, os.path.dirname(cfg.pidfile)]
    if paths.logfile:
        writable.append(os.path.dirname(paths.logfile))
    writable += [os.path.dirname(p) for p in paths.sink_files]

    # Only the outermost directories count (a CSV in DATA_DIR adds nothing);
    # those systemd can create for the user become StateDirectory= and the
    # like, the others ReadWritePaths= ("-": a missing one is no error here,
    # the daemon then says which directory it cannot create).
    unique = list(dict.fromkeys(writable))
    outer = [p for p in unique if not any(p != q and _under(p, q) for q in unique)]
    managed: Dict[str, List[str]] = {}
    free: List[str] = []
    for path in outer:
        for prefix, key in SYSTEMD_DIRS:
            if path.startswith(prefix) and len(path) > len(prefix):
                managed.setdefault(key, []).append(path[len(prefix) :])
                break
        else:
            free.append(path)
    directories = [f"{key}={' '.join(rels)}" for key, rels in managed.items()]
    read_write = ["ReadWritePaths=" + " ".join("-" + p for p in free)] if free else []

    needed = [cfg.python, os.path.realpath(cfg.python), cfg.src]
    needed += [os.path.realpath(cfg.src), cfg.settings, os.path.realpath(cfg.settings)]
    needed += writable
    protect_home = "yes"
    if any(_inside_any(p, HOME_TREES) for p in needed):
        protect_home = "read-only"
        notes.append(
            "ProtectHome=read-only: power (or its Python) lives under "
            + ", ".join(HOME_TREES)
            + ", which ProtectHome=yes would hide"
        )
    private_tmp = "yes"
    if any(_inside_any(p, TMP_TREES) for p in needed):
        private_tmp = "no"
        notes.append(
            "PrivateTmp=no: a path of power is under /tmp or /var/tmp, which "
            "a private /tmp would hide (and which is emptied at boot: move it)"
        )
    return UnitPlan(identity, directories, read_write, private_tmp, protect_home, notes)


def render_unit(cfg: Config, plan: UnitPlan) -> str:
    """etc/systemd/system/power.service for this configuration."""
    return render(
        read_template(UNIT_TEMPLATE),
        {
            "PYTHON": cfg.python,
            "POWER": cfg.power,
            "SETTINGS": cfg.settings,
            "PIDFILE": cfg.pidfile,
            "PRIVATE_TMP": plan.private_tmp,
            "PROTECT_HOME": plan.protect_home,
        },
        {
            "IDENTITY": plan.identity,
            "DIRECTORIES": plan.directories,
            "READ_WRITE_PATHS": plan.read_write,
        },
    )


# Actions ---------------------------------------------------------------------------


def warn(message: str) -> None:
    """A warning on stderr; the installation goes on."""
    print(f"warning: {message}", file=sys.stderr)


class Actions:
    """Every change goes through here: printed, and done unless dry_run."""

    def __init__(self, dry_run: bool) -> None:
        self.dry_run = dry_run

    def say(self, what: str) -> None:
        """Print an action, as done or as it would be done."""
        print(("would " if self.dry_run else "") + what, flush=True)

    def run(self, cmd: List[str], check: bool = True) -> int:
        """Run a command (output passes through); ActionError if it fails."""
        self.say("run: " + shlex.join(cmd))
        if self.dry_run:
            return 0
        try:
            code = subprocess.run(cmd, stdin=subprocess.DEVNULL).returncode
        except OSError as exc:
            raise ActionError(f"cannot run {cmd[0]}: {exc.strerror}") from None
        if code != 0 and check:
            raise ActionError(f"'{shlex.join(cmd)}' failed with exit code {code}")
        return code

    def makedirs(self, path: str, mode: int = 0o755) -> List[str]:
        """Create path and missing parents; return those created."""
        missing: List[str] = []
        p = path
        while not os.path.isdir(p) and p not in ("/", ""):
            missing.append(p)
            p = os.path.dirname(p)
        for d in reversed(missing):
            self.say(f"create directory {d}")
            if not self.dry_run:
                os.mkdir(d, mode)
                os.chmod(d, mode)  # whatever the umask
        return missing

    def write(self, path: str, text: str, mode: int) -> bool:
        """Write text to path atomically with mode; False if already so."""
        try:
            with open(path, encoding="utf-8") as f:
                same = f.read() == text
            same_mode = stat.S_IMODE(os.stat(path).st_mode) == mode
        except FileNotFoundError:
            same = same_mode = False
        if same and same_mode:
            print(f"unchanged: {path}")
            return False
        if same:
            self.say(f"chmod {mode:o} {path}")
            if not self.dry_run:
                os.chmod(path, mode)
            return True
        self.makedirs(os.path.dirname(path))
        self.say(f"write {path} (mode {mode:o})")
        if self.dry_run:
            return True
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".power.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.remove(tmp)
            except OSError:
                pass
            raise
        return True

    def remove(self, path: str) -> None:
        """Remove a file."""
        self.say(f"remove {path}")
        if not self.dry_run:
            os.remove(path)

    def prune(self, path: str, stop: str) -> None:
        """Remove path's parents that are (or would become) empty, up to stop."""
        gone = {path}
        d = os.path.dirname(path)
        while _under(d, stop) and d.rstrip("/") != stop.rstrip("/"):
            try:
                left = set(os.path.join(d, n) for n in os.listdir(d)) - gone
            except OSError:
                return
            if left:
                return
            self.say(f"remove empty directory {d}")
            if not self.dry_run:
                os.rmdir(d)
            gone.add(d)
            d = os.path.dirname(d)

    def chown(self, path: str, user: str, group: str) -> None:
        """Give path to user:group."""
        self.say(f"chown {user}:{group} {path}")
        if not self.dry_run:
            shutil.chown(path, user, group)


# Checks ----------------------------------------------------------------------------


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


# User and directories ------------------------------------------------------------


def nologin_shell() -> str:
    """The shell of a system user that must not log in."""
    for shell in ("/usr/sbin/nologin", "/sbin/nologin"):
        if os.path.exists(shell):
            return shell
    return "/bin/false"


def in_group(user: str, group: str) -> bool:
    """True if user is a member of group (primary or supplementary)."""
    try:
        g = grp.getgrnam(group)
        pw = pwd.getpwnam(user)
    except KeyError:
        return False
    return pw.pw_gid == g.gr_gid or user in g.gr_mem


def ensure_user(cfg: Config, act: Actions, paths: SettingsPaths) -> None:
    """--create-user: the system user (in gpio) and its directories."""
    assert cfg.user is not None
    try:
        pwd.getpwnam(cfg.user)
        exists = True
    except KeyError:
        exists = False
    has_gpio = group_exists(GPIO_GROUP)
    if exists:
        print(f"user {cfg.user} exists: left as it is")
    else:
        cmd = [program("useradd"), "--system", "--user-group", "--no-create-home"]
        cmd += ["--home-dir", paths.data_dir, "--shell", nologin_shell()]
        cmd += ["--comment", "power meter daemon"]
        if has_gpio:
            cmd += ["--groups", GPIO_GROUP]
        act.run(cmd + [cfg.user])
    if not has_gpio:
        warn(
            f"there is no {GPIO_GROUP} group here (not Raspberry Pi OS?): give "
            f"{cfg.user} access to the GPIO device yourself"
        )
    elif exists and not in_group(cfg.user, GPIO_GROUP):
        warn(
            f"user {cfg.user} is not in the {GPIO_GROUP} group, so it cannot "
            f"reach the GPIO pins: sudo adduser {cfg.user} {GPIO_GROUP}"
        )
    dirs = [paths.data_dir]
    if paths.logfile:
        dirs.append(os.path.dirname(paths.logfile))
    group = primary_group(cfg.user)
    for d in dirs:
        if os.path.isdir(d):
            check_owner(d, cfg.user)
            continue
        act.makedirs(os.path.dirname(d))
        act.say(f"create directory {d} (mode {DATA_DIR_MODE:o})")
        if not cfg.dry_run:
            os.mkdir(d, DATA_DIR_MODE)
            os.chmod(d, DATA_DIR_MODE)
        act.chown(d, cfg.user, group)


def is_system_dir(path: str) -> bool:
    """A directory of the system or shared by many programs: never one to
    hand over to power's user."""
    path = os.path.normpath(path)
    parent = os.path.dirname(path)
    return path.count("/") < 2 or path in SYSTEM_DIRS or parent in HOME_TREES


def check_owner(path: str, user: str, what: str = "") -> None:
    """Warn if an existing directory the daemon writes is not the user's."""
    try:
        uid = pwd.getpwnam(user).pw_uid
    except KeyError:
        return  # dry run: the user is not there yet
    if os.stat(path).st_uid != uid:
        name = f"{what} {path}" if what else path
        if is_system_dir(path):
            warn(
                f"{name} is a system directory that {user} cannot write; give "
                f"power a directory of its own, such as {DEFAULT_DATA_DIR}, in "
                "the settings (never hand a system directory to another user)"
            )
            return
        warn(
            f"{name} exists and does not belong to {user}, so power may not be "
            f"able to write there: sudo chown -R {user}: {path}, or choose a "
            "directory of power's own"
        )


def warn_about_directories(cfg: Config, paths: SettingsPaths) -> None:
    """Say what a user other than root needs prepared (nothing is changed)."""
    if not cfg.real or not cfg.user:
        return
    piddir = os.path.dirname(cfg.pidfile)
    if os.path.isdir(piddir) and not (cfg.systemd and piddir.startswith("/run/")):
        check_owner(piddir, cfg.user, "the pidfile's directory")
    if cfg.create_user:
        return  # ensure_user() sees to the data and log directories
    dirs = [paths.data_dir]
    if paths.logfile:
        dirs.append(os.path.dirname(paths.logfile))
    for d in dirs:
        if os.path.isdir(d):
            check_owner(d, cfg.user)
        elif not (cfg.systemd and d.startswith(("/var/lib/", "/var/log/"))):
            warn(
                f"{d} does not exist: create it for {cfg.user} (sudo install -d "
                f"-o {cfg.user} {d}) or add --create-user"
            )


# Install and uninstall ------------------------------------------------------------


def describe(cfg: Config) -> str:
    """A few lines saying what is about to happen."""
    kind = "systemd unit" if cfg.systemd else "init.d script"
    where = "this system" if cfg.real else cfg.root
    dry = " (dry run: nothing changes)" if cfg.dry_run else ""
    if cfg.uninstall:
        return f"power: uninstalling from {where}{dry}"
    user = cfg.user or "root"
    return (
        f"power: installing the {kind} into {where}{dry}\n"
        f"  python   {cfg.python}\n  program  {cfg.power}\n"
        f"  settings {cfg.settings}\n  pidfile  {cfg.pidfile}\n  user     {user}"
    )


def install(cfg: Config, act: Actions) -> None:
    """Render, write and (on a real system) enable the service."""
    rel, other = (UNIT_REL, INIT_REL) if cfg.systemd else (INIT_REL, UNIT_REL)
    if installed_file(cfg, rel) is False:
        raise UsageError(
            f"{cfg.target(rel)} exists and was not installed by this script; "
            "move it away first"
        )
    if installed_file(cfg, other):
        other_kind = "init.d script" if cfg.systemd else "systemd unit"
        raise UsageError(
            f"power is installed as an {other_kind} ({cfg.target(other)}); run "
            f"{PROG} --uninstall first, then install again"
        )
    paths = read_settings(cfg.settings, required=cfg.real)
    if cfg.systemd:
        plan = plan_unit(cfg, paths)
        for note in plan.notes:
            print(f"note: {note}")
        text, mode = render_unit(cfg, plan), UNIT_MODE
    else:
        text, mode = render_init_script(cfg), INIT_MODE

    if cfg.create_user:
        ensure_user(cfg, act, paths)
    warn_about_directories(cfg, paths)
    changed = act.write(cfg.target(rel), text, mode)
    if not cfg.real:
        print(f"staged under {cfg.root}: nothing enabled")
        return
    if not cfg.user:
        print(
            "note: power runs as root; to run it as an ordinary user in the "
            f"{GPIO_GROUP} group instead, add --user {DEFAULT_USER} --create-user"
        )
    if cfg.systemd:
        if systemd_booted():
            act.run([program("systemctl"), "daemon-reload"])
        act.run([program("systemctl"), "enable", f"{SERVICE}.service"])
        start = f"sudo systemctl start {SERVICE}"
        restart = f"sudo systemctl restart {SERVICE}"
    else:
        act.run([program("update-rc.d"), SERVICE, "defaults"])
        if systemd_booted():
            act.run([program("systemctl"), "daemon-reload"])
        start = f"sudo service {SERVICE} start"
        restart = f"sudo service {SERVICE} restart"
    print(f"next: {start}" + (f"  (if it runs already: {restart})" if changed else ""))


def uninstall(cfg: Config, act: Actions) -> None:
    """Stop, disable and remove whatever kind this script installed."""
    found = False
    for rel in (INIT_REL, UNIT_REL):
        state = installed_file(cfg, rel)
        if state is None:
            continue
        path = cfg.target(rel)
        if state is False:
            warn(f"{path} was not installed by this script: left alone")
            continue
        found = True
        if not cfg.real:
            act.remove(path)
            act.prune(path, cfg.root)
        elif rel == INIT_REL:
            uninstall_init_script(act, path)
        else:
            uninstall_unit(act, path)
    if not found:
        print(f"power is not installed under {cfg.root}: nothing to do")
    elif cfg.real:
        print(
            "kept: the settings, the data directory and the user (if any); "
            "remove them yourself if you want them gone"
        )


def uninstall_init_script(act: Actions, path: str) -> None:
    """Stop the daemon, then remove and unregister the init script."""
    code = act.run([path, "stop"], check=False)
    if code != 0:
        warn(
            f"'{path} stop' exited with {code}: power may still run "
            "(find it with: pgrep -af power.py)"
        )
    act.remove(path)
    act.run([program("update-rc.d"), SERVICE, "remove"])
    if systemd_booted():
        act.run([program("systemctl"), "daemon-reload"])


def uninstall_unit(act: Actions, path: str) -> None:
    """Stop and disable the unit, then remove it."""
    booted = systemd_booted()
    if booted:
        code = act.run(
            [program("systemctl"), "stop", f"{SERVICE}.service"], check=False
        )
        if code != 0:
            warn(f"systemctl stop {SERVICE} exited with {code}: power may still run")
    act.run([program("systemctl"), "disable", f"{SERVICE}.service"])
    act.remove(path)
    if booted:
        act.run([program("systemctl"), "daemon-reload"])
        act.run(
            [program("systemctl"), "reset-failed", f"{SERVICE}.service"], check=False
        )


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
