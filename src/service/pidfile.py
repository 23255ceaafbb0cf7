"""The pidfile of a start: refuse when power runs already, clear a stale
one, write it (lockfile's PID lock) or say why not."""

from __future__ import annotations

from typing import Optional

from core.journal import journal_path
from service import pidcheck, runstate
from service.runtime import StartError


def refuse_if_running(pidfile: str, data_dir: str) -> None:
    """StartError when power already runs on DATA_DIR, naming the running
    daemon's own pidfile (the new start may name another)."""
    pid = pidcheck.running_pid(pidfile, data_dir)
    if pid is None:
        return
    running = runstate.of_pid(journal_path(data_dir), pid)
    its = running.pidfile if running and running.pidfile else pidfile
    raise StartError(
        f"power is already running (pid {pid}, pidfile {its}) on DATA_DIR "
        f"{data_dir}; stop it with --kill or check it with --status"
    )


def claim_pidfile(pidfile: str, data_dir: str) -> Optional[str]:
    """Refuse if power runs; clear a stale pidfile. Returns a note to log."""
    refuse_if_running(pidfile, data_dir)
    stale = pidcheck.remove_stale(pidfile, data_dir)
    if stale:
        return f"removed stale pidfile {pidfile} ({stale})"
    return None


def acquire_pidfile(lock, pidfile: str) -> None:
    """Write the pidfile (lockfile's PID lock); StartError saying why not."""
    try:
        lock.acquire()
    except Exception as exc:  # lockfile's LockFailed, LockTimeout, OSError
        text = f"{exc} {exc.__context__ or ''}"
        if "No space left" in text or "Disk quota" in text:
            raise StartError(
                f"cannot write the pidfile {pidfile}: the disk is full; free "
                "some space and start again"
            ) from None
        raise StartError(
            f"cannot write the pidfile {pidfile}: {type(exc).__name__}: {exc}"
        ) from None
