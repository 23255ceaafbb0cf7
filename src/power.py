#!/usr/bin/env python3
"""power: read an electricity meter's pulse LED and publish what the house uses.

Runs in the foreground (--nodaemon) or as a classic forking daemon with a
pidfile (python-daemon and lockfile); --kill stops it, --status reports on
it. See README.rst and the manual in docs/.
"""

from __future__ import annotations

import _signal  # built in: no import time before the handler is set

if __name__ == "__main__":  # a Ctrl-C while importing: no traceback
    _signal.signal(_signal.SIGINT, _signal.SIG_DFL)

import argparse  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import List, Optional, Tuple  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import account  # noqa: E402
import config  # noqa: E402
import logsetup  # noqa: E402
import metrics  # noqa: E402
import pidcheck  # noqa: E402
import rejects  # noqa: E402
from csvformat import format_time  # noqa: E402
from inputs.base import InputError  # noqa: E402
from journal import journal_path, open_schema, read_status  # noqa: E402
from options import Interrupted, SettingsError  # noqa: E402
from runtime import EXIT_FAILURE, EXIT_OK, Service, StartError  # noqa: E402
from version import VERSION  # noqa: E402

EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3
KILL_TIMEOUT_S = 15.0
READY_TIMEOUT_S = 60.0
PIDFILE_NAME = "power.pid"


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # exit 2 with a hint, as documented
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"power.py: error: {message} (see power.py -h)\n")


USAGE = """power.py [--settings PATH] [--pidfile PATH] [--nodaemon] [--kill]
                [--status] [--logfile PATH] [--simulate WATTS | --replay FILE]
                [--speed FACTOR] [--user NAME] [-q] [-v] [--version] [-h]
       power.py [--settings PATH] COMMAND [options]   (COMMAND -h for help)"""


