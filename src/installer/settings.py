"""The paths the service will write, read from the settings file."""

from __future__ import annotations

import os
import runpy
from typing import Optional

from installer.options import (
    DEFAULT_DATA_DIR,
    SUGGESTED_PATHS,
    SettingsPaths,
    UsageError,
    check_safe,
    warn,
)
from web.listen import parse_listen


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
    for name in ("WEB", "METRICS"):
        given = names.get(name)
        if isinstance(given, dict) and "listen" in given:
            try:
                _, port = parse_listen(given["listen"])
            except ValueError:
                continue  # the daemon says what is wrong with it
            if port < 1024:
                found.low_ports[f"{name}['listen']"] = port
    check_safe("DATA_DIR", found.data_dir)
    if found.logfile:
        check_safe("LOGFILE", found.logfile)
    for sink_path in found.sink_files:
        check_safe("a file sink's path", sink_path)
    return found
