"""CSV file sink: the plain record anyone can open in a spreadsheet.

The file is its own record of where it stands: at start the sink reads its
last complete line (cutting off a half-written one) and the runner finds
that reading in the journal and goes on right after it, whatever the saved
cursor says. So after any crash the file has each reading exactly once: a
batch written but not yet marked is not written again, and rows lost from
the file's end (a cut file, a tail a power cut kept from the disk) are
written again from the journal. That is why the file needs no sync of its
own: every row it gets was synced in the journal first, and the kernel
writes the file out in its own time (an SD card lives on few syncs). The
cursor, saved with the journal's next commit, is only the fallback for a
last line the journal no longer holds. Times are not compared, as a Pi
without a clock may boot with one earlier than the file's last line.
"""

from __future__ import annotations

import os
import re
from typing import IO, Dict, List, Optional, Sequence, Tuple

from core import ownfiles
from core.csvformat import COLUMNS, HEADER, HEADER_V1, HEADERS, csv_line, parse_time
from core.meter import Reading
from core.options import Option
from sinks.base import Sink, SinkError

CHUNK_BYTES = 65536  # the tail is read back in steps of this size
# The columns every version of the file has (a later column, such as
# estimate, may be missing from a file begun before it existed).
KEY_FIELDS = HEADER_V1.count(",") + 1
VOLUME_FIELD = COLUMNS.index("volume_m3")


NAME_RE = re.compile(rb"[A-Za-z0-9_-]{1,64}")


def is_row(line: bytes) -> bool:
    """A row the sink could have written: its time, a meter's name (any:
    the file may hold a renamed meter's rows, which are history), a pulse
    count and an energy (a gas or water meter's volume in its own column).
    Anything else at the file's end (NUL bytes a
    power cut left, a line cut short and another run together with it,
    garbage) is damage."""
    fields = line.split(b",")
    if len(fields) < KEY_FIELDS or not fields[2].isdigit():
        return False
    if not NAME_RE.fullmatch(fields[1]):
        return False
    try:
        parse_time(fields[0].decode("ascii"))
        volume = not fields[3] and len(fields) > VOLUME_FIELD
        float(fields[VOLUME_FIELD] if volume else fields[3])
    except (UnicodeDecodeError, ValueError, OverflowError):
        return False
    return True


def last_good_line(f: IO[bytes], size: int) -> Tuple[int, Optional[bytes]]:
    """(offset just after it, the line) of the file's last line that is the
    header or a row (is_row), read back from the end in steps, however long
    the damage after it; (0, None) when there is none."""
    pos = size  # buf holds the file's bytes [pos, pos + len(buf))
    buf = b""
    newline = None  # offset of the newline that ends the candidate line
    while True:
        limit = size if newline is None else newline
        k = buf.rfind(b"\n", 0, limit - pos)
        while k < 0 and pos > 0:
            start = max(0, pos - CHUNK_BYTES)
            f.seek(start)
            buf = f.read(pos - start) + buf[: limit - pos]
            pos = start
            k = buf.rfind(b"\n", 0, limit - pos)
        before = pos + k if k >= 0 else -1  # the newline before, or none
        if newline is not None:  # the complete line (before, newline)
            line = buf[before + 1 - pos : newline - pos]
            if line.decode("utf-8", "replace") in HEADERS or is_row(line):
                return newline + 1, line
        if before < 0:
            return 0, None
        newline = before


def _not_a_directory(path: str) -> Optional[str]:
    if os.path.isdir(os.path.expanduser(path)):
        return "that is a directory; expected the CSV file's path in it"
    return None


