"""power's benchmarks (`make bench`): the Speed targets of issue 2.

1. Throughput: a week of pulses (about 200,000 edges at 1000 pulses/kWh)
   replayed at --speed 0 through the real CLI (meter, journal, file sink),
   pinned to one CPU: edges/s, CPU s per 100,000 readings, peak RSS. For
   comparison, the same on every CPU, the daemon's Service without the
   command line and console, and the pipeline driven in one thread.
2. Baseline shaped like the original monitor on the same edges (see
   baseline.py), and the ratio power/baseline.
3. Idle: the detached daemon with no pulse due (simulated 1 W: one pulse an
   hour): CPU share and wakeups over 20 s; SIGTERM must end it within 0.5 s.
4. Disk: the detached daemon at one pulse a second (simulated 3600 W) with
   the file sink: bytes written per reading (/proc/<pid>/io).

Every CSV is checked (pulses 1..N once each, no spurious rows, the same rows
as the baseline computed independently). Prints a report, writes it as JSON
to bench/results/latest.json, exits 1 if a check failed (a missed speed
target is reported, not an error).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Set, Tuple

import baseline
import procfs
import workload
from procfs import ChildRun, run_child

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
POWER = os.path.join(ROOT, "src", "power.py")
RESULTS = os.path.join(HERE, "results", "latest.json")
PY = sys.executable

TARGET_EDGES_PER_S = 50_000
TARGET_RATIO = 5.0
TARGET_IDLE_PCT = 0.5
TARGET_STOP_S = 0.5
PARTS = ("throughput", "idle", "disk")

Result = Dict[str, Any]


class Bench:
    """One bench run: its temp directory, workload, results and checks."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="power-bench-")
        self.cpu = min(os.sched_getaffinity(0))
        self.one: Set[int] = {self.cpu}
        self.replay = os.path.join(self.tmp, "week.txt")
        self.edges = 0
        self.results: Result = {}
        self.checks: List[Tuple[bool, str]] = []

    def path(self, *parts: str) -> str:
        return os.path.join(self.tmp, *parts)

    def check(self, ok: bool, text: str) -> bool:
        self.checks.append((ok, text))
        return ok

    def check_csv(self, label: str, csv: str, reference: Optional[List[str]]) -> None:
        for ok, fact in workload.check_csv(csv, self.edges, reference):
            self.check(ok, f"{label}: {fact}")

    # Throughput ---------------------------------------------------------------

    def figures(self, run: ChildRun, edges: int) -> Result:
        return {
            "edges": edges,
            "wall_s": run.wall_s,
            "user_s": run.user_s,
            "sys_s": run.sys_s,
            "edges_per_s": edges / run.wall_s,
            "cpu_s_per_100k": run.cpu_s / edges * 100_000 if edges else None,
            "peak_rss_kib": run.maxrss_kib,
        }

    def child(
        self, label: str, argv: List[str], cpus: Optional[Set[int]], **kw: Any
    ) -> ChildRun:
        log = self.path(f"{label}.log")
        run = run_child(argv, log, cpus=cpus, **kw)
        if not self.check(run.returncode == 0, f"{label}: exit {run.returncode}"):
            print(procfs.tail(log), file=sys.stderr)
        return run

    def run_cli(
        self,
        label: str,
        cpus: Optional[Set[int]],
        replay: str,
        console: bool = False,
    ) -> ChildRun:
        """power.py --replay at speed 0 in the foreground, fresh DATA_DIR:
        meter, journal and file sink (with --quiet), or with the console
        line per reading too."""
        data = self.path(label)
        os.makedirs(data)
        settings = self.path(f"{label}-settings.py")
        csv = os.path.join(data, "power.csv")
        workload.write_settings(settings, data, csv, replay=replay)
        argv = [PY, POWER, "--settings", settings, "--replay", replay]
        argv += ["--speed", "0", "--nodaemon"]
        return self.child(label, argv if console else argv + ["--quiet"], cpus)

    def throughput(self) -> None:
        t0 = time.perf_counter()
        self.edges = workload.generate_pulses(self.replay, days=self.args.days)
        self.results["workload"] = {
            "edges": self.edges,
            "days": self.args.days,
            "pulses_per_kwh": workload.PULSES_PER_KWH,
            "mean_w": workload.MEAN_W,
            "generate_s": time.perf_counter() - t0,
        }
        edges = self.edges
        out: Result = {}
        self.results["throughput"] = out

        csv = self.path("baseline.csv")
        argv = [PY, os.path.join(HERE, "baseline.py"), self.replay, csv]
        base = self.child("baseline", argv, self.one, capture_stdout=True)
        out["baseline"] = self.figures(base, edges)
        out["baseline"]["blink_s"] = baseline.BLINK_S
        self.check_csv("baseline CSV", csv, None)
        reference = workload.csv_rows(csv)

        runs = []
        for i in range(1, self.args.repeat + 1):
            label = f"cli-{i}"
            runs.append(self.figures(self.run_cli(label, self.one, self.replay), edges))
            self.check_csv(f"CLI run {i} CSV", self.path(label, "power.csv"), reference)
        best = min(runs, key=lambda r: r["wall_s"])
        out["cli"] = {**best, "runs_wall_s": [r["wall_s"] for r in runs]}

        tiny = self.path("two.txt")
        with open(tiny, "w") as f:
            f.write("1714953600.000\n1714953603.000\n")
        fixed = self.run_cli("cli-fixed", self.one, tiny)
        out["cli_fixed"] = {"wall_s": fixed.wall_s, "cpu_s": fixed.cpu_s}
        steady = best["wall_s"] - fixed.wall_s
        out["cli"]["steady_edges_per_s"] = edges / steady if steady > 0 else None

        lines = self.run_cli("cli-console", self.one, self.replay, console=True)
        out["cli_console"] = self.figures(lines, edges)
        console_csv = self.path("cli-console", "power.csv")
        self.check_csv("CLI with console CSV", console_csv, None)

        every = self.run_cli("cli-all", None, self.replay)
        out["cli_all_cpus"] = self.figures(every, edges)
        out["cli_all_cpus"]["cpus"] = len(os.sched_getaffinity(0))
        self.check_csv("CLI on all CPUs CSV", self.path("cli-all", "power.csv"), None)

        data = self.path("service")
        os.makedirs(data)
        settings = self.path("service-settings.py")
        csv = os.path.join(data, "power.csv")
        workload.write_settings(settings, data, csv, replay=self.replay)
        argv = [PY, os.path.join(HERE, "inprocess.py"), "service", settings]
        svc = self.child("service", argv + [self.replay], self.one)
        out["service"] = self.figures(svc, edges)
        self.check_csv("Service CSV", csv, reference)

        data = self.path("pipeline")
        argv = [PY, os.path.join(HERE, "inprocess.py"), "pipeline", self.replay, data]
        pipe = self.child("pipeline", argv, self.one, capture_stdout=True)
        out["pipeline"] = self.figures(pipe, edges)
        if pipe.returncode == 0:
            stages = json.loads(pipe.stdout)
            out["pipeline"]["stages_s"] = {
                k[:-2]: v for k, v in stages.items() if k.endswith("_s")
            }
        self.check_csv("pipeline CSV", os.path.join(data, "power.csv"), reference)

        out["ratio"] = best["edges_per_s"] / out["baseline"]["edges_per_s"]

    # Daemon runs -----------------------------------------------------------

    def daemon(self, label: str, watts: float) -> Tuple[int, str, str, str]:
        """Start power detached on a simulated meter of `watts` (as
        --simulate WATTS does, but seeded): pid, csv, log, pidfile."""
        data = self.path(label)
        os.makedirs(data)
        settings = self.path(f"{label}-settings.py")
        csv = os.path.join(data, "power.csv")
        workload.write_settings(settings, data, csv, watts=watts)
        pidfile = os.path.join(data, "power.pid")
        log = os.path.join(data, "power.log")
        argv = [PY, POWER, "--settings", settings]
        argv += ["--pidfile", pidfile, "--logfile", log]
        return procfs.start_daemon(argv, pidfile), csv, log, pidfile

    def stop(self, label: str, pid: int, log: str, pidfile: str) -> Optional[float]:
        took = procfs.stop_daemon(pid)
        self.check(
            took is not None and took <= TARGET_STOP_S,
            f"{label}: SIGTERM to exit "
            + ("over 5 s" if took is None else f"{took:.2f} s")
            + f" (at most {TARGET_STOP_S:g} s)",
        )
        time.sleep(0.1)
        self.check(not os.path.exists(pidfile), f"{label}: pidfile removed on exit")
        with open(log, errors="replace") as f:
            errors = [line for line in f if " ERROR " in line or "Traceback" in line]
        first = f": {errors[0].strip()}" if errors else ""
        self.check(not errors, f"{label}: no ERROR in its log{first}")
        return took

    def idle(self) -> None:
        pid, csv, log, pidfile = self.daemon("idle", 1.0)
        try:
            time.sleep(self.args.settle)
            t0 = time.monotonic()
            cpu0, ns0 = procfs.cpu_ticks_s(pid), procfs.run_ns(pid)
            ctx0 = procfs.context_switches(pid)
            time.sleep(self.args.idle_s)
            cpu1, ns1 = procfs.cpu_ticks_s(pid), procfs.run_ns(pid)
            ctx1 = procfs.context_switches(pid)
            window = time.monotonic() - t0
            threads = len(os.listdir(f"/proc/{pid}/task"))
            rss = procfs.status_kib(pid, "VmRSS")
        finally:
            took = self.stop("idle daemon", pid, log, pidfile)
        rows = len(workload.csv_rows(csv))
        self.check(rows == 0, f"idle daemon: {rows} readings while no pulse was due")
        self.results["idle"] = {
            "window_s": window,
            "cpu_s": cpu1 - cpu0,
            "cpu_pct": 100.0 * (cpu1 - cpu0) / window,
            "schedstat_cpu_s": (ns1 - ns0) / 1e9,
            "schedstat_cpu_pct": 100.0 * (ns1 - ns0) / 1e9 / window,
            "wakeups_per_s": (ctx1 - ctx0) / window,
            "threads": threads,
            "rss_kib": rss,
            "stop_s": took,
        }

    def disk(self) -> None:
        pid, csv, log, pidfile = self.daemon("disk", 3600.0)
        data = os.path.dirname(csv)
        files = [csv] + [
            os.path.join(data, "journal.sqlite3" + s) for s in ("", "-wal", "-shm")
        ]

        def snapshot() -> Tuple[Dict[str, int], int, List[int]]:
            sizes = [os.path.getsize(p) if os.path.exists(p) else 0 for p in files]
            return procfs.io_counters(pid), len(workload.csv_rows(csv)), sizes

        try:
            time.sleep(self.args.settle)
            io0, rows0, sizes0 = snapshot()
            t0 = time.monotonic()
            time.sleep(self.args.disk_s)
            io1, rows1, sizes1 = snapshot()
            window = time.monotonic() - t0
            peak = procfs.status_kib(pid, "VmHWM")
        finally:
            self.stop("disk daemon", pid, log, pidfile)
        n = rows1 - rows0
        if not self.check(n > 0, f"disk daemon: {n} readings in {window:.0f} s"):
            return
        for ok, fact in workload.check_csv(csv):
            self.check(ok, f"disk daemon CSV: {fact}")
        grow = [b - a for a, b in zip(sizes0, sizes1)]
        self.results["disk"] = {
            "window_s": window,
            "readings": n,
            "peak_rss_kib": peak,
            "write_bytes_per_reading": (io1["write_bytes"] - io0["write_bytes"]) / n,
            "wchar_per_reading": (io1["wchar"] - io0["wchar"]) / n,
            "write_calls_per_reading": (io1["syscw"] - io0["syscw"]) / n,
            "csv_bytes_per_reading": grow[0] / n,
            "journal_bytes_per_reading": sum(grow[1:3]) / n,
            "sizes_after": dict(zip((os.path.basename(p) for p in files), sizes1)),
        }


