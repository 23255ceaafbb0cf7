"""CPU per reading of the week replay beside its same-output floor (issue 11).

In one run, interleaved round by round (the order rotates each round) and
pinned to one CPU, on the week of pulses bench/run.py replays:

- power.py --replay WEEK --speed 0 --nodaemon, with the console line per
  reading (to /dev/null) and with -q;
- bench/inprocess.py service (the daemon's Service, no command line) and
  pipeline (Meter, Journal and FileSink driven in one thread);
- bench/floor.py: the least work that gives the same output;
- bench/baseline.py (the seed-shaped monitor), fewer rounds as it is slow.

CPU is user + system time of the whole process (wait4), start-up included,
divided by the readings; the best of the rounds is kept per variant (the
machine may be shared). A 2-pulse replay of power.py -q and of the floor
gives their fixed cost, reported apart. Every CSV must be byte-identical to
the floor's, and the floor's journal must hold the daemon's readings.

Targets: power.py's CPU per reading at most 1.5 times the floor's (with the
console and with -q); the week replay at least 10 times the baseline's
speed with the console, 12 times with -q (edges per second of wall time, as
bench/run.py compares them).

Prints a report, writes JSON to bench/results/cpu.json, exits 1 if a check
failed (a missed target is reported, not an error).
"""

from __future__ import annotations

import argparse
import datetime
import filecmp
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from typing import Any, Dict, List, Tuple

import procfs
import run as runbench
import workload
from procfs import ChildRun, run_child

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results", "cpu.json")
PY = sys.executable
POWER = runbench.POWER

TARGET_FLOOR_RATIO = 1.5
TARGET_CONSOLE_X = 10.0
TARGET_QUIET_X = 12.0

Result = Dict[str, Any]
VARIANTS = ("console", "quiet", "service", "pipeline", "floor")
LABELS = {
    "console": "power.py --nodaemon, console line per reading",
    "quiet": "power.py --nodaemon -q",
    "service": "inprocess.py service (no CLI, no console)",
    "pipeline": "inprocess.py pipeline (one thread)",
    "floor": "floor.py (same output, one thread)",
    "baseline": "baseline.py (seed-shaped)",
}


