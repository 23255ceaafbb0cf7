"""Make the web page's screenshots in docs/images/ from a real run.

    .venv/bin/python docs/screenshots.py

Replays 30 days of pulses (the benchmarks' model house, 1.2 kW on average)
ending now into a fresh DATA_DIR, starts power on it with a simulated meter
and WEB, and has Debian's chromium (driven by Playwright) take the page as a
desktop and as a phone shows it. Needs the test requirements (Playwright)
and the chromium package.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import workload  # noqa: E402
from servers import free_port  # noqa: E402

POWER = os.path.join(ROOT, "src", "power.py")
IMAGES = os.path.join(HERE, "images")
DAYS = 30


def write_settings(path: str, names: dict) -> None:
    with open(path, "w") as f:
        f.writelines(f"{k} = {v!r}\n" for k, v in names.items())


def main() -> int:
    from playwright.sync_api import sync_playwright

    tmp = tempfile.mkdtemp(prefix="power-shots-")
    data = os.path.join(tmp, "data")
    raw = os.path.join(tmp, "model.txt")
    workload.generate_pulses(raw, days=DAYS)
    shift = time.time() - 60 - DAYS * 86400 - workload.START_EPOCH
    replay = os.path.join(tmp, "month.txt")
    with open(raw) as src, open(replay, "w") as dst:
        for line in src:
            dst.write(f"{float(line) + shift:.3f}\n")
    meter = {"name": "house", "pulses_per_kwh": 1000}
    settings = os.path.join(tmp, "settings.py")
    write_settings(settings, {"METER": meter, "DATA_DIR": data, "SINKS": []})
    subprocess.run(
        [sys.executable, POWER, "--settings", settings, "--replay", replay]
        + ["--speed", "0", "--nodaemon", "-q"],
        check=True,
    )
    port = free_port()
    csv = os.path.join(data, "power.csv")
    write_settings(
        settings,
        {
            "METER": meter,
            "INPUT": {"backend": "simulated", "watts": 1800, "speed": 1},
            "DATA_DIR": data,
            "SINKS": [{"type": "file", "path": csv}],
            "WEB": {"listen": f"127.0.0.1:{port}", "tariff": 0.30, "currency": "EUR"},
        },
    )
    pidfile = os.path.join(tmp, "power.pid")
    subprocess.run(
        [sys.executable, POWER, "--settings", settings, "--pidfile", pidfile],
        check=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        urllib.request.urlopen(url, timeout=10).read()
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=["--no-sandbox", "--disable-gpu", "--no-first-run"]
                + ["--disable-background-networking", "--disable-component-update"],
            )
            for name, width, height in (("desktop", 1280, 900), ("phone", 390, 844)):
                page = browser.new_page(viewport={"width": width, "height": height})
                page.goto(url)
                page.wait_for_timeout(12_000)  # a few pulses, a few events
                out = os.path.join(IMAGES, f"web-{name}.png")
                page.screenshot(path=out, full_page=name == "desktop")
                print(out)
                page.close()
            browser.close()
    finally:
        subprocess.run(
            [sys.executable, POWER, "--settings", settings, "--pidfile", pidfile]
            + ["--kill"],
            check=False,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
