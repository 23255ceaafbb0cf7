"""CSV file sink: the plain record anyone can open in a spreadsheet.

Appends each batch and syncs it before the runner moves its cursor, which
is saved at once (DURABLE_CURSOR). A crash between the two sends that one
batch again, so on open the sink reads the file's last line (dropping a
half-written one) and skips the batch's readings up to it: after any crash
the file has each reading exactly once. Times are not compared, as a Pi
without a clock may boot with one earlier than the file's last line.
"""

from __future__ import annotations

import os
from typing import IO, List, Optional, Sequence

from csvformat import HEADER, HEADER_V1, csv_line
from meter import Reading
from options import Option
from sinks.base import Sink, SinkError

TAIL_BYTES = 4096


class FileSink(Sink):
    OPTIONS = {"path": Option("path")}
    DURABLE_CURSOR = True

    def __init__(self, name, options, log, meters=()) -> None:
        super().__init__(name, options, log, meters)
        self.path: str = options["path"]
        self._file: Optional[IO[bytes]] = None
        self._skip_through: Optional[str] = None  # the file's last line
        self._estimate_column = True  # False for a file begun before it existed

    def describe(self) -> str:
        return f"{self.name} ({self.path})"

    def open(self) -> None:
        try:
            parent = os.path.dirname(self.path)
            if parent:
                os.makedirs(parent, exist_ok=True)
            f = open(self.path, "a+b")
        except OSError as exc:
            raise SinkError(f"cannot open {self.path}: {exc.strerror}") from exc
        try:
            last = self._repair_tail(f)
            if last is None:
                f.write((HEADER + "\n").encode())
                f.flush()
            self._skip_through = None if last in (None, HEADER, HEADER_V1) else last
            self._estimate_column = self._first_line(f) != HEADER_V1
            if not self._estimate_column:
                self.log.info(
                    "%s was begun by an older version: its rows go on without "
                    "the estimate column (estimates repeat the pulse count); "
                    "move it aside to start a file with the column",
                    self.path,
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
                "%s ended in a partial line (an earlier crash); removed it",
                self.path,
            )
            f.truncate(keep)
            f.seek(0, os.SEEK_END)
            if keep == 0:
                return None
            tail = tail[: cut + 1]
        lines = tail.rstrip(b"\n").split(b"\n")
        return lines[-1].decode("utf-8", "replace")

    def write(self, batch: Sequence[Reading]) -> Optional[int]:
        if self._file is None:  # closed by an earlier error: open it again
            self.open()
        column = self._estimate_column
        lines = self._unwritten([csv_line(r, column) for r in batch])
        if not lines:
            return None
        data = ("\n".join(lines) + "\n").encode()
        try:
            self._file.write(data)
            self._file.flush()
            os.fsync(self._file.fileno())
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
