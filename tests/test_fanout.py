"""One replay fanned out to all four sinks at once, against real servers,
and no secret in any log line or in --status at any verbosity."""

from __future__ import annotations

import json

import pytest
from conftest import pulse_rows, read_csv, write_replay
from librato_server import LibratoAPI
from servers import Influx, Mosquitto
from test_mqtt import retained

T0 = 1_700_000_040.0
INFLUX_PASSWORD = "influx-Pass-31337"
MQTT_PASSWORD = "mqtt-Pass-27182"
LIBRATO_TOKEN = "librato-Token-16180"


@pytest.fixture
def servers(tmp_path):
    influx = Influx(tmp_path / "influx")
    broker = Mosquitto(tmp_path / "mqtt")
    api = LibratoAPI("me@example.com", LIBRATO_TOKEN)
    influx.start()
    broker.start()
    api.start()
    yield influx, broker, api
    influx.stop()
    broker.stop()
    api.stop()


@pytest.mark.parametrize("verbose", [False, True])
def test_replay_to_all_four_sinks(ws, servers, tmp_path, verbose):
    influx, broker, api = servers
    ws.write(
        {"backend": "simulated"},
        SINKS=[
            {"type": "file", "path": str(ws.csv)},
            {
                "type": "influxdb",
                "host": "127.0.0.1",
                "port": influx.port,
                "username": "power",
                "password": INFLUX_PASSWORD,  # auth is off: accepted and ignored
                "tags": {"site": "test"},
            },
            {
                "type": "mqtt",
                "host": "127.0.0.1",
                "port": broker.port,
                "username": "power",
                "password": MQTT_PASSWORD,
            },
            {
                "type": "librato",
                "user": "me@example.com",
                "token": LIBRATO_TOKEN,
                "api_url": api.url,
                "period_s": 60,
            },
        ],
    )
    times = [T0 + i * 1.2 for i in range(1500)]  # 3000 W for 30 minutes
    times += [times[-1] + 301 + i * 4 for i in range(1, 200)]  # a gap, then 900 W
    replay = write_replay(tmp_path / "week.txt", times)
    args = ["--replay", str(replay), "--speed", "0", "--nodaemon"]
    if verbose:
        args.append("-v")
    res = ws.power(*args, timeout=120)
    status = ws.power("--status", "-v")
    assert res.returncode == 0, res.stderr[-2000:]

    rows = read_csv(ws.csv)
    assert len(pulse_rows(rows)) == 1699
    estimates = [r for r in rows if r["estimate"] == "1"]
    assert len(rows) == 1699 + len(estimates) and len(estimates) == 24

    assert influx.count() == 1699  # pulses; estimates carry no count
    # Every row but the first pulse (power unknown) has a power.
    assert len(influx.series('SELECT "power_w" FROM "power"')) == len(rows) - 1

    msgs = retained(broker.port)
    state = json.loads(msgs["power/house/state"])
    assert state["pulses"] == 1699
    assert state["energy_kwh"] == pytest.approx(1.699)
    for kind, topic in (("power", "power"), ("energy", "state")):
        config = json.loads(msgs[f"homeassistant/sensor/power_house/{kind}/config"])
        assert config["state_topic"] == f"power/house/{topic}"

    power = [g for g in api.gauges if g["name"] == "power.power_w"]
    assert sum(g["count"] for g in power) == 1698  # pulses but the first

    for sink in ("file", "influxdb", "mqtt", "librato"):
        assert f"sink {sink}: backlog 0 readings" in status.stdout
    for secret in (INFLUX_PASSWORD, MQTT_PASSWORD, LIBRATO_TOKEN):
        for text in (res.stdout, res.stderr, status.stdout, status.stderr):
            assert secret not in text
