"""Network-sink benchmarks (issue 3, "Speed"), against real servers.

1. Throughput: a replay of N pulses (1 s apart) through the real CLI at
   --speed 0 with one network sink configured (InfluxDB, MQTT, the Librato
   stand-in), timed from start to exit 0, and with no sink at all (the
   floor); median of --repeat runs. Each run is checked against its journal
   (N readings, no spurious idle reading): InfluxDB holds every reading, the
   retained MQTT state says N pulses, the Librato aggregates count N-1.
2. Baselines shaped like a naive per-reading integration, on the same
   readings (the first ones of the floor run's journal): one
   InfluxDBClient.write_points per point, one QoS 1 publish per reading
   waiting for its PUBACK (paho-mqtt 2.x), one Librato POST per reading.
   Printed with the ratio batched/baseline.
3. Outage: influxd is stopped for 60 s under two daemons with an InfluxDB
   sink, a simulated 3 kW meter at 10x (about 8 pulses/s: 10 minutes of
   meter time) and the same at 1000x (a backlog large enough to show in
   RSS if it were held in memory); VmRSS is sampled every 5 s, influxd is
   started again, and every reading must arrive.

Prints a report, writes it as JSON to bench/results/sinks.json, exits 1 if a
check failed (a slow figure is reported, not an error).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import pytest  # noqa: E402 (tests/servers.py reports a missing server with it)
from librato_server import LibratoAPI  # noqa: E402
from servers import Influx, Mosquitto  # noqa: E402

POWER = os.path.join(ROOT, "src", "power.py")
RESULTS = os.path.join(HERE, "results", "sinks.json")
PY = sys.executable

T0 = 1_700_000_000.0
METER = "bench"
LIBRATO_USER = "bench@example.com"
LIBRATO_TOKEN = "bench-token"
RSS_FLAT_KIB = 4096  # more growth than this over the outage fails the check

Result = Dict[str, Any]


class Reading(NamedTuple):
    """A journal row, as the sinks see it."""

    time: float
    meter: str
    pulses: int
    energy_kwh: float
    power_w: Optional[float]
    interval_s: Optional[float]


class Run(NamedTuple):
    """One finished CLI run."""

    returncode: int
    wall_s: float
    cpu_s: float
    maxrss_kib: int
    stderr_tail: str


# Helpers ---------------------------------------------------------------------


def write_settings(path: str, data_dir: str, sinks: List[dict], **extra: Any) -> str:
    """A settings.py: one meter, no LEDs, no pruning, the given sinks."""
    names: Dict[str, Any] = {
        "METER": {"name": METER, "pulses_per_kwh": 1000},
        "INPUT": {"backend": "simulated"},
        "LEDS": None,
        "DATA_DIR": data_dir,
        "RETENTION_DAYS": 0,
        "DRAIN_TIMEOUT_S": 120,
        "SINKS": sinks,
    }
    names.update(extra)
    with open(path, "w") as f:
        f.write("".join(f"{k} = {v!r}\n" for k, v in names.items()))
    return path


def run_cli(args: List[str], stderr_path: str, timeout: float = 180.0) -> Run:
    """Run power.py to its end (stdout, one line per reading, to /dev/null);
    wall time from start to exit, and the child's own rusage."""
    with open(stderr_path, "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [PY, POWER, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    with open(stderr_path, errors="replace") as f:
        tail = "".join(f.readlines()[-5:]).rstrip()
    return Run(
        proc.returncode,
        wall,
        usage.ru_utime + usage.ru_stime,
        usage.ru_maxrss,
        tail,
    )


def journal_readings(data_dir: str, limit: int = -1) -> List[Reading]:
    """The journal's readings in order (read-only)."""
    path = os.path.join(data_dir, "journal.sqlite3")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT time, meter, pulses, energy_kwh, power_w, interval_s "
            "FROM readings ORDER BY seq LIMIT ?",
            (limit,),
        ).fetchall()
    finally:
        conn.close()
    return [Reading(*row) for row in rows]