# Machine -----------------------------------------------------------------------


def cpu_model() -> str:
    keys = ("model name", "Hardware", "Model", "cpu model")
    found: Dict[str, str] = {}
    with open("/proc/cpuinfo") as f:
        for line in f:
            key, _, value = line.partition(":")
            found.setdefault(key.strip(), value.strip())
    return next((found[k] for k in keys if found.get(k)), platform.processor())


def filesystem(path: str) -> str:
    """The type of the filesystem holding `path` (longest mount prefix)."""
    best, kind = "", "?"
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            mount = fields[1]
            inside = path == mount or path.startswith(mount.rstrip("/") + "/")
            if inside and len(mount) > len(best):
                best, kind = mount, fields[2]
    return kind


def machine(bench: Bench) -> Result:
    return {
        "cpu": cpu_model(),
        "nproc": os.cpu_count(),
        "cpus_allowed": len(os.sched_getaffinity(0)),
        "pinned_cpu": bench.cpu,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "kernel": platform.release(),
        "tmp": bench.tmp,
        "tmp_fs": filesystem(bench.tmp),
    }


# Report ------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def report_throughput(r: Result) -> List[str]:
    m, w, t = r["machine"], r["workload"], r["throughput"]
    lines = [
        f"workload: {w['edges']:,} edges, {w['days']:g} days at "
        f"{w['pulses_per_kwh']} pulses/kWh, mean {w['mean_w']:g} W "
        f"(generated in {w['generate_s']:.1f} s)",
        "",
        f"Throughput, replay --speed 0 into the file sink, pinned to CPU "
        f"{m['pinned_cpu']} unless said",
        f"  {'':44}{'edges/s':>9}{'wall s':>8}{'CPU s':>7}"
        f"{'CPU s/100k':>11}{'peak RSS':>12}",
    ]

    def row(label: str, x: Result) -> None:
        cpu = x["user_s"] + x["sys_s"]
        lines.append(
            f"  {label:44}{x['edges_per_s']:9,.0f}{x['wall_s']:8.2f}{cpu:7.2f}"
            f"{x['cpu_s_per_100k']:11.2f}{x['peak_rss_kib']:>8,} KiB"
        )

    cli = t["cli"]
    runs = ", ".join(f"{s:.2f}" for s in cli["runs_wall_s"])
    row(f"power.py --nodaemon -q (best of {len(cli['runs_wall_s'])})", cli)
    lines.append(f"    runs: {runs} s wall")
    fixed = t["cli_fixed"]
    lines.append(
        f"    fixed cost (a 2-pulse replay): {fixed['wall_s']:.2f} s wall, "
        f"{fixed['cpu_s']:.2f} s CPU; without it {cli['steady_edges_per_s']:,.0f}"
        " edges/s"
    )
    row("power.py --nodaemon, a console line per reading", t["cli_console"])
    every = t["cli_all_cpus"]
    row(f"power.py --nodaemon -q on all {every['cpus']} CPUs", every)
    row("Service in-process (no CLI, no console sink)", t["service"])
    pipe = t["pipeline"]
    row("pipeline in one thread (Meter+Journal+File)", pipe)
    if "stages_s" in pipe:
        names = {"parse_meter": "parse + meter", "journal_commit": "journal commit"}
        stages = pipe["stages_s"].items()
        parts = [f"{names.get(k, k.replace('_', ' '))} {v:.2f} s" for k, v in stages]
        lines.append("    stages: " + ", ".join(parts))
    row("baseline: open/append/close, thread/flash", t["baseline"])
    blink = t["baseline"]["blink_s"] * 1000
    lines.append(f"    (LED thread sleeps {blink:g} ms, not the original ~100 ms)")
    ok_speed = cli["edges_per_s"] >= TARGET_EDGES_PER_S
    ok_ratio = t["ratio"] >= TARGET_RATIO
    lines += [
        f"  power.py, one core: {cli['edges_per_s']:,.0f} edges/s, "
        f"target >= {TARGET_EDGES_PER_S:,}: {verdict(ok_speed)}",
        f"  power.py / baseline: {t['ratio']:.1f}x, target >= {TARGET_RATIO:g}x: "
        f"{verdict(ok_ratio)}",
        f"  CPU per 100,000 readings: {cli['cpu_s_per_100k']:.2f} s; "
        f"peak RSS {cli['peak_rss_kib']:,} KiB",
    ]
    return lines


