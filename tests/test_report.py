"""`power.py report` on journals built by real replays with known totals."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import time

import pytest
from conftest import power_cmd, read_csv, write_replay

DAY0 = 1_714_521_600.0  # 2024-05-01 00:00 UTC


@pytest.fixture
def utc_env():
    env = dict(os.environ, TZ="UTC")
    return env


def replay(ws, times, env):
    path = write_replay(ws.tmp / "p.txt", times)
    res = ws.power("--replay", str(path), "--speed", "0", "--nodaemon", env=env)
    assert res.returncode == 0, res.stderr


def report(ws, *args, env):
    return subprocess.run(
        power_cmd("report", "--settings", str(ws.settings), *args),
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def steady(start: float, end: float, watts: float, ppk: float = 1000.0):
    """Pulses at `watts`, each half a step inside [start, end)."""
    step = 3_600_000.0 / (ppk * watts)
    n = int(round((end - start) / step))
    return [start + step * (i + 0.5) for i in range(n)]


def test_daily_totals_cost_peak_and_base_load(ws, utc_env):
    # Day 1 at 1000 W (24 kWh); day 2 at 500 W (12 kWh) with an 18:00-19:00
    # burst at 3000 W (+2.5 kWh): 14.5 kWh. Pulses end exactly at midnight.
    times = steady(DAY0, DAY0 + 86400, 1000)
    day2 = DAY0 + 86400
    times += steady(day2, day2 + 18 * 3600, 500)
    times += steady(day2 + 18 * 3600, day2 + 19 * 3600, 3000)
    times += steady(day2 + 19 * 3600, day2 + 86400, 500)
    replay(ws, times, utc_env)

    res = report(
        ws, "--since", "2024-05-01", "--until", "2024-05-03", "--tariff", "0.25",
        "--csv", env=utc_env,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert [r["period"] for r in rows] == ["2024-05-01", "2024-05-02"]
    assert float(rows[0]["energy_kwh"]) == pytest.approx(24.0, abs=0.0015)
    assert float(rows[1]["energy_kwh"]) == pytest.approx(14.5, abs=0.0015)
    assert float(rows[0]["cost"]) == pytest.approx(6.0, abs=0.01)
    assert float(rows[1]["peak_w"]) == pytest.approx(3000.0, rel=0.01)

    text = report(
        ws, "--since", "2024-05-01", "--until", "2024-05-03", env=utc_env
    ).stdout
    assert "Meter house: energy by day" in text
    assert "total" in text and "38.5" in text
    assert "peak load: 3000 W at 2024-05-02 18:" in text
    assert "base load: 500 W" in text
    assert "█" in text


def test_by_hour_and_month(ws, utc_env):
    times = steady(DAY0, DAY0 + 3 * 3600, 2000)  # 2 kWh an hour, three hours
    replay(ws, times, utc_env)
    res = report(
        ws, "--since", "2024-05-01", "--until", "2024-05-02", "--by", "hour",
        "--csv", env=utc_env,
    )  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert [r["period"] for r in rows] == [
        "2024-05-01 00:00",
        "2024-05-01 01:00",
        "2024-05-01 02:00",
    ]
    for r in rows:
        assert float(r["energy_kwh"]) == pytest.approx(2.0, abs=0.0015)

    res = report(
        ws, "--since", "2024-01", "--until", "2024-12", "--by", "month", "--csv",
        env=utc_env,
    )  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert [(r["period"], r["energy_kwh"]) for r in rows] == [("2024-05", "6.000")]


def test_report_while_the_daemon_runs(ws):
    ws.write({"backend": "simulated", "watts": 3600, "speed": 20})
    args = ("--pidfile", str(ws.pidfile), "--logfile", str(ws.logfile))
    assert ws.power(*args).returncode == 0
    try:
        time.sleep(3)
        res = report(ws, "--by", "hour", "--csv", env=None)
    finally:
        ws.power("--pidfile", str(ws.pidfile), "--kill")
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert rows and float(rows[-1]["energy_kwh"]) > 0


def test_report_errors(ws, utc_env):
    res = report(ws, env=utc_env)
    assert res.returncode == 2 and "no journal" in res.stderr
    replay(ws, steady(DAY0, DAY0 + 60, 1000), utc_env)
    res = report(ws, "--since", "yesterday", env=utc_env)
    assert res.returncode == 2 and "--since 'yesterday'" in res.stderr
    res = report(ws, "--since", "2024-05-02", "--until", "2024-05-01", env=utc_env)
    assert res.returncode == 2 and "not before" in res.stderr
    res = report(ws, "--by", "week", env=utc_env)
    assert res.returncode == 2
    res = report(ws, "--since", "2020-01-01", "--until", "2020-02-01", env=utc_env)
    assert res.returncode == 0 and "No readings" in res.stdout


def test_base_load_is_the_lowest_hourly_energy_over_time(ws, utc_env):
    """A known varying load, low at night: the base load is the lowest true
    mean over a whole hour, and the peak the highest pulse; the estimates
    published as the load falls count for neither."""
    from loadmodel import bucket_means, pulse_times

    seconds = 6 * 3600
    # 40 W to 160 W through the hours, with a fridge's 120 W every 20 min.
    watts = [
        40.0 + 20.0 * (s // 3600) + (120.0 if s % 1200 < 300 else 0.0)
        for s in range(seconds)
    ]
    replay(ws, pulse_times(watts, DAY0, 1000), utc_env)
    assert any(r["estimate"] == "1" for r in read_csv(ws.csv))
    res = report(
        ws, "--since", "2024-05-01", "--until", "2024-05-02", "--by", "hour",
        env=utc_env,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    truth = bucket_means(watts, 3600)
    base = next(line for line in res.stdout.splitlines() if "base load" in line)
    # The first hour is not whole: the first pulse has no interval.
    assert base.startswith(f"base load: {min(truth[1:]):.0f} W")  # 90 W
    peak = next(line for line in res.stdout.splitlines() if "peak load" in line)
    assert peak.startswith("peak load: 260 W")  # 140 W and the fridge


def test_a_journal_that_is_no_journal_is_one_line_and_exit_2(ws, tmp_path):
    """report --journal on what is not a journal: never 100 % CPU without
    end, never a wrong "no such file"."""
    import os
    import sqlite3

    empty = tmp_path / "empty.sqlite3"
    empty.write_bytes(b"")
    other = tmp_path / "other.sqlite3"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE notes (text TEXT)")
    conn.commit()
    conn.close()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    for path, says in (
        (empty, "is empty (0 bytes)"),
        (other, "not a journal of power's (no readings table)"),
        (fifo, "is not a regular file"),
        (tmp_path, "is a directory"),
        ("/dev/zero", "is not a regular file"),
        (text, "is not an SQLite file"),
        (tmp_path / "gone.sqlite3", "no such file"),
    ):
        res = subprocess.run(
            power_cmd("report", "--settings", str(ws.settings), "--journal")
            + [str(path)],
            capture_output=True,
            text=True,
            timeout=30,  # it must end
        )
        assert res.returncode == 2, (path, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0], (path, res.stderr)


def test_readings_after_now_are_counted_and_the_way_to_include_them_said(ws):
    now = time.time()
    path = write_replay(ws.tmp / "ahead.txt", [now - 100, now + 3600, now + 7200])
    res = ws.power("--replay", str(path), "--speed", "0", "--nodaemon", "-q")
    assert res.returncode == 0, res.stderr
    res = report(ws, "--by", "day", env=None)
    assert res.returncode == 0, res.stderr
    assert "left out 2 readings after now" in res.stderr
    until = res.stderr.split("e.g. --until ")[1].split()[0]
    res = report(ws, "--by", "day", "--until", until, env=None)
    assert res.returncode == 0 and "left out" not in res.stderr
