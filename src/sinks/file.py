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
from typing import IO, Dict, List, Optional, Sequence

from core.csvformat import COLUMNS, HEADER, HEADER_V1, HEADERS, csv_line
from core.meter import Reading
from core.options import Option
from sinks.base import Sink, SinkError

TAIL_BYTES = 4096
# The columns every version of the file has (a later column, such as
# estimate, may be missing from a file begun before it existed).
KEY_FIELDS = HEADER_V1.count(",") + 1


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
    def held_counts(cls, options: dict) -> Dict[str, int]:
        try:
            with open(options["path"], "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - TAIL_BYTES))
                lines = f.read().split(b"\n")
        except OSError:
            return {}
        for raw in reversed(lines[1:] if len(lines) > 1 else lines):
            fields = raw.decode("utf-8", "replace").split(",")
            if len(fields) >= KEY_FIELDS and fields[2].isdigit():
                return {fields[1]: int(fields[2])}
        return {}

    def open(self) -> None:
        try:
            parent = os.path.dirname(self.path)
            if parent:
                os.makedirs(parent, exist_ok=True)
            existed = os.path.exists(self.path)
            f = open(self.path, "a+b")
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
        """Return the last complete line (None for an empty file), cutting
        off a partial line a crash may have left."""
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return None
        start = max(0, size - TAIL_BYTES)
        f.seek(start)
        tail = f.read()
        if not tail.endswith(b"\n"):
            cut = tail.rfind(b"\n")
            keep = start + cut + 1 if cut >= 0 else 0
            self.log.warning(
                "%s ended in a partial line (an earlier crash); removed it, "
                "the journal gives its reading again",
                self.path,
            )
            f.truncate(keep)
            f.seek(0, os.SEEK_END)
            if keep == 0:
                return None
            tail = tail[: cut + 1]
        lines = tail.rstrip(b"\n").split(b"\n")
        return lines[-1].decode("utf-8", "replace")

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
