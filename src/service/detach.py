"""A start as a classic forking daemon (python-daemon's DaemonContext):
the parent waits on a pipe until the daemon says it runs, or why not, so
a refused start is told on the terminal with exit 1."""

from __future__ import annotations

import argparse
import os
import signal
from typing import List, Optional

from config.settings import Settings
from core.exits import EXIT_FAILURE, EXIT_OK, fail
from core.options import StopWhileStarting
from core.version import VERSION
from service import account, pidcheck
from service.pidfile import acquire_pidfile, claim_pidfile
from service.runtime import Service, StartError
from service.start import make_service

READY_TIMEOUT_S = 60.0


def run_daemon(
    args: argparse.Namespace,
    settings: Settings,
    pidfile: str,
    user: Optional[account.Account] = None,
) -> int:
    """Fork; the parent waits until the daemon says it runs, or why not."""
    try:  # here, where a missing package can still be reported
        import daemon  # noqa: F401
        import daemon.pidfile  # noqa: F401
    except ImportError as exc:
        raise StartError(
            f"python-daemon is missing ({exc}); install the requirements: "
            "pip install -r src/requirements.txt"
        ) from None
    note = claim_pidfile(pidfile, settings.data_dir)
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child:
        os.close(write_fd)
        os.waitpid(child, 0)
        return _await_ready(read_fd, pidfile)
    os.close(read_fd)
    code = EXIT_FAILURE
    try:
        code = _daemon_main(args, settings, pidfile, write_fd, note, user)
    finally:
        os._exit(code)


def _await_ready(read_fd: int, pidfile: str) -> int:
    import select

    chunks = []
    with os.fdopen(read_fd, "rb") as pipe:
        while True:
            ready, _, _ = select.select([pipe], [], [], READY_TIMEOUT_S)
            if not ready:
                return fail(
                    EXIT_FAILURE,
                    f"the daemon did not report within {READY_TIMEOUT_S:g} s; "
                    "see its log",
                )
            chunk = pipe.read1(4096)
            if not chunk:
                break
            chunks.append(chunk)
    text = b"".join(chunks).decode(errors="replace")
    if text.startswith("ok"):
        pid = pidcheck.read_pid(pidfile)
        print(f"power started (pid {pid}, pidfile {pidfile})")
        return EXIT_OK
    return fail(EXIT_FAILURE, text.strip() or "the daemon exited before it started")


def _daemon_main(
    args: argparse.Namespace,
    settings: Settings,
    pidfile: str,
    ready_fd: int,
    note: Optional[str],
    user: Optional[account.Account] = None,
) -> int:
    import daemon
    from daemon.pidfile import TimeoutPIDLockFile

    def report(text: str) -> None:
        try:
            os.write(ready_fd, text.encode())
            os.close(ready_fd)
        except OSError:
            pass

    service_box: List[Service] = []
    starting = StopWhileStarting()

    def on_signal(signum, frame):
        if service_box:
            service_box[0].handle_signal(signum, frame)
        elif signum not in (signal.SIGHUP, signal.SIGUSR1):
            starting(signum, frame)  # before the service: end quietly

    owner = (
        {}
        if user is None
        else {
            "uid": user.uid,
            "gid": user.gid,
            "initgroups": True,  # keep the user's groups: gpio
        }
    )
    context = daemon.DaemonContext(
        **owner,
        detach_process=True,
        working_directory="/",
        umask=0o022,
        files_preserve=[ready_fd],
        signal_map={
            signal.SIGTERM: on_signal,
            signal.SIGINT: on_signal,
            signal.SIGHUP: on_signal,
            signal.SIGUSR1: on_signal,
        },
    )
    try:
        context.open()
    except Exception as exc:  # lockfile.LockTimeout, permission errors
        report(f"cannot become a daemon: {type(exc).__name__}: {exc}")
        return EXIT_FAILURE
    service = make_service(args, settings, foreground=False, pidfile=pidfile)
    service_box.append(service)
    StopWhileStarting.hand_over(starting, service.handle_signal)
    log = service.log
    if note:
        log.warning("%s", note)
    log.info("power %s starting as a daemon (settings %s)", VERSION, settings.path)
    pidlock = TimeoutPIDLockFile(pidfile, 2)
    try:
        service.take_lock()  # before the pidfile: --kill finds power by it
        acquire_pidfile(pidlock, pidfile)
        service.start()
        code = service.wait(on_ready=lambda: report("ok\n"))
    except StartError as exc:
        log.error("%s", exc)
        report(str(exc))
        code = EXIT_FAILURE
    except Exception as exc:
        log.exception("cannot start")
        report(f"cannot start: {type(exc).__name__}: {exc}; see the log")
        code = EXIT_FAILURE
    finally:
        service.stop()
        if pidlock.i_am_locking():
            pidlock.release()
        log.info("power stopped")
        context.close()
    return code
