"""A same-output floor: the least work that gives the bytes a speed-0 replay
through the file sink leaves behind, in one thread.

Usage: floor.py REPLAY DATA_DIR. Prints {"edges": N, "readings": M} as JSON.

Only what the output needs: parse the replay file (the project's parser,
with its checks), run the pure meter (src/core/meter.py), one executemany per
commit of COMMIT_ROWS readings into a journal of the same schema and
settings (1 KiB pages, WAL, synchronous=FULL: the one sync per commit the
daemon's durability needs, as every sink may only see committed rows), and
after each commit the CSV lines, written and flushed to the kernel without a
sync of their own (the daemon's file sink does not sync either: the journal
has every row on disk first). No threads, queues, cursors, marks, LEDs,
logging or status. The bench checks that its CSV is byte-identical to the
daemon's and its journal holds the same readings.

The meter is set up as the bench's settings set it (bench/workload.py):
pulses only, no estimates, and the workload leaves no gap as long as the
idle timeout, so no tick is needed to give the daemon's rows.
"""

from __future__ import annotations

import json
import os
import sys

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)

import workload  # noqa: E402

from core.csvformat import HEADER, csv_line  # noqa: E402
from core.journal import SCHEMA, connect, journal_path  # noqa: E402
from core.meter import NS_PER_S, Meter, MeterConfig  # noqa: E402
from core.monitor import COMMIT_ROWS  # noqa: E402
from core.replayfile import read_pulses  # noqa: E402

INSERT = (
    "INSERT INTO readings (time, meter, pulses, energy_kwh, power_w,"
    " interval_s, estimate) VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def floor(replay: str, data_dir: str) -> dict:
    """Replay `replay` into DATA_DIR/journal.sqlite3 and DATA_DIR/power.csv."""
    os.makedirs(data_dir, exist_ok=True)
    config = MeterConfig(
        name=workload.METER_NAME,
        pulses_per_kwh=float(workload.PULSES_PER_KWH),
        idle_timeout_s=workload.IDLE_TIMEOUT_S,
        estimate_fall=0.0,
    )
    meter = Meter(config)
    conn = connect(journal_path(data_dir))
    conn.executescript(SCHEMA)
    csv = open(os.path.join(data_dir, "power.csv"), "wb")
    csv.write((HEADER + "\n").encode())
    pending: list = []
    readings = 0

    def commit() -> None:
        conn.execute("BEGIN")
        conn.executemany(INSERT, pending)
        conn.execute("COMMIT")  # synchronous=FULL: on disk before the CSV
        csv.write(("\n".join([csv_line(r) for r in pending]) + "\n").encode())
        csv.flush()

    edges = 0
    edge = meter.edge
    for _, t in read_pulses(replay):
        edges += 1
        pending += edge(int(t * NS_PER_S), t)
        if len(pending) >= COMMIT_ROWS:
            commit()
            readings += len(pending)
            pending = []
    if pending:
        commit()
        readings += len(pending)
    conn.execute(
        "INSERT INTO meters (name, pulses) VALUES (?, ?)", (config.name, meter.pulses)
    )
    conn.close()
    csv.close()
    return {"edges": edges, "readings": readings}


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    print(json.dumps(floor(sys.argv[1], sys.argv[2])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
