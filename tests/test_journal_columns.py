"""A journal written before the estimate column: readable as it is, and
given the column by the first run that writes to it."""

from __future__ import annotations

import logging
import sqlite3

from core.journal import Journal, JournalReader, read_status
from core.meter import Reading

OLD_SCHEMA = """
CREATE TABLE readings (seq INTEGER PRIMARY KEY, time REAL NOT NULL,
    meter TEXT NOT NULL, pulses INTEGER NOT NULL, energy_kwh REAL NOT NULL,
    power_w REAL, interval_s REAL);
CREATE TABLE meters (name TEXT PRIMARY KEY, pulses INTEGER NOT NULL);
CREATE TABLE cursors (sink TEXT PRIMARY KEY, seq INTEGER NOT NULL);
INSERT INTO readings VALUES (1, 1714564800.0, 'main', 7, 0.007, 900.0, 4.0);
INSERT INTO meters VALUES ('main', 7);
"""


def test_an_older_journal_is_read_and_then_extended(tmp_path):
    path = str(tmp_path / "journal.sqlite3")
    conn = sqlite3.connect(path)
    conn.executescript(OLD_SCHEMA)
    conn.close()

    status = read_status(path, [])  # read-only: no column added
    assert status.last["main"] == Reading(
        1714564800.0, "main", 7, 0.007, 900.0, 4.0, False
    )

    journal = Journal(path, logging.getLogger("test"))
    assert journal.pulses("main") == 7
    journal.append(Reading(1714564805.0, "main", 7, 0.007, 720.0, 5.0, True))
    journal.commit()
    journal.close()
    reader = JournalReader(path, "file")
    rows = [r for _, r in reader.read(10)]
    reader.close()
    assert [r.estimate for r in rows] == [False, True]
    assert rows[1].power_w == 720.0