class CpuBench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="power-cpu-")
        self.cpu = min(os.sched_getaffinity(0))
        self.one = {self.cpu}
        self.week = os.path.join(self.tmp, "week.txt")
        self.two = os.path.join(self.tmp, "two.txt")
        self.runs: Dict[str, List[ChildRun]] = {}
        self.checks: List[Tuple[bool, str]] = []
        self.count = 0

    def check(self, ok: bool, text: str) -> bool:
        self.checks.append((ok, text))
        return ok

    def fresh(self, label: str) -> str:
        self.count += 1
        data = os.path.join(self.tmp, f"{label}-{self.count}")
        os.makedirs(data)
        return data

    def child(self, label: str, argv: List[str], data: str) -> ChildRun:
        log = os.path.join(data, "stderr.log")
        run = run_child(argv, log, cpus=self.one, capture_stdout=True)
        if not self.check(run.returncode == 0, f"{label}: exit {run.returncode}"):
            print(procfs.tail(log), file=sys.stderr)
        return run

    def settings(self, data: str, replay: str) -> str:
        path = os.path.join(data, "settings.py")
        csv = os.path.join(data, "power.csv")
        workload.write_settings(path, data, csv, replay=replay)
        return path

    def power(self, replay: str, quiet: bool) -> Tuple[ChildRun, str]:
        data = self.fresh("quiet" if quiet else "console")
        argv = [PY, POWER, "--settings", self.settings(data, replay)]
        argv += ["--replay", replay, "--speed", "0", "--nodaemon"]
        label = "quiet" if quiet else "console"
        run = self.child(label, argv + ["-q"] if quiet else argv, data)
        return run, data

    def variant(self, name: str, replay: str) -> Tuple[ChildRun, str]:
        if name in ("console", "quiet"):
            return self.power(replay, name == "quiet")
        data = self.fresh(name)
        if name == "service":
            argv = [PY, os.path.join(HERE, "inprocess.py"), "service"]
            argv += [self.settings(data, replay), replay]
        elif name == "pipeline":
            argv = [PY, os.path.join(HERE, "inprocess.py"), "pipeline", replay, data]
        elif name == "floor":
            argv = [PY, os.path.join(HERE, "floor.py"), replay, data]
        else:
            csv = os.path.join(data, "power.csv")
            argv = [PY, os.path.join(HERE, "baseline.py"), replay, csv]
        return self.child(name, argv, data), data

    def compare(self, name: str, data: str, floor: str) -> None:
        """The variant's CSV is the floor's, byte for byte."""
        mine = os.path.join(data, "power.csv")
        same = filecmp.cmp(mine, os.path.join(floor, "power.csv"), shallow=False)
        self.check(same, f"{name}: CSV byte-identical to the floor's")

    def compare_journals(self, name: str, data: str, floor: str) -> None:
        query = (
            "SELECT time, meter, pulses, energy_kwh, power_w, interval_s, estimate"
            " FROM readings ORDER BY seq"
        )

        def rows(d: str) -> List[tuple]:
            conn = sqlite3.connect(os.path.join(d, "journal.sqlite3"))
            try:
                return conn.execute(query).fetchall()
            finally:
                conn.close()

        same = rows(data) == rows(floor)
        self.check(same, f"{name}: journal readings the same as the floor's")

    def measure(self) -> Result:
        t0 = time.perf_counter()
        edges = workload.generate_pulses(self.week, days=self.args.days)
        with open(self.two, "w") as f:
            f.write("1714953600.000\n1714953603.000\n")
        floor_data = ""
        for round_ in range(self.args.rounds):
            # The order turns each round; the floor comes first in the first
            # round, as the others are compared with its output.
            shift = round_ % len(VARIANTS)
            turn = list(VARIANTS[shift:] + VARIANTS[:shift])
            if round_ == 0:
                turn = ["floor"] + [v for v in turn if v != "floor"]
            for name in turn:
                print(f"cpu bench: round {round_ + 1} {name}", file=sys.stderr)
                run, data = self.variant(name, self.week)
                self.runs.setdefault(name, []).append(run)
                if round_ == 0 and name == "floor":
                    floor_data = data
                    continue  # kept for the comparisons
                if round_ == 0:
                    self.compare(name, data, floor_data)
                    self.compare_journals(name, data, floor_data)
                shutil.rmtree(data)
            if round_ < self.args.baseline_rounds:
                print(f"cpu bench: round {round_ + 1} baseline", file=sys.stderr)
                run, data = self.variant("baseline", self.week)
                self.runs.setdefault("baseline", []).append(run)
                if round_ == 0:
                    self.compare("baseline", data, floor_data)
                shutil.rmtree(data)
            for name in ("quiet", "floor"):  # fixed costs, interleaved too
                run, data = self.variant(name, self.two)
                self.runs.setdefault(f"{name}_fixed", []).append(run)
                shutil.rmtree(data)
        out: Result = {"edges": edges, "generate_s": time.perf_counter() - t0}
        for name, runs in self.runs.items():
            b = min(runs, key=lambda r: r.cpu_s)
            fast = min(r.wall_s for r in runs)
            out[name] = {
                "runs": len(runs),
                "cpu_s": b.cpu_s,
                "user_s": b.user_s,
                "sys_s": b.sys_s,
                "wall_s": fast,
                "cpu_s_all": [r.cpu_s for r in runs],
                "wall_s_all": [r.wall_s for r in runs],
            }
            if not name.endswith("_fixed"):
                out[name]["cpu_us_per_reading"] = b.cpu_s / edges * 1e6
                out[name]["edges_per_s"] = edges / fast
        for name in ("quiet", "floor"):
            steady = out[name]["cpu_s"] - out[f"{name}_fixed"]["cpu_s"]
            out[name]["steady_cpu_us_per_reading"] = steady / edges * 1e6
        floor_cpu = out["floor"]["cpu_s"]
        for name in VARIANTS + ("baseline",):
            out[name]["cpu_x_floor"] = out[name]["cpu_s"] / floor_cpu
        base = out["baseline"]["edges_per_s"]
        for name in VARIANTS:
            out[name]["x_baseline"] = out[name]["edges_per_s"] / base
            out[name]["cpu_x_baseline"] = out["baseline"]["cpu_s"] / out[name]["cpu_s"]
        return out


