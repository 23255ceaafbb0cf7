"""`power.py register`: the meter's register reading sets energy_kwh, later
ones show the drift, --rebase sets it again, and a running daemon takes it
up; all through the CLI on real journals."""

from __future__ import annotations

import datetime as dt
import subprocess

import pytest
from conftest import power_cmd, pulse_rows, read_csv, wait_for, write_replay

T0 = 1_700_000_000.0


def local(t: float) -> str:
    return dt.datetime.fromtimestamp(t).strftime("%Y-%m-%dT%H:%M:%S")


def replay(ws, times, name="p.txt"):
    path = write_replay(ws.tmp / name, times)
    res = ws.power("--replay", str(path), "--speed", "0", "--nodaemon", "-q")
    assert res.returncode == 0, res.stderr


def register(ws, *args):
    return subprocess.run(
        power_cmd("register", "--settings", str(ws.settings), *args),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_first_reading_sets_energy_later_ones_show_drift_and_rebase(ws):
    # Before power ever ran: no pulse yet.
    res = register(ws, "12345.6", "--at", local(T0 - 60))
    assert res.returncode == 0, res.stderr
    assert "energy_kwh now equals it" in res.stdout
    replay(ws, [T0 + i * 3.6 for i in range(100)])  # 1000 W, 0.1 kWh
    rows = read_csv(ws.csv)
    assert rows[0]["energy_kwh"] == "12345.601"
    assert rows[-1]["energy_kwh"] == "12345.7"

    # The meter says 12345.75: it advanced 0.15 kWh, power counted 0.1.
    res = register(ws, "12345.75", "--at", local(T0 + 400))
    assert res.returncode == 0, res.stderr
    assert "drift +0.050 kWh, +33.33 % (50 pulses missed)" in res.stdout
    assert "off by +0.050 kWh: re-base with" in res.stdout
    status = ws.power("--status")
    assert status.returncode == 3  # not running, but it tells
    assert "drift +0.050 kWh, +33.33 % (50 pulses missed)" in status.stdout
    report = subprocess.run(
        power_cmd("report", "--settings", str(ws.settings), "--since", "2023-11"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert report.returncode == 0, report.stderr
    assert "(50 pulses missed)" in report.stdout and "re-base with" in report.stdout

    # Re-based, the next pulses count on from the register.
    res = register(ws, "12345.75", "--at", local(T0 + 400), "--rebase")
    assert res.returncode == 0, res.stderr
    assert "re-based" in res.stdout
    replay(ws, [T0 + 500 + i * 3.6 for i in range(10)], "more.txt")
    rows = pulse_rows(read_csv(ws.csv))
    assert rows[-1]["pulses"] == "110" and rows[-1]["energy_kwh"] == "12345.76"

    # A reading within the register's last digit: no need to re-base.
    res = register(ws, "12345.8", "--at", local(T0 + 600))
    assert res.returncode == 0, res.stderr
    assert "drift +0.040 kWh" in res.stdout and "(40 pulses missed)" in res.stdout
    assert "last digit (0.1 kWh): no need to re-base" in res.stdout
    # Read to two decimals, the same difference is more than the last digit.
    res = register(ws, "12346.00", "--at", local(T0 + 600))
    assert "off by +0.240 kWh: re-base with" in res.stdout


def test_extra_pulses_and_the_settings_offset(ws):
    ws.write(
        {"backend": "simulated"},
        METER={"name": "house", "pulses_per_kwh": 1000, "energy_offset_kwh": 100.0},
    )
    replay(ws, [T0 + i * 3.6 for i in range(200)])
    assert read_csv(ws.csv)[-1]["energy_kwh"] == "100.2"  # the settings' offset
    # A register reading wins over it from then on.
    res = register(ws, "500.0", "--at", local(T0 + 1000))
    assert res.returncode == 0, res.stderr
    assert "was 100" in res.stdout
    replay(ws, [T0 + 1000 + i * 3.6 for i in range(1, 11)], "more.txt")
    assert read_csv(ws.csv)[-1]["energy_kwh"] == "500.01"
    # The meter advanced 0.005 kWh less than the 0.01 counted: 5 extra.
    res = register(ws, "500.005", "--at", local(T0 + 1100))
    assert res.returncode == 0, res.stderr
    assert "drift -0.005 kWh, -100.00 % (5 pulses extra)" in res.stdout


def test_a_running_daemon_takes_up_a_register_reading(ws):
    ws.write({"backend": "simulated", "watts": 3600, "speed": 1})
    args = ("--pidfile", str(ws.pidfile), "--logfile", str(ws.logfile))
    assert ws.power(*args).returncode == 0
    try:
        wait_for(lambda: ws.csv.exists() and len(read_csv(ws.csv)) > 2, 30)
        res = register(ws, "7000.5")
        assert res.returncode == 0, res.stderr
        wait_for(lambda: float(read_csv(ws.csv)[-1]["energy_kwh"]) > 7000.5, 30, 0.2)
    finally:
        ws.power("--pidfile", str(ws.pidfile), "--kill")
    rows = pulse_rows(read_csv(ws.csv))
    energies = [float(r["energy_kwh"]) for r in rows]
    jump = next(i for i, e in enumerate(energies) if e > 7000)
    # From the reading on, energy is the register plus what came after it.
    assert energies[jump] == pytest.approx(7000.5 + 0.001, abs=0.0031)
    assert "from a register reading" in ws.log()


def test_register_errors(ws):
    res = register(ws, "twelve")
    assert res.returncode == 2 and "register 'twelve'" in res.stderr
    res = register(ws, "5", "--at", "yesterday")
    assert res.returncode == 2 and "--at 'yesterday'" in res.stderr
    res = register(ws, "5", "--meter", "garage")
    assert res.returncode == 2 and "no such meter" in res.stderr
    replay(ws, [T0 + i for i in range(5)])
    res = register(ws, "5", "--at", local(T0 - 3600))
    assert res.returncode == 1 and "no reading of meter house" in res.stderr
    res = register(ws, "5", "--at", "2999-01-01T00:00")
    assert res.returncode == 2 and "is in the future" in res.stderr
    assert register(ws, "5", "--at", local(T0 + 4)).returncode == 0
    res = register(ws, "6", "--at", local(T0 + 2))  # before the one above
    assert res.returncode == 2 and "before the newest register reading" in res.stderr
    ws.write(
        METERS=[
            {"name": "a", "input": {"backend": "simulated"}},
            {"name": "b", "input": {"backend": "simulated"}},
        ]
    )
    res = register(ws, "5")
    assert res.returncode == 2 and "name one with --meter" in res.stderr
    assert "Traceback" not in res.stderr
