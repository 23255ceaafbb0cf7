"""The MQTT sink against a real mosquitto (Debian's package), read back with
mosquitto_sub, including TLS with certificates made by the test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Dict, List

import pytest
from conftest import pid_alive, pulse_rows, read_csv, wait_for, write_replay
from servers import Mosquitto, require

T0 = 1_700_000_000.0


def retained(
    port: int, topic: str = "#", extra: List[str] = (), timeout: float = 1
) -> Dict[str, str]:
    """Every retained message under `topic`, as topic -> payload."""
    sub = require("mosquitto_sub", "mosquitto-clients")
    res = subprocess.run(
        [sub, "-h", "127.0.0.1", "-p", str(port), "-t", topic, "-v"]
        + ["--retained-only", "-W", str(timeout), *extra],
        capture_output=True,
        text=True,
        timeout=timeout + 10,
    )
    out = {}
    for line in res.stdout.splitlines():
        name, _, payload = line.partition(" ")
        out[name] = payload
    return out


@pytest.fixture
def broker(tmp_path):
    server = Mosquitto(tmp_path / "mqtt")
    server.start()
    yield server
    server.stop()


def mqtt_sink(port: int, **extra):
    sink = {
        "type": "mqtt",
        "host": "127.0.0.1",
        "port": port,
        "flush_interval_s": 0.2,
        "retry_max_s": 1,
    }
    sink.update(extra)
    return sink


def test_replay_publishes_state_availability_and_discovery(ws, broker, tmp_path):
    ws.write(
        {"backend": "simulated"},
        SINKS=[{"type": "file", "path": str(ws.csv)}, mqtt_sink(broker.port)],
    )
    replay = write_replay(tmp_path / "p.txt", [T0 + i * 2 for i in range(120)])
    res = ws.power("--replay", str(replay), "--speed", "0", "--nodaemon")
    assert res.returncode == 0, res.stderr

    msgs = retained(broker.port)
    state = json.loads(msgs["power/house/state"])
    assert state == {
        "time": "2023-11-14T22:17:18.000Z",
        "meter": "house",
        "pulses": 120,
        "energy_kwh": 0.12,
        "power_w": 1800.0,
        "interval_s": 2.0,
        "estimate": False,
    }
    assert msgs["power/house/availability"] == "offline"  # clean stop
    # The live power of the newest reading, for Home Assistant's power sensor.
    assert json.loads(msgs["power/house/power"]) == {
        "time": "2023-11-14T22:17:18.000Z",
        "power_w": 1800.0,
        "estimate": False,
    }

    power = json.loads(msgs["homeassistant/sensor/power_house/power/config"])
    energy = json.loads(msgs["homeassistant/sensor/power_house/energy/config"])
    assert power["device_class"] == "power"
    assert power["unit_of_measurement"] == "W"
    assert power["state_class"] == "measurement"
    assert energy["device_class"] == "energy"
    assert energy["unit_of_measurement"] == "kWh"
    assert energy["state_class"] == "total_increasing"
    # Power as the meter makes it (live); energy once committed, so that a
    # total Home Assistant saw never goes down after a crash.
    assert power["state_topic"] == "power/house/power"
    assert energy["state_topic"] == "power/house/state"
    for config in (power, energy):
        assert config["availability_topic"] == "power/house/availability"
        assert config["device"]["identifiers"] == ["power_house"]
        assert config["unique_id"].startswith("power_house_")
        assert config["value_template"].startswith("{{ value_json.")
        # No attributes from the state topic: a row per reading in HA.
        assert not any("attributes" in key for key in config)
    assert power["unique_id"] != energy["unique_id"]
    # Entity ids (default_entity_id; object_id stops working in Home
    # Assistant 2026.4 and is not sent).
    assert power["default_entity_id"] == "sensor.power_house_power"
    assert energy["default_entity_id"] == "sensor.power_house_energy"
    # The origin: Home Assistant's messages name power and its version.
    version = ws.power("--version").stdout.split()[-1]
    for config in (power, energy):
        assert "object_id" not in config
        assert config["origin"] == {"name": "power", "sw_version": version}


def test_discovery_off_and_custom_prefix(ws, broker, tmp_path):
    ws.write(
        {"backend": "simulated"},
        SINKS=[mqtt_sink(broker.port, prefix="home/elec", discovery_prefix=None)],
    )
    replay = write_replay(tmp_path / "p.txt", [T0 + i for i in range(5)])
    res = ws.power("--replay", str(replay), "--speed", "0", "--nodaemon")
    assert res.returncode == 0, res.stderr
    msgs = retained(broker.port)
    topics = {"state", "power", "availability"}
    assert set(msgs) == {f"home/elec/house/{topic}" for topic in topics}
    assert json.loads(msgs["home/elec/house/state"])["pulses"] == 5


def test_broker_restart_without_persistence_gets_everything_back(ws, broker):
    ws.write(
        {"backend": "simulated", "watts": 3600, "speed": 10, "seed": 5},
        SINKS=[mqtt_sink(broker.port)],
    )
    args = ("--pidfile", str(ws.pidfile), "--logfile", str(ws.logfile))
    assert ws.power(*args).returncode == 0
    pid = int(ws.pidfile.read_text())
    try:
        wait_for(lambda: len(retained(broker.port)) == 4, timeout=20)
        broker.stop()
        broker.start()

        def back():
            msgs = retained(broker.port)
            return (
                msgs.get("power/house/availability") == "online"
                and "homeassistant/sensor/power_house/power/config" in msgs
                and "homeassistant/sensor/power_house/energy/config" in msgs
                and "power/house/state" in msgs
            )

        wait_for(back, timeout=30)
    finally:
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not pid_alive(pid))
    assert retained(broker.port)["power/house/availability"] == "offline"


def test_last_will_marks_offline_after_kill_9(ws, broker):
    ws.write(
        {"backend": "simulated", "watts": 3600, "speed": 10},
        SINKS=[mqtt_sink(broker.port)],
    )
    args = ("--pidfile", str(ws.pidfile), "--logfile", str(ws.logfile))
    assert ws.power(*args).returncode == 0
    pid = int(ws.pidfile.read_text())
    wait_for(lambda: retained(broker.port).get("power/house/availability") == "online")
    os.kill(pid, signal.SIGKILL)
    wait_for(
        lambda: retained(broker.port).get("power/house/availability") == "offline",
        timeout=15,
    )


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(
        [require("openssl", "openssl"), *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def make_ca(tmp: Path, name: str) -> Path:
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.pem",
        cwd=tmp,
    )  # fmt: skip
    return tmp / f"{name}.pem"


def make_server_cert(tmp: Path, ca: str) -> Dict[str, str]:
    (tmp / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "server.key", "-out", "server.csr",
        cwd=tmp,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", f"{ca}.pem",
        "-CAkey", f"{ca}.key", "-CAcreateserial", "-days", "2",
        "-extfile", "san.cnf", "-out", "server.pem",
        cwd=tmp,
    )  # fmt: skip
    return {
        "ca": str(tmp / f"{ca}.pem"),
        "cert": str(tmp / "server.pem"),
        "key": str(tmp / "server.key"),
    }


@pytest.fixture
def tls_broker(tmp_path):
    certs = tmp_path / "certs"
    certs.mkdir()
    make_ca(certs, "test-ca")
    make_ca(certs, "other-ca")
    files = make_server_cert(certs, "test-ca")
    server = Mosquitto(tmp_path / "mqtt-tls", tls=files)
    server.start()
    server.certs = certs
    yield server
    server.stop()


def test_tls_with_the_right_ca(ws, tls_broker, tmp_path):
    ca = str(tls_broker.certs / "test-ca.pem")
    ws.write(
        {"backend": "simulated"},
        SINKS=[
            mqtt_sink(
                tls_broker.port,
                tls={"ca_certs": ca},
                username="house",
                password="mqtt-Secret-77",
            )
        ],
    )
    replay = write_replay(tmp_path / "p.txt", [T0 + i for i in range(10)])
    res = ws.power("--replay", str(replay), "--speed", "0", "--nodaemon", "-v")
    assert res.returncode == 0, res.stderr
    msgs = retained(tls_broker.port, extra=["--cafile", ca])
    assert json.loads(msgs["power/house/state"])["pulses"] == 10
    assert "mqtt-Secret-77" not in res.stderr + res.stdout


def test_tls_with_a_wrong_ca_is_logged_and_other_sinks_go_on(ws, tls_broker, tmp_path):
    wrong = str(tls_broker.certs / "other-ca.pem")
    ws.write(
        {"backend": "simulated"},
        SINKS=[
            {"type": "file", "path": str(ws.csv)},
            mqtt_sink(tls_broker.port, tls={"ca_certs": wrong}),
        ],
        DRAIN_TIMEOUT_S=3,
    )
    replay = write_replay(tmp_path / "p.txt", [T0 + i for i in range(25)])
    res = ws.power("--replay", str(replay), "--speed", "0", "--nodaemon")
    assert res.returncode == 1
    errors = [line for line in res.stderr.splitlines() if " ERROR " in line]
    assert sum("TLS failed" in line for line in errors) == 1
    assert "CERTIFICATE_VERIFY_FAILED" in res.stderr or "verify" in res.stderr
    assert len(pulse_rows(read_csv(ws.csv))) == 25


def test_online_and_discovery_before_the_first_pulse(ws, broker):
    # A meter with no pulse (solar at night) is still online in Home
    # Assistant right after a start, with its sensors discovered.
    ws.write(
        {"backend": "simulated", "watts": 1, "speed": 1},  # one pulse an hour
        SINKS=[mqtt_sink(broker.port)],
    )
    args = ("--pidfile", str(ws.pidfile), "--logfile", str(ws.logfile))
    assert ws.power(*args).returncode == 0
    pid = int(ws.pidfile.read_text())
    try:

        def announced():
            msgs = retained(broker.port)
            return (
                msgs.get("power/house/availability") == "online"
                and "homeassistant/sensor/power_house/power/config" in msgs
            )

        wait_for(announced, timeout=15)
        assert "power/house/state" not in retained(broker.port)
    finally:
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not pid_alive(pid))
    assert retained(broker.port)["power/house/availability"] == "offline"


def test_estimates_are_marked_in_the_state_and_energy_stays_counted(
    ws, broker, tmp_path
):
    """Every state message says whether it is an estimate; the energy Home
    Assistant reads never moves without a pulse."""
    sub = require("mosquitto_sub", "mosquitto-clients")
    pub = require("mosquitto_pub", "mosquitto-clients")
    ws.write(
        {"backend": "simulated"}, SINKS=[mqtt_sink(broker.port)], COMMIT_INTERVAL_S=1
    )
    topic = ["-h", "127.0.0.1", "-p", str(broker.port), "-t", "power/house/state"]
    # A retained probe comes back first: then the listener is subscribed.
    subprocess.run([pub, *topic, "-r", "-m", "{}"], check=True, timeout=10)
    listener = subprocess.Popen([sub, *topic], stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline().strip() == "{}"
        times = [T0 + i * 2 for i in range(10)] + [T0 + 18 + 60, T0 + 18 + 62]
        replay = write_replay(tmp_path / "p.txt", times)
        # Paced, so the sink (which sends a batch's latest) sees the gap.
        res = ws.power("--replay", str(replay), "--speed", "10", "--nodaemon")
        assert res.returncode == 0, res.stderr
    finally:
        listener.terminate()
        out, _ = listener.communicate(timeout=10)
    states = [json.loads(line) for line in out.splitlines()]
    pulses = [s for s in states if not s["estimate"]]
    assert pulses[-1]["pulses"] == 12
    assert all(s["energy_kwh"] == s["pulses"] / 1000 for s in pulses)
    # 1800 W every 2 s, then a 60 s gap: the bound falls by a fifth up to
    # 15 times (2 s / 0.8 ** 15 = 57 s), at most 1440 W, at least 60 W.
    estimates = [s for s in states if s["estimate"]]
    assert len(estimates) >= 2  # one commit a second: 6 s of gap
    assert all(s["pulses"] == 10 and s["energy_kwh"] == 0.01 for s in estimates)
    powers = [s["power_w"] for s in estimates]
    assert powers == sorted(powers, reverse=True)
    assert powers[0] <= 1440.0 and powers[-1] > 3600 / 60
