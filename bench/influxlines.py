"""The InfluxDB sink's CPU: its own line protocol encoder against the
client's encoding of point dicts (issue 11), against a real influxd.

The readings are the week of bench/run.py through the pure meter (about
200,000). Each round, interleaved and best of --rounds kept, writes them in
batches of 1000 (the sink's default batch size) into a fresh database:

- before: what the sink did until it encoded lines itself: its point dicts
  through InfluxDBClient.write_points (the client's make_lines);
- after: InfluxDBSink.write (its own lines, write_points(protocol='line')).

CPU is this process's (time.process_time: the sink's side only; influxd is
another process). Encoding alone is timed too, without the network. Every
run must store every reading (count of pulses and of estimates in the
database). Prints a report, writes JSON to bench/results/influxlines.json,
exits 1 if a check failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import pytest  # noqa: E402,F401 (tests/servers.py reports a missing server with it)
import run as runbench  # noqa: E402
import workload  # noqa: E402
from influxdb.line_protocol import make_lines  # noqa: E402
from servers import Influx  # noqa: E402

from core.meter import NS_PER_S, Meter, MeterConfig, Reading  # noqa: E402
from core.options import validate  # noqa: E402
from core.replayfile import read_pulses  # noqa: E402
from sinks.base import COMMON_OPTIONS  # noqa: E402
from sinks.influxdb import InfluxDBSink  # noqa: E402

RESULTS = os.path.join(HERE, "results", "influxlines.json")
BATCH = 1000


def readings(replay: str) -> List[Reading]:
    """The week's readings, with the estimates between pulses (the default
    meter settings), so both kinds of point are written."""
    meter = Meter(MeterConfig(name=workload.METER_NAME, idle_timeout_s=300.0))
    out: List[Reading] = []
    for _, t in read_pulses(replay):
        out += meter.edge(int(t * NS_PER_S), t)
    return out


def make_sink(port: int, database: str) -> InfluxDBSink:
    given = {"type": "influxdb", "host": "127.0.0.1", "port": port}
    given.update(database=database, tags={"site": "home"})
    options = validate("SINKS[0]", given, {**COMMON_OPTIONS, **InfluxDBSink.OPTIONS})
    return InfluxDBSink("influxdb", options, logging.getLogger("bench"))


def before(sink: InfluxDBSink, batch: Sequence[Reading]) -> None:
    """The sink's write as it was: point dicts, encoded by the client."""
    sink.client.write_points(
        sink.points(batch),
        time_precision="ms",
        retention_policy=sink.options["retention_policy"],
    )


def after(sink: InfluxDBSink, batch: Sequence[Reading]) -> None:
    sink.write(batch)


def encode_before(sink: InfluxDBSink, batch: Sequence[Reading]) -> None:
    make_lines({"points": sink.points(batch)}, "ms").encode()


def encode_after(sink: InfluxDBSink, batch: Sequence[Reading]) -> None:
    ("\n".join(sink.lines(batch)) + "\n").encode()


def timed(
    write: Callable[[InfluxDBSink, Sequence[Reading]], None],
    sink: InfluxDBSink,
    rows: List[Reading],
) -> Dict[str, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(rows), BATCH):
        write(sink, rows[i : i + BATCH])
    return {
        "cpu_s": time.process_time() - cpu,
        "wall_s": time.perf_counter() - wall,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--days", type=float, default=7.0, help="days of pulses (7)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    args = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="power-influxlines-")
    checks: List[Any] = []
    runs: Dict[str, List[Dict[str, float]]] = {}
    server = Influx(Path(tmp) / "influx")
    try:
        replay = os.path.join(tmp, "week.txt")
        workload.generate_pulses(replay, days=args.days)
        rows = readings(replay)
        estimates = sum(1 for r in rows if r.estimate)
        server.start()
        for round_ in range(args.rounds):
            order = [("before", before), ("after", after)]
            for name, write in order if round_ % 2 == 0 else order[::-1]:
                db = f"{name}{round_}"
                sink = make_sink(server.port, db)
                sink.open()
                encode = encode_before if name == "before" else encode_after
                try:
                    runs.setdefault(name, []).append(timed(write, sink, rows))
                    got = timed(encode, sink, rows)
                    runs.setdefault("encode_" + name, []).append(got)
                finally:
                    sink.close()
                n = server.series('SELECT count("pulses") FROM "power"', db)
                e = server.series('SELECT count("estimate") FROM "power"', db)
                stored = (n[0]["count"] if n else 0, e[0]["count"] if e else 0)
                want = (len(rows) - estimates, estimates)
                ok = stored == want
                checks.append((ok, f"{name} round {round_ + 1}: stored {stored}"))
                server.query(f'DROP DATABASE "{db}"', db)
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    best = {k: min(v, key=lambda r: r["cpu_s"]) for k, v in runs.items()}
    n = len(rows)
    result = {
        "machine": {
            "cpu": runbench.cpu_model(),
            "kernel": platform.release(),
            "python": platform.python_version(),
        },
        "readings": n,
        "estimates": estimates,
        "batch": BATCH,
        "rounds": args.rounds,
        "runs": runs,
        "best": {
            k: {**v, "cpu_us_per_reading": v["cpu_s"] / n * 1e6}
            for k, v in best.items()
        },
        "checks": [{"ok": ok, "check": text} for ok, text in checks],
    }
    b = result["best"]
    lines = [
        f"InfluxDB sink CPU, {n:,} readings ({estimates:,} estimates) in batches "
        f"of {BATCH}, best of {args.rounds} interleaved rounds, real influxd",
        f"  {'':44}{'CPU s':>7}{'us/reading':>11}{'wall s':>8}",
    ]
    for key, label in (
        ("before", "write, client encodes point dicts (before)"),
        ("after", "write, the sink's own lines (after)"),
        ("encode_before", "encoding only: points + make_lines"),
        ("encode_after", "encoding only: the sink's lines"),
    ):
        x = b[key]
        lines.append(
            f"  {label:44}{x['cpu_s']:7.2f}{x['cpu_us_per_reading']:11.2f}"
            f"{x['wall_s']:8.2f}"
        )
    lines.append(
        f"  write CPU after/before: {b['after']['cpu_s'] / b['before']['cpu_s']:.2f}; "
        f"encoding after/before: "
        f"{b['encode_after']['cpu_s'] / b['encode_before']['cpu_s']:.2f}"
    )
    lines += ["", "Checks"]
    lines += [f"  {'ok  ' if ok else 'FAIL'} {text}" for ok, text in checks]
    print("\n".join(lines))
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    return 0 if all(ok for ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
