"""The web page (WEB) in a real browser, Debian's chromium driven by
Playwright, against a daemon started through the CLI; and its endpoints
under attack on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from typing import Dict, List, Tuple

import meterframes as mf
import pytest
from conftest import (
    Workspace,
    pid_alive,
    power_cmd,
    read_csv,
    wait_for,
    write_settings,
)
from serialmeter import MeterPort
from serialmeter import start_daemon as start_foreground
from servers import Influx, free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SECRET = "s3cret-Pa55word"


def fetch(url: str, timeout: float = 5) -> Tuple[int, Dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def start_daemon(ws: Workspace) -> int:
    res = ws.power("--pidfile", str(ws.pidfile))
    assert res.returncode == 0, res.stderr
    return int(ws.pidfile.read_text())


def stop_daemon(pid: int) -> None:
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not pid_alive(pid), timeout=20)


@pytest.fixture
def browser():
    if not os.path.exists(CHROMIUM):
        message = "chromium not found: sudo apt-get install chromium"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield b
        b.close()


class Console:
    """Every console error, failed request and uncaught error of a page."""

    def __init__(self, page) -> None:
        self.problems: List[str] = []
        page.on(
            "console",
            lambda m: (
                self.problems.append(f"console {m.type}: {m.text}")
                if m.type in ("error", "warning")
                else None
            ),
        )
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on(
            "requestfailed",
            lambda r: (
                self.problems.append(f"request failed: {r.url}")
                if not r.url.endswith("/events")  # closed with the page
                else None
            ),
        )


def settings(ws: Workspace, port: int, influx_port: int, **extra) -> None:
    ws.write(
        {"backend": "simulated", "watts": 7200, "speed": 1},
        SINKS=[
            {"type": "file", "path": str(ws.csv)},
            {
                "type": "influxdb",
                "port": influx_port,
                "username": "power",
                "password": SECRET,
                "retry_max_s": 1,
            },
        ],
        WEB={"listen": f"127.0.0.1:{port}", "tariff": 0.3, "currency": "EUR"},
        COMMIT_INTERVAL_S=2,
        **extra,
    )


def watts_shown(page) -> str:
    return page.locator('#meter-house [data-field="power"]').get_attribute("data-watts")


@pytest.mark.slow
def test_the_page_in_a_real_browser(ws, tmp_path, browser):
    """Power changes as pulses come, a failing sink shows as failing and
    then recovers, the sensor view shows widths, today's energy equals the
    report's for the day, and no console error."""
    port = free_port()
    influx = Influx(tmp_path / "influx")  # its port is known; started later
    settings(ws, port, influx.port)
    pid = start_daemon(ws)
    try:
        page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone
        console = Console(page)
        page.goto(f"http://127.0.0.1:{port}/")
        first = wait_for(lambda: watts_shown(page), timeout=20)
        wait_for(lambda: watts_shown(page) not in ("", first), timeout=20)
        # InfluxDB is not running: the sink shows as failing, with its error
        # and without its password.
        row = page.locator('#sinks tr[data-sink="influxdb"]')
        wait_for(lambda: row.locator("td.failing").count() == 1, timeout=20)
        assert "cannot connect" in row.inner_text()
        assert SECRET not in page.content()
        influx.start()
        try:
            wait_for(lambda: row.locator("td.healthy").count() == 1, timeout=40)
        finally:
            influx.stop()
        # The sensor: each flash judged, its width in the table and the
        # histogram (the simulated meter flashes for 50 ms).
        wait_for(lambda: "50.0 ms" in page.locator("#edges").inner_text(), 20)
        assert "pulse" in page.locator("#edges").inner_text()
        bar = page.locator('#histogram rect[data-bucket="50-100 ms"]')
        assert int(bar.get_attribute("data-count")) > 0
        # Today's energy as the page shows it, and when.
        text = page.locator('#meter-house [data-field="today"]').inner_text()
        shown_at = time.time()
        assert page.locator("#chart svg").count() == 1
        page.locator("#tab-month").click()
        wait_for(lambda: "last 30 days" in page.locator("#chart-caption").inner_text())
        assert console.problems == []
    finally:
        stop_daemon(pid)
    # The report for today counts the pulses the page counted, and those
    # made after it looked (the daemon ran on until stopped).
    res = ws.power("report", "--by", "day", "--csv")
    assert res.returncode == 0, res.stderr
    today = time.strftime("%Y-%m-%d")
    lines = [x for x in res.stdout.splitlines() if x.startswith(today)]
    assert lines, res.stdout
    report_kwh = float(lines[0].split(",")[2])
    later = sum(
        1
        for r in read_csv(ws.csv)
        if r["estimate"] != "1" and _epoch(r["time"]) > shown_at
    )
    shown = float(text.split()[0])
    assert report_kwh == pytest.approx(shown + later / 1000, abs=0.0011), (
        text,
        report_kwh,
        later,
    )