def build_parser() -> argparse.ArgumentParser:
    """The main parser: running, --kill and --status. Subcommands have
    their own (SUBCOMMANDS), listed in its epilog."""
    commands = "\n".join(
        f"  {name:<10} {entry[0]}" for name, entry in SUBCOMMANDS.items()
    )
    p = ArgumentParser(
        prog="power.py",
        usage=USAGE,
        description="Read an electricity meter's pulse LED and publish the "
        "readings (CSV file, InfluxDB, Librato, MQTT, ThingsBoard).",
        epilog=f"commands:\n{commands}\n\nGlobal options such as --settings may "
        "stand before or after a command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--settings",
        metavar="PATH",
        help="settings file (default: $POWER_SETTINGS, else settings.py "
        "beside power.py)",
    )
    p.add_argument(
        "--pidfile",
        metavar="PATH",
        help="pidfile (default: PIDFILE from settings, else DATA_DIR/power.pid)",
    )
    p.add_argument(
        "--nodaemon",
        action="store_true",
        help="run in the foreground, printing a line per reading",
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument("--kill", action="store_true", help="stop the running daemon")
    group.add_argument(
        "--status",
        action="store_true",
        help="say whether it runs, the last reading and each sink's backlog",
    )
    p.add_argument(
        "--logfile",
        metavar="PATH",
        help="log here (default: LOGFILE, else stderr in the foreground and "
        "syslog when detached)",
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--simulate",
        metavar="WATTS",
        type=float,
        help="read a simulated meter with this mean load instead of GPIO",
    )
    source.add_argument(
        "--replay", metavar="FILE", help="read pulse times from FILE instead of GPIO"
    )
    p.add_argument(
        "--speed",
        metavar="FACTOR",
        type=float,
        help="time factor for --simulate and --replay; 0 = as fast as possible",
    )
    p.add_argument(
        "--user",
        metavar="NAME",
        help="started as root: run as this user, with its groups (e.g. gpio)",
    )
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="with --nodaemon: no line per reading on stdout",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    p.add_argument("--version", action="version", version=f"power {VERSION}")
    return p


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    p = build_parser()
    args = p.parse_args(argv)
    if args.simulate is not None and not 1 <= args.simulate <= 1_000_000:  # NaN too
        p.error(f"--simulate {args.simulate:g}: expected a mean load from 1 to 1e6 W")
    if args.speed is not None and not 0 <= args.speed <= 1e9:  # NaN too
        p.error(f"--speed {args.speed:g}: expected a factor from 0 to 1e9")
    return args


def fail(code: int, message: str) -> int:
    print(f"power.py: {message}", file=sys.stderr)
    return code


def load_settings(args: argparse.Namespace) -> config.Settings:
    """Settings with the command line's overrides; SettingsError if wrong."""
    path = args.settings or config.default_settings_path(HERE)
    settings = config.load(path)
    if args.simulate is not None:
        options = {"watts": args.simulate}
        if args.speed is not None:
            options["speed"] = args.speed
        settings = config.with_input(settings, "simulated", options)
    elif args.replay is not None:
        options = {
            "path": args.replay,
            "speed": 1.0 if args.speed is None else args.speed,
        }
        settings = config.with_input(settings, "replay", options)
    elif args.speed is not None:
        settings = config.with_speed(settings, args.speed)
    return settings


def pidfile_path(args: argparse.Namespace, settings: config.Settings) -> str:
    if args.pidfile:
        return os.path.abspath(args.pidfile)
    if settings.pidfile:
        return settings.pidfile
    return os.path.join(settings.data_dir, PIDFILE_NAME)


# --status and --kill -------------------------------------------------------------


def show_status(pidfile: str, settings: Optional[config.Settings]) -> int:
    pid = pidcheck.running_pid(pidfile, settings.data_dir if settings else None)
    if pid is not None and pidcheck.read_pid(pidfile) != pid:
        print(
            f"power is running (pid {pid}, found by its lock on DATA_DIR "
            f"{settings.data_dir if settings else ''}; it was started with "
            f"another pidfile than {pidfile})"
        )
    elif pid is not None:
        print(f"power is running (pid {pid}, pidfile {pidfile})")
    else:
        print(f"power is not running (pidfile {pidfile})")
    code = EXIT_OK if pid is not None else EXIT_NOT_RUNNING
    if settings is None:
        return code  # no settings: no journal to read
    for m in settings.meters:
        print(f"input of meter {m.config.name}: {m.input_note}")
    sinks = [s.name for s in settings.sinks]
    try:
        status = read_status(journal_path(settings.data_dir), sinks)
    except Exception as exc:  # any SQLite trouble: report, do not crash
        print(
            f"journal: {journal_path(settings.data_dir)} cannot be read ({exc}); "
            "power moves a damaged journal aside at its next start"
        )
        return code
    if status is None:
        print(f"last reading: none (no journal in DATA_DIR {settings.data_dir})")
    else:
        if not status.last:
            print("last reading: none yet")
        for name, r in status.last.items():
            power = "unknown" if r.power_w is None else f"{r.power_w:.1f} W"
            if r.estimate:
                bound = (
                    "0 W after the idle timeout"
                    if r.power_w == 0
                    else f"at most {power}"
                )
                power = f"{bound} (estimate: no pulse for {r.interval_s:.0f} s)"
            print(
                f"last reading: {name} at {format_time(r.time)}: {power}, "
                f"{r.energy_kwh:.3f} kWh, pulse {r.pulses}"
            )
        for name, counts in status.rejected.items():
            day = status.rejected_day.get(name, (0, 0, 0))
            print(
                f"rejected edges of {name}: {rejects.describe(day)} in the last "
                f"24 h; {rejects.describe(counts)} in all"
            )
        errors = sink_errors(settings)
        for name in sinks:
            line = f"sink {name}: backlog {status.backlog[name]} readings"
            if name in errors:
                since, error = errors[name]
                if pid is not None:
                    age = describe_age(time.time() - since)
                    line += f"; failing since {format_time(since)} ({age}): {error}"
                else:
                    line += (
                        f"; was failing when power stopped (since "
                        f"{format_time(since)}): {error}"
                    )
            if name in status.skipped:
                count, first = status.skipped[name]
                line += (
                    f"; {count} refused as bad data and skipped (first at "
                    f"sequence {first}; see the log)"
                )
            print(line)
        for line in register_status(settings):
            print(line)
    return code


def sink_errors(settings: config.Settings):
    """Each failing sink's streak (since, error), as the daemon saved it."""
    import sinkstate
    from journal import connect

    try:
        conn = connect(journal_path(settings.data_dir), readonly=True)
        try:
            return sinkstate.read(conn)
        finally:
            conn.close()
    except Exception:  # read_status already said what is wrong with it
        return {}


def describe_age(seconds: float) -> str:
    """A duration as people say it: 45 s, 12 min, 3 h, 2 days."""
    if seconds < 90:
        return f"{max(seconds, 0):.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


def register_status(settings: config.Settings) -> List[str]:
    """Each meter's last register reading and its drift, for --status."""
    import register
    from journal import connect

    ppk = {m.config.name: m.config.pulses_per_kwh for m in settings.meters}
    try:
        conn = connect(journal_path(settings.data_dir), readonly=True)
        try:
            return register.status_lines(conn, list(ppk), ppk)
        finally:
            conn.close()
    except Exception as exc:  # any SQLite trouble: report, do not crash
        return [f"register readings: cannot be read ({exc})"]


def kill(pidfile: str, data_dir: Optional[str] = None) -> int:
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


# Start -------------------------------------------------------------------------


CORE_PACKAGES = {"daemon": "python-daemon", "lockfile": "lockfile"}


def missing_packages(settings: config.Settings) -> List[str]:
    """The packages power and its configured sinks need that this Python
    lacks (run without the venv, say), without importing them."""
    import importlib.util

    wanted = dict(CORE_PACKAGES)
    for setup in settings.sinks:
        wanted.update(setup.cls.PACKAGES)
    if settings.metrics is not None:
        wanted["prometheus_client"] = "prometheus_client"
    missing = []
    for module, package in wanted.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:  # a parent package is missing
            found = False
        if not found and package not in missing:
            missing.append(package)
    return missing


def check_packages(settings: config.Settings) -> None:
    missing = missing_packages(settings)
    if missing:
        raise SettingsError(
            f"this Python ({sys.executable}) lacks {', '.join(missing)}: run "
            "'make venv' and start power with .venv/bin/python src/power.py, or "
            "install the requirements: pip install -r src/requirements.txt"
        )


def preflight(settings: config.Settings, logfile: Optional[str], pidfile: str) -> None:
    """Everything that can be checked before forking or touching GPIO.
    Creates nothing: a start refused here leaves no trace behind."""
    check_packages(settings)
    for m in settings.meters:
        try:
            m.input_class.preflight(m.input_options)
        except InputError as exc:
            raise SettingsError(str(exc)) from None
    if logfile:
        problem = _cannot_create(logfile, directory=False)
        if problem:
            raise SettingsError(
                f"log file {logfile}: cannot open it ({problem}); create its "
                "directory or name another with --logfile or LOGFILE"
            )
    problem = _cannot_create(settings.data_dir, directory=True)
    if problem:
        raise SettingsError(
            f"DATA_DIR = {settings.data_dir!r}: {problem}; create it and let the "
            "user running power write there"
            + (
                f" (sudo chown {os.getuid()} {settings.data_dir})"
                if os.path.isdir(settings.data_dir)
                else ""
            )
        )
    if os.path.isdir(pidfile):
        raise SettingsError(
            f"--pidfile {pidfile}: that is a directory; name a file in it, "
            f"such as {os.path.join(pidfile, PIDFILE_NAME)}"
        )
    folder = os.path.dirname(pidfile)
    problem = _cannot_create(folder, directory=True)
    if problem:
        raise SettingsError(
            f"--pidfile {pidfile}: {folder}: {problem}; create it for the user "
            "running power, or name another pidfile"
        )
    if settings.metrics is not None:
        try:
            metrics.check_port(settings.metrics)
        except metrics.PortInUseError as exc:
            raise StartError(str(exc)) from None


def _cannot_create(path: str, directory: bool) -> Optional[str]:
    """Why this user could not create or write `path`; None if it can."""
    if os.path.lexists(path):
        if directory and not os.path.isdir(path):
            return "cannot create it: a file of that name is in the way"
        if not directory and os.path.isdir(path):
            return "is a directory"
        mode = os.W_OK | os.X_OK if directory else os.W_OK
        return None if os.access(path, mode) else "not writable by this user"
    parent = os.path.dirname(os.path.abspath(path))
    if not directory and not os.path.isdir(parent):
        return f"no directory {parent}"  # only directories are created
    while not os.path.isdir(parent):
        if os.path.lexists(parent):
            return f"cannot create it: {parent} is not a directory"
        parent = os.path.dirname(parent)
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot create it in {parent} (not writable by this user)"
    return None


def create_dirs(settings: config.Settings, pidfile: str) -> None:
    """DATA_DIR and the pidfile's directory (/run is empty at boot), once
    every check has passed."""
    for what, folder in (
        (f"DATA_DIR = {settings.data_dir!r}", settings.data_dir),
        (f"--pidfile {pidfile}", os.path.dirname(pidfile)),
    ):
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise SettingsError(
                f"{what}: cannot create {folder} ({exc.strerror}); create it for "
                "the user running power"
            ) from None


def give_to(
    user: account.Account,
    settings: config.Settings,
    pidfile: str,
    logfile: Optional[str],
    made: List[str],
) -> None:
    """Before switching to `user`: it must be able to write what power
    writes. Directories power just made and power's own files are handed
    over; a directory that was there already must let the user in."""
    own = [journal_path(settings.data_dir) + s for s in ("", "-wal", "-shm")]
    own += [
        os.path.join(settings.data_dir, n)
        for n in ("journal.lock", "journal.mark", "power.pid", "power.log")
    ]
    own += [s.options["path"] for s in settings.sinks if "path" in s.cls.OPTIONS]
    account.hand_over(user, made + own + [pidfile] + ([logfile] if logfile else []))
    for what, folder in (
        ("DATA_DIR", settings.data_dir),
        ("the pidfile's directory", os.path.dirname(pidfile)),
    ):
        if not account.writable_by(user, folder):
            raise SettingsError(
                f"--user {user.name}: {what} {folder} is not writable by "
                f"{user.name}; run 'sudo chown {user.name} {folder}' or choose "
                "a directory of its own"
            )


def claim_pidfile(pidfile: str, data_dir: str) -> Optional[str]:
    """Refuse if power runs; clear a stale pidfile. Returns a note to log."""
    pid = pidcheck.running_pid(pidfile, data_dir)
    if pid is not None:
        raise StartError(
            f"power is already running (pid {pid}, pidfile {pidfile}); "
            "stop it with --kill or check it with --status"
        )
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


def logfile_of(args: argparse.Namespace, settings: config.Settings) -> Optional[str]:
    return os.path.abspath(args.logfile) if args.logfile else settings.logfile


TERMINAL_COMMIT_S = 1.0  # the commit interval while a terminal shows the readings


def make_service(
    args: argparse.Namespace, settings: config.Settings, foreground: bool
) -> Service:
    level = logging.DEBUG if args.verbose else getattr(logging, settings.log_level)
    logfile = os.path.abspath(args.logfile) if args.logfile else settings.logfile
    fallback = os.path.join(settings.data_dir, "power.log")
    log = logsetup.configure(level, foreground, logfile, settings.secrets, fallback)
    # In the foreground with the log in a file, a failing sink is still told
    # on the terminal, once per failure streak.
    tell = (
        (lambda text: print(f"power.py: {text}", file=sys.stderr))
        if (foreground and logfile)
        else None
    )
    console = foreground and not args.quiet
    if (
        console
        and sys.stdout.isatty()
        and settings.commit_interval_s > TERMINAL_COMMIT_S
    ):
        # Someone is watching the lines: each reading as it comes. Detached
        # (or under systemd, whose stdout is no terminal) COMMIT_INTERVAL_S
        # spares the card; a short run on a terminal costs it little.
        import dataclasses

        log.info(
            "on a terminal: readings committed and shown every %g s "
            "(COMMIT_INTERVAL_S %g applies when detached)",
            TERMINAL_COMMIT_S,
            settings.commit_interval_s,
        )
        settings = dataclasses.replace(settings, commit_interval_s=TERMINAL_COMMIT_S)
    return Service(settings, log, console=console, tell=tell)


def run_foreground(
    args: argparse.Namespace,
    settings: config.Settings,
    pidfile: Optional[str],
    user: Optional[account.Account] = None,
) -> int:
    from daemon.pidfile import TimeoutPIDLockFile

    if user is not None:  # before any file is opened, as python-daemon does
        account.switch(user)
    service = make_service(args, settings, foreground=True)
    log = service.log
    lock = None
    try:
        service.take_lock()  # before the pidfile: --kill finds power by it
        if pidfile:
            note = claim_pidfile(pidfile, settings.data_dir)
            if note:
                log.warning("%s", note)
            lock = TimeoutPIDLockFile(pidfile, 1)
            acquire_pidfile(lock, pidfile)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, service.handle_signal)
        log.info(
            "power %s starting in the foreground (settings %s)", VERSION, settings.path
        )
        service.start()
        return service.wait()
    except StartError as exc:
        log.error("%s", exc)
        if logfile_of(args, settings):  # a refusal always reaches the terminal
            fail(EXIT_FAILURE, str(exc))
        return EXIT_FAILURE
    except Exception as exc:  # lockfile errors and the like
        log.error("cannot start: %s: %s", type(exc).__name__, exc)
        if logfile_of(args, settings):
            fail(EXIT_FAILURE, f"cannot start: {type(exc).__name__}: {exc}")
        return EXIT_FAILURE
    finally:
        service.stop()
        if lock is not None and lock.i_am_locking():
            lock.release()


