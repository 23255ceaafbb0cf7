"""power's own code without the command line, to separate its costs.

Usage: inprocess.py pipeline REPLAY DATA_DIR
       inprocess.py service SETTINGS REPLAY

`pipeline`: Meter, Journal and FileSink driven in one thread, no startup,
no threads: parse and meter every edge, group-commit the journal once a
second and, after each commit, hand the new rows to the file sink in batches
of 1000 as its runner would. Prints the edge count and the seconds of each
stage as JSON.

`service`: the daemon's Service (monitor, sink runner and LED threads) as a
detached daemon runs it: no console sink and no fork, replay at speed 0.
Prints the edge count as JSON; exits with the service's code.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Dict

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)

import config.settings  # noqa: E402
from core.journal import Journal, JournalReader, journal_path  # noqa: E402
from core.meter import NS_PER_S, Meter, MeterConfig  # noqa: E402
from core.replayfile import read_pulses  # noqa: E402
from service import logsetup  # noqa: E402
from service.runtime import Service  # noqa: E402
from sinks.file import FileSink  # noqa: E402

BATCH = 1000
COMMIT_EVERY_S = 1.0


def pipeline(replay: str, data_dir: str) -> Dict[str, float]:
    """Run every edge through meter, journal and file sink in one thread."""
    log = logging.getLogger("bench")
    os.makedirs(data_dir, exist_ok=True)
    path = journal_path(data_dir)
    # Pulses only, as the baseline writes them: no estimates between.
    meter = Meter(MeterConfig(name="bench", pulses_per_kwh=1000.0, estimate_fall=0.0))
    journal = Journal(path, log)
    sink = FileSink("file", {"path": os.path.join(data_dir, "power.csv")}, log)
    sink.open()
    reader = JournalReader(path, "file")
    stages = {"parse_meter_s": 0.0, "journal_commit_s": 0.0, "file_sink_s": 0.0}

    def commit_and_drain() -> None:
        t0 = time.perf_counter()
        journal.commit()
        t1 = time.perf_counter()
        while True:
            rows = reader.read(BATCH)
            if not rows:
                break
            sink.write([reading for _, reading in rows])
            reader.advance(rows[-1][0])
        t2 = time.perf_counter()
        stages["journal_commit_s"] += t1 - t0
        stages["file_sink_s"] += t2 - t1

    edges = 0
    last_commit = time.monotonic()
    chunk = time.perf_counter()
    append = journal.append
    for _, t in read_pulses(replay):
        for reading in meter.edge(int(t * NS_PER_S), t):
            append(reading)
        edges += 1
        if edges % 1024 == 0 and time.monotonic() - last_commit >= COMMIT_EVERY_S:
            stages["parse_meter_s"] += time.perf_counter() - chunk
            commit_and_drain()
            last_commit = time.monotonic()
            chunk = time.perf_counter()
    stages["parse_meter_s"] += time.perf_counter() - chunk
    commit_and_drain()
    sink.close()
    reader.close()
    journal.close()
    return {"edges": edges, **stages}


def service(settings_path: str, replay: str) -> int:
    """Run the daemon's Service on a replay at speed 0; its exit code."""
    settings = config.settings.load(settings_path)
    settings = config.settings.with_input(
        settings, "replay", {"path": replay, "speed": 0}
    )
    log = logsetup.configure(logging.INFO, True, None, settings.secrets)
    svc = Service(settings, log, console=False)
    try:
        svc.start()
        code = svc.wait()
    finally:
        svc.stop()
    edges = sum(getattr(backend, "count", 0) for backend in svc.inputs)
    print(json.dumps({"edges": edges}))
    return code


def main() -> int:
    mode, *args = sys.argv[1:]
    if mode == "pipeline":
        print(json.dumps(pipeline(*args)))
        return 0
    if mode == "service":
        return service(*args)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
