"""Who holds the pidfile: a live power process, a stale file, or nobody.

lockfile's PID lock does not clear a pidfile left by a power cut or a
kill -9, and after a reboot its pid may belong to another program. So a pid
counts as running only if that process exists and is a power monitor.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from typing import Optional


def read_pid(path: str) -> Optional[int]:
    """The pid in the file, or None when it is missing or unreadable."""
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    try:
        pid = int(text)
    except ValueError:
        return None
    return pid if pid > 0 else None


def is_power_process(pid: int) -> bool:
    """True if `pid` is alive and, where /proc can tell, runs power.py."""
    try:
        os.kill(pid, 0)
    except OSError as exc:
        if exc.errno != errno.EPERM:
            return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except FileNotFoundError:
        return not os.path.isdir("/proc")  # no /proc: trust kill(0)
    except OSError:
        return True
    if not cmdline:  # a zombie: exited, not yet reaped
        return False
    return b"power.py" in cmdline


def running_pid(path: str) -> Optional[int]:
    """The pid of the power process holding `path`, or None."""
    pid = read_pid(path)
    if pid is not None and pid != os.getpid() and is_power_process(pid):
        return pid
    return None


def remove_stale(path: str) -> Optional[int]:
    """Delete a pidfile whose process is gone; return the pid it named."""
    if not os.path.exists(path) or running_pid(path) is not None:
        return None
    pid = read_pid(path)
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    return pid if pid is not None else -1


def terminate(pid: int, timeout: float) -> bool:
    """SIGTERM `pid` and wait until it is gone; True if it ended in time."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_power_process(pid):
            return True
        time.sleep(0.05)
    return not is_power_process(pid)