def _epoch(text: str) -> float:
    import calendar

    main, _, millis = text.rstrip("Z").partition(".")
    return (
        calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S"))
        + int(millis or 0) / 1000
    )


def stream_events(port: int, count: int, timeout: float = 20) -> List[dict]:
    """`count` reading events from /events, read with a plain socket."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sock.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        deadline = time.monotonic() + timeout
        while data.count(b"event: reading") < count and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"Content-Type: text/event-stream" in head
    events = []
    for block in body.split(b"\n\n"):
        if block.startswith(b"event: reading\ndata: "):
            events.append(json.loads(block.split(b"data: ", 1)[1]))
    return events


def test_the_endpoints_under_attack(ws, tmp_path):
    """50 idle and 20 slow connections do not stop the page or the event
    stream for a new client; what is not the page's answers 404; a secret in
    the settings appears in no response; event streams are bounded and a
    gone client's stream is dropped."""
    port = free_port()
    settings(ws, port, free_port())
    pid = start_daemon(ws)
    held: List[socket.socket] = []
    done = threading.Event()

    def trickle(sock: socket.socket) -> None:
        for byte in b"GET / HTTP/1.1\r\nHost: x\r\n":
            if done.wait(1.0):
                return
            try:
                sock.send(bytes([byte]))
            except OSError:
                return

    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: fetch(base + "/api/state")[0] == 200, timeout=20)
        for _ in range(50):
            held.append(socket.create_connection(("127.0.0.1", port)))
        for _ in range(20):
            sock = socket.create_connection(("127.0.0.1", port))
            held.append(sock)
            threading.Thread(target=trickle, args=(sock,), daemon=True).start()
        started = time.monotonic()
        code, headers, body = fetch(base + "/")
        assert code == 200 and b"<title>power</title>" in body
        assert headers["Content-Type"] == "text/html; charset=utf-8"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert len(stream_events(port, 2)) >= 2
        assert time.monotonic() - started < 10
        # Only the page's own files and routes.
        for path in (
            "/../src/power.py",
            "/%2e%2e/%2e%2e/etc/passwd",
            "/web/page/app.js",
            "/page/",
            "/app.js/../../settings.py",
            "/settings.py",
            "/static/",
            "//etc/passwd",
            "/api",
            "/api/",
        ):
            assert fetch(base + path)[0] == 404, path
        code, headers, _ = fetch(base + "/app.js")
        assert code == 200 and headers["Content-Type"].startswith("text/javascript")
        # No secret in any response.
        routes = ["/", "/app.js", "/style.css", "/api/state", "/api/sensor"]
        routes += ["/api/history?span=day", "/api/history?span=month"]
        for route in routes:
            code, headers, body = fetch(base + route)
            assert code == 200, route
            assert SECRET.encode() not in body and SECRET not in str(headers)
        state = json.loads(fetch(base + "/api/state")[2])
        assert state["sinks"][1]["last_error"], "the failing sink's error is shown"
        # Event streams are bounded: past the bound a clear 503, and a
        # stream whose client went away frees its place.
        streams = []
        for _ in range(16):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(12) == b"HTTP/1.1 200"
            streams.append(s)
        code, _, body = fetch(base + "/events")
        assert code == 503 and b"too many event streams" in body
        for s in streams:
            s.close()
        wait_for(lambda: len(stream_events(port, 1, timeout=5)) >= 1, timeout=20)
    finally:
        done.set()
        for s in held:
            s.close()
        stop_daemon(pid)