def run_daemon(
    args: argparse.Namespace,
    settings: config.Settings,
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
    settings: config.Settings,
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

    def on_signal(signum, frame):
        if service_box:
            service_box[0].handle_signal(signum, frame)
        elif signum != signal.SIGHUP:
            raise Interrupted(signum)  # before the service: end quietly

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
        },
    )
    try:
        context.open()
    except Exception as exc:  # lockfile.LockTimeout, permission errors
        report(f"cannot become a daemon: {type(exc).__name__}: {exc}")
        return EXIT_FAILURE
    service = make_service(args, settings, foreground=False)
    service_box.append(service)
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


def report_main(argv: List[str]) -> int:
    """`power.py report ...`: energy per period from the journal."""
    import report

    args = report.parse_args(argv)
    try:
        path = args.settings or config.default_settings_path(HERE)
        settings = config.load(path)
        ppk = {m.config.name: m.config.pulses_per_kwh for m in settings.meters}
        if args.journal:
            if not os.path.isfile(args.journal):
                return fail(EXIT_USAGE, f"--journal {args.journal}: no such file")
        elif not os.path.exists(journal_path(settings.data_dir)):
            return fail(
                EXIT_USAGE,
                f"no journal in DATA_DIR {settings.data_dir} yet: power has not "
                "run with these settings (or --settings names another file)",
            )
        return report.run(args, settings.data_dir, ppk)
    except SettingsError as exc:
        return fail(EXIT_USAGE, str(exc))


