"""`power.py register`: the meter's register reading sets energy_kwh, later
ones show the drift, --rebase sets it again, and a running daemon takes it
up; all through the CLI on real journals."""

from __future__ import annotations

import datetime as dt
import os
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


def test_with_power_running_the_offset_is_taken_against_the_live_count(ws):
    """Commits come every 30 s; at 10 pulses a second the last committed
    count is far behind the meter's. The register is set against the count
    the meter has when the reading is stamped."""
    import json
    import signal
    import sqlite3
    import urllib.request

    from conftest import pid_alive
    from servers import free_port

    port = free_port()
    ws.write(
        {"backend": "simulated", "watts": 36_000, "speed": 1},
        COMMIT_INTERVAL_S=30,
        WEB={"listen": f"127.0.0.1:{port}"},  # to see the live count
    )

    def live_count() -> int:
        url = f"http://127.0.0.1:{port}/api/state"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return json.load(r)["meters"][0]["pulses"]
        except OSError:
            return 0

    assert ws.power("--pidfile", str(ws.pidfile)).returncode == 0
    pid = int(ws.pidfile.read_text())
    journal = ws.data / "journal.sqlite3"

    def committed() -> int:
        conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
        try:
            return conn.execute("SELECT count(*) FROM readings").fetchone()[0]
        finally:
            conn.close()

    try:
        # The first reading was committed at once; the next commit is 30 s
        # away. Pulses the journal does not have yet:
        wait_for(lambda: live_count() >= 20, 30)
        assert committed() < 5
        res = register(ws, "1000.000")
        assert res.returncode == 0, res.stderr
    finally:
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not pid_alive(pid), 20)
    conn = sqlite3.connect(journal)
    at, pulses = conn.execute("SELECT time, pulses FROM registers").fetchone()
    (live,) = conn.execute(
        "SELECT pulses FROM readings WHERE time <= ? AND NOT estimate "
        "ORDER BY seq DESC LIMIT 1",
        (at,),
    ).fetchone()
    conn.close()
    assert pulses >= 20  # not the last committed reading's count
    assert abs(pulses - live) <= 1, (pulses, live)


def test_after_a_lost_journal_the_offset_counts_from_the_mark(ws, tmp_path):
    replay(ws, [T0 + i * 0.36 for i in range(5000)])  # 5.000 kWh
    for suffix in ("", "-wal", "-shm"):
        path = ws.data / f"journal.sqlite3{suffix}"
        if path.exists():
            path.unlink()  # the mark beside it stays
    res = register(ws, "5000.010", "--at", local(T0 + 2000))
    assert res.returncode == 0, res.stderr
    replay(ws, [T0 + 2000 + i for i in range(1, 11)], "more.txt")  # 10 more
    last = pulse_rows(read_csv(ws.csv))[-1]
    assert last["pulses"] == "5010"
    assert last["energy_kwh"] == "5000.02"  # 5000.010 typed, 10 pulses since


def test_register_says_why_a_number_is_refused(ws):
    for typed, why in (
        ("-5", "a register reading is never negative"),
        ("1e15", "not as a display shows it"),
        ("99999999999", "more digits than a meter's register has"),
        ("abc", "not a number"),
        ("12345,6", "write the decimal point as a point: 12345.6"),
    ):
        res = subprocess.run(
            power_cmd("--settings", str(ws.settings), "register", "--", typed),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 2, (typed, res.stderr)
        assert f"register {typed!r}: {why}" in res.stderr, res.stderr
        assert "--settings" not in res.stderr and "Traceback" not in res.stderr


def test_readings_are_shown_as_typed_to_their_last_digit(ws):
    replay(ws, [T0 + i * 3.6 for i in range(100)])
    res = register(ws, "123456.7", "--at", local(T0 + 100))
    assert res.returncode == 0, res.stderr
    assert "register house: 123456.7 kWh at" in res.stdout
    res = register(ws, "123456.75", "--at", local(T0 + 400))
    assert res.returncode == 0, res.stderr
    assert "register house: 123456.75 kWh at" in res.stdout
    assert "'power.py register 123456.75 --meter house" in res.stdout
    # Following that advice re-bases to the reading typed, not a rounding.
    advice = res.stdout.split("'")[1].split()[2:]
    assert ws.power("register", *advice).returncode == 0
    replay(ws, [T0 + 500], "one.txt")
    assert pulse_rows(read_csv(ws.csv))[-1]["energy_kwh"] == "123456.751"


def test_a_lower_reading_is_refused_unless_replaced_and_can_be_withdrawn(ws):
    replay(ws, [T0 + i * 3.6 for i in range(100)])
    assert register(ws, "12345.6", "--at", local(T0 + 10)).returncode == 0
    res = register(ws, "100", "--at", local(T0 + 360))  # a typo
    assert res.returncode == 2, res.stdout
    assert "below the reading before, 12345.6 kWh" in res.stderr
    assert "--replaced" in res.stderr and "--withdraw" in res.stderr
    # Recorded by mistake all the same (an older version took it): withdraw.
    assert register(ws, "12345.7", "--at", local(T0 + 200)).returncode == 0
    assert register(ws, "12399.9", "--at", local(T0 + 360)).returncode == 0
    status = ws.power("--status").stdout
    assert "register house: 12399.9 kWh" in status
    res = register(ws, "--withdraw")
    assert res.returncode == 0, res.stderr
    assert "withdrew 12399.9 kWh" in res.stdout
    assert "12345.7 kWh at" in res.stdout and "stands again" in res.stdout
    status = ws.power("--status").stdout
    assert "12399.9" not in status and "register house: 12345.7 kWh" in status
    # A new meter: its lower reading starts a new series.
    res = register(ws, "3.5", "--at", local(T0 + 380), "--replaced")
    assert res.returncode == 0, res.stderr
    assert "a new meter at 3.5 kWh" in res.stdout
    assert "a new meter's reading 3.5 kWh" in ws.power("--status").stdout
    res = register(ws, "--withdraw", "--withdraw")
    assert res.returncode == 0
    while register(ws, "--withdraw").returncode == 0:
        pass
    res = register(ws, "--withdraw")
    assert res.returncode == 1 and "no register reading to withdraw" in res.stderr
