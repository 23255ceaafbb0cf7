"""The journal's WAL is made at its working size before SQLite opens it
(so commits overwrite blocks rather than allocate them), never replaces a
WAL that may hold committed readings, and stays readable by others."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys

from conftest import POWER

from core.journal import WAL_BYTES, Journal, preallocate_wal
from core.meter import Reading

LOG = logging.getLogger("test_journal_wal")


def reading(i: int) -> Reading:
    return Reading(1_700_000_000.0 + i, "house", i, i / 1000, 3600.0, 1.0)


def test_a_new_journal_and_a_reopened_one_start_with_a_full_size_wal(tmp_path):
    path = str(tmp_path / "journal.sqlite3")
    journal = Journal(path, LOG)
    assert os.path.getsize(path + "-wal") == WAL_BYTES
    for i in range(1, 301):
        journal.append(reading(i))
        if i % 30 == 0:
            journal.commit()
    # Another process reads the committed rows beside the writer.
    reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    assert reader.execute("SELECT count(*) FROM readings").fetchone()[0] == 300
    reader.close()
    assert os.path.getsize(path + "-wal") == WAL_BYTES  # written in place
    journal.close()
    assert not os.path.exists(path + "-wal")  # SQLite's own tidy-up at close
    again = Journal(path, LOG)
    assert os.path.getsize(path + "-wal") == WAL_BYTES
    assert again.last_seq == 300 and again.pulses("house") == 300
    again.close()


def test_a_wal_left_by_a_crash_is_never_replaced(tmp_path):
    path = str(tmp_path / "journal.sqlite3")
    Journal(path, LOG).close()
    # A writer killed with committed readings in its WAL.
    code = (
        "import sys, logging, os\n"
        f"sys.path.insert(0, {str(POWER.parent)!r})\n"
        "from core.journal import Journal\n"
        "from core.meter import Reading\n"
        f"j = Journal({path!r}, logging.getLogger('x'))\n"
        "for i in range(1, 51):\n"
        "    j.append(Reading(1.7e9 + i, 'house', i, i / 1000, 3600.0, 1.0))\n"
        "j.commit()\n"
        "os._exit(9)\n"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 9
    assert os.path.exists(path + "-wal")
    assert preallocate_wal(path) is False
    journal = Journal(path, LOG)
    assert journal.last_seq == 50 and journal.pulses("house") == 50
    journal.close()
