"""`power.py report` on journals built by real replays with known totals."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import time

import pytest
from conftest import power_cmd, write_replay

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
