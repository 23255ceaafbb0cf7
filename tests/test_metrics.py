"""The Prometheus exporter, scraped by Debian's real prometheus and read
back over Prometheus's HTTP API; /healthz; start-up errors."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
from conftest import power_cmd, read_csv, wait_for, write_replay
from servers import Prometheus, free_port

T0 = 1_700_000_000.0
PPK = 1000


def get(url: str) -> Tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except urllib.error.URLError as exc:  # not listening (yet)
        return 0, str(exc.reason)


def samples(text: str) -> Dict[str, float]:
    """Text exposition format -> {'name{labels}': value}."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def start(ws, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        power_cmd("--settings", str(ws.settings), "--nodaemon", "-q", *args),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    return err


@pytest.mark.slow
def test_prometheus_increase_matches_the_replayed_energy(ws, tmp_path):
    port = free_port()
    prom = Prometheus(tmp_path / "prom", [f"127.0.0.1:{port}"])
    prom.start()
    proc = None
    try:
        # A long first gap, so Prometheus scrapes between the first pulse
        # (which only starts the count) and the second; then varied loads.
        gaps = [6.0] + [0.8, 1.2, 1.8, 1.0, 2.4, 0.9] * 3
        times = [T0]
        for gap in gaps:
            times.append(times[-1] + gap)
        n = len(times)
        replay = write_replay(tmp_path / "pulses.txt", times)
        ws.write(
            METERS=[
                {
                    "name": "house",
                    "pulses_per_kwh": PPK,
                    # Pulses only: the power gauge is then the last pulse's.
                    "estimate_fall": 0,
                    "input": {"backend": "replay", "path": str(replay), "speed": 2},
                },
                # A live meter beside the replay keeps the daemon serving
                # after the replay's last pulse, for the last scrapes.
                {"name": "shed", "input": {"backend": "simulated", "watts": 1}},
            ],
            METRICS={"listen": f"127.0.0.1:{port}"},
        )
        # Prometheus takes a few seconds to pick up a target: wait until it
        # scrapes the port (down, for now) before the replay begins.
        wait_for(lambda: prom.query('up{job="power"}'), timeout=60, interval=0.2)
        proc = start(ws)
        energy = 'power_meter_energy_kwh_total{meter="house"}'

        def latest() -> float:
            result = prom.query(energy)
            return float(result[0]["value"][1]) if result else -1.0

        wait_for(lambda: latest() == pytest.approx(n / PPK), timeout=90, interval=0.5)
        series = prom.query(energy + "[10m]")
        assert len(series) == 1
        points: List[Tuple[float, float]] = [
            (float(t), float(v)) for t, v in series[0]["values"]
        ]
        # The sample between the first and second pulse, and the first one
        # that holds every pulse.
        one = [t for t, v in points if v == pytest.approx(1 / PPK)]
        assert one, f"no scrape between the first two pulses: {points}"
        t_start = one[-1]
        t_end = next(t for t, v in points if v == pytest.approx(n / PPK))
        window_ms = round((t_end - t_start) * 1000)
        result = prom.query(f"increase({energy}[{window_ms}ms])", at=t_end)
        # The energy of the replayed span: n - 1 intervals of 1/PPK kWh.
        assert float(result[0]["value"][1]) == pytest.approx((n - 1) / PPK)

        def house_rows():
            return [r for r in read_csv(ws.csv) if r["meter"] == "house"]

        rows = wait_for(lambda: len(house_rows()) == n and house_rows())
        last_power = float(rows[-1]["power_w"])
        assert last_power == pytest.approx(3600 * 1000 / (PPK * gaps[-1]), rel=1e-3)
        power = prom.query('power_meter_power_watts{meter="house"}', at=t_end)
        assert float(power[0]["value"][1]) == pytest.approx(last_power, rel=1e-3)
        pulses = prom.query('power_meter_pulses_total{meter="house"}', at=t_end)
        assert float(pulses[0]["value"][1]) == n
        last = prom.query(
            'power_meter_last_pulse_timestamp_seconds{meter="house"}', at=t_end
        )
        assert float(last[0]["value"][1]) == pytest.approx(times[-1], abs=0.002)
        # The live meter has its series too, with no pulse yet.
        shed = prom.query('power_meter_pulses_total{meter="shed"}', at=t_end)
        assert float(shed[0]["value"][1]) == 0
        up = prom.query('up{job="power"}', at=t_end)
        assert float(up[0]["value"][1]) == 1
        backlog = prom.query('power_sink_backlog_readings{sink="file"}', at=t_end)
        assert len(backlog) == 1
        stop(proc)
        proc = None
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        prom.stop()


