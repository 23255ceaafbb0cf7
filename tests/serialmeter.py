"""A meter on a serial port, for the register inputs' tests: a real
pseudo-terminal pair (os.openpty, raw), its slave reached through a fixed
path (a symlink, as /dev/serial/by-id/... is), so the daemon opens it as it
would /dev/ttyUSB0. Unplugging closes the master side (the daemon's reads
fail with EIO and the device goes away); plugging in makes a new pair
behind the same path.
"""

from __future__ import annotations

import os
import select
import subprocess
import tty
from pathlib import Path
from typing import Optional

from conftest import power_cmd


class MeterPort:
    def __init__(self, link: Path) -> None:
        self.link = link
        self.master: Optional[int] = None
        self.slave: Optional[int] = None
        self.plug()

    def plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line editing: bytes as sent
        tty.setraw(master)
        self.master, self.slave = master, slave
        tmp = self.link.with_name(self.link.name + ".new")
        if tmp.is_symlink():
            tmp.unlink()
        tmp.symlink_to(os.ttyname(slave))
        os.replace(tmp, self.link)

    def unplug(self) -> None:
        """The cable pulled: the master side closes (EIO for the reader)."""
        for fd in (self.master, self.slave):
            if fd is not None:
                os.close(fd)
        self.master = self.slave = None

    def send(self, data: bytes) -> None:
        assert self.master is not None
        view = memoryview(data)
        while view:
            _, ready, _ = select.select([], [self.master], [], 5.0)
            assert ready, "the pty did not take the frame"
            n = os.write(self.master, view)
            view = view[n:]

    def receive(self, timeout: float) -> bytes:
        """What the reader sent the meter (a D0 sign-on) within timeout."""
        assert self.master is not None
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return b""
        try:
            return os.read(self.master, 4096)
        except OSError:
            return b""

    def close(self) -> None:
        self.unplug()

    def opened_by(self, pid: int) -> bool:
        """Has process pid the port open (frames sent before are lost, as
        the opening flushes the input)?"""
        if self.slave is None:
            return False
        name = os.ttyname(self.slave)
        fds = Path(f"/proc/{pid}/fd")
        try:
            return any(os.readlink(fd) == name for fd in fds.iterdir())
        except OSError:
            return False


def start_daemon(settings: Path, *args: str) -> subprocess.Popen:
    """power.py in the foreground, its output to files next to settings."""
    out = open(settings.with_suffix(".out"), "w")
    return subprocess.Popen(
        power_cmd("--settings", str(settings), "--nodaemon", *args),
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
