"""The register inputs through the real daemon: power.py started by its CLI
reads a real pseudo-terminal as it would /dev/ttyUSB0, while the test
plays the meter on the other side; the readings in the CSV, a real
InfluxDB and a real Mosquitto equal the registers sent; the cable pulled
and plugged back resumes without a restart and without a duplicate."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import meterframes as mf
import pytest
from conftest import power_cmd, read_csv, run_power, wait_for, write_settings
from serialmeter import MeterPort, start_daemon
from servers import Mosquitto, free_port
from test_mqtt import retained


@pytest.fixture
def mosquitto(tmp_path):
    server = Mosquitto(tmp_path / "mqtt")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def port(tmp_path):
    p = MeterPort(tmp_path / "ttyUSB0")
    yield p
    p.close()


def settings_for(tmp_path: Path, input_: dict, **extra) -> Path:
    names = {
        "METER": {"name": "grid"},
        "INPUT": input_,
        "DATA_DIR": str(tmp_path / "data"),
        "SINKS": [{"type": "file", "path": str(tmp_path / "data" / "power.csv")}],
        "COMMIT_INTERVAL_S": 0,
    }
    names.update(extra)
    if "METERS" in extra:  # the several-meters form replaces these two
        del names["METER"], names["INPUT"]
    return write_settings(tmp_path / "settings.py", **names)


def rows_of(tmp_path: Path, meter: str = "grid"):
    path = tmp_path / "data" / "power.csv"
    if not path.exists():
        return []
    return [r for r in read_csv(path) if r["meter"] == meter]


def stop(proc) -> str:
    proc.send_signal(signal.SIGTERM)
    proc.wait(10)
    return Path(proc.args[3]).with_suffix(".out").read_text()


def test_sml_register_to_csv_through_errors_and_a_pulled_cable(tmp_path, port):
    s = settings_for(
        tmp_path, {"backend": "sml", "device": str(port.link), "every_s": 0}
    )
    proc = start_daemon(s)
    out = s.with_suffix(".out")
    sent = []
    wh = 12_345_678.9

    def send(n: int) -> None:
        nonlocal wh
        for _ in range(n):
            time.sleep(0.1)  # the meter's cadence (faster than a real one's)
            wh += 0.5  # under 18 kW at that cadence: plausible
            sent.append(wh)
            port.send(mf.sml_file(wh, 5_000.0 + len(sent), -250 + len(sent)))
            count = len(sent)
            wait_for(lambda: len(rows_of(tmp_path)) >= count - 1, 20)  # noqa: B023

    try:
        wait_for(lambda: port.opened_by(proc.pid), timeout=20)
        send(4)
        # A frame with a CRC error, garbage, and a frame cut short: counted,
        # never a reading.
        broken = bytearray(mf.sml_file(wh + 1, 1.0, 1))
        broken[50] ^= 0xFF
        port.send(bytes(broken) + b"\x00garbage\xff" * 20 + mf.sml_file(wh, 1, 1)[:60])
        send(2)
        port.unplug()
        wait_for(lambda: "went away" in out.read_text(), 20)
        port.plug()
        wait_for(lambda: port.opened_by(proc.pid), timeout=30)
        send(3)
    finally:
        log = stop(proc)
    rows = rows_of(tmp_path)
    # Each register once, in order: the first frame waited for the second.
    assert [float(r["energy_kwh"]) for r in rows] == pytest.approx(
        [w / 1000 for w in sent[1:]]
    )
    assert [r["power_w"] for r in rows] == [str(-250 + i) for i in range(2, 10)]
    assert [float(r["export_kwh"]) for r in rows] == pytest.approx(
        [(5_000.0 + i) / 1000 for i in range(2, 10)]
    )
    assert all(r["volume_m3"] == "" for r in rows)
    assert log.count("went away") == 1  # one line for the streak
    assert "port open again" in log
    status = run_power("--settings", str(s), "--status").stdout
    assert "frames of grid kept out: 2 unusable" in status, status
    assert f"export {(5_000.0 + 9) / 1000:.3f} kWh" in status


def test_sml_meter_without_pin_whole_kwh_no_power(tmp_path, port):
    """A real DZG frame (smllib's fixture): whole kWh, no power."""
    s = settings_for(
        tmp_path, {"backend": "sml", "device": str(port.link), "every_s": 0}
    )
    proc = start_daemon(s)
    try:
        wait_for(lambda: port.opened_by(proc.pid), timeout=20)
        for _ in range(3):
            port.send(mf.SML_DZG)
        wait_for(lambda: len(rows_of(tmp_path)) >= 2, timeout=20)
    finally:
        stop(proc)
    rows = rows_of(tmp_path)
    assert {r["energy_kwh"] for r in rows} == {"13391"}
    assert {r["power_w"] for r in rows} == {""}
    assert {r["pulses"] for r in rows} == {"13391000"}


def test_p1_to_csv_influxdb_and_mqtt_with_gas(tmp_path, port, influx, mosquitto):
    broker = mosquitto
    metrics_port = free_port()
    s = settings_for(
        tmp_path,
        {"backend": "p1", "device": str(port.link), "every_s": 0, "gas_meter": "gas"},
        SINKS=[
            {"type": "file", "path": str(tmp_path / "data" / "power.csv")},
            {"type": "influxdb", "host": "127.0.0.1", "port": influx.port},
            {"type": "mqtt", "host": "127.0.0.1", "port": broker.port},
        ],
        METRICS={"listen": f"127.0.0.1:{metrics_port}"},
    )
    proc = start_daemon(s)
    telegrams = [
        ((1000.0 + i * 0.001, 500.0), (20.0, 10.0 + i * 0.002), (0.0, 1.5 + i / 100))
        for i in range(4)
    ]
    gas = [("240501110000S", 100.0), ("240501110000S", 100.0), ("240501120000S", 100.5)]
    try:
        wait_for(lambda: port.opened_by(proc.pid), timeout=20)
        for i, (imp, exp, kw) in enumerate(telegrams):
            port.send(mf.p1_telegram(imp, exp, kw, gas=gas[min(i, 2)]))
            wait_for(lambda n=i: len(rows_of(tmp_path)) >= n, timeout=20)
        wait_for(lambda: len(rows_of(tmp_path)) >= 3, timeout=20)
        wait_for(lambda: len(rows_of(tmp_path, "gas")) >= 1, timeout=20)
        wait_for(lambda: influx.count() >= 4, timeout=30)
        state = wait_for(
            lambda: (
                json.loads(
                    retained(broker.port, "power/grid/state").get(
                        "power/grid/state", "{}"
                    )
                ).get("pulses")
                == 1500003
                and retained(broker.port)
            ),
            timeout=30,
        )
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        scrape = urllib.request.urlopen(url, timeout=10).read().decode()
    finally:
        stop(proc)
    rows = rows_of(tmp_path)
    last = telegrams[-1]
    metrics = dict(
        line.rsplit(" ", 1) for line in scrape.splitlines() if not line.startswith("#")
    )
    exported = metrics['power_meter_export_kwh_total{meter="grid"}']
    assert float(exported) == pytest.approx(sum(last[1]))
    assert float(
        metrics['power_meter_energy_kwh_total{meter="grid"}']
    ) == pytest.approx(sum(last[0]))
    assert float(metrics['power_meter_volume_m3_total{meter="gas"}']) == 100.5
    assert 'power_meter_energy_kwh_total{meter="gas"}' not in metrics
    assert float(rows[-1]["energy_kwh"]) == pytest.approx(sum(last[0]))
    assert float(rows[-1]["export_kwh"]) == pytest.approx(sum(last[1]))
    assert float(rows[-1]["power_w"]) == pytest.approx(-last[2][1] * 1000)
    # The gas meter: the first capture is its base, the next a reading,
    # in m³ columns of its own, with the flow between the captures.
    (g,) = rows_of(tmp_path, "gas")
    assert (g["energy_kwh"], g["power_w"]) == ("", "")
    assert float(g["volume_m3"]) == 100.5 and float(g["flow_m3h"]) == 0.5
    points = influx.series("SELECT * FROM power WHERE meter = 'grid'")
    assert points[-1]["export_kwh"] == pytest.approx(sum(last[1]))
    assert points[-1]["energy_kwh"] == pytest.approx(sum(last[0]))
    (gp,) = influx.series("SELECT * FROM power WHERE meter = 'gas'")
    assert gp["volume_m3"] == 100.5 and gp.get("energy_kwh") is None
    grid_state = json.loads(state["power/grid/state"])
    assert grid_state["export_kwh"] == pytest.approx(sum(last[1]))
    export = json.loads(state["homeassistant/sensor/power_grid/export/config"])
    assert export["unique_id"].endswith("_export")
    assert (export["device_class"], export["state_class"]) == (
        "energy",
        "total_increasing",
    )
    assert export["value_template"] == "{{ value_json.export_kwh }}"
    volume = json.loads(state["homeassistant/sensor/power_gas/volume/config"])
    assert (volume["device_class"], volume["unit_of_measurement"]) == ("gas", "m³")
    assert json.loads(state["power/gas/state"])["volume_m3"] == 100.5


def meter_answers(port: MeterPort, stop: threading.Event, totals: list) -> None:
    """A D0 meter in mode C: answers each sign-on with its identification,
    waits for the acknowledgement, sends its data block."""
    while not stop.is_set():
        got = port.receive(0.2)
        if b"/?!\r\n" not in got:
            continue
        port.send(mf.IDENT_C)
        ack = b""
        while not ack.endswith(b"\r\n") and not stop.is_set():
            ack += port.receive(0.2)
        assert ack == b"\x06050\r\n", ack
        total = totals.pop(0) if len(totals) > 1 else totals[0]
        port.send(mf.d0_block(mf.d0_lines(total, 2.5, 0.4)))


def test_d0_mode_c_sign_on_and_data_block(tmp_path, port):
    s = settings_for(
        tmp_path,
        {"backend": "d0", "device": str(port.link), "every_s": 0, "request_s": 1},
    )
    totals = [500.0, 500.001, 500.002, 500.003]
    done = threading.Event()
    meter = threading.Thread(target=meter_answers, args=(port, done, totals))
    meter.start()
    proc = start_daemon(s)
    try:
        wait_for(lambda: len(rows_of(tmp_path)) >= 3, timeout=40)
    finally:
        stop(proc)
        done.set()
        meter.join(5)
    rows = rows_of(tmp_path)
    assert [float(r["energy_kwh"]) for r in rows[:3]] == [500.001, 500.002, 500.003]
    assert {r["export_kwh"] for r in rows} == {"2.5"}
    assert {r["power_w"] for r in rows} == {"400"}


def test_a_port_that_is_not_there_is_exit_2_at_start(tmp_path):
    s = settings_for(tmp_path, {"backend": "sml", "device": str(tmp_path / "ttyUSB9")})
    res = run_power("--settings", str(s), "--nodaemon")
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "no such device" in lines[0], res.stderr
    assert "Traceback" not in res.stderr


def test_register_settings_are_checked(tmp_path):
    s = settings_for(
        tmp_path,
        {"backend": "sml", "device": "/dev/ttyUSB0"},
        METER={"name": "grid", "pulses_per_kwh": 1000},
    )
    res = run_power("--settings", str(s), "--nodaemon")
    assert res.returncode == 2 and "reads the meter's own total" in res.stderr
    s = settings_for(tmp_path, {"backend": "d0", "device": "/dev/x", "mode": "Z"})
    res = run_power("--settings", str(s), "--nodaemon")
    assert res.returncode == 2 and "INPUT['mode'] = 'Z'" in res.stderr


def test_watch_shows_frames_obis_values_and_crc_errors(tmp_path, port):
    s = settings_for(tmp_path, {"backend": "sml", "device": str(port.link)})
    out = tmp_path / "watch.out"
    with open(out, "w") as f:
        proc = subprocess.Popen(
            power_cmd("--settings", str(s), "watch", "--seconds", "60"),
            stdout=f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        wait_for(lambda: port.opened_by(proc.pid), timeout=20)
        broken = bytearray(mf.sml_file(1_000_000.0, 5.0, 300))
        broken[40] ^= 0x10
        port.send(bytes(broken) + mf.sml_file(1_000_000.0, 5_000.0, -300))
        wait_for(lambda: "1-0:16.7.0*255 = -300 W" in out.read_text(), timeout=20)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
    text = out.read_text()
    assert "CRC error: frame dropped" in text
    assert "frame: import 1000.0000 kWh, export 5.0000 kWh, power -300 W" in text
    assert "1-0:1.8.0*255 = 1000.0000 kWh" in text
    assert "1 frames read, 1 unusable" in text
    assert proc.returncode == 0


def test_led_meter_drifts_from_its_register_warns_and_rebases(tmp_path, port):
    """An LED meter that misses two pulses in three, held against the SML
    register of the same meter: the drift is recorded as register readings
    of the LED meter (--status shows it), warned about once, and the LED's
    count re-based upward on the register."""
    t0 = time.time() + 1.0
    replay = tmp_path / "led.txt"
    replay.write_text("".join(f"{t0 + 0.5 * i:.3f}\n" for i in range(200)))
    s = settings_for(
        tmp_path,
        None,
        METERS=[
            {
                "name": "led",
                "input": {"backend": "replay", "path": str(replay), "speed": 1},
                "register_meter": "grid",
                "drift_check_s": 3,
                "drift_warn_pulses_per_day": 10,
                "auto_rebase": True,
            },
            {"name": "grid", "input": {"backend": "sml", "device": str(port.link)}},
        ],
    )
    proc = start_daemon(s)
    out = s.with_suffix(".out")
    wh = 5_000_000.0
    try:
        wait_for(lambda: port.opened_by(proc.pid), timeout=20)
        deadline = time.monotonic() + 60
        while "re-based on the register" not in out.read_text():
            assert time.monotonic() < deadline, out.read_text()
            wh += 3.0  # the register: 3 Wh in each half second the LED shows 1
            port.send(mf.sml_file(wh, None, 21600))
            time.sleep(0.5)  # the meter's cadence
        rebased = float(out.read_text().split("energy_kwh now ")[1].split()[0])
        # The LED's next pulses go on from the register.
        wait_for(
            lambda: float(rows_of(tmp_path, "led")[-1]["energy_kwh"]) >= rebased, 20
        )
        status = run_power("--settings", str(s), "--status").stdout
    finally:
        log = stop(proc)
    assert log.count("pulses missed against the register of grid") == 1, log
    assert "register led:" in status and "pulses missed" in status, status
    energy = [float(r["energy_kwh"]) for r in rows_of(tmp_path, "led")]
    assert energy == sorted(energy)  # re-based upward only: never down
    assert energy[-1] <= wh / 1000 + 0.002  # raised to the register, no more


def test_report_shows_import_export_and_gas(tmp_path):
    """The report from a real journal: a register meter's import and export
    per day, and a gas meter's m³ and flow."""
    import logging

    from core.journal import Journal, journal_path
    from core.meter import Reading

    s = settings_for(
        tmp_path,
        None,
        METERS=[
            {"name": "grid", "input": {"backend": "sml", "device": "/dev/ttyUSB0"}},
            {"name": "boiler", "kind": "gas", "input": {"backend": "simulated"}},
        ],
    )
    (tmp_path / "data").mkdir()
    journal = Journal(journal_path(str(tmp_path / "data")), logging.getLogger("t"))
    day = 1_714_564_800.0  # 2024-05-01 12:00 UTC
    for h in range(48):  # two days: 1 kWh in and 0.5 kWh out an hour
        t = day + 3600 * h
        journal.append(
            Reading(t, "grid", 1000 * h, float(h), 500.0, 3600.0, False, h / 2)
        )
        journal.append(Reading(t, "boiler", h, h / 100, 0.01, 3600.0))
    journal.commit()
    journal.close()
    res = run_power(
        "--settings", str(s), "report", "--by", "day", "--since", "2024-05-01",
        "--until", "2024-05-04",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    text = res.stdout
    assert "Meter grid: energy by day" in text and "export kWh" in text
    assert "Meter boiler: gas by day" in text and "m³" in text
    assert "peak flow: 0.010 m³/h" in text
    grid = text.split("Meter grid")[1]
    total = next(line for line in grid.splitlines() if line.startswith("total"))
    assert total.split()[1:3] == ["47.000", "23.500"]  # import, export
    csv_out = run_power(
        "--settings", str(s), "report", "--by", "day", "--since", "2024-05-01",
        "--until", "2024-05-04", "--csv",
    ).stdout  # fmt: skip
    header, *rows = csv_out.splitlines()
    assert header.endswith("export_kwh,volume_m3,peak_flow_m3h")
    assert any(r.startswith("2024-05-02,boiler,,") and ",0.240," in r for r in rows), (
        rows
    )


def test_each_sml_frame_is_live_while_the_journal_takes_one_every_every_s(
    tmp_path, port, mosquitto
):
    """A meter that sends every second is shown every second (the MQTT power
    topic), while every_s keeps the card's writes to one reading a period."""
    from test_live import Subscriber

    s = settings_for(
        tmp_path,
        {"backend": "sml", "device": str(port.link), "every_s": 3600},
        SINKS=[
            {"type": "file", "path": str(tmp_path / "data" / "power.csv")},
            {"type": "mqtt", "host": "127.0.0.1", "port": mosquitto.port},
        ],
    )
    watcher = Subscriber(mosquitto.port, ["power/grid/power"])
    proc = start_daemon(s)
    wh = 1_000_000.0
    powers = [400, 2_600, 2_650, -900, -850]  # the kettle, then the sun
    try:
        wait_for(lambda: port.opened_by(proc.pid), timeout=20)
        for i, watts in enumerate([100, *powers]):
            wh += 0.1  # the register's last digit: plausible however soon
            port.send(mf.sml_file(wh, 5_000.0, watts))
            if i:  # the first frame waits for the second to agree

                def shown(w=watts):
                    last = watcher.on("power/grid/power")[-1:]
                    return last and json.loads(last[0][1])["power_w"] == w

                wait_for(shown, 20)
    finally:
        stop(proc)
        watcher.close()
    seen = [json.loads(p)["power_w"] for _, p in watcher.on("power/grid/power")]
    assert seen == powers  # each once, in order
    assert len(rows_of(tmp_path)) <= 2  # the first and, at the stop, the last
