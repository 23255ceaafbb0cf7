"""The ThingsBoard sink against a real Mosquitto, run verbosely so that its
log shows each client's username (the access token) at connect, with a
subscriber that checks topics and payloads as ThingsBoard's MQTT device API
and gateway API document them. ThingsBoard itself cannot run here."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from typing import Any, Dict, List, Tuple

import pytest
from conftest import power_cmd, pulse_rows, read_csv, wait_for, write_replay
from servers import Mosquitto

T0 = 1_700_000_000.0
CONNECT_RE = re.compile(r"New client connected from \S+ as (\S+) \(.*u'([^']*)'\)")
PUBLISH_RE = re.compile(
    r"Received PUBLISH from (\S+) \(d\d, q(\d), r\d, m\d+, '([^']+)'"
)


class Subscriber:
    """Everything published under v1/, in arrival order, at QoS 1 with a
    persistent session: what comes while it is away waits for it."""

    def __init__(self, port: int, client_id: str = "tb-check") -> None:
        import paho.mqtt.client as mqtt

        self.messages: List[Tuple[str, str]] = []
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        client.on_connect = self._on_connect
        client.on_subscribe = lambda *a: self.subscribed.set()
        client.on_message = self._on_message
        client.reconnect_delay_set(min_delay=1, max_delay=1)
        client.connect("127.0.0.1", port)
        client.loop_start()
        self.client = client
        assert self.subscribed.wait(10), "subscriber not subscribed"

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        client.subscribe("v1/#", qos=1)

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload.decode()))

    def on(self, topic: str) -> List[Any]:
        with self._lock:
            return [json.loads(p) for t, p in self.messages if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def tb(tmp_path):
    server = Mosquitto(tmp_path / "mqtt", verbose=True, persistence=True)
    server.start()
    yield server
    server.stop()


def tb_sink(port: int, **extra) -> Dict[str, Any]:
    sink = {
        "type": "thingsboard",
        "host": "127.0.0.1",
        "port": port,
        "flush_interval_s": 0.2,
        "retry_max_s": 1,
    }
    sink.update(extra)
    return sink


def expected(row: Dict[str, str]) -> Dict[str, Any]:
    """A CSV row of the file sink as the telemetry ThingsBoard should get."""
    from datetime import datetime

    t = datetime.strptime(row["time"], "%Y-%m-%dT%H:%M:%S.%fZ")
    ts = round((t - datetime(1970, 1, 1)).total_seconds() * 1000)
    values: Dict[str, Any] = {
        "energy_kwh": float(row["energy_kwh"]),
        "pulses": int(row["pulses"]),
    }
    if row["power_w"]:
        values["power_w"] = float(row["power_w"])
    if row["interval_s"]:
        values["interval_s"] = float(row["interval_s"])
    return {"ts": ts, "values": values}


def normal(entry: Dict[str, Any]) -> Tuple:
    """An entry comparable with a CSV row (the CSV rounds to 3 decimals)."""
    v = entry["values"]
    assert set(entry) == {"ts", "values"}
    assert isinstance(entry["ts"], int)
    assert set(v) <= {"energy_kwh", "pulses", "power_w", "interval_s"}
    return (
        entry["ts"],
        round(v["energy_kwh"], 3),
        v["pulses"],
        None if "power_w" not in v else round(v["power_w"], 1),
        None if "interval_s" not in v else round(v["interval_s"], 3),
    )


def first_seen(entries: List[Dict[str, Any]]) -> List[Tuple]:
    """Entries in arrival order, a repeat (sent again after a lost
    acknowledgement, harmless to ThingsBoard) kept only the first time."""
    seen, out = set(), []
    for e in entries:
        key = normal(e)
        if key not in seen:
            seen.add(key)
            out.append(key)
    return out


def connects(server: Mosquitto) -> List[Tuple[str, str]]:
    """(client id, username) of each connect in the broker's log (read
    once it stopped: mosquitto buffers its stdout)."""
    assert server.proc is None
    return CONNECT_RE.findall(server.log())


@pytest.mark.slow
def test_device_api_with_an_outage_backlog_in_time_order(ws, tb, tmp_path):
    sub = Subscriber(tb.port)
    token = "A1b2C3d4E5f6G7h8"
    gaps = [0.25, 0.4, 0.3, 0.5]
    times = [T0]
    while len(times) < 48:
        times.append(times[-1] + gaps[len(times) % len(gaps)])
    replay = write_replay(tmp_path / "p.txt", times)
    ws.write(
        {"backend": "simulated"},
        SINKS=[
            {"type": "file", "path": str(ws.csv)},
            tb_sink(tb.port, token=token, client_id="flat7"),
        ],
        COMMIT_INTERVAL_S=1,  # the sink tries to write during the outage
    )
    proc = subprocess.Popen(
        power_cmd("--settings", str(ws.settings), "--replay", str(replay))
        + ["--nodaemon", "-q", "-v"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        telemetry = "v1/devices/me/telemetry"
        wait_for(lambda: len(sub.on(telemetry)) >= 3, timeout=30)
        tb.stop()  # an outage while the meter goes on
        time.sleep(3)
        tb.start()
        _, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    rows = read_csv(ws.csv)
    assert len(pulse_rows(rows)) == 48
    wait_for(lambda: sum(len(m) for m in sub.on(telemetry)) >= len(rows), timeout=20)
    sub.close()
    tb.stop()

    messages = sub.on(telemetry)
    assert all(isinstance(m, list) and m for m in messages)  # arrays of readings
    got = first_seen([e for m in messages for e in m])
    assert got == [normal(expected(r)) for r in rows]  # all, in time order
    assert [g[0] for g in got] == sorted(g[0] for g in got)
    # The outage was seen, and its backlog came as one array of readings
    # with their original timestamps (pulses come every 0.25 to 0.5 s).
    assert "sink thingsboard: ThingsBoard 127.0.0.1" in err
    assert "sink thingsboard: recovered after" in err
    assert max(len(m) for m in messages) >= 5
    assert got[0][0] == int(T0 * 1000)
    # ThingsBoard's authentication: the token is the username, once per
    # connection (before and after the outage), under the client id given.
    assert connects(tb) == [("flat7", token), ("flat7", token)]
    publishes = PUBLISH_RE.findall(tb.log())
    assert {(c, q, t) for c, q, t in publishes if c == "flat7"} == {
        ("flat7", "1", telemetry)
    }
    assert token not in err
    assert "refused" not in err


def test_gateway_api_for_two_meters_over_one_connection(ws, tb, tmp_path):
    sub = Subscriber(tb.port)
    replays = {
        "house": write_replay(tmp_path / "h.txt", [T0 + i * 2 for i in range(30)]),
        "heatpump": write_replay(
            tmp_path / "w.txt", [T0 + 0.5 + i * 3 for i in range(20)]
        ),
    }
    ws.write(
        METERS=[
            {"name": m, "input": {"backend": "replay", "path": str(p), "speed": 0}}
            for m, p in replays.items()
        ],
        SINKS=[
            {"type": "file", "path": str(ws.csv)},
            tb_sink(
                tb.port, token="GW-token-9", gateway=True, device_name="flat7 {meter}"
            ),
        ],
    )
    res = ws.power("--nodaemon", "-q")
    assert res.returncode == 0, res.stderr
    rows = read_csv(ws.csv)
    devices = {"house": "flat7 house", "heatpump": "flat7 heatpump"}

    def complete():
        got = sum(len(v) for m in sub.on("v1/gateway/telemetry") for v in m.values())
        return got >= len(rows)

    wait_for(complete, timeout=20)
    wait_for(lambda: len(sub.on("v1/gateway/disconnect")) == 2)
    sub.close()
    tb.stop()
    assert sorted(m["device"] for m in sub.on("v1/gateway/connect")) == sorted(
        devices.values()
    )
    assert sorted(m["device"] for m in sub.on("v1/gateway/disconnect")) == sorted(
        devices.values()
    )
    for meter, device in devices.items():
        entries = [e for m in sub.on("v1/gateway/telemetry") for e in m.get(device, [])]
        want = [normal(expected(r)) for r in rows if r["meter"] == meter]
        assert first_seen(entries) == want
    for m in sub.on("v1/gateway/telemetry"):
        assert set(m) <= set(devices.values())
        assert all(isinstance(v, list) and v for v in m.values())
    # One connection for both meters, with the gateway's token.
    assert [u for _, u in connects(tb)] == ["GW-token-9"]
    assert "GW-token-9" not in res.stderr


def test_one_token_per_meter_one_connection_each(ws, tb, tmp_path):
    sub = Subscriber(tb.port)
    tokens = {"house": "tok-house-1", "garage": "tok-garage-2"}
    ws.write(
        METERS=[
            {
                "name": m,
                "input": {
                    "backend": "replay",
                    "path": str(write_replay(tmp_path / f"{m}.txt", times)),
                    "speed": 0,
                },
            }
            for m, times in (
                ("house", [T0 + i for i in range(25)]),
                ("garage", [T0 + 0.3 + i * 4 for i in range(10)]),
            )
        ],
        SINKS=[
            {"type": "file", "path": str(ws.csv)},
            tb_sink(tb.port, tokens=tokens),
        ],
    )
    res = ws.power("--nodaemon", "-q")
    assert res.returncode == 0, res.stderr
    rows = read_csv(ws.csv)
    topic = "v1/devices/me/telemetry"
    wait_for(lambda: sum(len(m) for m in sub.on(topic)) >= len(rows), timeout=20)
    sub.close()
    tb.stop()
    by_meter = {
        m: {normal(expected(r)) for r in rows if r["meter"] == m} for m in tokens
    }
    # Each message belongs to one device, whole.
    for message in sub.on(topic):
        keys = {normal(e) for e in message}
        assert any(keys <= want for want in by_meter.values())
    got = {normal(e) for m in sub.on(topic) for e in m}
    assert got == by_meter["house"] | by_meter["garage"]
    users = dict(connects(tb))
    assert sorted(users.values()) == sorted(tokens.values())
    assert len(users) == 2  # distinct client ids
    senders = {c for c, _, t in PUBLISH_RE.findall(tb.log()) if t == topic}
    assert {users[c] for c in senders} == set(tokens.values())
    for token in tokens.values():
        assert token not in res.stderr


@pytest.mark.parametrize(
    "sink, meters, message",
    [
        ({}, 1, "SINKS[0]['token'] is missing: expected the ThingsBoard device's"),
        ({"token": "secret-tok"}, 2, "give each meter its own device in 'tokens'"),
        (
            {"tokens": {"m0": "secret-tok"}},
            2,
            "expected one access token for each meter (m0, m1); missing m1",
        ),
        ({"gateway": True}, 2, "set 'token' to the gateway device's access token"),
        (
            {"gateway": True, "token": "secret-tok", "device_name": "pi"},
            2,
            "two meters would share a device; put {meter} in it",
        ),
        ({"token": "secret-tok", "qos": 2}, 1, "['qos'] = 2: expected one of 0, 1"),
        ({"tokens": {"m0": 5}}, 1, "SINKS[0]['tokens'] = '***': expected a dict"),
    ],
)
def test_bad_thingsboard_settings_exit_2(ws, sink, meters, message):
    ws.write(
        METERS=[
            {"name": f"m{i}", "input": {"backend": "simulated"}} for i in range(meters)
        ],
        SINKS=[{"type": "thingsboard", **sink}],
    )
    res = ws.power("--nodaemon")
    assert res.returncode == 2, res.stderr
    assert message in res.stderr
    assert "secret-tok" not in res.stderr
    assert "Traceback" not in res.stderr


def test_payloads_stay_below_thingsboards_message_limit():
    from core.meter import Reading
    from sinks.thingsboard import MAX_PAYLOAD_BYTES, pack, telemetry

    readings = [
        Reading(T0 + i, "house", i, i / 1000, 1234.5678, 2.5) for i in range(3000)
    ]
    entries = [(i, "house", telemetry(r)) for i, r in enumerate(readings)]
    for gateway in (False, True):
        messages = pack(entries, gateway)
        assert len(messages) > 1
        assert all(len(p.encode()) <= MAX_PAYLOAD_BYTES for p, _ in messages)
        assert [i for _, idx in messages for i in idx] == list(range(3000))
        items = [
            e
            for p, _ in messages
            for e in (json.loads(p)["house"] if gateway else json.loads(p))
        ]
        assert items == [telemetry(r) for r in readings]


def test_a_refused_token_is_logged_once_without_the_token(ws, tmp_path):
    # As ThingsBoard refuses an unknown access token; here a broker that
    # admits nobody. The file sink goes on; the token never reaches the log.
    broker = Mosquitto(tmp_path / "closed", extra=["allow_anonymous false"])
    broker.start()
    try:
        ws.write(
            {"backend": "simulated"},
            SINKS=[
                {"type": "file", "path": str(ws.csv)},
                tb_sink(broker.port, token="Wrong-Token-55"),
            ],
            DRAIN_TIMEOUT_S=2,
        )
        replay = write_replay(tmp_path / "p.txt", [T0 + i for i in range(20)])
        res = ws.power("--replay", str(replay), "--speed", "0", "--nodaemon", "-v")
    finally:
        broker.stop()
    assert res.returncode == 1  # the ThingsBoard sink could not drain
    errors = [line for line in res.stderr.splitlines() if " ERROR " in line]
    refused = [line for line in errors if "refused the connection" in line]
    assert len(refused) == 1, errors
    assert "ThingsBoard 127.0.0.1" in refused[0]
    assert "Not authorized" in refused[0] or "not authorised" in refused[0].lower()
    assert "Wrong-Token-55" not in res.stderr
    assert len(pulse_rows(read_csv(ws.csv))) == 20
