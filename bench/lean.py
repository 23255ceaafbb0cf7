"""The lean targets (issue 11), this tree beside an earlier one in one run.

For each version (`--before REF`, by default the commit before the lean
work, and this working tree):

1. Memory: peak RSS of a speed-0 replay through the file sink, at several
   lengths (50k, 200k, 1M pulses by default): flat in the length?
2. First reading: a two-pulse replay in real time; seconds from the start
   of the process to the first CSV row (the first pulse is due at once).
3. Live at one pulse a second with file and InfluxDB sinks (a real influxd),
   DATA_DIR on a fresh ext4 file system on a loop device (when run as root):
   block-device syncs (flush requests) and bytes per reading from
   /proc/diskstats, and CPU per reading.
4. 120 pulses a second (a 10,000 imp/kWh meter at 43.2 kW) with LEDs: the
   process's wakeups (context switches) per pulse and CPU per reading.

Prints a table and writes bench/results/lean.json. A missed target is
reported, not an error; a CSV that is wrong is (exit 1).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import procfs
import workload

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from servers import Influx  # noqa: E402

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


class LoopDisk:
    """An ext4 file system on a loop device: its own /proc/diskstats line."""

    def __init__(self, tmp: str) -> None:
        self.image = os.path.join(tmp, "disk.img")
        self.mount = os.path.join(tmp, "disk")
        os.makedirs(self.mount)
        with open(self.image, "wb") as f:
            f.truncate(512 << 20)
        self.device = subprocess.run(
            ["losetup", "-f", "--show", self.image],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        subprocess.run(
            [
                "mkfs.ext4",
                "-q",
                "-E",
                "lazy_itable_init=0,lazy_journal_init=0",
                self.device,
            ],
            check=True,
        )
        subprocess.run(["mount", self.device, self.mount], check=True)
        self.name = os.path.basename(self.device)

    def stats(self) -> Tuple[int, int, int]:
        """Writes, bytes written, flush requests so far."""
        with open("/proc/diskstats") as f:
            for line in f:
                fields = line.split()
                if fields[2] == self.name:
                    flushes = int(fields[18]) if len(fields) > 18 else 0
                    return int(fields[7]), int(fields[9]) * 512, flushes
        raise KeyError(self.name)

    def close(self) -> None:
        subprocess.run(["umount", self.mount], check=False)
        subprocess.run(["losetup", "-d", self.device], check=False)


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

    def memory(self) -> None:
        for n in self.args.sizes:
            replay = self.path(f"replay-{n}.txt")
            edges = workload.generate_pulses(replay, days=n / PULSES_PER_DAY)
            for version, power in self.versions.items():
                label = f"mem-{version}-{n}"
                settings = self.replay_settings(label, replay, 0)
                argv = [PY, power, "--settings", settings, "--nodaemon", "--quiet"]
                run = procfs.run_child(argv, self.path(f"{label}.log"))
                self.check(run.returncode == 0, f"{label}: exit {run.returncode}")
                csv = self.path(label, "power.csv")
                for ok, fact in workload.check_csv(csv, edges, None):
                    self.check(ok, f"{label} CSV: {fact}")
                self.results[version].setdefault("memory", {})[str(n)] = {
                    "edges": edges,
                    "peak_rss_mib": run.maxrss_kib / 1024,
                    "wall_s": run.wall_s,
                    "cpu_s_per_100k": run.cpu_s / edges * 100_000,
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

    def live(self, influx: Optional[Influx], disk: Optional[LoopDisk]) -> None:
        meter = {"name": workload.METER_NAME, "pulses_per_kwh": 1000}
        meter.update(idle_timeout_s=workload.IDLE_TIMEOUT_S, estimate_fall=0)
        for version, power in self.versions.items():
            label = f"live-{version}"
            base = disk.mount if disk is not None else self.tmp
            data = os.path.join(base, label)
            csv = os.path.join(data, "power.csv")
            sinks: List[dict] = [{"type": "file", "path": csv}]
            if influx is not None:
                sinks.append(
                    {"type": "influxdb", "port": influx.port, "database": label}
                )
            pid, pidfile, log = self.daemon(
                label, power, data, meter, 3600.0, LEDS=None, SINKS=sinks
            )
            try:
                time.sleep(self.args.settle)
                rows0 = len(workload.csv_rows(csv))
                disk0 = disk.stats() if disk is not None else (0, 0, 0)
                cpu0, ctx0 = procfs.run_ns(pid), procfs.context_switches(pid)
                t0 = time.monotonic()
                time.sleep(self.args.live_s)
                cpu1, ctx1 = procfs.run_ns(pid), procfs.context_switches(pid)
                disk1 = disk.stats() if disk is not None else (0, 0, 0)
                rows1 = len(workload.csv_rows(csv))
                window = time.monotonic() - t0
            finally:
                procfs.stop_daemon(pid)
            n = rows1 - rows0
            self.check(n > 0, f"{label}: {n} readings in {window:.0f} s")
            if n <= 0:
                continue
            for ok, fact in workload.check_csv(csv):
                self.check(ok, f"{label} CSV: {fact}")
            out = {
                "window_s": window,
                "readings": n,
                "cpu_pct": 100.0 * (cpu1 - cpu0) / 1e9 / window,
                "cpu_ms_per_reading": (cpu1 - cpu0) / 1e6 / n,
                "wakeups_per_s": (ctx1 - ctx0) / window,
            }
            if disk is not None:
                out["device_writes_per_reading"] = (disk1[0] - disk0[0]) / n
                out["device_bytes_per_reading"] = (disk1[1] - disk0[1]) / n
                out["syncs_per_reading"] = (disk1[2] - disk0[2]) / n
                out["syncs_per_s"] = (disk1[2] - disk0[2]) / window
            self.results[version]["live_1_per_s"] = out

    # 4. 120 pulses a second -----------------------------------------------------

    def fast(self) -> None:
        meter = {"name": workload.METER_NAME, "pulses_per_kwh": 10_000}
        meter.update(max_power_w=60_000, debounce_ms=2, estimate_fall=0)
        leds = {"detect": 18, "ready": 23, "blink_ms": 100}
        for version, power in self.versions.items():
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
    lines = [f"before: {r['before_ref']}; after: this tree", ""]

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
    row("first reading after start, s", ["first_reading_s"], ".3f")
    live = ["live_1_per_s"]
    row("1/s: syncs per reading", live + ["syncs_per_reading"], ".2f")
    row(
        "1/s: block-device bytes per reading",
        live + ["device_bytes_per_reading"],
        ".0f",
    )
    row("1/s: CPU % of a core", live + ["cpu_pct"], ".3f")
    row("1/s: CPU ms per reading", live + ["cpu_ms_per_reading"], ".2f")
    row("1/s: wakeups per s", live + ["wakeups_per_s"], ".1f")
    fast = ["live_120_per_s"]
    row("120/s: readings per s", fast + ["readings_per_s"], ".1f")
    row("120/s: wakeups per reading", fast + ["wakeups_per_reading"], ".2f")
    row("120/s: CPU % of a core", fast + ["cpu_pct"], ".2f")
    row("120/s: CPU ms per reading", fast + ["cpu_ms_per_reading"], ".3f")
    lines.append("")
    for ok, text in checks:
        lines.append(f"  {'ok  ' if ok else 'FAIL'} {text}")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", default=BEFORE_REF, help="git ref to compare with")
    p.add_argument("--sizes", type=int, nargs="+", default=[50_000, 200_000, 1_000_000])
    p.add_argument("--settle", type=float, default=5.0)
    p.add_argument("--live-s", type=float, default=60.0)
    p.add_argument("--fast-s", type=float, default=20.0)
    p.add_argument("--parts", nargs="+", default=["memory", "first", "live", "fast"])
    return p.parse_args()


def main() -> int:
    args = parse_args()
    bench = Lean(args)
    influx = disk = None
    try:
        if "memory" in args.parts:
            bench.memory()
        if "first" in args.parts:
            bench.first_reading()
        if "live" in args.parts:
            influx = Influx(Path(bench.path("influx")))
            influx.start()
            if os.geteuid() == 0:
                disk = LoopDisk(bench.tmp)
            bench.live(influx, disk)
        if "fast" in args.parts:
            bench.fast()
    finally:
        if influx is not None:
            influx.stop()
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
