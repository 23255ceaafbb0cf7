"""`power.py --kill`: stop the running daemon (SIGTERM, then wait)."""

from __future__ import annotations

from typing import Optional

from core.exits import EXIT_FAILURE, EXIT_NOT_RUNNING, EXIT_OK, fail
from service import pidcheck

KILL_TIMEOUT_S = 15.0


def main(pidfile: str, data_dir: Optional[str] = None) -> int:
    pid = pidcheck.running_pid(pidfile, data_dir)
    if pid is None:
        stale = pidcheck.remove_stale(pidfile, data_dir)
        if stale:
            return fail(
                EXIT_NOT_RUNNING,
                f"power is not running; removed the stale pidfile {pidfile} ({stale})",
            )
        return fail(EXIT_NOT_RUNNING, f"power is not running (no pidfile {pidfile})")
    try:
        ended = pidcheck.terminate(pid, KILL_TIMEOUT_S)
    except PermissionError:
        return fail(
            EXIT_FAILURE,
            f"power (pid {pid}) runs as another user; run --kill as root or "
            "as that user",
        )
    if not ended:
        return fail(
            EXIT_FAILURE,
            f"power (pid {pid}) did not stop within {KILL_TIMEOUT_S:g} s; "
            f"look at its log, then 'kill -9 {pid}'",
        )
    pidcheck.remove_stale(pidfile, data_dir)
    print(f"power (pid {pid}) stopped")
    return EXIT_OK
