"""The first hour of a new user, through the real CLI: each stumble a
newcomer hit gets a one-line message, the right exit code and no trace left
behind."""

from __future__ import annotations

import calendar
import re
import subprocess
import sys
import time
import venv
from pathlib import Path

import pytest
from conftest import POWER, Workspace, steady_pulses, wait_for, write_replay
from servers import free_port


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> str:
    """A Python with none of power's packages: the system's, as a newcomer
    runs `python3 src/power.py` before `make venv`."""
    where = tmp_path_factory.mktemp("bare")
    venv.create(where, with_pip=False, symlinks=True)
    return str(where / "bin" / "python")


def run_with(python: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [python, str(POWER), *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("mode", [["--nodaemon"], []])
def test_without_the_venv_one_line_names_make_venv(
    ws: Workspace, bare_python: str, mode
) -> None:
    res = run_with(bare_python, "--settings", str(ws.settings), *mode)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "python-daemon" in lines[0] and "lockfile" in lines[0]
    assert "make venv" in lines[0] and bare_python in lines[0]
    assert not ws.data.exists()  # nothing created by a refused start


def test_without_the_venv_a_sink_library_is_named(
    ws: Workspace, bare_python: str
) -> None:
    ws.write(SINKS=[{"type": "influxdb"}, {"type": "mqtt"}])
    res = run_with(bare_python, "--settings", str(ws.settings), "--nodaemon")
    assert res.returncode == 2
    assert "paho-mqtt" in res.stderr
    # The InfluxDB sink runs on the standard library: nothing to install.
    assert "influxdb" not in res.stderr
    assert "Traceback" not in res.stderr


def test_with_the_venv_nothing_is_missing(ws: Workspace) -> None:
    """The same check passes where the requirements are installed, so the
    message above is not simply always printed."""
    import config.settings
    from service import preflight

    librato = {"type": "librato", "user": "u@example.org", "token": "t"}
    ws.write(SINKS=[{"type": "influxdb"}, {"type": "mqtt"}, librato])
    assert preflight.missing_packages(config.settings.load(str(ws.settings))) == []


def test_a_refused_start_creates_no_data_dir(ws: Workspace, tmp_path: Path) -> None:
    """A start refused for a missing GPIO library leaves no DATA_DIR (nor
    pidfile directory) behind, root-owned or not."""
    run_dir = tmp_path / "run" / "power"
    ws.write({"backend": "rpigpio", "pin": 24})
    res = ws.power("--pidfile", str(run_dir / "power.pid"))
    assert res.returncode == 2, res.stderr
    assert "RPi.GPIO" in res.stderr and "Traceback" not in res.stderr
    assert not ws.data.exists()
    assert not (tmp_path / "run").exists()


def test_log_lines_carry_utc_times_as_readings_do(ws: Workspace, tmp_path) -> None:
    replay = write_replay(tmp_path / "pulses.txt", steady_pulses(3))
    before = time.time()
    res = ws.power("--nodaemon", "-q", "--replay", str(replay), "--speed", "0")
    after = time.time()
    assert res.returncode == 0, res.stderr
    first = res.stderr.splitlines()[0]
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{3})Z INFO ", first)
    assert match, first
    stamp = calendar.timegm(time.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S"))
    assert before - 1 <= stamp + int(match.group(2)) / 1000 <= after + 1


# Commands and global options -------------------------------------------------


@pytest.fixture
def journal_ws(ws: Workspace, tmp_path: Path) -> Workspace:
    """A workspace whose journal holds a few readings of meter 'house'."""
    replay = write_replay(tmp_path / "p.txt", steady_pulses(5, step=60.0))
    res = ws.power("--nodaemon", "-q", "--replay", str(replay), "--speed", "0")
    assert res.returncode == 0, res.stderr
    return ws


@pytest.mark.parametrize(
    "order",
    [
        ["--settings", "S", "report", "--since", "2023-11-01", "--csv"],
        ["report", "--since", "2023-11-01", "--csv", "--settings", "S"],
        ["report", "--settings", "S", "--since", "2023-11-01", "--csv"],
    ],
)
def test_global_options_stand_before_or_after_a_command(
    journal_ws: Workspace, order
) -> None:
    argv = [str(journal_ws.settings) if a == "S" else a for a in order]
    res = run_with(sys.executable, *argv)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0].startswith("period,meter,")
    assert "house" in res.stdout


def test_a_settings_file_named_report_is_not_taken_for_the_command(
    journal_ws: Workspace, tmp_path: Path
) -> None:
    named = tmp_path / "report"
    named.write_text(journal_ws.settings.read_text())
    res = run_with(sys.executable, "--settings", str(named), "--status")
    assert "power is not running" in res.stdout, res.stderr
    assert res.returncode == 3


def test_usage_lists_the_commands() -> None:
    res = run_with(sys.executable, "-h")
    assert res.returncode == 0
    assert "COMMAND" in res.stdout.split("\n\n")[0]
    assert "\n  report " in res.stdout


def test_a_daemon_option_before_a_command_is_a_usage_error(ws: Workspace) -> None:
    res = run_with(
        sys.executable, "--nodaemon", "report", "--settings", str(ws.settings)
    )
    assert res.returncode == 2
    assert "unrecognized arguments: --nodaemon" in res.stderr
    assert "Traceback" not in res.stderr


def test_report_of_an_unknown_meter_names_the_meters(journal_ws: Workspace) -> None:
    res = journal_ws.power("report", "--meter", "nosuch")
    assert res.returncode == 2, res.stdout
    line = res.stderr.strip()
    assert "'nosuch'" in line and "'house'" in line and "\n" not in line


def test_report_without_a_journal_is_a_usage_error(ws: Workspace) -> None:
    res = ws.power("report", "--since", "2023-11-01")
    assert res.returncode == 2
    assert "no journal in DATA_DIR" in res.stderr and "Traceback" not in res.stderr


# --status: the daemon whatever its pidfile, and each sink's trouble ----------


def _down_influx() -> dict:
    """An InfluxDB sink pointed at a loopback port nobody listens on."""
    return {"type": "influxdb", "host": "127.0.0.1", "port": free_port()}


def test_status_finds_a_daemon_started_with_another_pidfile(
    ws: Workspace, tmp_path: Path
) -> None:
    other = tmp_path / "elsewhere" / "power.pid"
    started = ws.power("--pidfile", str(other))
    assert started.returncode == 0, started.stderr
    try:
        res = ws.power("--status")
        assert res.returncode == 0, res.stdout
        first = res.stdout.splitlines()[0]
        assert first.startswith("power is running (pid ")
        assert "found by its lock on DATA_DIR" in first and str(ws.data) in first
    finally:
        assert ws.power("--kill").returncode == 0
    assert not other.exists()


def test_status_shows_a_failing_sink_with_its_error_and_since_when(
    ws: Workspace,
) -> None:
    ws.write(
        {"backend": "simulated", "watts": 3600, "speed": 5},
        SINKS=[{"type": "file", "path": str(ws.csv)}, _down_influx()],
    )
    assert ws.power("--pidfile", str(ws.pidfile)).returncode == 0
    try:

        def failing_line():
            out = ws.power("--pidfile", str(ws.pidfile), "--status").stdout
            lines = [x for x in out.splitlines() if x.startswith("sink influxdb")]
            return lines and "failing since" in lines[0] and lines[0]

        line = wait_for(failing_line, timeout=30, interval=0.5)
        assert "cannot connect" in line and re.search(r"\(\d+ s\)", line), line
        healthy = ws.power("--pidfile", str(ws.pidfile), "--status").stdout
        assert "sink file: backlog" in healthy
        assert "failing" not in [x for x in healthy.splitlines() if "sink file" in x][0]
    finally:
        assert ws.power("--pidfile", str(ws.pidfile), "--kill").returncode == 0
    after = ws.power("--status").stdout
    assert "was failing when power stopped (since " in after, after


def test_foreground_with_a_log_file_tells_a_failing_sink_once(
    ws: Workspace,
) -> None:
    ws.write(
        {"backend": "simulated", "watts": 3600, "speed": 5},
        SINKS=[{"type": "file", "path": str(ws.csv)}, _down_influx()],
        LOGFILE=str(ws.logfile),
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            str(POWER),
            "--settings",
            str(ws.settings),
            "--nodaemon",
            "-q",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: "sink influxdb" in ws.log(), 20)
        time.sleep(11)  # several retries and two state checks later
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    told = [x for x in err.splitlines() if "sink influxdb is failing" in x]
    assert len(told) == 1, err
    assert "cannot connect" in told[0] and "details in the log" in told[0]
    assert "sink influxdb" in ws.log()


@pytest.mark.parametrize("stdout", ["terminal", "pipe"])
def test_each_reading_shows_as_it_comes(ws: Workspace, stdout: str) -> None:
    # COMMIT_INTERVAL_S (30 s by default) spares the card; the console line
    # per reading follows the meter (the live path), on a terminal and
    # through a pipe (make run | tee log) alike.
    import os
    import pty
    import select
    import signal

    ws.write({"backend": "simulated", "watts": 3600, "speed": 4}, COMMIT_INTERVAL_S=30)
    master, slave = pty.openpty() if stdout == "terminal" else os.pipe()
    proc = subprocess.Popen(
        [sys.executable, str(POWER), "--settings", str(ws.settings), "--nodaemon"],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.DEVNULL,
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 20  # well before the 30 s commit
    committed = ""
    try:
        while b"pulse 3" not in seen and time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    seen += os.read(master, 4096)
                except OSError:
                    break
        # The CSV takes committed readings only: pulse 3 is not there yet.
        committed = ws.csv.read_text() if ws.csv.exists() else ""
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
        os.close(master)
    text = seen.decode(errors="replace")
    assert "pulse 1" in text and "pulse 3" in text, text
    assert not any(line.split(",")[2] == "3" for line in committed.splitlines()[1:])
