"""What breaks, tried through the real CLI: poison readings, hostile replay
files and settings, dying inputs. Each test runs power.py as a subprocess on
real files."""

from __future__ import annotations

import csv
import io
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import (
    power_cmd,
    pulse_rows,
    read_csv,
    run_power,
    wait_for,
    write_replay,
)
from librato_server import LibratoAPI

from core.csvformat import parse_time

T0 = 1_714_563_000.0


def _no_traceback(res: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in res.stderr, res.stderr
    assert "Traceback" not in res.stdout, res.stdout


# Replay files ---------------------------------------------------------------


@pytest.mark.parametrize(
    "bad", ["1e17", "1e300", "100", "4102444800", "-5", "nan", "inf"]
)
def test_replay_impossible_times_are_refused_up_front(ws, tmp_path, bad):
    replay = tmp_path / "p.txt"
    replay.write_text(f"{T0}\n{T0 + 1}\n{bad}\n")
    res = ws.power("--replay", str(replay), "--speed", "0", "--nodaemon")
    assert res.returncode == 2, res.stderr
    _no_traceback(res)
    assert "line 3" in res.stderr
    assert not ws.csv.exists()  # refused before anything ran


def test_replay_csv_row_in_year_9999_is_refused(ws, tmp_path):
    replay = tmp_path / "p.csv"
    replay.write_text(
        "time,meter,pulses,energy_kwh,power_w,interval_s\n"
        "2024-05-01T12:00:00.000Z,house,1,0.001,,\n"
        "9999-05-01T12:00:00.000Z,house,2,0.002,1,1\n"
    )
    res = ws.power("--replay", str(replay), "--speed", "0", "--nodaemon")
    assert res.returncode == 2, res.stderr
    _no_traceback(res)
    assert "line 3" in res.stderr and "plausible" in res.stderr


def test_replay_with_a_byte_order_mark_is_accepted(ws, tmp_path):
    replay = tmp_path / "bom.txt"
    replay.write_bytes(b"\xef\xbb\xbf" + f"{T0}\n{T0 + 1}\n{T0 + 2}\n".encode())
    res = ws.power("--replay", str(replay), "--speed", "0", "--nodaemon")
    assert res.returncode == 0, res.stderr
    assert [r["pulses"] for r in read_csv(ws.csv)] == ["1", "2", "3"]


def test_replay_of_a_fifo_is_refused_without_hanging(ws, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    res = ws.power("--replay", str(fifo), "--nodaemon", timeout=20)
    assert res.returncode == 2, res.stderr
    _no_traceback(res)
    assert "not a regular file" in res.stderr


def test_replay_of_dev_zero_is_refused(ws):
    res = ws.power("--replay", "/dev/zero", "--nodaemon", timeout=20)
    assert res.returncode == 2, res.stderr
    assert "not a regular file" in res.stderr


def test_replay_line_longer_than_the_limit_is_refused(ws, tmp_path):
    replay = tmp_path / "long.txt"
    replay.write_text(f"{T0}\n" + "1" * 100_000 + "\n")
    res = ws.power("--replay", str(replay), "--nodaemon", timeout=20)
    assert res.returncode == 2, res.stderr
    assert "line 2" in res.stderr and "longer than" in res.stderr


def test_replay_that_stops_on_a_bad_line_half_way_exits_1(ws, tmp_path):
    """The file is checked up front, then grows a bad line while it is
    replayed: the replay stops there, says where, and power exits 1."""
    replay = write_replay(tmp_path / "p.txt", [T0 + i for i in range(6)])
    proc = subprocess.Popen(
        power_cmd("--settings", str(ws.settings), "--replay", str(replay), "-q")
        + ["--nodaemon"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: ws.csv.exists(), timeout=20)
        with open(replay, "a") as f:
            f.write("not a time\n")
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    assert "stopped after" in err and "line 7" in err
    assert "every sink has every reading" not in err
    assert len(pulse_rows(read_csv(ws.csv))) == 6  # what was read is kept


def test_replay_at_a_tiny_speed_waits_and_stops_cleanly(ws, tmp_path):
    """--speed 1e-12 once killed the input thread (a wait too long for the
    clock); now it waits in bounded steps and SIGTERM ends it with 0."""
    replay = write_replay(tmp_path / "p.txt", [T0, T0 + 3600, T0 + 7200])
    proc = subprocess.Popen(
        power_cmd("--settings", str(ws.settings), "--replay", str(replay), "--nodaemon")
        + ["--speed", "1e-12", "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: ws.csv.exists() and len(read_csv(ws.csv)) == 1, timeout=20)
        time.sleep(1.5)
        assert proc.poll() is None  # still waiting for the second pulse
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "stopping on signal" in err


# Settings -------------------------------------------------------------------


def _run(ws, mode):
    """power.py in one of its modes with the workspace's settings."""
    if mode == ["report"]:
        return run_power("report", "--settings", str(ws.settings))
    return ws.power(*mode) if mode else ws.power("--nodaemon")


def _settings_case(ws, body: str) -> Path:
    text = ws.settings.read_text()
    ws.settings.write_text(text + body)
    return ws.settings


@pytest.mark.parametrize(
    "body, words",
    [
        ("exit()\n", ["exit()"]),
        ("raise SystemExit(5)\n", ["SystemExit"]),
        ("import sys\nsys.exit(0)\n", ["exit()"]),
        ("raise KeyboardInterrupt\n", ["KeyboardInterrupt"]),
        ("raise BaseException('boom')\n", ["BaseException", "boom"]),
    ],
)
@pytest.mark.parametrize("mode", [[], ["--status"], ["--kill"], ["report"]])
def test_settings_file_ending_the_program_is_a_settings_error(ws, body, words, mode):
    _settings_case(ws, body)
    res = _run(ws, mode)
    assert res.returncode == 2, (res.returncode, res.stderr)
    _no_traceback(res)
    assert "line " in res.stderr
    for word in words:
        assert word in res.stderr


@pytest.mark.parametrize("mode", [[], ["--status"], ["--kill"], ["report"]])
def test_unquoted_password_is_not_echoed(ws, mode):
    ws.settings.write_text(
        ws.settings.read_text()
        + "SINKS = [{'type': 'influxdb',\n"
        + "          'password': Hunter2}]\n"
    )
    res = _run(ws, mode)
    assert res.returncode == 2, res.stderr
    _no_traceback(res)
    assert "Hunter2" not in res.stderr + res.stdout
    assert "NameError" in res.stderr and "quotes" in res.stderr


@pytest.mark.parametrize(
    "body",
    [
        "assert False, 'token s3cr3tvalue'\n",
        "d = {'token': 's3cr3tvalue'}\nd['token'] + 1\n",
        "raise ValueError('s3cr3tvalue')  # api_key\n",
    ],
)
def test_errors_raised_on_secret_lines_are_not_echoed(ws, body):
    _settings_case(ws, body)
    res = ws.power("--nodaemon")
    assert res.returncode == 2, res.stderr
    _no_traceback(res)
    assert "s3cr3tvalue" not in res.stderr


@pytest.mark.parametrize(
    "body",
    [
        "RETENTION_DAYS = 10**400\n",
        "DRAIN_TIMEOUT_S = 10**400\n",
        "METER = {'name': 'house', 'pulses_per_kwh': 10**400}\n",
        "METER = {'name': 'house', 'debounce_ms': -10**400}\n",
        "SINKS = [{'type': 'file', 'path': 'x.csv', 'batch_size': 10**400}]\n",
        "LEDS = {'ready': 10**400}\n",
        "LOG_LEVEL = 10**5000\n",
        "SINKS = [{'type': 10**5000}]\n",
        "DATA_DIR = 'a\\0b'\n",
        "LOGFILE = 'a\\0b'\n",
        "PIDFILE = 'a\\0b'\n",
        "SINKS = [{'type': 'file', 'path': 'x\\0.csv'}]\n",
        "INPUT = {'backend': 'replay', 'path': 'p\\0.txt'}\n",
    ],
)
def test_huge_numbers_and_nul_bytes_in_settings_exit_2(ws, body):
    _settings_case(ws, body)
    res = ws.power("--nodaemon")
    assert res.returncode == 2, res.stderr
    _no_traceback(res)
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert len(res.stderr) < 1000


# Poison readings ------------------------------------------------------------

WEEK = 7 * 86400


def test_influxdb_field_type_conflict_skips_only_the_refused_points(
    ws, tmp_path, influx
):
    """A field type conflict (HTTP 400) for the readings of one week: those
    are found by halving, skipped and counted; all the others are written,
    including those after them."""
    shard_b = (int(T0) // WEEK + 2) * WEEK  # a later shard group's start
    influx.query("CREATE DATABASE power")
    req = urllib.request.Request(
        f"{influx.url}/write?db=power&precision=s",
        data=f'power,meter=house power_w="text" {shard_b + 10}'.encode(),
    )
    urllib.request.urlopen(req, timeout=10).close()
    times = [T0 + i for i in range(200)]  # before shard B: fine
    times += [shard_b + 100 + i for i in range(5)]  # in shard B: refused
    times += [shard_b + WEEK + 100 + i for i in range(30)]  # after: fine
    replay = write_replay(tmp_path / "p.txt", times)
    ws.write(
        {"backend": "simulated"},
        # One 0 W idle reading after each gap, rather than estimates.
        METER={
            "name": "house",
            "pulses_per_kwh": 1000,
            "estimate_fall": 0,
            "idle_timeout_s": 300,
        },
        SINKS=[
            {"type": "file", "path": str(ws.csv)},
            {
                "type": "influxdb",
                "host": "127.0.0.1",
                "port": influx.port,
                "batch_size": 1000,
                "retry_max_s": 1,
            },
        ],
    )
    res = ws.power(
        "--replay", str(replay), "--speed", "0", "--nodaemon", "-q", timeout=120
    )
    assert res.returncode == 0, res.stderr
    rows = read_csv(ws.csv)
    refused = [r for r in rows if shard_b <= parse_time(r["time"]) < shard_b + WEEK]
    assert len(refused) == 6  # 5 pulses and the idle reading after them
    pulses = [r for r in rows if r["estimate"] != "1"]  # idle points hold no count
    assert influx.count() == len(pulses) - 5
    assert res.stderr.count("refused as bad data") == 1, res.stderr
    assert "skipped 6 readings" in res.stderr
    assert "first at journal sequence 202" in res.stderr  # 200 pulses, 1 idle
    status = ws.power("--status")
    assert "sink influxdb: backlog 0 readings; 6 refused as bad data" in status.stdout


def test_file_sink_skips_a_reading_it_cannot_write(ws, tmp_path):
    """A journal row with a time no CSV can show (left by an older version
    that accepted it) is skipped and counted; the file goes on."""
    ws.write({"backend": "simulated"}, SINKS=[])
    first = write_replay(tmp_path / "a.txt", [T0 + i for i in range(5)])
    res = ws.power("--replay", str(first), "--speed", "0", "--nodaemon", "-q")
    assert res.returncode == 0, res.stderr
    conn = sqlite3.connect(ws.data / "journal.sqlite3")
    conn.execute(
        "INSERT INTO readings (time, meter, pulses, energy_kwh, power_w, "
        "interval_s) VALUES (1e17, 'house', 6, 0.006, 1.0, 1.0)"
    )
    conn.commit()
    conn.close()
    ws.write({"backend": "simulated"})  # now with the file sink
    second = write_replay(tmp_path / "b.txt", [T0 + 100 + i for i in range(5)])
    res = ws.power("--replay", str(second), "--speed", "0", "--nodaemon", "-q")
    assert res.returncode == 0, res.stderr
    pulses = [int(r["pulses"]) for r in pulse_rows(read_csv(ws.csv))]
    assert pulses == [1, 2, 3, 4, 5, 7, 8, 9, 10, 11]
    assert "skipped 1 readings it refused as bad data (first at journal " in (
        res.stderr
    )
    status = ws.power("--status")
    assert "sink file: backlog 0 readings; 1 refused as bad data" in status.stdout


# The CSV after a crash ------------------------------------------------------


def _replay(ws, tmp_path, name, times, **kw):
    replay = write_replay(tmp_path / name, times)
    res = ws.power("--replay", str(replay), "--speed", "0", "--nodaemon", "-q", **kw)
    assert res.returncode == 0, res.stderr
    return res


def _pulses(ws):
    return [int(r["pulses"]) for r in pulse_rows(read_csv(ws.csv))]


def _file_cursor(ws, seq=None):
    conn = sqlite3.connect(ws.data / "journal.sqlite3")
    if seq is not None:
        conn.execute("UPDATE cursors SET seq = ? WHERE sink = 'file'", (seq,))
        conn.commit()
    (value,) = conn.execute("SELECT seq FROM cursors WHERE sink = 'file'").fetchone()
    conn.close()
    return value


def _file_sink(ws, **extra):
    ws.write(
        {"backend": "simulated"}, SINKS=[{"type": "file", "path": str(ws.csv), **extra}]
    )


def test_csv_ahead_of_its_cursor_gets_no_duplicate_whatever_the_batch_size(
    ws, tmp_path
):
    """A crash after the CSV's sync and before its cursor is saved leaves
    the file ahead of the cursor; restarted with a smaller batch size, the
    first batch does not reach the file's last line. No duplicate."""
    _file_sink(ws, batch_size=1000)
    _replay(ws, tmp_path, "a.txt", [T0 + i for i in range(100)])
    _file_cursor(ws, 40)  # as a kill -9 between the two leaves it
    _file_sink(ws, batch_size=7)
    res = _replay(ws, tmp_path, "b.txt", [T0 + 200 + i for i in range(10)])
    assert _pulses(ws) == list(range(1, 111))
    assert "already holds readings up to journal sequence 100" in res.stderr


def test_csv_resumes_from_its_last_line_without_a_saved_cursor(ws, tmp_path):
    _replay(ws, tmp_path, "a.txt", [T0 + i for i in range(50)])
    conn = sqlite3.connect(ws.data / "journal.sqlite3")
    conn.execute("DELETE FROM cursors")
    conn.commit()
    conn.close()
    _replay(ws, tmp_path, "b.txt", [T0 + 100 + i for i in range(10)])
    assert _pulses(ws) == list(range(1, 61))
    rows = read_csv(ws.csv)
    assert len(rows) == len({(r["time"], r["pulses"]) for r in rows})


@pytest.mark.parametrize("cut", ["half_line", "last_rows", "zero"])
def test_csv_tail_lost_to_a_fault_is_written_again_from_the_journal(ws, tmp_path, cut):
    _replay(ws, tmp_path, "a.txt", [T0 + i for i in range(100)])
    whole = ws.csv.read_bytes()
    lines = whole.splitlines(keepends=True)
    if cut == "half_line":
        ws.csv.write_bytes(whole[:-10])
    elif cut == "last_rows":
        ws.csv.write_bytes(b"".join(lines[:-30]))
    else:
        ws.csv.write_bytes(b"")
    res = _replay(ws, tmp_path, "b.txt", [T0 + 200 + i for i in range(10)])
    assert _pulses(ws) == list(range(1, 111)), res.stderr
    assert ws.csv.read_bytes().startswith(whole)  # the lost rows as they were
    assert "writing them again from the journal" in res.stderr


@pytest.mark.parametrize("nuls", [4096, 70_000])
def test_a_tail_of_nul_bytes_is_cut_and_nothing_before_it(ws, tmp_path, nuls):
    """ext4 after a power cut during delayed allocation: the file's length
    went to disk, its last blocks did not, and read back as NUL bytes. Only
    those go, however many, whatever the journal still holds (retention
    pruned the old rows here)."""
    _replay(ws, tmp_path, "a.txt", [T0 + i for i in range(3000)])
    whole = ws.csv.read_bytes()
    conn = sqlite3.connect(ws.data / "journal.sqlite3")
    conn.execute("DELETE FROM readings WHERE seq < 2990")  # as retention would
    conn.commit()
    conn.close()
    ws.csv.write_bytes(whole + b"\0" * nuls)
    res = _replay(ws, tmp_path, "b.txt", [T0 + 4000 + i for i in range(10)])
    assert ws.csv.read_bytes().startswith(whole)
    assert _pulses(ws) == list(range(1, 3011))
    assert f"ended in {nuls} bytes that are no reading" in res.stderr
    assert f"keeping the {len(whole)} bytes before" in res.stderr


def test_a_garbage_last_line_with_its_newline_is_damage_too(ws, tmp_path):
    """kill -9 between the CSV's write and the saved position, and a line
    that is no row at the end: not taken for the last row written (that
    would send every reading after the saved position again)."""
    _replay(ws, tmp_path, "a.txt", [T0 + i for i in range(2000)])
    _file_cursor(ws, 10)  # the position saved before the crash
    whole = ws.csv.read_bytes()
    ws.csv.write_bytes(whole + b"2024-05-01T12:0\x00\x00garbage,,\n")
    res = _replay(ws, tmp_path, "b.txt", [T0 + 3000 + i for i in range(10)])
    assert _pulses(ws) == list(range(1, 2011))  # no duplicate, none missing
    assert ws.csv.read_bytes().startswith(whole)
    assert "bytes that are no reading" in res.stderr


def test_a_file_that_is_not_a_csv_of_power_is_never_cut(ws, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("shopping list\nmilk\n" + "x" * 5000)
    before = notes.read_bytes()
    ws.write(
        {"backend": "simulated"},
        SINKS=[{"type": "file", "path": str(notes)}],
        DRAIN_TIMEOUT_S=1,
    )
    replay = write_replay(tmp_path / "a.txt", [T0 + i for i in range(5)])
    res = ws.power("--replay", str(replay), "--speed", "0", "--nodaemon", "-q")
    assert res.returncode == 1, res.stderr
    assert "is not a CSV file of power's" in res.stderr
    assert "give the file sink another 'path'" in res.stderr
    assert notes.read_bytes() == before
    _no_traceback(res)


def _edges(path, edges) -> None:
    """A recorded edge file (watch --record): (mono ns, wall s, kind)."""
    lines = ["# power edges v1: MONO_NS WALL_S KIND"]
    lines += [f"{mono} {wall!r} {kind}" for mono, wall, kind in edges]
    path.write_text("\n".join(lines) + "\n")


def test_recorded_edges_with_the_clock_stepped_back_replay_once(ws, tmp_path):
    """The wall clock stepped back an hour inside a recording: replayed
    twice, the second replay counts nothing again and adds no reading."""
    edges = []
    for i in range(100):
        mono = 1_000_000_000_000 + i * 2_000_000_000  # a flash every 2 s
        wall = T0 + i * 2.0 - (3600 if i >= 50 else 0)  # stepped back at 50
        edges += [(mono, wall, "S"), (mono + 50_000_000, wall + 0.05, "E")]
    recording = tmp_path / "stepped.edges"
    _edges(recording, edges)
    args = ("--replay", str(recording), "--speed", "0", "--nodaemon", "-q")
    first = ws.power(*args)
    assert first.returncode == 0, first.stderr
    rows = read_csv(ws.csv)
    assert _pulses(ws) == list(range(1, 101))
    again = ws.power(*args)
    assert again.returncode == 0, again.stderr
    assert read_csv(ws.csv) == rows  # nothing counted twice, no estimate added
    assert "100 replayed pulses" in again.stderr


def test_no_reading_derived_from_a_huge_monotonic_gap_leaves_the_range(ws, tmp_path):
    """Edges 90 years apart on the monotonic clock: their own times are in
    range, but estimates stamped from the gap would be dated past 2100."""
    gap = 90 * 365 * 86400 * 1_000_000_000
    edges = []
    for i, mono in enumerate((0, 2_000_000_000, 4_000_000_000, gap)):
        wall = T0 + i * 2.0
        edges += [(mono + 1, wall, "S"), (mono + 50_000_001, wall + 0.05, "E")]
    recording = tmp_path / "gap.edges"
    _edges(recording, edges)
    res = ws.power("--replay", str(recording), "--speed", "0", "--nodaemon", "-q")
    assert res.returncode == 0, res.stderr
    times = [r["time"] for r in read_csv(ws.csv)]
    assert times and all("2000" <= t < "2100" for t in times), times
    conn = sqlite3.connect(ws.data / "journal.sqlite3")
    (late,) = conn.execute(
        "SELECT count(*) FROM readings WHERE time >= 4102444800"
    ).fetchone()
    conn.close()
    assert late == 0
    assert "skipped" not in res.stderr  # no sink had to skip one
    _no_traceback(res)


@pytest.mark.slow
def test_a_reading_dated_2099_does_not_stop_retention(ws, tmp_path):
    """A replayed pulse dated 2099 early in the journal, then a live meter:
    rows older than RETENTION_DAYS are still pruned (the first prune comes
    a minute after start)."""
    _replay(ws, tmp_path, "future.txt", [4_070_000_000.0])  # 2098-12-22
    ws.write(
        {"backend": "simulated", "watts": 36_000, "speed": 1},
        RETENTION_DAYS=0.0003,  # 26 s
        LOGFILE=str(ws.logfile),
    )
    proc = subprocess.Popen(
        power_cmd("--settings", str(ws.settings), "--nodaemon", "-q"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: "pruned" in ws.log(), timeout=120)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    assert re.search(r"pruned \d+ old readings", ws.log()), ws.log()


@pytest.mark.parametrize(
    "mark, says",
    [
        ('{"seq": 9223372036854775808, "meters": {"house": 5}}', "beyond any count"),
        ('{"seq": 5, "meters": {"house": 9223372036854775807}}', "beyond any count"),
        ("garbage", "is not a mark"),
        ("", "is empty"),
        ('{"seq": -1, "meters": {}}', "negative"),
        ('{"seq": 1, "meters": {"house": 1}}', "is behind the journal"),
    ],
)
def test_a_bad_journal_mark_is_said_and_loses_nothing(ws, tmp_path, mark, says):
    _replay(ws, tmp_path, "a.txt", [T0 + i for i in range(100)])
    (ws.data / "journal.mark").write_text(mark)
    res = _replay(ws, tmp_path, "b.txt", [T0 + 200 + i for i in range(100)])
    assert says in res.stderr, res.stderr
    assert "journal.mark" in res.stderr
    assert _pulses(ws) == list(range(1, 201))
    _no_traceback(res)


def test_kill_9_with_batch_size_changed_between_restarts(ws, tmp_path):
    """Real kill -9 of a fast replay, restarted with ever smaller batches."""
    times = [T0 + i for i in range(100_000)]
    replay = write_replay(tmp_path / "fast.txt", times)
    for batch_size in (5000, 3, 50):
        _file_sink(ws, batch_size=batch_size, flush_interval_s=0.05)
        proc = subprocess.Popen(
            power_cmd("--settings", str(ws.settings), "--replay", str(replay))
            + ["--speed", "0", "--nodaemon", "-q"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            size = ws.csv.stat().st_size if ws.csv.exists() else 0
            wait_for(
                lambda size=size: (
                    ws.csv.exists() and ws.csv.stat().st_size > size + 20_000
                ),
                timeout=60,
            )
            proc.kill()
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
        # A kill -9 may cut the last line (the next start removes it).
        text = ws.csv.read_text()
        whole = text[: text.rfind("\n") + 1]
        rows = list(csv.DictReader(io.StringIO(whole)))
        pulses = [int(r["pulses"]) for r in pulse_rows(rows)]
        assert len(pulses) == len(set(pulses))
    _file_sink(ws, batch_size=1000)
    _replay(ws, tmp_path, "empty.txt", [], timeout=120)
    rows = read_csv(ws.csv)
    numbers = [int(r["pulses"]) for r in pulse_rows(rows)]
    assert numbers == list(range(1, len(numbers) + 1))
    assert len(rows) == len({(r["time"], r["pulses"]) for r in rows})


# A journal lost, cut or damaged --------------------------------------------


def _journal(ws) -> Path:
    return ws.data / "journal.sqlite3"


def _contiguous_unique(ws) -> int:
    rows = read_csv(ws.csv)
    numbers = [int(r["pulses"]) for r in pulse_rows(rows)]
    assert numbers == list(range(1, len(numbers) + 1)), numbers[:10]
    assert len(rows) == len({(r["time"], r["pulses"]) for r in rows})
    return len(numbers)


@pytest.mark.parametrize("how", ["deleted", "zero_length", "mark_too"])
def test_lost_journal_is_said_and_no_pulse_number_is_used_twice(ws, tmp_path, how):
    _replay(ws, tmp_path, "a.txt", [T0 + i for i in range(50)])
    journal = _journal(ws)
    if how == "zero_length":
        journal.write_bytes(b"")
    else:
        journal.unlink()
    if how == "mark_too":  # then the CSV's last line still knows
        (ws.data / "journal.mark").unlink()
    res = _replay(ws, tmp_path, "b.txt", [T0 + 100 + i for i in range(10)])
    if how == "mark_too":  # as a new DATA_DIR beside an existing CSV looks
        assert "WARNING journal" in res.stderr and "is new, but" in res.stderr
        assert "up to house pulse 50" in res.stderr
        assert "move its journal.sqlite3 and journal.mark here" in res.stderr
        assert " ERROR " not in res.stderr
    else:
        assert "holds less than was committed" in res.stderr
        assert "pulse 50" in res.stderr
        assert "counts go on from house 50" in res.stderr
    assert _contiguous_unique(ws) == 60


def test_a_new_data_dir_beside_an_existing_csv_is_said_for_what_it_is(ws, tmp_path):
    _replay(ws, tmp_path, "a.txt", [T0 + i for i in range(50)])
    ws.write(
        {"backend": "simulated"},
        DATA_DIR=str(tmp_path / "new-data"),
        SINKS=[{"type": "file", "path": str(ws.csv)}],
    )
    res = _replay(ws, tmp_path, "b.txt", [T0 + 100 + i for i in range(10)])
    assert "is new, but a sink's own record (the CSV file)" in res.stderr
    assert "earlier DATA_DIR" in res.stderr and " ERROR " not in res.stderr
    assert "is gone" not in res.stderr and "are lost" not in res.stderr
    assert _contiguous_unique(ws) == 60


def test_wal_deleted_after_kill_9_is_said_and_the_csv_gets_no_duplicate(ws, tmp_path):
    """Commits not yet checkpointed live in the WAL only: deleting it after
    a kill -9 rolls the journal back behind the CSV."""
    ws.write({"backend": "simulated", "watts": 3600, "speed": 20, "seed": 1})
    proc = subprocess.Popen(
        power_cmd("--settings", str(ws.settings), "--nodaemon", "-q"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: ws.csv.exists() and len(read_csv(ws.csv)) > 40, timeout=30)
        proc.kill()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    wal = Path(str(_journal(ws)) + "-wal")
    assert wal.exists() and wal.stat().st_size > 0
    wal.unlink()  # rolls the journal back to its last checkpoint
    held = len(pulse_rows(read_csv(ws.csv)))
    now = time.time()
    res = _replay(ws, tmp_path, "b.txt", [now + 1000 + i for i in range(10)])
    assert "holds less than was committed" in res.stderr
    assert f"counts go on from house {held}" in res.stderr
    assert _contiguous_unique(ws) == held + 10


def _corrupt_middle(path: Path) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.seek((size // 2) // 1024 * 1024)
        f.write(os.urandom(4096))


def test_damaged_journal_is_found_at_start_and_moved_aside(ws, tmp_path):
    ws.write(
        {"backend": "simulated"},
        SINKS=[
            {"type": "file", "path": str(ws.csv)},
            {"type": "file", "name": "late", "path": str(tmp_path / "late.csv")},
        ],
    )
    _replay(ws, tmp_path, "a.txt", [T0 + i for i in range(20_000)], timeout=120)
    conn = sqlite3.connect(_journal(ws))  # sink 'late' is 500 readings behind
    conn.execute("UPDATE cursors SET seq = seq - 500 WHERE sink = 'late'")
    conn.commit()
    conn.close()
    _corrupt_middle(_journal(ws))

    status = ws.power("--status")
    _no_traceback(status)
    assert "cannot be read" in status.stdout or "backlog" in status.stdout
    assert "no journal in DATA_DIR" not in status.stdout

    res = _replay(ws, tmp_path, "b.txt", [T0 + 30_000 + i for i in range(10)])
    _no_traceback(res)
    assert "is damaged" in res.stderr and "moved it aside" in res.stderr
    assert "sink late: 500" in res.stderr
    assert "report --journal" in res.stderr
    aside = [
        p
        for p in ws.data.glob("journal.sqlite3.corrupt-*")
        if not p.name.endswith(("-wal", "-shm"))
    ]
    assert len(aside) == 1
    assert _contiguous_unique(ws) == 20_010
    assert res.stderr.count("cannot read the journal") <= 1

    # The moved-aside journal stays readable by report, damage and all.
    rep = run_power(
        "report", "--settings", str(ws.settings), "--journal", str(aside[0]),
        "--since", "2024-05-01", "--until", "2024-05-02", "--csv",
    )  # fmt: skip
    assert rep.returncode == 0, rep.stderr
    assert "is damaged" in rep.stderr and "readings that could be read" in rep.stderr
    assert "energy_kwh" in rep.stdout.splitlines()[0]
    header = rep.stdout.splitlines()[0].split(",")
    last = rep.stdout.splitlines()[-1].split(",")
    assert float(last[header.index("peak_w")]) > 0


def test_two_sinks_writing_one_file_are_refused(ws, tmp_path):
    ws.write(
        SINKS=[
            {"type": "file", "path": str(ws.csv)},
            {"type": "file", "name": "again", "path": str(ws.csv)},
        ]
    )
    res = ws.power("--nodaemon")
    assert res.returncode == 2, res.stderr
    assert "SINKS[1]['path']" in res.stderr and "SINKS[0] writes" in res.stderr


def test_file_sink_path_that_is_a_directory_is_refused(ws, tmp_path):
    ws.write(SINKS=[{"type": "file", "path": str(tmp_path)}])
    res = ws.power("--nodaemon")
    assert res.returncode == 2, res.stderr
    assert "is a directory" in res.stderr


# Killing the right process --------------------------------------------------

QUIET_INPUT = {"backend": "simulated", "watts": 1, "speed": 1}


def _decoy(tmp_path) -> subprocess.Popen:
    """A process that is not power but whose command line names power.py,
    as an editor or a reused pid would."""
    script = tmp_path / "power.py"
    script.write_text("import time\ntime.sleep(120)\n")
    return subprocess.Popen([sys.executable, str(script), "--nodaemon"])


def test_kill_and_status_never_take_another_process_for_power(ws, tmp_path):
    ws.write(QUIET_INPUT)
    decoy = _decoy(tmp_path)
    try:
        ws.pidfile.write_text(f"{decoy.pid}\n")
        status = ws.power("--pidfile", str(ws.pidfile), "--status")
        assert status.returncode == 3, status.stdout
        assert "not running" in status.stdout
        res = ws.power("--pidfile", str(ws.pidfile), "--kill")
        assert res.returncode == 3, res.stderr
        assert f"pid {decoy.pid} is another program, not power" in res.stderr
        assert decoy.poll() is None  # not signalled
        ws.pidfile.write_text(f"{decoy.pid}\n")
        start = ws.power("--pidfile", str(ws.pidfile), "--logfile", str(ws.logfile))
        assert start.returncode == 0, start.stderr
        pid = int(ws.pidfile.read_text())
        assert pid != decoy.pid
        res = ws.power("--pidfile", str(ws.pidfile), "--kill")
        assert res.returncode == 0, res.stderr
        assert f"power (pid {pid}) stopped" in res.stdout
        assert decoy.poll() is None
    finally:
        decoy.kill()
        decoy.wait()


def test_kill_finds_the_daemon_by_its_lock_when_the_pidfile_lies(ws, tmp_path):
    ws.write(QUIET_INPUT)
    start = ws.power("--pidfile", str(ws.pidfile), "--logfile", str(ws.logfile))
    assert start.returncode == 0, start.stderr
    pid = int(ws.pidfile.read_text())
    ws.pidfile.write_text("garbage\n")
    res = ws.power("--pidfile", str(ws.pidfile), "--kill")
    assert res.returncode == 0, res.stderr
    assert f"power (pid {pid}) stopped" in res.stdout
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), timeout=10)


def test_kill_trusts_the_lock_not_the_pid_written_in_it(ws, tmp_path):
    """The lock file's text rewritten to name another process: --kill
    stops power (the process the kernel says holds the lock), not it."""
    ws.write(QUIET_INPUT)
    decoy = _decoy(tmp_path)
    start = ws.power("--pidfile", str(ws.pidfile), "--logfile", str(ws.logfile))
    assert start.returncode == 0, start.stderr
    pid = int(ws.pidfile.read_text())
    try:
        (ws.data / "journal.lock").write_text(f"{decoy.pid}\n")
        ws.pidfile.write_text(f"{decoy.pid}\n")
        status = ws.power("--pidfile", str(ws.pidfile), "--status")
        assert f"power is running (pid {pid}" in status.stdout, status.stdout
        res = ws.power("--pidfile", str(ws.pidfile), "--kill")
        assert res.returncode == 0, res.stderr
        assert f"power (pid {pid}) stopped" in res.stdout
        wait_for(lambda: not os.path.exists(f"/proc/{pid}"), timeout=10)
        assert decoy.poll() is None  # the stranger was not signalled
    finally:
        decoy.kill()
        decoy.wait()
        if os.path.exists(f"/proc/{pid}"):
            os.kill(pid, 9)


NOBODY = 65534


@pytest.mark.skipif(os.geteuid() != 0, reason="files of another user need root")
def test_the_csv_path_through_a_link_to_another_users_file_is_refused(ws, tmp_path):
    """A link where the CSV goes, naming a file of another user with a
    partial last line: power would cut that file's line and append to it."""
    victim = tmp_path / "victim.txt"
    victim.write_text("somebody's notes\nno newline at the end")
    os.chown(victim, NOBODY, NOBODY)
    ws.data.mkdir(exist_ok=True)
    ws.csv.symlink_to(victim)
    ws.write({"backend": "simulated"}, DRAIN_TIMEOUT_S=1)
    replay = write_replay(tmp_path / "a.txt", [T0 + i for i in range(5)])
    res = ws.power("--replay", str(replay), "--speed", "0", "--nodaemon", "-q")
    assert res.returncode == 1, res.stderr
    assert "is a symbolic link" in res.stderr and "not power's own" in res.stderr
    assert victim.read_text() == "somebody's notes\nno newline at the end"
    _no_traceback(res)


@pytest.mark.skipif(os.geteuid() != 0, reason="files of another user need root")
def test_journal_lock_through_a_link_to_another_users_file_is_refused(ws, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    os.chown(victim, NOBODY, NOBODY)
    ws.data.mkdir(exist_ok=True)
    (ws.data / "journal.lock").symlink_to(victim)
    ws.write(QUIET_INPUT)
    res = ws.power("--nodaemon", "-q")
    assert res.returncode == 1, res.stderr
    assert "journal.lock is a symbolic link" in res.stderr
    assert victim.read_text() == "keep me\n"
    _no_traceback(res)


@pytest.mark.parametrize("content", ["99999999999", "-1", "garbage", "4194305"])
def test_impossible_pid_in_the_pidfile(ws, content):
    ws.write(QUIET_INPUT)
    ws.pidfile.write_text(content + "\n")
    status = ws.power("--pidfile", str(ws.pidfile), "--status")
    _no_traceback(status)
    assert status.returncode == 3
    res = ws.power("--pidfile", str(ws.pidfile), "--kill")
    _no_traceback(res)
    assert res.returncode == 3
    assert "it held no valid pid" in res.stderr and "pid -1" not in res.stderr
    ws.pidfile.write_text(content + "\n")
    start = ws.power("--pidfile", str(ws.pidfile), "--logfile", str(ws.logfile))
    _no_traceback(start)
    assert start.returncode == 0, start.stderr
    assert "it held no valid pid" in ws.log()
    assert ws.power("--pidfile", str(ws.pidfile), "--kill").returncode == 0


def test_pidfile_that_is_a_directory_is_a_usage_error(ws, tmp_path):
    ws.write(QUIET_INPUT)
    res = ws.power("--pidfile", str(tmp_path), "--nodaemon")
    assert res.returncode == 2, res.stderr
    assert "is a directory" in res.stderr


def test_foreground_refusal_reaches_the_terminal_with_a_logfile(ws):
    ws.write(QUIET_INPUT, LOGFILE=str(ws.logfile))
    holder = subprocess.Popen(
        power_cmd("--settings", str(ws.settings), "--nodaemon", "-q"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: "starting in the foreground" in ws.log())
        time.sleep(0.3)
        res = ws.power("--nodaemon")
        assert res.returncode == 1
        assert "in use by power" in res.stderr or "already running" in res.stderr
    finally:
        holder.send_signal(signal.SIGTERM)
        holder.wait(10)


def _stop_signals_at_default() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_while_starting_never_prints_a_traceback(ws, signum):
    ws.write(QUIET_INPUT)
    for delay in [0.0, 0.03, 0.06, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 0.9]:
        proc = subprocess.Popen(
            power_cmd("--settings", str(ws.settings), "--nodaemon", "-q"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # As a terminal starts it. A test run started in the background
            # (a script's `&`) passes SIGINT on ignored, and the kernel then
            # drops a Ctrl-C that comes before power.py's first lines.
            preexec_fn=_stop_signals_at_default,
        )
        time.sleep(delay)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=20)
        if proc.returncode == 1 and (
            err == "KeyboardInterrupt\n" or err.startswith("Fatal Python error: init_")
        ):
            # The interpreter itself was still starting (before power.py's
            # first line could set a handler): CPython's own exit.
            assert signum == signal.SIGINT and delay < 0.1, (delay, err)
            continue
        assert "Traceback" not in err, (delay, err)
        assert proc.returncode in (0, -signum), (delay, proc.returncode, err)


def test_a_storm_of_signals_never_keeps_sigterm_from_stopping_power(ws):
    # A signal handler that sets a threading.Event can run while the main
    # thread holds that Event's lock (between two bytecodes): it then waits
    # for ever. Many SIGHUPs (logrotate in a loop) and SIGUSR1s (register)
    # make that moment likely; each run must still stop on SIGTERM.
    ws.write(
        {"backend": "simulated", "watts": 1000, "speed": 1, "seed": 3},
        LOGFILE=str(ws.logfile),
    )
    for trial in range(4):
        proc = subprocess.Popen(
            power_cmd("--settings", str(ws.settings), "--nodaemon", "-q"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            # Its handlers are set before the input starts.
            wait_for(lambda n=trial: ws.log().count(" reads simulated") > n, 30)
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                proc.send_signal(signal.SIGHUP)
                proc.send_signal(signal.SIGUSR1)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0, trial
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_stop_whose_raise_python_swallowed_still_reaches_the_service():
    """A stop signal while the start runs a finalizer: Python swallows the
    raise there ("Exception ignored in"), and power would run on, deaf to
    that SIGTERM. The start handler remembers it, and the service takes it
    over when its own handler is set."""
    from core.options import StopWhileStarting

    starting = StopWhileStarting()
    before = signal.signal(signal.SIGTERM, starting)
    taken = []

    class Finalized:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(100):  # the handler runs between these bytecodes
                pass

    try:
        Finalized()  # collected at once: the raise lands in __del__
        after = signal.signal(signal.SIGTERM, before)
        StopWhileStarting.hand_over(after, taken.append)
    finally:
        signal.signal(signal.SIGTERM, before)
    assert taken == [signal.SIGTERM]


def test_report_without_a_journal_is_a_usage_error(ws):
    res = run_power("report", "--settings", str(ws.settings), "--since", "2024-01-01")
    assert res.returncode == 2, res.stderr
    assert "no journal" in res.stderr


# Messages -------------------------------------------------------------------


def test_librato_429_is_transient_and_retry_after_is_honoured(ws, tmp_path):
    api = LibratoAPI("me@example.com", "tok-0123456789")
    api.start()
    try:
        api.limit_next = 2
        api.retry_after = "1"
        ws.write(
            {"backend": "simulated"},
            DRAIN_TIMEOUT_S=20,
            SINKS=[
                {
                    "type": "librato",
                    "user": "me@example.com",
                    "token": "tok-0123456789",
                    "api_url": api.url,
                    "flush_interval_s": 0.2,
                    "retry_max_s": 600,  # a permanent failure would wait this
                }
            ],
        )
        replay = write_replay(tmp_path / "p.txt", [T0 + i * 3 for i in range(100)])
        res = ws.power("--replay", str(replay), "--speed", "0", "--nodaemon", "-q")
        assert res.returncode == 0, res.stderr
        assert "429 Too Many Requests" in res.stderr
        assert len(api.times) >= 3
        assert api.times[1] - api.times[0] >= 0.9  # waited as asked
        assert api.times[2] - api.times[1] >= 0.9
        assert sum(g["count"] for g in api.gauges if g["name"] == "power.power_w")
    finally:
        api.stop()


class _NotInflux(BaseHTTPRequestHandler):
    """Some other web server on the port InfluxDB was expected on."""

    def log_message(self, *args) -> None:
        pass

    def _answer(self) -> None:
        self.send_response(204 if self.path.startswith("/ping") else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _answer  # noqa: N815 (http.server's names)


def test_a_server_that_is_not_influxdb_is_named_as_such(ws, tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotInflux)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        ws.write(
            {"backend": "simulated"},
            DRAIN_TIMEOUT_S=2,
            SINKS=[
                {
                    "type": "influxdb",
                    "host": "127.0.0.1",
                    "port": server.server_address[1],
                    "retry_max_s": 0.5,
                }
            ],
        )
        replay = write_replay(tmp_path / "p.txt", [T0 + i for i in range(5)])
        res = ws.power("--replay", str(replay), "--speed", "0", "--nodaemon", "-q")
    finally:
        server.shutdown()
        server.server_close()
    assert res.returncode == 1
    _no_traceback(res)
    assert "is not InfluxDB" in res.stderr
    assert "KeyError" not in res.stderr
    assert res.stderr.count("is not InfluxDB") == 1


@pytest.mark.parametrize(
    "sink, words",
    [
        ({"type": "influxdb", "host": ""}, "['host'] = ''"),
        ({"type": "influxdb", "host": "  "}, "['host'] = '  '"),
        ({"type": "influxdb", "database": ""}, "['database'] = ''"),
        ({"type": "influxdb", "measurement": ""}, "['measurement'] = ''"),
        ({"type": "mqtt", "host": ""}, "['host'] = ''"),
    ],
)
def test_empty_hosts_and_names_are_refused_up_front(ws, sink, words):
    ws.write(SINKS=[sink])
    res = ws.power("--nodaemon")
    assert res.returncode == 2, res.stderr
    assert words in res.stderr and "non-empty" in res.stderr


@pytest.mark.parametrize("key", ["ca_certs", "certfile", "keyfile"])
def test_tls_files_that_are_not_pem_are_refused_up_front(ws, tmp_path, key):
    junk = tmp_path / "junk.pem"
    junk.write_text("this is not a certificate\n")
    tls = {key: str(junk)}
    if key == "keyfile":
        tls["certfile"] = str(junk)
    ws.write(SINKS=[{"type": "mqtt", "host": "127.0.0.1", "tls": tls}])
    res = ws.power("--nodaemon")
    assert res.returncode == 2, res.stderr
    _no_traceback(res)
    assert "PEM" in res.stderr


# A full disk ----------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A real file system of 512 KiB (tmpfs), to fill up. Mounting needs
    root with CAP_SYS_ADMIN; elsewhere the test is skipped."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {res.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(folder: Path) -> None:
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while True:
            os.write(fd, b"\0" * 1024)
    except OSError:
        pass
    finally:
        os.close(fd)


def test_full_disk_at_start_says_the_disk_is_full(ws, small_disk):
    data = small_disk / "data"
    data.mkdir()
    ws.write(QUIET_INPUT, DATA_DIR=str(data), SINKS=[])
    _fill(small_disk)
    res = ws.power("--nodaemon")
    _no_traceback(res)
    assert res.returncode == 1
    assert "full" in res.stderr and "LockFailed" not in res.stderr


def test_sigterm_on_a_full_disk_counts_the_readings_it_drops(ws, small_disk):
    data = small_disk / "data"
    ws.write(
        {"backend": "simulated", "watts": 36000, "speed": 10, "seed": 2},
        DATA_DIR=str(data),
        SINKS=[],
    )
    proc = subprocess.Popen(
        power_cmd("--settings", str(ws.settings), "--nodaemon", "-q"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: (data / "journal.sqlite3").exists(), timeout=20)
        time.sleep(1.0)
        _fill(small_disk)
        time.sleep(3.0)  # readings pile up in memory
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Traceback" not in err
    assert "is the disk full?" in err
    lost = re.search(r"; (\d+) readings held in memory are lost", err)
    assert lost and int(lost.group(1)) > 0, err


def test_journal_read_errors_at_run_time_are_one_streak(ws, tmp_path):
    """A page damaged while power runs: the sink reading it logs the error
    once, not on every retry, and the stop stays short and quiet."""
    _replay(ws, tmp_path, "a.txt", [T0 + i for i in range(20_000)], timeout=120)
    late = tmp_path / "late.csv"
    ws.write(
        QUIET_INPUT,
        SINKS=[
            {"type": "file", "path": str(ws.csv)},
            {"type": "file", "name": "late", "path": str(late), "batch_size": 1},
        ],
        LOGFILE=str(ws.logfile),
    )
    proc = subprocess.Popen(
        power_cmd("--settings", str(ws.settings), "--nodaemon", "-q"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: late.exists() and late.stat().st_size > 2000, timeout=30)
        _corrupt_middle(_journal(ws))
        wait_for(lambda: "cannot read the journal" in ws.log(), timeout=60)
        time.sleep(3)  # retries go on meanwhile
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = ws.log()
    assert "Traceback" not in log
    assert log.count("cannot read the journal") == 1, log
    assert len(log.splitlines()) < 40


def test_csv_holding_only_its_header_after_rotation_is_not_refilled(ws, tmp_path):
    """After logrotate moved the CSV and SIGHUP made a new one (just its
    header), a restart goes on from the saved position: the journal's old
    readings are not written again into the new file."""
    _replay(ws, tmp_path, "a.txt", [T0 + i for i in range(50)])
    ws.csv.rename(tmp_path / "power.csv.1")
    ws.csv.write_text("time,meter,pulses,energy_kwh,power_w,interval_s\n")
    _replay(ws, tmp_path, "b.txt", [T0 + 100 + i for i in range(5)])
    assert _pulses(ws) == [51, 52, 53, 54, 55]


def test_status_of_an_unreadable_journal_says_so_once(ws):
    ws.data.mkdir(parents=True)
    _journal(ws).write_bytes(os.urandom(8192))
    res = ws.power("--status")
    _no_traceback(res)
    assert res.returncode == 3
    assert "cannot be read" in res.stdout
    assert "no journal" not in res.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("--status",),
        ("report", "--by", "day"),
        ("-h",),
        ("watch", "--simulate", "3600", "--speed", "100", "--seconds", "3"),
    ],
)
def test_a_reader_gone_from_the_pipe_ends_output_without_a_traceback(ws, args):
    """power.py --status | head -1: the reader may be gone before power
    writes; here it is gone from the start."""
    _replay(ws, ws.tmp, "a.txt", [T0 + i for i in range(5)])
    read, write = os.pipe()
    os.close(read)
    proc = subprocess.run(
        power_cmd("--settings", str(ws.settings), *args),
        stdin=subprocess.DEVNULL,
        stdout=write,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
    )
    os.close(write)
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, (
        proc.stderr
    )
    assert "Broken pipe" not in proc.stderr


def test_a_log_file_that_cannot_be_opened_is_one_line_and_exit_2(ws):
    ws.write(QUIET_INPUT)
    for logfile in ("/proc/x.log", "/sys/x.log"):
        for args in (("--logfile", logfile, "--nodaemon"), ("--logfile", logfile)):
            res = ws.power(*args)
            assert res.returncode == 2, res.stderr
            assert f"log file {logfile}: cannot open it" in res.stderr
            _no_traceback(res)
    ws.write(QUIET_INPUT, LOGFILE="/proc/x.log")
    res = ws.power("--nodaemon")
    assert res.returncode == 2 and "log file /proc/x.log" in res.stderr


@pytest.mark.parametrize("pidfile", ["/proc/power.pid", "/proc/nodir/power.pid"])
def test_a_pidfile_that_cannot_be_written_is_a_usage_error(ws, pidfile):
    ws.write(QUIET_INPUT)
    for args in (("--nodaemon",), ()):
        res = ws.power("--pidfile", pidfile, *args)
        assert res.returncode == 2, res.stderr
        assert f"--pidfile {pidfile}" in res.stderr
        _no_traceback(res)
