"""Shared fixtures: run the real CLI, write settings files, read the CSV."""

from __future__ import annotations

import csv
import importlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pytest
from servers import Influx

ROOT = Path(__file__).resolve().parent.parent
POWER = ROOT / "src" / "power.py"
FAKES = str(ROOT / "tests" / "fakes")  # GPIO libraries that need a Pi


def forget_package(package: str) -> None:
    """Drop a package and its modules from sys.modules."""
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
        del sys.modules[name]


def import_fake(monkeypatch, package: str, module: str):
    """The fake of a GPIO library, importable under its real name for one
    test (monkeypatch undoes the path), reset to a fresh state."""
    monkeypatch.syspath_prepend(FAKES)
    forget_package(package)
    fake = importlib.import_module(module)
    assert fake.__file__.startswith(FAKES + os.sep), fake.__file__
    fake._fake_reset()
    return fake


def write_settings(path: Path, **names) -> Path:
    """A settings.py with the given upper-case names, as Python literals.

    COMMIT_INTERVAL_S is 5 unless given: the tests wait for readings of a
    live meter, and were written when that was the default (30 s now)."""
    names.setdefault("COMMIT_INTERVAL_S", 5)
    lines = [f"{key} = {value!r}" for key, value in names.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def power_cmd(*args: str) -> List[str]:
    return [sys.executable, str(POWER), *args]


def run_power(*args: str, timeout: float = 60, env=None) -> subprocess.CompletedProcess:
    """Run power.py to completion and capture its output."""
    return subprocess.run(
        power_cmd(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def read_csv(path: Path) -> List[Dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def pulse_rows(rows: List[Dict[str, str]]) -> List[Dict[str, str]]:
    """Rows of pulses, without idle-timeout rows (which repeat a count)."""
    out = []
    last: Dict[str, int] = {}
    for row in rows:
        n = int(row["pulses"])
        if last.get(row["meter"]) == n:
            continue
        last[row["meter"]] = n
        out.append(row)
    return out


def wait_for(
    predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.05
):
    """Poll until predicate() is truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def write_replay(path: Path, times: List[float]) -> Path:
    path.write_text("".join(f"{t:.3f}\n" for t in times))
    return path


def steady_pulses(n: int, start: float = 1_700_000_000.0, step: float = 1.0):
    """n pulse times `step` seconds apart."""
    return [start + i * step for i in range(n)]


class Workspace:
    """A DATA_DIR, a CSV path and a settings file in a temp directory."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.data = tmp / "data"
        self.csv = self.data / "power.csv"
        self.pidfile = tmp / "power.pid"
        self.logfile = tmp / "power.log"
        self.settings = tmp / "settings.py"

    def write(self, input_: Optional[dict] = None, **extra) -> Path:
        names = {
            "METER": {"name": "house", "pulses_per_kwh": 1000},
            "INPUT": input_ or {"backend": "simulated", "watts": 1000, "speed": 1},
            "DATA_DIR": str(self.data),
            "SINKS": [{"type": "file", "path": str(self.csv)}],
        }
        names.update(extra)
        if "METERS" in extra:  # the several-meters form replaces these two
            del names["METER"], names["INPUT"]
        return write_settings(self.settings, **names)

    def power(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return run_power("--settings", str(self.settings), *args, **kw)

    def log(self) -> str:
        return self.logfile.read_text() if self.logfile.exists() else ""


@pytest.fixture
def influx(tmp_path: Path):
    """A real InfluxDB on a free loopback port, for one test."""
    server = Influx(tmp_path / "influx")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    w = Workspace(tmp_path)
    w.write()
    return w
