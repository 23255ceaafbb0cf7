"""The live path (issue 20): how fast what people watch follows the meter,
and what the commit interval costs the card now that liveness does not
depend on it.

1. Latency ("latency"): a detached daemon with the default commit interval
   reads a simulated meter at one pulse a second, with an MQTT sink (a real
   mosquitto) and METRICS. For `--pulses` power values: from each reading's
   own time (the edge's timestamp) to the MQTT power message arriving at a
   subscriber on this machine, and to the Prometheus gauge changing
   (scraped every `--poll-s`); p50, p99 and the largest. Also: from the
   second pulse after start (the first with a power) to its power arriving.
2. The page ("web"): a detached daemon with WEB at one pulse a second:
   its CPU share over `--web-window` seconds with 0, 1 and 10 event
   streams open (each read by a client on this machine); the page's
   weight (its four files); and in headless chromium (Debian's, driven by
   Playwright) the time to first contentful paint and to the load event,
   the median of five loads.
3. Commit interval ("commit"): for each of `--intervals` (5, 10, 30, 60 s),
   pulses exactly one second apart replayed in real time with the file
   sink, DATA_DIR on a fresh ext4 file system on a loop device mounted
   `defaults,noatime` as Raspberry Pi OS mounts its root (root only): the
   bytes reaching the block device and the flushes per reading, and the
   readings a power cut can lose (those made since the last commit: at
   most the interval at one pulse a second).

Prints a table and writes bench/results/live.json.
"""

from __future__ import annotations

import argparse
import calendar
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import procfs
import workload
from blocktrace import LoopDisk

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from servers import Mosquitto, free_port  # noqa: E402

POWER = os.path.join(ROOT, "src", "power.py")
RESULTS = os.path.join(HERE, "results", "live.json")
PY = sys.executable
GAUGE = 'power_meter_power_watts{meter="bench"}'


def epoch(text: str) -> float:
    main, _, millis = text.rstrip("Z").partition(".")
    return (
        calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S"))
        + int(millis or 0) / 1000
    )


def quantiles(values: List[float]) -> Dict[str, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return {
        "n": len(ordered),
        "p50_s": statistics.median(ordered),
        "p99_s": p99,
        "max_s": ordered[-1],
    }


def machine() -> str:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        f"{cpu}, nproc {os.cpu_count()}, Python {sys.version.split()[0]}, "
        f"Linux {os.uname().release}"
    )


def write_settings(path: str, names: Dict[str, Any]) -> str:
    with open(path, "w") as f:
        f.writelines(f"{k} = {v!r}\n" for k, v in names.items())
    return path


def daemon(tmp: str, label: str, names: Dict[str, Any]) -> Tuple[int, str]:
    data = names["DATA_DIR"]
    os.makedirs(data, exist_ok=True)
    settings = write_settings(os.path.join(tmp, f"{label}-settings.py"), names)
    pidfile = os.path.join(data, "power.pid")
    log = os.path.join(data, "power.log")
    argv = [PY, POWER, "--settings", settings, "--pidfile", pidfile]
    return procfs.start_daemon(argv + ["--logfile", log], pidfile), log


class Subscriber:
    """paho-mqtt on the power topic: (arrival, payload) of each message."""

    def __init__(self, port: int, topic: str) -> None:
        import paho.mqtt.client as mqtt

        self.got: List[Tuple[float, dict]] = []
        self.lock = threading.Lock()
        ready = threading.Event()
        client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)

        def on_connect(client, userdata, flags, reason_code, properties):
            client.subscribe(topic, qos=1)
            ready.set()

        def on_message(client, userdata, msg):
            arrived = time.time()
            if msg.retain:
                return  # a value from before this run
            with self.lock:
                self.got.append((arrived, json.loads(msg.payload)))

        client.on_connect = on_connect
        client.on_message = on_message
        client.connect("127.0.0.1", port)
        client.loop_start()
        if not ready.wait(10):
            raise RuntimeError("the subscriber did not connect")
        self.client = client

    def count(self) -> int:
        with self.lock:
            return len(self.got)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def scrape(port: int) -> Optional[float]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(GAUGE + " "):
                    return float(line.rpartition(" ")[2])
    except OSError:
        pass
    return None


