"""Rejected edges over time (src/core/rejects.py): the daemon keeps per-hour
counts of glitches, implausible edges and ghosts in the journal, and
--status, the report and the metrics show them."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import signal
import sqlite3
import subprocess

from conftest import power_cmd, wait_for


def run_ghostly_daemon(ws) -> str:
    """A simulated meter with ghosts between its pulses, run in the
    foreground until it has written some readings; returns its log."""
    ws.write(
        {
            "backend": "simulated",
            "watts": 3600,
            "speed": 50,
            "seed": 11,
            "ghosts_per_hour": 2400,
        },
        LOGFILE=str(ws.logfile),
    )
    proc = subprocess.Popen(
        power_cmd("--settings", str(ws.settings), "--nodaemon", "-q"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for(
            lambda: ws.csv.exists() and len(ws.csv.read_text().splitlines()) > 60,
            timeout=60,
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    return ws.log()


def test_rejected_edges_reach_the_journal_status_and_report(ws):
    log = run_ghostly_daemon(ws)
    # The counts the meter logged on stop ...
    m = re.search(
        r"house: (\d+) pulses, glitches (\d+), implausible (\d+), ghosts (\d+)", log
    )
    assert m, log
    glitches, implausible, ghosts = (int(m.group(i)) for i in (2, 3, 4))
    assert ghosts > 5  # about two for every three pulses
    # ... are exactly those in the journal, in per-hour rows.
    conn = sqlite3.connect(ws.data / "journal.sqlite3")
    try:
        rows = conn.execute(
            "SELECT hour, glitches, implausible, ghosts FROM rejects "
            "WHERE meter = 'house'"
        ).fetchall()
    finally:
        conn.close()
    assert all(hour % 3600 == 0 for hour, *_ in rows)
    assert [sum(r[i] for r in rows) for i in (1, 2, 3)] == [
        glitches,
        implausible,
        ghosts,
    ]
    status = ws.power("--status")
    assert status.returncode == 3  # not running
    want = f"{glitches} glitches, {implausible} implausible, {ghosts} ghosts"
    assert f"rejected edges of house: {want} in the last 24 h; {want} in all" in (
        status.stdout
    ), status.stdout
    # The report, by hour, up to tomorrow (the simulated clock runs ahead).
    until = (dt.date.today() + dt.timedelta(days=2)).isoformat()
    report = ws.power("report", "--by", "hour", "--until", until, "--csv")
    assert report.returncode == 0, report.stderr
    table = list(csv.DictReader(io.StringIO(report.stdout)))
    assert sum(int(r["ghosts"]) for r in table) == ghosts
    assert sum(int(r["glitches"]) for r in table) == glitches
    text = ws.power("report", "--by", "hour", "--until", until)
    assert f"rejected edges: {want}" in text.stdout, text.stdout