class FileSink(Sink):
    OPTIONS = {"path": Option("path", check=_not_a_directory)}

    def __init__(self, name, options, log, meters=()) -> None:
        super().__init__(name, options, log, meters)
        self.path: str = options["path"]
        self._file: Optional[IO[bytes]] = None
        self._skip_through: Optional[str] = None  # the file's last line
        # For resume_after: the last line at open; "" for a file cut to
        # zero; None for a new file or one holding just its header.
        self._resume_line: Optional[str] = None
        # The file's columns: fewer for one begun by an older version.
        self._columns = len(COLUMNS)

    def describe(self) -> str:
        return f"{self.name} ({self.path})"

    @classmethod
    def last_written(cls, options: dict) -> Optional[Tuple[str, int, float]]:
        try:
            with open(options["path"], "rb") as f:
                size = f.seek(0, os.SEEK_END)
                _, line = last_good_line(f, size)
        except OSError:
            return None
        if line is None or line.decode() in HEADERS:
            return None
        fields = line.decode().split(",")
        return fields[1], int(fields[2]), parse_time(fields[0])

    @classmethod
    def held_counts(cls, options: dict) -> Dict[str, int]:
        try:
            with open(options["path"], "rb") as f:
                size = f.seek(0, os.SEEK_END)
                _, line = last_good_line(f, size)
        except OSError:
            return {}
        if line is None or line.decode() in HEADERS:
            return {}
        fields = line.decode().split(",")
        return {fields[1]: int(fields[2])}

    def open(self) -> None:
        try:
            parent = os.path.dirname(self.path)
            if parent:
                os.makedirs(parent, exist_ok=True)
            existed = os.path.exists(self.path)
            fd = ownfiles.open_own(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND)
            f = os.fdopen(fd, "a+b")
        except ownfiles.OwnFileError as exc:
            raise SinkError(str(exc), retry=False) from None
        except OSError as exc:
            raise SinkError(f"cannot open {self.path}: {exc.strerror}") from exc
        try:
            last = self._repair_tail(f)
            if last is None:
                f.write((HEADER + "\n").encode())
                f.flush()
            self._skip_through = None if last is None or last in HEADERS else last
            # A file cut to zero lost its readings: all the journal holds go
            # again. One with just its header was started by this sink (or a
            # rotation): its saved position stands.
            if existed and last not in HEADERS:
                self._resume_line = "" if last is None else last
            first = self._first_line(f)
            self._columns = first.count(",") + 1 if first in HEADERS else len(COLUMNS)
            if self._columns < len(COLUMNS):
                self.log.info(
                    "%s was begun by an older version: its rows go on without "
                    "the columns %s (move it aside to start a file with them)",
                    self.path,
                    ", ".join(COLUMNS[self._columns :]),
                )
        except OSError as exc:
            f.close()
            raise SinkError(f"cannot prepare {self.path}: {exc.strerror}") from exc
        self._file = f

    @staticmethod
    def _first_line(f: IO[bytes]) -> str:
        f.seek(0)
        first = f.readline(len(HEADER) + 2).decode("utf-8", "replace").rstrip("\n")
        f.seek(0, os.SEEK_END)
        return first

    def _repair_tail(self, f: IO[bytes]) -> Optional[str]:
        """Return the last good line (None for an empty file), cutting off
        whatever a crash left after it, however long: a partial line, NUL
        bytes (ext4 after a power cut during delayed allocation), garbage
        with or without a newline. Never more: the rows before it stay."""
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return None
        self._check_ours(f)
        keep, line = last_good_line(f, size)
        if keep < size:
            self.log.warning(
                "%s ended in %d bytes that are no reading (a crash or power cut "
                "left them); removed them, keeping the %d bytes before; the "
                "journal gives any reading they held again",
                self.path,
                size - keep,
                keep,
            )
            f.truncate(keep)
        f.seek(0, os.SEEK_END)
        return None if line is None else line.decode()

    def _check_ours(self, f: IO[bytes]) -> None:
        """Refuse a file that is not a CSV of power's: its tail would be
        taken for damage. A first line of NUL bytes is a new file whose
        start a power cut lost."""
        f.seek(0)
        first = f.readline(len(HEADER) + 2).rstrip(b"\n")
        f.seek(0, os.SEEK_END)
        text = first.decode("utf-8", "replace")
        if text in HEADERS or HEADER.startswith(text) or not first.strip(b"\x00"):
            return  # ours, ours cut short, or lost to a power cut
        shown = first[:40].decode("utf-8", "replace")
        raise SinkError(
            f"{self.path} is not a CSV file of power's (its first line is "
            f"{shown!r}, not the header {HEADER!r}); move it aside or give the "
            "file sink another 'path'",
            retry=False,
        )

    def resume_after(self, find) -> Optional[int]:
        line, self._resume_line = self._resume_line, None
        if line is None:
            return None  # a new file: go by the cursor
        if line == "":
            return 0  # no readings (cut to zero?): all the journal holds
        fields = line.split(",")
        try:
            meter, pulses = fields[1], int(fields[2])
        except (IndexError, ValueError):
            return None
        key = fields[:KEY_FIELDS]
        volume = self.is_volume(meter)
        for seq, reading in reversed(find(meter, pulses)):
            if csv_line(reading, volume=volume).split(",")[:KEY_FIELDS] == key:
                self._skip_through = None  # the position is known exactly
                return seq
        self.log.warning(
            "%s: its last line is not in the journal (pruned or replaced); "
            "going on from the saved position",
            self.path,
        )
        return None

    def write(self, batch: Sequence[Reading]) -> Optional[int]:
        if self._file is None:  # closed by an earlier error: open it again
            self.open()
        columns = self._columns
        kinds = self.kinds
        try:
            formatted = [csv_line(r, columns, r.meter in kinds) for r in batch]
        except (OverflowError, OSError, ValueError) as exc:
            raise SinkError(
                f"cannot write a reading to {self.path}: {exc}", bad_data=True
            ) from None
        lines = self._unwritten(formatted)
        if not lines:
            return None
        data = ("\n".join(lines) + "\n").encode()
        try:
            self._file.write(data)
            self._file.flush()  # to the kernel; the journal has it on disk
        except OSError as exc:
            # A partial write is cut off on the next open.
            self.close()
            raise SinkError(f"cannot write {self.path}: {exc.strerror}") from exc
        return None

    def _unwritten(self, lines: List[str]) -> List[str]:
        """Drop the lines of the first batch after open that the file has:
        those up to and including its last line."""
        last, self._skip_through = self._skip_through, None
        if last is not None and last in lines:
            return lines[lines.index(last) + 1 :]
        return lines

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None
