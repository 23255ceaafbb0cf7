"""Retention: old rows go once every sink has passed them, never sooner,
and each meter's newest row stays. A real SQLite journal."""

from __future__ import annotations

import logging
import sqlite3
import time

from core.journal import Journal
from core.meter import Reading

DAY = 86400.0


def _reading(t: float, pulses: int) -> Reading:
    return Reading(t, "house", pulses, pulses / 1000, 3600.0, 1.0, False)


def test_prune_keeps_what_a_sink_has_not_passed_and_each_meters_newest(tmp_path):
    path = str(tmp_path / "journal.sqlite3")
    journal = Journal(path, logging.getLogger("test"))
    old = time.time() - 40 * DAY
    for i in range(1, 101):  # 100 old readings
        journal.append(_reading(old + i, i))
    journal.commit()
    journal.cursors.advance("file", 60)  # the file sink wrote 60 of them
    journal.cursors.advance("influxdb", 100)
    journal.commit()
    removed = journal.prune(time.time() - 30 * DAY, ["file", "influxdb"])
    assert removed == 60
    conn = sqlite3.connect(path)
    seqs = [s for (s,) in conn.execute("SELECT seq FROM readings ORDER BY seq")]
    assert seqs == list(range(61, 101))  # what the file sink still needs
    journal.cursors.advance("file", 100)
    journal.commit()
    assert journal.prune(time.time() - 30 * DAY, ["file", "influxdb"]) == 39
    seqs = [s for (s,) in conn.execute("SELECT seq FROM readings")]
    assert seqs == [100]  # the meter's newest row holds its count
    conn.close()
    journal.close()


def test_prune_leaves_young_rows_whatever_the_cursors(tmp_path):
    path = str(tmp_path / "journal.sqlite3")
    journal = Journal(path, logging.getLogger("test"))
    now = time.time()
    for i in range(1, 11):
        journal.append(_reading(now - 100 + i, i))
    journal.commit()
    journal.cursors.advance("file", 10)
    journal.commit()
    assert journal.prune(now - 30 * DAY, ["file"]) == 0
    journal.close()


def test_a_reading_far_in_the_future_holds_no_retention_hostage(tmp_path):
    """One reading dated 2099 (a clock decades ahead) among old ones: the
    old ones still go."""
    path = str(tmp_path / "journal.sqlite3")
    journal = Journal(path, logging.getLogger("test"))
    journal.append(_reading(4_070_000_000.0, 1))  # 2098-12-22
    old = time.time() - 40 * DAY
    for i in range(2, 102):
        journal.append(_reading(old + i, i))
    journal.commit()
    journal.cursors.advance("file", 101)
    journal.commit()
    now = time.time()
    removed = journal.prune(now - 30 * DAY, ["file"], until=now + DAY)
    assert removed == 99  # all old ones but the meter's newest row
    journal.close()