def latency(args: argparse.Namespace, tmp: str) -> Dict[str, Any]:
    broker = Mosquitto(Path(tmp) / "mqtt")
    broker.start()
    port = free_port()
    sub = Subscriber(broker.port, "power/bench/power")
    names = {
        "METER": {"name": "bench", "pulses_per_kwh": 1000},
        "INPUT": {"backend": "simulated", "watts": 3600, "speed": 1},
        "DATA_DIR": os.path.join(tmp, "latency"),
        "LEDS": None,
        "SINKS": [{"type": "mqtt", "host": "127.0.0.1", "port": broker.port}],
        "METRICS": {"listen": f"127.0.0.1:{port}"},
    }
    started = time.time()
    pid, _ = daemon(tmp, "latency", names)
    seen: List[Tuple[float, float]] = []  # gauge changes: (when, value)
    try:
        deadline = time.monotonic() + args.pulses * 3 + 60
        while sub.count() < args.pulses and time.monotonic() < deadline:
            value = scrape(port)
            if value is not None and (not seen or seen[-1][1] != value):
                seen.append((time.time(), value))
            time.sleep(args.poll_s)
    finally:
        procfs.stop_daemon(pid)
        sub.close()
        broker.stop()
    got = sub.got[: args.pulses]
    mqtt = [arrived - epoch(p["time"]) for arrived, p in got]
    made = {round(p["power_w"], 2): epoch(p["time"]) for _, p in got}
    gauge = [t - made[round(v, 2)] for t, v in seen if round(v, 2) in made]
    first = got[0] if got else None
    out = {
        "commit_interval_s": "default",
        "poll_s": args.poll_s,
        "mqtt": quantiles(mqtt) if mqtt else None,
        "gauge": quantiles(gauge) if gauge else None,
        "estimates": sum(1 for _, p in got if p["estimate"]),
    }
    if first is not None:
        out["first_power_after_start_s"] = first[0] - started
        out["first_power_after_its_pulse_s"] = first[0] - epoch(first[1]["time"])
    return out


class StreamReader:
    """An open /events stream, read by a thread until closed."""

    def __init__(self, port: int) -> None:
        import socket

        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(b"GET /events HTTP/1.1\r\nHost: bench\r\n\r\n")
        self.events = 0
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return
                self.events += data.count(b"event: reading")
        except OSError:
            return

    def close(self) -> None:
        self.sock.close()


def web(args: argparse.Namespace, tmp: str) -> Dict[str, Any]:
    port = free_port()
    names = {
        "METER": {"name": "bench", "pulses_per_kwh": 1000},
        "INPUT": {"backend": "simulated", "watts": 3600, "speed": 1},
        "DATA_DIR": os.path.join(tmp, "web"),
        "LEDS": None,
        "SINKS": [{"type": "file", "path": os.path.join(tmp, "web", "power.csv")}],
        "WEB": {"listen": f"127.0.0.1:{port}", "tariff": 0.3},
    }
    pid, _ = daemon(tmp, "web", names)
    out: Dict[str, Any] = {"window_s": args.web_window}
    base = f"http://127.0.0.1:{port}"
    try:
        time.sleep(args.settle)
        for n in (0, 1, 10):
            readers = [StreamReader(port) for _ in range(n)]
            cpu0, t0 = procfs.run_ns(pid), time.monotonic()
            time.sleep(args.web_window)
            cpu1, t1 = procfs.run_ns(pid), time.monotonic()
            events = sum(r.events for r in readers)
            for r in readers:
                r.close()
            out[f"streams_{n}"] = {
                "cpu_pct": 100.0 * (cpu1 - cpu0) / 1e9 / (t1 - t0),
                "events_read": events,
            }
        weight = 0
        for path in ("/", "/app.js", "/style.css", "/favicon.svg"):
            with urllib.request.urlopen(base + path, timeout=5) as r:
                weight += len(r.read())
        out["page_bytes"] = weight
        out["browser"] = first_paint(base + "/")
    finally:
        procfs.stop_daemon(pid)
    return out


def first_paint(url: str) -> Dict[str, float]:
    """Median time to first contentful paint and to the load event, ms."""
    from playwright.sync_api import sync_playwright

    paints, loads = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--no-first-run"]
            + ["--disable-background-networking", "--disable-component-update"],
        )
        for _ in range(5):
            page = browser.new_page()
            page.goto(url, wait_until="load")
            timing = page.evaluate(
                "() => ({paint: (performance.getEntriesByName("
                "'first-contentful-paint')[0] || {}).startTime || null, "
                "load: performance.getEntriesByType('navigation')[0].loadEventEnd})"
            )
            if timing["paint"] is not None:
                paints.append(timing["paint"])
            loads.append(timing["load"])
            page.close()
        browser.close()
    return {
        "first_contentful_paint_ms": statistics.median(paints) if paints else None,
        "load_event_ms": statistics.median(loads),
        "loads": len(loads),
    }


