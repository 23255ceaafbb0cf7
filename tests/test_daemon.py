"""The daemon's life through the real CLI: real forks, pidfiles and signals."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from conftest import (
    pid_alive,
    power_cmd,
    pulse_rows,
    read_csv,
    wait_for,
    write_replay,
)

FAST = {"backend": "simulated", "watts": 3600, "speed": 20, "seed": 1}  # 20 pulses/s
QUIET = {"backend": "simulated", "watts": 1, "speed": 1}  # one pulse an hour


@pytest.fixture
def daemon_ws(ws):
    """A workspace whose daemon, if any, is killed after the test."""
    ws.write(FAST)
    yield ws
    pid = _pid(ws.pidfile)
    if pid and pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


def _pid(path: Path):
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _start(ws) -> int:
    res = ws.power("--pidfile", str(ws.pidfile), "--logfile", str(ws.logfile))
    assert res.returncode == 0, res.stderr
    assert "power started" in res.stdout
    pid = _pid(ws.pidfile)
    assert pid and pid_alive(pid)
    return pid


def _rows(ws, at_least: int):
    return wait_for(
        lambda: ws.csv.exists() and len(read_csv(ws.csv)) >= at_least and True,
        timeout=20,
    )


def _contiguous(rows) -> int:
    numbers = [int(r["pulses"]) for r in pulse_rows(rows)]
    assert numbers == list(range(1, len(numbers) + 1)), numbers[:20]
    return len(numbers)


def test_start_status_double_start_kill(daemon_ws):
    ws = daemon_ws
    pid = _start(ws)
    assert os.getppid() != pid  # detached: not our child
    _rows(ws, 10)

    status = ws.power("--pidfile", str(ws.pidfile), "--status")
    assert status.returncode == 0, status.stderr
    assert f"running (pid {pid}" in status.stdout
    assert "last reading: house at " in status.stdout
    assert "sink file: backlog" in status.stdout

    again = ws.power("--pidfile", str(ws.pidfile))
    assert again.returncode == 1
    assert f"already running (pid {pid}" in again.stderr
    assert "Traceback" not in again.stderr
    assert _pid(ws.pidfile) == pid and pid_alive(pid)

    killed = ws.power("--pidfile", str(ws.pidfile), "--kill")
    assert killed.returncode == 0, killed.stderr
    assert not pid_alive(pid)
    assert not ws.pidfile.exists()

    after = ws.power("--pidfile", str(ws.pidfile), "--status")
    assert after.returncode == 3
    assert "not running" in after.stdout
    assert "last reading: house at " in after.stdout

    again = ws.power("--pidfile", str(ws.pidfile), "--kill")
    assert again.returncode == 3
    assert "not running" in again.stderr
    _contiguous(read_csv(ws.csv))
    assert "starting as a daemon" in ws.log()


def test_default_pidfile_lives_in_data_dir(daemon_ws):
    ws = daemon_ws
    res = ws.power("--logfile", str(ws.logfile))
    assert res.returncode == 0, res.stderr
    pidfile = ws.data / "power.pid"
    pid = _pid(pidfile)
    assert pid and pid_alive(pid)
    assert ws.power("--status").returncode == 0
    assert ws.power("--kill").returncode == 0
    assert not pid_alive(pid)


def test_stale_pidfile_is_cleared_and_logged(daemon_ws):
    ws = daemon_ws
    gone = subprocess.Popen(["true"])
    gone.wait()
    ws.pidfile.write_text(f"{gone.pid}\n")

    status = ws.power("--pidfile", str(ws.pidfile), "--status")
    assert status.returncode == 3

    pid = _start(ws)
    assert pid != gone.pid
    assert f"removed stale pidfile {ws.pidfile}" in ws.log()
    assert ws.power("--pidfile", str(ws.pidfile), "--kill").returncode == 0


def test_kill_with_stale_pidfile_says_not_running(daemon_ws):
    ws = daemon_ws
    ws.pidfile.write_text("999999\n")
    res = ws.power("--pidfile", str(ws.pidfile), "--kill")
    assert res.returncode == 3
    assert "stale pidfile" in res.stderr
    assert not ws.pidfile.exists()


def test_kill_9_then_restart_keeps_pulses_contiguous(daemon_ws):
    ws = daemon_ws
    pid = _start(ws)
    _rows(ws, 40)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid))
    before = len(read_csv(ws.csv))

    pid2 = _start(ws)  # the pidfile left by kill -9 is stale
    assert pid2 != pid
    _rows(ws, before + 40)
    assert ws.power("--pidfile", str(ws.pidfile), "--kill").returncode == 0
    count = _contiguous(read_csv(ws.csv))

    conn = sqlite3.connect(ws.data / "journal.sqlite3")
    (journal_pulses,) = conn.execute(
        "SELECT pulses FROM meters WHERE name = 'house'"
    ).fetchone()
    conn.close()
    assert journal_pulses == count


def test_sighup_reopens_the_csv_for_logrotate(daemon_ws):
    ws = daemon_ws
    pid = _start(ws)
    _rows(ws, 10)
    rotated = ws.csv.with_suffix(".csv.1")
    os.rename(ws.csv, rotated)
    os.kill(pid, signal.SIGHUP)
    wait_for(lambda: ws.csv.exists() and len(read_csv(ws.csv)) >= 5, timeout=20)
    assert ws.power("--pidfile", str(ws.pidfile), "--kill").returncode == 0
    assert ws.csv.read_text().startswith("time,meter,pulses,")
    _contiguous(read_csv(rotated) + read_csv(ws.csv))


def test_daemon_start_failure_is_reported_by_the_parent(daemon_ws, tmp_path):
    ws = daemon_ws
    ws.write(QUIET)
    holder = subprocess.Popen(
        power_cmd("--settings", str(ws.settings), "--nodaemon"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: (ws.data / "journal.sqlite3").exists())
        time.sleep(0.3)
        res = ws.power("--pidfile", str(tmp_path / "other.pid"))
        assert res.returncode == 1
        # Found by its lock on DATA_DIR, whatever pidfile it has.
        assert f"already running (pid {holder.pid}" in res.stderr
        assert "Traceback" not in res.stderr
    finally:
        holder.send_signal(signal.SIGTERM)
        holder.communicate(timeout=10)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_foreground_stops_within_a_second_without_waiting_for_a_pulse(ws, signum):
    ws.write(QUIET)
    proc = subprocess.Popen(
        power_cmd("--settings", str(ws.settings), "--nodaemon"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: (ws.data / "journal.lock").exists())
        time.sleep(0.5)  # running, and no pulse for an hour
        start = time.monotonic()
        proc.send_signal(signum)
        proc.wait(timeout=5)
        took = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
        out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert took < 1.5, f"took {took:.2f} s to stop"
    assert "Traceback" not in err
    assert "stopping on signal" in err


def test_sigterm_flushes_readings_to_the_csv(ws):
    ws.write(FAST)
    proc = subprocess.Popen(
        power_cmd("--settings", str(ws.settings), "--nodaemon"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: ws.csv.exists() and len(read_csv(ws.csv)) >= 20, timeout=20)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    count = _contiguous(read_csv(ws.csv))
    conn = sqlite3.connect(ws.data / "journal.sqlite3")
    (journal_pulses,) = conn.execute("SELECT pulses FROM meters").fetchone()
    conn.close()
    # Everything counted was committed and written out before exit.
    assert journal_pulses == count
    assert f"pulse {count}" in out


def test_replay_end_to_end(ws, tmp_path):
    times = [1_700_000_000.0 + i for i in range(300)]  # 1 s apart: 3600 W
    times += [times[-1] + 600 + i * 2 for i in range(1, 101)]  # a gap, 1800 W
    replay = write_replay(tmp_path / "pulses.txt", times)
    res = ws.power("--replay", str(replay), "--speed", "0", "--nodaemon", timeout=60)
    assert res.returncode == 0, res.stderr
    rows = read_csv(ws.csv)
    assert _contiguous(rows) == 400
    assert rows[0]["time"] == "2023-11-14T22:13:20.000Z"
    assert rows[0]["power_w"] == "" and rows[0]["interval_s"] == ""
    assert rows[1]["power_w"] == "3600" and rows[1]["interval_s"] == "1"
    # In the gap the bound falls by a fifth at a time from 3600 W: the
    # first after 1.25 s, the last (28th) before the next pulse at 602 s.
    estimates = [r for r in rows if r["estimate"] == "1"]
    assert len(estimates) == 28 and {r["pulses"] for r in estimates} == {"300"}
    assert estimates[0]["time"] == "2023-11-14T22:18:20.250Z"
    assert estimates[0]["power_w"] == "2880"
    assert float(estimates[-1]["power_w"]) > 3600 / 602  # the truth, to come
    assert rows[-1]["power_w"] == "1800" and rows[-1]["energy_kwh"] == "0.4"
    assert len(res.stdout.splitlines()) == len(rows)
    assert {r["estimate"] for r in rows} == {"0", "1"}

    # The same file again: its pulses are in the journal, so nothing is
    # counted twice and the totals stay as they were.
    res = ws.power("--replay", str(replay), "--speed", "0", "--nodaemon", timeout=60)
    assert res.returncode == 0, res.stderr
    assert read_csv(ws.csv) == rows
    assert "400 replayed pulses at or before 2023-11-14T22:31:39.000Z" in res.stderr
    assert "were skipped" in res.stderr

    # A longer file adds only the pulses after those counted.
    more = times + [times[-1] + 2 * i for i in range(1, 51)]
    replay = write_replay(tmp_path / "more.txt", more)
    res = ws.power("--replay", str(replay), "--speed", "0", "--nodaemon", timeout=60)
    assert res.returncode == 0, res.stderr
    rows = read_csv(ws.csv)
    assert _contiguous(rows) == 450
    assert rows[-1]["energy_kwh"] == "0.45"
    # The first new pulse's interval runs from the last one counted.
    assert rows[-50]["interval_s"] == "2" and rows[-50]["pulses"] == "401"


def test_replay_accepts_the_file_sinks_csv(ws, tmp_path):
    times = [1_700_000_000.0 + i * 1.5 for i in range(50)]
    times += [times[-1] + 400]
    replay = write_replay(tmp_path / "pulses.txt", times)
    res = ws.power("--replay", str(replay), "--speed", "0", "--nodaemon")
    assert res.returncode == 0, res.stderr
    first = read_csv(ws.csv)
    assert any(r["estimate"] == "1" for r in first)  # a row to skip

    other = tmp_path / "other"
    other.mkdir()
    ws2_settings = tmp_path / "s2.py"
    ws2_settings.write_text(
        ws.settings.read_text()
        .replace(str(ws.data), str(other))
        .replace(str(ws.csv), str(other / "power.csv"))
    )
    res = subprocess.run(
        power_cmd(
            "--settings",
            str(ws2_settings),
            "--replay",
            str(ws.csv),
            "--speed",
            "0",
            "--nodaemon",
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    second = read_csv(other / "power.csv")
    assert second == first


def test_replay_bad_line_exits_2_with_line_number(ws, tmp_path):
    replay = tmp_path / "bad.txt"
    replay.write_text("# pulses\n1700000000.0\n\n1700000001.5\nbanana\n")
    res = ws.power("--replay", str(replay), "--speed", "0", "--nodaemon")
    assert res.returncode == 2
    assert "line 5" in res.stderr and "banana" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (ws.data / "journal.sqlite3").exists()  # stopped before starting


def test_replay_missing_file_exits_2(ws, tmp_path):
    res = ws.power("--replay", str(tmp_path / "nope.txt"), "--nodaemon")
    assert res.returncode == 2
    assert "nope.txt" in res.stderr and "Traceback" not in res.stderr


def test_corrupt_journal_is_moved_aside(ws, tmp_path):
    ws.data.mkdir()
    (ws.data / "journal.sqlite3").write_bytes(b"this is not a database" * 100)
    replay = write_replay(tmp_path / "p.txt", [1_700_000_000.0 + i for i in range(20)])
    res = ws.power("--replay", str(replay), "--speed", "0", "--nodaemon")
    assert res.returncode == 0, res.stderr
    assert "moved it aside" in res.stderr
    assert list(ws.data.glob("journal.sqlite3.corrupt-*"))
    assert _contiguous(read_csv(ws.csv)) == 20


def test_unwritable_sink_fails_replay_with_exit_1(ws, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    ws.write(
        {"backend": "simulated"},
        SINKS=[{"type": "file", "path": str(blocker / "power.csv")}],
        DRAIN_TIMEOUT_S=1,
    )
    replay = write_replay(tmp_path / "p.txt", [1_700_000_000.0 + i for i in range(5)])
    res = ws.power("--replay", str(replay), "--speed", "0", "--nodaemon")
    assert res.returncode == 1
    assert "did not write everything" in res.stderr
    assert res.stderr.count("cannot open") == 1  # one line per failure streak
    assert "Traceback" not in res.stderr


def test_long_replay_counts_every_edge_and_no_false_idle(ws, tmp_path):
    # More edges than the monitor takes in one run, and a replay thread far
    # ahead of the monitor: no edge may be lost, and no 0 W idle reading may
    # appear where the pulses have no gap (they are 2 s apart).
    times = [1_700_000_000.0 + i * 2 for i in range(25_000)]
    replay = write_replay(tmp_path / "long.txt", times)
    res = ws.power("--replay", str(replay), "--speed", "0", "--nodaemon", timeout=120)
    assert res.returncode == 0, res.stderr
    rows = read_csv(ws.csv)
    assert _contiguous(rows) == 25_000
    assert [r for r in rows if r["power_w"] == "0"] == []
    assert len(rows) == 25_000


def test_kill_9_in_a_fast_replay_leaves_no_duplicate_in_the_csv(ws, tmp_path):
    # At replay speed thousands of readings pass between two saved cursors;
    # after a kill -9 they come again and the file sink must skip them all.
    times = [1_700_000_000.0 + i for i in range(150_000)]
    replay = write_replay(tmp_path / "fast.txt", times)
    proc = subprocess.Popen(
        power_cmd(
            "--settings", str(ws.settings), "--replay", str(replay),
            "--speed", "0", "--nodaemon",
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    journal = ws.data / "journal.sqlite3"

    def file_behind() -> bool:
        """The CSV has thousands of rows, and the journal more."""
        if not (ws.csv.exists() and ws.csv.stat().st_size > 100_000):
            return False
        conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
        try:
            (last,) = conn.execute("SELECT max(seq) FROM readings").fetchone()
        finally:
            conn.close()
        return (last or 0) > ws.csv.read_bytes().count(b"\n") - 1

    try:
        # Commits of 2,000 readings: the CSV can be level with the journal
        # between two of them; kill it while it is behind.
        wait_for(file_behind)
        proc.kill()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    at_kill = len(read_csv(ws.csv))
    empty = write_replay(tmp_path / "empty.txt", [])
    res = ws.power("--replay", str(empty), "--speed", "0", "--nodaemon")
    assert res.returncode == 0, res.stderr
    rows = read_csv(ws.csv)
    conn = sqlite3.connect(ws.data / "journal.sqlite3")
    (counted,) = conn.execute("SELECT pulses FROM meters").fetchone()
    conn.close()
    # (Rows older than RETENTION_DAYS are pruned once written: count pulses.)
    assert _contiguous(rows) == len(rows) == counted
    assert at_kill < len(rows)  # the file was behind: the restart caught up


def test_kill_and_status_work_with_broken_settings(daemon_ws):
    ws = daemon_ws
    pid = _start(ws)
    good = ws.settings.read_text()
    ws.settings.write_text(good + "SINKS = 'oops'\n")
    status = ws.power("--pidfile", str(ws.pidfile), "--status")
    assert status.returncode == 0 and f"running (pid {pid}" in status.stdout
    assert "warning: SINKS = 'oops'" in status.stderr
    killed = ws.power("--pidfile", str(ws.pidfile), "--kill")
    assert killed.returncode == 0, killed.stderr
    assert not pid_alive(pid)
    # Without --pidfile there is no way to find it: a plain usage error.
    assert ws.power("--status").returncode == 2


def test_status_and_a_second_start_say_what_the_running_daemon_uses(daemon_ws):
    """Started with --simulate, the daemon reads no GPIO whatever the
    settings say; a second start with another pidfile (and METRICS on the
    port the first holds) names the first one's pidfile."""
    from servers import free_port

    ws = daemon_ws
    port = free_port()
    ws.write(
        {"backend": "gpiod", "chip": "gpiochip0", "line": 24},
        METRICS={"listen": f"127.0.0.1:{port}"},
    )
    res = ws.power("--pidfile", str(ws.pidfile), "--simulate", "3000")
    assert res.returncode == 0, res.stderr
    pid = int(ws.pidfile.read_text())
    try:
        status = ws.power("--pidfile", str(ws.pidfile), "--status")
        assert status.returncode == 0, status.stderr
        assert "input of meter house: simulated 3000 W" in status.stdout
        assert "(--simulate)" in status.stdout and "gpiod" not in status.stdout
        other = ws.tmp / "other.pid"
        again = ws.power("--pidfile", str(other), "--simulate", "3000")
        assert again.returncode == 1
        assert f"already running (pid {pid}, pidfile {ws.pidfile})" in again.stderr
        assert "in use" not in again.stderr  # the lock first, not the port
        assert not other.exists()
    finally:
        assert ws.power("--pidfile", str(ws.pidfile), "--kill").returncode == 0


def test_status_counts_the_csv_backlog_from_what_the_file_holds(daemon_ws):
    """The file sink's position is saved with the next commit; --status
    counts its backlog from the file's last line, which the sink has written
    (it said 1 while the CSV held the reading)."""
    ws = daemon_ws
    # The first reading is committed at once, the next after 30 s.
    ws.write({"backend": "simulated", "watts": 3600, "speed": 1}, COMMIT_INTERVAL_S=30)
    res = ws.power("--pidfile", str(ws.pidfile))
    assert res.returncode == 0, res.stderr
    wait_for(lambda: ws.csv.exists() and len(read_csv(ws.csv)) == 1, timeout=30)
    status = ws.power("--pidfile", str(ws.pidfile), "--status")
    assert "sink file: backlog 0 readings" in status.stdout, status.stdout
    assert ws.power("--pidfile", str(ws.pidfile), "--kill").returncode == 0
