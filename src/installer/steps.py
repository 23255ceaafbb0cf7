"""Install and uninstall: what happens, in order."""

from __future__ import annotations

import os
import shlex

from installer.actions import Actions
from installer.checks import installed_file, program, systemd_booted
from installer.options import (
    DEFAULT_USER,
    GPIO_GROUP,
    INIT_MODE,
    INIT_REL,
    PROG,
    SERVICE,
    UNIT_MODE,
    UNIT_REL,
    Config,
    UsageError,
    warn,
)
from installer.render import plan_unit, render_init_script, render_unit
from installer.settings import read_settings
from installer.users import ensure_user, warn_about_directories


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
        other_kind = "an init.d script" if cfg.systemd else "a systemd unit"
        root = "" if cfg.real else f" --root {shlex.quote(cfg.root)}"
        raise UsageError(
            f"power is installed as {other_kind} ({cfg.target(other)}); run "
            f"{PROG}{root} --uninstall first, then install again"
        )
    paths = read_settings(cfg.settings, required=cfg.real)
    check_as_the_daemon_would(cfg)
    if cfg.user and paths.low_ports and not cfg.systemd:
        setting, port = next(iter(paths.low_ports.items()))
        raise UsageError(
            f"{setting} port {port} is below 1024, which only root may open, "
            f"and the init.d script runs power as {cfg.user}: choose a port "
            "above 1023 (8080, say), or install the systemd unit (--systemd), "
            "which lets the user open it"
        )
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


def check_as_the_daemon_would(cfg: Config) -> None:
    """Every setting checked as the service will check it at start (and who
    may change the file), so a mistake is said now, not by a service that
    exits 2 at boot."""
    if not os.path.isfile(cfg.settings):
        return  # read_settings said what is missing
    from config.settings import load
    from core.options import SettingsError
    from service.account import uid_of

    try:
        load(cfg.settings, strict=True, service_uid=uid_of(cfg.user))
    except SettingsError as exc:
        raise UsageError(
            f"{exc}; the service would refuse to start with it: fix it, then "
            "install again"
        ) from None


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