def commit_costs(args: argparse.Namespace, tmp: str) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for interval in args.intervals:
        disk = LoopDisk(
            tempfile.mkdtemp(dir=tmp), options="defaults,noatime", size_mib=256
        )
        try:
            data = os.path.join(disk.mount, "data")
            csv = os.path.join(data, "power.csv")
            pulses = os.path.join(tmp, f"pulses-{interval}.txt")
            start = time.time() + 1.0
            total = int(args.settle + args.window + 120)
            with open(pulses, "w") as f:
                f.writelines(f"{start + i:.3f}\n" for i in range(total))
            names = {
                "METER": {"name": "bench", "pulses_per_kwh": 1000, "estimate_fall": 0},
                "INPUT": {"backend": "replay", "path": pulses, "speed": 1},
                "DATA_DIR": data,
                "LEDS": None,
                "SINKS": [{"type": "file", "path": csv}],
                "COMMIT_INTERVAL_S": interval,
            }
            pid, _ = daemon(tmp, f"commit-{interval}", names)
            try:
                time.sleep(args.settle)
                d0, t0, w0 = disk.stats(), time.monotonic(), time.time()
                time.sleep(args.window)
                d1, t1, w1 = disk.stats(), time.monotonic(), time.time()
            finally:
                procfs.stop_daemon(pid)
            n = 0
            for line in workload.csv_rows(csv):
                t = epoch(line.split(",", 1)[0])
                n += w0 <= t < w1
            out[str(interval)] = {
                "window_s": t1 - t0,
                "readings": n,
                "device_bytes_per_reading": (d1[1] - d0[1]) / max(n, 1),
                "device_writes_per_reading": (d1[0] - d0[0]) / max(n, 1),
                "flushes_per_reading": (d1[2] - d0[2]) / max(n, 1),
                "readings_a_power_cut_can_lose": interval * 1.0,
            }
        finally:
            disk.close()
    return out


def report(r: Dict[str, Any]) -> str:
    lines = [f"power live bench, {r['when']}", f"machine: {r['machine']}", ""]
    lat = r.get("latency")
    if lat:
        lines.append("Latency at one pulse a second, detached, default commit interval")
        for name in ("mqtt", "gauge"):
            q = lat.get(name)
            if q:
                what = "MQTT power message" if name == "mqtt" else "Prometheus gauge"
                lines.append(
                    f"  edge -> {what:<20} n {q['n']:>4}  p50 {q['p50_s']:.3f} s  "
                    f"p99 {q['p99_s']:.3f} s  max {q['max_s']:.3f} s"
                )
        if "first_power_after_start_s" in lat:
            lines.append(
                "  first power value: "
                f"{lat['first_power_after_its_pulse_s']:.3f} s after its pulse "
                f"(the second after start), {lat['first_power_after_start_s']:.1f} "
                "s after start"
            )
        lines.append("")
    w = r.get("web")
    if w:
        lines.append(f"The page at one pulse a second ({w['window_s']:.0f} s windows)")
        for n in (0, 1, 10):
            s = w[f"streams_{n}"]
            lines.append(
                f"  {n:>2} event streams: daemon CPU {s['cpu_pct']:.3f} % of a core, "
                f"{s['events_read']} events read"
            )
        b = w["browser"]
        paint = b["first_contentful_paint_ms"]
        lines.append(
            f"  page weight {w['page_bytes'] / 1024:.1f} KiB; headless chromium: "
            f"first contentful paint "
            f"{'-' if paint is None else f'{paint:.0f} ms'}, load "
            f"{b['load_event_ms']:.0f} ms (median of {b['loads']})"
        )
        lines.append("")
    costs = r.get("commit")
    if costs:
        lines.append(
            "COMMIT_INTERVAL_S at one pulse a second, ext4 noatime on a loop device"
        )
        lines.append(
            "  interval   bytes/reading   writes/reading   flushes/reading   "
            "lost in a power cut"
        )
        for interval, c in costs.items():
            lines.append(
                f"  {interval:>6} s   {c['device_bytes_per_reading']:>13,.0f}   "
                f"{c['device_writes_per_reading']:>14.2f}   "
                f"{c['flushes_per_reading']:>15.3f}   "
                f"up to {c['readings_a_power_cut_can_lose']:.0f} readings"
            )
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", nargs="+", default=["latency", "web", "commit"])
    p.add_argument("--web-window", type=float, default=60.0)
    p.add_argument("--pulses", type=int, default=300)
    p.add_argument("--poll-s", type=float, default=0.02)
    p.add_argument("--intervals", type=int, nargs="+", default=[5, 10, 30, 60])
    p.add_argument("--settle", type=float, default=40.0)
    p.add_argument("--window", type=float, default=240.0)
    return p.parse_args()


def main() -> int:
    args = parse_args()
    tmp = tempfile.mkdtemp(prefix="power-live-")
    results: Dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
    }
    if "latency" in args.parts:
        results["latency"] = latency(args, tmp)
    if "web" in args.parts:
        results["web"] = web(args, tmp)
    if "commit" in args.parts:
        if os.geteuid() != 0:
            print("commit: needs root (a loop device); skipped", file=sys.stderr)
        else:
            results["commit"] = commit_costs(args, tmp)
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    try:  # parts run on their own keep the others' figures
        with open(RESULTS) as f:
            results = {**json.load(f), **results}
    except (OSError, ValueError):
        pass
    with open(RESULTS, "w") as f:
        json.dump(results, f, indent=2)
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