def journal_stats(data_dir: str) -> Result:
    """What a journal holds: readings, those with a known power, 0 W (idle)
    readings, the meter's pulse count and the InfluxDB sink's cursor."""
    path = os.path.join(data_dir, "journal.sqlite3")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        rows, known, zero = conn.execute(
            "SELECT count(*), count(power_w), count(CASE WHEN power_w = 0 "
            "THEN 1 END) FROM readings"
        ).fetchone()
        pulses = conn.execute("SELECT max(pulses) FROM meters").fetchone()[0] or 0
        cursor = conn.execute(
            "SELECT seq FROM cursors WHERE sink = 'influxdb'"
        ).fetchone()
    finally:
        conn.close()
    return {
        "rows": rows,
        "known_power": known,
        "zero_w": zero,
        "pulses": pulses,
        "influx_cursor": cursor[0] if cursor else 0,
    }


def state_payload(r: Reading) -> str:
    """The JSON a per-reading MQTT integration would publish."""
    return json.dumps(
        {
            "time": r.time,
            "meter": r.meter,
            "pulses": r.pulses,
            "energy_kwh": round(r.energy_kwh, 6),
            "power_w": r.power_w,
        },
        separators=(",", ":"),
    )


def influx_point(r: Reading) -> Dict[str, Any]:
    """The point DESIGN.md specifies, as the sink builds it."""
    fields: Dict[str, Any] = {"energy_kwh": float(r.energy_kwh), "pulses": r.pulses}
    if r.power_w is not None:
        fields["power_w"] = float(r.power_w)
    return {
        "measurement": "power",
        "tags": {"meter": r.meter},
        "time": int(round(r.time * 1000)),
        "fields": fields,
    }


def vm_rss_kib(pid: int) -> Optional[int]:
    """VmRSS of a live process, in KiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def wait_until(predicate: Callable[[], Any], timeout: float, step: float = 0.2) -> Any:
    """Poll until predicate() is truthy; its last value either way."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(step)
        value = predicate()
    return value


def safe_count(influx: Influx, db: str) -> int:
    """Points in `db`, or -1 while influxd does not answer."""
    try:
        return influx.count(db=db)
    except (OSError, ValueError, KeyError):
        return -1


class StateWatcher:
    """Counts the MQTT state messages each topic matching `topic` receives
    and keeps the last pulse count of each."""

    def __init__(self, port: int, topic: str) -> None:
        import paho.mqtt.client as mqtt

        self.topic = topic
        self.counts: Dict[str, int] = {}
        self.pulses: Dict[str, int] = {}
        self.last: Optional[dict] = None
        self.ready = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"bench-watch-{os.getpid()}-{id(self)}",
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self.ready.wait(10):
            raise RuntimeError("cannot subscribe to the broker")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        client.subscribe(self.topic, qos=1)

    def _on_message(self, client, userdata, msg) -> None:
        self.last = json.loads(msg.payload)
        self.counts[msg.topic] = self.counts.get(msg.topic, 0) + 1
        self.pulses[msg.topic] = self.last.get("pulses")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def retained_state(port: int, topic: str) -> Optional[dict]:
    """The retained message on `topic`, read by a fresh subscriber."""
    watcher = StateWatcher(port, topic)
    try:
        wait_until(lambda: watcher.last is not None, 5.0, 0.05)
        return watcher.last
    finally:
        watcher.close()