def report_parser() -> argparse.ArgumentParser:
    import report

    return report.build_parser()


def register_parser() -> argparse.ArgumentParser:
    import register

    return register.build_parser()


def register_main(argv: List[str]) -> int:
    """`power.py register KWH ...`: a reading of the meter's register."""
    import sqlite3

    import register

    args = register.build_parser().parse_args(argv)
    try:
        path = args.settings or config.default_settings_path(HERE)
        settings = config.load(path)
        names = [m.config.name for m in settings.meters]
        if args.meter is None and len(names) > 1:
            raise SettingsError(
                f"several meters ({', '.join(names)}): name one with --meter"
            )
        name = args.meter or names[0]
        if name not in names:
            raise SettingsError(
                f"--meter {name!r}: no such meter in the settings ({', '.join(names)})"
            )
        meter = settings.meters[names.index(name)].config
        when = register.parse_at(args.at) if args.at else time.time()
        register.parse_kwh(args.kwh)  # a bad number is bad usage
        problem = _cannot_create(settings.data_dir, directory=True)
        if problem:
            raise SettingsError(f"DATA_DIR = {settings.data_dir!r}: {problem}")
        os.makedirs(settings.data_dir, exist_ok=True)
    except SettingsError as exc:
        return fail(EXIT_USAGE, str(exc))
    journal = journal_path(settings.data_dir)
    try:
        conn = open_schema(journal)
        try:
            lines = register.record(
                conn,
                name,
                args.kwh,
                when,
                meter.pulses_per_kwh,
                meter.energy_offset_kwh,
                args.rebase,
            )
        finally:
            conn.close()
    except register.RegisterError as exc:
        return fail(EXIT_FAILURE, str(exc))
    except SettingsError as exc:
        return fail(EXIT_USAGE, str(exc))
    except (sqlite3.Error, OSError) as exc:
        return fail(EXIT_FAILURE, f"cannot write the journal {journal}: {exc}")
    for line in lines:
        print(line)
    return EXIT_OK


