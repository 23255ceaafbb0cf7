"""The lean targets (issue 11), this tree beside an earlier one in one run.

For each version (`--before REF`, by default the commit before the lean
work, and this working tree):

1. Memory: peak RSS of a speed-0 replay through the file sink, at several
   lengths (50k, 200k, 1M pulses by default): flat in the length?
   ("memory"), and the same with file, InfluxDB and MQTT sinks (real
   influxd and mosquitto; "memory3").
2. First reading: a two-pulse replay in real time; seconds from the start
   of the process to the first CSV row (the first pulse is due at once).
3. Live at one pulse a second with file and InfluxDB sinks (a real influxd),
   DATA_DIR on a fresh ext4 file system on a loop device mounted
   `--mount-options` (when run as root): block-device syncs (flush
   requests) and bytes per reading from /proc/diskstats, CPU per reading;
   once with a simulated meter, once with pulses exactly a second apart
   (with `--attribute`, the bytes by owner: bench/blocktrace.py).
4. 120 pulses a second (a 10,000 imp/kWh meter at 43.2 kW) with LEDs: the
   process's wakeups (context switches) per pulse and CPU per reading.
5. Outage: both versions live side by side at about three pulses a second
   with file, InfluxDB and MQTT sinks while influxd is down for
   `--outage-s` (600 s); peak RSS, and every reading in InfluxDB after.

Prints a table and writes bench/results/lean.json. A missed target is
reported, not an error; a wrong result is (exit 1).
"""

from __future__ import annotations

import argparse
import calendar
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import procfs
import workload
from blocktrace import BlockTrace, LoopDisk

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from servers import Influx, Mosquitto  # noqa: E402

RESULTS = os.path.join(HERE, "results", "lean.json")
PY = sys.executable
BEFORE_REF = "7356707"  # the last commit before the lean work
PULSES_PER_DAY = 28_800  # the workload's mean of 1200 W at 1000 imp/kWh

Result = Dict[str, Any]