def test_metrics_names_labels_and_healthz_for_a_failing_sink(ws, tmp_path):
    port = free_port()
    dead = free_port()  # nothing listens there
    ws.write(
        {
            "backend": "simulated",
            "watts": 3600,
            "speed": 20,
            "seed": 3,
            "ghosts_per_hour": 1800,  # about every other pulse
        },
        SINKS=[
            {"type": "file", "path": str(ws.csv)},
            {
                "type": "influxdb",
                "host": "127.0.0.1",
                "port": dead,
                "password": "s3cret-pw",
                "retry_max_s": 1,
            },
        ],
        METRICS={"listen": str(port), "max_sink_delay_s": 2},
    )
    args = ("--pidfile", str(ws.pidfile), "--logfile", str(ws.logfile))
    res = ws.power(*args)
    assert res.returncode == 0, res.stderr
    try:
        url = f"http://127.0.0.1:{port}"

        def failing():
            # The first reading is committed at once, so for an instant it
            # may have waited longer than the streak (the client's own
            # retries) has run: unhealthy for that reason first.
            code, text = get(url + "/healthz")
            assert code == 200 or "influxdb" in text, text
            return text if "has been failing for" in text else None

        reason = wait_for(failing, timeout=30, interval=0.2)
        assert reason.startswith("sink influxdb has been failing for"), reason
        assert "file" not in reason
        code, text = get(url + "/metrics")
        assert code == 200
        values = samples(text)
        assert values['power_sink_failing{sink="influxdb"}'] == 1
        assert values['power_sink_failing{sink="file"}'] == 0
        assert values['power_sink_backlog_readings{sink="influxdb"}'] > 0
        assert 'power_sink_last_write_timestamp_seconds{sink="file"}' in values
        assert 'power_sink_last_write_timestamp_seconds{sink="influxdb"}' not in values
        assert values['power_meter_pulses_total{meter="house"}'] > 0
        assert values['power_meter_glitches_total{meter="house"}'] == 0
        assert values['power_meter_rejected_total{meter="house"}'] == 0
        assert values['power_meter_ghosts_total{meter="house"}'] > 0
        assert values["power_journal_size_bytes"] > 0
        assert values["power_monitor_up"] == 1
        assert "# TYPE power_meter_energy_kwh_total counter" in text
        assert "# TYPE power_meter_power_watts gauge" in text
        assert "s3cret-pw" not in text
        # OpenMetrics when a scraper asks for it, as Prometheus may.
        req = urllib.request.Request(
            url + "/metrics",
            headers={"Accept": "application/openmetrics-text; version=1.0.0"},
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.headers["Content-Type"].startswith("application/openmetrics-text")
            assert r.read().decode().rstrip().endswith("# EOF")
        assert get(url + "/nothing")[0] == 404
    finally:
        assert ws.power("--kill", *args).returncode == 0
    assert "s3cret-pw" not in ws.log()


def test_healthz_ok_and_stalled_scrapers_hold_nothing(ws, tmp_path):
    port = free_port()
    ws.write(
        {"backend": "simulated", "watts": 3600, "speed": 10, "seed": 1},
        METRICS={"listen": f"127.0.0.1:{port}"},
    )
    proc = start(ws)
    stalled: List[socket.socket] = []
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: get(url + "/healthz") == (200, "ok\n"), timeout=30)
        # Scrapers that connect and never send a request.
        for _ in range(3):
            stalled.append(socket.create_connection(("127.0.0.1", port)))
        code, text = get(url + "/metrics")
        assert code == 200
        before = samples(text)['power_meter_pulses_total{meter="house"}']
        # Many more than are served at once: pulses and sinks go on.
        for _ in range(30):
            try:
                stalled.append(socket.create_connection(("127.0.0.1", port)))
            except OSError:
                break
        rows = len(read_csv(ws.csv)) if ws.csv.exists() else 0
        wait_for(lambda: len(read_csv(ws.csv)) > rows + 5, timeout=30)
        stop(proc)  # stops at once, stalled connections or not
        proc = None
        last = read_csv(ws.csv)[-1]
        assert int(last["pulses"]) > before
    finally:
        for s in stalled:
            s.close()
        if proc is not None:
            proc.kill()
            proc.wait()


def test_idle_and_slow_clients_never_lock_out_the_scraper(ws, tmp_path):
    """50 idle connections and 20 sending a byte a second (a slow-loris),
    then more than the server holds at once: /metrics and /healthz still
    answer a new client at once, every time."""
    import threading

    port = free_port()
    ws.write(
        {"backend": "simulated", "watts": 3600, "speed": 10, "seed": 1},
        METRICS={"listen": f"127.0.0.1:{port}"},
    )
    proc = start(ws)
    held: List[socket.socket] = []
    done = threading.Event()

    def trickle(sock: socket.socket) -> None:
        request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n"
        for byte in request:
            if done.wait(1.0):
                return
            try:
                sock.send(bytes([byte]))
            except OSError:
                return  # the server dropped it: as it should

    slow = []
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: get(url + "/healthz") == (200, "ok\n"), timeout=30)
        for _ in range(50):
            held.append(socket.create_connection(("127.0.0.1", port)))
        for _ in range(20):
            sock = socket.create_connection(("127.0.0.1", port))
            held.append(sock)
            slow.append(threading.Thread(target=trickle, args=(sock,), daemon=True))
            slow[-1].start()
        for _ in range(5):
            started = time.monotonic()
            code, text = get(url + "/metrics")
            assert code == 200 and "power_meter_pulses_total" in text
            assert get(url + "/healthz") == (200, "ok\n")
            assert time.monotonic() - started < 3.0
        # Beyond what the server holds at once: the oldest make room.
        for _ in range(250):
            held.append(socket.create_connection(("127.0.0.1", port)))
        code, _ = get(url + "/metrics")
        assert code == 200
        stop(proc)  # stops at once, whatever the clients do
        proc = None
    finally:
        done.set()
        for s in held:
            s.close()
        if proc is not None:
            proc.kill()
            proc.wait()


