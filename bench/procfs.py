"""Measuring processes: a child's wall time and rusage (os.wait4), and a
detached daemon's CPU, context switches and I/O from /proc/<pid>.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Set

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class ChildRun:
    """One finished child process."""

    returncode: int
    wall_s: float
    user_s: float
    sys_s: float
    maxrss_kib: int
    stdout: str

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s


def run_child(
    argv: List[str],
    stderr_path: str,
    capture_stdout: bool = False,
    cpus: Optional[Set[int]] = None,
) -> ChildRun:
    """Run argv to its end (stdout to /dev/null unless captured) on `cpus`;
    its own rusage comes from wait4, not from the other children's."""

    def pin() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)

    with open(stderr_path, "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL,
            stderr=err,
            preexec_fn=pin,
        )
        out = proc.stdout.read().decode() if proc.stdout is not None else ""
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.stdout is not None:
        proc.stdout.close()
    return ChildRun(
        proc.returncode, wall, usage.ru_utime, usage.ru_stime, usage.ru_maxrss, out
    )


def tail(path: str, lines: int = 5) -> str:
    """The last lines of a log file, for error messages."""
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:]).rstrip()
    except OSError:
        return ""


# A detached daemon (not our child) -------------------------------------------


def _stat_fields(pid: int) -> List[str]:
    """Fields 3.. of /proc/<pid>/stat (after the command name)."""
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    return text[text.rindex(")") + 2 :].split()


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        return _stat_fields(pid)[0] not in ("Z", "X")
    except (OSError, ValueError, IndexError):
        return False


def cpu_ticks_s(pid: int) -> float:
    """utime + stime of the whole process (all threads), in seconds."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _tasks(pid: int) -> List[str]:
    return os.listdir(f"/proc/{pid}/task")


def run_ns(pid: int) -> int:
    """CPU time of every thread in ns (schedstat: finer than clock ticks)."""
    total = 0
    for tid in _tasks(pid):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # a thread that just ended
    return total


def context_switches(pid: int) -> int:
    """Voluntary + involuntary context switches over all threads: wakeups."""
    total = 0
    for tid in _tasks(pid):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt", "nonvoluntary_ctxt")):
                        total += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            pass
    return total


def status_kib(pid: int, key: str) -> int:
    """A memory figure of /proc/<pid>/status in KiB: VmRSS, VmHWM (peak)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def io_counters(pid: int) -> Dict[str, int]:
    """/proc/<pid>/io: rchar, wchar, syscw, write_bytes, ..."""
    with open(f"/proc/{pid}/io") as f:
        return {k: int(v) for k, v in (line.split(": ") for line in f)}


def start_daemon(argv: List[str], pidfile: str, timeout: float = 60.0) -> int:
    """Start power detached (the parent returns once it runs); its pid."""
    done = subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"power did not start (exit {done.returncode}): "
            f"{(done.stdout + done.stderr).decode(errors='replace').strip()}"
        )
    with open(pidfile) as f:
        return int(f.read().strip())


def stop_daemon(pid: int, wait_s: float = 5.0) -> Optional[float]:
    """SIGTERM; seconds until it is gone, or None if it outlived `wait_s`
    (then it gets SIGKILL)."""
    start = time.monotonic()
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return 0.0
    while time.monotonic() - start < wait_s:
        if not alive(pid):
            return time.monotonic() - start
        time.sleep(0.005)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return None
