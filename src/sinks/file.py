"""CSV file sink: the plain record anyone can open in a spreadsheet.

Appends each batch and syncs it before the runner moves its cursor. A crash
between the two would write that batch again, so on open the sink reads the
file's last line (dropping a half-written one) and skips the readings it
already holds: after any crash the file has each reading exactly once.
"""

from __future__ import annotations

import os
from typing import IO, Optional, Sequence

from csvformat import HEADER, csv_line
from meter import Reading
from options import Option
from sinks.base import Sink, SinkError

TAIL_BYTES = 4096


class FileSink(Sink):
    OPTIONS = {"path": Option("path")}

    def __init__(self, name, options, log, meters=()) -> None:
        super().__init__(name, options, log, meters)
        self.path: str = options["path"]
        self._file: Optional[IO[bytes]] = None
        self._last_line: Optional[str] = None

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
            self._last_line = self._repair_tail(f)
            if self._last_line is None:
                f.write((HEADER + "\n").encode())
                f.flush()
        except OSError as exc:
            f.close()
            raise SinkError(f"cannot prepare {self.path}: {exc.strerror}") from exc
        self._file = f

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

    def write(self, batch: Sequence[Reading]) -> None:
        if self._file is None:
            raise SinkError(f"{self.path} is not open")
        lines = [csv_line(r) for r in batch]
        if self._last_line in lines:
            # Written before a crash, but the cursor did not move: skip.
            lines = lines[lines.index(self._last_line) + 1 :]
        if not lines:
            return
        data = ("\n".join(lines) + "\n").encode()
        try:
            self._file.write(data)
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            # A partial write is cut off on the next open.
            self.close()
            raise SinkError(f"cannot write {self.path}: {exc.strerror}") from exc
        self._last_line = lines[-1]

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None