def test_web_is_off_by_default_and_its_mistakes_are_one_line(ws):
    import config.settings

    ws.write()
    assert config.settings.load(str(ws.settings)).web is None
    for web, expected in (
        ("yes", "WEB = 'yes': expected None (off) or a dict"),
        ({"listen": "nonsense"}, "WEB['listen'] = 'nonsense': expected 'HOST:PORT'"),
        ({"tariff": -1}, "WEB['tariff'] = -1: expected a number from 0 to 1000"),
        ({"currency": "<b>"}, "WEB['currency'] = '<b>': expected a short currency"),
        ({"port": 80}, "WEB['port']: unknown setting"),
    ):
        ws.write(WEB=web)
        res = ws.power("--nodaemon")
        assert res.returncode == 2, res.stderr
        assert expected in res.stderr, res.stderr
        assert "Traceback" not in res.stderr


def test_a_taken_web_port_is_refused_before_forking(ws):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        ws.write(WEB={"listen": f"127.0.0.1:{port}"})
        res = subprocess.run(
            power_cmd("--settings", str(ws.settings)),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert res.returncode == 1, res.stderr
    assert f"WEB['listen'] = '127.0.0.1:{port}'" in res.stderr
    assert "in use" in res.stderr and "Traceback" not in res.stderr


# Register inputs on the page: a real daemon reads a real pseudo-terminal as
# it would /dev/ttyUSB0 while the test plays the meter (tests/serialmeter.py).


@pytest.fixture
def serial(tmp_path):
    p = MeterPort(tmp_path / "ttyUSB0")
    yield p
    p.close()


def register_settings(tmp_path, web_port: int, input_: dict):
    return write_settings(
        tmp_path / "settings.py",
        # 1 MW: the test's frames come faster than a meter's, with totals
        # rising as they would over seconds.
        METER={"name": "grid", "max_power_w": 1e6},
        INPUT=input_,
        DATA_DIR=str(tmp_path / "data"),
        SINKS=[{"type": "file", "path": str(tmp_path / "data" / "power.csv")}],
        WEB={"listen": f"127.0.0.1:{web_port}", "tariff": 0.3, "currency": "EUR"},
        COMMIT_INTERVAL_S=0,
    )


def api(port: int, path: str) -> dict:
    code, _, body = fetch(f"http://127.0.0.1:{port}{path}")
    assert code == 200, body
    return json.loads(body)


def meter_state(port: int, name: str) -> dict:
    meters = api(port, "/api/state")["meters"]
    return next(m for m in meters if m["name"] == name)


def stop_foreground(proc) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(20)


@pytest.mark.slow
def test_p1_export_and_gas_on_the_page(tmp_path, serial, browser):
    """A P1 meter with export shows import and export today and this month
    (cost on import only), and its gas meter shows m³ and m³/h everywhere,
    never kWh, W or a cost."""
    port = free_port()
    s = register_settings(
        tmp_path,
        port,
        {"backend": "p1", "device": str(serial.link), "every_s": 0, "gas_meter": "gas"},
    )
    proc = start_foreground(s)
    gas = [("240501110000S", 100.0), ("240501110000S", 100.0), ("240501120000S", 100.5)]
    try:
        wait_for(lambda: serial.opened_by(proc.pid), timeout=30)
        for i in range(4):  # the first telegram waits for the second
            imp = (1000.0 + i * 0.001, 500.0)
            exp = (20.0, 10.0 + i * 0.002)
            serial.send(mf.p1_telegram(imp, exp, (0.0, 1.5), gas=gas[min(i, 2)]))
            wait_for(
                lambda n=i: (
                    n == 0 or api(port, "/api/sensor?meter=grid")["counts"]["good"] >= n
                ),
                timeout=20,
            )
        wait_for(lambda: meter_state(port, "gas")["power_w"] == 0.5, timeout=20)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        console = Console(page)
        page.goto(f"http://127.0.0.1:{port}/")
        grid = page.locator("#meter-grid")
        gas_card = page.locator("#meter-gas")

        def field(card, name: str) -> str:
            return card.locator(f'[data-field="{name}"]').inner_text()

        # Import counted as the report counts it (three Wh since the first
        # reading, the first included), export as the rise of its total.
        wait_for(lambda: field(grid, "today-export") == "0.004 kWh out", timeout=20)
        assert field(grid, "today") == "0.003 kWh in"
        assert field(grid, "month") == "0.003 kWh in"
        assert field(grid, "month-export") == "0.004 kWh out"
        assert field(grid, "today-note") == "EUR 0.00"
        assert "-1,500" in grid.locator('[data-field="power"]').inner_text()
        # Gas: m³ and m³/h, no cost though a tariff is set.
        wait_for(lambda: "m³/h" in field(gas_card, "power"), timeout=20)
        assert field(gas_card, "power") == "0.500 m³/h"
        assert field(gas_card, "today") == "0.001 m³"
        assert field(gas_card, "total") == "100.500 m³"
        assert field(gas_card, "today-note") == field(gas_card, "month-note") == ""
        text = gas_card.inner_text()
        assert "kWh" not in text and "m3" not in text and "EUR" not in text, text
        # The charts: the gas meter's in m³ and m³/h, the grid's 30 days with
        # export beside import.
        page.select_option("#chart-meter", "gas")
        wait_for(lambda: "m³" in page.locator("#chart-caption").inner_text(), 20)
        caption = page.locator("#chart-caption").inner_text()
        assert "Mean flow" in caption and "kWh" not in caption, caption
        assert "m³/h" in page.locator("#chart svg").text_content()
        page.select_option("#chart-meter", "grid")
        page.locator("#tab-month").click()
        wait_for(lambda: "exported" in page.locator("#chart-caption").inner_text(), 20)
        assert "exported 0.0 kWh" in page.locator("#chart-caption").inner_text()
        assert page.locator("#chart rect.export").count() >= 1
        assert console.problems == []
    finally:
        stop_foreground(proc)


@pytest.mark.slow
def test_sml_frames_in_the_sensor_section(tmp_path, serial, browser):
    """A meter read by SML shows its last frames (totals, power) and a frame
    with a CRC error as unusable, with the counts, instead of edges."""
    port = free_port()
    s = register_settings(
        tmp_path, port, {"backend": "sml", "device": str(serial.link), "every_s": 0}
    )
    proc = start_foreground(s)
    try:
        wait_for(lambda: serial.opened_by(proc.pid), timeout=30)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        console = Console(page)
        page.goto(f"http://127.0.0.1:{port}/")
        frames = page.locator("#frames")
        wait_for(lambda: "no frame yet" in frames.inner_text(), timeout=20)
        for i in range(3):
            serial.send(mf.sml_file(12_345_678.9 + i, 5_000.0 + i, -250 + i))
            wait_for(
                lambda n=i: len(api(port, "/api/sensor")["frames"]) > n, timeout=20
            )
        broken = bytearray(mf.sml_file(12_345_690.0, 5_010.0, 1))
        broken[50] ^= 0xFF
        serial.send(bytes(broken))
        wait_for(lambda: "CRC error" in frames.inner_text(), timeout=20)
        text = frames.inner_text()
        assert "unusable (CRC error)" in text
        assert "held (the first after a start" in text
        assert "12345.681 kWh" in text and "5.002 kWh" in text and "-248 W" in text
        assert text.count("good") == 2, text
        counts = page.locator("#frame-counts").inner_text()
        assert counts.startswith("2 good, 1 unusable, 0 implausible"), counts
        assert page.locator("#edge-view").is_hidden()
        assert console.problems == []
    finally:
        stop_foreground(proc)