def extract(ref: str, dest: str) -> str:
    """power.py of `ref` (git archive of src/ into dest)."""
    os.makedirs(dest)
    archive = subprocess.run(
        ["git", "-C", ROOT, "archive", ref, "src"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", dest], input=archive, check=True)
    return os.path.join(dest, "src", "power.py")


def csv_epoch(line: str) -> float:
    """The time of a CSV row (ISO 8601 UTC with ms and Z) in epoch seconds."""
    stamp = line.split(",", 1)[0]
    return calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) + float(
        stamp[19:-1] or 0
    )


def keep_files(data_dir: str) -> None:
    """Hard links to every file of `data_dir`, so that a file the daemon
    removes at stop (SQLite's -wal and -shm) keeps its blocks and a name."""
    keep = os.path.join(
        os.path.dirname(data_dir), ".kept-" + os.path.basename(data_dir)
    )
    os.makedirs(keep, exist_ok=True)
    for name in os.listdir(data_dir):
        path = os.path.join(data_dir, name)
        if os.path.isfile(path):
            os.link(path, os.path.join(keep, name))


def journal_rows(data_dir: str) -> int:
    """Readings in a journal (read-only, beside the running daemon)."""
    path = os.path.join(data_dir, "journal.sqlite3")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute("SELECT count(*) FROM readings").fetchone()[0]
    finally:
        conn.close()


def influx_count(influx: Influx, db: str) -> int:
    """Points in `db`; -1 while influxd does not answer."""
    try:
        return influx.count(db=db)
    except (OSError, ValueError, KeyError):
        return -1


def retained_state(port: int, topic: str, wait_s: float = 5.0) -> Optional[dict]:
    """The retained JSON on `topic`, as a fresh subscriber gets it."""
    import paho.mqtt.client as mqtt

    got: List[dict] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_connect = lambda c, *a: c.subscribe(topic)
    client.on_message = lambda c, u, msg: got.append(json.loads(msg.payload))
    client.connect("127.0.0.1", port)
    client.loop_start()
    deadline = time.monotonic() + wait_s
    while not got and time.monotonic() < deadline:
        time.sleep(0.05)
    client.loop_stop()
    client.disconnect()
    return got[-1] if got else None


class Lean:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="power-lean-")
        self.checks: List[Tuple[bool, str]] = []
        self.versions = {
            "before": extract(args.before, self.path("before")),
            "after": os.path.join(ROOT, "src", "power.py"),
        }
        self.results: Result = {v: {} for v in self.versions}
        self.results["before_ref"] = args.before

    def path(self, *parts: str) -> str:
        return os.path.join(self.tmp, *parts)

    def check(self, ok: bool, text: str) -> None:
        self.checks.append((ok, text))

    def settings(self, label: str, data: str, names: Dict[str, Any]) -> str:
        os.makedirs(data, exist_ok=True)
        path = self.path(f"{label}-settings.py")
        with open(path, "w") as f:
            f.write("".join(f"{k} = {v!r}\n" for k, v in names.items()))
        return path

    def replay_settings(self, label: str, replay: str, speed: float) -> str:
        data = self.path(label)
        meter = {"name": workload.METER_NAME, "pulses_per_kwh": 1000}
        meter.update(idle_timeout_s=workload.IDLE_TIMEOUT_S, estimate_fall=0)
        return self.settings(
            label,
            data,
            {
                "METER": meter,
                "INPUT": {"backend": "replay", "path": replay, "speed": speed},
                "LEDS": None,
                "DATA_DIR": data,
                "SINKS": [{"type": "file", "path": os.path.join(data, "power.csv")}],
            },
        )

    # 1. Memory ------------------------------------------------------------------

    def replay_run(self, label: str, power: str, settings: str, edges: int) -> dict:
        """A speed-0 replay to its end, its exit and CSV checked; its figures."""
        argv = [PY, power, "--settings", settings, "--nodaemon", "--quiet"]
        run = procfs.run_child(argv, self.path(f"{label}.log"))
        self.check(run.returncode == 0, f"{label}: exit {run.returncode}")
        csv = self.path(label, "power.csv")
        for ok, fact in workload.check_csv(csv, edges, None):
            self.check(ok, f"{label} CSV: {fact}")
        return {
            "edges": edges,
            "peak_rss_mib": run.maxrss_kib / 1024,
            "wall_s": run.wall_s,
            "cpu_s_per_100k": run.cpu_s / edges * 100_000,
        }

    def memory(self) -> None:
        for n in self.args.sizes:
            replay = self.path(f"replay-{n}.txt")
            edges = workload.generate_pulses(replay, days=n / PULSES_PER_DAY)
            for version, power in self.versions.items():
                label = f"mem-{version}-{n}"
                settings = self.replay_settings(label, replay, 0)
                run = self.replay_run(label, power, settings, edges)
                self.results[version].setdefault("memory", {})[str(n)] = run

    def memory_all_sinks(self, influx: Influx, mqtt: Mosquitto) -> None:
        """Peak RSS of speed-0 replays through file, InfluxDB and MQTT sinks;
        each result checked (CSV, every point in InfluxDB, the retained
        MQTT state at the last pulse) before its figure counts."""
        for n in self.args.sizes:
            replay = self.path(f"replay-{n}.txt")
            if not os.path.exists(replay):
                workload.generate_pulses(replay, days=n / PULSES_PER_DAY)
            edges = sum(1 for _ in open(replay))
            for version, power in self.versions.items():
                label = f"mem3-{version}-{n}"
                settings = self.replay_settings(label, replay, 0)
                db = label.replace("-", "_")
                prefix = f"power{version}{n}"
                with open(settings, "a") as f:
                    f.write(
                        f"SINKS += [{{'type': 'influxdb', 'port': {influx.port}, "
                        f"'database': {db!r}}}, {{'type': 'mqtt', 'host': "
                        f"'127.0.0.1', 'port': {mqtt.port}, 'prefix': {prefix!r}, "
                        "'discovery_prefix': None}]\n"
                        "DRAIN_TIMEOUT_S = 600\n"
                    )
                run = self.replay_run(label, power, settings, edges)
                points = influx_count(influx, db)
                self.check(points == edges, f"{label}: InfluxDB {points} == {edges}")
                state = retained_state(
                    mqtt.port, f"{prefix}/{workload.METER_NAME}/state"
                )
                last = state.get("pulses") if state else None
                self.check(last == edges, f"{label}: MQTT state at pulse {last}")
                self.results[version].setdefault("memory_all_sinks", {})[str(n)] = run

    def outage(self, influx: Influx, mqtt: Mosquitto) -> None:
        """Both versions live side by side at a realistic rate (a 10,000
        imp/kWh meter at 1.2 kW on average: about three pulses a second)
        with file, InfluxDB and MQTT sinks; influxd is stopped for `--outage-s` (600 by
        default: ten real minutes), then started again. Peak RSS over the
        whole run, once every reading is in InfluxDB and the CSV checks."""
        meter = {"name": workload.METER_NAME, "pulses_per_kwh": 10_000}
        meter.update(idle_timeout_s=workload.IDLE_TIMEOUT_S, estimate_fall=0)
        runs = {}
        for version, power in self.versions.items():
            label = f"outage-{version}"
            data = self.path(label)
            db = label.replace("-", "_")
            sinks = [
                {"type": "file", "path": os.path.join(data, "power.csv")},
                {
                    "type": "influxdb",
                    "port": influx.port,
                    "database": db,
                    "retry_max_s": 5,
                },
                {
                    "type": "mqtt",
                    "host": "127.0.0.1",
                    "port": mqtt.port,
                    "prefix": f"power{version}",
                    "discovery_prefix": None,
                },
            ]
            pid, _, _ = self.daemon(
                label, power, data, meter, 1200.0, LEDS=None, SINKS=sinks
            )
            runs[version] = (label, pid, data, db)
        samples: Dict[str, List[int]] = {v: [] for v in runs}
        try:
            time.sleep(self.args.settle)
            before = {v: procfs.status_kib(r[1], "VmRSS") for v, r in runs.items()}
            start_rows = {v: journal_rows(r[2]) for v, r in runs.items()}
            influx.stop()
            t0 = time.monotonic()
            while time.monotonic() - t0 < self.args.outage_s:
                for v, r in runs.items():
                    samples[v].append(procfs.status_kib(r[1], "VmRSS"))
                time.sleep(min(5.0, self.args.outage_s))
            down = {v: journal_rows(r[2]) for v, r in runs.items()}
            influx.start()
            back = time.monotonic()
            caught = {}
            for v, r in runs.items():
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    if influx_count(influx, r[3]) >= down[v]:
                        caught[v] = time.monotonic() - back
                        break
                    time.sleep(0.2)
            time.sleep(2)
            peak = {v: procfs.status_kib(r[1], "VmHWM") for v, r in runs.items()}
        finally:
            for _, pid, _, _ in runs.values():
                procfs.stop_daemon(pid)
        for v, (label, _pid, data, db) in runs.items():
            rows = journal_rows(data)
            points = influx_count(influx, db)
            self.check(v in caught, f"{label}: the backlog reached InfluxDB")
            self.check(
                points == rows, f"{label}: InfluxDB {points} points == journal {rows}"
            )
            for ok, fact in workload.check_csv(os.path.join(data, "power.csv")):
                self.check(ok, f"{label} CSV: {fact}")
            self.results[v]["outage"] = {
                "outage_s": self.args.outage_s,
                "readings_during_outage": down[v] - start_rows[v],
                "journal_readings": rows,
                "influx_points": points,
                "catch_up_s": caught.get(v),
                "rss_before_mib": before[v] / 1024,
                "rss_max_during_mib": max(samples[v]) / 1024,
                "rss_end_of_outage_mib": samples[v][-1] / 1024,
                "peak_rss_mib": peak[v] / 1024,
            }

    # 2. First reading ---------------------------------------------------------

    def first_reading(self) -> None:
        replay = self.path("two.txt")
        with open(replay, "w") as f:
            f.write("1714953600.000\n1714953660.000\n")
        for version, power in self.versions.items():
            label = f"first-{version}"
            settings = self.replay_settings(label, replay, 1)
            csv = self.path(label, "power.csv")
            argv = [PY, power, "--settings", settings, "--nodaemon", "--quiet"]
            with open(self.path(f"{label}.log"), "wb") as err:
                t0 = time.monotonic()
                proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
                seen = None
                while time.monotonic() - t0 < 20:
                    if workload.csv_rows(csv):
                        seen = time.monotonic() - t0
                        break
                    time.sleep(0.002)
                proc.terminate()
                proc.wait(10)
            self.check(seen is not None, f"{label}: a first reading within 20 s")
            self.results[version]["first_reading_s"] = seen

    # 3. Live, one pulse a second ------------------------------------------------

    def daemon(
        self, label: str, power: str, data: str, meter: dict, watts: float, **kw: Any
    ) -> Tuple[int, str, str]:
        names = {
            "METER": meter,
            "INPUT": {
                "backend": "simulated",
                "watts": watts,
                "speed": 1,
                "seed": workload.SEED,
            },
            "DATA_DIR": data,
            **kw,
        }
        settings = self.settings(label, data, names)
        pidfile = os.path.join(data, "power.pid")
        log = os.path.join(data, "power.log")
        argv = [PY, power, "--settings", settings, "--pidfile", pidfile]
        return procfs.start_daemon(argv + ["--logfile", log], pidfile), pidfile, log

    def live(
        self, influx: Optional[Influx], disk: Optional[LoopDisk], kind: str
    ) -> None:
        """One pulse a second with file and InfluxDB sinks. kind "simulated":
        a simulated 3.6 kW meter (its load varies, so somewhat under one
        pulse a second), for CPU and wakeups; "replay": pulses exactly one
        second apart, for bytes and syncs per reading (the monitor looks 20
        times a second whether a replay has ended, so its CPU and wakeups
        are not a live meter's)."""
        key = "live_1_per_s" if kind == "simulated" else "disk_1_per_s"
        meter = {"name": workload.METER_NAME, "pulses_per_kwh": 1000}
        meter.update(idle_timeout_s=workload.IDLE_TIMEOUT_S, estimate_fall=0)
        traces: Dict[str, BlockTrace] = {}
        interval = self.args.commit_interval
        commit = {} if interval is None else {"COMMIT_INTERVAL_S": interval}
        self.results["live_commit_interval_s"] = interval
        for version, power in self.versions.items():
            label = f"{key.split('_')[0]}-{version}"
            base = disk.mount if disk is not None else self.tmp
            data = os.path.join(base, label)
            csv = os.path.join(data, "power.csv")
            sinks: List[dict] = [{"type": "file", "path": csv}]
            if influx is not None:
                sinks.append(
                    {"type": "influxdb", "port": influx.port, "database": label}
                )
            names: Dict[str, Any] = {"LEDS": None, "SINKS": sinks, **commit}
            if kind == "replay":
                # Exactly one pulse a second, paced in real time and stamped
                # with the wall clock: a replay of pulses from now on.
                pulses = os.path.join(self.tmp, f"{label}-pulses.txt")
                start = time.time() + 1.0
                total = int(self.args.live_settle + self.args.live_s + 120)
                with open(pulses, "w") as f:
                    f.writelines(f"{start + i:.3f}\n" for i in range(total))
                names["INPUT"] = {"backend": "replay", "path": pulses, "speed": 1}
            pid, pidfile, log = self.daemon(label, power, data, meter, 3600.0, **names)
            trace = None
            attribute = self.args.attribute and kind == "replay"
            if disk is not None and attribute and BlockTrace.available():
                trace = traces[version] = BlockTrace(disk)
            try:
                time.sleep(self.args.live_settle)
                disk0 = disk.stats() if disk is not None else (0, 0, 0)
                if trace is not None:
                    trace.start()
                cpu0, ctx0 = procfs.run_ns(pid), procfs.context_switches(pid)
                t0, wall0 = time.monotonic(), time.time()
                time.sleep(self.args.live_s)
                cpu1, ctx1 = procfs.run_ns(pid), procfs.context_switches(pid)
                t1, wall1 = time.monotonic(), time.time()
                disk1 = disk.stats() if disk is not None else (0, 0, 0)
                if trace is not None:
                    trace.stop()
                    keep_files(data)  # their blocks keep an owner after stop
                window = t1 - t0
            finally:
                procfs.stop_daemon(pid)
                os.sync()  # what the stop dirtied is not the next window's
            # Pulses of the window, by their own time (the CSV has them all
            # once stopped): commits every few seconds do not blur the count.
            n = sum(
                1 for line in workload.csv_rows(csv) if wall0 <= csv_epoch(line) < wall1
            )
            self.check(n > 0, f"{label}: {n} readings in {window:.0f} s")
            if n <= 0:
                continue
            for ok, fact in workload.check_csv(csv):
                self.check(ok, f"{label} CSV: {fact}")
            out = {
                "window_s": window,
                "readings": n,
                "readings_per_s": n / window,
                "input": kind,
                "cpu_pct": 100.0 * (cpu1 - cpu0) / 1e9 / window,
                "cpu_ms_per_reading": (cpu1 - cpu0) / 1e6 / n,
                "wakeups_per_s": (ctx1 - ctx0) / window,
            }
            if disk is not None:
                out["mount_options"] = disk.options
                out["device_writes_per_reading"] = (disk1[0] - disk0[0]) / n
                out["device_bytes_per_reading"] = (disk1[1] - disk0[1]) / n
                out["device_bytes_per_s"] = (disk1[1] - disk0[1]) / window
                out["syncs_per_reading"] = (disk1[2] - disk0[2]) / n
                out["syncs_per_s"] = (disk1[2] - disk0[2]) / window
            self.results[version][key] = out
        if traces and disk is not None:
            disk.unmount()  # debugfs then reads what is really on the disk
            for version, trace in traces.items():
                out = self.results[version].get(key)
                if out is None:
                    continue
                n = out["readings"]
                out["bytes_per_reading_by_owner"] = {
                    k: round(v / n) for k, v in trace.by_owner().items()
                }
                out["sync_calls_per_reading_by_file"] = {
                    k: round(v / n, 3) for k, v in trace.syncs_by_file().items()
                }
                out["ext4_journal_commits_per_reading"] = trace.jbd2_commits / n

    # 4. 120 pulses a second -----------------------------------------------------

    def fast(self) -> None:
        meter = {"name": workload.METER_NAME, "pulses_per_kwh": 10_000}
        meter.update(max_power_w=60_000, debounce_ms=2, estimate_fall=0)
        leds = {"detect": 18, "ready": 23, "blink_ms": 100}
        for version, power in self.versions.items():
            # A flash and the dark after it share 8.3 ms here: a version
            # with the width filter needs min_pulse_ms under half of that
            # (its simulated meter flashes for half the interval).
            here = os.path.dirname(power)
            config = os.path.join(here, "config", "settings.py")
            if not os.path.exists(config):  # versions before the rooms of src/
                config = os.path.join(here, "config.py")
            with open(config, encoding="utf-8") as f:
                widths = "min_pulse_ms" in f.read()
            meter = dict(meter, **({"min_pulse_ms": 2} if widths else {}))
            label = f"fast-{version}"
            data = self.path(label)
            csv = os.path.join(data, "power.csv")
            sinks = [{"type": "file", "path": csv}]
            pid, pidfile, log = self.daemon(
                label, power, data, meter, 43_200.0, LEDS=leds, SINKS=sinks
            )
            try:
                time.sleep(self.args.settle)
                rows0 = len(workload.csv_rows(csv))
                cpu0, ctx0 = procfs.run_ns(pid), procfs.context_switches(pid)
                t0 = time.monotonic()
                time.sleep(self.args.fast_s)
                cpu1, ctx1 = procfs.run_ns(pid), procfs.context_switches(pid)
                rows1 = len(workload.csv_rows(csv))
                window = time.monotonic() - t0
            finally:
                procfs.stop_daemon(pid)
            n = rows1 - rows0
            self.check(n > 0, f"{label}: {n} readings in {window:.0f} s")
            if n <= 0:
                continue
            self.results[version]["live_120_per_s"] = {
                "window_s": window,
                "readings_per_s": n / window,
                "wakeups_per_s": (ctx1 - ctx0) / window,
                "wakeups_per_reading": (ctx1 - ctx0) / n,
                "cpu_pct": 100.0 * (cpu1 - cpu0) / 1e9 / window,
                "cpu_ms_per_reading": (cpu1 - cpu0) / 1e6 / n,
            }


