"""Each sink's failure streak, kept in the journal for --status.

A failing sink is logged once per streak; a user who does not read the log
must still see it. The main thread compares the runners' state every few
seconds and saves only what changed (a streak begun, its error changed, a
recovery), so a healthy daemon writes nothing here. Errors are stored with
secrets masked, as in the log.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Callable, Dict, Optional, Sequence, Tuple

from core.journal import connect
from sinks.runner import SinkRunner

State = Tuple[float, str]  # epoch seconds the streak began, its last error


class SinkStates:
    """Saves the runners' failure streaks; tells the terminal of new ones."""

    def __init__(
        self,
        path: str,
        redact: Callable[[str], str],
        tell: Optional[Callable[[str], None]] = None,
    ) -> None:
        self.path = path
        self.redact = redact
        self.tell = tell  # a foreground run whose log goes to a file
        self._saved: Dict[str, State] = {}
        self._conn: Optional[sqlite3.Connection] = None

    def clear(self) -> None:
        """At start: streaks of an earlier run are over."""
        self._write(lambda c: c.execute("DELETE FROM sink_errors"))

    def sync(self, runners: Sequence[SinkRunner]) -> None:
        now = time.time()
        for runner in runners:
            failing_for = runner.failing_for_s
            old = self._saved.get(runner.name)
            if failing_for is None:
                if old is not None:
                    del self._saved[runner.name]
                    self._write(
                        lambda c, n=runner.name: c.execute(
                            "DELETE FROM sink_errors WHERE sink = ?", (n,)
                        )
                    )
                continue
            error = self.redact(runner.last_error)
            if old is not None and old[1] == error:
                continue
            since = old[0] if old is not None else now - failing_for
            self._saved[runner.name] = (since, error)
            self._write(
                lambda c, n=runner.name, s=since, e=error: c.execute(
                    "INSERT INTO sink_errors (sink, since, error) VALUES (?, ?, ?) "
                    "ON CONFLICT(sink) DO UPDATE SET since=excluded.since, "
                    "error=excluded.error",
                    (n, s, e),
                )
            )
            if old is None and self.tell is not None:
                self.tell(
                    f"sink {runner.name} is failing: {error}; its readings wait "
                    "in the journal (details in the log)"
                )

    def _write(self, action: Callable[[sqlite3.Connection], object]) -> None:
        try:
            if self._conn is None:
                self._conn = connect(self.path)
                # Never hold up a stop behind another writer: skip instead.
                self._conn.execute("PRAGMA busy_timeout=200")
            action(self._conn)
        except sqlite3.Error:
            pass  # the journal's own errors are logged where it is written

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def read(conn: sqlite3.Connection) -> Dict[str, State]:
    """The saved streaks, per sink (none for a journal of an older version)."""
    try:
        rows = conn.execute("SELECT sink, since, error FROM sink_errors").fetchall()
    except sqlite3.OperationalError:
        return {}
    return {sink: (since, error) for sink, since, error in rows}
