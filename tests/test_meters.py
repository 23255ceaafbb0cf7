"""Several meters in one daemon: two simulated meters and a replay at once,
through all four sinks, each meter's counts exact everywhere."""

from __future__ import annotations

import collections
import json
import os
import signal
import sqlite3
import time

import pytest
from conftest import pid_alive, pulse_rows, read_csv, wait_for, write_replay
from librato_server import LibratoAPI
from servers import Influx, Mosquitto
from test_mqtt import retained


@pytest.fixture
def servers(tmp_path):
    influx = Influx(tmp_path / "influx")
    broker = Mosquitto(tmp_path / "mqtt")
    api = LibratoAPI("me@example.com", "token")
    for server in (influx, broker, api):
        server.start()
    yield influx, broker, api
    for server in (influx, broker, api):
        server.stop()


def test_three_meters_through_all_sinks(ws, servers, tmp_path):
    influx, broker, api = servers
    now = time.time()
    solar = write_replay(tmp_path / "solar.txt", [now + i * 0.25 for i in range(40)])
    ws.write(
        METERS=[
            {
                "name": "grid",
                "pulses_per_kwh": 1000,
                "detect_led": 18,
                "input": {"backend": "simulated", "watts": 3600, "speed": 10},
            },
            {
                "name": "heatpump",
                "pulses_per_kwh": 800,
                "detect_led": 17,
                "input": {"backend": "simulated", "watts": 2000, "speed": 10},
            },
            {
                "name": "solar",
                "pulses_per_kwh": 1000,
                "input": {"backend": "replay", "path": str(solar), "speed": 1},
            },
        ],
        SINKS=[
            {"type": "file", "path": str(ws.csv)},
            {"type": "influxdb", "host": "127.0.0.1", "port": influx.port},
            {"type": "mqtt", "host": "127.0.0.1", "port": broker.port},
            {
                "type": "librato",
                "user": "me@example.com",
                "token": "token",
                "api_url": api.url,
                "period_s": 1,
            },
        ],
    )
    args = ("--pidfile", str(ws.pidfile), "--logfile", str(ws.logfile))
    assert ws.power(*args).returncode == 0
    pid = int(ws.pidfile.read_text())
    try:
        # The replay ends after 10 s; the live meters go on meanwhile.
        wait_for(lambda: "replay of" in ws.log() and "done" in ws.log(), timeout=30)
        assert pid_alive(pid)
    finally:
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not pid_alive(pid))
    # Drain what the sinks had not written by the stop: every meter reads an
    # empty replay, which ends at once, and the run exits when all is written.
    empty = write_replay(tmp_path / "empty.txt", [])
    res = ws.power("--replay", str(empty), "--speed", "0", "--nodaemon")
    assert res.returncode == 0, res.stderr

    conn = sqlite3.connect(ws.data / "journal.sqlite3")
    counts = dict(conn.execute("SELECT name, pulses FROM meters"))
    readings = dict(
        conn.execute(
            "SELECT meter, count(*) FROM readings WHERE NOT estimate GROUP BY meter"
        )
    )
    known = dict(
        conn.execute(
            "SELECT meter, count(*) FROM readings WHERE power_w IS NOT NULL "
            "AND NOT estimate GROUP BY meter"
        )
    )
    conn.close()
    assert counts["solar"] == 40
    assert counts["grid"] > 20 and counts["heatpump"] > 10

    rows = read_csv(ws.csv)
    by_meter = collections.defaultdict(list)
    for row in pulse_rows(rows):
        by_meter[row["meter"]].append(int(row["pulses"]))
    for name, count in counts.items():
        assert by_meter[name] == list(range(1, count + 1)), name

    points = influx.series('SELECT count("pulses") FROM "power" GROUP BY "meter"')
    assert {p["meter"]: p["count"] for p in points} == readings

    msgs = retained(broker.port)
    for name, count in counts.items():
        state = json.loads(msgs[f"power/{name}/state"])
        assert state["pulses"] == count
        assert msgs[f"power/{name}/availability"] == "offline"
        config = json.loads(msgs[f"homeassistant/sensor/power_{name}/energy/config"])
        assert config["device"]["identifiers"] == [f"power_{name}"]

    counted = collections.Counter()
    for g in api.gauges:
        if g["name"] == "power.power_w":
            counted[g["source"]] += g["count"]
    assert dict(counted) == known

    energy = {p["meter"]: p for p in influx.series(
        'SELECT last("energy_kwh") FROM "power" GROUP BY "meter"'
    )}  # fmt: skip
    assert energy["heatpump"]["last"] == pytest.approx(counts["heatpump"] / 800)