def report_idle(r: Result) -> List[str]:
    i = r["idle"]
    stop = i["stop_s"]
    worst = max(i["cpu_pct"], i["schedstat_cpu_pct"])  # ticks are 10 ms coarse
    return [
        "",
        f"Idle, detached daemon, simulated 1 W (no pulse for an hour), "
        f"{i['window_s']:.0f} s after {r['settings']['settle']:g} s",
        f"  CPU share: {i['cpu_pct']:.3f} % (utime+stime {i['cpu_s']:.2f} s; "
        f"schedstat {i['schedstat_cpu_pct']:.3f} %), target < "
        f"{TARGET_IDLE_PCT:g} %: {verdict(worst < TARGET_IDLE_PCT)}",
        f"  wakeups: {i['wakeups_per_s']:.1f}/s over {i['threads']} threads; "
        f"RSS {i['rss_kib']:,} KiB",
        "  SIGTERM to exit: "
        + ("over 5 s" if stop is None else f"{stop:.2f} s")
        + f", target <= {TARGET_STOP_S:g} s: "
        + verdict(stop is not None and stop <= TARGET_STOP_S),
    ]


def report_disk(r: Result) -> List[str]:
    d = r["disk"]
    return [
        "",
        f"Disk, detached daemon, simulated 3600 W (1 pulse/s), seed "
        f"{workload.SEED}, file sink, {d['window_s']:.0f} s",
        f"  readings: {d['readings']} ({d['readings'] / d['window_s']:.2f}/s); "
        f"peak RSS {d['peak_rss_kib']:,} KiB",
        f"  written to storage (write_bytes): "
        f"{d['write_bytes_per_reading']:,.0f} B per reading",
        f"  written by syscalls (wchar): {d['wchar_per_reading']:,.0f} B in "
        f"{d['write_calls_per_reading']:.1f} calls per reading",
        f"  files grew per reading: CSV {d['csv_bytes_per_reading']:.0f} B, "
        f"journal + WAL {d['journal_bytes_per_reading']:,.0f} B",
    ]


