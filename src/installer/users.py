"""The service user and the directories it writes: created when asked
(--create-user), else checked, with a warning for what needs doing."""

from __future__ import annotations

import grp
import os
import pwd

from installer.actions import Actions
from installer.checks import program
from installer.options import (
    DATA_DIR_MODE,
    DEFAULT_DATA_DIR,
    GPIO_GROUP,
    HOME_TREES,
    SYSTEM_DIRS,
    Config,
    SettingsPaths,
    warn,
)
from installer.render import group_exists, primary_group


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
