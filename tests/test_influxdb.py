"""The InfluxDB sink against a real influxd (Debian's influxdb package)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request

import pytest
from conftest import (
    pid_alive,
    power_cmd,
    pulse_rows,
    read_csv,
    wait_for,
    write_replay,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from influxdb import InfluxDBClient
from influxdb.line_protocol import make_lines
from servers import Influx

from core.meter import Reading
from core.options import validate
from sinks.base import COMMON_OPTIONS
from sinks.influxdb import InfluxDBSink

T0 = 1_700_000_000.0
# Names that need escaping in line protocol: spaces, commas, equals signs,
# a backslash, quotes, a newline, a tab, other scripts. (A tag ending in a
# backslash was refused by the server before and still is: its escape is
# taken for an escaped separator.)
AWKWARD = ["a b", "x,y", "k=v", "back\\slash", 'say "hi"', "two\nlines", "tab\tstop"]
AWKWARD += ["Zähler €"]


def influx_sink(server, **extra):
    sink = {
        "type": "influxdb",
        "host": "127.0.0.1",
        "port": server.port,
        "database": "power",
        "flush_interval_s": 0.2,
        "retry_max_s": 1,
    }
    sink.update(extra)
    return sink


def test_replay_writes_every_reading_as_a_point(ws, influx, tmp_path):
    ws.write(
        {"backend": "simulated"},
        SINKS=[
            {"type": "file", "path": str(ws.csv)},
            influx_sink(influx, tags={"site": "home"}, batch_size=100),
        ],
    )
    times = [T0 + i * 2 for i in range(250)] + [T0 + 498 + 400]
    replay = write_replay(tmp_path / "p.txt", times)
    res = ws.power("--replay", str(replay), "--speed", "0", "--nodaemon")
    assert res.returncode == 0, res.stderr

    rows = read_csv(ws.csv)
    points = influx.series('SELECT * FROM "power" ORDER BY time')
    # 251 pulses and the estimates of the 400 s gap
    assert len(points) == len(rows) == 251 + 23
    assert points[0]["time"] == int(T0 * 1000)
    assert points[0]["power_w"] is None  # absent: unknown for the first pulse
    assert points[1]["power_w"] == pytest.approx(1800.0)
    assert points[-1]["pulses"] == 251
    assert points[-1]["energy_kwh"] == pytest.approx(0.251)
    assert {p["meter"] for p in points} == {"house"}
    assert {p["site"] for p in points} == {"home"}
    for point, row in zip(points, rows):
        if row["estimate"] == "1":  # no energy of its own
            assert point["estimate"] is True and point["pulses"] is None
            assert point["energy_kwh"] is None
            assert point["power_w"] == pytest.approx(float(row["power_w"]), abs=0.005)
        else:
            assert point["pulses"] == int(row["pulses"])
            assert point["estimate"] is None

    types = influx.series('SHOW FIELD KEYS FROM "power"')
    assert {t["fieldKey"]: t["fieldType"] for t in types} == {
        "energy_kwh": "float",
        "estimate": "boolean",
        "power_w": "float",
        "pulses": "integer",
    }


def test_outage_in_the_middle_of_a_replay_loses_nothing(ws, influx, tmp_path):
    ws.write(
        {"backend": "simulated"},
        SINKS=[{"type": "file", "path": str(ws.csv)}, influx_sink(influx)],
        DRAIN_TIMEOUT_S=60,
        COMMIT_INTERVAL_S=1,  # the sink tries to write during the outage
    )
    times = [T0 + i * 0.5 for i in range(240)]  # 7200 W
    replay = write_replay(tmp_path / "p.txt", times)
    proc = subprocess.Popen(
        power_cmd(
            "--settings",
            str(ws.settings),
            "--replay",
            str(replay),
            "--speed",
            "10",
            "--nodaemon",
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: influx.count() > 20, timeout=30)
        influx.stop()
        time.sleep(4)  # about 80 readings happen while it is down
        influx.start()
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert influx.count() == 240
    assert len(pulse_rows(read_csv(ws.csv))) == 240
    assert err.count("cannot connect") == 1  # one line for the whole outage
    assert "recovered" in err


def test_kill_9_during_a_run_then_restart_loses_nothing(ws, influx):
    # Real time (speed 1), 10 pulses a second: a faster clock would stamp the
    # first run's readings ahead of the second's, and a point of the same
    # series and time replaces the earlier one in InfluxDB.
    ws.write(
        {"backend": "simulated", "watts": 3600, "speed": 1, "seed": 3},
        METER={"name": "house", "pulses_per_kwh": 10000},
        SINKS=[{"type": "file", "path": str(ws.csv)}, influx_sink(influx)],
    )
    args = ("--pidfile", str(ws.pidfile), "--logfile", str(ws.logfile))
    assert ws.power(*args).returncode == 0
    pid = int(ws.pidfile.read_text())
    try:
        wait_for(lambda: influx.count() >= 30, timeout=30)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not pid_alive(pid))
        assert ws.power(*args).returncode == 0
        seen = influx.count()
        wait_for(lambda: influx.count() >= seen + 30, timeout=30)
        assert ws.power("--pidfile", str(ws.pidfile), "--kill").returncode == 0
    finally:
        current = ws.pidfile.exists() and int(ws.pidfile.read_text())
        if current and pid_alive(current):
            os.kill(current, signal.SIGKILL)
    pulses = [p["pulses"] for p in influx.series('SELECT "pulses" FROM "power"')]
    assert sorted(pulses) == list(range(1, len(pulses) + 1))
    assert len(pulses) == len(pulse_rows(read_csv(ws.csv)))


def test_creates_the_database_when_missing(ws, influx, tmp_path):
    ws.write(
        {"backend": "simulated"},
        SINKS=[influx_sink(influx, database="fresh", measurement="house_power")],
    )
    replay = write_replay(tmp_path / "p.txt", [T0 + i for i in range(10)])
    res = ws.power("--replay", str(replay), "--speed", "0", "--nodaemon")
    assert res.returncode == 0, res.stderr
    assert influx.count(db="fresh", measurement="house_power") == 10


def test_bad_credentials_are_reported_once_and_other_sinks_go_on(tmp_path, ws):
    server = Influx(tmp_path / "influx-auth", auth=True)
    server.start()
    try:
        server.query(
            "CREATE USER admin WITH PASSWORD 'right-secret' WITH ALL PRIVILEGES", db=""
        )
        ws.write(
            {"backend": "simulated"},
            SINKS=[
                {"type": "file", "path": str(ws.csv)},
                influx_sink(server, username="admin", password="wrong-Secret-42"),
            ],
            DRAIN_TIMEOUT_S=3,
        )
        replay = write_replay(tmp_path / "p.txt", [T0 + i for i in range(30)])
        res = ws.power("--replay", str(replay), "--speed", "0", "--nodaemon", "-v")
        status = ws.power("--status")
    finally:
        server.stop()
    assert res.returncode == 1  # the InfluxDB sink could not drain
    assert len(pulse_rows(read_csv(ws.csv))) == 30  # the file sink went on
    errors = [line for line in res.stderr.splitlines() if " ERROR " in line]
    assert sum("authentication failed" in line for line in errors) == 1
    assert "check username and password" in res.stderr
    assert "wrong-Secret-42" not in res.stderr + res.stdout + status.stdout
    assert "sink influxdb: backlog 30 readings" in status.stdout


def test_a_schema_conflict_every_point_hits_is_a_failing_sink(ws, influx, tmp_path):
    """The measurement already has "pulses" as a float (another program
    wrote it): every pulse is refused for that. Not bad data to skip point
    by point: the sink fails, says once what conflicts and how to fix it,
    keeps every reading, and delivers them all once the conflict is gone."""
    influx.query("CREATE DATABASE power", db="")
    urllib.request.urlopen(
        influx.url + "/write?db=power",
        data=b"power,meter=other pulses=1.5,energy_kwh=0.1 %d" % int(T0 * 1e9),
    ).read()
    ws.write(
        {"backend": "simulated"},
        SINKS=[{"type": "file", "path": str(ws.csv)}, influx_sink(influx)],
        DRAIN_TIMEOUT_S=3,
    )
    replay = write_replay(tmp_path / "p.txt", [T0 + i * 60 for i in range(100)])
    res = ws.power("--replay", str(replay), "--speed", "0", "--nodaemon", "-q")
    assert res.returncode == 1, res.stderr  # it could not drain
    errors = [line for line in res.stderr.splitlines() if " ERROR " in line]
    conflicts = [line for line in errors if "already holds field" in line]
    assert len(conflicts) == 1, errors
    assert "'pulses' as float" in conflicts[0] and "integer" in conflicts[0]
    assert "another 'measurement'" in conflicts[0]
    assert "skipped" not in res.stderr
    status = ws.power("--status")
    assert "sink influxdb: backlog 100 readings" in status.stdout
    influx.query('DROP MEASUREMENT "power"')  # the user's fix
    empty = write_replay(tmp_path / "empty.txt", [])
    res = ws.power("--replay", str(empty), "--speed", "0", "--nodaemon", "-q")
    assert res.returncode == 0, res.stderr
    assert influx.count() == 100


def sink_of(server=None, **given) -> InfluxDBSink:
    """An InfluxDBSink with its options completed as settings loading does."""
    table = {**COMMON_OPTIONS, **InfluxDBSink.OPTIONS}
    if server is not None:
        given.update(host="127.0.0.1", port=server.port)
    options = validate("SINKS[0]", {"type": "influxdb", **given}, table)
    return InfluxDBSink("influxdb", options, None)


def awkward_readings(meters):
    """Each kind of reading a sink gets, for each meter: a first pulse (power
    unknown), pulses, an estimate, an idle 0 W reading, extreme numbers."""
    out = []
    for i, meter in enumerate(meters):
        t = T0 + 1000 * i
        out += [
            Reading(t + 0.0004, meter, 1, 0.001, None, None),
            Reading(t + 2.5, meter, 2, 0.002, 1440.0, 2.5),
            Reading(t + 4.1235, meter, 3, 0.003, 1738.0403, 1.6235),
            Reading(t + 9.0, meter, 3, 0.003, 1202.5, 4.876, True),
            Reading(t + 304.1, meter, 3, 0.003, 0.0, 300.0, True),
            Reading(t + 305.0, meter, 4, 123456789.123456, 1e-7, 3.6e13),
        ]
    return out


tag_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    measurement=tag_text.filter(lambda m: m.strip()),
    tags=st.dictionaries(
        tag_text.filter(lambda k: k and k not in ("meter", "time")), tag_text
    ),
    meter=tag_text.filter(bool),
    power=st.one_of(st.none(), st.floats(min_value=0, max_value=1e12)),
    energy=st.floats(min_value=0, max_value=1e12),
    pulses=st.integers(min_value=0, max_value=2**62),
    estimate=st.booleans(),
    t_ms=st.integers(min_value=946_684_800_000, max_value=4_102_444_799_999),
)
def test_lines_are_the_clients_encoding_of_the_points(
    measurement, tags, meter, power, energy, pulses, estimate, t_ms
):
    """The sink's own encoder gives, byte for byte, what the influxdb
    client made of the point dicts it was given before."""
    sink = sink_of(measurement=measurement, tags=tags)
    r = Reading(t_ms / 1000, meter, pulses, energy, power, 1.0, estimate)
    batch = [r, r._replace(meter=meter + "2")]
    expected = make_lines({"points": sink.points(batch)}, "ms")
    assert "\n".join(sink.lines(batch)) + "\n" == expected


def test_points_stored_are_those_the_client_stored(influx):
    """Against the real influxd: what the sink writes as line protocol is
    stored as the same measurements, series, tags, fields, types and values
    as the client's own encoding of the point dicts (written beside it)."""
    meters = ["house", "grid-2", *AWKWARD]
    tags = {"site": "home", **{f"tag {i}": v for i, v in enumerate(AWKWARD)}}
    for measurement in ("power", "my power,kWh=x"):
        for db in ("viaclient", "viasink"):
            influx.query(f'DROP DATABASE "{db}"')
        sink = sink_of(influx, database="viasink", measurement=measurement, tags=tags)
        sink.open()  # creates its database
        batch = awkward_readings(meters)
        try:
            assert sink.write(batch) is None
        finally:
            sink.close()
        client = InfluxDBClient("127.0.0.1", influx.port, database="viaclient")
        client.create_database("viaclient")
        client.write_points(sink.points(batch), time_precision="ms")
        client.close()

        def stored(db):
            show = [
                "SHOW MEASUREMENTS",
                "SHOW SERIES",
                "SHOW TAG KEYS",
                "SHOW FIELD KEYS",
            ]
            facts = {q: influx.query(q, db)["results"][0] for q in show}
            facts["points"] = influx.series("SELECT * FROM /.*/ ORDER BY time", db)
            return facts

        via_sink, via_client = stored("viasink"), stored("viaclient")
        assert via_sink == via_client
        points = via_sink["points"]
        assert len(points) == len(batch)
        # As the client stored them: a backslash doubled, a newline as backslash n.
        stored_as = {m.replace("\\", "\\\\").replace("\n", "\\n") for m in meters}
        assert {p["meter"] for p in points} == stored_as
        assert {p["tag 0"] for p in points} == {"a b"}
        (name,) = via_sink["SHOW MEASUREMENTS"]["series"][0]["values"]
        assert name == [measurement]
        types = {v[0]: v[1] for v in via_sink["SHOW FIELD KEYS"]["series"][0]["values"]}
        assert types == {
            "energy_kwh": "float",
            "estimate": "boolean",
            "power_w": "float",
            "pulses": "integer",
        }
        first, estimate = points[0], points[3]
        assert first["power_w"] is None and first["pulses"] == 1
        assert estimate["estimate"] is True and estimate["energy_kwh"] is None
        assert estimate["power_w"] == 1202.5