def report(r: Result, checks: List[Tuple[bool, str]]) -> str:
    m = r["machine"]
    lines = [
        f"power bench, {r['started']}",
        f"machine: {m['cpu']}, nproc {m['nproc']}, Python {m['python']}, "
        f"SQLite {m['sqlite']}, Linux {m['kernel']}, tmp on {m['tmp_fs']}",
    ]
    if "throughput" in r:
        lines += report_throughput(r)
    if "idle" in r:
        lines += report_idle(r)
    if "disk" in r:
        lines += report_disk(r)
    lines += ["", "Checks"]
    lines += [f"  {'ok  ' if ok else 'FAIL'} {text}" for ok, text in checks]
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--days", type=float, default=7.0, help="days of pulses (7)")
    p.add_argument("--repeat", type=int, default=3, help="CLI runs, best kept (3)")
    p.add_argument("--idle-s", type=float, default=20.0, help="idle window (20)")
    p.add_argument("--disk-s", type=float, default=30.0, help="disk window (30)")
    p.add_argument("--settle", type=float, default=2.0, help="daemon settle (2)")
    p.add_argument("--keep", action="store_true", help="keep the temp directory")
    p.add_argument(
        "--only",
        default=",".join(PARTS),
        help=f"comma-separated parts to run (default {','.join(PARTS)})",
    )
    return p.parse_args()


