"""What reaches a block device, and for which file (root only).

`LoopDisk` is a fresh ext4 file system on a loop device, so that
/proc/diskstats counts exactly what one daemon sends to "its card": every
byte and every flush, the file system's own journal included.

`BlockTrace` records each request the device gets (the kernel's
block_rq_issue trace event, in a tracefs instance of its own) and, once the
file system is unmounted, names the owner of every block written with
debugfs: a file of DATA_DIR, ext4's journal (inode 8), or metadata that
belongs to no inode (inode tables, bitmaps, group descriptors). That is how
the bytes per reading of bench/lean.py were taken apart.
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
from typing import Dict, List, Optional, Tuple

TRACEFS = "/sys/kernel/tracing"
INSTANCE = "power-lean"
# "loop3-1234 [000] ..... 12.345: block_rq_issue: 7,3 WS 4096 () 2048 + 8 ..."
ISSUE = re.compile(r"block_rq_issue: (\d+),(\d+) (\S+) (\d+) \(.*?\) (\d+) \+ (\d+)")
SYNC = re.compile(
    r"ext4_sync_file_enter: dev \d+,\d+ ino (\d+) parent \d+ datasync (\d)"
)
EVENTS = (
    "block/block_rq_issue",
    "ext4/ext4_sync_file_enter",
    "jbd2/jbd2_commit_flushing",
)
JOURNAL_INODE = 8


class LoopDisk:
    """An ext4 file system on a loop device: its own /proc/diskstats line.

    `options` are the mount options: Raspberry Pi OS mounts its root file
    system `defaults,noatime`."""

    def __init__(self, tmp: str, options: str = "defaults", size_mib: int = 512):
        self.image = os.path.join(tmp, "disk.img")
        self.mount = os.path.join(tmp, "disk")
        self.options = options
        os.makedirs(self.mount, exist_ok=True)
        with open(self.image, "wb") as f:
            f.truncate(size_mib << 20)
        self.device = subprocess.run(
            ["losetup", "-f", "--show", self.image],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        subprocess.run(
            [
                "mkfs.ext4",
                "-q",
                "-E",
                "lazy_itable_init=0,lazy_journal_init=0",
                self.device,
            ],
            check=True,
        )
        subprocess.run(["mount", "-o", options, self.device, self.mount], check=True)
        self.name = os.path.basename(self.device)
        self.mounted = True

    def stats(self) -> Tuple[int, int, int]:
        """Writes, bytes written, flush requests so far."""
        with open("/proc/diskstats") as f:
            for line in f:
                fields = line.split()
                if fields[2] == self.name:
                    flushes = int(fields[18]) if len(fields) > 18 else 0
                    return int(fields[7]), int(fields[9]) * 512, flushes
        raise KeyError(self.name)

    def dev_t(self) -> int:
        """The device number as trace events hold it (major << 20 | minor)."""
        st = os.stat(self.device)
        return (os.major(st.st_rdev) << 20) | os.minor(st.st_rdev)

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", self.mount], check=False)
            self.mounted = False

    def close(self) -> None:
        self.unmount()
        subprocess.run(["losetup", "-d", self.device], check=False)


class BlockTrace:
    """The write requests a device gets between start() and stop()."""

    def __init__(self, disk: LoopDisk) -> None:
        self.disk = disk
        self.dir = os.path.join(TRACEFS, "instances", f"{INSTANCE}-{os.getpid()}")
        self.requests: List[Tuple[str, int, int]] = []  # rwbs, sector, sectors
        self.syncs: List[Tuple[int, bool]] = []  # fsync calls: inode, datasync
        self.jbd2_commits = 0  # ext4 journal transactions committed

    @staticmethod
    def available() -> bool:
        return os.path.isdir(os.path.join(TRACEFS, "instances"))

    def _set(self, rel: str, value: str) -> None:
        with open(os.path.join(self.dir, rel), "w") as f:
            f.write(value)

    def start(self) -> None:
        os.mkdir(self.dir)
        self._set("buffer_size_kb", "4096")
        for event in EVENTS:
            self._set(f"events/{event}/filter", f"dev == {self.disk.dev_t()}")
            self._set(f"events/{event}/enable", "1")

    def stop(self) -> None:
        for event in EVENTS:
            self._set(f"events/{event}/enable", "0")
        with open(os.path.join(self.dir, "trace")) as f:
            for line in f:
                m = ISSUE.search(line)
                if m:
                    rwbs, sector, n = m.group(3), int(m.group(5)), int(m.group(6))
                    self.requests.append((rwbs, sector, n))
                    continue
                m = SYNC.search(line)
                if m:
                    self.syncs.append((int(m.group(1)), m.group(2) == "1"))
                elif "jbd2_commit_flushing:" in line:
                    self.jbd2_commits += 1
        os.rmdir(self.dir)

    def syncs_by_file(self) -> Dict[str, int]:
        """fsync and fdatasync calls per file (after unmount, as by_owner)."""
        names = self._names(sorted({ino for ino, _ in self.syncs}))
        return dict(collections.Counter(names[ino] for ino, _ in self.syncs))

    def flushes(self) -> int:
        return sum(1 for rwbs, _, _ in self.requests if "F" in rwbs)

    def by_owner(self) -> Dict[str, int]:
        """Bytes written per owner; call after the file system is unmounted
        (debugfs then reads what is really on it)."""
        block_size = self._block_size()
        per_block: Dict[int, int] = collections.Counter()
        for rwbs, sector, n in self.requests:
            if "W" not in rwbs or n == 0:
                continue
            first = sector * 512 // block_size
            last = (sector + n) * 512 - 1
            for block in range(first, last // block_size + 1):
                lo = max(sector * 512, block * block_size)
                hi = min((sector + n) * 512, (block + 1) * block_size)
                per_block[block] += hi - lo
        owners = self._owners(sorted(per_block))
        names = self._names(
            sorted({i for i in owners.values() if i not in (None, JOURNAL_INODE)})
        )
        out: Dict[str, int] = collections.Counter()
        for block, nbytes in per_block.items():
            inode = owners.get(block)
            if inode is None:
                what = "file system metadata (inode tables, bitmaps)"
            elif inode == JOURNAL_INODE:
                what = "ext4 journal (jbd2)"
            else:
                what = names.get(inode, f"inode {inode} (deleted since)")
            out[what] += nbytes
        return dict(out)

    def _debugfs(self, request: str) -> str:
        return subprocess.run(
            ["debugfs", "-R", request, self.disk.device],
            capture_output=True,
            text=True,
            check=False,
        ).stdout

    def _block_size(self) -> int:
        m = re.search(r"Block size:\s+(\d+)", self._debugfs("stats"))
        return int(m.group(1)) if m else 4096

    def _owners(self, blocks: List[int]) -> Dict[int, Optional[int]]:
        owners: Dict[int, Optional[int]] = {}
        for i in range(0, len(blocks), 500):
            chunk = blocks[i : i + 500]
            text = self._debugfs("icheck " + " ".join(map(str, chunk)))
            for line in text.splitlines()[1:]:
                parts = line.split()
                if len(parts) >= 2 and parts[0].isdigit():
                    owners[int(parts[0])] = (
                        int(parts[1]) if parts[1].isdigit() else None
                    )
        return owners

    def _names(self, inodes: List[int]) -> Dict[int, str]:
        if not inodes:
            return {}
        text = self._debugfs("ncheck " + " ".join(map(str, inodes)))
        names: Dict[int, str] = {}
        for line in text.splitlines()[1:]:
            parts = line.split(None, 1)
            if len(parts) == 2 and parts[0].isdigit():
                names[int(parts[0])] = parts[1].strip().lstrip("/")
        for inode in inodes:
            if inode not in names:
                names[inode] = f"inode {inode}"
        return names
