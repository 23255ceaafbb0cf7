"""Who holds the pidfile: a live power process, a stale file, or nobody.

lockfile's PID lock does not clear a pidfile left by a power cut or a
kill -9, and after a reboot its pid may belong to another program. A pid
counts as power only if that process holds the lock on DATA_DIR that every
running monitor holds for its whole life (and writes its pid into). Without
DATA_DIR (settings that do not load), only a process running power.py as its
script that has a DATA_DIR lock open counts, never one whose command line
merely contains the name.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import time
from typing import List, Optional

LOCKFILE = "journal.lock"  # in DATA_DIR, held by the running monitor
PIDFILE_NAME = "power.pid"  # in DATA_DIR unless --pidfile or PIDFILE names one
PID_MAX = 4_194_304  # the kernel's highest possible pid (2**22)


def read_pid(path: str) -> Optional[int]:
    """The pid in the file, or None when it is missing, unreadable or not
    a pid the kernel could hand out."""
    try:
        with open(path) as f:
            text = f.read(64).strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not text.isdigit() or len(text) > 10:
        return None
    pid = int(text)
    return pid if 0 < pid <= PID_MAX else None


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except OSError as exc:
        if exc.errno != errno.EPERM:
            return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True  # no /proc: trust kill(0)


def lock_holder(data_dir: str) -> Optional[int]:
    """The pid of the monitor holding DATA_DIR's lock, None if nobody holds
    it, -1 if somebody does but who cannot be told. The probe takes a shared
    lock for an instant only. The pid comes from the kernel's table of locks,
    never from the lock file's text alone: anyone who can write the file
    could name any process there."""
    path = os.path.join(data_dir, LOCKFILE)
    try:
        f = open(path)
    except OSError:
        return None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            st = os.fstat(f.fileno())
            holders = _flock_holders(st.st_dev, st.st_ino)
            if holders is not None:
                return holders[0] if holders else -1
            text = f.read(64).strip()  # no /proc/locks: trust only an open file
            pid = int(text) if text.isdigit() and len(text) <= 10 else None
            if pid is not None and _has_open(pid, st.st_dev, st.st_ino):
                return pid
            return -1
        fcntl.flock(f, fcntl.LOCK_UN)
    return None


def _flock_holders(dev: int, ino: int) -> Optional[List[int]]:
    """The pids holding a flock on the file (device, inode), as the kernel
    lists them in /proc/locks; None when it cannot be read."""
    key = f"{os.major(dev):02x}:{os.minor(dev):02x}:{ino}"
    try:
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    pids = []
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 2679 fe:00:2146395 0 EOF"; a blocked
        # waiter's line has "->" after the number.
        if "->" in fields[1:2]:
            continue
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == key:
            if fields[4].isdigit() and int(fields[4]) > 0:
                pids.append(int(fields[4]))
    return pids


def _has_open(pid: int, dev: int, ino: int) -> bool:
    """The process has the file (device, inode) open."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            st = os.stat(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if st.st_dev == dev and st.st_ino == ino:
            return True
    return False


def _runs_power(pid: int) -> bool:
    """Without DATA_DIR: power.py is the script this process runs and it has
    a DATA_DIR lock file open (where /proc shows it)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    script = [a for a in argv[1:3] if not a.startswith(b"-")][:1]
    if not script or os.path.basename(script[0]) != b"power.py":
        return False
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return True  # another user's process: the script is all we can see
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").endswith("/" + LOCKFILE):
                return True
        except OSError:
            continue
    return False


def running_pid(path: str, data_dir: Optional[str] = None) -> Optional[int]:
    """The pid of the power process holding `path`, or None."""
    if data_dir is not None:
        holder = lock_holder(data_dir)
        if holder and holder > 0 and holder != os.getpid() and alive(holder):
            return holder  # the monitor of this DATA_DIR, whatever the pidfile
        return None
    pid = read_pid(path)
    if pid is None or pid == os.getpid() or not alive(pid):
        return None
    return pid if _runs_power(pid) else None


def remove_stale(path: str, data_dir: Optional[str] = None) -> Optional[str]:
    """Delete a pidfile whose process is not power; say what it held."""
    if not os.path.isfile(path) or running_pid(path, data_dir) is not None:
        return None
    pid = read_pid(path)
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    if pid is None:
        return "it held no valid pid"
    if alive(pid):
        return f"pid {pid} is another program, not power"
    return f"pid {pid} is gone"


def terminate(pid: int, timeout: float) -> bool:
    """SIGTERM `pid` (checked to be power) and wait until it is gone; True
    if it ended in time."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.02)
    return not alive(pid)