def main() -> int:
    args = parse_args()
    unknown = set(args.only.split(",")) - set(PARTS)
    if unknown:
        print(f"run.py: --only: unknown part(s) {', '.join(sorted(unknown))}")
        return 2
    bench = Bench(args)
    started = datetime.datetime.now(datetime.timezone.utc)
    bench.results.update(
        started=started.strftime("%Y-%m-%d %H:%M UTC"),
        machine=machine(bench),
        settings=vars(args),
        targets={
            "edges_per_s": TARGET_EDGES_PER_S,
            "ratio": TARGET_RATIO,
            "idle_cpu_pct": TARGET_IDLE_PCT,
            "stop_s": TARGET_STOP_S,
        },
    )
    t0 = time.perf_counter()
    try:
        for part in args.only.split(","):
            print(f"power bench: {part} ...", file=sys.stderr, flush=True)
            getattr(bench, part)()
    finally:
        if not args.keep:
            shutil.rmtree(bench.tmp, ignore_errors=True)
    bench.results["bench_s"] = time.perf_counter() - t0
    bench.results["checks"] = [{"ok": ok, "check": text} for ok, text in bench.checks]
    print(report(bench.results, bench.checks))
    print(f"\n(bench took {bench.results['bench_s']:.0f} s; JSON in {RESULTS})")
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump(bench.results, f, indent=2)
        f.write("\n")
    return 0 if all(ok for ok, _ in bench.checks) else 1


if __name__ == "__main__":
    sys.exit(main())
