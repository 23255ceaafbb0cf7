"""The service files: the LSB init script and the systemd unit, rendered
from the templates in init.d/, and the unit's plan of writable paths."""

from __future__ import annotations

import grp
import os
import pwd
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from installer.options import (
    GPIO_GROUP,
    HOME_TREES,
    INIT_TEMPLATE,
    SYSTEMD_DIRS,
    TEMPLATE_DIR,
    TMP_TREES,
    UNIT_TEMPLATE,
    Config,
    SettingsPaths,
    UsageError,
)


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


def under(path: str, tree: str) -> bool:
    tree = tree.rstrip("/")
    return path == tree or path.startswith(tree + "/")


def inside_any(path: str, trees: Sequence[str]) -> bool:
    return any(under(path, t) for t in trees)


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

    if cfg.user and paths.low_ports:
        # Only root may open a port below 1024; this one capability lets the
        # service's user open it, and nothing else.
        identity += [
            "AmbientCapabilities=CAP_NET_BIND_SERVICE",
            "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        ]
        ports = ", ".join(f"{k} port {v}" for k, v in paths.low_ports.items())
        notes.append(
            f"AmbientCapabilities=CAP_NET_BIND_SERVICE: {ports} is below 1024, "
            f"which only root may open; {cfg.user} may open it with this"
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
    outer = [p for p in unique if not any(p != q and under(p, q) for q in unique)]
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
    if any(inside_any(p, HOME_TREES) for p in needed):
        protect_home = "read-only"
        notes.append(
            "ProtectHome=read-only: power (or its Python) lives under "
            + ", ".join(HOME_TREES)
            + ", which ProtectHome=yes would hide"
        )
    private_tmp = "yes"
    if any(inside_any(p, TMP_TREES) for p in needed):
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