# Subcommands: name -> (one line of help, entry point taking its arguments,
# a function returning its argparse parser). The manual's command-line
# reference is made from these parsers, so a command added here appears there.
def watch_parser() -> argparse.ArgumentParser:
    import watch

    return watch.build_parser()


def watch_main(argv: List[str]) -> int:
    """`power.py watch ...`: the input live, for setting up the sensor."""
    import watch

    args = watch.build_parser().parse_args(argv)
    try:
        if args.seconds is not None and not 0 < args.seconds < 1e7:
            raise SettingsError(
                f"--seconds {args.seconds:g}: expected more than 0 and less "
                "than 1e7 (about 115 days)"
            )
        if args.kettle is not None and not 1 <= args.kettle <= 1e6:
            raise SettingsError(f"--kettle {args.kettle:g}: expected 1 to 1e6 W")
        settings = load_settings(args)
        names = [m.config.name for m in settings.meters]
        if args.meter is not None and args.meter not in names:
            raise SettingsError(
                f"--meter {args.meter!r}: no such meter in the settings "
                f"({', '.join(names)})"
            )
        holder = pidcheck.lock_holder(settings.data_dir)
        if holder is not None:
            who = f"pid {holder}" if holder > 0 else "a running power"
            return fail(
                EXIT_FAILURE,
                f"power is running ({who}) and holds the meter's input; stop it "
                "first ('power.py --kill', or 'sudo service power stop' / "
                "'sudo systemctl stop power' for the service), then run watch "
                "again",
            )
        for m in settings.meters:
            if args.meter in (None, m.config.name):
                try:
                    m.input_class.preflight(m.input_options)
                except InputError as exc:
                    raise SettingsError(str(exc)) from None
                break
        if args.record:
            problem = _cannot_create(args.record, directory=False)
            if problem:
                raise SettingsError(f"--record {args.record}: {problem}")
    except SettingsError as exc:
        return fail(EXIT_USAGE, str(exc))
    log = logging.getLogger("power.watch")
    logging.basicConfig(level=logging.WARNING, format="power.py watch: %(message)s")
    try:
        return watch.run(args, settings, log)
    except InputError as exc:
        return fail(EXIT_FAILURE, str(exc))