def report(r: Result, checks: List[Tuple[bool, str]]) -> str:
    lines = [f"before: {r['before_ref']}; after: this tree"]
    disk_after = r["after"].get("disk_1_per_s") or r["after"].get("live_1_per_s")
    if disk_after:
        interval = r.get("live_commit_interval_s")
        lines.append(
            f"1/s: loop device mounted {disk_after.get('mount_options', '-')}; "
            "COMMIT_INTERVAL_S "
            f"{'of each version' if interval is None else interval}"
        )
    lines.append("")

    def row(what: str, key: List[str], fmt: str) -> None:
        values = []
        for v in ("before", "after"):
            x: Any = r[v]
            for k in key:
                x = x.get(k) if isinstance(x, dict) else None
            values.append("-" if x is None else format(x, fmt))
        lines.append(f"  {what:<44} {values[0]:>12} {values[1]:>12}")

    lines.append(f"  {'':<44} {'before':>12} {'after':>12}")
    for n in sorted(r["after"].get("memory", {}), key=int):
        row(f"peak RSS, {int(n):,} pulses, MiB", ["memory", n, "peak_rss_mib"], ".1f")
        row("  CPU s per 100k readings", ["memory", n, "cpu_s_per_100k"], ".2f")
    for n in sorted(r["after"].get("memory_all_sinks", {}), key=int):
        key = ["memory_all_sinks", n]
        row(
            f"file+influx+mqtt: peak RSS, {int(n):,}, MiB",
            key + ["peak_rss_mib"],
            ".1f",
        )
        row("  CPU s per 100k readings", key + ["cpu_s_per_100k"], ".2f")
    row("first reading after start, s", ["first_reading_s"], ".3f")
    for key, what in (
        ("live_1_per_s", "1/s simulated"),
        ("disk_1_per_s", "1/s replay"),
    ):
        live = [key]
        row(f"{what}: readings per s", live + ["readings_per_s"], ".2f")
        row(f"{what}: device flushes per reading", live + ["syncs_per_reading"], ".2f")
        row(
            f"{what}: ext4 journal commits/reading",
            live + ["ext4_journal_commits_per_reading"],
            ".2f",
        )
        row(
            f"{what}: device bytes per reading",
            live + ["device_bytes_per_reading"],
            ".0f",
        )
        row(f"{what}: device bytes per second", live + ["device_bytes_per_s"], ".0f")
        for v in ("before", "after"):
            live_v = r[v].get(key, {})
            for label, table in (
                ("bytes/reading", live_v.get("bytes_per_reading_by_owner")),
                ("sync calls/reading", live_v.get("sync_calls_per_reading_by_file")),
            ):
                for owner, value in sorted(
                    (table or {}).items(), key=lambda kv: -kv[1]
                ):
                    lines.append(f"    {v} {label}: {owner}: {value}")
        row(f"{what}: CPU % of a core", live + ["cpu_pct"], ".3f")
        row(f"{what}: CPU ms per reading", live + ["cpu_ms_per_reading"], ".2f")
        row(f"{what}: wakeups per s", live + ["wakeups_per_s"], ".1f")
    fast = ["live_120_per_s"]
    row("120/s: readings per s", fast + ["readings_per_s"], ".1f")
    row("120/s: wakeups per reading", fast + ["wakeups_per_reading"], ".2f")
    row("120/s: CPU % of a core", fast + ["cpu_pct"], ".2f")
    row("120/s: CPU ms per reading", fast + ["cpu_ms_per_reading"], ".3f")
    out = ["outage"]
    row("outage: length, s", out + ["outage_s"], ".0f")
    row("outage: readings during it", out + ["readings_during_outage"], "d")
    row("outage: RSS before, MiB", out + ["rss_before_mib"], ".1f")
    row("outage: RSS max during, MiB", out + ["rss_max_during_mib"], ".1f")
    row("outage: peak RSS of the run, MiB", out + ["peak_rss_mib"], ".1f")
    row("outage: catch-up after restart, s", out + ["catch_up_s"], ".1f")
    lines.append("")
    for ok, text in checks:
        lines.append(f"  {'ok  ' if ok else 'FAIL'} {text}")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", default=BEFORE_REF, help="git ref to compare with")
    p.add_argument("--sizes", type=int, nargs="+", default=[50_000, 200_000, 1_000_000])
    p.add_argument("--settle", type=float, default=5.0)
    p.add_argument("--live-s", type=float, default=180.0)
    p.add_argument(
        "--commit-interval",
        type=float,
        default=None,
        help="COMMIT_INTERVAL_S for both versions in the 1 pulse/s window "
        "(default: each version's own default)",
    )
    p.add_argument(
        "--live-settle",
        type=float,
        default=40.0,
        help="seconds before the 1 pulse/s window: the kernel writes back "
        "what the start dirtied after 30 s",
    )
    p.add_argument("--fast-s", type=float, default=20.0)
    p.add_argument(
        "--parts",
        nargs="+",
        default=["memory", "memory3", "first", "live", "fast", "outage"],
        help="memory: file sink replays; memory3: file, InfluxDB and MQTT; "
        "outage: an InfluxDB outage at a live rate",
    )
    p.add_argument(
        "--outage-s",
        type=float,
        default=600.0,
        help="length of the InfluxDB outage (ten real minutes by default)",
    )
    p.add_argument(
        "--mount-options",
        default="defaults,noatime",
        help="for the loop device's ext4 (Raspberry Pi OS mounts its root "
        "file system defaults,noatime)",
    )
    p.add_argument(
        "--attribute",
        action="store_true",
        help="name the owner (file, ext4 journal, metadata) of every byte "
        "written in the 1 pulse/s window (root, tracefs and debugfs)",
    )
    return p.parse_args()