def report(r: Result, checks: List[Tuple[bool, str]]) -> str:
    m, c = r["machine"], r["cpu"]
    lines = [
        f"power CPU bench, {r['started']}",
        f"machine: {m['cpu']}, {m['nproc']} CPUs, kernel {m['kernel']}, "
        f"Python {m['python']}, SQLite {m['sqlite']}, tmp on {m['tmp_fs']}",
        f"workload: {c['edges']:,} edges ({r['settings']['days']:g} days as in "
        "bench/run.py), pinned to "
        f"one CPU; best of {r['settings']['rounds']} interleaved rounds "
        f"(baseline {r['settings']['baseline_rounds']})",
        "",
        f"  {'':48}{'CPU s':>7}{'us/reading':>11}{'x floor':>8}{'wall s':>8}"
        f"{'x base':>8}",
    ]
    for name in VARIANTS + ("baseline",):
        x = c[name]
        speed = f"{x['x_baseline']:8.1f}" if "x_baseline" in x else f"{'':8}"
        lines.append(
            f"  {LABELS[name]:48}{x['cpu_s']:7.2f}{x['cpu_us_per_reading']:11.2f}"
            f"{x['cpu_x_floor']:8.2f}{x['wall_s']:8.2f}{speed}"
        )
    for name in ("quiet", "floor"):
        lines.append(
            f"  fixed cost of {name} (2-pulse replay): "
            f"{c[name + '_fixed']['cpu_s']:.2f} s CPU; without it "
            f"{c[name]['steady_cpu_us_per_reading']:.2f} us/reading"
        )
    lines.append("")
    for name in ("console", "quiet"):
        ok = c[name]["cpu_x_floor"] <= TARGET_FLOOR_RATIO
        lines.append(
            f"  {LABELS[name]}: {c[name]['cpu_x_floor']:.2f} x the floor's CPU, "
            f"target <= {TARGET_FLOOR_RATIO:g}: {runbench.verdict(ok)}"
        )
    for name, target in (("console", TARGET_CONSOLE_X), ("quiet", TARGET_QUIET_X)):
        ok = c[name]["x_baseline"] >= target
        lines.append(
            f"  {LABELS[name]}: {c[name]['x_baseline']:.1f} x the baseline's speed, "
            f"target >= {target:g}: {runbench.verdict(ok)}"
        )
    lines += ["", "Checks"]
    lines += [f"  {'ok  ' if ok else 'FAIL'} {text}" for ok, text in checks]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--days", type=float, default=7.0, help="days of pulses (7)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (5)")
    p.add_argument(
        "--baseline-rounds", type=int, default=2, help="rounds with the baseline (2)"
    )
    p.add_argument("--keep", action="store_true", help="keep the temp directory")
    args = p.parse_args()
    args.baseline_rounds = max(1, min(args.baseline_rounds, args.rounds))
    bench = CpuBench(args)
    started = datetime.datetime.now(datetime.timezone.utc)
    results: Result = {
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "settings": vars(args),
        "targets": {
            "cpu_x_floor": TARGET_FLOOR_RATIO,
            "console_x_baseline": TARGET_CONSOLE_X,
            "quiet_x_baseline": TARGET_QUIET_X,
        },
    }
    machine = runbench.machine(bench)  # type: ignore[arg-type]
    results["machine"] = machine
    try:
        results["cpu"] = bench.measure()
    finally:
        if not args.keep:
            shutil.rmtree(bench.tmp, ignore_errors=True)
    results["checks"] = [{"ok": ok, "check": text} for ok, text in bench.checks]
    print(report(results, bench.checks))
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    print(f"\n(JSON in {RESULTS})")
    return 0 if all(ok for ok, _ in bench.checks) else 1


if __name__ == "__main__":
    sys.exit(main())