SUBCOMMANDS = {
    "report": (
        "energy, cost, peak and base load per hour, day or month",
        report_main,
        report_parser,
    ),
    "register": (
        "record the meter's register reading: set the total, show the drift",
        register_main,
        register_parser,
    ),
    "watch": (
        "the input live: edges, widths, ghosts, a diagnosis, suggested settings",
        watch_main,
        watch_parser,
    ),
}

# Main options that take a value, so a value is never taken for a command.
VALUE_OPTIONS = frozenset(
    (
        "--settings",
        "--pidfile",
        "--logfile",
        "--simulate",
        "--replay",
        "--speed",
        "--user",
    )
)


def split_command(argv: List[str]) -> Optional[Tuple[str, List[str]]]:
    """(command, its arguments with the global options given before it moved
    after it), or None when the command line names no command."""
    skip = False
    for i, word in enumerate(argv):
        if skip:
            skip = False
        elif word == "--":
            return None
        elif word in VALUE_OPTIONS:
            skip = True
        elif word in SUBCOMMANDS:
            return word, argv[i + 1 :] + argv[:i]
        elif not word.startswith("-"):
            return None  # a stray word: the main parser says what is wrong
    return None


def _interrupted(signum, frame) -> None:
    raise Interrupted(signum)


def main(argv: Optional[List[str]] = None) -> int:
    """The command line; a stop signal before the monitor runs ends it
    quietly (the monitor installs handlers of its own)."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _interrupted)
    try:
        return _main(argv)
    except Interrupted as exc:
        name = signal.Signals(exc.args[0]).name if exc.args else "a signal"
        print(f"power.py: stopped by {name} while starting", file=sys.stderr)
        return EXIT_OK


def _main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = split_command(argv)
    if command is not None:
        name, rest = command
        return SUBCOMMANDS[name][1](rest)
    args = parse_args(argv)
    try:
        settings = load_settings(args)
    except SettingsError as exc:
        if args.pidfile and (args.kill or args.status):
            # A broken settings file must not keep a running daemon from
            # being stopped or seen (the init script names the pidfile).
            print(f"power.py: warning: {exc}", file=sys.stderr)
            pidfile = os.path.abspath(args.pidfile)
            return kill(pidfile) if args.kill else show_status(pidfile, None)
        return fail(EXIT_USAGE, str(exc))
    pidfile = pidfile_path(args, settings)
    if args.status:
        return show_status(pidfile, settings)
    if args.kill:
        return kill(pidfile, settings.data_dir)
    try:
        user = account.resolve(args.user)
        logfile = os.path.abspath(args.logfile) if args.logfile else settings.logfile
        made = [
            d
            for d in (settings.data_dir, os.path.dirname(pidfile))
            if not os.path.isdir(d)
        ]
        preflight(settings, logfile, pidfile)
        create_dirs(settings, pidfile)
        if user is not None:
            give_to(user, settings, pidfile, logfile, made)
        if args.nodaemon:  # with a pidfile too, so --status and --kill work
            return run_foreground(args, settings, pidfile, user)
        return run_daemon(args, settings, pidfile, user)
    except SettingsError as exc:
        return fail(EXIT_USAGE, str(exc))
    except StartError as exc:
        return fail(EXIT_FAILURE, str(exc))


if __name__ == "__main__":
    sys.exit(main())