def test_port_in_use_is_refused_before_forking(ws, tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        ws.write(METRICS={"listen": f"127.0.0.1:{port}"})
        res = ws.power("--pidfile", str(ws.pidfile), "--logfile", str(ws.logfile))
        assert res.returncode == 1
        assert f"port {port} is in use by another program" in res.stderr
        assert "METRICS['listen']" in res.stderr
        assert "Traceback" not in res.stderr
        assert not ws.pidfile.exists()
        assert not (ws.data / "journal.sqlite3").exists()
    finally:
        busy.close()


@pytest.mark.parametrize(
    "metrics, expected",
    [
        ("127.0.0.1:9464", "METRICS = '127.0.0.1:9464': expected None (off) or a dict"),
        ({"listen": "127.0.0.1:99999"}, "the port must be from 1 to 65535"),
        ({"listen": "127.0.0.1"}, "expected 'HOST:PORT'"),
        ({"listen": True}, "expected 'HOST:PORT'"),
        ({"listn": ":9464"}, "METRICS['listn']: unknown setting"),
        ({"max_sink_delay_s": 0}, "METRICS['max_sink_delay_s'] = 0: expected a number"),
        ({"listen": "no-such-host.invalid:9464"}, "unknown host"),
        ({"listen": "192.0.2.1:9464"}, "name an address of this machine"),
    ],
)
def test_bad_metrics_settings_exit_2(ws, metrics, expected):
    ws.write(METRICS=metrics)
    res = ws.power("--nodaemon")
    assert res.returncode == 2, res.stderr
    assert expected in res.stderr
    assert "Traceback" not in res.stderr
    assert not Path(ws.data / "journal.sqlite3").exists()


def test_metrics_off_by_default(ws):
    import config.settings

    settings = config.settings.load(str(ws.settings))
    assert settings.metrics is None
    ws.write(METRICS={})
    settings = config.settings.load(str(ws.settings))
    assert (settings.metrics.host, settings.metrics.port) == ("127.0.0.1", 9464)
    ws.write(METRICS={"listen": ":9100"})
    assert config.settings.load(str(ws.settings)).metrics.where == "127.0.0.1:9100"
    ws.write(METRICS={"listen": "[::1]:9100"})
    assert config.settings.load(str(ws.settings)).metrics.where == "[::1]:9100"
    ws.write(METRICS={"listen": "0.0.0.0:9100"})
    assert config.settings.load(str(ws.settings)).metrics.host == "0.0.0.0"


def test_healthz_names_a_sink_whose_readings_wait_too_long(ws):
    # Not failing, just slow: a flush interval far beyond the allowed delay.
    port = free_port()
    ws.write(
        {"backend": "simulated", "watts": 3600, "speed": 20, "seed": 2},
        SINKS=[{"type": "file", "path": str(ws.csv), "flush_interval_s": 600}],
        METRICS={"listen": f"127.0.0.1:{port}", "max_sink_delay_s": 1},
    )
    proc = start(ws)
    try:
        url = f"http://127.0.0.1:{port}"

        def unhealthy():
            code, text = get(url + "/healthz")
            return text if code == 503 else None

        reason = wait_for(unhealthy, timeout=30, interval=0.2)
        assert re.fullmatch(
            r"sink file has \d+ readings waiting, unwritten for \d+ s\n", reason
        ), reason
        values = samples(get(url + "/metrics")[1])
        assert values['power_sink_failing{sink="file"}'] == 0
        assert values['power_sink_backlog_readings{sink="file"}'] > 0
    finally:
        stop(proc)


def test_energy_is_rounded_as_every_other_sink_rounds_it(ws, tmp_path):
    """An offset of 12345.6 and 3 pulses: 12345.603, never the float sum
    12345.603000000001."""
    meter = {"name": "house", "pulses_per_kwh": 1000, "energy_offset_kwh": 12345.6}
    ws.write({"backend": "simulated"}, METER=meter)
    replay = write_replay(tmp_path / "three.txt", [T0, T0 + 1, T0 + 2])
    res = ws.power("--replay", str(replay), "--speed", "0", "--nodaemon", "-q")
    assert res.returncode == 0, res.stderr
    port = free_port()
    ws.write(  # a pulse an hour: none while the test looks
        {"backend": "simulated", "watts": 1, "speed": 1},
        METER=meter,
        METRICS={"listen": f"127.0.0.1:{port}"},
    )
    proc = start(ws)
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        key = 'power_meter_energy_kwh_total{meter="house"}'
        text = wait_for(lambda: key in get(url)[1] and get(url)[1], timeout=30)
        line = next(x for x in text.splitlines() if x.startswith(key))
        assert line == key + " 12345.603", line
    finally:
        stop(proc)