def main() -> int:
    args = parse_args()
    bench = Lean(args)
    influx = disk = mqtt = None
    try:
        if "memory" in args.parts:
            bench.memory()
        if {"memory3", "live", "outage"} & set(args.parts):
            influx = Influx(Path(bench.path("influx")))
            influx.start()
        if {"memory3", "outage"} & set(args.parts):
            mqtt = Mosquitto(Path(bench.path("mosquitto")))
            mqtt.start()
        if "memory3" in args.parts:
            bench.memory_all_sinks(influx, mqtt)
        if "first" in args.parts:
            bench.first_reading()
        if "live" in args.parts:
            if os.geteuid() == 0:
                disk = LoopDisk(bench.tmp, args.mount_options)
            bench.live(influx, disk, "simulated")
            if disk is not None:
                disk.close()
                disk = LoopDisk(bench.path("disk2"), args.mount_options)
            bench.live(influx, disk, "replay")
        if "fast" in args.parts:
            bench.fast()
        if "outage" in args.parts:
            bench.outage(influx, mqtt)
    finally:
        if influx is not None:
            influx.stop()
        if mqtt is not None:
            mqtt.stop()
        if disk is not None:
            disk.close()
    bench.results["cpu"] = open("/proc/cpuinfo").read().count("processor")
    text = report(bench.results, bench.checks)
    print(text)
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump(bench.results, f, indent=2)
    return 0 if all(ok for ok, _ in bench.checks) else 1


if __name__ == "__main__":
    sys.exit(main())