def machine() -> Result:
    """CPU, cores, Python and server versions."""
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break

    def first_line(argv: List[str]) -> str:
        try:
            res = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        except OSError as exc:
            return f"unavailable ({exc})"
        return (res.stdout or res.stderr).strip().splitlines()[0]

    def tree() -> str:
        """The commit measured, and whether src/ differs from it."""
        git = ["git", "-C", ROOT]
        head = first_line([*git, "rev-parse", "--short", "HEAD"])
        try:
            dirty = subprocess.run(
                [*git, "status", "--porcelain", "--", "src"],
                capture_output=True,
                text=True,
            ).stdout.strip()
        except OSError:
            return "unknown (no git)"
        return head + (" with uncommitted changes in src/" if dirty else "")

    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    libs = {}
    for name in ("influxdb", "paho-mqtt", "librato-metrics", "requests"):
        try:
            libs[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            libs[name] = None
    return {
        "cpu": cpu,
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "influxd": first_line(["influxd", "version"]),
        "mosquitto": first_line([mosquitto, "-h"]),
        "libraries": libs,
        "tree": tree(),
    }


class Daemon:
    """A power daemon in the foreground (--nodaemon) with a simulated 3 kW
    meter at `speed` and an InfluxDB sink retrying at most every 2 s."""

    def __init__(self, bench: Bench, label: str, speed: float, db: str) -> None:
        self.label = label
        self.speed = speed
        self.db = db
        self.data = bench.path(f"data-outage-{label}")
        self.log = bench.path(f"outage-{label}.log")
        self.settings = write_settings(
            bench.path(f"settings-outage-{label}.py"),
            self.data,
            [
                {
                    "type": "influxdb",
                    "host": "127.0.0.1",
                    "port": bench.influx.port,
                    "database": db,
                    "retry_max_s": 2,
                }
            ],
            INPUT={"backend": "simulated", "watts": 3000, "speed": speed, "seed": 7},
        )
        self.proc: Optional[subprocess.Popen] = None
        self.returncode: Optional[int] = None
        self.samples: List[Tuple[float, int]] = []
        self.before = 0
        self.down: Result = {}
        self.catch_up_s = 0.0
        self.after_kib: Optional[int] = None

    def start(self) -> None:
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen(
                [PY, POWER, "--settings", self.settings, "--nodaemon"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def sample(self, elapsed: float) -> None:
        """Record VmRSS now, `elapsed` seconds into the outage."""
        if self.proc is not None:
            rss = vm_rss_kib(self.proc.pid)
            if rss is not None:
                self.samples.append((round(elapsed, 1), rss))

    def stop(self) -> None:
        """SIGTERM (it must stop within a second or so), SIGKILL if not."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.returncode = self.proc.returncode


def in_memory_cost(data_dir: str, n: int = 10_000) -> float:
    """Bytes of Python heap per reading if a backlog were held in memory as
    (seq, Reading) rows, measured on `n` rows of a journal."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        rows = [(i, r) for i, r in enumerate(journal_readings(data_dir, n))]
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return round(used / max(1, len(rows)), 1)


# The bench ---------------------------------------------------------------------


class Bench:
    """One run: temp directory, servers, results and checks."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="power-bench-sinks-")
        self.results: Result = {"machine": machine(), "readings": args.readings}
        self.checks: List[Tuple[bool, str]] = []
        self.readings: List[Reading] = []
        self.replay = self.path("replay.txt")
        with open(self.replay, "w") as f:
            f.writelines(f"{T0 + i:.3f}\n" for i in range(args.readings))
        try:
            self.influx = Influx(Path(self.path("influx")))
            self.broker = Mosquitto(Path(self.path("mqtt")))
        except BaseException:  # a missing server: pytest's skip or fail
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        self.librato = LibratoAPI(LIBRATO_USER, LIBRATO_TOKEN)

    def path(self, *parts: str) -> str:
        return os.path.join(self.tmp, *parts)

    def check(self, ok: bool, text: str) -> bool:
        self.checks.append((bool(ok), text))
        return bool(ok)

    def start_servers(self) -> None:
        self.influx.start()
        self.broker.start()
        self.librato.start()

    def stop_servers(self) -> None:
        for stop in (self.influx.stop, self.broker.stop, self.librato.stop):
            try:
                stop()
            except Exception as exc:  # stop the others whatever one does
                print(f"stopping a server: {exc}", file=sys.stderr)

    # 1. Throughput through the CLI ---------------------------------------------

    def replay_run(self, label: str, sinks: List[dict]) -> Tuple[Run, Result]:
        """The replay through the real CLI with `sinks`; the run and what its
        journal holds, checked: N readings, no spurious idle-timeout row."""
        data = self.path(f"data-{label}")
        settings = write_settings(self.path(f"settings-{label}.py"), data, sinks)
        run = run_cli(
            ["--settings", settings, "--replay", self.replay, "--speed", "0"]
            + ["--nodaemon"],
            self.path(f"{label}.log"),
        )
        self.check(run.returncode == 0, f"{label}: exit {run.returncode}")
        if run.returncode != 0:
            print(f"{label} failed:\n{run.stderr_tail}", file=sys.stderr)
        journal = journal_stats(data)
        n = self.args.readings
        self.check(
            journal["rows"] == n and journal["zero_w"] == 0,
            f"{label}: journal {journal['rows']} readings == {n} pulses, "
            f"{journal['zero_w']} spurious 0 W idle readings (1 s apart: none due)",
        )
        journal["data_dir"] = data
        return run, journal

    def repeated(
        self,
        label: str,
        sinks: Callable[[int], List[dict]],
        verify: Callable[[int, Result], Result],
    ) -> Result:
        """`--repeat` replays with the sinks of repeat i, each verified;
        figures of the median run (by wall time) and every run's wall time."""
        n = self.args.readings
        runs = []
        for i in range(self.args.repeat):
            run, journal = self.replay_run(f"{label}-{i + 1}", sinks(i))
            runs.append((run, journal, verify(i, journal)))
        run, journal, extra = sorted(runs, key=lambda r: r[0].wall_s)[len(runs) // 2]
        out = {
            "readings": n,
            "wall_s": round(run.wall_s, 3),
            "readings_per_s": round(n / run.wall_s, 1),
            "cpu_s": round(run.cpu_s, 3),
            "maxrss_kib": run.maxrss_kib,
            "journal_rows": journal["rows"],
            "wall_s_runs": [round(r[0].wall_s, 2) for r in runs],
        }
        out.update(extra)
        return out

    def throughput(self) -> None:
        """Each sink alone through the CLI, and no sink at all."""
        n = self.args.readings
        res: Result = {}
        floor_dirs: List[str] = []

        def floor_verify(i: int, journal: Result) -> Result:
            floor_dirs.append(journal["data_dir"])
            return {}

        res["floor"] = self.repeated("floor", lambda i: [], floor_verify)
        self.readings = journal_readings(floor_dirs[0], self.args.baseline)
        self.check(
            len(self.readings) == min(n, self.args.baseline),
            f"floor: journal has the baseline's {len(self.readings)} readings",
        )

        def influx_sinks(i: int) -> List[dict]:
            port = self.influx.port
            db = f"power_{i + 1}"
            return [
                {"type": "influxdb", "host": "127.0.0.1", "port": port, "database": db}
            ]

        def influx_verify(i: int, journal: Result) -> Result:
            points = safe_count(self.influx, f"power_{i + 1}")
            self.check(
                points == journal["rows"],
                f"influxdb-{i + 1}: {points} points == {journal['rows']} readings",
            )
            return {"points": points}

        res["influxdb"] = self.repeated("influxdb", influx_sinks, influx_verify)

        watcher = StateWatcher(self.broker.port, f"+/{METER}/state")
        try:

            def mqtt_sinks(i: int) -> List[dict]:
                port = self.broker.port
                prefix = f"power{i + 1}"
                return [
                    {
                        "type": "mqtt",
                        "host": "127.0.0.1",
                        "port": port,
                        "prefix": prefix,
                    }
                ]

            def mqtt_verify(i: int, journal: Result) -> Result:
                topic = f"power{i + 1}/{METER}/state"
                wait_until(lambda: watcher.pulses.get(topic) == n, 2.0)
                state = retained_state(self.broker.port, topic) or {}
                got = state.get("pulses")
                self.check(
                    got == n, f"mqtt-{i + 1}: retained state pulses {got} == {n}"
                )
                return {
                    "retained_pulses": got,
                    "state_publishes": watcher.counts.get(topic, 0),
                }

            res["mqtt"] = self.repeated("mqtt", mqtt_sinks, mqtt_verify)
        finally:
            watcher.close()

        def librato_sinks(i: int) -> List[dict]:
            return [
                {
                    "type": "librato",
                    "user": LIBRATO_USER,
                    "token": LIBRATO_TOKEN,
                    "api_url": self.librato.url,
                    "prefix": f"power{i + 1}",
                }
            ]

        def librato_verify(i: int, journal: Result) -> Result:
            name = f"power{i + 1}.power_w"
            power = [g for g in self.librato.gauges if g["name"] == name]
            counted = sum(g["count"] for g in power)
            self.check(
                counted == journal["known_power"],
                f"librato-{i + 1}: sum of counts {counted} == "
                f"{journal['known_power']} readings with a known power (N-1)",
            )
            posts = len(self.librato.requests) - sum(librato_posts)
            librato_posts.append(posts)
            return {"counted": counted, "aggregates": len(power), "posts": posts}

        librato_posts: List[int] = []
        res["librato"] = self.repeated("librato", librato_sinks, librato_verify)
        self.results["throughput"] = res

    # 2. Per-reading baselines ----------------------------------------------------

    def baselines(self) -> None:
        readings = self.readings
        res: Result = {}

        from influxdb import InfluxDBClient

        client = InfluxDBClient("127.0.0.1", self.influx.port, database="baseline")
        client.create_database("baseline")
        start = time.perf_counter()
        for r in readings:
            client.write_points([influx_point(r)], time_precision="ms")
        wall = time.perf_counter() - start
        client.close()
        points = safe_count(self.influx, "baseline")
        self.check(
            points == len(readings),
            f"influxdb baseline: {points} points == {len(readings)}",
        )
        res["influxdb"] = self._baseline_figures(
            wall, "InfluxDBClient.write_points, one point per call"
        )

        res["mqtt"] = self._mqtt_baseline(readings)

        import librato

        conn = librato.connect(
            LIBRATO_USER,
            LIBRATO_TOKEN,
            hostname=f"127.0.0.1:{self.librato.port}",
            base_path="/v1/",
            protocol="http",
        )
        before = len(self.librato.gauges)
        start = time.perf_counter()
        for r in readings:
            queue = conn.new_queue()
            mt = int(r.time)
            if r.power_w is not None:
                queue.add("base.power_w", r.power_w, source=r.meter, measure_time=mt)
            queue.add("base.energy_kwh", r.energy_kwh, source=r.meter, measure_time=mt)
            queue.submit()
        wall = time.perf_counter() - start
        got = [g for g in self.librato.gauges[before:] if g["name"] == "base.power_w"]
        self.check(
            len(got) == len(readings) - 1,
            f"librato baseline: {len(got)} power gauges == {len(readings) - 1}",
        )
        res["librato"] = self._baseline_figures(
            wall, "librato-metrics, one POST (power + energy gauges) per reading"
        )
        self.results["baseline"] = res

    def _baseline_figures(self, wall: float, how: str) -> Result:
        n = len(self.readings)
        return {
            "readings": n,
            "wall_s": round(wall, 3),
            "readings_per_s": round(n / wall, 1),
            "how": how,
        }

    def _mqtt_baseline(self, readings: List[Reading]) -> Result:
        import paho.mqtt.client as mqtt

        connected = threading.Event()
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"bench-baseline-{os.getpid()}",
        )
        client.on_connect = lambda *a: connected.set()
        client.connect("127.0.0.1", self.broker.port)
        client.loop_start()
        topic = f"baseline/{METER}/state"
        try:
            if not connected.wait(10):
                raise RuntimeError("baseline MQTT client cannot connect")
            start = time.perf_counter()
            for r in readings:
                info = client.publish(topic, state_payload(r), qos=1, retain=True)
                info.wait_for_publish(10)
                if not info.is_published():
                    raise RuntimeError("no PUBACK within 10 s")
            wall = time.perf_counter() - start
        finally:
            client.disconnect()
            client.loop_stop()
        state = retained_state(self.broker.port, topic) or {}
        got = state.get("pulses")
        self.check(
            got == readings[-1].pulses,
            f"mqtt baseline: retained pulses {got} == {readings[-1].pulses}",
        )
        return self._baseline_figures(
            wall, "paho-mqtt, one QoS 1 publish per reading, waiting for PUBACK"
        )

    # 3. RSS during an InfluxDB outage --------------------------------------------

    def outage(self) -> None:
        """Stop influxd under two running daemons (realistic and 100x the
        rate), sample their RSS, start it again, check every reading."""
        a = self.args
        daemons = [
            Daemon(self, "realistic", speed=10, db="outage"),
            Daemon(self, "stress", speed=1000, db="outage_stress"),
        ]
        res: Result = {"outage_s": a.outage}
        try:
            for d in daemons:
                d.start()
            for d in daemons:
                ok = wait_until(lambda d=d: safe_count(self.influx, d.db) > 0, 20)
                self.check(ok, f"outage {d.label}: the daemon writes to InfluxDB")
            time.sleep(a.warmup)  # let the daemons reach their steady size
            for d in daemons:
                d.before = journal_stats(d.data)["rows"]
            self.influx.stop()
            t0 = time.monotonic()
            while True:
                for d in daemons:
                    d.sample(time.monotonic() - t0)
                left = a.outage - (time.monotonic() - t0)
                if left <= 0:
                    break
                time.sleep(min(a.sample, left))
            for d in daemons:
                d.down = journal_stats(d.data)
            self.influx.start()
            restarted = time.monotonic()
            for d in daemons:
                rows = d.down["rows"]
                caught = wait_until(
                    lambda d=d, rows=rows: safe_count(self.influx, d.db) >= rows,
                    60,
                    0.1,
                )
                d.catch_up_s = time.monotonic() - restarted
                self.check(
                    caught, f"outage {d.label}: {rows} readings reached InfluxDB"
                )
                d.after_kib = vm_rss_kib(d.proc.pid) if d.proc else None
                self.check(d.running(), f"outage {d.label}: ran throughout")
        finally:
            for d in daemons:
                d.stop()
        for d in daemons:
            res[d.label] = self.outage_figures(d)
        res["in_memory_bytes_per_reading"] = in_memory_cost(daemons[1].data)
        stress = res["stress"]
        per_reading = stress["rss_growth_kib"] * 1024 / max(1, stress["backlog"])
        stress["growth_bytes_per_backlog_reading"] = round(per_reading, 1)
        growth = res["realistic"]["rss_growth_kib"]
        self.check(
            growth <= RSS_FLAT_KIB,
            f"outage realistic: RSS growth {growth} KiB <= {RSS_FLAT_KIB} KiB",
        )
        limit = res["in_memory_bytes_per_reading"] / 2
        self.check(
            per_reading <= limit,
            f"outage stress: RSS growth {per_reading:.0f} B per backlog reading "
            f"<= {limit:.0f} B (half the cost of a backlog held in memory)",
        )
        self.results["outage"] = res

    def outage_figures(self, d: Daemon) -> Result:
        """One daemon's outage figures, with its final checks."""
        self.check(d.returncode == 0, f"outage {d.label}: exit {d.returncode}")
        final = journal_stats(d.data)
        points = safe_count(self.influx, d.db)
        distinct = self.influx.series(
            'SELECT count(distinct("pulses")) FROM "power"', d.db
        )
        unique = distinct[0]["count"] if distinct else 0
        rows, pulses, cursor = final["rows"], final["pulses"], final["influx_cursor"]
        self.check(
            points == rows and unique == pulses and cursor == rows,
            f"outage {d.label}: InfluxDB {points} points ({unique} distinct "
            f"pulses) == journal {rows} readings ({pulses} pulses), cursor {cursor}",
        )
        values = [kib for _, kib in d.samples]
        return {
            "speed": d.speed,
            "readings_during_outage": d.down["rows"] - d.before,
            "backlog": d.down["rows"] - d.down["influx_cursor"],
            "catch_up_s": round(d.catch_up_s, 2),
            "journal_readings": rows,
            "journal_pulses": pulses,
            "influx_points": points,
            "distinct_pulses": unique,
            "rss_samples": d.samples,
            "rss_first_kib": values[0] if values else None,
            "rss_last_kib": values[-1] if values else None,
            "rss_max_kib": max(values) if values else None,
            "rss_growth_kib": values[-1] - values[0] if values else 0,
            "rss_after_catch_up_kib": d.after_kib,
        }

    # Report ----------------------------------------------------------------------

    def report(self) -> str:
        r = self.results
        m = r["machine"]
        lines = [
            f"power network-sink bench, {r['date']}, tree {m['tree']}",
            f"machine: {m['cpu']}, {m['nproc']} CPUs, Python {m['python']}, "
            f"Linux {m['kernel']}",
            f"servers: {m['influxd']}; {m['mosquitto']}; Librato: local stand-in "
            "(tests/librato_server.py)",
            "clients: " + ", ".join(f"{k} {v}" for k, v in m["libraries"].items() if v),
            "",
        ]
        t = r.get("throughput", {})
        b = r.get("baseline", {})
        if t:
            runs = len(t["floor"]["wall_s_runs"])
            lines.append(
                f"1. Replay of {r['readings']:,} pulses (1 s apart) through the CLI "
                "at --speed 0, one sink, start to exit 0 (nothing subtracted); "
                f"median of {runs} runs:"
            )
            lines.append(
                f"   {'sink':<9} {'wall s':>6} {'readings/s':>10} {'CPU s':>5} "
                f"{'peak RSS':>8}  {'every run (s)':<18} check (median run)"
            )
            checks = {
                "floor": "SINKS = [] (only the console, to /dev/null)",
                "influxdb": "{points:,} points",
                "mqtt": "retained pulses {retained_pulses:,}, "
                "{state_publishes} state publishes",
                "librato": "{counted:,} counted in {aggregates} aggregates, "
                "{posts} POSTs",
            }
            for name in ("floor", "influxdb", "mqtt", "librato"):
                f = t.get(name)
                if not f:
                    continue
                every = " ".join(f"{w:.2f}" for w in f["wall_s_runs"])
                lines.append(
                    f"   {name:<9} {f['wall_s']:>6.2f} {f['readings_per_s']:>10,.0f} "
                    f"{f['cpu_s']:>5.2f} {f['maxrss_kib'] / 1024:>4.1f} MiB  "
                    f"{every:<18} " + checks[name].format(**f)
                )
            lines.append("")
        if b:
            lines.append(
                f"2. Per-reading baselines on the same first {len(self.readings):,} "
                "readings, and batched/baseline:"
            )
            for name in ("influxdb", "mqtt", "librato"):
                f = b.get(name)
                if not f:
                    continue
                ratio = t[name]["readings_per_s"] / f["readings_per_s"]
                f["ratio"] = round(ratio, 1)
                lines.append(
                    f"   {name:<9} {f['readings_per_s']:>9,.0f} readings/s "
                    f"({f['wall_s']:.2f} s)  batched/baseline {ratio:>6.1f}x  "
                    f"[{f['how']}]"
                )
            lines.append("")
        o = r.get("outage")
        if o and "stress" in o:
            lines.append(
                f"3. InfluxDB stopped for {o['outage_s']:g} s under two daemons, "
                "each a simulated 3 kW meter (1000 pulses/kWh) with an InfluxDB sink "
                "(retry_max_s 2):"
            )
            names = {
                "realistic": "10x (~8 pulses/s; the outage is "
                f"{o['outage_s'] * 10 / 60:g} min of meter time)",
                "stress": "1000x (~830 pulses/s), to tell a backlog held in memory "
                "from one in the journal",
            }
            for label in ("realistic", "stress"):
                d = o[label]
                lines.append(f"   {label}, {names[label]}:")
                lines.append(
                    f"     {d['readings_during_outage']:,} readings during the "
                    f"outage, backlog {d['backlog']:,} at restart, caught up in "
                    f"{d['catch_up_s']:.1f} s"
                )
                lines.append(
                    f"     RSS: first {d['rss_first_kib']:,} KiB, last "
                    f"{d['rss_last_kib']:,} KiB, max {d['rss_max_kib']:,} KiB, "
                    f"growth {d['rss_growth_kib']:+,} KiB; after catch-up "
                    f"{d['rss_after_catch_up_kib'] or 0:,} KiB"
                )
                lines.append(
                    "     samples (s: KiB): "
                    + ", ".join(f"{t:g}: {kib}" for t, kib in d["rss_samples"])
                )
                lines.append(
                    f"     after stop: InfluxDB {d['influx_points']:,} points, "
                    f"{d['distinct_pulses']:,} distinct pulses; journal "
                    f"{d['journal_readings']:,} readings, "
                    f"{d['journal_pulses']:,} pulses"
                )
            st = o["stress"]
            cost = o["in_memory_bytes_per_reading"]
            lines.append(
                "   RSS growth per backlog reading (stress): "
                f"{st['growth_bytes_per_backlog_reading']:.0f} B; a backlog held "
                f"in memory would cost {cost:.0f} B per reading "
                f"({st['backlog'] * cost / 1024:,.0f} KiB)"
            )
            lines.append("")
        failed = [text for ok, text in self.checks if not ok]
        lines.append(
            f"checks: {len(self.checks) - len(failed)}/{len(self.checks)} passed"
        )
        lines += [f"  FAILED: {text}" for text in failed]
        return "\n".join(lines)

    def run(self) -> int:
        started = time.monotonic()
        self.results["date"] = datetime.datetime.now().isoformat(timespec="seconds")
        try:
            self.start_servers()
            self.throughput()
            if self.readings:
                self.baselines()
            if self.args.outage > 0:
                self.outage()
        finally:
            self.stop_servers()
        self.results["duration_s"] = round(time.monotonic() - started, 1)
        self.results["checks"] = [{"ok": ok, "what": t} for ok, t in self.checks]
        text = self.report()
        print(text)
        print(f"(bench took {self.results['duration_s']:.0f} s)")
        os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
        with open(RESULTS, "w") as f:
            json.dump(self.results, f, indent=2)
        failed = any(not ok for ok, _ in self.checks)
        if failed or self.args.keep:
            print(f"files kept in {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=20_000)
    parser.add_argument("--baseline", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3, help="replays per sink")
    parser.add_argument("--outage", type=float, default=60.0, help="0: skip")
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--sample", type=float, default=5.0)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    try:
        bench = Bench(parser.parse_args())
    except (pytest.skip.Exception, pytest.fail.Exception) as exc:
        print(f"cannot run the sink bench: {exc}", file=sys.stderr)
        return 1
    return bench.run()


if __name__ == "__main__":
    sys.exit(main())
